"""Tiny hand-made data the tests build on: review records and files, rating matrices with known structure,
a two-genre world, a tiny random BERT config, and an LM recommender loaded from hand-written trainer outputs.
Fixtures built from these are in ``conftest.py``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NOW = 1_800_000_000  # a fixed "now" (2027-01-15) so timestamp plausibility is deterministic


def review(user: str, item: str, rating: float = 5.0, ts: int = 1_400_000_000, text: str = "fine", **extra) -> dict:
    """One Amazon 2014-style review record."""
    return {
        "reviewerID": user,
        "asin": item,
        "overall": rating,
        "unixReviewTime": ts,
        "reviewText": text,
        "summary": f"{user} on {item}",
        "reviewerName": user,
        **extra,
    }


def write_lines(path: Path, lines: list[str | bytes | dict], gz: bool = False) -> Path:
    """Write records (dicts become JSON) one per line; gzip when asked."""
    data = b"".join(
        (json.dumps(x).encode() if isinstance(x, dict) else x if isinstance(x, bytes) else x.encode()) + b"\n"
        for x in lines
    )
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def ratings(n_users=10, n_items=100, per_user=12, seed=0) -> pd.DataFrame:
    """Ratings driven by a user bias, an item bias and a 2-d taste match, on a 1-5 scale."""
    rng = np.random.default_rng(seed)
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.7, n_items)
    pu, qi = rng.normal(0, 0.7, (n_users, 2)), rng.normal(0, 0.7, (n_items, 2))
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            r = 3.5 + bu[u] + bi[i] + pu[u] @ qi[i] + rng.normal(0, 0.3)
            rows.append({"user_id": f"u{u}", "item_id": f"i{i}", "rating": float(np.clip(np.round(r), 1, 5))})
    return pd.DataFrame(rows)


def folds(df, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.random(len(df))
    return df[r < 0.7], df[(r >= 0.7) & (r < 0.85)], df[r >= 0.85]


def genre_world(n_users=40, n_items=60, per_user=12, seed=0):
    """Users of two tastes; items of two genres; each user rates mostly items of their genre."""
    rng = np.random.default_rng(seed)
    genres = np.array(["rock", "jazz"])[np.arange(n_items) % 2]
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "genres": genres,
            "title": [f"{g} record {i}" for i, g in enumerate(genres)],
        }
    )
    rows = []
    for u in range(n_users):
        taste = genres[u % 2]
        liked = np.flatnonzero(genres == taste)
        other = np.flatnonzero(genres != taste)
        chosen = np.r_[rng.choice(liked, per_user - 1, replace=False), rng.choice(other, 1)]
        rows += [
            {
                "user_id": f"u{u}",
                "item_id": f"i{i}",
                "rating": 5.0 if genres[i] == taste else 1.0,
                "summary": "",
                "review_text": "",
            }
            for i in chosen
        ]
    return pd.DataFrame(rows), items


TINY_BERT = {
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def lm_reviews(n_users=12, n_items=10, per_user=6, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for k, i in enumerate(rng.choice(n_items, per_user, replace=False)):
            rating = float(1 + (u + i) % 5)
            rows.append(
                {
                    "user_id": f"u{u}",
                    "item_id": f"i{i}",
                    "rating": rating,
                    "timestamp": 1_400_000_000 + k,
                    "summary": f"s{u}-{i}",
                    "review_text": f"review by u{u} of i{i} word{int(rating)}",
                }
            )
    return pd.DataFrame(rows)


def fake_lm(tmp_path, train, items):
    """An LM recommender loaded from trainer outputs written by hand (seeded vectors, a random readout)."""
    from models.lm.recommender import LMTwoTower

    rng = np.random.default_rng(3)
    out = tmp_path / "lm" / "out"
    out.mkdir(parents=True)
    users = np.sort(train["user_id"].unique()).astype(str)
    item_ids = np.sort(items["item_id"].unique()).astype(str)
    dim = 4
    np.savez(
        out / "embeddings.npz",
        user_ids=users,
        user_vectors=rng.normal(size=(len(users), 2 * dim)),
        item_ids=item_ids,
        item_vectors=rng.normal(size=(len(item_ids), 2 * dim)),
        unknown_user_vector=rng.normal(size=2 * dim),
        unknown_item_vector=rng.normal(size=2 * dim),
        user_stats=np.column_stack([rng.integers(1, 30, len(users)) * 4.0, rng.integers(1, 8, len(users))]),
        item_stats=np.column_stack([rng.integers(1, 30, len(item_ids)) * 4.0, rng.integers(1, 8, len(item_ids))]),
    )
    np.savez(
        out / "readout.npz",
        weights=rng.normal(size=6 * dim) * 0.1,
        bias=np.float64(3.0),
        alpha=np.float64(10),
        stat_weights=rng.normal(size=10) * 0.1,
        stat_bias=np.float64(0.5),
        stat_alpha=np.float64(10),
        mean=np.float64(4.0),
    )
    (out / "metrics.json").write_text(json.dumps({"best_val_rmse": 1.0}))
    model = LMTwoTower(tmp_path / "lm", profile=None)
    model._index(train, items)
    model._load(out)
    return model


def keeps_the_contract(model, train, validation) -> None:
    """The contract of ``models.base`` on a model fitted on :func:`lm_reviews`-like data whose catalogue has 11
    items, one of them ``never_rated``: predictions and scores of the shapes it promises, finite, for unknown
    users and items too; never a seen item recommended; the tasks it does not serve refused clearly."""
    import pytest

    assert "never_rated" in model.item_ids and len(model.item_ids) == 11
    tasks = model.tasks  # what it serves: its class's (a fusion's: what its components serve)
    assert tasks and set(tasks) <= {"rating", "ranking"}
    if "rating" in tasks:
        pred = model.predict(validation["user_id"], validation["item_id"])
        assert pred.shape == (len(validation),) and np.isfinite(pred).all()
        cold = model.predict(["nobody", "u1"], ["i1", "nothing"])  # unknown user, unknown item: no error
        assert cold.shape == (2,) and np.isfinite(cold).all()
    else:
        with pytest.raises(NotImplementedError, match="does not predict ratings"):
            model.predict(["u1"], ["i1"])
    if "ranking" in tasks:
        users = ["u0", "u1", "nobody"]
        scores = model.score(users)
        assert scores.shape == (3, 11) and not np.isnan(scores).any()
        ids, top = model.recommend(users, k=4)
        assert ids.shape == (3, 4) and (np.diff(top, axis=1) <= 0).all()
        for user, row in zip(users, ids, strict=True):
            assert not set(train.loc[train["user_id"] == user, "item_id"]) & set(row)  # never a seen item
        with pytest.raises(ValueError, match="k must be positive"):
            model.recommend(users, k=0)
    else:
        with pytest.raises(NotImplementedError, match="does not rank items"):
            model.score(["u1"])
