"""No test-time leakage: a canary word planted in a test review reaches no training-side table."""

from __future__ import annotations

import pytest
from builders import review, write_lines

from models.evaluation.split import SplitConfig
from readers import resolve_dataset
from tasks import tables
from tasks.split import split_workspace, training_reviews, write_training_reviews

CANARY = "zqxcanaryjv"


@pytest.mark.parametrize("protocol", ["random", "temporal", "cold_items"])
def test_canary_in_test_reviews_never_reaches_training_side(tmp_path, ingest, protocol):
    records = [
        review(f"u{i % 9}", f"i{i % 17}", 1 + i % 5, ts=1_400_000_000 + i * 61, text=f"review {i}") for i in range(150)
    ]
    spec = resolve_dataset(write_lines(tmp_path / "r.json", records))
    con, _ = ingest(spec)
    split_workspace(con, SplitConfig(seed=0, protocols=(protocol,)))
    # Plant the canary in the text and summary of every interaction the split holds out (validation, test).
    con.execute(
        f"""UPDATE interactions SET review_text = review_text || ' {CANARY}', summary = '{CANARY}'
            WHERE (user_id, item_id) IN (SELECT user_id, item_id FROM split_assignments WHERE fold <> 'train')"""
    )
    planted = con.execute(f"SELECT count(*) FROM interactions WHERE review_text LIKE '%{CANARY}%'").fetchone()[0]
    assert planted > 0
    assert write_training_reviews(con) > 0

    reviews = training_reviews(con, f"{protocol}_s0")
    assert len(reviews) > 0
    assert not reviews["review_text"].str.contains(CANARY).any()
    assert not reviews["summary"].str.contains(CANARY).any()

    # Every table outside the registry's all-folds text tables is training side: scan all their text.
    for (table,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall():
        if table in tables.ALL_FOLDS_TEXT:
            continue
        cols = [
            c
            for c, t in con.execute(
                f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}'"
            ).fetchall()
            if t in ("VARCHAR", "JSON", "BLOB")
        ]
        for col in cols:
            hits = con.execute(
                f'SELECT count(*) FROM {table} WHERE CAST("{col}" AS VARCHAR) LIKE ?', [f"%{CANARY}%"]
            ).fetchone()[0]
            assert hits == 0, f"canary leaked into {table}.{col}"
    assert con.execute(f"SELECT count(*) FROM {tables.TRAIN_REVIEWS}").fetchone()[0] == len(reviews)
