"""Evaluation: split protocols, metrics, statistics (CIs, paired tests) and the harness that applies them.

The split protocols' names and config are defined here, so that reading them (the command line's choices)
imports no pandas; the protocols themselves are :mod:`models.evaluation.split`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Protocol = Literal["random", "temporal", "cold_items"]
PROTOCOLS: tuple[str, ...] = ("random", "temporal", "cold_items")
TRAIN, VALIDATION, TEST = "train", "validation", "test"


class SplitConfig(BaseModel):
    """Which splits to make and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocols: tuple[Protocol, ...] = Field(
        PROTOCOLS, description="random, temporal (each user's last interactions held out), cold_items"
    )
    seed: int = Field(0, description="the split's seed")
    fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="random: train / validation / test shares of interactions."
    )
    cold_item_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="cold_items: share of items held out (half validation, half test)."
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
        """Stable name of one split, e.g. ``random_s0`` or ``temporal_s0_k5``."""
        return f"{protocol}_s{self.seed}" + (f"_k{self.kcore}" if self.kcore else "")
