"""Command-line plumbing shared by the flows: arguments, parameter models, clean errors, summaries."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

import pandas as pd
import pydantic

from data_checks import ValidationConfig, ValidationFailed
from models.bundle import BundleError
from models.serving import RequestError
from models.split import PROTOCOLS, SplitConfig
from readers import InputError
from readers.spec import FORMATS
from tasks.ingest import IngestConfig
from tasks.store import WorkspaceBusy


def prepare_parser(description: str | None) -> argparse.ArgumentParser:
    """Arguments of the prepare stage (also accepted by ``flows.full``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("dataset")
    data.add_argument("--data", help="dataset file or folder (default: the embedded Amazon Musical Instruments 5-core)")
    data.add_argument("--format", choices=FORMATS, help="input format (default: detected from the path)")
    data.add_argument("--items", help="item metadata file, e.g. an Amazon meta_*.json.gz")
    data.add_argument("--users", help="user attributes file, e.g. MovieLens 100K u.user")
    data.add_argument("--tags", help="MovieLens tags.csv")
    data.add_argument(
        "--map",
        dest="mapping",
        metavar="FIELD=COLUMN,...",
        help="tabular input: canonical field to input column, e.g. "
        "'user_id=reviewer,item_id=product,rating=stars,timestamp=time,review_text=body'",
    )
    data.add_argument(
        "--rating-scale",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="declared rating scale (default: the format's, e.g. 1 5 or 0.5 5)",
    )
    data.add_argument("--delimiter", default=",", help="tabular CSV field delimiter (default ',')")
    data.add_argument("--name", help="dataset name (default: from the path); names the default workspace")
    data.add_argument(
        "--workspace",
        help="folder holding reclab.duckdb and run outputs (default: workspace/<dataset name> in the project folder)",
    )
    ingest = parser.add_argument_group("ingest and validation")
    ingest.add_argument(
        "--duplicate-policy",
        choices=("latest", "first", "error"),
        default="latest",
        help="repeated (user, item) pairs: keep the latest (default), the first, or stop",
    )
    ingest.add_argument(
        "--max-quarantine",
        type=float,
        default=0.01,
        metavar="FRACTION",
        help="stop when more than this share of a file's records is quarantined (default 0.01)",
    )
    ingest.add_argument(
        "--min-item-coverage",
        type=float,
        default=1.0,
        metavar="FRACTION",
        help="with item metadata: share of interactions whose item must be in it (default 1.0)",
    )
    ingest.add_argument("--no-data-docs", action="store_true", help="skip writing GX Data Docs HTML")
    split = parser.add_argument_group("split")
    split.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    split.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="SEED",
        help="make every split once per seed (e.g. --seeds 0 1 2); overrides --seed; the report adds mean ± sd",
    )
    split.add_argument(
        "--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS), help="splits to make (default: all)"
    )
    split.add_argument(
        "--fractions",
        nargs=3,
        type=float,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VALIDATION", "TEST"),
        help="random split shares (default 0.8 0.1 0.1)",
    )
    split.add_argument(
        "--cold-item-fraction",
        type=float,
        default=0.1,
        help="share of items held out by the cold_items split (default 0.1)",
    )
    split.add_argument("--kcore", type=int, default=None, help="k-core filter before splitting (default: none)")
    return parser


def prepare_params(args: argparse.Namespace):
    """The prepare flow's validated parameter model from parsed arguments."""
    from flows.prepare import PrepareParams

    return PrepareParams(
        data=args.data or PrepareParams.model_fields["data"].default,
        format=args.format,
        items=args.items,
        users=args.users,
        tags=args.tags,
        mapping=args.mapping,
        rating_scale=tuple(args.rating_scale) if args.rating_scale else None,
        delimiter=args.delimiter,
        name=args.name,
        workspace=args.workspace,
        ingest=IngestConfig(duplicate_policy=args.duplicate_policy),
        validation=ValidationConfig(
            max_quarantine_fraction=args.max_quarantine,
            min_item_coverage=args.min_item_coverage,
            data_docs=not args.no_data_docs,
        ),
        split=SplitConfig(
            protocols=tuple(args.protocols),
            seed=args.seed,
            fractions=tuple(args.fractions),
            cold_item_fraction=args.cold_item_fraction,
            kcore=args.kcore,
        ),
        seeds=tuple(args.seeds) if args.seeds else None,
    )


USER_ERRORS = (InputError, ValidationFailed, WorkspaceBusy, BundleError, RequestError)


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a failed task's or flow's traceback; for errors in the user's input the message alone
    says what to fix, so drop the traceback from those records (other errors keep theirs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], USER_ERRORS):
            record.exc_info, record.exc_text = None, None
        return True


def run_cli(body: Callable[[], object], check: Callable[[], object] | None = None) -> int:
    """Run ``check`` (fast input checks, before any Prefect server starts), then ``body``; turn the errors
    a user can cause into one clear message and exit status 2."""
    quiet = _NoTracebackForUserErrors()
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(quiet)
    try:
        if check is not None:
            check()
        body()
    except USER_ERRORS as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        print(f"\nerror: invalid parameters: {problems}", file=sys.stderr)
        return 2
    return 0


def print_prepare_summary(summary: dict) -> None:
    """The counts a user checks after prepare: accounting per file, table sizes, split sizes."""
    print(f"\nprepared {summary['dataset']} in {summary['database']} (run {summary['run_id']})")
    print(f"\n{'input':<14}{'raw':>10}{'kept':>10}{'quarantined':>13}{'exact dup':>11}{'superseded':>12}")
    for role, a in summary["accounting"].items():
        print(
            f"{role:<14}{a['raw']:>10,}{a['kept']:>10,}{a['quarantined']:>13,}"
            f"{a['exact_duplicates']:>11,}{a['superseded']:>12,}"
        )
    t = summary["tables"]
    print(
        f"\n{t['interactions']:,} ratings from {t['users_with_ratings']:,} users on "
        f"{t['items_with_ratings']:,} items; items table {t['items']:,}, users table {t['users']:,}, "
        f"tags {t['tags']:,}"
    )
    print(f"\n{'split':<22}{'train':>10}{'validation':>12}{'test':>10}")
    for split_id, sizes in summary["splits"].items():
        print(f"{split_id:<22}{sizes['train']:>10,}{sizes['validation']:>12,}{sizes['test']:>10,}")
    if summary.get("data_docs"):
        print(f"\nGX Data Docs: {summary['data_docs']}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the baselines stage (also accepted by ``flows.full``)."""
    from tasks.train import MODELS

    group = parser.add_argument_group("models and evaluation")
    group.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to train (default: all)"
    )
    group.add_argument("--k", type=int, default=10, help="ranking cut-off K (default 10)")
    group.add_argument(
        "--ranking-users",
        type=int,
        default=None,
        help="rank at most this many test users per split (a seeded sample, the same for every model; "
        "default: all). Full-catalogue ranking costs users x items: for very large datasets",
    )
    group.add_argument("--lightfm-loss", choices=("warp", "bpr", "logistic"), default="warp", help="LightFM loss")
    group.add_argument(
        "--lightfm-threads",
        type=int,
        default=1,
        help="LightFM threads (default 1: exactly reproducible; more is faster)",
    )
    group.add_argument("--model-seed", type=int, default=0, help="model initialisation and bootstrap seed (default 0)")
    group.add_argument(
        "--lm-profile",
        choices=("cpu", "gpu"),
        default="cpu",
        help="transformer fine-tuning profile: cpu (minutes on 2 cores) or gpu (bf16, all GPUs)",
    )
    group.add_argument(
        "--lm-encoder", help="pretrained encoder: a local folder or hub id (default: the packaged all-MiniLM-L6-v2)"
    )
    group.add_argument(
        "--refresh",
        action="store_true",
        help="refit every model even when a cached fit of the same split, settings and code exists",
    )
    group.add_argument(
        "--promotion",
        choices=("gate", "always", "never"),
        default="gate",
        help="when the published model replaces the champion: gate (a significant NDCG@K gain on the "
        "same test users, guards held; default), always, or never",
    )
    group.add_argument(
        "--lightfm-params",
        type=json.loads,
        default={},
        help="LightFM hyperparameters as JSON, e.g. the best of `python -m flows.search`: "
        '\'{"no_components": 64, "learning_rate": 0.03}\'',
    )
    add_runner_arguments(parser)
    group.add_argument(
        "--no-publish",
        action="store_true",
        help="do not publish the fused model to the workspace's registry (published by default; the "
        "first published model becomes the champion that `python -m serve` serves)",
    )


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Where independent work runs (each split's or seed's fits, search trials): see flows.runners."""
    group = parser.add_argument_group("where independent work runs (splits and seeds, search trials)")
    group.add_argument(
        "--runner",
        choices=("sequential", "threads", "dask"),
        default="sequential",
        help="Prefect task runner: sequential (default), threads, or dask (prefect-dask: a local "
        "cluster of --workers processes, or the cluster at --dask-address)",
    )
    group.add_argument("--workers", type=int, default=2, help="threads or local Dask worker processes (default 2)")
    group.add_argument("--dask-address", help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")


def runner_config(args: argparse.Namespace):
    from flows.runners import RunnerConfig

    return RunnerConfig(kind=args.runner, workers=args.workers, address=args.dask_address)


def model_params(args: argparse.Namespace):
    """The baselines flow's parameter model from parsed arguments (workspace and splits left default)."""
    from flows.baselines import BaselinesParams
    from models.evaluation import EvalConfig
    from models.promotion import PromotionConfig
    from tasks.train import TrainConfig

    return BaselinesParams(
        train=TrainConfig(
            models=tuple(args.models),
            lightfm_loss=args.lightfm_loss,
            lightfm_threads=args.lightfm_threads,
            lightfm_params=args.lightfm_params,
            seed=args.model_seed,
            lm_profile=args.lm_profile,
            lm_overrides={"encoder": args.lm_encoder} if args.lm_encoder else {},
        ),
        evaluation=EvalConfig(k=args.k, seed=args.model_seed, ranking_users=args.ranking_users),
        refresh_cache=args.refresh,
        publish=not args.no_publish,
        promotion=PromotionConfig(mode=args.promotion),
        runner=runner_config(args),
    )


RATING_COLUMNS = ("rmse", "mae")
RANKING_COLUMNS = ("ndcg", "recall", "map", "mrr", "auc", "diversity", "novelty")


def _cell(rows: pd.DataFrame, metric: str) -> str:
    if metric not in rows.index:
        return "".rjust(24)
    value, low, high = rows.loc[metric, ["value", "ci_low", "ci_high"]]
    return f"{value:.4f} [{low:.3f},{high:.3f}]".rjust(24)


def print_evaluation(summary: dict) -> None:
    """Each split's models x headline metrics, value [95% CI], segment 'all'."""
    for split_id, split in summary["splits"].items():
        results = split["results"]
        overall = results[results["segment"] == "all"]
        print(f"\n{split_id} ({split['protocol']}), test set; 95% bootstrap CIs over users")
        for title, metrics in (("rating", RATING_COLUMNS), ("ranking", RANKING_COLUMNS)):
            table = overall[overall["metric"].isin(metrics)]
            if table.empty:
                continue
            k = int(table["k"].max())
            shown = [m for m in metrics if m in set(table["metric"])]
            labels = [f"{m}@{k}" if title == "ranking" and m != "auc" else m for m in shown]  # AUC has no cut-off
            print("  " + "model".ljust(16) + "".join(label.rjust(24) for label in labels))
            for model, rows in table.groupby("model", sort=False):
                by_metric = rows.set_index("metric")
                print(f"  {model.ljust(16)}" + "".join(_cell(by_metric, m) for m in shown))
    print(
        f"\nper-user values, metrics and paired tests are in {summary['database']} "
        "(eval_per_user, eval_results, eval_tests)"
    )
