"""The experiment's answer, generated from the evaluation tables (never hand-written).

Every claim rests on a row of ``eval_differences`` (see :mod:`models.evaluation.comparisons`) and quotes it.
The verdict speaks only of the **primary family**: per judged unit (a split, or a k-fold split's folds
pooled) and task, the contenders (the fine-tuned LM, the fusion) against the reference chosen on validation,
Holm-corrected over the run. Each such row is said in one plain sentence with its relative difference, 95% CI
and the smallest difference its test could detect, so that "no effect" reads apart from "not enough data".
A unit the data card condemns is "not judged", with the reason and what to do, and counts nowhere. Segments
and every other comparison are the exploratory secondary family (Benjamini–Hochberg), shown as such.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from models import registry
from models.evaluation import full_data_unit, judged_unit, train_fraction
from models.evaluation.comparisons import (
    ABLATION,
    BEST_TRADITIONAL,
    BETTER,
    BY_VALIDATION,
    LOWER_IS_BETTER,
    NOT_JUDGED,
    PRIMARY,
    PRIMARY_METRIC,
    SAME,
    SECONDARY,
    TOO_FEW,
    WORSE,
    ranks_nothing,
)

LM = registry.LANGUAGE[0] if registry.LANGUAGE else None  # the fine-tuned transformer
FUSION = registry.FUSION
# the primary family's contenders (registry.CONTENDERS) and their names in the sentences
CONTENDER_NAMES: tuple[tuple[str, str], ...] = tuple(
    (m, "the fusion" if m == FUSION else registry.REGISTRY[m].label or m) for m in registry.CONTENDERS
)


TASKS = tuple(PRIMARY_METRIC.items())  # (task, the metric that answers it)
HEADLINE = ("rmse", "mse", "mae", "ndcg", "recall", "hit_rate", "map", "mrr", "auc")
GLOSSARY = (
    "MSE: mean squared error of the predicted ratings over a unit's test ratings (lower is better); RMSE is its "
    "square root.",
    "NDCG@10: normalised discounted cumulative gain of each test user's top 10 among the candidate items (the "
    "catalogue minus the user's training items; on cold-item splits, the items without training ratings), "
    "averaged over users (higher is better).",
    "Reference: per unit and task, the traditional model (every model but the text models and the fusion, "
    "and not the global mean) with the best validation value, chosen before any test value is looked at; "
    "'best on test' is shown beside it and never chosen.",
    "Primary family: the language models and the fusion against the reference, the fine-tuned LM against the "
    "same encoder frozen (text_frozen: what fine-tuning adds) and the sequential LM, where run, against its "
    "id-only twin (lm_sequential_ids: what text adds to a sequence model), on MSE and NDCG@10, over every "
    "judged unit of the run: the experiment's pre-registered questions, Holm-corrected among themselves. "
    "Secondary family: every other comparison (other models, metrics, segments, the fusion against its "
    "components): exploratory, Benjamini–Hochberg-corrected (q: the false discovery rate at which a row is "
    "significant).",
    "Holm: a step-down correction that keeps the chance of any false 'better'/'worse' in the family under α (0.05).",
    "Paired t-test: on the users both models served, of the reported difference (each user weighing as in the "
    "metric). Wilcoxon: the signed-rank test of per-user differences, where the typical user lies; when the "
    "two disagree the report says so.",
    "Detectable: the minimum detectable difference, the smallest true difference the test finds with 80% "
    "power at the family's α divided by its size; a 'no detectable difference' whose detectable size is "
    "small says the effect is small, one whose detectable size is large says the test was too small.",
    "Units and split ids: random_s0 (80/10/10 of ratings, seed 0), temporal_s0 (each user's last rating "
    "tested, leave-last-out), cold_items_s0 (10% of items held out with all their ratings), kfold_s0 (5 folds: "
    "every rating tested exactly once, the folds pooled per user).",
    "Not judged: a unit whose data card says its figures cannot judge (held-out pairs with a training text "
    "twin, a fold under the minimum size, fewer ranking candidates than K): shown, never counted.",
    "Cost: mean fit and evaluation seconds per model per split, and each model's fit time as a multiple of all "
    "traditional models' together.",
)


def metric_label(metric: str, k: int) -> str:
    return f"{metric.upper()}@{k}" if k and metric != "auc" else metric.upper()


def slug(title: str) -> str:
    """A section's anchor, the way GitHub's Markdown makes one (lower case, spaces to hyphens, punctuation
    gone); ``reports.render.to_html`` gives its headings the same ids."""
    return re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-")


def see(section: str) -> str:
    """ "(see <section>)" as a Markdown link to the section (``reports.render.to_html`` makes it a hyperlink)."""
    return f"(see [{section}](#{slug(section)}))"


def number(value: float, signed: bool = False) -> str:
    """4 significant decimals; never "-0" (a difference that rounds to zero prints as 0)."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if round(float(value), 4) == 0:
        return "0.0000" if not signed else "±0.0000"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def percent(value: float, signed: bool = True) -> str:
    """A relative difference as a percentage with one decimal; never "-0.0%"."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if round(100 * float(value), 1) == 0:
        return "±0.0%" if signed else "0.0%"
    return f"{100 * value:+.1f}%" if signed else f"{100 * abs(value):.1f}%"


def p_value(p: float) -> str:
    return "n/a" if p is None or not np.isfinite(p) else (f"{p:.2g}" if p >= 0.001 else "< 0.001")


def p_text(p: float) -> str:
    """'p = 0.03' or 'p < 0.001'."""
    shown = p_value(p)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def fmt(row: pd.Series) -> str:
    """'value [low, high]' of an ``eval_results`` row."""
    return f"{number(row['value'])} [{number(row['ci_low'])}, {number(row['ci_high'])}]"


def difference(row: pd.Series) -> str:
    """'+0.0123 [+0.0040, +0.0200]' of an ``eval_differences`` row."""
    if row["verdict"] == TOO_FEW:
        return f"{number(row['diff'], True)} (only {int(row['n_users'])} users: not tested)"
    return f"{number(row['diff'], True)} [{number(row['ci_low'], True)}, {number(row['ci_high'], True)}]"


def relative(row: pd.Series) -> tuple[float, float, float, float]:
    """(difference, CI low, CI high, detectable) relative to the reference's value."""
    scale = abs(row["reference_value"]) if row["reference_value"] else float("nan")
    return tuple(float(row[c]) / scale for c in ("diff", "ci_low", "ci_high", "mdd"))  # type: ignore[return-value]


def json_field(value) -> dict:
    """A JSON column of ``model_fits`` (``params``, ``extras``) as a dict, whether DuckDB gave text or a dict."""
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return value if isinstance(value, dict) else {}


def _unit_fits(fits: pd.DataFrame, unit: str) -> pd.DataFrame:
    return fits[fits["split_id"].map(judged_unit) == unit] if not fits.empty else fits


def fusion_alone(fits: pd.DataFrame, unit: str) -> dict[str, str | None]:
    """Task -> the one component the fusion reduced to in the unit (in every fold of a k-fold unit; None
    when it blends several)."""
    rows = _unit_fits(fits, unit)
    rows = rows[rows["model"] == FUSION]
    if rows.empty:
        return {"rating": None, "ranking": None}
    found = [_alone(json_field(params)) for params in rows["params"]]
    return {task: found[0][task] if all(f[task] == found[0][task] for f in found) else None for task in found[0]}


def _alone(params: dict) -> dict[str, str | None]:
    single = (params.get("blender_") or {}).get("single")
    if single is None:
        rating = {n: w for n, w in (params.get("rating_weights_") or {}).get("global", {}).items() if n != "intercept"}
        used = [n for n, w in rating.items() if abs(w) > 1e-9]
        single = used[0] if len(used) == 1 and len(rating) > 1 else None
    ranking = params.get("ranking_weights_") or {}
    used = [n for n, w in ranking.items() if abs(w) > 1e-9]
    return {"rating": single, "ranking": used[0] if len(used) == 1 and len(ranking) > 1 else None}


def no_ranking(fits: pd.DataFrame, unit: str) -> list[str]:
    """Models that scored every candidate the same in every split of the unit (their ranking figures are
    chance: never drawn in ranking plots, never a reference)."""
    here = _unit_fits(fits, unit)
    if here.empty or "extras" not in here:
        return []
    silent = here.assign(silent=[ranks_nothing(json_field(e)) for e in here["extras"]])
    every = silent.groupby("model")["silent"].all()
    return sorted(every[every].index)


def protocol_of(unit: str, splits: pd.DataFrame) -> str:
    """A unit's protocol, from the ``splits`` rows of its splits ('?' when unknown)."""
    if splits.empty:
        return "?"
    rows = splits[splits["split_id"].map(judged_unit) == unit]
    return str(rows["protocol"].iloc[0]) if not rows.empty else "?"


def primary(diffs: pd.DataFrame, kind: str = BEST_TRADITIONAL) -> pd.DataFrame:
    """The primary family's rows of one kind: the contenders against the reference (default), or each model
    against its ablation (``ABLATION``: the fine-tuned LM against its frozen encoder), each task's metric, all
    users."""
    if diffs.empty or "family" not in diffs:
        return diffs.iloc[0:0]
    here = (diffs["family"] == PRIMARY) & (diffs["segment"] == "all")
    return diffs[here & (diffs["kind"] == kind)] if "kind" in diffs else diffs[here]


def ablation_sentences(diffs: pd.DataFrame) -> list[str]:
    """What each ablated part adds, in words: per ablation (``registry.ABLATED``: the fine-tuned LM against the
    same encoder frozen, ``text_frozen``, "what fine-tuning adds"; the sequential LM against its id-only twin,
    "what text adds to a sequence model") and task, per judged unit, with the CI and what the test could detect
    (primary questions)."""
    rows = primary(diffs, ABLATION)
    lines = []
    for ablation in sorted(rows["reference"].unique()) if not rows.empty else ():
        for task, metric in TASKS:
            here = rows[(rows["metric"] == metric) & (rows["reference"] == ablation)].sort_values("split_id")
            if here.empty:
                continue
            pairs = ", ".join(sorted({f"{m} against {ablation}" for m in here["model"]}))
            part = registry.ABLATED.get(ablation, "the ablated part")
            lines.append(
                f"What {part} adds, {task} ({metric.upper()}; {pairs}): "
                + "; ".join(sentence(r) for _, r in here.iterrows())
                + "."
            )
    return lines


def _task(row) -> str:
    return "ranking" if int(row["k"]) > 0 else "rating"


def sentence(row: pd.Series) -> str:
    """One primary row in words: the relative change, its CI, what the test could detect, the verdict."""
    label = metric_label(row["metric"], int(row["k"]))
    if row["verdict"] == NOT_JUDGED:
        return f"{row['split_id']}: not judged ({reason_codes(row['note'])})"
    if row["verdict"] == TOO_FEW:
        return f"{row['split_id']}: {label} {difference(row)}"
    if identical(row):
        return f"{row['split_id']}: {label} identical to {row['reference']} for every user (no difference to test)"
    change, low, high, detectable = relative(row)
    text = (
        f"{row['split_id']}: {label} {percent(change)} [{percent(low)}, {percent(high)}] against {row['reference']}"
        f" ({number(row['value'])} vs {number(row['reference_value'])}); this test detects {percent(detectable, False)}"
        f" or more: {_verdict_words(row)}"
    )
    if bool(row["tests_disagree"]):
        text += f"; {typical_user(row)}"
    return text


def identical(row: pd.Series) -> bool:
    """Whether the two models gave every user the same value (the fusion reduced to its reference): no spread,
    no difference, nothing a test could detect."""
    return row["diff"] == 0 and row.get("se") == 0


def typical_user(row: pd.Series) -> str:
    """Where the typical user lies, when the Wilcoxon test and the t-test disagree, in a few words."""
    side = "better" if row["share_better"] > row["share_worse"] else "worse"
    share = max(row["share_better"], row["share_worse"])
    return f"most users ({share:.0%}) are served {side} (Wilcoxon {p_text(row['wilcoxon_p_adj'])})"


def _verdict_words(row: pd.Series) -> str:
    if row["verdict"] in (BETTER, WORSE):
        return f"{row['verdict']} (Holm {p_text(row['t_p_adj'])})"
    return f"no detectable difference (Holm {p_text(row['t_p_adj'])})"


def reason_codes(note) -> str:
    """The data card's codes named in a not-judged row's note (``text_twins, small_fold``)."""
    from data_checks.card import GATES

    return ", ".join(code for code in GATES if f"{code}:" in str(note or "")) or "data card"


def task_sentences(diffs: pd.DataFrame) -> list[str]:
    """One sentence per contender and task, over the run's judged units (those the data card withheld are
    named once at the end: the *Not judged* table says why)."""
    rows = primary(diffs)
    lines = []
    for task, metric in TASKS:
        for model, words in CONTENDER_NAMES:
            here = rows[(rows["model"] == model) & (rows["metric"] == metric)].sort_values("split_id")
            if here.empty:
                continue
            judged = here[here["verdict"] != NOT_JUDGED]
            parts = [sentence(r) for _, r in judged.iterrows()]
            withheld = here.loc[here["verdict"] == NOT_JUDGED, "split_id"].tolist()
            if withheld:
                parts.append(f"not judged on {', '.join(withheld)} (data card)")
            lines.append(f"{words[0].upper()}{words[1:]}, {task} ({metric.upper()}): " + "; ".join(parts) + ".")
    return lines


def _label(model: str) -> str:
    """A model's name in plain words (the registry's label, else its name)."""
    spec = registry.REGISTRY.get(model)
    return (spec.label if spec is not None else None) or model


def _in_short_task(rows: pd.DataFrame, task: str) -> str | None:
    """One contender's primary rows of one task (its judged units) in a few plain words with one number: the
    largest significant change where there is one, else the largest difference the tests could have seen."""
    verb = "rates" if task == "rating" else "ranks"
    judged = rows[~rows["verdict"].isin([NOT_JUDGED, TOO_FEW])]
    if judged.empty:
        return None
    better, worse = judged[judged["verdict"] == BETTER], judged[judged["verdict"] == WORSE]
    of = f" in {{n}} of {len(judged)} units" if len(judged) > 1 else ""

    def one(frame: pd.DataFrame, words: str) -> str:
        row = frame.loc[frame["diff"].abs().idxmax()] if len(frame) > 1 else frame.iloc[0]
        change = relative(row)[0]
        where = f" on {row['split_id']}" if len(judged) > 1 else ""
        return (
            f"{verb} {percent(change, False)} {words} than {_label(row['reference'])} "
            f"({metric_label(row['metric'], int(row['k']))} {percent(change)}{where}; significant"
            f"{of.format(n=len(frame))})"
        )

    if len(better) and len(worse):
        return one(better, "better") + ", but " + one(worse, "worse").split(" ", 1)[1]
    if len(better):
        return one(better, "better")
    if len(worse):
        return one(worse, "worse")
    references = ", ".join(dict.fromkeys(_label(r) for r in judged["reference"]))
    sizes = [abs(relative(r)[3]) for _, r in judged.iterrows() if not identical(r)]
    if not sizes:
        return f"{verb} exactly as {references} does (the same value for every user)"
    return f"{verb} as well as {references} (no difference as large as {percent(max(sizes), False)}, what the tests could see)"


def in_short(diffs: pd.DataFrame) -> list[str]:
    """The answer a person reads first: one line per contender (the fusion, the fine-tuned LM, the sequential
    LM, where run), what it does for rating and for ranking against the best traditional model, with one
    number each and whether it is significant; then one line counting the comparisons not judged. Made from the
    same primary rows as the verdict (``eval_differences``), never written by hand."""
    rows = primary(diffs)
    lines = []
    for model, words in CONTENDER_NAMES:
        here = rows[rows["model"] == model]
        if here.empty:
            continue
        said = [
            text for task, metric in TASKS if (text := _in_short_task(here[here["metric"] == metric], task)) is not None
        ]
        name = f"{words[0].upper()}{words[1:]}"
        lines.append(f"{name} " + ("; ".join(said) if said else "is not judged on any unit") + ".")
    withheld = rows[rows["verdict"] == NOT_JUDGED]
    if len(withheld):
        units = ", ".join(sorted(set(withheld["split_id"])))
        lines.append(
            f"Not judged: {len(withheld)} comparisons on {units}, withheld by the data card {see('Not judged')}."
        )
    return lines


def bottom_line(diffs: pd.DataFrame) -> str:
    """The answer in one sentence: per contender, on how many judged primary comparisons it is better, worse,
    or not detectably different (with the largest detectable size among the last), and how many the data card
    withheld."""
    rows = primary(diffs)
    if rows.empty:
        return "Bottom line: no primary comparison was made (the LM and the fusion were not both trained against a reference)."
    parts = []
    for model, words in CONTENDER_NAMES:
        here = rows[rows["model"] == model]
        judged = here[~here["verdict"].isin([NOT_JUDGED, TOO_FEW])]
        if judged.empty:
            continue
        better = judged[judged["verdict"] == BETTER]
        worse = judged[judged["verdict"] == WORSE]
        same = judged[judged["verdict"] == SAME]
        text = f"{words} is better than the reference in {len(better)} of {len(judged)} judged comparisons"
        if len(better):
            text += " (" + ", ".join(_where(r) for _, r in better.iterrows()) + ")"
        text += f", worse in {len(worse)}"
        if len(worse):
            text += " (" + ", ".join(_where(r) for _, r in worse.iterrows()) + ")"
        if len(same):
            sizes = sorted(abs(relative(r)[3]) for _, r in same.iterrows() if not identical(r))
            text += f"; no difference was detected in {len(same)}"
            if sizes:
                span = percent(sizes[0], False) + (f" to {percent(sizes[-1], False)}" if len(sizes) > 1 else "")
                text += f", where the tests could see {span} or more"
            else:
                text += " (identical to the reference)"
            if len(sizes) < len(same):
                text += f" ({len(same) - len(sizes)} identical to the reference for every user)"
        parts.append(text)
    withheld = rows[rows["verdict"] == NOT_JUDGED]
    tail = ""
    if len(withheld):
        units = ", ".join(sorted(set(withheld["split_id"])))
        tail = f"{len(withheld)} comparisons on {units} are not judged: the data card condemns them (see Not judged)."
    if not parts:
        return f"Bottom line: nothing was judged. {tail}".strip()
    family = int(rows["family_size"].max())
    return (
        f"Bottom line ({family} pre-registered comparisons, Holm-corrected): " + "; ".join(parts) + ". " + tail
    ).strip()


def _where(row: pd.Series) -> str:
    change = relative(row)[0]
    return f"{row['split_id']} {metric_label(row['metric'], int(row['k']))} {percent(change)}"


def verdict_rows(diffs: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """The primary family as a table: one row per unit, task and contender that was judged."""
    rows = primary(diffs)
    rows = rows[rows["verdict"] != NOT_JUDGED]
    out = []
    for _, r in rows.sort_values(["split_id", "k", "model"]).iterrows():
        change, _, _, detectable = relative(r)
        chosen = f"{r['reference']} {number(r['reference_value'])}"
        if r.get("reference_rule") not in (None, BY_VALIDATION) and isinstance(r.get("reference_rule"), str):
            chosen += f" (chosen on {r['reference_rule']})"
        out.append(
            {
                "unit": r["split_id"],
                "protocol": protocol_of(r["split_id"], splits),
                "task": f"{_task(r)} ({metric_label(r['metric'], int(r['k']))})",
                "reference (validation-best)": chosen,
                "best on test": r.get("test_best") or "—",
                "contender": r["model"],
                "value": number(r["value"]),
                "difference [95% CI]": difference(r),
                "relative": percent(change),
                "Holm p": p_value(r["t_p_adj"]),
                "detectable": "— (identical)" if identical(r) else f"{number(r['mdd'])} ({percent(detectable, False)})",
                "verdict": r["verdict"] + (" (tests disagree)" if bool(r["tests_disagree"]) else ""),
            }
        )
    return pd.DataFrame(out)


def question(row) -> str:
    """A primary row's question in a few words: ``lm_two_tower vs reference`` or ``lm_two_tower vs text_frozen``."""
    return f"{row['model']} vs {'reference' if row['kind'] == BEST_TRADITIONAL else row['reference']}"


def sparsity_frame(diffs: pd.DataFrame) -> pd.DataFrame:
    """The primary rows of every unit that was also made with fewer training ratings (``--train-fractions``):
    columns of ``eval_differences`` plus ``base`` (the full-data unit), ``fraction`` and ``question``. Empty
    when the run has no reduced unit."""
    rows = pd.concat([primary(diffs), primary(diffs, ABLATION), _ablations_vs_reference(diffs)], ignore_index=True)
    if rows.empty:
        return rows
    rows = rows.assign(
        base=rows["split_id"].map(full_data_unit),
        fraction=rows["split_id"].map(train_fraction),
        question=[question(r) for _, r in rows.iterrows()],
    )
    axis = rows.groupby("base")["fraction"].nunique()
    return rows[rows["base"].isin(axis[axis > 1].index)].sort_values(["base", "k", "question", "fraction"])


def _ablations_vs_reference(diffs: pd.DataFrame) -> pd.DataFrame:
    """The ablations' (the frozen encoder's) own rows against the reference, on each task's metric, all users:
    secondary (exploratory) rows, shown beside the primary ones on the sparsity axis."""
    if diffs.empty or "family" not in diffs:
        return diffs.iloc[0:0]
    metric_of_task = diffs["k"].map(lambda mk: PRIMARY_METRIC["ranking" if int(mk) > 0 else "rating"])
    return diffs[
        (diffs["kind"] == BEST_TRADITIONAL)
        & diffs["model"].isin(list(registry.ABLATIONS))
        & (diffs["segment"] == "all")
        & (diffs["metric"] == metric_of_task)
    ]


def sparsity_rows(diffs: pd.DataFrame) -> pd.DataFrame:
    """The sparsity axis as a table: per full-data unit, task and question, the difference at each training
    fraction with its CI, relative change, what the test could detect and the verdict (primary tests, each
    fraction's unit a member of the family; the frozen encoder against the reference is exploratory)."""
    rows = sparsity_frame(diffs)
    out = []
    for _, r in rows.iterrows():
        judged = r["verdict"] not in (NOT_JUDGED, TOO_FEW)
        change, low, high, detectable = relative(r) if judged else (np.nan,) * 4
        out.append(
            {
                "unit": r["base"],
                "task": f"{_task(r)} ({metric_label(r['metric'], int(r['k']))})",
                "question": r["question"],
                "training ratings kept": f"{r['fraction']:.0%}",
                "against": f"{r['reference']} {number(r['reference_value'])}",
                "difference [95% CI]": difference(r) if judged else "—",
                "relative [95% CI]": f"{percent(change)} [{percent(low)}, {percent(high)}]" if judged else "—",
                "detectable": f"{percent(detectable, False)}" if judged and not identical(r) else "—",
                "verdict": r["verdict"] + ("" if r["family"] == PRIMARY else " (exploratory, BH)"),
            }
        )
    return pd.DataFrame(out)


def sparsity_sentences(diffs: pd.DataFrame) -> list[str]:
    """Per full-data unit and question, on the task's metric: how the relative difference moves from the
    smallest training fraction to all of it, and the verdicts (does the LM need less data?)."""
    rows = sparsity_frame(diffs)
    lines = []
    for (base, k, asked), part in rows.groupby(["base", "k", "question"], sort=False):
        label = metric_label(part["metric"].iloc[0], int(k))
        steps = []
        for _, r in part.iterrows():
            if r["verdict"] in (NOT_JUDGED, TOO_FEW):
                steps.append(f"{r['fraction']:.0%}: {r['verdict']}")
                continue
            change, low, high, _ = relative(r)
            steps.append(f"{r['fraction']:.0%}: {percent(change)} [{percent(low)}, {percent(high)}] {r['verdict']}")
        lines.append(f"{base}, {label}, {asked}, by share of training ratings kept: " + "; ".join(steps) + ".")
    return lines


def encoder_rows(results: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """The text models (the fine-tuned LM, its encoder variants, the frozen encoder): encoder, parameters,
    what trained, mean fit seconds per split, and each unit's test MSE and NDCG@10: accuracy against size and
    cost."""
    if fits.empty or results.empty:
        return pd.DataFrame()
    text = [m for m in dict.fromkeys(fits["model"]) if registry.spec_of(m).family == "language"]
    out = []
    for model in text:
        rows = fits[fits["model"] == model]
        metrics = json_field(rows.iloc[0]["params"]).get("metrics_") or {}
        entry = {
            "model": model,
            "encoder": metrics.get("encoder", "—"),
            "parameters": f"{metrics['parameters'] / 1e6:.1f} M" if metrics.get("parameters") else "—",
            "trained": metrics.get("recipe") or ("nothing (frozen)" if model in registry.ABLATIONS else "—"),
            "fit s / split": f"{rows['fit_seconds'].mean():.0f}",
        }
        for (metric, k), label in (((PRIMARY_METRIC["rating"], 0), "MSE"), (("ndcg", 10), "NDCG@10")):
            here = results[(results["model"] == model) & (results["metric"] == metric) & (results["segment"] == "all")]
            here = here[here["k"] == k]
            for _, r in here.sort_values("split_id").iterrows():
                if r["split_id"] == judged_unit(r["split_id"]):  # a unit (k-fold folds: their pooled row)
                    entry[f"{label} {r['split_id']}"] = number(r["value"])
        out.append(entry)
    return pd.DataFrame(out) if len(out) else pd.DataFrame()


def not_judged_rows(diffs: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Units whose verdict the data card withheld: per unit and reason (its tasks together), the contenders'
    measured differences for the record, what the card found and what to do."""
    rows = primary(diffs)
    rows = rows[rows["verdict"] == NOT_JUDGED]
    out = []
    for (unit, note), part in rows.groupby(["split_id", "note"], sort=True):
        tasks = [
            f"{_task(r)} ({metric_label(r['metric'], int(r['k']))})" for _, r in part.drop_duplicates("k").iterrows()
        ]
        out.append(
            {
                "unit": unit,
                "protocol": protocol_of(unit, splits),
                "tasks": ", ".join(tasks),
                "measured, not judged": "; ".join(
                    f"{r['model']} − {r['reference']} {metric_label(r['metric'], int(r['k']))} {difference(r)}"
                    for _, r in part.iterrows()
                ),
                "why, and what to do": note,
            }
        )
    return pd.DataFrame(out)


def disagreement(row: pd.Series) -> str:
    """When the t-test (the mean) and the Wilcoxon test (per-user ranks: the typical user) disagree, say how."""
    lower = row["metric"] in LOWER_IS_BETTER
    mean_improves = (row["diff"] < 0) if lower else (row["diff"] > 0)
    mean_significant = row["verdict"] in (BETTER, WORSE)
    shares = (
        f"{row['share_better']:.0%} of users are served better, {row['share_worse']:.0%} worse"
        + (", the rest equally" if row["share_better"] + row["share_worse"] < 0.995 else "")
        + f"; median per-user difference {number(row['median_user_diff'], True)}; "
        f"Wilcoxon {p_text(row['wilcoxon_p_adj'])}"
    )
    if not mean_significant:
        return f"the means do not differ detectably, but per-user ranks do ({shares})"
    typical_improves = row["share_better"] > row["share_worse"]
    if typical_improves != mean_improves:
        return (
            f"the tests disagree: the mean {'improves' if mean_improves else 'worsens'}, but most users are served "
            f"{'better' if typical_improves else 'worse'} ({shares})"
        )
    return f"the mean {'improves' if mean_improves else 'worsens'} but the typical user does not detectably ({shares})"


def for_whom(diffs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segments where the LM or the fusion differs significantly from the reference in the exploratory
    family, segments too small to test)."""
    if diffs.empty or "family" not in diffs:
        return pd.DataFrame(), pd.DataFrame()
    seg = diffs[
        (diffs["segment"] != "all")
        & (diffs["kind"] == BEST_TRADITIONAL)
        & diffs["model"].isin([LM, FUSION])
        & (diffs["family"] == SECONDARY)
    ]
    found = seg[seg["verdict"].isin([BETTER, WORSE])]
    table = pd.DataFrame(
        {
            "unit": found["split_id"],
            "segment": found["segment"],
            "metric": [metric_label(m, int(k)) for m, k in zip(found["metric"], found["k"], strict=True)],
            "model": found["model"],
            "vs": found["reference"],
            "users": found["n_users"].astype(int),
            "difference [95% CI]": [difference(r) for _, r in found.iterrows()],
            "BH q": [p_value(p) for p in found["t_p_adj"]],
            "verdict": found["verdict"],
        }
    )
    small = seg[seg["verdict"] == TOO_FEW][["split_id", "segment", "n_users"]].drop_duplicates()
    return table.reset_index(drop=True), small.reset_index(drop=True)


def _span(values) -> str:
    return f"{min(values):,}" if min(values) == max(values) else f"{min(values):,}-{max(values):,}"


def cost_rows(fits: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean fit (wall) and CPU seconds and evaluation seconds over the run's splits, the fit time
    relative to all traditional models together, and how it was trained where that matters (the LM's
    fine-tuning recipe; the fits that ran beside one another, whose wall seconds overlap)."""
    if fits.empty:
        return pd.DataFrame()
    extras = [json_field(e) for e in fits["extras"]] if "extras" in fits else [{}] * len(fits)
    fits = fits.assign(cpu_seconds=[e.get("cpu_seconds", np.nan) for e in extras])
    mean = fits.groupby("model")[["fit_seconds", "eval_seconds", "cpu_seconds"]].mean()
    recipes, budgeted = {}, {}
    if "params" in fits:
        for model, params in zip(fits["model"], fits["params"], strict=True):
            metrics = json_field(params).get("metrics_") or {}
            if metrics.get("recipe"):
                recipes.setdefault(model, metrics["recipe"])
            if metrics.get("budget"):  # {"trained", "of", "unit", "setting"}: a model that trained on a share
                budgeted.setdefault(model, []).append(metrics["budget"])
    for model, cuts in budgeted.items():
        trained, total = [c["trained"] for c in cuts], [c["of"] for c in cuts]
        note = (
            f"budgeted: trained on {_span(trained)} of {_span(total)} {cuts[0]['unit']} on {len(cuts)} of "
            f"{int((fits['model'] == model).sum())} splits ({cuts[0]['setting']}; stratified by user, seeded)"
        )
        recipes[model] = f"{recipes[model]}; {note}" if model in recipes else note
    reused, beside, skipped = {}, {}, {}
    for model, extra in zip(fits["model"], extras, strict=True):
        if extra.get("skipped"):
            skipped.setdefault(model, []).append(extra["skipped"])
            continue
        reused[model] = reused.get(model, 0) + bool(extra.get("reused"))  # restored: seconds of its first fit
        if extra.get("overlapped_with") and not extra.get("reused"):
            beside.setdefault(model, []).append(len(extra["overlapped_with"]))
    splits = fits.groupby("model")["model"].count()
    background = {m for m, counts in beside.items() if max(counts) > 1}  # ran beside several in-process fits
    for model, counts in beside.items():
        if model in background:
            note = (
                f"trained in its own process beside the {max(counts)} other fits on {len(counts)} of "
                f"{splits[model]} splits, one core each until they finished (its wall seconds include that)"
            )
            recipes[model] = f"{recipes[model]}; {note}" if model in recipes else note
    for model, n in reused.items():
        if n:
            note = f"restored from the fit store on {n} of {splits[model]} splits (seconds: its first fit's)"
            recipes[model] = f"{recipes[model]}; {note}" if model in recipes else note
    for model, reasons in skipped.items():
        note = f"{reasons[-1]}, on {len(reasons)} of {splits[model]} splits"
        recipes[model] = f"{recipes[model]}; {note}" if model in recipes else note
    traditional = mean.loc[mean.index.isin(registry.TRADITIONAL), "fit_seconds"].sum()
    order = [m for m in registry.REGISTRY if m in mean.index] + [m for m in mean.index if m not in registry.REGISTRY]
    mean = mean.reindex(order)
    return pd.DataFrame(
        {
            "model": mean.index,
            "fit s (mean per split)": mean["fit_seconds"].round(1).to_numpy(),
            "CPU s": mean["cpu_seconds"].round(1).to_numpy(),
            "evaluation s": mean["eval_seconds"].round(1).to_numpy(),
            "× all traditional models": (mean["fit_seconds"] / traditional).round(2).to_numpy()
            if traditional > 0
            else np.nan,
            "how": [recipes.get(m, "") for m in mean.index],
        }
    )


def unit_protocols(splits: pd.DataFrame) -> pd.DataFrame:
    """One row per judged unit: ``unit``, ``protocol``, ``seed``, ``splits`` (how many)."""
    if splits.empty:
        return pd.DataFrame(columns=["unit", "protocol", "seed", "splits"])
    frame = splits.assign(unit=splits["split_id"].map(judged_unit))
    return frame.groupby("unit", as_index=False).agg(
        protocol=("protocol", "first"), seed=("seed", "first"), splits=("split_id", "count")
    )


def seed_summary(results: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation over seeds of each protocol's headline values (segment ``all``; a k-fold
    unit's pooled values, never its folds as if they were seeds).

    ``splits``: split_id -> protocol and seed. Returns protocol, model, metric, k, mean, std, seeds."""
    units = unit_protocols(splits)
    merged = results[results["segment"] == "all"].merge(units, left_on="split_id", right_on="unit")
    merged = merged[merged["metric"].isin(HEADLINE)]
    grouped = merged.groupby(["protocol", "model", "metric", "k"], as_index=False)["value"]
    return grouped.agg(
        mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"), seeds="count"
    )
