"""Baselines: fit the traditional recommenders and the LightFM hybrid on a prepared workspace, evaluate them.

python -m flows.baselines                          # the default dataset's workspace (run prepare first)
python -m flows.baselines --workspace workspace/movielens-latest-small --splits random_s0 temporal_s0
python -m flows.baselines --help
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger, runtime
from pydantic import BaseModel, ConfigDict

from flows.runners import RunnerConfig
from models.evaluation import EvalConfig
from models.promotion import PromotionConfig
from tasks.evaluate import evaluate_models
from tasks.registry import challenge_champion, choose_publish_split, headline_metrics, publish_model
from tasks.runs import finish_run, start_run
from tasks.store import DEFAULT_WORKSPACES, Workspace
from tasks.train import FitOutputsMissing, TrainConfig, fit_split, load_fit_outputs, record_fits

DEFAULT_SPLITS = ("random_s0", "temporal_s0", "cold_items_s0")


class BaselinesParams(BaseModel):
    """Which workspace and splits, which models, how to evaluate."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = str(DEFAULT_WORKSPACES / "amazon-musical-instruments-5core")  # a prepared workspace
    splits: tuple[str, ...] = DEFAULT_SPLITS  # split ids made by prepare
    train: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    refresh_cache: bool = False  # refit even when a cached fit of the same split, configs and code exists
    publish: bool = True  # publish the fused model to the workspace's registry (the first becomes champion)
    publish_split: str | None = None  # whose fit to publish; default: the first temporal split, else the first
    promotion: PromotionConfig = PromotionConfig()  # when a published model replaces the champion
    runner: RunnerConfig = RunnerConfig()  # where the splits' fits run: in turn (default), threads, or Dask


@flow(name="baselines")
def baselines(params: BaselinesParams = BaselinesParams()) -> dict:
    """Train and evaluate the traditional models on each split; results land in the eval_* tables."""
    workspace = Workspace.existing(params.workspace)
    with workspace.lock("flow baselines"):  # one run at a time per workspace
        run_id = str(runtime.flow_run.id)
        start_run(workspace.db, run_id, "baselines", params.model_dump(mode="json"))
        summary = {"run_id": run_id, "database": str(workspace.db), "splits": {}}
        publish = choose_publish_split(workspace.db, params.splits, params.publish_split) if params.publish else None
        fit = fit_split.with_options(refresh_cache=params.refresh_cache)
        with params.runner.build() as runner:
            # train: every split's fit is independent (seeds, protocols): all submitted to the task runner at once.
            # Each fits every model on the split's training fold, tunes on validation, scores test (cached by the
            # split's content, the configs and the model code)
            inputs = {
                split_id: {
                    "db": workspace.db,
                    "split_id": split_id,
                    "config": params.train,
                    "eval_config": params.evaluation,
                    "work_dir": workspace.run_dir(run_id),
                }
                for split_id in params.splits
            }
            futures = {split_id: runner.submit(fit, parameters=inputs[split_id]) for split_id in params.splits}
            for split_id in params.splits:
                try:
                    trained = load_fit_outputs(futures[split_id].result())
                except FitOutputsMissing as err:  # a cached fit whose run folder was deleted: fit it again
                    get_run_logger().warning("%s; refitting %s", err, split_id)
                    trained = load_fit_outputs(fit_split.with_options(refresh_cache=True)(**inputs[split_id]))
                _record_split(workspace, run_id, split_id, trained, params, publish, summary)
        finish_run(workspace.db, run_id, {"splits": list(params.splits)})
        return summary


def _record_split(
    workspace: Workspace,
    run_id: str,
    split_id: str,
    trained: dict,
    params: BaselinesParams,
    publish: str | None,
    summary: dict,
) -> None:
    """One split's fitted results, in split order: recorded, evaluated, and (for one split) published."""
    record_fits(workspace.db, run_id, split_id, trained)
    # evaluate: per-user values -> metrics with bootstrap CIs and paired tests, stored in DuckDB
    results = evaluate_models(workspace.db, run_id, split_id, trained["per_user"], params.evaluation)
    summary["splits"][split_id] = {"protocol": trained["protocol"], "results": results, "fits": trained["fits"]}
    if split_id == publish:
        # publish: the fused model of this split becomes a registry version (champion if the first)
        summary["published"] = publish_model(
            workspace.db,
            workspace.root,
            run_id,
            split_id,
            trained["protocol"],
            trained.get("bundle"),
            headline_metrics(results),
            params.model_dump(mode="json"),
        )
        # promotion gate: the champion scored on the same test users; promote on a significant gain
        summary["promotion"] = challenge_champion(
            workspace.db,
            workspace.root,
            split_id,
            summary["published"],
            trained["per_user"],
            params.evaluation,
            params.promotion,
        )


def main(argv: list[str] | None = None) -> int:
    import argparse

    from flows.baselines import BaselinesParams  # the importable copies
    from flows.baselines import baselines as baselines_flow
    from flows.cli import add_model_arguments, model_params, print_evaluation, run_cli

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workspace",
        default=BaselinesParams.model_fields["workspace"].default,
        help="prepared workspace folder (default: the default dataset's)",
    )
    parser.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), help="split ids to evaluate")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    params = model_params(args).model_copy(update={"workspace": args.workspace, "splits": tuple(args.splits)})
    return run_cli(
        check=lambda: Workspace.existing(params.workspace), body=lambda: print_evaluation(baselines_flow(params))
    )


if __name__ == "__main__":
    sys.exit(main())
