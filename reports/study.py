"""The cross-dataset study's report (pure: DataFrames and dicts in, report blocks out; ``reports.render``
writes them as Markdown and HTML).

It follows the single report's rules: the verdict first; each dataset's rows are that dataset's own primary
tests (pre-registered, reference chosen on validation, Holm within the dataset's run), with what each test
could detect; a unit the dataset's data card condemns is "not judged" and counts nowhere; a dataset that
failed is reported, never silently dropped.

Across datasets, per protocol, task and contender (the primary question asked of every dataset):

- a **random-effects meta-analysis** (DerSimonian–Laird, :func:`models.evaluation.inference.random_effects`)
  of the relative difference (difference over the reference's value on that dataset: MSE and NDCG are on
  each dataset's own scale), each dataset's standard error the paired test's over the same reference value,
  one unit per protocol and dataset (the first seed), with τ² (the between-dataset variance) and I² (the share
  of the spread beyond chance). The pooled p-values are Holm-corrected over the study's analyses. With three
  datasets τ² is estimated from two degrees of freedom: the pooled CI is wide when the datasets disagree, as
  it should be;
- a **replicability count**: the largest u for which "the contender is better on at least u of the N judged
  datasets" holds (partial conjunction tests, Benjamini & Heller 2008, with Fisher's combination of the
  datasets' one-sided p-values, tested in order u = 1, 2, ... at the Bonferroni level α/M over the study's M
  analyses; Dror, Baumer, Bogomolov and Reichart, TACL 2017).

The study's bottom line speaks only of these. Segments are pooled the same way (random effects), as
exploration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.evaluation import judged_unit, train_fraction
from models.evaluation.comparisons import (
    ABLATION,
    BEST_TRADITIONAL,
    BETTER,
    LOWER_IS_BETTER,
    NOT_JUDGED,
    PRIMARY_METRIC,
    SAME,
    SEGMENTED,
    TOO_FEW,
    WORSE,
)
from models.evaluation.inference import (
    minimum_detectable_difference,
    one_sided_p,
    random_effects,
    replicability_count,
)
from models.evaluation.stats import holm
from models.registry import FUSION, LANGUAGE, REGISTRY
from reports.conclusions import (
    CONTENDER_NAMES,
    json_field,
    metric_label,
    percent,
    primary,
    see,
    sparsity_frame,
    sparsity_rows,
    unit_protocols,
    verdict_rows,
)

LM = LANGUAGE[0]
ALPHA = 0.05


def dataset_verdicts(datasets: list[dict]) -> pd.DataFrame:
    """One row per dataset, judged unit, task and contender: the dataset's own primary verdict row with the
    dataset in front."""
    parts = []
    for d in _completed(datasets):
        rows = verdict_rows(d["differences"], d["splits"])
        if not rows.empty:
            parts.append(rows.assign(dataset=d["name"]))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["dataset", *[c for c in out.columns if c != "dataset"]]]


def not_judged(datasets: list[dict]) -> pd.DataFrame:
    """Every dataset's units and tasks whose verdict its data card withheld, with the reason."""
    from reports.conclusions import not_judged_rows

    parts = [not_judged_rows(d["differences"], d["splits"]).assign(dataset=d["name"]) for d in _completed(datasets)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["dataset", *[c for c in out.columns if c != "dataset"]]]


def _protocol_rows(datasets: list[dict]) -> pd.DataFrame:
    """Every dataset's primary rows with ``dataset`` and ``protocol``; one unit per protocol and dataset (the
    first seed), so that seeds never count as datasets."""
    parts = []
    for d in _completed(datasets):
        tuned = primary(d["differences"], ABLATION)  # what fine-tuning adds: its own analyses, under its own name
        tuned = tuned.assign(model=[f"{m} vs {r}" for m, r in zip(tuned["model"], tuned["reference"], strict=True)])
        rows = pd.concat([primary(d["differences"]), tuned], ignore_index=True)
        if rows.empty:
            continue
        units = unit_protocols(d["splits"]).set_index("unit")
        protocol = rows["split_id"].map(units["protocol"]) if not units.empty else "?"
        fraction = rows["split_id"].map(train_fraction)  # each share of training ratings is an analysis of its own
        rows = rows.assign(
            dataset=d["name"],
            protocol=[p if f >= 1 else f"{p} ({f:.0%} of training)" for p, f in zip(protocol, fraction, strict=True)],
            seed=rows["split_id"].map(units["seed"]) if not units.empty else 0,
        )
        first = rows.groupby("protocol")["seed"].transform("min")
        parts.append(rows[rows["seed"] == first])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def meta_analysis(datasets: list[dict], alpha: float = ALPHA) -> pd.DataFrame:
    """Per protocol, task and contender: the datasets' verdicts, the random-effects pooled relative difference
    with its 95% CI, Holm p (over the study's analyses), τ², I², what the pooled test could detect, and how
    many datasets it is better on at least (the replicability count)."""
    rows = _protocol_rows(datasets)
    if rows.empty:
        return pd.DataFrame()
    out = []
    for (protocol, metric, model), part in rows.groupby(["protocol", "metric", "model"], sort=True):
        judged = part[~part["verdict"].isin([NOT_JUDGED, TOO_FEW])].dropna(subset=["se"])
        judged = judged[judged["reference_value"].abs() > 0]
        identical = int(((judged["se"] == 0) & (judged["diff"] == 0)).sum())
        counts = part["verdict"].value_counts()
        scale = judged["reference_value"].abs()
        pooled = random_effects(judged["diff"] / scale, judged["se"] / scale)
        lower = metric in LOWER_IS_BETTER
        one_sided = [
            one_sided_p(t, int(n), lower) for t, n in zip(judged["diff"] / judged["se"], judged["n_users"], strict=True)
        ]
        out.append(
            {
                "protocol": protocol,
                "task": f"{'ranking' if int(part['k'].iloc[0]) else 'rating'} ({metric_label(metric, int(part['k'].iloc[0]))})",
                "contender": model,
                "metric": metric,
                "datasets": int(part["dataset"].nunique()),
                "judged": len(judged),
                "identical": identical,
                "worse": int(counts.get(WORSE, 0)),
                "better / worse / n.s. / not judged": f"{counts.get(BETTER, 0)} / {counts.get(WORSE, 0)} / "
                f"{counts.get(SAME, 0) + counts.get(TOO_FEW, 0)} / {counts.get(NOT_JUDGED, 0)}",
                "estimate": pooled["estimate"],
                "se": pooled["se"],
                "ci_low": pooled["ci_low"],
                "ci_high": pooled["ci_high"],
                "p": pooled["p"],
                "tau2": pooled["tau2"],
                "i2": pooled["i2"],
                "with_spread": pooled["k"],  # the datasets the pooling can weigh (a standard error above 0)
                "one_sided": one_sided,
            }
        )
    table = pd.DataFrame(out)
    tested = table["p"].notna() & (table["with_spread"] >= 2)  # poolable: two judged datasets with a spread
    table["holm_p"] = np.nan
    if tested.any():
        table.loc[tested, "holm_p"] = holm(table.loc[tested, "p"].to_numpy())
    level = alpha / max(int(tested.sum()), 1)
    table["detectable"] = [minimum_detectable_difference(se, level) for se in table["se"]]
    table["better on at least"] = [replicability_count(p, level) if len(p) else 0 for p in table["one_sided"]]
    table["pooled"] = tested
    table["analyses"] = int(tested.sum())
    return table.drop(columns=["one_sided"])


def meta_table(meta: pd.DataFrame) -> pd.DataFrame:
    """:func:`meta_analysis` for reading: the pooled difference in percent, its CI, Holm p, heterogeneity."""
    if meta.empty:
        return meta
    pooled = meta["pooled"]

    def unpooled(row) -> str:
        if row["judged"] >= 2 and row["identical"] == row["judged"]:
            return "not pooled: identical to the reference on every judged dataset"
        return "not pooled (fewer than 2 judged)"

    return pd.DataFrame(
        {
            "protocol": meta["protocol"],
            "task": meta["task"],
            "contender": meta["contender"],
            "datasets: better / worse / n.s. / not judged": meta["better / worse / n.s. / not judged"],
            "pooled relative difference [95% CI]": [
                f"{percent(r['estimate'])} [{percent(r['ci_low'])}, {percent(r['ci_high'])}]" if ok else unpooled(r)
                for (_, r), ok in zip(meta.iterrows(), pooled, strict=True)
            ],
            "Holm p": [_p(p) if ok else "" for p, ok in zip(meta["holm_p"], pooled, strict=True)],
            "detectable": [percent(v, False) if ok else "" for v, ok in zip(meta["detectable"], pooled, strict=True)],
            "τ²": [f"{v:.2g}" if ok else "" for v, ok in zip(meta["tau2"], pooled, strict=True)],
            "I²": [f"{v:.0%}" if ok and np.isfinite(v) else "" for v, ok in zip(meta["i2"], pooled, strict=True)],
            "better on at least": [
                f"{u} of {n}" for u, n in zip(meta["better on at least"], meta["judged"], strict=True)
            ],
        }
    )


def _p(p: float) -> str:
    from reports.conclusions import p_value

    return p_value(p)


def conclusions(datasets: list[dict], alpha: float = ALPHA, pooled: pd.DataFrame | None = None) -> list[str]:
    """The study's answer: a bottom line from the pooled analyses and the replicability counts, then per task
    and contender the datasets' own verdicts counted; honest when nothing is significant. ``pooled``:
    :func:`meta_analysis` of ``datasets`` where the caller has it (so too :func:`in_short`, :func:`study_forest`)."""
    rows = _protocol_rows(datasets)
    if rows.empty:
        return ["No dataset produced primary comparisons: nothing can be concluded."]
    meta = meta_analysis(datasets, alpha) if pooled is None else pooled
    found = []
    for _, m in meta.iterrows():
        if m["pooled"] and m["holm_p"] < alpha:
            lower = m["metric"] in LOWER_IS_BETTER
            helps = (m["estimate"] < 0) if lower else (m["estimate"] > 0)
            where = (
                f"better on at least {m['better on at least']} of {m['judged']} datasets"
                if helps
                else f"worse in {m['worse']} of the {m['judged']} datasets' own tests"
            )
            found.append(
                f"{_name(m['contender'])} is {'better' if helps else 'worse'} on {m['protocol']} {m['task']}, pooled "
                f"{percent(m['estimate'])} [{percent(m['ci_low'])}, {percent(m['ci_high'])}] (Holm p "
                f"{_p(m['holm_p'])}, I² {m['i2']:.0%}), {where}"
            )
    analyses = int(meta["pooled"].sum())
    if found:
        lines = [f"Bottom line ({analyses} pooled analyses across datasets, Holm-corrected): " + "; ".join(found) + "."]
    else:
        sizes = meta.loc[meta["pooled"], "detectable"].abs().dropna()
        span = (
            f" (the pooled tests could see {percent(sizes.min(), False)} to {percent(sizes.max(), False)} or more)"
            if len(sizes)
            else ""
        )
        lines = [
            f"Bottom line: in none of the {analyses} analyses pooled across datasets do the fine-tuned LM or the "
            f"fusion differ detectably from the reference"
            + (", or the LM from its frozen encoder" if meta["contender"].str.contains(" vs ").any() else "")
            + f"{span}."
        ]
    replicated = meta[meta["better on at least"] > 0]
    for _, m in replicated.iterrows():
        lines.append(
            f"{_name(m['contender'])[0].upper()}{_name(m['contender'])[1:]} is better than {_against(m['contender'])} on at least {m['better on at least']} "
            f"of {m['judged']} judged datasets on {m['protocol']} {m['task']} (partial conjunction, Fisher, α/M)."
        )
    for task, metric in PRIMARY_METRIC.items():
        for model, words in CONTENDER_NAMES:
            here = rows[(rows["model"] == model) & (rows["metric"] == metric)]
            if here.empty:
                continue
            counts = here["verdict"].value_counts()
            judged = len(here) - counts.get(NOT_JUDGED, 0)
            better = sorted(
                f"{d} · {u}"
                for d, u, v in zip(here["dataset"], here["split_id"], here["verdict"], strict=True)
                if v == BETTER
            )
            worse = sorted(
                f"{d} · {u}"
                for d, u, v in zip(here["dataset"], here["split_id"], here["verdict"], strict=True)
                if v == WORSE
            )
            text = (
                f"{task.capitalize()} ({metric.upper()}), {words}, each dataset's own primary test: better on "
                f"{len(better)} of {judged} judged units"
                + (f" ({', '.join(better)})" if better else "")
                + f", worse on {len(worse)}"
                + (f" ({', '.join(worse)})" if worse else "")
                + f", no detectable difference on {judged - len(better) - len(worse)}"
            )
            if counts.get(NOT_JUDGED, 0):
                text += f"; {counts.get(NOT_JUDGED, 0)} not judged (data card)"
            lines.append(text + ".")
    failed = [d["name"] for d in datasets if d["status"] != "completed"]
    if failed:
        lines.append(f"Not compared (their experiment did not complete): {', '.join(failed)}.")
    return lines


def in_short(datasets: list[dict], alpha: float = ALPHA, pooled: pd.DataFrame | None = None) -> list[str]:
    """The study's answer a person reads first: one plain line per contender, for rating and for ranking, from
    the pooled analyses (the largest significant pooled change, or the largest pooled difference the tests
    could see), else, where no analysis could pool, each dataset's own verdicts counted; then what was not
    judged or did not complete. Made from the same rows as the verdict, never written by hand."""
    from reports.conclusions import TASKS

    rows = _protocol_rows(datasets)
    if rows.empty:
        return ["No dataset produced primary comparisons: nothing can be concluded."]
    meta = meta_analysis(datasets, alpha) if pooled is None else pooled
    lines = []
    for model, words in CONTENDER_NAMES:
        said = []
        for task, metric in TASKS:
            verb = "rates" if task == "rating" else "ranks"
            here = meta[(meta["contender"] == model) & (meta["metric"] == metric)] if not meta.empty else meta
            if here.empty:
                continue
            pooled = here[here["pooled"]]
            significant = pooled[pooled["holm_p"] < alpha]
            if len(significant):
                m = significant.loc[significant["estimate"].abs().idxmax()]
                lower = m["metric"] in LOWER_IS_BETTER
                helps = (m["estimate"] < 0) if lower else (m["estimate"] > 0)
                said.append(
                    f"{verb} {percent(m['estimate'], False)} {'better' if helps else 'worse'} than the reference, "
                    f"pooled over {m['judged']} datasets ({m['protocol']} {m['task']} {percent(m['estimate'])}; "
                    "significant)"
                )
            elif len(pooled):
                seen = pooled["detectable"].abs().max()
                said.append(
                    f"{verb} as well as the reference, pooled over datasets (no difference as large as "
                    f"{percent(seen, False)}, what the pooled tests could see)"
                )
            else:
                own = rows[(rows["model"] == model) & (rows["metric"] == metric)]
                judged = own[~own["verdict"].isin([NOT_JUDGED, TOO_FEW])]
                if judged.empty:
                    continue
                better, worse = (int((judged["verdict"] == v).sum()) for v in (BETTER, WORSE))
                said.append(
                    f"{verb} better on {better} and worse on {worse} of {len(judged)} judged units (each dataset's own "
                    "test: too few datasets to pool)"
                )
        name = f"{words[0].upper()}{words[1:]}"
        if said or not rows[rows["model"] == model].empty:
            lines.append(f"{name} " + ("; ".join(said) if said else "is not judged on any dataset") + ".")
    withheld = rows[rows["verdict"] == NOT_JUDGED]
    if len(withheld):
        lines.append(f"Not judged: {len(withheld)} comparisons, withheld by their data cards {see('Not judged')}.")
    failed = [d["name"] for d in datasets if d["status"] != "completed"]
    if failed:
        lines.append(f"Not compared (their experiment did not complete): {', '.join(failed)}.")
    return lines


def _name(model: str) -> str:
    if " vs " in model:  # an ablation: a language model against its ablation (the frozen encoder, the id twin)
        ablated, ablation = model.split(" vs ")
        return f"{dict(CONTENDER_NAMES).get(ablated, ablated)} against {ablation}"
    return dict(CONTENDER_NAMES).get(model, model)


def _against(model: str) -> str:
    return model.split(" vs ")[1] if " vs " in model else "the reference"


def traits(datasets: list[dict]) -> pd.DataFrame:
    """The datasets' traits side by side, from their data cards."""
    rows = []
    for d in _completed(datasets):
        card = d["card"] or {}
        ratings = {float(k): v for k, v in (card.get("ratings") or {}).items()}
        meta = card.get("metadata_coverage") or {}
        cold = [
            s.get("ranking_candidates")
            for s in (card.get("splits") or {}).values()
            if s.get("protocol") == "cold_items"
        ]
        rows.append(
            {
                "dataset": d["name"],
                "ratings": card.get("interactions"),
                "users": card.get("users"),
                "items": card.get("items"),
                "density": _pct(card.get("density"), 3),
                "ratings per user (median)": (card.get("per_user") or {}).get("median"),
                "ratings per item (median)": (card.get("per_item") or {}).get("median"),
                "users with ≤ 3 ratings": _pct(card.get("users_with_at_most_3")),
                "review coverage": _pct(card.get("review_coverage")),
                "review words (median)": (card.get("review_words") or {}).get("median"),
                "metadata coverage (items)": _pct(meta.get("items")) if meta else "no metadata",
                "mean rating": round(card["rating_mean"], 2) if card.get("rating_mean") is not None else None,
                "rating skew": round(skewness(ratings), 2) if ratings else None,
                "cold-item candidates": cold[0] if cold else None,
                "data warnings": ", ".join(dict.fromkeys(w["code"] for w in card.get("warnings", []))) or "none",
            }
        )
    return pd.DataFrame(rows)


def skewness(histogram: dict[float, int]) -> float:
    """Sample skewness E[(r − μ)³] / σ³ of ratings given as {value: count} (negative: piled at the top)."""
    values = np.array(list(histogram), dtype=float)
    counts = np.array(list(histogram.values()), dtype=float)
    n = counts.sum()
    if n == 0:
        return float("nan")
    mean = (values * counts).sum() / n
    var = ((values - mean) ** 2 * counts).sum() / n
    return float(((values - mean) ** 3 * counts).sum() / n / var**1.5) if var > 0 else 0.0


def pooled_segments(datasets: list[dict]) -> pd.DataFrame:
    """The LM's and the fusion's difference from the reference per segment, pooled across datasets as
    relative differences by random effects (exploratory: the secondary family), with the count of
    per-dataset verdicts."""
    parts = [
        d["differences"].assign(dataset=d["name"])
        for d in _completed(datasets)
        if not d["differences"].empty and "family" in d["differences"]
    ]
    if not parts:
        return pd.DataFrame()
    diffs = pd.concat(parts, ignore_index=True)
    seg = diffs[
        (diffs["kind"] == BEST_TRADITIONAL)
        & diffs["model"].isin([LM, FUSION])
        & diffs["metric"].isin(SEGMENTED)
        & (diffs["segment"] != "all")
    ].copy()
    seg["protocol"] = seg["split_id"].map(lambda s: judged_unit(s).rsplit("_s", 1)[0])
    # one unit per protocol and dataset (the first seed), so that seeds do not count as datasets
    seg = seg.sort_values("split_id").drop_duplicates(["dataset", "protocol", "model", "metric", "k", "segment"])
    rows = []
    for (protocol, model, metric, k, segment), part in seg.groupby(["protocol", "model", "metric", "k", "segment"]):
        tested = part[~part["verdict"].isin([TOO_FEW, NOT_JUDGED])].dropna(subset=["se"])
        tested = tested[tested["reference_value"].abs() > 0]
        scale = tested["reference_value"].abs()
        pooled = ci = "not pooled (fewer than 2 datasets tested)"
        heterogeneity = ""
        if len(tested) >= 2:
            result = random_effects(tested["diff"] / scale, tested["se"] / scale)
            pooled = percent(result["estimate"])
            ci = f"[{percent(result['ci_low'])}, {percent(result['ci_high'])}]"
            heterogeneity = f"{result['i2']:.0%}" if np.isfinite(result["i2"]) else ""
        counts = part["verdict"].value_counts()
        rows.append(
            {
                "protocol": protocol,
                "segment": segment,
                "metric": metric_label(metric, int(k)),
                "model": model,
                "datasets": part["dataset"].nunique(),
                "better / worse / n.s. / too few or not judged": f"{counts.get(BETTER, 0)} / {counts.get(WORSE, 0)} / "
                f"{counts.get(SAME, 0)} / {counts.get(TOO_FEW, 0) + counts.get(NOT_JUDGED, 0)}",
                "pooled relative difference": pooled,
                "95% CI": ci,
                "I²": heterogeneity,
                "better is": "lower" if metric in LOWER_IS_BETTER else "higher",
            }
        )
    return pd.DataFrame(rows)


MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">")  # one per dataset, in name order (cycled past nine)


def study_forest(datasets: list[dict], alpha: float = ALPHA, pooled: pd.DataFrame | None = None) -> bytes | None:
    """The study's first figure: rating (MSE) left, ranking (NDCG@K) right, one row per protocol and contender
    (the primary questions, each against its dataset's validation-chosen reference). In a row, each dataset's
    relative difference (contender − reference, over the reference) with its 95% CI, a marker of its own,
    filled where its dataset's test is significant; under them the random-effects pooled estimate as a diamond
    over ± what the pooled test could detect (grey), filled where significant after Holm over the study's
    analyses. Units the data card withheld are left out."""
    from reports.conclusions import TASKS
    from reports.render import ci_point, colour_of, detectable_band, png_of, pyplot

    rows = _protocol_rows(datasets)
    if rows.empty:
        return None
    contenders = [m for m, _ in CONTENDER_NAMES]
    rows = rows[rows["model"].isin(contenders) & ~rows["verdict"].isin([NOT_JUDGED, TOO_FEW])].dropna(subset=["se"])
    rows = rows[rows["reference_value"].abs() > 0]
    if rows.empty:
        return None
    meta = (meta_analysis(datasets, alpha) if pooled is None else pooled).set_index(["protocol", "metric", "contender"])
    groups = sorted(
        {(p, m) for p, m in zip(rows["protocol"], rows["model"], strict=True)},
        key=lambda g: (g[0], contenders.index(g[1])),
    )
    names = sorted(rows["dataset"].unique())
    slots = np.linspace(-0.36, 0.36, len(names) + 1)  # each dataset's place in its row, the pooled diamond last
    panels = [(task, metric) for task, metric in TASKS if (rows["metric"] == metric).any()]
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(11.0, 1.9 + 0.55 * len(groups)), dpi=100, sharey=True, squeeze=False
    )
    for ax, (task, metric) in zip(axes[0], panels, strict=True):
        for g, (protocol, model) in enumerate(groups):
            colour = colour_of(model)
            part = rows[(rows["protocol"] == protocol) & (rows["model"] == model) & (rows["metric"] == metric)]
            for _, r in part.iterrows():
                i, scale = names.index(r["dataset"]), abs(r["reference_value"])
                est, lo, hi = r["diff"] / scale, r["ci_low"] / scale, r["ci_high"] / scale
                significant = r["verdict"] in (BETTER, WORSE)
                marker = MARKERS[i % len(MARKERS)]
                ci_point(ax, est, g + slots[i], lo, hi, colour, significant, marker, ms=5, capsize=2)
            pooled = meta.loc[(protocol, metric, model)] if (protocol, metric, model) in meta.index else None
            if pooled is not None and pooled["pooled"]:
                y, est, lo, hi = g + slots[-1], pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
                detectable_band(ax, y, pooled["detectable"], width=6)
                face = colour if pooled["holm_p"] < alpha else "white"
                ax.fill([lo, est, hi, est], [y, y - 0.1, y, y + 0.1], facecolor=face, edgecolor=colour, lw=1.5)
            if g:
                ax.axhline(g - 0.5, color="#ddd", lw=0.8)
        ax.axvline(0, color="#444", lw=1)
        ax.xaxis.set_major_formatter(lambda v, _: f"{100 * v:+.0f}%")
        ax.grid(axis="x", alpha=0.3)
        k = int(rows.loc[rows["metric"] == metric, "k"].iloc[0])
        better = "left" if metric in LOWER_IS_BETTER else "right"
        ax.set_title(f"{task} ({metric_label(metric, k)})", loc="left", fontsize=11)
        ax.set_xlabel(f"relative difference from the reference,\n95% CI (better to the {better})")
    axes[0, 0].set_yticks(range(len(groups)), [f"{p} · {_name(m).removeprefix('the ')}" for p, m in groups])
    axes[0, 0].set_ylim(len(groups) - 0.5, -0.5)
    handles = [
        plt.Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="#555", markerfacecolor="white", label=n)
        for i, n in enumerate(names)
    ]
    handles.append(plt.Line2D([], [], ls="", marker="D", color="#555", label="pooled (random effects)"))
    columns = min(len(handles), 4)
    legend_rows = -(-len(handles) // columns)
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", ncol=columns, frameon=False, fontsize=9)
    return png_of(fig, rect=(0, 0, 1, 1 - (0.1 + 0.25 * legend_rows) / height))


def cost(datasets: list[dict]) -> pd.DataFrame:
    """Mean fit seconds and peak memory (GiB) per model and dataset."""
    rows = []
    for d in _completed(datasets):
        fits = d["fits"]
        if fits.empty:
            continue
        peaks = [json_field(e).get("peak_memory_gib") for e in fits.get("extras", [None] * len(fits))]
        frame = fits.assign(peak=pd.to_numeric(pd.Series(peaks, index=fits.index), errors="coerce"))
        for model, part in frame.groupby("model", sort=False):
            rows.append(
                {
                    "dataset": d["name"],
                    "model": model,
                    "fit s (mean per split)": round(float(part["fit_seconds"].mean()), 1),
                    "peak memory GiB": round(float(part["peak"].max()), 2) if part["peak"].notna().any() else None,
                }
            )
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    order = {m: n for n, m in enumerate(REGISTRY)}
    return out.sort_values(["dataset", "model"], key=lambda c: c.map(order) if c.name == "model" else c)


def sparsity(datasets: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the sparsity axis's primary rows of every dataset with ``dataset``, the readable table with the
    dataset in front): per dataset, unit, task and question, the difference at each share of training
    ratings kept."""
    frames, tables = [], []
    for d in _completed(datasets):
        rows = sparsity_frame(d["differences"])
        if rows.empty:
            continue
        frames.append(rows.assign(dataset=d["name"]))
        tables.append(sparsity_rows(d["differences"]).assign(dataset=d["name"]))
    if not frames:
        return pd.DataFrame(), pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    return pd.concat(frames, ignore_index=True), table[["dataset", *[c for c in table.columns if c != "dataset"]]]


def study_blocks(datasets: list[dict], meta: dict) -> list:
    """The study report's blocks. ``datasets``: per dataset ``name``, ``status`` ("completed" or "failed"),
    ``error`` (failed), and, completed, ``run_id``, ``differences``, ``fits``, ``splits``, ``card``,
    ``seconds``; ``meta``: study id, created."""
    from reports.conclusions import GLOSSARY

    names = [d["name"] for d in datasets]
    blocks: list = [("h1", f"reclab study — {len(datasets)} dataset(s): {', '.join(names)}")]
    pooled = meta_analysis(datasets)  # the pooled rows behind the lines, the figure, the verdict and its table
    blocks += [("h2", "In short"), ("ul", in_short(datasets, pooled=pooled))]
    figure = study_forest(datasets, pooled=pooled)
    if figure:
        caption = (
            "Every contender against each dataset's reference, per protocol: each dataset's relative difference "
            "(95% CI; filled: significant in its dataset after Holm) and the random-effects pooled estimate "
            "(diamond; filled: significant after Holm over the study's analyses; grey: ± what it could detect); "
            "rating left, ranking right"
        )
        blocks.append(("figure", "study_in_short", caption, figure))
    blocks.append(
        (
            "p",
            f"Study {meta.get('study_id', '?')}, {meta.get('created', '')}. Where does the fine-tuned LM, or its "
            "fusion with collaborative filtering, beat the best traditional recommender? Each dataset ran the "
            "full experiment on its own: per unit and task, the LM and the fusion against the traditional model "
            "best on that dataset's validation, Holm-corrected within its run. Across datasets: the relative "
            "differences pooled by random effects (DerSimonian–Laird, with τ² and I²), Holm over the study's "
            "analyses, and on how many datasets each contender is better at least (partial conjunction tests).",
        )
    )
    warn = [
        f"{d['name']}: the experiment did not complete: {d.get('error', '?')}"
        for d in datasets
        if d["status"] != "completed"
    ]
    for d in _completed(datasets):
        warn += [f"{d['name']}: data card: {w['message']}" for w in (d["card"] or {}).get("warnings", [])]
    if warn:
        blocks.append(("warn", warn))
    blocks += [("h2", "Verdict"), ("ul", conclusions(datasets, pooled=pooled))]
    meta_rows = meta_table(pooled)
    if not meta_rows.empty:
        blocks += [
            ("p", "Pooled across datasets (random effects), per protocol, task and contender:"),
            ("table", meta_rows),
        ]
    verdicts = dataset_verdicts(datasets)
    if not verdicts.empty:
        blocks += [("p", "Each dataset's own primary tests:"), ("table", verdicts)]
    withheld = not_judged(datasets)
    if not withheld.empty:
        blocks += [("h3", "Not judged"), ("table", withheld)]
    curves, table = sparsity(datasets)
    if not table.empty:
        from reports.render import sparsity_curve

        blocks += [
            ("h2", "Less training data: does the LM need less?"),
            (
                "p",
                "Each dataset's splits were also made with only a share of each user's training ratings (nested, "
                "seeded, the same validation and test folds); every model trained at each share. Per dataset, the "
                "contenders' relative difference from that share's validation-chosen reference, and the "
                "fine-tuned LM's from its frozen encoder (primary tests of each dataset's run); the pooled rows "
                "above give each share across datasets.",
            ),
        ]
        for metric in ("mse", "ndcg"):
            figure = sparsity_curve(curves, metric, by=("dataset", "question"))
            if figure:
                caption = f"{metric.upper()}: relative difference by share of training ratings kept, per dataset"
                blocks.append(("figure", f"study_sparsity_{metric}", caption, figure))
        blocks.append(("table", table))
    blocks += [
        ("h2", "Where: the datasets' traits"),
        ("table", traits(datasets)),
        ("h2", "For whom: segments across datasets (exploratory)"),
        (
            "p",
            "The LM's and the fusion's difference from each dataset's reference per segment (user activity, item "
            "popularity), pooled across datasets as relative differences by random effects, one unit per "
            "protocol and dataset; a segment tested on fewer than two datasets is not pooled. Exploratory: a lead "
            "for the next experiment, not a conclusion of this one.",
        ),
        ("table", pooled_segments(datasets)),
        ("h2", "Cost"),
        ("table", cost(datasets)),
        ("h2", "Glossary"),
        (
            "ul",
            [
                *GLOSSARY,
                "Pooled relative difference: the datasets' (contender − reference) / reference, combined by a "
                "DerSimonian–Laird random-effects meta-analysis; τ²: the between-dataset variance of the true "
                "effects; I²: the share of the datasets' spread beyond chance.",
                "Better on at least u of N: partial conjunction tests (Benjamini & Heller 2008) on the judged "
                "datasets' one-sided p-values, Fisher's combination, in order u = 1, 2, ... at α over the study's "
                "analyses.",
            ],
        ),
    ]
    return blocks


def _completed(datasets: list[dict]) -> list[dict]:
    return [d for d in datasets if d["status"] == "completed"]


def _pct(value, digits: int = 0):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return f"{100 * value:.{digits}f}%"
