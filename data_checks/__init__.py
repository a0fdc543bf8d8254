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
    # When item metadata exists: the fraction of interactions whose item must be in it. Items without
    # metadata are still rated, trained and evaluated (with id features only); a larger gap usually means the
    # wrong metadata file, so below this share the run stops. The data card reports the exact coverage.
    min_item_coverage: float = Field(0.9, ge=0.0, le=1.0)
    # Write GX Data Docs (HTML) into the run's folder.
    data_docs: bool = True


class DataCardConfig(BaseModel):
    """What the data card flags as a threat to validity (see :mod:`data_checks.card`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Texts shorter than this (after normalisation) never count as duplicates ("Great!", "Five stars").
    text_min_chars: int = Field(20, ge=1)
    # Warn when more than this share of interactions share one user's identical text with another item.
    max_variant_share: float = Field(0.05, ge=0.0, le=1.0)
    # Warn when more than this share of a split's held-out pairs has its text in training (same user or any).
    max_twin_share: float = Field(0.05, ge=0.0, le=1.0)
    # Warn when a validation or test fold has fewer ratings or users than this.
    min_fold_ratings: int = Field(100, ge=1)
    min_fold_users: int = Field(20, ge=1)
    # Warn when a split has fewer ranking candidates than the ranking cut-off K.
    k: int = Field(10, ge=1)


class ValidationFailed(RuntimeError):
    """A dataset failed its checks; the message names the file, the check, counts and examples."""


__all__ = ["DataCardConfig", "ValidationConfig", "ValidationFailed"]
