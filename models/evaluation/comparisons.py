"""Paired differences: what the report is allowed to claim, fixed before any test value is looked at.

The experiment is pre-registered (the question is fixed before the data is seen: Dror, Baumer, Shlomov and
Reichart, "The Hitchhiker's Guide to Testing Statistical Significance in NLP", ACL 2018):

- **The judged unit** is a split, or the K folds of a k-fold split together (``kfold_s0``: every user once,
  with their test ratings from all folds, :func:`pool_folds`).
- **The reference**, per unit and task, is the traditional model (every family but the language model and
  the fusion; never the global mean) with the best *validation* value of the task's metric (rating: MSE;
  ranking: NDCG@K), among the models that rank there (:func:`choose_references`). The model best on test is
  recorded beside it (``test_best``) and never chosen: choosing on test would favour the reference.
- **The primary family**: the contenders (the fine-tuned LM, the fusion) against that reference, on the
  task's metric, over all users, across every unit and task of the run. Holm's correction runs within this
  family only: these are the questions the experiment exists to answer, and the bottom line counts nothing
  else.
- **The secondary family**: every other comparison (the other models against the reference, the other
  metrics, the segments, the fusion against its components): exploratory, corrected with Benjamini–Hochberg
  (false discovery rate) over the whole family, shown as such.
- **Not judged**: a unit whose data card condemns it for a task (held-out pairs leaking through text twins,
  a fold under the minimum size, fewer ranking candidates than K: :func:`data_checks.card.verdict_gates`)
  gets no verdict for that task and enters neither family; its differences are shown with the reason.

Each row holds the difference of the two aggregate values Σnum/Σden over the same users, its standard error
and paired t-test (:func:`models.evaluation.inference.paired_difference`), a 95% bootstrap CI (users
resampled jointly), the Wilcoxon signed-rank test on per-user values (where the typical user lies), both
corrected within the row's family, the shares of users each side serves better, and the **minimum detectable
difference**: the smallest true difference the row's test finds with 80% power at the family's Bonferroni
level α/m (Holm's and BH's first step; neither ever needs a smaller p), from the observed per-user spread and
the number of users. A "no detectable difference" is only as informative as that figure is small.

The words follow the numbers (:func:`verdict`): "better"/"worse" only when the corrected t-test is
significant *and* the CI excludes zero; otherwise "no detectable difference"; a segment with fewer than
``min_users`` users gets no test ("too few users"); when the two tests disagree the row is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.evaluation import RANKING_CUTOFF, judged_unit
from models.evaluation.inference import (
    POWER,
    benjamini_hochberg,
    minimum_detectable_difference,
    paired_difference,
)
from models.evaluation.stats import holm, paired_bootstrap_ci, paired_tests
from models.progress import Progress

LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae", "popularity_bias"})
# the metrics judged in the comparisons (beyond-accuracy metrics are described, not judged)
JUDGED = ("mse", "mae", "ndcg", "recall", "precision", "hit_rate", "map", "mrr", "auc")
SEGMENTED = ("mse", "ndcg")  # the metrics whose segments get comparisons ("for whom")
PRIMARY_METRIC = {"rating": "mse", "ranking": "ndcg"}  # the one metric per task the verdict answers
TASKS = tuple(PRIMARY_METRIC)
BEST_TRADITIONAL, COMPONENT, ABLATION = "vs_best_traditional", "vs_component", "vs_ablation"
PRIMARY, SECONDARY = "primary", "secondary"
CORRECTION = {PRIMARY: "holm", SECONDARY: "bh"}
BETTER, WORSE, SAME, TOO_FEW, NOT_JUDGED = (
    "better",
    "worse",
    "no detectable difference",
    "too few users",
    "not judged",
)
BY_VALIDATION, BY_TEST = "validation", "test (no validation values recorded)"

DIFFERENCE_COLUMNS = [
    "metric",
    "k",
    "segment",
    "model",
    "reference",
    "kind",
    "family",
    "reference_rule",
    "reference_validation",
    "test_best",
    "n_users",
    "value",
    "reference_value",
    "diff",
    "se",
    "ci_low",
    "ci_high",
    "mean_user_diff",
    "median_user_diff",
    "share_better",
    "share_worse",
    "t_p",
    "wilcoxon_p",
    "t_p_adj",
    "wilcoxon_p_adj",
    "correction",
    "family_size",
    "mdd",
    "verdict",
    "tests_disagree",
    "note",
]
_MEASURED = DIFFERENCE_COLUMNS[: DIFFERENCE_COLUMNS.index("wilcoxon_p") + 1]  # what one unit's data gives


def task_of(k: int) -> str:
    """'ranking' for a metric at a cut-off (k > 0), 'rating' otherwise."""
    return "ranking" if k > 0 else "rating"


@dataclass(frozen=True)
class Reference:
    """The reference of one unit and task: ``model``, how it was chosen (``rule``), its validation value,
    and the traditional model best on test (``test_best``, descriptive only)."""

    model: str
    rule: str
    validation_value: float
    test_best: str | None


def ranks_nothing(extras: dict | None) -> bool:
    """Whether a model's fit record (``model_fits.extras``) says it scored every candidate the same for every
    ranked user of the split (``constant_share`` 1: its ranking figures are chance, it is never a reference)."""
    return (extras or {}).get("constant_share", 0.0) >= 1.0


def pool_folds(per_user: pd.DataFrame) -> pd.DataFrame:
    """One unit's per-user values from its splits' (``split_id`` column; K folds of a k-fold protocol): each
    user once, ``num`` and ``den`` summed over the folds (MSE: every test rating of the user; NDCG: the mean
    over the folds that ranked the user), the user's activity segment the one of most of their folds."""
    if per_user["split_id"].nunique() <= 1:
        return per_user.drop(columns=["split_id"])
    segments = per_user[["split_id", "user_id", "user_segment"]].drop_duplicates(["split_id", "user_id"])
    mode = (
        segments.groupby(["user_id", "user_segment"], sort=False)
        .size()
        .rename("n")
        .reset_index()
        .sort_values("n", ascending=False, kind="stable")
        .drop_duplicates("user_id")
        .set_index("user_id")["user_segment"]
    )
    pooled = per_user.groupby(["model", "metric", "k", "user_id", "item_segment"], as_index=False)[["num", "den"]].sum()
    pooled["user_segment"] = pooled["user_id"].map(mode)
    return pooled


def pooled_validation(fits: list[dict]) -> dict[str, dict[str, float]]:
    """Model -> its validation ``mse`` and ``ndcg`` over the unit's fits (sums pooled across folds) and the
    share of ranked validation users with constant scores (``constant_share``)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for fit in fits:
        summary = (fit.get("extras") or {}).get("validation") or {}
        entry = sums.setdefault(fit["model"], {})
        for metric in ("mse", "ndcg"):
            if metric in summary:
                num, den = summary[metric]
                total = entry.setdefault(metric, [0.0, 0.0])
                total[0], total[1] = total[0] + num, total[1] + den
        if "ndcg" in summary and "constant_share" in summary:
            shares = entry.setdefault("constant", [0.0, 0.0])
            shares[0], shares[1] = (
                shares[0] + summary["constant_share"] * summary["ndcg"][1],
                shares[1] + summary["ndcg"][1],
            )
    out = {}
    for model, entry in sums.items():
        out[model] = {m: num / den for m, (num, den) in entry.items() if m != "constant" and den > 0}
        if entry.get("constant", [0, 0])[1] > 0:
            out[model]["constant_share"] = entry["constant"][0] / entry["constant"][1]
    return out


def _best(values: dict[str, float], lower: bool) -> str | None:
    """The best model of {model: value} (ties: the first name)."""
    finite = sorted((v if lower else -v, m) for m, v in values.items() if v is not None and np.isfinite(v))
    return finite[0][1] if finite else None


def choose_references(
    test_values: dict[tuple[str, int], dict[str, float]],
    validation: dict[str, dict[str, float]],
    candidates,
    no_ranking=(),
    k: int = RANKING_CUTOFF,
) -> dict[str, Reference]:
    """Task -> its :class:`Reference` among ``candidates`` (traditional models, the floor excluded).

    ``test_values``: (metric, k) -> {model: test value} (segment ``all``); ``validation``: model -> its pooled
    validation values (:func:`pooled_validation`); ``no_ranking``: models that rank nothing on test (a
    property of the model, its scores constant over every user's candidates, not of its accuracy); a model whose
    validation scores were constant is left out too. Without any validation value for the task, the test-best
    is used and the rule says so."""
    out = {}
    for task, metric in PRIMARY_METRIC.items():
        key = (metric, k if task == "ranking" else 0)
        if key not in test_values:
            continue
        lower = metric in LOWER_IS_BETTER
        eligible = [m for m in candidates if m in test_values[key]]
        if task == "ranking":  # never a model that ranks nothing, on validation or on test
            eligible = [
                m for m in eligible if m not in no_ranking and validation.get(m, {}).get("constant_share", 0.0) < 1.0
            ]
        test_best = _best({m: test_values[key][m] for m in eligible}, lower)
        by_validation = {m: validation[m][metric] for m in eligible if metric in validation.get(m, {})}
        chosen = _best(by_validation, lower)
        if chosen is not None:
            out[task] = Reference(chosen, BY_VALIDATION, by_validation[chosen], test_best)
        elif test_best is not None:
            out[task] = Reference(test_best, BY_TEST, float("nan"), test_best)
    return out


def comparisons(
    test_values: dict[tuple[str, int], dict[str, float]],
    references: dict[str, Reference],
    *,
    fusion: str | None,
    components: dict[str, list[str]],
    no_ranking=(),
    ablations: dict[str, str] | None = None,
) -> list[tuple[str, int, str, str, str]]:
    """The pairs to compare: (metric, k, model, reference, kind) for every judged metric: each model against
    its task's reference, the fusion against each of its components (``components``: task -> the models
    the fusion blends for it), and each model against its ablation (``ablations``: ablation -> the model:
    the fine-tuned LM against its frozen encoder)."""
    out = []
    for (metric, k), values in sorted(test_values.items()):
        task = task_of(k)
        if metric not in JUDGED or task not in references:
            continue
        reference = references[task].model
        models = set(values)
        if reference not in models:
            continue
        for model in sorted(models - {reference}):
            if not (k > 0 and model in no_ranking):
                out.append((metric, k, model, reference, BEST_TRADITIONAL))
        if fusion in models:
            for component in components.get(task, []):
                if component in models and component != reference:
                    out.append((metric, k, fusion, component, COMPONENT))
        for ablation, model in sorted((ablations or {}).items()):
            if ablation in models and model in models and not (k > 0 and {model, ablation} & set(no_ranking)):
                out.append((metric, k, model, ablation, ABLATION))
    return out


def paired_differences(
    values: pd.DataFrame,
    pairs: list[tuple[str, int, str, str, str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_users: int = 20,
) -> pd.DataFrame:
    """One row per pair and segment (``all``, user activity buckets, and item popularity for rating metrics;
    segments for :data:`SEGMENTED` metrics only): the measured columns of :data:`DIFFERENCE_COLUMNS`, up to
    the raw p-values (the reference columns and family left empty: :func:`unit_differences` fills them)."""
    rows = []
    tables = {(m, int(mk)): _Sums(g) for (m, mk), g in values.groupby(["metric", "k"], sort=False)}  # sliced once
    progress = Progress("paired differences", len(pairs), "comparisons")
    for metric, k, model, reference, kind in pairs:
        sums = tables.get((metric, int(k)), _Sums(values.iloc[0:0]))
        for segment in sums.segments(metric, (model, reference)):
            arrays = sums.pair(segment, model, reference)
            rows.append(_compare(arrays, metric, k, segment, model, reference, kind, n_boot, seed, min_users))
        progress.advance()
    progress.finish()
    return pd.DataFrame(rows, columns=_MEASURED)


class _Sums:
    """One metric's per-user values: every model's per-user ``num`` and ``den`` sums side by side, per segment
    (made once, on first use, for all the pairs that read them), and the segments each model's rows reach."""

    def __init__(self, frame: pd.DataFrame):
        self.frame, self.overall = frame, frame[frame["item_segment"] == "all"]
        self.wide: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        # the user-activity and item-popularity segments each model's rows reach
        rest = frame[frame["item_segment"] != "all"]
        self.reach = {
            kind: {m: set(part.dropna()) for m, part in rows.groupby("model")[column]}
            for kind, rows, column in (("users", self.overall, "user_segment"), ("items", rest, "item_segment"))
        }

    def segments(self, metric: str, models: tuple[str, str]) -> list[str]:
        """``all``, then (a :data:`SEGMENTED` metric) the user-activity and item-popularity segments that the
        rows of ``models`` reach, each in sorted order."""
        if metric not in SEGMENTED:
            return ["all"]
        reached = {
            kind: set().union(*(by_model.get(m, set()) for m in models)) for kind, by_model in self.reach.items()
        }
        return ["all", *(f"{kind}:{s}" for kind in ("users", "items") for s in sorted(reached[kind]))]

    def pair(self, segment: str, model: str, reference: str) -> tuple[np.ndarray, ...]:
        """(num, den of ``model``, num, den of ``reference``) over the users with values of both in
        ``segment``, in user id order."""
        if segment not in self.wide:
            if segment == "all":
                part = self.overall
            elif segment.startswith("users:"):
                part = self.overall[self.overall["user_segment"] == segment.removeprefix("users:")]
            else:
                part = self.frame[self.frame["item_segment"] == segment.removeprefix("items:")]
            wide = part.groupby(["user_id", "model"])[["num", "den"]].sum().unstack("model")
            self.wide[segment] = {m: (wide[("num", m)].to_numpy(), wide[("den", m)].to_numpy()) for m in wide["num"]}
        wide = self.wide[segment]
        if model not in wide or reference not in wide:
            return (np.empty(0),) * 4
        columns = (*wide[model], *wide[reference])
        both = ~np.isnan(np.vstack(columns)).any(axis=0)
        return tuple(c[both] for c in columns)


def _compare(arrays, metric, k, segment, model, reference, kind, n_boot, seed, min_users) -> tuple:
    """One pair on one segment: ``arrays`` are the two models' per-user sums over the users with values of
    both (``_Sums.pair``)."""
    num_a, den_a, num_b, den_b = arrays
    n = len(num_a)
    head = (metric, k, segment, model, reference, kind, None, None, np.nan, None, n)
    if n == 0:
        return (*head, *[np.nan] * 12)
    value, ref_value = num_a.sum() / den_a.sum(), num_b.sum() / den_b.sum()
    per_user = num_a / den_a - num_b / den_b
    lower = metric in LOWER_IS_BETTER
    better_share = float(np.mean(per_user < 0 if lower else per_user > 0))
    worse_share = float(np.mean(per_user > 0 if lower else per_user < 0))
    shares = (float(per_user.mean()), float(np.median(per_user)), better_share, worse_share)
    if n < min_users:
        return (*head, value, ref_value, value - ref_value, np.nan, np.nan, np.nan, *shares, np.nan, np.nan)
    test = paired_difference(num_a, den_a, num_b, den_b)
    if test.get("identical"):  # float noise, not a difference (inference.numerically_identical)
        return (*head, value, ref_value, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0)
    lo, hi = paired_bootstrap_ci(num_a, den_a, num_b, den_b, n_boot=n_boot, seed=seed)
    wilcoxon = paired_tests(num_a / den_a, num_b / den_b)["wilcoxon_p"]
    return (*head, value, ref_value, test["diff"], test["se"], lo, hi, *shares, test["t_p"], wilcoxon)


def unit_differences(
    per_user: pd.DataFrame,
    fits: list[dict],
    *,
    reference_candidates,
    contenders,
    fusion: str | None,
    components: dict[str, list[str]],
    k: int,
    n_boot: int = 1000,
    seed: int = 0,
    min_users: int = 20,
    ablations: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One unit's paired differences (measured columns, the reference's columns and the family), from its
    per-user values (pooled, :func:`pool_folds`) and its fit records (validation values, which models rank).

    ``reference_candidates``: the models the reference is chosen among (the traditional ones but the floors);
    ``contenders``: the models the primary family judges
    against the reference; ``ablations`` (ablation -> model): each model against its ablation, also primary
    (on the task's metric, all users)."""
    no_ranking = {f["model"] for f in fits if ranks_nothing(f.get("extras"))}
    overall = per_user[per_user["item_segment"] == "all"]
    sums = overall.groupby(["metric", "k", "model"])[["num", "den"]].sum()
    test_values: dict[tuple[str, int], dict[str, float]] = {}
    for (metric, mk, model), row in sums.iterrows():
        test_values.setdefault((metric, int(mk)), {})[model] = row["num"] / row["den"] if row["den"] else np.nan
    references = choose_references(test_values, pooled_validation(fits), reference_candidates, no_ranking, k)
    pairs = comparisons(
        test_values, references, fusion=fusion, components=components, no_ranking=no_ranking, ablations=ablations
    )
    out = paired_differences(per_user, pairs, n_boot=n_boot, seed=seed, min_users=min_users)
    for task, reference in references.items():
        here = out["k"].map(task_of) == task
        out.loc[here, "reference_rule"] = reference.rule
        out.loc[here, "test_best"] = reference.test_best
        out.loc[here & (out["kind"] == BEST_TRADITIONAL), "reference_validation"] = reference.validation_value
    primary = (
        (((out["kind"] == BEST_TRADITIONAL) & out["model"].isin(list(contenders))) | (out["kind"] == ABLATION))
        & (out["segment"] == "all")
        & (out["metric"] == out["k"].map(lambda mk: PRIMARY_METRIC[task_of(mk)]))
    )
    out["family"] = np.where(primary, PRIMARY, SECONDARY)
    return out


def judge(
    measured: pd.DataFrame,
    gates: dict[str, dict[str, str]] | None = None,
    alpha: float = 0.05,
    power: float = POWER,
    text_models: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """A run's verdicts from its units' measured differences (``split_id``: the unit; columns of
    :func:`unit_differences`): rows of a unit and task that ``gates`` condemns (unit -> task -> reason; a
    ``"<task>@text"`` key condemns only the rows of ``text_models``, by default the registry's language
    models) are "not judged"; the rest are corrected within their family (primary: Holm, secondary:
    Benjamini–Hochberg) and get their minimum detectable difference at the family's α/m and their verdict.

    Returns ``split_id`` and :data:`DIFFERENCE_COLUMNS`."""
    if text_models is None:
        from models.registry import LANGUAGE as text_models
    out = measured.copy().reset_index(drop=True)
    gates = gates or {}

    def reason_of(unit: str, mk: int, model: str) -> str | None:
        unit_gates, task = gates.get(unit, {}), task_of(int(mk))
        return unit_gates.get(task) or (unit_gates.get(f"{task}@text") if model in text_models else None)

    out["note"] = [
        reason_of(unit, mk, model) for unit, mk, model in zip(out["split_id"], out["k"], out["model"], strict=True)
    ]
    judged = out["note"].isna()
    out["t_p_adj"] = np.nan
    out["wilcoxon_p_adj"] = np.nan
    out["correction"] = None
    out["family_size"] = 0
    out["mdd"] = np.nan
    for family, method in CORRECTION.items():
        tested = out.index[judged & (out["family"] == family) & out["t_p"].notna()]
        if not len(tested):
            continue
        adjust = holm if method == "holm" else benjamini_hochberg
        out.loc[tested, "t_p_adj"] = adjust(out.loc[tested, "t_p"].to_numpy())
        out.loc[tested, "wilcoxon_p_adj"] = adjust(out.loc[tested, "wilcoxon_p"].fillna(1.0).to_numpy())
        out.loc[tested, "correction"] = method
        out.loc[tested, "family_size"] = len(tested)
        level = alpha / len(tested)
        out.loc[tested, "mdd"] = [minimum_detectable_difference(se, level, power) for se in out.loc[tested, "se"]]
    words = [verdict(row, alpha) for row in out.itertuples()]
    out["verdict"] = [w for w, _ in words]
    out["tests_disagree"] = [d for _, d in words]
    out.loc[~judged, "verdict"] = NOT_JUDGED
    out.loc[~judged, "tests_disagree"] = False
    return out[["split_id", *DIFFERENCE_COLUMNS]]


def verdict(row, alpha: float = 0.05) -> tuple[str, bool]:
    """(words, tests disagree) for one comparison row (any object with the row's fields as attributes)."""
    if row.t_p_adj is None or not np.isfinite(row.t_p_adj):
        return TOO_FEW if row.n_users > 0 else SAME, False
    lower = row.metric in LOWER_IS_BETTER
    improves = (row.diff < 0) if lower else (row.diff > 0)
    excludes_zero = row.ci_low > 0 or row.ci_high < 0
    t_significant = row.t_p_adj < alpha and excludes_zero
    w_significant = row.wilcoxon_p_adj < alpha
    typical_improves = row.share_better > row.share_worse
    disagree = (t_significant != w_significant) or (t_significant and w_significant and improves != typical_improves)
    if not t_significant:
        return SAME, bool(disagree)
    return (BETTER if improves else WORSE), bool(disagree)


def units_of(split_ids) -> dict[str, list[str]]:
    """Judged unit -> its split ids, in the order given (a k-fold protocol's folds form one unit)."""
    out: dict[str, list[str]] = {}
    for split_id in split_ids:
        out.setdefault(judged_unit(split_id), []).append(split_id)
    return out
