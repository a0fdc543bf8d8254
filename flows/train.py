"""Train: fit and evaluate every model on a prepared workspace's splits (the baselines, LightFM, the fine-tuned
transformer, then their fusion learned on validation), and publish the fused model.

    python -m flows.train                          # the default dataset's workspace (run prepare first)
    python -m flows.train --workspace workspace/movielens-latest-small --splits random_s0 temporal_s0
    python -m flows.train --models bias_als lightfm_hybrid
    python -m flows.train --help
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line, before the imports below: --help answers at once
    from flows.cli import main

    sys.exit(main("train", __doc__))

from prefect import flow, get_run_logger, runtime

from flows.params import TrainParams
from flows.results import SplitEvaluation, Trained
from flows.stop import stop_promptly
from models.registry import FUSION
from tasks.erasure import erased_since_last_training
from tasks.evaluate import evaluate_models, judge_run
from tasks.registry import challenge_champion, choose_publish_split, headline_metrics, publish_model
from tasks.runs import finish_run, start_run
from tasks.split import planned_folds
from tasks.store import DEFAULT_WORKSPACE, Workspace
from tasks.train import SavedSplitFit, fit_split, record_fits


@flow(name="reclab-train")
def train(params: TrainParams = TrainParams()) -> Trained:
    """Train and evaluate every configured model on each split; results land in the eval_* tables."""
    stop_promptly()  # SIGTERM / Ctrl-C: exit within seconds, fits kept (flows/stop.py)
    workspace = Workspace.existing(params.workspace or DEFAULT_WORKSPACE)
    with workspace.lock("flow train"):  # one run at a time per workspace
        run_id = str(runtime.flow_run.id)
        start_run(workspace.db, run_id, "train", params.model_dump(mode="json"))
        publish = choose_publish_split(workspace.db, params.splits, params.publish_split) if params.publish else None
        if publish and FUSION not in params.train.models:
            get_run_logger().warning(
                "nothing is published: the fused model is what gets published and served, and 'fusion' is not "
                "among the models trained (add it to --models, or pass --no-publish)"
            )
            publish = None
        splits, published, promotion = {}, None, None
        with params.runner.build() as runner:
            # train: every split's fit is independent (seeds, protocols): all submitted to the task runner at once.
            # Each fits every model on the split's training fold, tunes on validation, scores test (a model whose
            # split content, settings and code are unchanged is restored from the workspace's fit store)
            inputs = {
                split_id: {
                    "db": workspace.db,
                    "split_id": split_id,
                    "config": params.train,
                    "eval_config": params.evaluation,
                    "work_dir": workspace.run_dir(run_id),
                    "refresh": params.refresh_cache,
                }
                for split_id in params.splits
            }
            futures = {split_id: runner.submit(fit_split, parameters=inputs[split_id]) for split_id in params.splits}
            for split_id in params.splits:  # in split order: recorded, evaluated, and (one split) published
                outputs = SavedSplitFit.load(futures[split_id].result())
                record_fits(workspace.db, run_id, outputs)
                # evaluate: per-user values -> metrics with bootstrap CIs and paired tests, stored in DuckDB
                results = evaluate_models(workspace.db, run_id, split_id, outputs.per_user, params.evaluation)
                splits[split_id] = SplitEvaluation(outputs.protocol, results, outputs.fits)
                if split_id == publish:
                    # publish: the fused model of this split becomes a registry version (champion if the first)
                    published = publish_model(
                        workspace, run_id, outputs, headline_metrics(results), params.model_dump(mode="json")
                    )
                    # promotion gate: the champion scored on the same test users; promote on a significant gain
                    promotion = challenge_champion(workspace, published, outputs, params.evaluation, params.promotion)
        # judge: the pre-registered comparisons of every unit (a k-fold split's folds pooled), gated by the
        # data card, corrected within their family
        differences = judge_run(workspace.db, run_id, params.evaluation)
        erased = erased_since_last_training(workspace.db, run_id)
        finish_run(workspace.db, run_id, {"splits": list(params.splits), "erased_since_last_training": erased})
        return Trained(
            run_id, str(workspace.db), splits, differences, erased, published, promotion, planned_folds(workspace.db)
        )
