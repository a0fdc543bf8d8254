"""Great Expectations (GX Core 1.x) suites for the canonical tables, and the gate that stops a flow.

Importing this package is cheap; GX itself is imported by :mod:`data_checks.suites` and
:mod:`data_checks.gate` only when a validation runs.
"""

from pydantic import BaseModel, ConfigDict, Field


class ValidationConfig(BaseModel):
    """When a dataset is good enough to continue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Stop when more than this fraction of a file's records were quarantined.
    max_quarantine_fraction: float = Field(0.01, ge=0.0, le=1.0)
    # When item metadata exists: the fraction of interactions whose item must be in it.
    min_item_coverage: float = Field(1.0, ge=0.0, le=1.0)
    # Write GX Data Docs (HTML) into the run's folder.
    data_docs: bool = True


class ValidationFailed(RuntimeError):
    """A dataset failed its checks; the message names the file, the check, counts and examples."""


__all__ = ["ValidationConfig", "ValidationFailed"]
