"""Prepare: ingest -> validate -> split, on the embedded default dataset unless told otherwise.

python -m flows.prepare                        # embedded Amazon Musical Instruments 5-core
python -m flows.prepare --data ../shared/data/movielens-latest-small
python -m flows.prepare --help
"""

from __future__ import annotations

import sys

from prefect import flow, runtime
from pydantic import BaseModel, ConfigDict

from data_checks import ValidationConfig
from models.split import SplitConfig
from readers import DEFAULT_DATASET, ColumnMapping, DatasetSpec, resolve_dataset
from readers.spec import Format
from tasks.ingest import IngestConfig, build_canonical, count_tables, load_raw
from tasks.runs import finish_run, record_inputs, record_outcome, start_run
from tasks.split import collect_training_reviews, split_interactions
from tasks.store import Workspace
from tasks.validate import validate_tables


class PrepareParams(BaseModel):
    """Everything the prepare flow needs; every field has a working default."""

    model_config = ConfigDict(extra="forbid")

    data: str = str(DEFAULT_DATASET)  # dataset file or folder
    format: Format | None = None  # detected from the path when None
    items: str | None = None  # item metadata file (Amazon meta_*.json.gz, ...), overrides detection
    users: str | None = None  # user attributes file (MovieLens 100K u.user), overrides detection
    tags: str | None = None  # MovieLens tags.csv, overrides detection
    mapping: str | None = None  # tabular only: "user_id=col,item_id=col,rating=col,timestamp=col,..."
    rating_scale: tuple[float, float] | None = None  # declared scale; the format's own by default
    delimiter: str = ","  # tabular CSV only
    name: str | None = None  # dataset name (names the default workspace); from the path by default
    workspace: str | None = None  # folder for reclab.duckdb and run outputs; workspace/<name> by default
    ingest: IngestConfig = IngestConfig()
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()
    seeds: tuple[int, ...] | None = None  # split seeds to make (each protocol once per seed); None: split.seed

    def dataset(self) -> DatasetSpec:
        return resolve_dataset(
            self.data,
            self.format,
            items=self.items,
            users=self.users,
            tags=self.tags,
            mapping=ColumnMapping.parse(self.mapping) if self.mapping else None,
            rating_scale=self.rating_scale,
            delimiter=self.delimiter,
            name=self.name,
        )

    def workspace_for(self, spec: DatasetSpec) -> Workspace:
        return Workspace.for_dataset(spec.name, self.workspace)


def _record_failure(flow, flow_run, state) -> None:
    """Flow hook: mark the run failed in its workspace (when the workspace is known)."""
    try:
        params = PrepareParams.model_validate(flow_run.parameters.get("params") or {})
        spec = params.dataset()
        record_outcome(params.workspace_for(spec).db, str(flow_run.id), "failed", {"error": state.message})
    except Exception:  # the failure itself is what the user needs to see, not a second one
        pass


@flow(name="prepare", on_failure=[_record_failure])
def prepare(params: PrepareParams = PrepareParams()) -> dict:
    """Ingest a dataset into DuckDB, validate it with Great Expectations, and split it reproducibly."""
    spec = params.dataset()
    workspace = params.workspace_for(spec)
    with workspace.lock("flow prepare"):  # one run at a time per workspace
        run_id = str(runtime.flow_run.id)
        start_run(workspace.db, run_id, "prepare", params.model_dump(mode="json"))

        # ingest: files -> immutable raw tables -> canonical tables (+ quarantine, duplicates, accounting)
        raw = load_raw(workspace.db, spec)
        fingerprint = record_inputs(workspace.db, run_id, spec)
        accounting = build_canonical(workspace.db, spec, params.ingest)

        # validate: GX suites per canonical table and the quarantine threshold; Data Docs in the run folder
        validate_tables(workspace.db, spec, params.validation, run_id, workspace.run_dir(run_id) / "data_docs")

        # split: seeded fold assignments, then the training-only review text
        splits = {}
        for seed in params.seeds or (params.split.seed,):
            splits |= split_interactions(workspace.db, params.split.model_copy(update={"seed": seed}))
        train_reviews = collect_training_reviews(workspace.db)

        summary = {
            "dataset": spec.name,
            "workspace": str(workspace.root),
            "database": str(workspace.db),
            "run_id": run_id,
            "input_fingerprint": fingerprint,
            "raw_records": raw,
            "accounting": accounting,
            "tables": count_tables(workspace.db),
            "splits": splits,
            "train_reviews": train_reviews,
            "data_docs": str(workspace.run_dir(run_id) / "data_docs" / "index.html")
            if params.validation.data_docs
            else None,
        }
        finish_run(workspace.db, run_id, summary)
        return summary


def main(argv: list[str] | None = None) -> int:
    from flows.cli import prepare_params, prepare_parser, print_prepare_summary, run_cli

    # Under `python -m` this file is __main__; use the importable module's flow and parameter model
    # (the ones prepare_params builds), not __main__'s copies.
    from flows.prepare import prepare as prepare_flow

    args = prepare_parser(__doc__).parse_args(argv)
    params = []
    return run_cli(
        check=lambda: params.append(prepare_params(args)) or params[0].dataset(),
        body=lambda: print_prepare_summary(prepare_flow(params[0])),
    )


if __name__ == "__main__":
    sys.exit(main())
