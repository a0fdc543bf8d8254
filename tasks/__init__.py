"""Prefect tasks: DuckDB reads and writes around pure functions, one module per stage.

This module holds only ingest's settings (pure pydantic), so that the flows' parameter models import no
DuckDB or Prefect."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class IngestConfig(BaseModel):
    """How ingest resolves repeated records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duplicate_policy: Literal["latest", "first", "error"] = Field(
        "latest",
        description="Repeated (user, item) pairs that are not exact duplicates: keep the latest by timestamp (ties: the later line), keep the earliest, or stop with an error listing them.",
    )
    text_duplicates: Literal["keep", "collapse", "error"] = Field(
        "keep",
        description="One user's identical review text on several items (product variants; see the data card): keep them all, collapse each group to one interaction (chosen like duplicate_policy; logged in ``duplicates`` as 'text_duplicate' and counted in the accounting), or stop with an error listing them.",
    )
