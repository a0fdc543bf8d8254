"""Prepare: ingest -> validate -> split, on the embedded default dataset unless told otherwise.

python -m flows.prepare                        # embedded Amazon Musical Instruments 5-core
python -m flows.prepare --data movielens-latest-small
python -m flows.prepare --help
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("prepare", __doc__))

from prefect import flow, runtime

from flows.params import PrepareParams
from flows.results import Prepared
from flows.stop import stop_promptly
from tasks.datacard import describe_data
from tasks.ingest import build_canonical, count_tables, load_raw
from tasks.runs import finish_run, record_inputs, record_outcome, start_run
from tasks.split import collect_training_reviews, split_interactions
from tasks.validate import validate_tables


def _record_failure(flow, flow_run, state) -> None:
    """Flow hook: mark the run failed in its workspace (when the workspace is known)."""
    try:
        params = PrepareParams.model_validate(flow_run.parameters.get("params") or {})
        spec = params.dataset()
        record_outcome(params.workspace_for(spec).db, str(flow_run.id), "failed", {"error": state.message})
    except Exception:  # the failure itself is what the user needs to see, not a second one
        pass


@flow(name="reclab-prepare", on_failure=[_record_failure])
def prepare(params: PrepareParams = PrepareParams()) -> Prepared:
    """Ingest a dataset into DuckDB, validate it with Great Expectations, and split it reproducibly."""
    stop_promptly()  # SIGTERM / Ctrl-C: exit within seconds, fits kept (flows/stop.py)
    spec = params.dataset()  # resolved once per run (PrepareParams.dataset)
    workspace = params.workspace_for(spec)
    with workspace.lock("flow prepare"):  # one run at a time per workspace
        run_id = str(runtime.flow_run.id)
        start_run(workspace, run_id, "prepare", params.model_dump(mode="json"))

        # ingest: files -> immutable raw tables -> canonical tables (+ quarantine, duplicates, accounting)
        raw = load_raw(workspace, spec)
        fingerprint = record_inputs(workspace, run_id, spec)
        accounting = build_canonical(workspace, spec, params.ingest, params.data_card.text_min_chars)

        # validate: GX suites per canonical table and the quarantine threshold; Data Docs in the run folder
        data_docs = workspace.run_dir(run_id) / "data_docs"
        validate_tables(workspace, spec, params.validation, run_id, data_docs)

        # split: seeded fold assignments, then the training-only review text
        splits = {}
        for seed in params.seeds or (params.split.seed,):
            splits |= split_interactions(workspace, params.split.model_copy(update={"seed": seed}))
        train_reviews = collect_training_reviews(workspace)

        # describe: the data card (distribution, coverage, threats to validity), stored and warned about
        card = describe_data(workspace, spec, params.data_card, run_id)

        prepared = Prepared(
            dataset=spec.name,
            workspace=str(workspace.root),
            database=str(workspace.db),
            run_id=run_id,
            input_fingerprint=fingerprint,
            raw_records=raw,
            accounting=accounting,
            tables=count_tables(workspace),
            splits=splits,
            train_reviews=train_reviews,
            data_docs=str(data_docs / "index.html") if params.validation.data_docs else None,
            data_card=card,
        )
        finish_run(workspace, run_id, prepared.record())
        return prepared
