"""User and item profile texts for the language-model recommender, built from training reviews only.

A profile is the text an encoder reads for a user or an item: the user's (item's) training reviews, most
recent first, each as "summary. text" cut to ``review_chars``, at most ``max_reviews`` of them; an item's
profile starts with its metadata (title, brand, category, genres, description) when it has any.

A profile is also kept as its *pieces*: the metadata text, the rating history ("ratings: 5 4."), and each
review, in that order. A piece is the unit the encoder's frozen layers read (``models.lm.text_cache``): its
states are computed once per dataset and encoder and shared by every profile, fold variant, split and run
that holds it; the trainable top layers read a profile as the concatenation of its pieces' states.

Leakage inside training: a training pair (u, i) must never see its own review, or the model learns to read
the rating off the text. Every training pair gets a fold f in 0..folds-1 (seeded), and reads the *fold
variant* f of both profiles, built from the reviews of the *other* folds. At prediction time (validation,
test, serving) profiles use every training review: that is the "full" variant (fold -1).

Cold items: an item nobody rated in training has only its metadata (never reviews: those would come from the
held-out ratings). Every item with metadata also gets the *metadata-only* variant (-2), so that training can
show a share of its pairs the item as a cold item would read (``LMConfig.item_metadata_dropout``).
Metadata fields are named in the text ("title: … brand: … category: … description: …").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FULL = -1  # the fold variant that uses every training review
METADATA_ONLY = -2  # an item's metadata alone: what a cold item's profile holds, and what training may show
EMPTY_USER = "no reviews yet"
EMPTY_ITEM = "no description"


@dataclass
class Profiles:
    """Profile texts keyed by (kind, id, fold variant), their rating statistics, and each training pair's fold."""

    texts: dict[tuple[str, str, int], str] = field(default_factory=dict)
    # the same profiles as pieces (metadata, rating history, reviews: each one text the frozen layers read)
    pieces: dict[tuple[str, str, int], tuple[str, ...]] = field(default_factory=dict)
    pair_fold: pd.Series | None = None  # index (user_id, item_id) of the training pairs -> fold
    # (sum, count) of the star ratings of every review a variant is built from (not only those its text
    # shows); a key that is absent has none. The same leave-fold-out rules as the texts.
    stats: dict[tuple[str, str, int], tuple[float, int]] = field(default_factory=dict)

    def rating_stats(self, key: tuple[str, str, int]) -> tuple[float, int]:
        return self.stats.get(key, (0.0, 0))

    # A missing fold variant means "no other review": never fall back to the full profile there, which
    # holds the very review the pair must not see.
    def user(self, user_id: str, fold: int = FULL) -> str:
        return self.texts.get(("user", user_id, fold)) or EMPTY_USER

    def item(self, item_id: str, fold: int = FULL) -> str:
        return self.texts.get(("item", item_id, fold)) or EMPTY_ITEM

    def pieces_of(self, key: tuple[str, str, int]) -> tuple[str, ...]:
        """The pieces of profile ``key`` in reading order; the empty profile's text for a missing one (as
        :meth:`user` / :meth:`item`: never the full profile in place of a missing fold variant)."""
        return self.pieces.get(key) or ((EMPTY_USER,) if key[0] == "user" else (EMPTY_ITEM,))


def _review_text(frame: pd.DataFrame, review_chars: int) -> pd.Series:
    summary = frame["summary"].fillna("").astype(str).str.strip() if "summary" in frame else ""
    body = frame["review_text"].fillna("").astype(str).str.strip() if "review_text" in frame else ""
    text = (summary + ". " + body).str.strip(". ") if isinstance(summary, pd.Series) else body
    return text.str.slice(0, review_chars)


def _stars(ratings: pd.Series) -> np.ndarray:
    """Ratings as short words: 5.0 -> "5", 3.5 -> "3.5"."""
    return np.array([f"{float(r):g}" for r in ratings], dtype=object)


def _metadata_text(items: pd.DataFrame | None, description_chars: int = 300) -> dict[str, str]:
    if items is None or len(items) == 0:
        return {}
    parts = []
    for column, label in (
        ("title", "title: "),
        ("brand", "brand: "),
        ("category", "category: "),
        ("genres", "genres: "),
        ("tags", "tags: "),
        ("description", "description: "),
    ):
        if column in items:
            values = items[column].fillna("").astype(str).str.replace("|", ", ", regex=False)
            if column == "description":
                values = values.str.slice(0, description_chars)
            parts.append(values.where(values.str.len() == 0, label + values))
    if not parts:
        return {}
    joined = pd.concat(parts, axis=1).apply(lambda row: ". ".join(p for p in row if p), axis=1)
    return {str(k): v for k, v in zip(items["item_id"], joined, strict=True) if v}


def build_profiles(
    train: pd.DataFrame,
    items: pd.DataFrame | None = None,
    *,
    max_reviews: int = 8,
    review_chars: int = 300,
    folds: int = 2,
    seed: int = 0,
    rating_history: int = 0,
    folds_by_user: bool = False,
) -> Profiles:
    """Profiles from the training fold (``user_id``, ``item_id``, ``timestamp``, ``summary``, ``review_text``,
    and ``rating`` when ``rating_history`` > 0: the profile then starts with the star ratings of its
    ``rating_history`` most recent reviews, e.g. "ratings: 5 4 5.", the same leave-fold-out rules applying).

    Returns full profiles for every training user and every item (metadata-only for items without training
    reviews), the metadata-only variant of every item with metadata (:data:`METADATA_ONLY`, no rating
    statistics) and, for ``folds`` ≥ 2, the fold variants that training pairs read; with a ``rating`` column,
    the rating sum and count of every variant. ``folds_by_user``: each user's pairs all in one fold (seeded),
    so that an item's fold variant f holds no review of any user of fold f (the sequential LM reads every item
    of a user's sequence and catalogue that way).
    """
    if folds < 2:
        raise ValueError("folds must be at least 2: a training pair must be able to skip its own review")
    frame = train[["user_id", "item_id"]].astype(str).copy()
    frame["timestamp"] = train["timestamp"].to_numpy() if "timestamp" in train else 0
    frame["text"] = _review_text(train, review_chars).to_numpy()
    frame["stars"] = _stars(train["rating"]) if rating_history > 0 else ""
    frame["rating"] = train["rating"].to_numpy(dtype=float) if "rating" in train else np.nan
    order = np.lexsort((frame["item_id"].to_numpy(), frame["user_id"].to_numpy()))
    fold = np.empty(len(frame), dtype=np.int64)
    if folds_by_user:
        users, inverse = np.unique(frame["user_id"].to_numpy(), return_inverse=True)
        fold[:] = np.random.default_rng(seed).integers(0, folds, len(users))[inverse]
    else:
        fold[order] = np.random.default_rng(seed).integers(0, folds, len(frame))
    frame["fold"] = fold
    frame = frame.sort_values(["timestamp", "user_id", "item_id"], ascending=[False, True, True], kind="stable")
    metadata = _metadata_text(items)
    texts: dict[tuple[str, str, int], str] = {}
    pieces: dict[tuple[str, str, int], tuple[str, ...]] = {}
    stats: dict[tuple[str, str, int], tuple[float, int]] = {}

    text, stars = frame["text"].to_numpy(), frame["stars"].to_numpy()
    rating, fold = frame["rating"].to_numpy(dtype=float), frame["fold"].to_numpy()
    has_rating = "rating" in train

    def profile(rows: np.ndarray) -> tuple[list[str], str]:
        """(pieces, joined text) of a profile built from the reviews at ``rows`` (most recent first)."""
        reviews = [t for t in text[rows[:max_reviews]] if t]
        joined = " | ".join(reviews)
        if rating_history > 0 and len(rows):
            history = "ratings: " + " ".join(stars[rows[:rating_history]]) + "."
            return [history, *reviews], history + " " + joined
        return reviews, joined

    for kind, key in (("user", "user_id"), ("item", "item_id")):
        entities = frame[key].to_numpy()
        by_entity = np.argsort(entities, kind="stable")  # entity order; most recent first within one
        sorted_entities = entities[by_entity]
        starts = np.flatnonzero(np.r_[True, sorted_entities[1:] != sorted_entities[:-1]]) if len(by_entity) else []
        ends = np.r_[starts[1:], len(by_entity)] if len(by_entity) else []
        for begin, end in zip(starts, ends, strict=True):
            entity, group = sorted_entities[begin], by_entity[begin:end]
            variants = {FULL: group} | {f: group[fold[group] != f] for f in range(folds)}
            for variant, rows in variants.items():
                if len(rows) and has_rating:
                    stats[(kind, entity, variant)] = (float(rating[rows].sum()), len(rows))
                parts, joined = profile(rows)
                if kind == "item" and entity in metadata:
                    parts.insert(0, metadata[entity])
                    joined = metadata[entity] + (" | " + joined if joined else "")
                if parts:
                    pieces[(kind, entity, variant)] = tuple(parts)
                    texts[(kind, entity, variant)] = joined
    for entity, text in metadata.items():
        texts.setdefault(("item", entity, FULL), text)
        pieces.setdefault(("item", entity, FULL), (text,))
        texts[("item", entity, METADATA_ONLY)] = text
        pieces[("item", entity, METADATA_ONLY)] = (text,)
    pair_fold = frame.set_index(["user_id", "item_id"])["fold"].sort_index()
    return Profiles(texts=texts, pieces=pieces, pair_fold=pair_fold, stats=stats)
