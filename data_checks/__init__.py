"""Great Expectations (GX Core 1.x) suites for the canonical tables, and the gate that stops a flow.

Importing this package is cheap; GX itself is imported by :mod:`data_checks.suites` and
:mod:`data_checks.gate` only when a validation runs.
"""

from pydantic import BaseModel, ConfigDict, Field


class ValidationConfig(BaseModel):
    """When a dataset is good enough to continue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_quarantine_fraction: float = Field(
        0.01, ge=0.0, le=1.0, description="Stop when more than this fraction of a file's records were quarantined."
    )
    min_item_coverage: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="When item metadata exists: the fraction of interactions whose item must be in it. Items without metadata are still rated, trained and evaluated (with id features only); a larger gap usually means the wrong metadata file, so below this share the run stops. The data card reports the exact coverage.",
    )
    data_docs: bool = Field(True, description="Write GX Data Docs (HTML) into the run's folder.")


class DataCardConfig(BaseModel):
    """What the data card flags as a threat to validity (see :mod:`data_checks.card`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_min_chars: int = Field(
        20,
        ge=1,
        description='Texts shorter than this (after normalisation) never count as duplicates ("Great!", "Five stars").',
    )
    max_variant_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Warn when more than this share of interactions share one user's identical text with another item.",
    )
    max_twin_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Warn when more than this share of a split's held-out pairs has its text in training (same user or any).",
    )
    min_fold_ratings: int = Field(
        100, ge=1, description="Warn when a validation or test fold has fewer ratings or users than this."
    )
    min_fold_users: int = Field(20, ge=1, description="a validation or test fold with fewer users is flagged")
    min_cold_content: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="On a cold-item split, withhold the text models' verdicts when a smaller share of its cold test "
        "items has any metadata (their only text before anyone rates them).",
    )


class ValidationFailed(RuntimeError):
    """A dataset failed its checks; the message names the file, the check, counts and examples."""


__all__ = ["DataCardConfig", "ValidationConfig", "ValidationFailed"]
