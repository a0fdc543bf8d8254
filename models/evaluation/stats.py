"""Uncertainty and significance: user-level bootstrap CIs, paired tests, Holm correction, segments."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from scipy import stats


def bootstrap_ci(
    numerator: np.ndarray,
    denominator: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    sqrt: bool = False,
) -> tuple[float, float]:
    """Percentile CI of Σ numerator / Σ denominator, resampling users (rows) with replacement.

    With ``denominator`` None the statistic is the mean of per-user values. ``sqrt=True`` gives the CI of
    the square root (RMSE from per-user squared-error sums and counts).
    """
    num = np.asarray(numerator, dtype=np.float64)
    den = np.ones_like(num) if denominator is None else np.asarray(denominator, dtype=np.float64)
    keep = np.isfinite(num)
    ratio = (lambda n, d: np.sqrt(n / d)) if sqrt else (lambda n, d: n / d)
    return _percentile_ci((num[keep], den[keep]), ratio, n_boot, seed, level)


def _percentile_ci(columns: tuple[np.ndarray, ...], statistic, n_boot: int, seed: int, level: float):
    """Percentile CI of ``statistic(*sums)``, where each draw resamples the rows (users) with replacement and
    sums every column over the draw (``counts @ column``)."""
    n = len(columns[0])
    if n == 0:
        return float("nan"), float("nan")
    draws = np.empty(n_boot)
    for start, counts in _resampling_counts(n, n_boot, seed):
        draws[start : start + len(counts)] = statistic(*(counts @ column for column in columns))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


_CHUNK = 200  # resampling draws made at a time: (200, n) counts
_COUNTS_BUDGET = 256 * 2**20  # bytes of resampling counts kept between calls
_COUNTS: OrderedDict[tuple[int, int, int], list[np.ndarray]] = OrderedDict()
_COUNTS_LOCK = threading.Lock()


def _resampling_counts(n: int, n_boot: int, seed: int):
    """(start, counts) chunks of ``n_boot`` bootstrap draws over ``n`` rows: how often each draw takes each row.

    They depend only on (n, n_boot, seed), and every CI of a run uses one seed, so the draws are made once per
    row count and kept, as bytes (up to ``_COUNTS_BUDGET``, the most recently used kept first): drawing them was
    most of the evaluation stage's time (a CI per model, metric and segment, each over the same users). Each
    chunk is those ``rng.multinomial`` draws as float64 (exact: small integers), so every sum is what it was."""
    key = (n, n_boot, seed)
    with _COUNTS_LOCK:
        chunks = _COUNTS.get(key)
        if chunks is not None:
            _COUNTS.move_to_end(key)
    if chunks is None:
        rng = np.random.default_rng(seed)
        drawn = [
            rng.multinomial(n, np.full(n, 1.0 / n), size=min(_CHUNK, n_boot - start))
            for start in range(0, n_boot, _CHUNK)
        ]
        if max(int(c.max()) for c in drawn) > 255:  # a row drawn over 255 times in one draw (tiny n): no bytes
            chunks = drawn
        else:
            chunks = [c.astype(np.uint8) for c in drawn]
            if n * n_boot <= _COUNTS_BUDGET:
                with _COUNTS_LOCK:
                    _COUNTS[key] = chunks
                    while sum(k[0] * k[1] for k in _COUNTS) > _COUNTS_BUDGET:
                        _COUNTS.popitem(last=False)
    start = 0
    for counts in chunks:
        yield start, counts.astype(np.float64)
        start += len(counts)


def paired_bootstrap_ci(
    num_a: np.ndarray,
    den_a: np.ndarray,
    num_b: np.ndarray,
    den_b: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of Σnum_a/Σden_a − Σnum_b/Σden_b, resampling users (rows, the same for both models)
    with replacement: each draw's user counts weigh both sides, so the CI reflects the pairing."""
    arrays = [np.asarray(x, dtype=np.float64) for x in (num_a, den_a, num_b, den_b)]
    keep = np.logical_and.reduce([np.isfinite(x) for x in arrays])
    difference = lambda na, da, nb, db: na / da - nb / db  # noqa: E731
    return _percentile_ci(tuple(x[keep] for x in arrays), difference, n_boot, seed, level)


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank test on per-user values of two models (same users, same order).

    Returns the mean difference (a − b), both p-values and the number of users. Users where either value
    is missing are dropped; identical samples give p = 1.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    diff = a - b
    if len(diff) < 2 or np.allclose(diff, 0):
        return {
            "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
            "t_p": 1.0,
            "wilcoxon_p": 1.0,
            "n": int(len(diff)),
        }
    # every user moved by the same non-zero amount: no variance, a certain shift (scipy would warn and say nan)
    t_p = 0.0 if np.ptp(diff) <= 1e-12 * max(1.0, abs(diff).max()) else stats.ttest_rel(a, b).pvalue
    w_p = stats.wilcoxon(a, b, zero_method="wilcox").pvalue if np.any(diff != 0) else 1.0
    return {"mean_diff": float(diff.mean()), "t_p": float(t_p), "wilcoxon_p": float(w_p), "n": int(len(diff))}


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error control), same order as given."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


ACTIVITY_EDGES = (3, 10, 25)


def activity_segment(train_counts: np.ndarray, edges: tuple[int, ...] = ACTIVITY_EDGES) -> np.ndarray:
    """User activity bucket from the number of training ratings: '≤3', '4-10', '11-25', '>25' (defaults)."""
    counts = np.asarray(train_counts)
    labels = [f"≤{edges[0]}"] + [f"{lo + 1}-{hi}" for lo, hi in zip(edges, edges[1:], strict=False)] + [f">{edges[-1]}"]
    return np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(edges), counts, side="left")]


def popularity_segment(train_counts: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """Item segment: 'head' (the most-interacted ``head_share`` of items with training data), 'tail', or
    'cold' (no training interactions)."""
    counts = np.asarray(train_counts)
    warm = counts > 0
    out = np.where(warm, "tail", "cold").astype(object)
    if warm.any():
        n_head = max(1, int(round(warm.sum() * head_share)))
        threshold = np.sort(counts[warm])[::-1][n_head - 1]
        out[warm & (counts >= threshold)] = "head"
    return out


def two_sample_tests(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Welch's t-test and the Mann-Whitney U test between two independent samples (e.g. the users of two A/B
    arms). Returns the difference of means (a − b), both p-values and the sample sizes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]):
        diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
        return {"mean_diff": diff, "welch_p": 1.0, "mannwhitney_p": 1.0, "n_a": len(a), "n_b": len(b)}
    welch = stats.ttest_ind(a, b, equal_var=False).pvalue
    if not np.isfinite(welch):  # both samples constant: different means are as significant as it gets
        welch = 1.0 if a.mean() == b.mean() else 0.0
    mw = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    return {
        "mean_diff": float(a.mean() - b.mean()),
        "welch_p": float(welch),
        "mannwhitney_p": float(mw),
        "n_a": len(a),
        "n_b": len(b),
    }
