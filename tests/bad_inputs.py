"""The bad-input corpus: every kind of broken dataset reclab must answer with a clear error or a quarantine entry.

Each case writes its files into a folder (large or binary inputs are generated here rather than committed)
and states what a user must see:

- ``error``: the one-line message of ``python -m flows.prepare`` (a regex; it names the file and, where
  there is one, the line and column), with exit status 2 and no traceback;
- ``quarantine``: ``(line, column, reason)`` of the single quarantined record, the rest ingested;
- ``accepted``: ingested (nothing quarantined) and ``check(con)`` holds: the data is kept, not lost.

In every non-error case the accounting identity raw = kept + quarantined + collapsed holds.
``tests/test_bad_inputs.py`` runs the whole corpus through the real command line.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builders import review, write_lines

GOOD = 200  # good records around a bad one: one bad record stays under the 1% quarantine gate


def good_reviews(n: int = GOOD) -> list[dict]:
    """``n`` distinct (user, item) reviews: 20 users x 10 items, ratings 1-5, increasing times."""
    return [review(f"u{i // 10}", f"i{i % 10}", 1 + i % 5, ts=1_400_000_000 + i) for i in range(n)]


def good_csv_rows(n: int = GOOD) -> list[str]:
    return [f"u{i // 10},i{i % 10},{1 + i % 5},{1_400_000_000 + i}" for i in range(n)]


def reviews_with(bad: bytes | str | dict) -> Callable[[Path], list[str]]:
    """Amazon reviews file: the good records, then ``bad`` as line ``GOOD + 1``."""

    def build(folder: Path) -> list[str]:
        return ["--data", str(write_lines(folder / "reviews.json", [*good_reviews(), bad]))]

    return build


def csv_with(text: str, name: str = "ratings_table.csv") -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        (folder / name).write_text(text)
        return ["--data", str(folder / name)]

    return build


def rating(value) -> dict:
    return {**review("bad", "i1"), "overall": value}


def stamped(value) -> dict:
    return {**review("bad", "i1"), "unixReviewTime": value}


def _truncated_gzip(folder: Path) -> list[str]:
    data = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in good_reviews()))
    (folder / "reviews.json.gz").write_bytes(data[: len(data) // 2])
    return ["--data", str(folder / "reviews.json.gz")]


def _nan_in_csv(folder: Path) -> list[str]:
    rows = good_csv_rows()
    rows.insert(10, "bad,i1,nan,1400000000")
    (folder / "t.csv").write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    return ["--data", str(folder / "t.csv")]


def _unknown_columns(folder: Path) -> list[str]:
    rows = [f"{row},extra{i},{i % 3}" for i, row in enumerate(good_csv_rows())]
    (folder / "t.csv").write_text("user_id,item_id,rating,timestamp,colour,shelf\n" + "\n".join(rows) + "\n")
    return ["--data", str(folder / "t.csv")]


def _huge_review(folder: Path) -> list[str]:
    return [
        "--data",
        str(write_lines(folder / "r.json", [*good_reviews(), review("big", "i1", text="x" * 10_000_000)])),
    ]


def _duplicates(folder: Path) -> list[str]:
    rows = good_reviews()
    return ["--data", str(write_lines(folder / "r.json", [*rows, rows[0], rows[1]]))]


def _metadata_for_unknown_items(folder: Path) -> list[str]:
    write_lines(folder / "reviews.json", good_reviews())
    meta = [{"asin": f"i{i}", "title": f"item {i}"} for i in range(10)] + [{"asin": "ghost", "title": "never rated"}]
    write_lines(folder / "meta_x.json", meta)
    return ["--data", str(folder)]


def _movielens_wrong_separator(folder: Path) -> list[str]:
    (folder / "u.data").write_text("".join(f"{i // 10},{i % 10},{1 + i % 5},881250949\n" for i in range(50)))
    return ["--data", str(folder)]


def _directory(folder: Path) -> list[str]:
    (folder / "reviews.json").mkdir()
    return ["--data", str(folder / "reviews.json"), "--format", "tabular"]


def _user_with_one_rating(folder: Path) -> list[str]:
    return ["--data", str(write_lines(folder / "r.json", [*good_reviews(), review("lonely", "i3", ts=1_500_000_000)]))]


def _too_small_to_split(folder: Path) -> list[str]:
    return ["--data", str(write_lines(folder / "r.json", [review("only", "i1")]))]


def _parquet_wrong_type(folder: Path) -> list[str]:
    import pandas as pd

    frame = pd.DataFrame([r.split(",") for r in good_csv_rows()], columns=["user_id", "item_id", "rating", "timestamp"])
    frame.loc[5, "rating"] = "five"
    frame.to_parquet(folder / "t.parquet")
    return ["--data", str(folder / "t.parquet")]


@dataclass(frozen=True)
class Case:
    kind: str
    build: Callable[[Path], list[str]]  # writes the files into a folder; returns the prepare CLI's arguments
    error: str | None = None
    quarantine: tuple[int, str | None, str] | None = None
    check: str | None = None  # SQL returning one row whose values must all be true (accepted cases)


BAD = GOOD + 1  # the line of the bad record in ``reviews_with``

CASES = [
    Case(
        "truncated gzip",
        _truncated_gzip,
        error=r"reviews.json.gz: the gzip stream is truncated or corrupt after line \d+",
    ),
    Case("invalid JSON line", reviews_with('{"reviewerID": "u1", "asin": '), quarantine=(BAD, None, "invalid JSON")),
    Case("wrong field type", reviews_with(rating([5])), quarantine=(BAD, "overall", "overall is a list")),
    Case("rating not a number", reviews_with(rating("five")), quarantine=(BAD, "overall", "'five' is not a number")),
    Case("NaN rating", _nan_in_csv, quarantine=(12, "rating", "rating is nan")),
    Case("infinite rating", reviews_with(rating("inf")), quarantine=(BAD, "overall", "overall is inf")),
    Case("out-of-scale rating", reviews_with(rating(7)), quarantine=(BAD, "overall", "outside the declared scale")),
    Case("negative timestamp", reviews_with(stamped(-86_400)), quarantine=(BAD, "unixReviewTime", "not a plausible")),
    Case(
        "future timestamp",
        reviews_with(stamped(4_000_000_000)),
        quarantine=(BAD, "unixReviewTime", "not a plausible time"),
    ),
    Case("empty file", csv_with(""), error=r"ratings_table.csv holds no data records"),
    Case("header-only CSV", csv_with("user_id,item_id,rating,timestamp\n"), error=r"ratings_table.csv holds no data"),
    Case(
        "missing required column",
        csv_with("user_id,item,rating,timestamp\nu,i,4,1400000000\n"),
        error=r"ratings_table.csv: required column\(s\) \['item_id'\] are missing",
    ),
    Case(
        "unknown extra columns",
        _unknown_columns,
        check="SELECT count(*) = 200 AND bool_and(decode(raw) LIKE '%,extra%') FROM raw_interactions",
    ),
    Case(
        "non-UTF-8 bytes",
        reviews_with(b'{"reviewerID": "u\xff", "asin": "i1"}'),
        quarantine=(BAD, None, "not valid utf-8 text (bad byte at offset 17)"),
    ),
    Case(
        "10 MB review text",
        _huge_review,
        check="SELECT length(review_text) = 10000000 FROM interactions WHERE user_id = 'big'",
    ),
    Case(
        "control characters in an id",
        reviews_with(review("u\x00x", "i1")),
        quarantine=(BAD, "reviewerID", "reviewerID contains the control character U+0000"),
    ),
    Case(
        "control characters in text",
        reviews_with(review("ctl", "i1", text="a\x07b\x1b[31mc")),
        check="SELECT review_text = 'a' || chr(7) || 'b' || chr(27) || '[31mc' FROM interactions WHERE user_id = 'ctl'",
    ),
    Case(
        "SQL metacharacters in ids",
        reviews_with(review("x'); DROP TABLE interactions; --", 'i"1;')),
        check="SELECT count(*) = 1 FROM interactions WHERE user_id = 'x''); DROP TABLE interactions; --'",
    ),
    Case(
        "duplicate rows",
        _duplicates,
        check="SELECT sum(exact_duplicates) = 2 AND sum(kept) = 200 FROM ingest_counts WHERE role = 'interactions'",
    ),
    Case(
        "metadata for unknown items",
        _metadata_for_unknown_items,
        check="SELECT count(*) = 11 AND count(*) FILTER (item_id = 'ghost') = 1 FROM items",
    ),
    Case(
        "MovieLens file with the wrong separator",
        _movielens_wrong_separator,
        error=r"u.data: none of its 50 records is usable; e.g. line 1: expected 4 tab-separated fields, found 1",
    ),
    Case("directory instead of a file", _directory, error=r"reviews.json is a folder"),
    Case(
        "path that does not exist",
        lambda folder: ["--data", str(folder / "nowhere.json")],
        error=r"dataset path .*nowhere.json does not exist",
    ),
    Case(
        "a user with one interaction",
        _user_with_one_rating,
        check="SELECT fold = 'train' FROM split_assignments WHERE user_id = 'lonely' AND split_id = 'temporal_s0'",
    ),
    Case(
        "too small to split",
        _too_small_to_split,
        error=r"split kfold_s0_f1: the validation and test fold would be empty \(1 ratings from 1 users",
    ),
    Case(
        "every row bad",
        lambda folder: ["--data", str(write_lines(folder / "r.json", ["nope", "{", "[]"]))],
        error=r"r.json: none of its 3 records is usable; e.g. line 1: invalid JSON",
    ),
    Case("Parquet column of the wrong type", _parquet_wrong_type, quarantine=(6, "rating", "'five' is not a number")),
    Case("blank line", reviews_with(""), quarantine=(BAD, None, "blank line")),
]
