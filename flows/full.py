"""The full experiment, one command: ``python -m flows.full`` (embedded default dataset, no server needed).

Stages, each a sub-flow: prepare (ingest -> validate -> split), train (global mean, bias ALS, popularity,
biased MF, LightFM collaborative and hybrid, the fine-tuned transformer, then the fusion learned on
validation; all evaluated on test with CIs and paired tests, on every split; the fused model published),
report (Markdown + HTML with the conclusions, and Prefect artifacts).

    python -m flows.full                                   # 5-fold (every rating tested once), leave-last-out, cold items
    python -m flows.full --protocols random temporal cold_items   # one random split instead: quicker, less sensitive
    python -m flows.full --split-seeds 0 1 2               # repeat on three seeded splits: mean ± sd
    python -m flows.full --data movielens-latest-small --lm-profile cpu
    python -m flows.full --help
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("full", __doc__))

from prefect import flow

from flows.params import FullParams, ReportInputs, TrainInputs
from flows.prepare import prepare
from flows.report import report
from flows.results import Experiment
from flows.stop import stop_promptly
from flows.train import train


@flow(name="reclab-experiment")
def full(params: FullParams = FullParams()) -> Experiment:
    """Run the experiment end to end and return each stage's result: each stage takes its settings from
    ``params`` and its inputs from the stage before."""
    stop_promptly()  # SIGTERM / Ctrl-C: exit within seconds, fits kept (flows/stop.py)
    with params.prepare.workspace_for(params.prepare.dataset()).lock("flow full"):  # the stages re-enter it
        # prepare: ingest, validate, split
        prepared = prepare(params.prepare)
        # train: every model trained and evaluated on every split prepare made; the fused model published
        trained = train(params.train, TrainInputs.of(prepared))
        # report: conclusions, tables and plots of this run; Prefect artifacts
        written = report(params.report, ReportInputs.of(prepared, trained))
        return Experiment(prepared, trained, written)
