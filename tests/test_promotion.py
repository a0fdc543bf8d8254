"""The promotion gate: promote only on a significant gain with every guard metric held."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.serving import PromotionConfig
from models.serving.promotion import decide


def values(ndcg_gain: np.ndarray, mse_ratio: float = 1.0, users: int | None = None) -> pd.DataFrame:
    """Per-user values of a champion and a challenger: NDCG@10 champion 0.3 per user, challenger 0.3 + gain;
    MSE 1.0 per user for the champion, ``mse_ratio`` for the challenger."""
    n = users or len(ndcg_gain)
    rows = []
    for u in range(n):
        for model, ndcg, se in (("champion", 0.3, 1.0), ("challenger", 0.3 + ndcg_gain[u], mse_ratio)):
            rows.append((model, "ndcg", 10, f"u{u}", "4-10", "all", ndcg, 1.0))
            rows.append((model, "mse", 0, f"u{u}", "4-10", "all", 2 * se, 2.0))  # two test pairs per user
    return pd.DataFrame(rows, columns=["model", "metric", "k", "user_id", "user_segment", "item_segment", "num", "den"])


def test_a_significant_gain_with_guards_held_promotes():
    gain = 0.05 + 0.01 * np.arange(12)  # every user better: Wilcoxon p ≈ 5e-4
    decision = decide(values(gain), PromotionConfig(guards=("rmse",)), k=10)
    assert decision["promote"] and decision["champion"] == pytest.approx(0.3)
    assert decision["challenger"] == pytest.approx(0.3 + gain.mean()) and decision["p_value"] < 0.01
    assert decision["guards"]["rmse"]["relative_regression"] == pytest.approx(0.0) and decision["users"] == 12


def test_a_gain_on_too_few_users_is_not_significant():
    decision = decide(values(np.array([0.1, 0.2, 0.3])), PromotionConfig(), k=10)  # Wilcoxon, 3 users: p = 0.25
    assert not decision["promote"] and "not significant" in decision["reason"]
    assert decision["p_value"] == pytest.approx(0.25)


def test_a_worse_challenger_or_a_broken_guard_keeps_the_champion():
    decision = decide(values(-0.05 - 0.01 * np.arange(12)), PromotionConfig(), k=10)
    assert not decision["promote"] and "not better" in decision["reason"]
    gain = 0.05 + 0.01 * np.arange(12)
    decision = decide(values(gain, mse_ratio=1.1), PromotionConfig(guards=("rmse",), tolerance=0.02), k=10)
    # RMSE sqrt(1.1) vs 1: +4.9% > 2%
    assert not decision["promote"] and "rmse +4.9%" in decision["reason"]
    assert decide(values(gain, mse_ratio=1.1), PromotionConfig(guards=("rmse",), tolerance=0.05), k=10)["promote"]


def test_modes_always_and_never_skip_the_test():
    v = values(np.zeros(5))
    assert decide(v, PromotionConfig(mode="always"), k=10)["promote"]
    assert not decide(v, PromotionConfig(mode="never"), k=10)["promote"]
