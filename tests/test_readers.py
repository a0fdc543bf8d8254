"""Each reader on tiny hand-made files in its real format, and format detection."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import NOW, review, write_lines

from readers import ColumnMapping, InputError, Reject, iter_records, parser_for, resolve_dataset
from readers.formats import detect_format, layout_for
from readers.records import read_header


def parse_all(spec, role):
    path = spec.files[role]
    layout = layout_for(spec, role)
    parse = parser_for(spec, role, read_header(path) if layout == "csv" else None, NOW)
    return [parse(r.raw) for r in iter_records(path, layout)]


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_2014_reviews_plain_and_gzip(tmp_path, gz):
    path = write_lines(
        tmp_path / ("r.json.gz" if gz else "r.json"),
        [review("u1", "i1", 4.0, text="good"), review("u2", "i1", 2.0)],
        gz=gz,
    )
    rows = parse_all(resolve_dataset(path), "interactions")
    assert rows[0] == {
        "user_id": "u1",
        "item_id": "i1",
        "rating": 4.0,
        "timestamp": 1_400_000_000,
        "review_text": "good",
        "summary": "u1 on i1",
    }
    assert [r["rating"] for r in rows] == [4.0, 2.0]


def test_amazon_2018_reviews_with_metadata_folder(tmp_path):
    write_lines(
        tmp_path / "Gift_Cards_5.json.gz", [{**review("u1", "B1"), "verified": True, "style": {"a": "b"}}], gz=True
    )
    write_lines(
        tmp_path / "meta_Gift_Cards.json.gz",
        [
            {
                "asin": "B1",
                "title": "Card",
                "description": ["Line one", "Line two"],
                "brand": "Acme",
                "category": ["Gift Cards", "Gift Cards", "Restaurants"],
                "price": "$25.00",
            }
        ],
        gz=True,
    )
    spec = resolve_dataset(tmp_path)
    assert spec.format == "amazon" and set(spec.files) == {"interactions", "items"}
    (item,) = parse_all(spec, "items")
    assert item == {
        "item_id": "B1",
        "title": "Card",
        "description": "Line one\nLine two",
        "brand": "Acme",
        "category": "Gift Cards|Restaurants",
        "genres": None,
        "price": 25.0,
    }


def test_amazon_2014_metadata_python_literals(tmp_path):
    meta = write_lines(
        tmp_path / "meta.json",
        ["{'asin': 'X9', 'title': 'Strings', 'categories': [['Music', 'Guitar']], 'price': 5.5}"],
    )
    spec = resolve_dataset(write_lines(tmp_path / "r.json", [review("u", "X9")]), items=meta)
    (item,) = parse_all(spec, "items")
    assert (item["item_id"], item["category"], item["price"]) == ("X9", "Music|Guitar", 5.5)


def test_amazon_review_time_fallback(tmp_path):
    rec = review("u", "i")
    del rec["unixReviewTime"]
    rec["reviewTime"] = "02 28, 2014"
    (row,) = parse_all(resolve_dataset(write_lines(tmp_path / "r.json", [rec])), "interactions")
    assert row["timestamp"] == 1_393_545_600


def test_movielens_100k_folder(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    flags = ["0"] * 19
    flags[1] = flags[16] = "1"  # Action, Thriller
    (tmp_path / "u.item").write_bytes(
        ("242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(flags) + "\n").encode("latin-1")
        + "302|Café (1997)|01-Jan-1997||http://y|".encode("latin-1")
        + "|".join(["0"] * 18 + ["1"]).encode()
        + b"\n"
    )
    (tmp_path / "u.user").write_text("196|24|M|technician|85711\n186|53|F|other|94043\n")
    spec = resolve_dataset(tmp_path)
    assert spec.format == "movielens-100k" and spec.rating_scale == (1.0, 5.0)
    assert parse_all(spec, "interactions")[0] == {
        "user_id": "196",
        "item_id": "242",
        "rating": 3.0,
        "timestamp": 881250949,
        "review_text": None,
        "summary": None,
    }
    items = parse_all(spec, "items")
    assert (
        items[0]["genres"] == "Action|Thriller"
        and items[1]["title"] == "Café (1997)"
        and items[1]["genres"] == "Western"
    )
    assert parse_all(spec, "users")[1] == {
        "user_id": "186",
        "age": 53,
        "gender": "F",
        "occupation": "other",
        "zip_code": "94043",
    }


def test_movielens_latest_folder_crlf_and_quotes(tmp_path):
    (tmp_path / "ratings.csv").write_bytes(
        b"userId,movieId,rating,timestamp\r\n1,1,4.5,964982703\r\n1,3,0.5,964981247\r\n"
    )
    (tmp_path / "movies.csv").write_bytes(
        b'movieId,title,genres\r\n1,"American President, The (1995)",Comedy|Drama\r\n3,X (2000),(no genres listed)\r\n'
    )
    (tmp_path / "tags.csv").write_bytes(b"userId,movieId,tag,timestamp\r\n2,1,funny,1445714994\r\n")
    spec = resolve_dataset(tmp_path)
    assert spec.format == "movielens" and spec.rating_scale == (0.5, 5.0)
    assert [r["rating"] for r in parse_all(spec, "interactions")] == [4.5, 0.5]
    movies = parse_all(spec, "items")
    assert movies[0]["title"] == "American President, The (1995)" and movies[0]["genres"] == "Comedy|Drama"
    assert movies[1]["genres"] is None
    assert parse_all(spec, "tags") == [{"user_id": "2", "item_id": "1", "tag": "funny", "timestamp": 1445714994}]


def test_tabular_csv_with_mapping_and_multiline_text(tmp_path):
    path = tmp_path / "ratings.tsv"
    path.write_text(
        'who\twhat\tstars\twhen\tbody\nann\tbook\t4\t2015-03-01T00:00:00\t"two\nlines"\nbob\tbook\t2\t1425168000\tok\n'
    )
    mapping = ColumnMapping.parse("user_id=who,item_id=what,rating=stars,timestamp=when,review_text=body")
    spec = resolve_dataset(path, mapping=mapping, delimiter="\t")
    assert spec.format == "tabular"
    rows = parse_all(spec, "interactions")
    assert rows[0] == {
        "user_id": "ann",
        "item_id": "book",
        "rating": 4.0,
        "timestamp": 1425168000,
        "review_text": "two\nlines",
        "summary": None,
    }
    assert [r.line_no for r in iter_records(path, "csv")] == [2, 4]


def test_tabular_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"u": [1, 2], "i": ["a", "b"], "r": [3.0, 4.0]}), path)
    spec = resolve_dataset(path, mapping=ColumnMapping.parse("user_id=u,item_id=i,rating=r,timestamp="))
    rows = parse_all(spec, "interactions")
    assert rows == [
        {"user_id": "1", "item_id": "a", "rating": 3.0, "timestamp": None, "review_text": None, "summary": None},
        {"user_id": "2", "item_id": "b", "rating": 4.0, "timestamp": None, "review_text": None, "summary": None},
    ]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("r.json.gz", "amazon"),
        ("r.jsonl", "amazon"),
        ("u.data", "movielens-100k"),
        ("ratings.csv", "movielens"),
        ("x.csv", "tabular"),
        ("x.parquet", "tabular"),
    ],
)
def test_detect_format_from_name(tmp_path, name, fmt):
    (tmp_path / name).write_text("")
    assert detect_format(tmp_path / name) == fmt


def test_format_override_and_unknown_name(tmp_path):
    odd = write_lines(tmp_path / "reviews.txt", [review("u", "i")])
    with pytest.raises(InputError, match="pass --format"):
        resolve_dataset(odd)
    assert resolve_dataset(odd, "amazon").format == "amazon"


def test_mapping_errors_are_clear():
    with pytest.raises(InputError, match="unknown field"):
        ColumnMapping.parse("usr=a")
    with pytest.raises(InputError, match="canonical=column"):
        ColumnMapping.parse("user_id")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "nan"),
        ("inf", "inf"),
        (9, "outside the declared scale"),
        ("five", "not a number"),
        (None, "missing overall"),
        ([5], "expected a number"),
    ],
)
def test_bad_ratings_are_rejected_with_reason(tmp_path, value, reason):
    spec = resolve_dataset(write_lines(tmp_path / "r.json", [review("u", "i")]))
    parse = parser_for(spec, "interactions", None, NOW)
    rec = review("u", "i")
    rec["overall"] = value
    with pytest.raises(Reject, match=reason):
        parse(json.dumps(rec).encode())
