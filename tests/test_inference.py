"""The statistics of a decisive answer, against hand computations and reference implementations: the
minimum detectable difference, Benjamini–Hochberg, DerSimonian–Laird random effects (statsmodels), and the
partial-conjunction replicability count (Benjamini & Heller 2008) on hand-made p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models.evaluation.inference import (
    benjamini_hochberg,
    detectable_in_sd,
    minimum_detectable_difference,
    one_sided_p,
    paired_difference,
    partial_conjunction,
    random_effects,
    replicability_count,
)


def fisher_by_hand(p: list[float]) -> float:
    """Fisher's combination in closed form: with x/2 = −Σ ln p and 2k degrees of freedom, the chi-squared
    tail is e^(−x/2) Σ_{i<k} (x/2)^i / i!."""
    half = -sum(math.log(v) for v in p)
    return math.exp(-half) * sum(half**i / math.factorial(i) for i in range(len(p)))


def test_partial_conjunction_p_values_by_hand():
    p = [0.01, 0.2, 0.001]  # any order
    assert partial_conjunction(p, 1) == pytest.approx(fisher_by_hand([0.001, 0.01, 0.2]))
    assert partial_conjunction(p, 2) == pytest.approx(fisher_by_hand([0.01, 0.2]))  # the two largest
    assert partial_conjunction(p, 3) == pytest.approx(0.2)  # the largest alone
    assert partial_conjunction(p, 2, "bonferroni") == pytest.approx(2 * 0.01)
    assert partial_conjunction(p, 1, "bonferroni") == pytest.approx(3 * 0.001)
    with pytest.raises(ValueError):
        partial_conjunction(p, 4)


def test_the_replicability_count_stops_at_the_first_hypothesis_it_cannot_reject():
    p = [0.001, 0.01, 0.2]
    # u = 1: 0.0002, u = 2: 0.0144 (e^-6.2146 x 7.2146), u = 3: 0.2
    assert fisher_by_hand([0.01, 0.2]) == pytest.approx(0.002 * (1 - math.log(0.002)))
    assert replicability_count(p, 0.05) == 2
    assert replicability_count(p, 0.01) == 1
    assert replicability_count(p, 0.05, "bonferroni") == 2 and replicability_count(p, 0.015, "bonferroni") == 1
    assert replicability_count([0.5, 0.6, 0.7], 0.05) == 0
    assert replicability_count([0.001, float("nan")], 0.05) == 1  # a study that could not test counts as p = 1
    assert replicability_count([1e-6, 1e-6, 1e-6], 0.05) == 3


def test_random_effects_equal_statsmodels_dersimonian_laird():
    from statsmodels.stats.meta_analysis import combine_effects

    y = np.array([-0.031, -0.012, 0.004, -0.025])
    se = np.array([0.009, 0.011, 0.02, 0.006])
    ours = random_effects(y, se)
    theirs = combine_effects(y, se**2, method_re="dl")
    frame = theirs.summary_frame()
    assert ours["tau2"] == pytest.approx(theirs.tau2, rel=1e-9, abs=1e-15)
    assert ours["i2"] == pytest.approx(theirs.i2, rel=1e-9, abs=1e-12)
    assert ours["q"] == pytest.approx(theirs.q, rel=1e-9)
    assert ours["estimate"] == pytest.approx(frame.loc["random effect", "eff"], rel=1e-9)
    assert ours["se"] == pytest.approx(frame.loc["random effect", "sd_eff"], rel=1e-9)
    assert ours["ci_low"] == pytest.approx(frame.loc["random effect", "ci_low"], rel=1e-9)
    # heterogeneous studies: τ² > 0, the random-effects CI wider than the fixed-effect one
    wide = random_effects([-0.2, 0.0, 0.2], [0.02, 0.02, 0.02])
    assert wide["tau2"] > 0 and wide["i2"] > 0.9 and wide["se"] > math.sqrt(0.02**2 / 3)
    # homogeneous: τ² = 0, the fixed-effect (inverse-variance) estimate
    same = random_effects([0.1, 0.1], [0.01, 0.02])
    assert same["tau2"] == 0 and same["estimate"] == pytest.approx(0.1) and same["i2"] == 0
    single = random_effects([0.3], [0.1])
    assert single["estimate"] == pytest.approx(0.3) and math.isnan(single["i2"]) and single["k"] == 1


def test_benjamini_hochberg_equals_statsmodels_and_skips_missing():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.5, 0.002])
    assert benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1])
    with_nan = benjamini_hochberg([0.01, float("nan"), 0.04])
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx(
        multipletests([0.01, 0.04], method="fdr_bh")[1]
    )


def test_detectable_sizes_by_hand():
    # 400 users, α = 0.05 / 4: (2.4977 + 0.8416) / 20 per-user standard deviations
    z = stats.norm.ppf(1 - 0.0125 / 2) + stats.norm.ppf(0.8)
    assert detectable_in_sd(400, 0.0125) == pytest.approx(z / 20)
    assert minimum_detectable_difference(float("nan"), 0.05) != minimum_detectable_difference(float("nan"), 0.05)


def test_one_sided_p_follows_the_direction_of_better():
    # lower is better (MSE): t = −3 is evidence of better
    assert one_sided_p(-3.0, 50, True) == pytest.approx(stats.t.sf(3.0, 49))
    assert one_sided_p(-3.0, 50, False) == pytest.approx(stats.t.sf(-3.0, 49))  # higher is better: no evidence
    assert math.isnan(one_sided_p(float("nan"), 50, True))


def test_a_constant_shift_is_certain_and_no_change_is_no_evidence():
    ones = np.ones(5)
    shifted = paired_difference(ones * 2, ones, ones, ones)
    assert shifted["diff"] == 1 and shifted["t_p"] == 0.0
    same = paired_difference(ones, ones, ones, ones)
    assert same["t_p"] == 1.0


def test_float_noise_between_two_paths_to_one_prediction_is_no_difference():
    """Two text models whose readouts both fell back to the same rating statistics: per-user squared errors
    that differ in the last digits (here 1e-9) are identical, not a 'significant' difference on thousands of
    users; a real difference of 1e-3 is still tested."""
    from models.evaluation.comparisons import _compare

    rng = np.random.default_rng(0)
    errors = rng.uniform(0.1, 2.0, 3000)
    noise = errors + rng.normal(0, 1e-9, 3000)
    same = paired_difference(noise, np.ones(3000), errors, np.ones(3000))
    assert (same["diff"], same["se"], same["t_p"]) == (0.0, 0.0, 1.0)
    real = paired_difference(errors + 1e-3 + rng.normal(0, 1e-4, 3000), np.ones(3000), errors, np.ones(3000))
    assert real["t_p"] < 1e-6 and real["diff"] == pytest.approx(1e-3, rel=0.05)
    arrays = (noise, np.ones(3000), errors, np.ones(3000))  # the two models' per-user sums, user by user
    row = _compare(arrays, "mse", 0, "all", "lm_two_tower", "text_frozen", "vs_ablation", 100, 0, 20)
    diff, se, low, high, t_p, wilcoxon_p = row[13], row[14], row[15], row[16], row[21], row[22]
    assert (diff, se, low, high, t_p, wilcoxon_p) == (0.0, 0.0, 0.0, 0.0, 1.0, 1.0)
