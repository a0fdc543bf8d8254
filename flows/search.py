"""LightFM hyperparameter search on validation: independent trials, in parallel on a Dask cluster if asked.

python -m flows.search --trials 16 --runner dask --workers 4        # a local Dask cluster of 4 processes
python -m flows.search --split temporal_s0 --runner dask --dask-address tcp://scheduler:8786
python -m flows.search --help

Trial 0 is the default configuration, the others seeded draws from models.lightfm_hybrid.SEARCH_SPACE; each
fits the LightFM hybrid on the split's training fold with early stopping on validation NDCG@K (the test
fold is never read). Trials land in the ``lightfm_trials`` table; the best configuration is printed with
the option that trains with it: ``python -m flows.full --lightfm-params '{...}'``.
"""

from __future__ import annotations

import json
import sys

from prefect import flow, runtime
from pydantic import BaseModel, ConfigDict, Field

from flows.runners import RunnerConfig
from tasks.search import lightfm_trial, record_trials
from tasks.store import DEFAULT_WORKSPACES, Workspace
from tasks.train import TrainConfig


class SearchParams(BaseModel):
    """Which split, how many trials, how LightFM trains, where the trials run."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACES / "amazon-musical-instruments-5core")
    split: str = "random_s0"
    trials: int = Field(8, ge=1)  # configurations tried, the default one included
    seed: int = 0  # which configurations are drawn
    train: TrainConfig = TrainConfig()  # loss, threads, max epochs, model seed
    runner: RunnerConfig = RunnerConfig()


@flow(name="lightfm-search")
def search(params: SearchParams = SearchParams()) -> dict:
    """Run every trial on the task runner; record them; return them with the best."""
    from models.lightfm_hybrid import SEARCH_SPACE, LightFMHybrid, sample_configs

    workspace = Workspace.existing(params.workspace)
    with workspace.lock("flow lightfm-search"):  # one run at a time per workspace
        default = {key: getattr(LightFMHybrid(), key) for key in SEARCH_SPACE}
        configs = [default, *sample_configs(params.trials - 1, params.seed)]
        with params.runner.build() as runner:
            futures = [
                runner.submit(
                    lightfm_trial,
                    parameters={
                        "db": workspace.db,
                        "split_id": params.split,
                        "trial": n,
                        "config": config,
                        "train": params.train,
                    },
                )
                for n, config in enumerate(configs)
            ]
            trials = [future.result() for future in futures]
        record_trials(workspace.db, str(runtime.flow_run.id), params.split, trials)
        best = max(trials, key=lambda t: (t["validation_ndcg"], -t["trial"]))  # ties: the earlier trial
        return {"run_id": str(runtime.flow_run.id), "split": params.split, "trials": trials, "best": best}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from flows.cli import add_runner_arguments, run_cli, runner_config
    from flows.search import SearchParams
    from flows.search import search as search_flow

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workspace",
        default=SearchParams.model_fields["workspace"].default,
        help="prepared workspace folder (default: the default dataset's)",
    )
    parser.add_argument("--split", default="random_s0", help="split whose validation fold judges (default random_s0)")
    parser.add_argument("--trials", type=int, default=8, help="configurations tried, the default included (8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the configuration draws (default 0)")
    parser.add_argument("--lightfm-loss", choices=("warp", "bpr", "logistic"), default="warp")
    parser.add_argument("--max-epochs", type=int, default=30, help="epochs at most per trial (default 30)")
    add_runner_arguments(parser)
    args = parser.parse_args(argv)

    def show(out: dict) -> None:
        print(f"\n{'trial':>5}  {'validation NDCG':>15}  {'epochs':>6}  {'seconds':>8}  config")
        for t in out["trials"]:
            print(
                f"{t['trial']:>5}  {t['validation_ndcg']:>15.4f}  {t['epochs']:>6}  {t['fit_seconds']:>8.1f}  "
                f"{json.dumps(t['config'])}"
            )
        best = out["best"]
        print(
            f"\nbest: trial {best['trial']} (validation NDCG {best['validation_ndcg']:.4f}); train with it:\n"
            f"  python -m flows.full --lightfm-params '{json.dumps(best['config'])}'"
        )

    params = []
    return run_cli(
        check=lambda: (
            params.append(
                SearchParams(
                    workspace=args.workspace,
                    split=args.split,
                    trials=args.trials,
                    seed=args.seed,
                    train=TrainConfig(lightfm_loss=args.lightfm_loss, lightfm_max_epochs=args.max_epochs),
                    runner=runner_config(args),
                )
            )
            or Workspace.existing(args.workspace)
        ),
        body=lambda: show(search_flow(params[0])),
    )


if __name__ == "__main__":
    sys.exit(main())
