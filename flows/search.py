"""LightFM hyperparameter search on validation: independent trials, in parallel on a Dask cluster if asked.

    python -m flows.search --trials 16 --runner dask --workers 4        # a local Dask cluster of 4 processes
    python -m flows.search --splits temporal_s0 --runner dask --dask-address tcp://scheduler:8786
    python -m flows.search --help

The trials are the candidates of the one tuner (models.tuning) over the LightFM hybrid's search space: trial 0
the default configuration, the others seeded draws from models.recommenders.lightfm_hybrid.SEARCH_SPACE; each
fits the model on the split's training fold with early stopping on validation NDCG@K, its judge in training
too (the test fold is never read). Trials land in the ``lightfm_trials`` table;
the best configuration is printed with the option that trains with it:
``python -m flows.full --lightfm-params '{...}'``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("search", __doc__))

from prefect import flow, runtime

from flows.params import SearchParams
from flows.stop import stop_promptly
from models.tuning import best_of
from tasks.search import lightfm_candidates, lightfm_trial, record_trials
from tasks.store import DEFAULT_WORKSPACE, Workspace


@flow(name="reclab-lightfm-search")
def search(params: SearchParams = SearchParams()) -> dict:
    """Run every trial on the task runner; record them; return them with the best."""
    stop_promptly()  # SIGTERM / Ctrl-C: exit within seconds, fits kept (flows/stop.py)
    workspace = Workspace.existing(params.workspace or DEFAULT_WORKSPACE)
    with workspace.lock("flow lightfm-search"):  # one run at a time per workspace
        configs = lightfm_candidates(params.train, params.trials, params.seed)
        with params.runner.build() as runner:
            futures = [
                runner.submit(
                    lightfm_trial,
                    parameters={
                        "workspace": workspace,
                        "split_id": params.split,
                        "trial": n,
                        "config": config,
                        "train": params.train,
                    },
                )
                for n, config in enumerate(configs)
            ]
            trials = [future.result() for future in futures]
        record_trials(workspace, str(runtime.flow_run.id), params.split, trials)
        best = trials[best_of([(t["config"], t["validation_ndcg"]) for t in trials], lower_is_better=False)]
        return {"run_id": str(runtime.flow_run.id), "split": params.split, "trials": trials, "best": best}
