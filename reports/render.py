"""The experiment report: blocks built from the evaluation tables, rendered to Markdown and to one
self-contained HTML file (plots embedded as PNG).

A report is a list of blocks, each one of: ``("h1"|"h2"|"h3", text)``, ``("p", text)``, ``("ul", [text])``,
``("warn", [text])``, ``("table", DataFrame)``, ``("figure", name, title, png bytes)``. :func:`build` makes
the blocks from DataFrames of ``eval_results``, ``eval_differences``, ``model_fits`` and ``splits`` rows
and the data card; :func:`to_markdown` and :func:`to_html` render them.

Layout: the verdict first (one screen: the bottom line, one sentence per contender and task, the primary
family's table, what the data card withheld, a forest plot per task marking the significant differences),
then for whom (exploratory), cost and the data card; every full table and per-unit figure goes to the
appendix, a glossary closes it. Each model keeps one colour in every figure (:func:`colour_of`); a model that
ranks nothing is never drawn in a ranking figure.
"""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pandas as pd

from models.evaluation import judged_unit
from models.evaluation.comparisons import ABLATION, BETTER, NOT_JUDGED, TOO_FEW, WORSE
from models.evaluation.split import planned_folds
from models.registry import FUSION, REGISTRY
from reports.conclusions import (
    GLOSSARY,
    HEADLINE,
    LOWER_IS_BETTER,
    TASKS,
    ablation_sentences,
    bottom_line,
    cost_rows,
    encoder_rows,
    fmt,
    for_whom,
    fusion_alone,
    in_short,
    json_field,
    metric_label,
    no_ranking,
    not_judged_rows,
    number,
    p_value,
    primary,
    protocol_of,
    relative,
    seed_summary,
    slug,
    sparsity_frame,
    sparsity_rows,
    sparsity_sentences,
    task_sentences,
    verdict_rows,
)

# sections the HTML report opens collapsed (<details>): the detail a first reading does not need
COLLAPSED = ("Appendix", "Glossary")
ACTIVITY_ORDER = ("users:≤3", "users:4-10", "users:11-25", "users:>25")
ITEM_ORDER = ("items:head", "items:tail", "items:cold")
PALETTE = (  # 20 colours told apart at a glance; in registry order, the LM black and the fusion magenta
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
    "#006d77",
    "#9acd32",
    "#000000",
    "#e7298a",
    "#e6ab02",
    "#000080",
    "#a6761d",
    "#17becf",
    "#7570b3",
    "#b15928",
)


def colour_of(model: str) -> str:
    """One fixed colour per model, the same in every figure of every report (registry order)."""
    names = list(REGISTRY)
    index = names.index(model) if model in names else len(names) + sum(map(ord, model))
    return PALETTE[index % len(PALETTE)]


def metrics_table(results: pd.DataFrame, split_id: str, silent: list[str] | None = None) -> pd.DataFrame:
    """Models × headline metrics, 'value [95% CI]'; ranking cells of models that do not rank say so."""
    rows = results[
        (results["split_id"] == split_id) & (results["segment"] == "all") & results["metric"].isin(HEADLINE)
    ].copy()
    if rows.empty:
        return pd.DataFrame()
    rows["column"] = [metric_label(m, int(k)) for m, k in zip(rows["metric"], rows["k"], strict=True)]
    rows["cell"] = [
        "no ranking" if model in (silent or []) and k > 0 else fmt(row)
        for (_, row), model, k in zip(rows.iterrows(), rows["model"], rows["k"], strict=True)
    ]
    order = list(dict.fromkeys(rows["column"]))
    table = rows.pivot_table(index="model", columns="column", values="cell", aggfunc="first")
    return _flat(table.reindex(columns=order).fillna("—").reset_index())


def segment_table(results: pd.DataFrame, split_id: str, metric: str, k: int, segments) -> pd.DataFrame:
    rows = results[
        (results["split_id"] == split_id)
        & (results["metric"] == metric)
        & (results["k"] == k)
        & results["segment"].isin(segments)
    ].copy()
    if rows.empty:
        return pd.DataFrame()
    rows["cell"] = rows.apply(fmt, axis=1)
    table = rows.pivot_table(index="model", columns="segment", values="cell", aggfunc="first")
    users = rows.groupby("segment")["n_users"].max()
    table = table.reindex(columns=[s for s in segments if s in table.columns]).fillna("—")
    table.columns = [f"{s} (n={users[s]})" for s in table.columns]
    return _flat(table.reset_index())


SHORT_VERDICT = {BETTER: "better", WORSE: "worse", TOO_FEW: "too few users", NOT_JUDGED: "not judged"}


def differences_table(diffs: pd.DataFrame, unit: str) -> pd.DataFrame:
    """The unit's paired comparisons on the tasks' metrics (MSE, NDCG@K; segment ``all``; the other metrics'
    rows are in ``eval_differences``): family, difference, CI, both corrected tests, the detectable size and
    the verdict ("n.s." for no detectable difference, to keep the table short)."""
    rows = diffs[(diffs["split_id"] == unit) & (diffs["segment"] == "all") & diffs["metric"].isin(["mse", "ndcg"])]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.sort_values(["family", "k", "metric", "kind", "model"])
    return pd.DataFrame(
        {
            "family": rows["family"],
            "metric": [metric_label(m, int(k)) for m, k in zip(rows["metric"], rows["k"], strict=True)],
            "model": rows["model"],
            "vs": rows["reference"],
            "difference": [number(v, True) for v in rows["diff"]],
            "95% CI": [
                f"[{number(lo, True)}, {number(hi, True)}]"
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "t p (adj.)": [p_value(p) for p in rows["t_p_adj"]],
            "Wilcoxon p (adj.)": [p_value(p) for p in rows["wilcoxon_p_adj"]],
            "detectable": [number(v) for v in rows["mdd"]],
            "users better / worse": [
                f"{b:.0%} / {w:.0%}" for b, w in zip(rows["share_better"], rows["share_worse"], strict=True)
            ],
            "verdict": [SHORT_VERDICT.get(v, "n.s.") for v in rows["verdict"]]
            + np.where(rows["tests_disagree"].astype(bool), " (tests disagree)", ""),
        }
    ).reset_index(drop=True)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain string column labels and no columns name (no stray header row in HTML)."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame.columns.name = None
    return frame


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_of(fig, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> bytes:
    """``fig`` laid out tightly within ``rect`` (figure fractions: left, bottom, right, top; the rest left to a
    legend, say), as PNG bytes; the figure is closed."""
    fig.tight_layout(rect=rect)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return buffer.getvalue()


def draw_png(draw, height: float = 3.6) -> bytes:
    """A PNG of one matplotlib axes drawn by ``draw(ax)``, 7.5 inches wide."""
    fig, ax = pyplot().subplots(figsize=(7.5, height), dpi=100)
    draw(ax)
    return png_of(fig)


def points_with_ci(results: pd.DataFrame, split_id: str, metric: str, k: int, silent=()) -> bytes | None:
    """Each model's value as a point with its 95% CI (no bars from zero), best first, fixed colours; a ranking
    metric leaves out the models in ``silent`` (they rank nothing here: their figure is chance)."""
    rows = results[
        (results["split_id"] == split_id)
        & (results["metric"] == metric)
        & (results["k"] == k)
        & (results["segment"] == "all")
        & ~(results["model"].isin(list(silent)) & (k > 0))
    ].dropna(subset=["value"])
    if rows.empty:
        return None
    rows = rows.sort_values("value", ascending=metric in LOWER_IS_BETTER).reset_index(drop=True)

    def draw(ax):
        _points_with_ci(ax, rows, "value", rows["model"])
        ax.set_xlabel(f"{metric_label(metric, k)}, 95% CI{' (lower is better)' if metric in LOWER_IS_BETTER else ''}")
        ax.set_title(f"{split_id}: {metric_label(metric, k)}")

    return draw_png(draw, 0.9 + 0.32 * len(rows))


def _points_with_ci(ax, rows: pd.DataFrame, column: str, labels, filled=None) -> None:
    """One point per row (``column``, coloured by its model) with its 95% CI whiskers, first row on top;
    ``filled`` (one flag per row): a filled marker where True, hollow elsewhere."""
    for y, row in rows.iterrows():
        solid = True if filled is None else bool(filled[y])
        ci_point(ax, row[column], y, row["ci_low"], row["ci_high"], colour_of(row["model"]), solid, capsize=3)
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def ci_point(ax, x, y, low, high, colour: str, filled: bool = True, marker: str = "o", **style) -> None:
    """A point at (x, y) with its CI whiskers from ``low`` to ``high`` (never negative: a percentile CI need
    not contain its point estimate), filled or hollow."""
    xerr = [[max(x - low, 0)], [max(high - x, 0)]]
    face = colour if filled else "white"
    ax.errorbar(x, y, xerr=xerr, fmt=marker, color=colour, markerfacecolor=face, **style)


def detectable_band(ax, y, size: float, width: float = 7) -> None:
    """A grey band of ± ``size`` (what a test could detect) at height ``y``, under the points."""
    if np.isfinite(size):
        ax.plot([-size, size], [y, y], lw=width, color="#e3e3e3", solid_capstyle="butt", zorder=0)


def _forest_rows(diffs: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = primary(diffs)
    rows = rows[(rows["metric"] == metric) & (rows["verdict"] != NOT_JUDGED)].dropna(subset=["ci_low"])
    return rows.sort_values(["split_id", "model"]).reset_index(drop=True)


def _forest_axes(ax, rows: pd.DataFrame, metric: str, title: str | None = None) -> None:
    """One task's primary rows on ``ax``: each difference with its 95% CI, the band of ± what its test could
    detect in grey, filled (and * in the label) where significant."""
    significant = rows["verdict"].isin([BETTER, WORSE]).to_numpy()
    labels = [
        f"{'* ' if sig else ''}{s}: {m} vs {r}"
        for s, m, r, sig in zip(rows["split_id"], rows["model"], rows["reference"], significant, strict=True)
    ]
    for y, mdd in enumerate(rows["mdd"]):  # what each test could see
        detectable_band(ax, y, mdd)
    _points_with_ci(ax, rows, "diff", labels, filled=significant)
    ax.axvline(0, color="#444", lw=1)
    better = "left" if metric in LOWER_IS_BETTER else "right"
    ax.set_xlabel(
        f"{metric_label(metric, int(rows['k'].iloc[0]))} difference, 95% CI (better to the {better})\n"
        "filled, *: significant (Holm); grey: ± detectable difference"
    )
    if title:
        ax.set_title(title, loc="left", fontsize=11)


def forest(diffs: pd.DataFrame, metric: str) -> bytes | None:
    """The primary family on one task: the LM's and the fusion's difference from the reference, per unit,
    with 95% CIs; filled markers (and a * in the label) where the Holm-corrected test is significant, hollow
    where not; units the data card withheld are left out."""
    rows = _forest_rows(diffs, metric)
    if rows.empty:
        return None
    return draw_png(lambda ax: _forest_axes(ax, rows, metric), 1.2 + 0.32 * len(rows))


def forest_both(diffs: pd.DataFrame) -> bytes | None:
    """Every primary comparison against the reference in one figure: rating (MSE) above, ranking (NDCG@K)
    below, each unit and contender a row with its 95% CI, the detectable band, significant ones filled. What the
    report's first screen shows under its "In short" lines."""
    panels = [(metric, task, _forest_rows(diffs, metric)) for task, metric in TASKS]
    panels = [(m, t, r) for m, t, r in panels if not r.empty]
    if not panels:
        return None
    heights = [1.0 + 0.3 * len(rows) for _, _, rows in panels]
    fig, axes = pyplot().subplots(
        len(panels), 1, figsize=(9.0, sum(heights)), dpi=100, gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    for ax, (metric, task, rows) in zip(axes[:, 0], panels, strict=True):
        _forest_axes(ax, rows, metric, f"{task}: the contenders minus the best traditional model")
    return png_of(fig)


def sparsity_blocks(diffs: pd.DataFrame, title: str = "Less training data: does the LM need less?") -> list:
    """The sparsity axis (``--train-fractions``): sentences, a plot per task and the table; nothing when the run
    made no reduced split."""
    table = sparsity_rows(diffs)
    if table.empty:
        return []
    blocks: list = [
        ("h2", title),
        (
            "p",
            "Each split was also made with only a share of each user's training ratings (nested, seeded; the "
            "same validation and test folds, so the fractions are paired), and every model, the fusion and the "
            "LM (its profiles from the kept reviews only) trained on it. Each fraction's comparisons are primary "
            "tests of their own. A difference that shrinks as the share grows is what 'needs less data' means.",
        ),
        ("ul", sparsity_sentences(diffs)),
    ]
    for metric in ("mse", "ndcg"):
        figure = sparsity_curve(sparsity_frame(diffs), metric)
        if figure:
            caption = (
                f"{metric.upper()}: relative difference by share of training ratings kept (95% CI; filled: significant)"
            )
            blocks.append(("figure", f"sparsity_{metric}", caption, figure))
    blocks.append(("table", table))
    return blocks


def sparsity_curve(rows: pd.DataFrame, metric: str, by: tuple[str, ...] = ("base", "question")) -> bytes | None:
    """Relative difference (%) against the share of training ratings kept, one line per ``by`` group (a unit
    and question; the study adds the dataset), with 95% CIs; filled markers where significant."""
    rows = rows[(rows["metric"] == metric) & ~rows["verdict"].isin([NOT_JUDGED])].dropna(subset=["ci_low"])
    if rows.empty:
        return None
    groups = list(rows.groupby(list(by), sort=True))
    # colour: the question (the model; the ablation its own); line style: the unit (and dataset)
    places = list(dict.fromkeys(tuple(key[:-1]) for key, _ in groups))
    styles = ("-", ":", "-.", "--", (0, (5, 1)), (0, (1, 3)))

    def draw(ax):
        for n, (key, part) in enumerate(groups):
            part = part.sort_values("fraction")
            rel = np.array([relative(r)[:3] for _, r in part.iterrows()]) * 100
            x = part["fraction"].to_numpy() * (1 + 0.03 * (n - len(groups) / 2))  # apart, not on top of each other
            err = np.vstack([rel[:, 0] - rel[:, 1], rel[:, 2] - rel[:, 0]]).clip(min=0)
            ablation = part["kind"].iloc[0] == ABLATION
            # the ablation (fine-tuned vs frozen): the first colour no registered model takes, apart from both
            colour = PALETTE[len(REGISTRY) % len(PALETTE)] if ablation else colour_of(part["model"].iloc[0])
            style = styles[places.index(tuple(key[:-1])) % len(styles)]
            marker = "s" if ablation else "o"
            ax.errorbar(
                x, rel[:, 0], yerr=err, ls=style, color=colour, lw=1, capsize=2, label=" · ".join(map(str, key))
            )
            sig = part["verdict"].isin([BETTER, WORSE]).to_numpy()
            ax.scatter(x[sig], rel[sig, 0], color=colour, zorder=3, s=22, marker=marker)
            ax.scatter(x[~sig], rel[~sig, 0], facecolors="white", edgecolors=colour, zorder=3, s=22, marker=marker)
        fractions = sorted(set(rows["fraction"]))
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
        ax.minorticks_off()
        ax.axhline(0, color="#444", lw=1)
        better = "below" if metric in LOWER_IS_BETTER else "above"
        ax.set_xlabel("share of each user's training ratings kept")
        ax.set_ylabel(f"{metric.upper()} vs reference, % ({better} 0: better)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below, not on the data

    return draw_png(draw, 3.4 + 0.09 * len(groups))


def by_activity(results: pd.DataFrame, split_id: str, metric: str, k: int, silent=()) -> bytes | None:
    """Each model's value per user-activity bucket with its 95% CI; the bucket's n under its label (a ranking
    metric leaves out the models in ``silent``)."""
    rows = results[
        (results["split_id"] == split_id)
        & (results["metric"] == metric)
        & (results["k"] == k)
        & results["segment"].isin(ACTIVITY_ORDER)
        & ~(results["model"].isin(list(silent)) & (k > 0))
    ]
    if rows.empty:
        return None
    segments = [s for s in ACTIVITY_ORDER if s in set(rows["segment"])]
    n = rows.groupby("segment")["n_users"].max()
    models = list(dict.fromkeys(rows["model"]))

    def draw(ax):
        width = 0.8 / max(len(models), 1)
        for i, (model, g) in enumerate(rows.groupby("model", sort=False)):
            g = g.set_index("segment").reindex(segments)
            x = np.arange(len(segments)) - 0.4 + width * (i + 0.5)
            err = np.vstack([g["value"] - g["ci_low"], g["ci_high"] - g["value"]]).clip(min=0)
            ax.errorbar(x, g["value"], yerr=err, fmt="o-", color=colour_of(model), label=model, capsize=2, lw=1)
        ax.set_xticks(range(len(segments)), [f"{s.split(':')[1]}\nn={n[s]}" for s in segments])
        ax.set_xlabel("user activity (training ratings), users per bucket")
        ax.set_ylabel(f"{metric_label(metric, k)}, 95% CI")
        ax.set_title(f"{split_id}: {metric_label(metric, k)} by user activity")
        ax.legend(fontsize=7, ncol=2)

    return draw_png(draw)


def fusion_weights(fits: pd.DataFrame, unit: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rating weights, ranking weights) of the unit's fusion fit: per segment for a single split, the global
    weights and the ranking weights per fold for a k-fold unit."""
    rows = fits[(fits["split_id"].map(judged_unit) == unit) & (fits["model"] == FUSION)] if not fits.empty else fits
    if rows.empty:
        return pd.DataFrame(), pd.DataFrame()
    if len(rows) == 1:
        params = json_field(rows.iloc[0]["params"])
        rating = pd.DataFrame(params.get("rating_weights_", {})).T.round(3)
        rating = _flat(rating.reset_index(names="segment")) if not rating.empty else rating
        ranking = pd.DataFrame([params.get("ranking_weights_", {})]).round(3)
        return rating, ranking
    folds = [(s, json_field(p)) for s, p in zip(rows["split_id"], rows["params"], strict=True)]
    rating = pd.DataFrame([{"fold": s, **(p.get("rating_weights_", {}).get("global") or {})} for s, p in folds]).round(
        3
    )
    ranking = pd.DataFrame([{"fold": s, **(p.get("ranking_weights_") or {})} for s, p in folds]).round(3)
    return _flat(rating), _flat(ranking)


def in_short_blocks(diffs: pd.DataFrame) -> list:
    """The first block of every report: "In short", one plain line per contender (``in_short``), then every
    primary comparison in one figure (``forest_both``); nothing when the run has no primary comparison."""
    if diffs.empty or "family" not in diffs:
        return []
    lines = in_short(diffs)
    if not lines:
        return []
    blocks: list = [("h2", "In short"), ("ul", lines)]
    figure = forest_both(diffs)
    if figure:
        caption = (
            "Every primary comparison: the contenders minus the best traditional model, per unit, rating above "
            "and ranking below (95% CI; filled: significant after Holm; grey: what the test could detect)"
        )
        blocks.append(("figure", "in_short", caption, figure))
    return blocks


def build(
    results: pd.DataFrame,
    diffs: pd.DataFrame,
    fits: pd.DataFrame,
    splits: pd.DataFrame,
    meta: dict,
    card: dict | None = None,
) -> list:
    """The report's blocks. ``meta``: dataset, run_id, created (shown as given); ``card``: the data card."""
    from data_checks.card import card_lines

    blocks: list = [("h1", f"reclab experiment — {meta.get('dataset', '?')}")]
    blocks += in_short_blocks(diffs)
    warnings = (card or {}).get("warnings", [])
    if warnings:  # right under the answer: a warning changes it
        blocks.append(("warn", [f"Data card: {w['message']}" for w in warnings]))
    blocks.append(
        (
            "p",
            f"Run {meta.get('run_id', '?')}, {meta.get('created', '')}. Does the fine-tuned LM, or its fusion with "
            "collaborative filtering, beat the best traditional recommender? Asked before any test value was "
            "seen: per unit (a split; the folds of a k-fold split together) and task, the LM and the fusion "
            "against the traditional model best on validation, on test users, paired, Holm-corrected over these "
            'primary comparisons only; "better" and "worse" only where significant, with the smallest '
            "difference each test could see. Everything else is exploratory. Every model is scored with everything "
            "known before the test: its settings chosen on validation from a training-only fit, it is refitted on "
            "training + validation (the LM and its frozen encoder, too dear to refit, add the validation "
            "interactions to their users' histories), and no user's earlier item is a candidate.",
        )
    )
    blocks.append(("h2", "Verdict"))
    if diffs.empty or "family" not in diffs:
        blocks.append(
            (
                "p",
                "This run has no pre-registered comparisons (it predates them): re-run `python -m flows.train` on "
                "its workspace (its fits come from the cache) to judge it.",
            )
        )
    else:
        blocks.append(("p", bottom_line(diffs)))
        tuned = ablation_sentences(diffs)
        if tuned:
            blocks.append(("ul", tuned))
        table = verdict_rows(diffs, splits)
        if not table.empty:  # nothing judged: the bottom line and the Not judged table say so
            blocks += [("ul", task_sentences(diffs)), ("table", table)]
        withheld = not_judged_rows(diffs, splits)
        if not withheld.empty:
            blocks += [("h3", "Not judged"), ("table", withheld)]
        blocks += sparsity_blocks(diffs)
        found, small = for_whom(diffs)
        blocks.append(("h2", "For whom (exploratory)"))
        blocks.append(
            (
                "p",
                "Segments (user activity, item popularity) where the LM or the fusion differs from the reference, "
                "paired over the segment's users: the secondary family, Benjamini–Hochberg-corrected (false "
                "discovery rate 5%). A lead for the next experiment, not a conclusion of this one.",
            )
        )
        blocks.append(("table", found))
        if not small.empty:
            listed = [f"{s} {g} (n={int(n)})" for s, g, n in small.itertuples(index=False)]
            blocks.append(("p", "Too few users to test: " + ", ".join(listed) + "."))
    blocks += [("h2", "Cost"), ("table", cost_rows(fits))]
    encoders = encoder_rows(results, fits)
    if not encoders.empty:
        blocks += [
            ("h3", "Text models: accuracy against size and cost"),
            (
                "p",
                "The fine-tuned LM, its encoder variants (--lm-encoders) and the same encoder frozen (text_frozen), "
                "with their parameter counts, what trained and their fit seconds per split (exploratory: only the "
                "LM's comparisons with the reference and with its frozen encoder are primary).",
            ),
            ("table", encoders),
        ]
    if card:
        blocks += [("h2", "Data card"), ("ul", card_lines(card))]
        if not warnings:
            blocks.append(("p", "No threat to validity above the thresholds."))
    blocks += _appendix(results, diffs, fits, splits)
    blocks += [("h2", "Glossary"), ("ul", list(GLOSSARY))]
    return blocks


def _appendix(results, diffs, fits, splits) -> list:
    blocks: list = [("h2", "Appendix")]
    units = list(dict.fromkeys(judged_unit(s) for s in results["split_id"]))
    if (
        not splits.empty
        and splits.assign(unit=splits["split_id"].map(judged_unit)).groupby("protocol")["seed"].nunique().max() > 1
    ):
        summary = seed_summary(results, splits)
        summary = summary[summary["seeds"] > 1]
        summary["metric"] = [metric_label(m, int(k)) for m, k in zip(summary["metric"], summary["k"], strict=True)]
        summary["mean ± sd"] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(summary["mean"], summary["std"], strict=True)]
        table = summary.pivot_table(index=["protocol", "model"], columns="metric", values="mean ± sd", aggfunc="first")
        blocks += [("h3", "Across seeds (mean ± standard deviation)"), ("table", _flat(table.reset_index()))]
    has_family = not diffs.empty and "family" in diffs
    planned = planned_folds(splits)  # K of each k-fold unit
    for unit in units:
        if unit not in set(results["split_id"]):
            continue  # a k-fold unit whose pooled rows were not written (an interrupted judge)
        silent = no_ranking(fits, unit)
        folds = sorted({s for s in results["split_id"] if judged_unit(s) == unit and s != unit})
        expected = planned.get(unit, 0)
        pooled = ""
        if folds and len(folds) >= expected:
            pooled = f", {len(folds)} folds pooled: each rating tested once"
        elif folds:
            pooled = f", {len(folds)} of {expected} folds pooled: not every rating is tested"
        blocks.append(("h3", f"{unit} ({protocol_of(unit, splits)}{pooled})"))
        blocks.append(("table", metrics_table(results, unit, silent)))
        if silent:
            blocks.append(
                (
                    "p",
                    f"No ranking: {', '.join(silent)} gave every candidate the same score for every user "
                    "here; their ranking figures are what a random order gets: never a reference, never drawn.",
                )
            )
        alone = {task: name for task, name in fusion_alone(fits, unit).items() if name}
        if alone:
            blocks.append(
                (
                    "p",
                    "The fusion reduced to one component: "
                    + ", ".join(f"{t}: {n} alone" for t, n in alone.items())
                    + ".",
                )
            )
        table = differences_table(diffs, unit) if has_family else pd.DataFrame()
        if not table.empty:
            note = (
                "Paired differences on MSE and NDCG (model − reference; primary: Holm, secondary: "
                "Benjamini–Hochberg; detectable: 80% power at the family's α/m; n.s.: no detectable difference; "
                "every other metric's are in the eval_differences table):"
            )
            blocks += [("p", note), ("table", table)]
        here = results[results["split_id"] == unit]
        ks = here.loc[here["metric"] == "ndcg", "k"]
        for metric, mk in (("mse", 0), ("ndcg", int(ks.iloc[0]) if len(ks) else None)):
            if mk is None or here[here["metric"] == metric].empty:
                continue
            blocks += [
                ("p", f"{metric_label(metric, mk)} by user activity:"),
                ("table", segment_table(results, unit, metric, mk, ACTIVITY_ORDER)),
            ]
            for name, figure in (
                ("points", points_with_ci(results, unit, metric, mk, silent)),
                ("activity", by_activity(results, unit, metric, mk, silent)),
            ):
                if figure:
                    blocks.append(("figure", f"{unit}_{metric}_{name}", f"{unit}: {metric_label(metric, mk)}", figure))
        if not here[here["segment"].isin(ITEM_ORDER)].empty:
            blocks += [
                ("p", "MSE by item popularity:"),
                ("table", segment_table(results, unit, "mse", 0, ITEM_ORDER)),
            ]
        rating, ranking = fusion_weights(fits, unit)
        if not rating.empty:
            what = "per segment and global" if not folds else "global weights, per fold"
            blocks += [("p", f"Fusion rating blender (learned on validation), {what}:"), ("table", rating)]
        if not ranking.empty:
            blocks += [("p", "Fusion ranking weights of the standardised component scores:"), ("table", ranking)]
    return blocks


def _md_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(none)_"
    cells = frame.astype(object).where(frame.notna(), "").map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()]
    return "\n".join([header, rule, *body])


def to_markdown(blocks: list, figure_dir: str = "figures") -> tuple[str, dict[str, bytes]]:
    """Markdown text and the figure files it links ({relative path: png bytes})."""
    parts, files = [], {}
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            parts.append(block[1])
        elif kind == "ul":
            parts.append("\n".join(f"- {line}" for line in block[1]))
        elif kind == "warn":
            parts.append("\n".join(f"> **Warning.** {line}" for line in block[1]))
        elif kind == "table":
            parts.append(_md_table(block[1]))
        elif kind == "figure":
            path = f"{figure_dir}/{block[1]}.png"
            files[path] = block[3]
            parts.append(f"![{block[2]}]({path})")
    return "\n\n".join(parts) + "\n", files


def _linked(text: str) -> str:
    """``text`` escaped for HTML, its Markdown links to a section (``[words](#anchor)``) made hyperlinks."""
    return re.sub(r"\[([^\]]+)\]\(#([\w-]+)\)", r'<a href="#\2">\1</a>', html.escape(text))


def to_html(blocks: list) -> str:
    """One self-contained HTML page (inline CSS, figures as data URIs)."""
    body = []
    collapsed = False  # inside a <details> section (COLLAPSED), closed at the next h2 or at the end
    for block in blocks:
        kind = block[0]
        if kind == "h2" and collapsed:
            body.append("</details>")
            collapsed = False
        if kind == "h2" and block[1] in COLLAPSED:
            body.append(f'<details><summary><h2 id="{slug(block[1])}">{html.escape(block[1])}</h2></summary>')
            collapsed = True
        elif kind in ("h1", "h2", "h3"):
            body.append(f'<{kind} id="{slug(block[1])}">{html.escape(block[1])}</{kind}>')
        elif kind == "p":
            body.append(f"<p>{_linked(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_linked(line)}</li>" for line in block[1]) + "</ul>")
        elif kind == "warn":
            body.append(
                "".join(f'<p class="warn"><strong>Warning.</strong> {html.escape(line)}</p>' for line in block[1])
            )
        elif kind == "table":
            frame = _flat(block[1])
            body.append(
                frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
                if not frame.empty
                else "<p><em>(none)</em></p>"
            )
        elif kind == "figure":
            data = base64.b64encode(block[3]).decode()
            body.append(
                f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(block[2])}</figcaption></figure>"
            )
    if collapsed:
        body.append("</details>")
    style = (
        "summary h2{display:inline;cursor:pointer}details{margin:1em 0}"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
        "th{background:#f3f3f3;text-align:left}td{vertical-align:top}figure{margin:1em 0}img{max-width:100%}"
        ".warn{background:#fff4e5;border-left:4px solid #e69500;padding:.5em .8em;margin:.5em 0}"
    )
    title = html.escape(blocks[0][1]) if blocks else "reclab report"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
