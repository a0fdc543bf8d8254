"""Evaluation: split protocols, metrics, statistics (CIs, paired tests) and the harness that applies them.

The split protocols' names and config are defined here, so that reading them (the command line's choices)
imports no pandas; the protocols themselves are :mod:`models.evaluation.split`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Protocol = Literal["random", "temporal", "cold_items", "kfold"]
PROTOCOLS: tuple[str, ...] = ("random", "temporal", "cold_items", "kfold")  # every protocol known
# what a run makes unless told: every rating tested once (kfold, K = 5), each user's latest rating, cold items
DEFAULT_PROTOCOLS: tuple[str, ...] = ("kfold", "temporal", "cold_items")
TRAIN, VALIDATION, TEST = "train", "validation", "test"
_FOLD_SUFFIX = re.compile(r"_f\d+$")
_FRACTION = re.compile(r"_t(\d+)(?=_f\d+$|$)")


def judged_unit(split_id: str) -> str:
    """The unit a split's verdict belongs to: a k-fold split's folds (``kfold_s0_f1`` ... ``kfold_s0_f5``) are
    judged together as ``kfold_s0``; any other split is its own unit."""
    return _FOLD_SUFFIX.sub("", split_id) if split_id.startswith("kfold_") else split_id


def train_fraction(split_id: str) -> float:
    """The share of each user's training ratings a split keeps (``random_s0_t25``: 0.25; ``kfold_s0_t10_f3``:
    0.1); 1.0 for a split with every training rating."""
    found = _FRACTION.search(split_id)
    return int(found.group(1)) / 100 if found else 1.0


def full_data_unit(unit: str) -> str:
    """The unit with every training rating that a reduced unit's test folds come from (``random_s0_t25`` ->
    ``random_s0``)."""
    return _FRACTION.sub("", unit)


def with_fraction(split_id: str, fraction: float) -> str:
    """The id of ``split_id`` reduced to ``fraction`` of each user's training ratings: ``_t<percent>`` before a
    k-fold split's fold suffix (``kfold_s0_t25_f1``, judged as ``kfold_s0_t25``), else at the end; the id
    itself for 1.0."""
    if fraction >= 1.0:
        return split_id
    tag = f"_t{round(fraction * 100)}"
    fold = _FOLD_SUFFIX.search(split_id)
    return split_id[: fold.start()] + tag + fold.group(0) if fold else split_id + tag


class SplitConfig(BaseModel):
    """Which splits to make and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocols: tuple[Protocol, ...] = Field(
        DEFAULT_PROTOCOLS,
        description="kfold (every rating tested once over K folds), temporal (each user's last interactions held "
        "out), cold_items, random (one 80/10/10 split)",
    )
    seed: int = Field(0, description="the split's seed")
    fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="random: train / validation / test shares of interactions."
    )
    cold_item_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="cold_items: share of items held out (half validation, half test)."
    )
    folds: int = Field(
        5,
        ge=2,
        le=20,
        description="kfold: K, the number of folds (each rating is in exactly one test fold; each user with at "
        "least K ratings is in every test fold).",
    )
    kfold_validation: float = Field(
        0.125,
        gt=0.0,
        lt=0.5,
        description="kfold: share of each fold's training part carved out as its validation set (0.125 with "
        "K = 5: 10% of all ratings, as the random split's).",
    )
    train_fractions: tuple[float, ...] = Field(
        (1.0,),
        description="the sparsity axis: each split is also made with only this share of each user's training "
        "ratings (seeded, nested: a smaller share's ratings are inside a larger one's; every user keeps at least "
        "one), the same validation and test folds, e.g. 0.1 0.25 1.0 (1.0: the split itself)",
    )
    min_user_interactions: int = Field(
        3, ge=3, description="temporal: users with fewer interactions keep them all in training."
    )
    kcore: int | None = Field(
        None,
        ge=0,
        description="Optional k-core filter before splitting: drop users and items with fewer than k interactions, repeatedly, until every remaining user and item has at least k (default: none; 0 is none too).",
    )

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        if abs(sum(self.fractions) - 1.0) > 1e-9 or min(self.fractions) < 0:
            raise ValueError(f"split fractions {self.fractions} must be non-negative and sum to 1")
        bad = [f for f in self.train_fractions if not 0.01 <= f <= 1.0 or abs(f * 100 - round(f * 100)) > 1e-9]
        if bad or not self.train_fractions:
            raise ValueError(
                f"train fractions {self.train_fractions}: each must be a whole percentage between 0.01 and 1 "
                "(e.g. 0.1 0.25 1.0)"
            )
        return self

    def split_id(self, protocol: str) -> str:
        """Stable name of one split (of a k-fold protocol: of its judged unit), e.g. ``random_s0``,
        ``temporal_s0_k5`` or ``kfold_s0``."""
        return f"{protocol}_s{self.seed}" + (f"_k{self.kcore}" if self.kcore else "")

    def split_ids(self, protocol: str) -> list[str]:
        """The splits a protocol makes with every training rating: one, or K for kfold (``kfold_s0_f1`` ...
        ``kfold_s0_f5``); :meth:`all_split_ids` adds the reduced ones."""
        unit = self.split_id(protocol)
        return [f"{unit}_f{fold}" for fold in range(1, self.folds + 1)] if protocol == "kfold" else [unit]

    def all_split_ids(self, protocol: str) -> list[str]:
        """Every split a protocol makes: :meth:`split_ids` at each of ``train_fractions``, largest first."""
        fractions = sorted(set(self.train_fractions), reverse=True)
        return [with_fraction(s, f) for f in fractions for s in self.split_ids(protocol)]


# the split ids a run makes unless told (prepare's default), what the train flow fits unless told
DEFAULT_SPLITS: tuple[str, ...] = tuple(s for p in DEFAULT_PROTOCOLS for s in SplitConfig().split_ids(p))


# The experiment's ranking cut-off K: its one definition. EvalConfig.k is the setting; whoever ranks at K (the data
# card's gates, the builders, the fusion, the promotion gate) is passed the run's value, and a model's own default
# is this.
RANKING_CUTOFF = 10


class EvalConfig(BaseModel):
    """How models are evaluated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(RANKING_CUTOFF, ge=1, description="ranking cut-off K")
    n_boot: int = Field(1000, ge=100, description="bootstrap resamples behind every 95% CI")
    seed: int = Field(0, description="bootstrap seed")
    head_share: float = Field(0.2, gt=0, lt=1, description="share of items (by training popularity) in the head")
    ranking_users: int | None = Field(
        None,
        ge=1,
        description="Rank at most this many test users (a seeded sample, the same for every model): full-catalogue ranking costs users x items, so on very large datasets a sample keeps evaluation linear (default: every user).",
    )
    min_segment_users: int = Field(
        20, ge=1, description='Segments with fewer users than this get no CI-based verdict (listed as "too few users").'
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description='significance level behind "better"/"worse" (primary comparisons Holm-corrected, exploratory '
        "ones Benjamini-Hochberg)",
    )
