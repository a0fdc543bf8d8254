"""Serving: model bundles, the published-model folder, answering requests, and the promotion gate."""
# The promotion gate's settings live here, importing no pandas, so that the flows' parameter models (and
# --help) stay light; the gate itself is models.serving.promotion.

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# days the serving log keeps a request (tasks.serving_log.prune; `python -m serve --retention-days`, the prune flow)
RETENTION_DAYS = 90


class PromotionConfig(BaseModel):
    """When a newly published model becomes the champion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["gate", "always", "never"] = Field(
        "gate",
        description="when the published model replaces the champion: gate (a significant gain on the same test "
        "users, guards held), always, or never",
    )
    metric: str = Field(
        "ndcg", description="the metric the challenger must improve (per-user values, paired over users)"
    )
    test: Literal["wilcoxon", "t"] = Field("wilcoxon", description="the paired test on the same test users")
    alpha: float = Field(0.05, gt=0, lt=1, description="the promotion gate's significance level")
    guards: tuple[str, ...] = Field(
        ("rmse", "recall"), description="metrics that must not get worse beyond the tolerance"
    )
    tolerance: float = Field(
        0.02, ge=0, description="the promotion gate: relative regression allowed on a guard metric"
    )
