"""Run the suites and decide whether the flow may go on.

Two gates: the quarantine gate (too large a share of a file's records was rejected) and the GX gate (a
table-level expectation failed). Either raises :class:`ValidationFailed` with a message that names the
file, the check, the counts and a few examples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from data_checks import ValidationFailed
from data_checks.suites import SUITES, TableFacts


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation on one table."""

    table: str
    expectation: str
    column: str | None
    success: bool
    observed: str = ""
    examples: list = field(default_factory=list)


def run_suites(
    frames: dict[str, pd.DataFrame], facts: dict[str, TableFacts], docs_dir: Path | None = None
) -> list[CheckResult]:
    """Validate each DataFrame against its table's suite; write Data Docs HTML to ``docs_dir``."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="run",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
    source = context.data_sources.add_pandas("reclab")
    definitions = []
    for table in frames:
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(SUITES[table](facts[table]))
        definitions.append(
            context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
        )
    results: list[CheckResult] = []
    for definition in definitions:
        outcome = definition.run(batch_parameters={"dataframe": frames[definition.name]}, result_format="SUMMARY")
        for item in outcome.results:
            config = item.expectation_config
            result = item.result or {}
            raised = (item.exception_info or {}).get("raised_exception")
            observed = result.get("observed_value")
            if observed is None and "unexpected_count" in result:
                observed = f"{result['unexpected_count']} unexpected of {result.get('element_count')}"
            if raised:
                observed = f"error: {(item.exception_info or {}).get('exception_message')}"
            results.append(
                CheckResult(
                    table=definition.name,
                    expectation=config.type,
                    column=config.kwargs.get("column") or ",".join(config.kwargs.get("column_list", [])) or None,
                    success=bool(item.success),
                    observed="" if observed is None else str(observed),
                    examples=list(result.get("partial_unexpected_list") or [])[:5],
                )
            )
    if docs_dir is not None:
        context.build_data_docs()
    return results


def quarantine_problems(
    accounting: dict[str, dict],
    examples: dict[str, list[tuple[int, str]]],
    sources: dict[str, str],
    max_fraction: float,
) -> list[str]:
    """Messages for every role whose quarantined share of raw records exceeds ``max_fraction``."""
    problems = []
    for role, counts in accounting.items():
        raw, bad = counts["raw"], counts["quarantined"]
        if raw and bad / raw > max_fraction:
            shown = "; ".join(f"line {n}: {reason}" for n, reason in examples.get(role, []))
            problems.append(
                f"{sources[role]}: {bad} of {raw} records ({bad / raw:.1%}) were quarantined, above the "
                f"{max_fraction:.1%} threshold (max_quarantine_fraction); e.g. {shown}"
            )
    return problems


def item_coverage_problem(
    interactions: pd.DataFrame, known_items: list[str], minimum: float, interactions_file: str, items_file: str
) -> str:
    """The failed metadata-coverage check in the user's terms: how many rated items lack metadata, how many
    interactions they carry, and the option that accepts it."""
    items = interactions["item_id"].astype(str)
    missing = ~items.isin(set(known_items))
    lacking = pd.unique(items[missing])
    share = 1.0 - float(missing.mean())
    accept = np.floor(share * 100) / 100
    return (
        f"{interactions_file}: {len(lacking):,} of {items.nunique():,} rated items ({int(missing.sum()):,} of "
        f"{len(items):,} interactions) have no row in the item metadata file {items_file}: coverage "
        f"{share:.1%} of interactions, below the minimum {minimum * 100:g}% (--min-item-coverage). Items without "
        f"metadata are still trained and evaluated, with id features only: if the gap is expected, pass "
        f"--min-item-coverage {accept:.2f}; otherwise check that the metadata file belongs to this dataset. "
        f"Items without metadata, e.g. {', '.join(map(str, lacking[:5]))}"
    )


def enforce(
    results: list[CheckResult],
    problems: list[str],
    sources: dict[str, str],
    explanations: dict[tuple[str, str, str | None], str] | None = None,
) -> None:
    """Raise :class:`ValidationFailed` naming every failed check, or return when all passed.

    ``explanations``: (table, expectation, column) -> the message to show instead of GX's own wording."""
    messages = list(problems)
    for r in results:
        if not r.success:
            if explanations and (r.table, r.expectation, r.column) in explanations:
                messages.append(explanations[(r.table, r.expectation, r.column)])
                continue
            where = f"column {r.column!r} " if r.column else ""
            examples = list(dict.fromkeys(map(str, r.examples)))  # GX repeats a value once per row
            shown = f"; e.g. {examples}" if examples else ""
            messages.append(
                f"{sources.get(r.table, r.table)}: table {r.table!r} {where}failed {r.expectation} "
                f"(observed: {r.observed}){shown}"
            )
    if messages:
        raise ValidationFailed("dataset failed validation:\n  - " + "\n  - ".join(messages))
