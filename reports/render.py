"""The experiment report: blocks built from the evaluation tables, rendered to Markdown and to one
self-contained HTML file (plots embedded as PNG).

A report is a list of blocks, each one of: ``("h1"|"h2"|"h3", text)``, ``("p", text)``, ``("ul", [text])``,
``("warn", [text])``, ``("table", DataFrame)``, ``("figure", name, title, png bytes)``. :func:`build` makes
the blocks from DataFrames of ``eval_results``, ``eval_differences``, ``model_fits`` and ``splits`` rows
and the data card; :func:`to_markdown` and :func:`to_html` render them.

Layout: the verdict first (one screen: the answer across splits, one row per split and task, a forest plot
of the differences), then for whom, cost and the data card; every full table and per-split figure goes to
the appendix. Each model keeps one colour in every figure (:func:`colour_of`).
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

from models.registry import FUSION, REGISTRY
from reports.conclusions import (
    HEADLINE,
    LM,
    LOWER_IS_BETTER,
    cost_rows,
    fmt,
    for_whom,
    fusion_alone,
    json_field,
    metric_label,
    no_ranking,
    number,
    overall_answer,
    p_value,
    seed_summary,
    verdict_rows,
)

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


def differences_table(diffs: pd.DataFrame, split_id: str) -> pd.DataFrame:
    """Every paired comparison of the split (segment ``all``): difference, CI, both corrected tests, verdict."""
    rows = diffs[(diffs["split_id"] == split_id) & (diffs["segment"] == "all")]
    if rows.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "metric": [metric_label(m, int(k)) for m, k in zip(rows["metric"], rows["k"], strict=True)],
            "model": rows["model"],
            "vs": rows["reference"],
            "difference": [number(v, True) for v in rows["diff"]],
            "95% CI": [
                f"[{number(lo, True)}, {number(hi, True)}]"
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "t p (Holm)": [p_value(p) for p in rows["t_p_holm"]],
            "Wilcoxon p (Holm)": [p_value(p) for p in rows["wilcoxon_p_holm"]],
            "users better / worse": [
                f"{b:.0%} / {w:.0%}" for b, w in zip(rows["share_better"], rows["share_worse"], strict=True)
            ],
            "verdict": rows["verdict"] + np.where(rows["tests_disagree"].astype(bool), " (tests disagree)", ""),
        }
    ).reset_index(drop=True)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain string column labels and no columns name (no stray header row in HTML)."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame.columns.name = None
    return frame


def _figure(draw, height: float = 3.6) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, height), dpi=100)
    draw(ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def points_with_ci(results: pd.DataFrame, split_id: str, metric: str, k: int) -> bytes | None:
    """Each model's value as a point with its 95% CI (no bars from zero), best first, fixed colours."""
    rows = results[
        (results["split_id"] == split_id)
        & (results["metric"] == metric)
        & (results["k"] == k)
        & (results["segment"] == "all")
    ].dropna(subset=["value"])
    if rows.empty:
        return None
    rows = rows.sort_values("value", ascending=metric in LOWER_IS_BETTER).reset_index(drop=True)

    def draw(ax):
        _points_with_ci(ax, rows, "value", rows["model"])
        ax.set_xlabel(f"{metric_label(metric, k)}, 95% CI{' (lower is better)' if metric in LOWER_IS_BETTER else ''}")
        ax.set_title(f"{split_id}: {metric_label(metric, k)}")

    return _figure(draw, 0.9 + 0.32 * len(rows))


def _points_with_ci(ax, rows: pd.DataFrame, column: str, labels) -> None:
    """One point per row (``column``, coloured by its model) with its 95% CI whiskers, first row on top. A
    percentile CI need not contain its point estimate (skewed resamples): whiskers are never negative."""
    for y, row in rows.iterrows():
        ax.errorbar(
            row[column],
            y,
            xerr=[[max(row[column] - row["ci_low"], 0)], [max(row["ci_high"] - row[column], 0)]],
            fmt="o",
            color=colour_of(row["model"]),
            capsize=3,
        )
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def forest(diffs: pd.DataFrame, metric: str) -> bytes | None:
    """The LM's and the fusion's difference from the best traditional model, per split, with 95% CIs."""
    rows = diffs[
        (diffs["metric"] == metric)
        & (diffs["segment"] == "all")
        & (diffs["kind"] == "vs_best_traditional")
        & diffs["model"].isin([LM, FUSION])
    ].dropna(subset=["ci_low"])
    if rows.empty:
        return None
    rows = rows.sort_values(["split_id", "model"]).reset_index(drop=True)

    def draw(ax):
        labels = [
            f"{s}: {m} vs {r}" for s, m, r in zip(rows["split_id"], rows["model"], rows["reference"], strict=True)
        ]
        _points_with_ci(ax, rows, "diff", labels)
        ax.axvline(0, color="#444", lw=1)
        better = "left" if metric in LOWER_IS_BETTER else "right"
        ax.set_xlabel(f"{metric_label(metric, int(rows['k'].iloc[0]))} difference, 95% CI (better to the {better})")

    return _figure(draw, 0.9 + 0.32 * len(rows))


def by_activity(results: pd.DataFrame, split_id: str, metric: str, k: int) -> bytes | None:
    """Each model's value per user-activity bucket with its 95% CI; the bucket's n under its label."""
    rows = results[
        (results["split_id"] == split_id)
        & (results["metric"] == metric)
        & (results["k"] == k)
        & results["segment"].isin(ACTIVITY_ORDER)
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

    return _figure(draw)


def fusion_weights(fits: pd.DataFrame, split_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rating weights per segment, ranking weights) of the split's fusion fit."""
    row = fits[(fits["split_id"] == split_id) & (fits["model"] == FUSION)]
    if row.empty:
        return pd.DataFrame(), pd.DataFrame()
    params = json_field(row.iloc[0]["params"])
    rating = pd.DataFrame(params.get("rating_weights_", {})).T.round(3)
    rating = _flat(rating.reset_index(names="segment")) if not rating.empty else rating
    ranking = pd.DataFrame([params.get("ranking_weights_", {})]).round(3)
    return rating, ranking


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
    blocks.append(
        (
            "p",
            f"Run {meta.get('run_id', '?')}, {meta.get('created', '')}. Does the fine-tuned LM, fused with "
            "collaborative filtering, beat the best traditional recommender? Test folds; each claim is a paired "
            'difference over the same users with a 95% bootstrap CI and Holm-corrected tests; "better" and '
            '"worse" only where significant. Fusion weights were learned on validation only.',
        )
    )
    warnings = (card or {}).get("warnings", [])
    if warnings:
        blocks.append(("warn", [f"Data card: {w['message']}" for w in warnings]))
    blocks.append(("h2", "Verdict"))
    if diffs.empty:
        blocks.append(("p", "This run has no paired differences (it predates them): re-run `python -m flows.train`."))
    else:
        verdicts = verdict_rows(diffs, fits, splits, card)
        blocks.append(("ul", overall_answer(verdicts, diffs)))
        blocks.append(("table", verdicts.drop(columns=["answer"])))
        blocks.append(("ul", [f"{r['split']}, {r['task']}: {r['answer']}" for _, r in verdicts.iterrows()]))
        for metric in ("mse", "ndcg"):
            figure = forest(diffs, metric)
            if figure:
                blocks.append(
                    (
                        "figure",
                        f"verdict_{metric}",
                        f"{metric.upper()}: LM and fusion minus the best traditional model, per split (95% CI)",
                        figure,
                    )
                )
        found, small = for_whom(diffs)
        blocks.append(("h2", "For whom"))
        blocks.append(
            (
                "p",
                "Segments (user activity, item popularity) where the LM or the fusion differs significantly from "
                "the best traditional model, paired over the segment's users; elsewhere no detectable difference.",
            )
        )
        blocks.append(("table", found))
        if not small.empty:
            listed = [f"{s} {g} (n={int(n)})" for s, g, n in small.itertuples(index=False)]
            blocks.append(("p", "Too few users to judge (not tested): " + ", ".join(listed) + "."))
    blocks += [("h2", "Cost"), ("table", cost_rows(fits))]
    if card:
        blocks += [("h2", "Data card"), ("ul", card_lines(card))]
        if not warnings:
            blocks.append(("p", "No threat to validity above the thresholds."))
    blocks += _appendix(results, diffs, fits, splits)
    return blocks


def _appendix(results, diffs, fits, splits) -> list:
    blocks: list = [("h2", "Appendix")]
    split_ids = list(dict.fromkeys(results["split_id"]))
    protocol = splits.set_index("split_id")["protocol"].to_dict() if not splits.empty else {}
    if not splits.empty and splits.groupby("protocol")["seed"].nunique().max() > 1:
        summary = seed_summary(results, splits)
        summary = summary[summary["seeds"] > 1]
        summary["metric"] = [metric_label(m, int(k)) for m, k in zip(summary["metric"], summary["k"], strict=True)]
        summary["mean ± sd"] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(summary["mean"], summary["std"], strict=True)]
        table = summary.pivot_table(index=["protocol", "model"], columns="metric", values="mean ± sd", aggfunc="first")
        blocks += [("h3", "Across seeds (mean ± standard deviation)"), ("table", _flat(table.reset_index()))]
    for split_id in split_ids:
        silent = no_ranking(fits, split_id)
        blocks.append(("h3", f"Split {split_id} ({protocol.get(split_id, '?')})"))
        blocks.append(("table", metrics_table(results, split_id, silent)))
        if silent:
            blocks.append(
                (
                    "p",
                    f"No ranking: {', '.join(silent)} gave every candidate the same score for every user "
                    "here; their ranking figures are what a random order gets, and they are never a reference.",
                )
            )
        alone = {task: name for task, name in fusion_alone(fits, split_id).items() if name}
        if alone:
            blocks.append(
                (
                    "p",
                    "The fusion reduced to one component: "
                    + ", ".join(f"{t}: {n} alone" for t, n in alone.items())
                    + ".",
                )
            )
        table = differences_table(diffs, split_id) if not diffs.empty else pd.DataFrame()
        if not table.empty:
            blocks += [("p", "Paired differences (model − reference):"), ("table", table)]
        here = results[results["split_id"] == split_id]
        ks = here.loc[here["metric"] == "ndcg", "k"]
        for metric, mk in (("mse", 0), ("ndcg", int(ks.iloc[0]) if len(ks) else None)):
            if mk is None or here[here["metric"] == metric].empty:
                continue
            blocks += [
                ("p", f"{metric_label(metric, mk)} by user activity:"),
                ("table", segment_table(results, split_id, metric, mk, ACTIVITY_ORDER)),
            ]
            for name, figure in (
                ("points", points_with_ci(results, split_id, metric, mk)),
                ("activity", by_activity(results, split_id, metric, mk)),
            ):
                if figure:
                    blocks.append(
                        ("figure", f"{split_id}_{metric}_{name}", f"{split_id}: {metric_label(metric, mk)}", figure)
                    )
        if not here[here["segment"].isin(ITEM_ORDER)].empty:
            blocks += [
                ("p", "MSE by item popularity:"),
                ("table", segment_table(results, split_id, "mse", 0, ITEM_ORDER)),
            ]
        rating, ranking = fusion_weights(fits, split_id)
        if not rating.empty:
            blocks += [
                ("p", "Fusion rating blender (learned on validation), per segment and global:"),
                ("table", rating),
            ]
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


def to_html(blocks: list) -> str:
    """One self-contained HTML page (inline CSS, figures as data URIs)."""
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in block[1]) + "</ul>")
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
    style = (
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
