"""The experiment report: blocks built from the evaluation tables, rendered to Markdown and to one
self-contained HTML file (plots embedded as PNG).

A report is a list of blocks, each one of: ``("h1"|"h2"|"h3", text)``, ``("p", text)``, ``("ul", [text])``,
``("table", DataFrame)``, ``("figure", name, title, png bytes)``. :func:`build` makes the blocks from
DataFrames of ``eval_results``, ``eval_tests``, ``model_fits`` and ``splits`` rows; :func:`to_markdown`
and :func:`to_html` render them.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
import pandas as pd

from models.registry import FUSION, LANGUAGE
from reports.conclusions import (
    HEADLINE,
    LOWER_IS_BETTER,
    cost_conclusions,
    fmt,
    metric_label,
    ranking_k,
    seed_summary,
    segment_conclusions,
    split_conclusions,
)

ACTIVITY_ORDER = ("users:≤3", "users:4-10", "users:11-25", "users:>25")
ITEM_ORDER = ("items:head", "items:tail", "items:cold")


def metrics_table(results: pd.DataFrame, split_id: str, segment: str = "all") -> pd.DataFrame:
    """Models × headline metrics, 'value [95% CI]'."""
    rows = results[
        (results["split_id"] == split_id) & (results["segment"] == segment) & results["metric"].isin(HEADLINE)
    ].copy()
    if rows.empty:
        return pd.DataFrame()
    rows["column"] = [metric_label(m, int(k)) for m, k in zip(rows["metric"], rows["k"], strict=True)]
    rows["cell"] = rows.apply(fmt, axis=1)
    order = list(dict.fromkeys(rows["column"]))
    table = rows.pivot_table(index="model", columns="column", values="cell", aggfunc="first")
    return table.reindex(columns=order).fillna("—").reset_index()


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
    return table.reset_index()


def tests_table(tests: pd.DataFrame, split_id: str, metric: str, k: int, reference: str) -> pd.DataFrame:
    """Paired tests of every model against ``reference`` on one metric."""
    rows = tests[
        (tests["split_id"] == split_id)
        & (tests["metric"] == metric)
        & (tests["k"] == k)
        & ((tests["model_a"] == reference) | (tests["model_b"] == reference))
    ].copy()
    if rows.empty:
        return pd.DataFrame()
    flip = rows["model_a"] == reference
    rows["model"] = np.where(flip, rows["model_b"], rows["model_a"])
    rows["mean diff (model − ref)"] = np.where(flip, -rows["mean_diff"], rows["mean_diff"])
    out = rows[["model", "mean diff (model − ref)", "n_users", "t_p", "t_p_holm", "wilcoxon_p_holm"]]
    return out.rename(columns={"t_p": "t p", "t_p_holm": "t p (Holm)", "wilcoxon_p_holm": "Wilcoxon p (Holm)"})


def _figure(draw) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    draw(ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def bars_with_ci(results: pd.DataFrame, split_id: str, metric: str, k: int) -> bytes | None:
    rows = results[
        (results["split_id"] == split_id)
        & (results["metric"] == metric)
        & (results["k"] == k)
        & (results["segment"] == "all")
    ].dropna(subset=["value"])
    if rows.empty:
        return None
    rows = rows.sort_values("value", ascending=metric in LOWER_IS_BETTER)

    def draw(ax):
        errors = np.vstack([rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]]).clip(min=0)
        ax.barh(rows["model"], rows["value"], xerr=errors, color="#4c72b0", capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric_label(metric, k)} (95% CI){' — lower is better' if metric in LOWER_IS_BETTER else ''}")
        ax.set_title(f"{split_id}: {metric_label(metric, k)}")
        lo = max(0.0, float(rows["ci_low"].min()) * 0.9) if metric in LOWER_IS_BETTER else 0.0
        ax.set_xlim(left=lo)

    return _figure(draw)


def by_segment_lines(results: pd.DataFrame, split_id: str, metric: str, k: int) -> bytes | None:
    rows = results[
        (results["split_id"] == split_id)
        & (results["metric"] == metric)
        & (results["k"] == k)
        & results["segment"].isin(ACTIVITY_ORDER)
    ]
    if rows.empty:
        return None
    segments = [s for s in ACTIVITY_ORDER if s in set(rows["segment"])]

    def draw(ax):
        for model, g in rows.groupby("model"):
            g = g.set_index("segment").reindex(segments)
            ax.plot(segments, g["value"], marker="o", label=model)
        ax.set_xlabel("user activity (training ratings)")
        ax.set_ylabel(metric_label(metric, k))
        ax.set_title(f"{split_id}: {metric_label(metric, k)} by user activity")
        ax.legend(fontsize=7, ncol=2)

    return _figure(draw)


def fusion_weights(fits: pd.DataFrame, split_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rating weights per segment, ranking weights) of the split's fusion fit."""
    row = fits[(fits["split_id"] == split_id) & (fits["model"] == FUSION)]
    if row.empty:
        return pd.DataFrame(), pd.DataFrame()
    params = row.iloc[0]["params"]
    params = json.loads(params) if isinstance(params, str) else params
    rating = pd.DataFrame(params.get("rating_weights_", {})).T.round(3)
    rating = rating.reset_index(names="segment") if not rating.empty else rating
    ranking = pd.DataFrame([params.get("ranking_weights_", {})]).round(3)
    return rating, ranking


def cost_table(fits: pd.DataFrame) -> pd.DataFrame:
    if fits.empty:
        return pd.DataFrame()
    table = fits.pivot_table(index="model", columns="split_id", values="fit_seconds", aggfunc="first").round(1)
    table["total fit s"] = table.sum(axis=1).round(1)
    return table.reset_index()


def build(results: pd.DataFrame, tests: pd.DataFrame, fits: pd.DataFrame, splits: pd.DataFrame, meta: dict) -> list:
    """The report's blocks. ``meta``: dataset, run_id, created, command (shown as given)."""
    blocks: list = [("h1", f"reclab experiment — {meta.get('dataset', '?')}")]
    blocks.append(
        (
            "p",
            f"Run {meta.get('run_id', '?')}, {meta.get('created', '')}. Metrics on the test fold of "
            "each split with 95% bootstrap CIs over users; paired tests over the same users, Holm-corrected "
            "across model pairs. Fusion weights were learned on validation only.",
        )
    )
    split_ids = list(dict.fromkeys(results["split_id"]))
    protocol = splits.set_index("split_id")["protocol"].to_dict() if not splits.empty else {}
    blocks.append(("h2", "Conclusions"))
    for split_id in split_ids:
        blocks.append(("h3", f"{split_id} ({protocol.get(split_id, '?')})"))
        lines = split_conclusions(results, tests, split_id) + segment_conclusions(results, split_id)
        lines += cost_conclusions(fits, split_id)
        blocks.append(("ul", lines or ["no results"]))
    if not splits.empty and splits.groupby("protocol")["seed"].nunique().max() > 1:
        summary = seed_summary(results, splits)
        summary = summary[summary["seeds"] > 1]
        summary["metric"] = [metric_label(m, int(k)) for m, k in zip(summary["metric"], summary["k"], strict=True)]
        summary["mean ± sd"] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(summary["mean"], summary["std"], strict=True)]
        table = summary.pivot_table(index=["protocol", "model"], columns="metric", values="mean ± sd", aggfunc="first")
        blocks += [("h2", "Across seeds (mean ± standard deviation)"), ("table", table.reset_index())]
    for split_id in split_ids:
        blocks.append(("h2", f"Split {split_id} ({protocol.get(split_id, '?')})"))
        blocks += [("h3", "All models, all headline metrics"), ("table", metrics_table(results, split_id))]
        here = results[results["split_id"] == split_id]
        k = ranking_k(here)
        for metric, mk in (("mse", 0), ("ndcg", k)):
            if mk is None or here[(here["metric"] == metric)].empty:
                continue
            blocks += [
                ("h3", f"{metric_label(metric, mk)} by user activity"),
                ("table", segment_table(results, split_id, metric, mk, ACTIVITY_ORDER)),
            ]
            figure = bars_with_ci(results, split_id, metric, mk)
            if figure:
                blocks.append(
                    ("figure", f"{split_id}_{metric}_bars", f"{split_id}: {metric_label(metric, mk)}", figure)
                )
            figure = by_segment_lines(results, split_id, metric, mk)
            if figure:
                blocks.append(("figure", f"{split_id}_{metric}_activity", f"{metric} by user activity", figure))
            for reference in (FUSION, *LANGUAGE):
                table = tests_table(tests, split_id, metric, mk, reference)
                if not table.empty:
                    blocks += [
                        ("h3", f"Paired tests against {reference}: {metric_label(metric, mk)}"),
                        ("table", table),
                    ]
                    break
        if not here[here["segment"].isin(ITEM_ORDER)].empty:
            blocks += [
                ("h3", "MSE by item popularity"),
                ("table", segment_table(results, split_id, "mse", 0, ITEM_ORDER)),
            ]
        rating, ranking = fusion_weights(fits, split_id)
        if not rating.empty or not ranking.empty:
            blocks.append(("h3", "Fusion weights (learned on validation)"))
            if not rating.empty:
                blocks += [
                    ("p", "Rating blender, per segment (user activity | item popularity), and global:"),
                    ("table", rating),
                ]
            if not ranking.empty:
                blocks += [("p", "Ranking: weights of the per-user standardised component scores:"), ("table", ranking)]
    blocks += [("h2", "Training time (seconds to fit, per split)"), ("table", cost_table(fits))]
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
        elif kind == "table":
            frame = block[1]
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
        "th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%}"
    )
    title = html.escape(blocks[0][1]) if blocks else "reclab report"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
