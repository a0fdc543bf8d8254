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

from flows.params import TrainInputs, TrainSettings
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
def train(settings: TrainSettings = TrainSettings(), inputs: TrainInputs = TrainInputs()) -> Trained:
    """Train and evaluate every configured model on each split of ``inputs`` (a prepared workspace and its split
    ids) as ``settings`` say; results land in the eval_* tables."""
    stop_promptly()  # SIGTERM / Ctrl-C: exit within seconds, fits kept (flows/stop.py)
    workspace, split_ids = Workspace.existing(inputs.workspace or DEFAULT_WORKSPACE), inputs.splits
    with workspace.lock("flow train"):  # one run at a time per workspace
        run_id = str(runtime.flow_run.id)
        record = {**inputs.model_dump(mode="json"), **settings.model_dump(mode="json")}  # the run's parameters
        start_run(workspace, run_id, "train", record)
        publish = choose_publish_split(workspace.db, split_ids, settings.publish_split) if settings.publish else None
        if publish and FUSION not in settings.train.models:
            get_run_logger().warning(
                "nothing is published: the fused model is what gets published and served, and 'fusion' is not "
                "among the models trained (add it to --models, or pass --no-publish)"
            )
            publish = None
        evaluated, published, promotion = {}, None, None
        with settings.runner.build() as runner:
            # train: every split's fit is independent (seeds, protocols): all submitted to the task runner at once.
            # Each fits every model on the split's training fold, tunes on validation, scores test (a model whose
            # split content, settings and code are unchanged is restored from the workspace's fit store)
            futures = {
                split_id: runner.submit(
                    fit_split,
                    parameters={
                        "workspace": workspace,
                        "split_id": split_id,
                        "config": settings.train,
                        "eval_config": settings.evaluation,
                        "work_dir": workspace.run_dir(run_id),
                        "refresh": settings.refresh_cache,
                    },
                )
                for split_id in split_ids
            }
            for split_id in split_ids:  # in split order: recorded, evaluated, and (one split) published
                saved = SavedSplitFit.load(futures[split_id].result())
                record_fits(workspace, run_id, saved)
                # evaluate: per-user values -> metrics with bootstrap CIs and paired tests, stored in DuckDB
                results = evaluate_models(workspace, run_id, split_id, saved.per_user, settings.evaluation)
                evaluated[split_id] = SplitEvaluation(saved.protocol, results, saved.fits)
                if split_id == publish:
                    # publish: the fused model of this split becomes a registry version (champion if the first)
                    published = publish_model(workspace, run_id, saved, headline_metrics(results), record)
                    # promotion gate: the champion scored on the same test users; promote on a significant gain
                    promotion = challenge_champion(workspace, published, saved, settings.evaluation, settings.promotion)
        # judge: the pre-registered comparisons of every unit (a k-fold split's folds pooled), gated by the
        # data card, corrected within their family
        differences = judge_run(workspace, run_id, settings.evaluation)
        erased = erased_since_last_training(workspace, run_id)
        finish_run(workspace, run_id, {"splits": list(split_ids), "erased_since_last_training": erased})
        return Trained(
            run_id, str(workspace.db), evaluated, differences, erased, published, promotion, planned_folds(workspace.db)
        )
