"""The data card: what a dataset is, and what would make conclusions drawn from it untrustworthy.

Pure functions of DataFrames (the canonical interactions with their text, the item ids that have metadata,
the split assignments), computed by prepare and stored in DuckDB (``tasks.datacard``):

- description: size and density, the ratings distribution, interactions per user and per item, review
  coverage and length, metadata coverage;
- threats to validity, each a warning with the splits it affects:
  - ``variant_duplicates``: one user's identical review text on several items (product variants: colour,
    size), usually with the same rating. A model can copy the twin's rating, so rating error on such data
    measures memorisation, not recommendation;
  - ``text_twins``: held-out pairs (validation, test) whose normalised text also appears in the training fold
    by the same user, or by any user (copied or templated reviews);
  - ``small_fold``: a validation or test fold with fewer ratings or users than can be judged.

A warning changes the conclusion, not only the page: :func:`verdict_gates` turns the warnings that make a
split's metrics unable to judge (``text_twins``, ``small_fold``) into the reason its verdict is withheld (the
report's "not judged", with what to do). It also withholds ``few_candidates``: a split with fewer ranking
candidates (counted here, per split) than the run's cut-off K, which is the evaluation's setting
(``EvalConfig.k``) and so is judged when the run is, not when the data is prepared.
:func:`unit_sizes` gives each judged unit's test users before anything is trained, and with them the smallest
paired effect a primary test of that size could detect (in units of the per-user spread).

Text is compared after normalisation (lower case, punctuation and repeated spaces removed: near-identical
texts compare equal) and only when at least ``text_min_chars`` long, so that "Great!" or "Five stars" on
two items is not called a duplicate.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from data_checks import DataCardConfig
from models.evaluation import judged_unit
from models.evaluation.inference import detectable_in_sd

# The warnings that withhold a verdict, the tasks they withhold it for, and what to do about them.
GATES = {
    "text_twins": (
        ("rating", "ranking"),
        "re-run prepare with --text-duplicates collapse (one interaction per group of identical texts)",
    ),
    "small_fold": (
        ("rating", "ranking"),
        "test every rating with --protocols kfold, or make the fold larger (--fractions, --cold-item-fraction)",
    ),
    "few_candidates": (("ranking",), "hold out more items (--cold-item-fraction) or rank at a smaller --k"),
    # withholds the verdicts of the models that read text only (TEXT_GATED), not the others'
    "no_cold_content": (
        ("rating", "ranking"),
        "give the dataset an item metadata file (titles, categories, descriptions) or judge the text models on "
        "warm items only",
    ),
}
TEXT_GATED = ("no_cold_content",)
# the metadata fields a cold item can be known by (readers.schema's items columns that hold text)
METADATA_FIELDS = ("title", "brand", "category", "genres", "description")
# the questions each unit is planned to answer: 2 tasks (rating, ranking) x 3 (the LM and the fusion against the
# reference, the fine-tuned LM against its frozen encoder)
PLANNED_TESTS_PER_UNIT = 6

_NOT_WORD = re.compile(r"[^0-9a-z]+")


def normalise_text(text: pd.Series, min_chars: int) -> pd.Series:
    """Lower case, non-alphanumerics as single spaces, stripped; texts shorter than ``min_chars`` (after
    normalisation) or missing become NA (never compared)."""
    norm = text.fillna("").astype(str).str.lower().map(lambda t: _NOT_WORD.sub(" ", t).strip())
    return norm.where(norm.str.len() >= min_chars)


def variant_groups(interactions: pd.DataFrame, min_chars: int) -> pd.Series:
    """Per interaction: the size of its (user, normalised text) group; 1 for unique or short/missing text."""
    norm = normalise_text(interactions["review_text"], min_chars)
    keyed = pd.DataFrame({"user_id": interactions["user_id"].astype(str), "text": norm})
    size = keyed.groupby(["user_id", "text"], dropna=True)["text"].transform("size")
    return size.fillna(1).astype(int)


def _quantiles(values: pd.Series) -> dict[str, float]:
    if values.empty:
        return {}
    q = values.quantile([0.0, 0.5, 0.9, 1.0]).to_numpy()
    return {
        "min": float(q[0]),
        "median": float(q[1]),
        "mean": float(values.mean()),
        "p90": float(q[2]),
        "max": float(q[3]),
    }


def metadata_fields(items: pd.DataFrame | None) -> pd.DataFrame | None:
    """Item id -> which of :data:`METADATA_FIELDS` it has (non-empty), one boolean column each; None without
    a metadata file."""
    if items is None:
        return None
    present = {
        field: (items[field].fillna("").astype(str).str.strip().str.len() > 0).to_numpy()
        for field in METADATA_FIELDS
        if field in items
    }
    return pd.DataFrame(present, index=items["item_id"].astype(str).to_numpy())


def describe(interactions: pd.DataFrame, metadata_items: set[str] | None, config: DataCardConfig) -> dict:
    """The dataset's description (no split needed). ``metadata_items``: item ids with a metadata row, or
    None when the dataset has no metadata file."""
    n, users, items = len(interactions), interactions["user_id"].nunique(), interactions["item_id"].nunique()
    ratings = interactions["rating"].value_counts().sort_index()
    text = interactions["review_text"].fillna("").astype(str).str.strip()
    has_text = text.str.len() > 0
    per_user = interactions["user_id"].value_counts()
    per_item = interactions["item_id"].value_counts()
    groups = variant_groups(interactions, config.text_min_chars)
    in_groups = groups > 1
    card = {
        "interactions": n,
        "users": int(users),
        "items": int(items),
        "density": float(n / max(users * items, 1)),
        "ratings": {f"{value:g}": int(count) for value, count in ratings.items()},
        "rating_mean": float(interactions["rating"].mean()) if n else float("nan"),
        "top_rating_share": float(ratings.iloc[-1] / n) if n else float("nan"),
        "per_user": _quantiles(per_user),
        "per_item": _quantiles(per_item),
        "users_with_at_most_3": float((per_user <= 3).mean()) if users else float("nan"),
        "review_coverage": float(has_text.mean()) if n else float("nan"),
        "review_words": _quantiles(text[has_text].str.split().str.len()),
        "metadata_coverage": None,
        "variant_duplicates": {
            "interactions": int(in_groups.sum()),
            "share": float(in_groups.mean()) if n else 0.0,
            "groups": int(
                interactions[in_groups]
                .assign(t=normalise_text(interactions["review_text"], config.text_min_chars))
                .groupby(["user_id", "t"])
                .ngroups
            )
            if in_groups.any()
            else 0,
        },
    }
    if metadata_items is not None:
        known = interactions["item_id"].astype(str).isin(metadata_items)
        rated = pd.Series(interactions["item_id"].astype(str).unique())
        card["metadata_coverage"] = {
            "items": float(rated.isin(metadata_items).mean()) if len(rated) else float("nan"),
            "interactions": float(known.mean()) if n else float("nan"),
            "items_without": int((~rated.isin(metadata_items)).sum()),
        }
    return card


def split_checks(
    interactions: pd.DataFrame,
    assignments: pd.DataFrame,
    splits: pd.DataFrame,
    config: DataCardConfig,
    fields: pd.DataFrame | None = None,
) -> dict[str, dict]:
    """Per split: fold sizes, ranking candidates, and held-out pairs with a training text twin (same user /
    any user); on a cold-item split, how many of its cold test items have metadata and which fields
    (``fields``: :func:`metadata_fields`). ``assignments``: split_id, user_id, item_id, fold; ``splits``:
    split_id, protocol."""
    norm = (
        interactions[["user_id", "item_id"]]
        .astype(str)
        .assign(text=normalise_text(interactions["review_text"], config.text_min_chars))
    )
    n_items = interactions["item_id"].nunique()
    out = {}
    for split_id, protocol in splits[["split_id", "protocol"]].itertuples(index=False):
        folds = assignments[assignments["split_id"] == split_id].astype({"user_id": str, "item_id": str})
        rows = folds.merge(norm, on=["user_id", "item_id"], how="left")
        train = rows[rows["fold"] == "train"]
        held = rows[rows["fold"] != "train"]
        train_text = train.dropna(subset=["text"])
        twins = train_text[["user_id", "text"]].drop_duplicates()
        same_user = held.merge(twins, on=["user_id", "text"], how="left", indicator=True)["_merge"].eq("both")
        any_user = held["text"].isin(set(train_text["text"])).to_numpy()
        train_items = train["item_id"].nunique()
        candidates = n_items - train_items if protocol == "cold_items" else n_items
        out[split_id] = {
            "protocol": protocol,
            "folds": {
                fold: {"ratings": int((rows["fold"] == fold).sum()), "users": int(part["user_id"].nunique())}
                for fold, part in ((f, rows[rows["fold"] == f]) for f in ("train", "validation", "test"))
            },
            "ranking_candidates": int(candidates),
            "held_out_with_same_user_twin": float(same_user.to_numpy().mean()) if len(held) else 0.0,
            "held_out_with_any_user_twin": float(any_user.mean()) if len(held) else 0.0,
            "held_out_pairs": int(len(held)),
        }
        if protocol == "cold_items":
            cold = pd.Index(rows.loc[rows["fold"] == "test", "item_id"].unique()).difference(train["item_id"].unique())
            known = (
                fields.reindex(cold).fillna(False).astype(bool)
                if fields is not None
                else pd.DataFrame(index=cold, dtype=bool)
            )
            out[split_id]["cold_test_items"] = {
                "items": int(len(cold)),
                "with_metadata": int(known.any(axis=1).sum()) if len(known.columns) else 0,
                "fields": {field: int(known[field].sum()) for field in known.columns},
            }
    return out


def threats(card: dict, per_split: dict[str, dict], config: DataCardConfig) -> list[dict]:
    """Warnings above the thresholds: {code, splits (list; every split for dataset-wide ones), message}."""
    every = sorted(per_split)
    out = []
    variants = card["variant_duplicates"]
    if variants["share"] > config.max_variant_share:
        out.append(
            {
                "code": "variant_duplicates",
                "splits": every,
                "message": (
                    f"{variants['share']:.0%} of interactions ({variants['interactions']:,} in {variants['groups']:,} "
                    f"groups) share one user's identical review text with another item (product variants?), above "
                    f"{config.max_variant_share:.0%}: a model can copy a twin's rating, so low rating errors may "
                    "measure memorisation. Re-run prepare with --text-duplicates collapse to keep one per group."
                ),
            }
        )
    for split_id, s in per_split.items():
        # the same user's twin (variants) or anyone's (copied, templated or bot reviews): either leaks
        if max(s["held_out_with_same_user_twin"], s["held_out_with_any_user_twin"]) > config.max_twin_share:
            out.append(
                {
                    "code": "text_twins",
                    "splits": [split_id],
                    "message": (
                        f"{split_id}: {s['held_out_with_same_user_twin']:.0%} of {s['held_out_pairs']:,} held-out pairs "
                        f"have the same user's identical text in training (any user: "
                        f"{s['held_out_with_any_user_twin']:.0%}), above {config.max_twin_share:.0%}: test pairs "
                        "leak through their training twins."
                    ),
                }
            )
        for fold in ("validation", "test"):
            size = s["folds"][fold]
            if size["ratings"] < config.min_fold_ratings or size["users"] < config.min_fold_users:
                out.append(
                    {
                        "code": "small_fold",
                        "splits": [split_id],
                        "message": (
                            f"{split_id}: the {fold} fold has {size['ratings']:,} ratings from {size['users']:,} "
                            f"users, under the minimum ({config.min_fold_ratings} ratings, {config.min_fold_users} "
                            f"users): its figures are too noisy to judge."
                        ),
                    }
                )
        cold = s.get("cold_test_items")
        if cold and cold["items"] and cold["with_metadata"] / cold["items"] < config.min_cold_content:
            out.append(
                {
                    "code": "no_cold_content",
                    "splits": [split_id],
                    "message": (
                        f"{split_id}: {cold['with_metadata']:,} of {cold['items']:,} cold test items have metadata, "
                        f"under {config.min_cold_content:.0%}: a model that reads text sees the same empty profile "
                        "for the rest, so its cold-item figures measure nothing of the text."
                    ),
                }
            )
    return out


def unit_sizes(assignments: pd.DataFrame, alpha: float = 0.05) -> dict[str, dict]:
    """Per judged unit (a split; a k-fold protocol's folds together): its splits, test ratings and test users
    (each user once across the folds), and ``detectable_sd``: the smallest true paired effect, in units of the
    per-user standard deviation of the difference, that a primary test on that many users detects with 80%
    power at the planned family's Bonferroni level (α over 6 tests per unit: rating and ranking, the LM and
    the fusion against the reference, the LM against its frozen encoder). Known before anything is trained; the report turns it into metric units with the observed
    spread."""
    test = assignments[assignments["fold"] == "test"].assign(unit=lambda f: f["split_id"].map(judged_unit))
    units = {}
    for unit, part in test.groupby("unit", sort=True):
        units[unit] = {
            "splits": sorted(part["split_id"].unique().tolist()),
            "test_ratings": int(len(part)),
            "test_users": int(part["user_id"].nunique()),
        }
    level = alpha / max(PLANNED_TESTS_PER_UNIT * len(units), 1)
    for entry in units.values():
        entry["detectable_sd"] = detectable_in_sd(entry["test_users"], level)
        entry["alpha"] = level
    return units


def verdict_gates(card: dict | None, split_ids, k: int) -> dict[str, dict[str, str]]:
    """Judged unit -> task -> why its verdict is withheld (what the card found and what to do), for the
    units of ``split_ids``: a leaking or too-small split (its warnings), or fewer ranking candidates than the
    evaluation's cut-off ``k``. A unit is withheld when any of its splits is. A warning that concerns only the
    models that read text (:data:`TEXT_GATED`: cold items without metadata) is keyed ``"<task>@text"``: it
    withholds those models' verdicts (``models.evaluation.comparisons.judge``), not the others'."""
    out: dict[str, dict[str, list[str]]] = {}
    wanted = set(split_ids)

    def withhold(split_id: str, code: str, message: str) -> None:
        tasks, advice = GATES[code]
        for task in tasks:
            key = f"{task}@text" if code in TEXT_GATED else task
            reasons = out.setdefault(judged_unit(split_id), {}).setdefault(key, [])
            if not any(r.startswith(f"{code}:") for r in reasons):
                reasons.append(f"{code}: {message} What to do: {advice}.")

    for warning in (card or {}).get("warnings", []):
        if warning["code"] in ("text_twins", "small_fold", *TEXT_GATED):
            for split_id in sorted(wanted & set(warning["splits"])):
                withhold(split_id, warning["code"], warning["message"])
    for split_id, checks in sorted((card or {}).get("splits", {}).items()):
        if split_id in wanted and checks.get("ranking_candidates", k) < k:
            withhold(
                split_id,
                "few_candidates",
                f"{split_id}: only {checks['ranking_candidates']} items are ranking candidates, fewer than K = {k}: "
                "every model recalls everything at K.",
            )
    return {unit: {task: " ".join(reasons) for task, reasons in tasks.items()} for unit, tasks in out.items()}


def data_card(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    assignments: pd.DataFrame,
    splits: pd.DataFrame,
    config: DataCardConfig,
) -> dict:
    """The whole card: description, per-split checks, per judged unit its test size and what it can detect,
    and the warnings. ``items``: the metadata table (``item_id`` and any of :data:`METADATA_FIELDS`), None
    when the dataset has none."""
    fields = metadata_fields(items)
    card = describe(interactions, None if fields is None else set(fields.index), config)
    card["splits"] = split_checks(interactions, assignments, splits, config, fields)
    card["units"] = unit_sizes(assignments)
    card["warnings"] = threats(card, card["splits"], config)
    card["thresholds"] = config.model_dump()
    return _plain(card)


def _plain(value):
    """JSON-safe: numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def warning_paragraph(card: dict) -> str | None:
    """The warnings as one paragraph for a log or a terminal (None when there are none)."""
    if not card.get("warnings"):
        return None
    return "DATA CARD WARNING: " + " ".join(w["message"] for w in card["warnings"])


def card_lines(card: dict) -> list[str]:
    """The card as a few readable lines (the terminal summary and the report's data card section)."""
    ratings = card["ratings"]
    total = max(card["interactions"], 1)
    dist = " · ".join(f"{value}: {count / total:.0%}" for value, count in ratings.items())
    pu, pi, words = card["per_user"], card["per_item"], card["review_words"]
    lines = [
        f"{card['interactions']:,} ratings by {card['users']:,} users on {card['items']:,} items "
        f"(density {card['density']:.3%})",
        f"ratings {dist}; mean {card['rating_mean']:.2f}",
        f"ratings per user: median {pu.get('median', 0):g}, p90 {pu.get('p90', 0):g}, max {pu.get('max', 0):g} "
        f"({card['users_with_at_most_3']:.0%} of users have ≤ 3); per item: median {pi.get('median', 0):g}, "
        f"p90 {pi.get('p90', 0):g}, max {pi.get('max', 0):g}",
        f"review text on {card['review_coverage']:.0%} of ratings"
        + (f", median {words['median']:g} words (p90 {words['p90']:g})" if words else ""),
    ]
    meta = card.get("metadata_coverage")
    lines.append(
        "no item metadata file"
        if meta is None
        else f"item metadata for {meta['items']:.1%} of rated items ({meta['interactions']:.1%} of ratings; "
        f"{meta['items_without']:,} items without)"
    )
    variants = card["variant_duplicates"]
    lines.append(
        f"same user, same review text on several items: {variants['share']:.1%} of ratings "
        f"({variants['groups']:,} groups)"
    )
    for split_id, s in card.get("splits", {}).items():
        test = s["folds"]["test"]
        lines.append(
            f"{split_id}: test {test['ratings']:,} ratings from {test['users']:,} users, "
            f"{s['ranking_candidates']:,} ranking candidates; held-out pairs with a training text twin: "
            f"{s['held_out_with_same_user_twin']:.1%} same user, {s['held_out_with_any_user_twin']:.1%} any user"
        )
        cold = s.get("cold_test_items")
        if cold is not None:
            which = ", ".join(f"{field} {count:,}" for field, count in cold["fields"].items() if count)
            lines.append(
                f"{split_id}: {cold['with_metadata']:,} of {cold['items']:,} cold test items have metadata"
                + (f" ({which})" if which else "")
                + " — the only text a model can read for them"
            )
    for unit, u in card.get("units", {}).items():
        pooled = f" ({len(u['splits'])} folds, each rating tested once)" if len(u["splits"]) > 1 else ""
        lines.append(
            f"{unit}{pooled}: {u['test_ratings']:,} test ratings from {u['test_users']:,} users; a primary test "
            f"detects a paired effect of {u['detectable_sd']:.2f} per-user standard deviations or more "
            f"(80% power, α = {u['alpha']:.4f})"
        )
    return lines
