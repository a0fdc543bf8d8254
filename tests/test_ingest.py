"""Ingest into DuckDB: raw immutability, the accounting identity, duplicate policies, malformed input."""

from __future__ import annotations

import gzip
import json

import pytest
from builders import review, write_lines

from readers import ColumnMapping, InputError, resolve_dataset
from tasks import tables
from tasks.ingest import load_raw_tables


def rows(con, sql, *params):
    return con.execute(sql, list(params)).fetchall()


def identity_holds(accounting):
    return all(
        a["raw"] == a["kept"] + a["quarantined"] + a["exact_duplicates"] + a["superseded"] for a in accounting.values()
    )


def test_raw_keeps_every_record_with_file_and_line(tmp_path, ingest):
    path = write_lines(tmp_path / "r.json", [review("u1", "i1"), "not json", review("u2", "i1")])
    con, accounting = ingest(resolve_dataset(path))
    assert rows(con, f"SELECT line_no, raw FROM {tables.RAW['interactions']} ORDER BY line_no")[1] == (2, b"not json")
    assert rows(con, f"SELECT DISTINCT source_file FROM {tables.RAW['interactions']}") == [(str(path),)]
    assert accounting["interactions"] == {
        "raw": 3,
        "kept": 2,
        "quarantined": 1,
        "exact_duplicates": 0,
        "superseded": 0,
        "text_duplicates": 0,
    }
    assert rows(con, f"SELECT line_no, reason FROM {tables.QUARANTINE}") == [
        (2, "invalid JSON: Expecting value (character 0)")
    ]


def test_exact_duplicates_collapse_and_latest_pair_wins(tmp_path, ingest):
    a = review("u1", "i1", 3.0, ts=1_400_000_000)
    later = review("u1", "i1", 5.0, ts=1_500_000_000, text="changed my mind")
    path = write_lines(tmp_path / "r.json", [a, a, later, review("u2", "i1"), a])
    con, accounting = ingest(resolve_dataset(path))
    assert accounting["interactions"] == {
        "raw": 5,
        "kept": 2,
        "quarantined": 0,
        "exact_duplicates": 2,
        "superseded": 1,
        "text_duplicates": 0,
    }
    assert rows(con, "SELECT user_id, rating, line_no FROM interactions ORDER BY user_id") == [
        ("u1", 5.0, 3),
        ("u2", 5.0, 4),
    ]
    dup = sorted(rows(con, f"SELECT line_no, kind, kept_line_no FROM {tables.DUPLICATES}"))
    assert dup == [(1, "superseded", 3), (2, "exact", 1), (5, "exact", 1)]


def test_first_policy_keeps_the_earliest(tmp_path, ingest):
    path = write_lines(
        tmp_path / "r.json", [review("u1", "i1", 5.0, ts=1_500_000_000), review("u1", "i1", 2.0, ts=1_400_000_000)]
    )
    con, accounting = ingest(resolve_dataset(path), policy="first")
    assert rows(con, "SELECT rating FROM interactions") == [(2.0,)]
    assert accounting["interactions"]["superseded"] == 1


def test_error_policy_names_the_lines(tmp_path, ingest):
    path = write_lines(tmp_path / "r.json", [review("u1", "i1", 5.0), review("u2", "i1"), review("u1", "i1", 2.0)])
    with pytest.raises(InputError, match=r"r.json: 1 repeated user_id/item_id .*lines \[1, 3\]"):
        ingest(resolve_dataset(path), policy="error")


def test_identity_with_chunk_boundaries(tmp_path, ingest, monkeypatch):
    import tasks.ingest

    monkeypatch.setattr(tasks.ingest, "CHUNK", 3)  # many chunks: streaming must not lose or double rows
    records = [review(f"u{i % 7}", f"i{i % 5}", 1 + i % 5, ts=1_400_000_000 + i) for i in range(40)] + ["{bad"] * 3
    con, accounting = ingest(resolve_dataset(write_lines(tmp_path / "r.json.gz", records, gz=True)))
    a = accounting["interactions"]
    assert identity_holds(accounting) and a["raw"] == 43 and a["quarantined"] == 3 and a["kept"] == 35
    assert rows(con, "SELECT count(*) FROM interactions") == [(35,)]


def test_raw_is_immutable_reused_or_refused(tmp_path, ingest):
    path = write_lines(tmp_path / "r.json", [review("u1", "i1")])
    db = tmp_path / "w.duckdb"
    con, _ = ingest(resolve_dataset(path), db=db)
    load_raw_tables(con, resolve_dataset(path))  # same file: reused, not appended
    assert rows(con, f"SELECT count(*) FROM {tables.RAW['interactions']}") == [(1,)]
    write_lines(path, [review("u1", "i1"), review("u2", "i2")])
    with pytest.raises(InputError, match="raw tables are immutable"):
        load_raw_tables(con, resolve_dataset(path))


def test_items_and_users_derived_when_no_files(tmp_path, ingest):
    con, _ = ingest(
        resolve_dataset(write_lines(tmp_path / "r.json", [review("b", "x"), review("a", "x"), review("a", "y")]))
    )
    assert rows(con, "SELECT item_id, title FROM items") == [("x", None), ("y", None)]
    assert rows(con, "SELECT user_id FROM users") == [("a",), ("b",)]


def test_metadata_duplicates_are_counted(tmp_path, ingest):
    meta = {"asin": "i1", "title": "T"}
    spec = resolve_dataset(
        write_lines(tmp_path / "r.json", [review("u", "i1")]),
        items=write_lines(tmp_path / "meta_x.json", [meta, meta, {"asin": "i1", "title": "T2"}]),
    )
    con, accounting = ingest(spec)
    assert accounting["items"] == {
        "raw": 3,
        "kept": 1,
        "quarantined": 0,
        "exact_duplicates": 1,
        "superseded": 1,
        "text_duplicates": 0,
    }
    assert rows(con, "SELECT title FROM items") == [("T2",)]


# --- malformed input: each a clear error or a quarantine entry with its reason ---------------------------

QUARANTINED = [
    ("invalid JSON", b'{"reviewerID": "u"', "invalid JSON"),
    ("non-UTF-8 bytes", b'{"reviewerID": "u\xff"}', "not valid utf-8"),
    ("not an object", b"[1, 2]", "a JSON list, expected an object"),
    ("missing user", json.dumps(review(None, "i")).encode(), "missing reviewerID"),
    ("blank user", json.dumps(review("  ", "i")).encode(), "missing reviewerID"),
    ("numeric text", json.dumps(review("u", "i", text=12)).encode(), "reviewText is a int"),
    ("NaN rating", json.dumps(review("u", "i", float("nan"))).encode(), "overall is nan"),
    ("out of scale", json.dumps(review("u", "i", 0)).encode(), "outside the declared scale"),
    ("negative time", json.dumps(review("u", "i", ts=-5)).encode(), "not a plausible time"),
    ("future time", json.dumps(review("u", "i", ts=4_000_000_000)).encode(), "not a plausible time"),
    ("text time", json.dumps(review("u", "i", ts="yesterday")).encode(), "neither Unix seconds"),
    ("blank line", b"", "blank line"),
    ("huge id", json.dumps(review("u" * 1000, "i")).encode(), "characters long"),
]


@pytest.mark.parametrize(("kind", "line", "reason"), QUARANTINED, ids=[q[0] for q in QUARANTINED])
def test_malformed_records_are_quarantined(tmp_path, ingest, kind, line, reason):
    path = write_lines(tmp_path / "r.json", [review("ok", "i"), line])
    con, accounting = ingest(resolve_dataset(path))
    assert identity_holds(accounting) and accounting["interactions"]["quarantined"] == 1
    ((line_no, got, content),) = rows(con, f"SELECT line_no, reason, raw_content FROM {tables.QUARANTINE}")
    assert line_no == 2 and reason.lower() in got.lower()
    assert content == line.decode("utf-8", errors="replace")


def test_truncated_gzip_is_a_clear_error(tmp_path, ingest):
    data = gzip.compress(b"".join(json.dumps(review(f"u{i}", "i")).encode() + b"\n" for i in range(200)))
    path = tmp_path / "r.json.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"r.json.gz: the gzip stream is truncated or corrupt after line \d+"):
        ingest(resolve_dataset(path))


def test_empty_file_is_a_clear_error(tmp_path, ingest):
    (tmp_path / "r.json").write_text("")
    with pytest.raises(InputError, match="holds no data records"):
        ingest(resolve_dataset(tmp_path / "r.json"))


def test_header_only_csv_is_a_clear_error(tmp_path, ingest):
    (tmp_path / "x.csv").write_text("user_id,item_id,rating,timestamp\n")
    with pytest.raises(InputError, match="holds no data records"):
        ingest(resolve_dataset(tmp_path / "x.csv"))


def test_missing_required_column_names_file_and_column(tmp_path, ingest):
    (tmp_path / "x.csv").write_text("user_id,item,rating,timestamp\nu,i,4,1400000000\n")
    with pytest.raises(InputError, match=r"x.csv: required column\(s\) \['item_id'\] are missing"):
        ingest(resolve_dataset(tmp_path / "x.csv"))


def test_every_row_bad_is_a_clear_error(tmp_path, ingest):
    path = write_lines(tmp_path / "r.json", ["nope", "{", "[]"])
    with pytest.raises(InputError, match=r"r.json: none of its 3 records is usable; e.g. line 1: invalid JSON"):
        ingest(resolve_dataset(path))


def test_movielens_wrong_separator_quarantines_with_reason(tmp_path, ingest):
    (tmp_path / "u.data").write_text("1,2,3,881250949\n")
    with pytest.raises(
        InputError,
        match="u.data: none of its 1 records is usable; e.g. line 1: expected 4 tab-separated fields, found 1",
    ):
        ingest(resolve_dataset(tmp_path))


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_dataset(tmp_path / "missing.json")
    (tmp_path / "d.json").mkdir()
    with pytest.raises(InputError, match="cannot tell the format of folder"):
        resolve_dataset(tmp_path / "d.json")
    with pytest.raises(InputError, match="holds no Amazon review file"):
        resolve_dataset(tmp_path / "d.json", "amazon")
    with pytest.raises(InputError, match="is a folder"):
        resolve_dataset(tmp_path / "d.json", "tabular")


def test_sql_metacharacters_in_ids_are_data(tmp_path, ingest):
    evil = "x'); DROP TABLE interactions; --"
    con, _ = ingest(resolve_dataset(write_lines(tmp_path / "r.json", [review(evil, "i")])))
    assert rows(con, "SELECT user_id FROM interactions") == [(evil,)]


def test_all_layers_live_in_one_database(tmp_path, ingest):
    con, _ = ingest(resolve_dataset(write_lines(tmp_path / "r.json", [review("u", "i")])))
    names = {r[0] for r in rows(con, "SELECT table_name FROM information_schema.tables")}
    assert {
        "raw_interactions",
        "interactions",
        "items",
        "users",
        "tags",
        "quarantine",
        "duplicates",
        "ingest_counts",
        "sources",
    } <= names


def test_unbalanced_csv_quote_is_a_clear_error(tmp_path, ingest, monkeypatch):
    import readers.records

    monkeypatch.setattr(readers.records, "MAX_RECORD_LINES", 5)
    lines = ["user_id,item_id,rating,timestamp", 'u0,"i0,4,1400000000'] + [
        f"u{i},i{i},4,1400000000" for i in range(1, 20)
    ]
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        InputError, match=r"x.csv line 2: a double quote opens a field that is still open 5 lines later"
    ):
        ingest(resolve_dataset(tmp_path / "x.csv"))


def test_multiline_quoted_field_within_limit_is_one_record(tmp_path, ingest):
    text = 'user_id,item_id,rating,timestamp,body\nu1,i1,4,1400000000,"line one\nline two"\nu2,i1,3,1400000001,x\n'
    (tmp_path / "x.csv").write_text(text)
    con, accounting = ingest(resolve_dataset(tmp_path / "x.csv", mapping=ColumnMapping.parse("review_text=body")))
    assert accounting["interactions"]["kept"] == 2
    assert rows(con, "SELECT review_text, line_no FROM interactions ORDER BY user_id") == [
        ("line one\nline two", 2),
        ("x", 4),
    ]
