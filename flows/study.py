"""The cross-dataset study: ``python -m flows.study --data A B C`` runs the full experiment on each dataset
(its own sub-flow and workspace, cached as ``flows.full`` is), then writes one report across them.

    python -m flows.study                                     # the embedded default dataset alone
    python -m flows.study --data amazon-musical-instruments-5core amazon2018-gift-cards
    python -m flows.study --data A B C --runner threads --workers 2
    python -m flows.study --help

A dataset that fails (validation, bad input) stops only its own experiment: the study reports it and
finishes the others. A rerun with one more dataset refits only that one (the others' fits come from the
cache).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("study", __doc__))

import time
from pathlib import Path

from prefect import flow, runtime, task
from prefect.cache_policies import NONE

from flows.full import full
from flows.params import FullParams, StudyParams
from flows.stop import stop_promptly
from readers import InputError
from tasks.report import latest_evaluated_run
from tasks.store import DEFAULT_WORKSPACES, Workspace
from tasks.study import collect_dataset, write_study_report


@task(cache_policy=NONE, task_run_name="experiment-{name}")
def experiment(name: str, params: FullParams) -> dict:
    """One dataset's full experiment (a sub-flow); its failure is recorded, not raised."""
    start = time.perf_counter()
    try:
        out = full(params)
    except Exception as err:  # noqa: BLE001  the study reports it and goes on with the other datasets
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    return {
        "status": "completed",
        "database": out.prepare.database,
        "run_id": out.train.run_id,
        "report": out.report.html,
        "seconds": time.perf_counter() - start,
    }


def latest_outcome(params: FullParams) -> dict:
    """A dataset's latest evaluated run in its workspace, as an experiment's outcome (``--report-only``)."""
    try:
        db = Workspace.existing(params.prepare.workspace).db
        return {"status": "completed", "database": str(db), "run_id": latest_evaluated_run(db), "seconds": None}
    except (InputError, OSError) as err:
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}


@flow(name="reclab-study")
def study(params: StudyParams = StudyParams()) -> dict:
    """Run the experiment on every dataset, then write the cross-dataset report."""
    stop_promptly()  # SIGTERM / Ctrl-C: exit within seconds, fits kept (flows/stop.py)
    experiments = {}
    root = Path(params.workspaces) if params.workspaces else DEFAULT_WORKSPACES
    for path in params.datasets():
        # each dataset's experiment: the study's settings, on this dataset, in <workspaces>/<its name>
        prepare = params.prepare_for(path)
        spec = prepare.dataset()  # resolved once per run (PrepareParams.dataset): the experiment reuses it
        if spec.name in experiments:
            raise ValueError(f"dataset {spec.name!r} is given twice (--data {path})")
        prepare = prepare.model_copy(update={"workspace": str(root / spec.name)})
        experiments[spec.name] = FullParams(
            prepare=prepare, train=params.experiment.train, report=params.experiment.report
        )
    if params.report_only:
        outcomes = {name: latest_outcome(p) for name, p in experiments.items()}
    else:
        with params.runner.build() as runner:
            # every dataset's experiment is independent: all submitted at once (in turn with the default runner)
            futures = {
                name: runner.submit(experiment, parameters={"name": name, "params": p})
                for name, p in experiments.items()
            }
            outcomes = {name: future.result() for name, future in futures.items()}
    datasets = [collect_dataset(name, outcome) for name, outcome in outcomes.items()]
    study_id = str(runtime.flow_run.id)
    out_dir = Path(params.output) if params.output else root / "studies" / study_id
    paths = write_study_report(datasets, out_dir, study_id)
    return {"study_id": study_id, "datasets": outcomes, **paths}
