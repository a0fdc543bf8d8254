"""What each stage flow returns, typed: what ``flows/full.py`` passes from one stage to the next, what the
study collects per dataset, and what ``reports/console.py`` prints. A stage's parameters for the next come from
these (``TrainInputs.of(prepared)``, ``ReportInputs.of(prepared, trained)``), never from re-packed dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from tasks.registry import Published


@dataclass(frozen=True)
class Prepared:
    """A prepared workspace: the dataset ingested (per input file: raw, kept, quarantined, duplicates),
    validated, split (each split's train/validation/test sizes) and described (its data card)."""

    dataset: str
    workspace: str
    database: str
    run_id: str
    input_fingerprint: str
    raw_records: dict[str, int]
    accounting: dict[str, dict[str, int]]
    tables: dict[str, int]
    splits: dict[str, dict[str, int]]
    train_reviews: int
    data_docs: str | None
    data_card: dict

    def record(self) -> dict:
        """The run record's summary (``runs.summary``): every field, as JSON values."""
        return asdict(self)


@dataclass(frozen=True)
class SplitEvaluation:
    """One split's evaluation: its protocol, every model's metrics with CIs (the ``eval_results`` rows) and its
    fit records (``model_fits``)."""

    protocol: str
    results: pd.DataFrame
    fits: list[dict]


@dataclass(frozen=True)
class Trained:
    """A train run: each split's evaluation, the pre-registered comparisons judged over the run (the
    ``eval_differences`` rows), the published version and the promotion gate's decision (None when nothing was
    published) and how many users were erased since the previous training; ``planned_folds``: K of each k-fold
    unit of the workspace (a run may train fewer of its folds)."""

    run_id: str
    database: str
    splits: dict[str, SplitEvaluation]
    differences: pd.DataFrame
    erased_since_last_training: int
    published: Published | None = None
    promotion: dict | None = None
    planned_folds: dict[str, int] | None = None


@dataclass(frozen=True)
class Written:
    """A run's report files."""

    run_id: str
    markdown: str
    html: str


@dataclass(frozen=True)
class Experiment:
    """The full experiment: each stage's result."""

    prepare: Prepared
    train: Trained
    report: Written
