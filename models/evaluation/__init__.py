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


def judged_unit(split_id: str) -> str:
    """The unit a split's verdict belongs to: a k-fold split's folds (``kfold_s0_f1`` ... ``kfold_s0_f5``) are
    judged together as ``kfold_s0``; any other split is its own unit."""
    return _FOLD_SUFFIX.sub("", split_id) if split_id.startswith("kfold_") else split_id


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
    min_user_interactions: int = Field(
        3, ge=3, description="temporal: users with fewer interactions keep them all in training."
    )
    kcore: int | None = Field(
        None,
        ge=0,
        description="Optional k-core filter before splitting: drop users and items with fewer than k interactions, repeatedly, until every remaining user and item has at least k. None or 0: no filter.",
    )

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        if abs(sum(self.fractions) - 1.0) > 1e-9 or min(self.fractions) < 0:
            raise ValueError(f"split fractions {self.fractions} must be non-negative and sum to 1")
        return self

    def split_id(self, protocol: str) -> str:
        """Stable name of one split (of a k-fold protocol: of its judged unit), e.g. ``random_s0``,
        ``temporal_s0_k5`` or ``kfold_s0``."""
        return f"{protocol}_s{self.seed}" + (f"_k{self.kcore}" if self.kcore else "")

    def split_ids(self, protocol: str) -> list[str]:
        """The splits a protocol makes: one, or K for kfold (``kfold_s0_f1`` ... ``kfold_s0_f5``)."""
        unit = self.split_id(protocol)
        return [f"{unit}_f{fold}" for fold in range(1, self.folds + 1)] if protocol == "kfold" else [unit]


# the split ids a run makes unless told (prepare's default), what the train flow fits unless told
DEFAULT_SPLITS: tuple[str, ...] = tuple(s for p in DEFAULT_PROTOCOLS for s in SplitConfig().split_ids(p))
