"""The GX gate and the quarantine gate: pass on good data, stop with a clear message on bad data."""

from __future__ import annotations

import pandas as pd
import pytest
from builders import NOW, review, write_lines

from data_checks import ValidationConfig, ValidationFailed
from readers import resolve_dataset
from tasks import tables
from tasks.validate import validate_workspace

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def good_reviews(n=10):
    return [review(f"u{i}", f"i{i % 3}", 1 + i % 5, ts=1_400_000_000 + i) for i in range(n)]


def validate(con, spec, tmp_path, **config):
    return validate_workspace(con, spec, ValidationConfig(**config), "run-1", tmp_path / "docs", now=NOW)


def test_good_dataset_passes_and_records_results(tmp_path, ingest):
    spec = resolve_dataset(write_lines(tmp_path / "r.json", good_reviews()))
    con, _ = ingest(spec)
    assert validate(con, spec, tmp_path) == {"interactions": 10, "items": 3, "users": 10, "tags": 0}
    outcomes = con.execute(f"SELECT table_name, expectation, success FROM {tables.VALIDATIONS}").fetchall()
    assert outcomes and all(ok for *_, ok in outcomes)
    assert ("interactions", "expect_compound_columns_to_be_unique", True) in outcomes
    assert (tmp_path / "docs" / "index.html").exists()


@pytest.mark.parametrize(
    ("tamper", "expectation"),
    [
        ("INSERT INTO interactions SELECT * FROM interactions LIMIT 1", "expect_compound_columns_to_be_unique"),
        ("UPDATE interactions SET rating = 7 WHERE user_id = 'u1'", "expect_column_values_to_be_between"),
        ("UPDATE interactions SET user_id = NULL WHERE user_id = 'u2'", "expect_column_values_to_not_be_null"),
        ("DELETE FROM interactions WHERE user_id = 'u3'", "expect_table_row_count_to_equal"),
        ("UPDATE interactions SET timestamp = 5 WHERE user_id = 'u4'", "expect_column_values_to_be_between"),
    ],
)
def test_gx_gate_fails_on_a_broken_table(tmp_path, ingest, tamper, expectation):
    spec = resolve_dataset(write_lines(tmp_path / "r.json", good_reviews()))
    con, _ = ingest(spec)
    con.execute(tamper)
    with pytest.raises(ValidationFailed) as err:
        validate(con, spec, tmp_path)
    message = str(err.value)
    assert "r.json" in message and "table 'interactions'" in message and expectation in message


def test_quarantine_gate_names_file_counts_and_examples(tmp_path, ingest):
    spec = resolve_dataset(write_lines(tmp_path / "r.json", [*good_reviews(9), "{oops"]))
    con, _ = ingest(spec)
    with pytest.raises(
        ValidationFailed,
        match=r"r.json: 1 of 10 records \(10.0%\) were quarantined, above the 1.0% "
        r"threshold .*line 10: invalid JSON",
    ):
        validate(con, spec, tmp_path)
    assert validate(con, spec, tmp_path, max_quarantine_fraction=0.2)["interactions"] == 9


def test_interactions_must_reference_known_items(tmp_path, ingest):
    meta = write_lines(tmp_path / "meta_x.json", [{"asin": "i0"}, {"asin": "i1"}])
    spec = resolve_dataset(write_lines(tmp_path / "r.json", good_reviews()), items=meta)
    con, _ = ingest(spec)
    # i2 carries 3 of the 10 ratings: the message says so in those terms and names the option that accepts it
    with pytest.raises(
        ValidationFailed,
        match=r"1 of 3 rated items \(3 of 10 interactions\) have no row in the item metadata file .*meta_x.json: "
        r"coverage 70.0% of interactions, below the minimum 90% \(--min-item-coverage\).*--min-item-coverage 0.70"
        r".*e.g. i2$",
    ):
        validate(con, spec, tmp_path)
    assert validate(con, spec, tmp_path, min_item_coverage=0.6)["items"] == 2


def test_default_item_coverage_accepts_a_few_items_without_metadata(tmp_path, ingest):
    reviews = [review(f"u{i}", f"i{i % 20}", 1 + i % 5, ts=1_400_000_000 + i) for i in range(40)]
    meta = write_lines(tmp_path / "meta_x.json", [{"asin": f"i{i}"} for i in range(19)])  # i19: 2 of 40 ratings
    spec = resolve_dataset(write_lines(tmp_path / "r.json", reviews), items=meta)
    con, _ = ingest(spec)
    assert validate(con, spec, tmp_path)["interactions"] == 40


def test_suites_accept_pandas_string_dtype():
    from data_checks.gate import run_suites
    from data_checks.suites import TableFacts

    frame = pd.DataFrame(
        {
            "item_id": pd.array(["a", "b"], dtype="str"),
            "title": pd.array(["x", None], dtype="str"),
            "description": None,
            "brand": None,
            "category": None,
            "genres": None,
            "price": [1.0, None],
        }
    )
    results = run_suites({"items": frame}, {"items": TableFacts(expected_rows=2)})
    assert all(r.success for r in results), [r for r in results if not r.success]
    results = run_suites({"items": frame.assign(title=[1, 2])}, {"items": TableFacts(expected_rows=2)})
    assert [r.column for r in results if not r.success] == ["title"]
