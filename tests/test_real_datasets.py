"""The shared real datasets ingest with the documented counts (skipped where ../shared/data is absent)."""

from __future__ import annotations

import pytest
from builders import NOW, SHARED_DATA

from data_checks import ValidationConfig
from readers import DEFAULT_DATASET, resolve_dataset
from tasks.validate import validate_workspace

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

CASES = {
    # folder: (interactions kept, users, items, items table, users table, tags, superseded, quarantined)
    "amazon2018-gift-cards": (2_965, 458, 148, 1_547, 458, 0, 7, 0),
    "movielens-latest-small": (100_836, 610, 9_724, 9_742, 610, 3_683, 0, 0),
    "movielens-100k": (100_000, 943, 1_682, 1_682, 943, 0, 0, 0),
}


def _check(con, expected):
    kept, users, items, items_table, users_table, tags, *_ = expected
    got = con.execute("SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) FROM interactions").fetchone()
    assert got == (kept, users, items)
    sizes = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("items", "users", "tags")]
    assert sizes == [items_table, users_table, tags]


@pytest.mark.parametrize("folder", sorted(CASES))
def test_shared_dataset(folder, tmp_path, ingest):
    path = SHARED_DATA / folder
    if not path.exists():
        pytest.skip(f"{path} is not available")
    spec = resolve_dataset(path)
    con, accounting = ingest(spec)
    expected = CASES[folder]
    _check(con, expected)
    assert accounting["interactions"]["superseded"] == expected[6]
    assert accounting["interactions"]["quarantined"] == expected[7]
    validate_workspace(con, spec, ValidationConfig(data_docs=False), "r", now=NOW)


def test_default_dataset(tmp_path, ingest):
    spec = resolve_dataset(DEFAULT_DATASET)
    con, _ = ingest(spec)
    _check(con, (10_261, 1_429, 900, 900, 1_429, 0))
    assert con.execute("SELECT count(*) FROM interactions WHERE review_text = ''").fetchone()[0] == 7
