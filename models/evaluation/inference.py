"""Inference on stored per-user values: the paired test of a reported difference, what a test could detect,
multiplicity corrections, and the cross-dataset statistics (random-effects pooling, replicability counts).

Everything here acts after the fits, on the values they left in ``eval_per_user``: a change here re-judges
a run without refitting anything (``tasks.train.CACHE_EXEMPT``).

- :func:`paired_difference`: the difference of two aggregate values Σnum/Σden over the same users, its
  standard error by the ratio estimator's linearisation, and a paired t-test of it. For per-user means
  (NDCG: den = 1) this is exactly the paired t-test on per-user values; for MSE each user weighs by their
  number of test ratings, as the reported MSE does, so the test, the bootstrap CI and the minimum detectable
  difference all speak of the same number.
- :func:`minimum_detectable_difference`: (z₁₋α/2 + z_power) · SE, the normal approximation of the smallest
  true difference the test finds with the given power at level α.
- :func:`holm` (in :mod:`models.evaluation.stats`) and :func:`benjamini_hochberg`: family-wise error and false
  discovery rate.
- :func:`random_effects`: DerSimonian–Laird random-effects meta-analysis (pooled estimate, τ², I², Q).
- :func:`partial_conjunction` and :func:`replicability_count`: Benjamini & Heller (2008); the count of
  datasets on which an effect holds, as Dror, Baumer, Bogomolov and Reichart (TACL 2017) apply it to NLP.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

POWER = 0.8


def paired_difference(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray) -> dict[str, float]:
    """The paired test of Σnum_a/Σden_a − Σnum_b/Σden_b over the same users (rows).

    Returns ``diff``, ``se`` (the linearised standard error: the standard deviation of each user's
    contribution z_i = (num_a,i − R_a·den_a,i)/mean(den_a) − (num_b,i − R_b·den_b,i)/mean(den_b), over √n),
    ``t_p`` (two-sided, t with n − 1 degrees of freedom), ``t`` and ``n``. Rows with a missing value are
    dropped; fewer than two users give no test (NaN). Per-user values equal to float noise
    (:func:`numerically_identical`) are no difference: 0, no spread, p = 1, and ``identical`` True."""
    arrays = [np.asarray(x, dtype=np.float64) for x in (num_a, den_a, num_b, den_b)]
    keep = np.logical_and.reduce([np.isfinite(x) for x in arrays])
    na, da, nb, db = (x[keep] for x in arrays)
    n = len(na)
    if n == 0:
        return {"diff": float("nan"), "se": float("nan"), "t": float("nan"), "t_p": float("nan"), "n": 0}
    ra, rb = na.sum() / da.sum(), nb.sum() / db.sum()
    diff = float(ra - rb)
    if numerically_identical(na / da, nb / db):  # one computation reached along two paths: float noise only
        return {"diff": 0.0, "se": 0.0, "t": 0.0, "t_p": 1.0, "n": n, "identical": True}
    if n < 2:
        return {"diff": diff, "se": float("nan"), "t": float("nan"), "t_p": float("nan"), "n": n}
    z = (na - ra * da) / da.mean() - (nb - rb * db) / db.mean()
    se = float(np.std(z, ddof=1) / np.sqrt(n))
    if se <= 1e-12 * max(1.0, abs(diff)):  # every user moved by the same amount: no spread
        t, p = (0.0, 1.0) if abs(diff) <= 1e-12 else (float(np.sign(diff) * np.inf), 0.0)
        return {"diff": diff, "se": 0.0, "t": t, "t_p": p, "n": n}
    t = diff / se
    return {"diff": diff, "se": se, "t": float(t), "t_p": float(2 * stats.t.sf(abs(t), n - 1)), "n": n}


IDENTICAL_TOLERANCE = 1e-6  # per user, relative to the values' scale


def numerically_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two models' per-user values agree for every user to ``IDENTICAL_TOLERANCE`` of their scale:
    the same prediction reached along two paths (two text models whose readouts both fell back to the same
    rating statistics) differs in the last float digits, which a paired test on thousands of users would call
    significant. No difference between two recommenders that matters is that small."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not len(a):
        return False
    scale = max(1.0, float(np.nanmax(np.abs(np.concatenate([a, b])))))
    return bool(np.nanmax(np.abs(a - b)) <= IDENTICAL_TOLERANCE * scale)


def one_sided_p(t: float, n: int, improves_when_negative: bool) -> float:
    """p of "the first model is better" from a paired test's t (lower is better: t < 0 is evidence)."""
    if np.isnan(t) or n < 2:
        return float("nan")
    statistic = -t if improves_when_negative else t
    return float(stats.t.sf(statistic, n - 1))


def minimum_detectable_difference(se: float, alpha: float, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at level ``alpha`` detects with probability ``power``,
    given the estimate's standard error: (z₁₋α/2 + z_power) · se (normal approximation)."""
    if se is None or not np.isfinite(se):
        return float("nan")
    return float((stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) * se)


def detectable_in_sd(n: int, alpha: float, power: float = POWER) -> float:
    """:func:`minimum_detectable_difference` in units of the per-user standard deviation of the paired
    difference, for ``n`` users: what a test fold's size allows before anything is trained (Cohen's d_z)."""
    return minimum_detectable_difference(1 / np.sqrt(n), alpha, power) if n > 1 else float("nan")


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), in the order given; NaN stays NaN and
    does not count in the family."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(len(p), np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    if m == 0:
        return out
    order = tested[np.argsort(p[tested])]
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


def random_effects(estimates, standard_errors, level: float = 0.95) -> dict[str, float]:
    """DerSimonian–Laird random-effects pooling of per-study estimates with their standard errors.

    Returns ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``p`` (two-sided z-test of zero), ``tau2`` (the
    between-study variance), ``i2`` (the share of the spread beyond chance: (Q − df)/Q, floored at 0), ``q``
    (Cochran's Q), ``k`` (studies). With one study: that study, τ² = 0 and I² undefined (NaN)."""
    y = np.asarray(estimates, dtype=np.float64)
    v = np.asarray(standard_errors, dtype=np.float64) ** 2
    keep = np.isfinite(y) & np.isfinite(v) & (v > 0)
    y, v = y[keep], v[keep]
    k = len(y)
    if k == 0:
        return dict.fromkeys(("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "q"), float("nan")) | {"k": 0}
    w = 1 / v
    fixed = (w * y).sum() / w.sum()
    q = float((w * (y - fixed) ** 2).sum())
    df = k - 1
    c = w.sum() - (w**2).sum() / w.sum()
    tau2 = max(0.0, (q - df) / c) if k > 1 else 0.0
    w_star = 1 / (v + tau2)
    estimate = float((w_star * y).sum() / w_star.sum())
    se = float(np.sqrt(1 / w_star.sum()))
    z = stats.norm.isf((1 - level) / 2)
    i2 = max(0.0, (q - df) / q) if k > 1 and q > 0 else (0.0 if k > 1 else float("nan"))
    return {
        "estimate": estimate,
        "se": se,
        "ci_low": float(estimate - z * se),
        "ci_high": float(estimate + z * se),
        "p": float(2 * stats.norm.sf(abs(estimate / se))),
        "tau2": float(tau2),
        "i2": float(i2),
        "q": q,
        "k": k,
    }


def partial_conjunction(p_values, u: int, method: str = "fisher") -> float:
    """Benjamini & Heller's partial-conjunction p-value of "the effect is present in at least ``u`` of the n
    studies": the n − u + 1 largest p-values combined by Fisher's method (independent studies; datasets
    are) or Bonferroni ((n − u + 1) · p₍u₎, valid under any dependence)."""
    p = np.sort(np.asarray([x for x in p_values if np.isfinite(x)], dtype=np.float64))
    n = len(p)
    if not 1 <= u <= n:
        raise ValueError(f"u must be between 1 and the number of p-values ({n}), not {u}")
    largest = p[u - 1 :]
    if method == "bonferroni":
        return float(min(1.0, len(largest) * largest[0]))
    if method == "fisher":
        if np.any(largest == 0):
            return 0.0
        return float(stats.chi2.sf(-2 * np.log(largest).sum(), 2 * len(largest)))
    raise ValueError(f"unknown method {method!r}: fisher or bonferroni")


def replicability_count(p_values, alpha: float = 0.05, method: str = "fisher") -> int:
    """The largest u for which "the effect holds in at least u of the n studies" is rejected at ``alpha``:
    the partial-conjunction hypotheses are nested (at least u implies at least u − 1), so they are tested in
    order u = 1, 2, ... each at ``alpha``, stopping at the first that is not rejected (family-wise error ≤
    ``alpha``). ``p_values``: one-sided, for the effect's direction; NaN (a study that could not test) count
    as p = 1."""
    p = [1.0 if not np.isfinite(x) else float(x) for x in p_values]
    count = 0
    for u in range(1, len(p) + 1):
        if partial_conjunction(p, u, method) > alpha:
            break
        count = u
    return count
