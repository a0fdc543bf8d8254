"""The flows' command line: ``python -m flows.<name>`` parses its arguments here, builds the flow's parameter
model (``flows/params.py``), runs the flow and prints what a user checks.

Parsing imports nothing heavy (no Prefect, pandas or torch: ``--help`` answers at once); a flow module runs
:func:`main` before its own imports. Errors a user can cause (a bad path, invalid parameters, a dataset that
fails validation, a busy workspace) end in one ``error:`` line and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from models.evaluation import PROTOCOLS
from models.registry import MODELS
from readers.spec import FORMATS


@dataclass(frozen=True)
class Command:
    """A flow's command line: its arguments, and how parsed arguments run the flow and print its summary."""

    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


def main(flow: str, description: str | None, argv: list[str] | None = None) -> int:
    """Parse ``argv`` for ``python -m flows.<flow>``, run it, and return the process's exit status."""
    command = COMMANDS[flow]
    parser = argparse.ArgumentParser(
        prog=f"python -m flows.{flow}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.arguments(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda: command.run(args))


# --- errors ---------------------------------------------------------------------------------------------------
def _user_errors() -> tuple[type[BaseException], ...]:
    from data_checks import ValidationFailed
    from models.serving.bundle import BundleError
    from models.serving.model import RequestError
    from readers import InputError
    from tasks.store import WorkspaceBusy

    return (InputError, ValidationFailed, WorkspaceBusy, BundleError, RequestError)


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a failed task's or flow's traceback; for errors in the user's input the message alone
    says what to fix, so drop the traceback from those records (other errors keep theirs)."""

    def __init__(self, errors: tuple[type[BaseException], ...]):
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.errors):
            record.exc_info, record.exc_text = None, None
        return True


def run_cli(body: Callable[[], object]) -> int:
    """Run ``body``; turn the errors a user can cause into one clear message and exit status 2."""
    import pydantic

    errors = _user_errors()
    quiet = _NoTracebackForUserErrors(errors)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(quiet)
    try:
        body()
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        print(f"\nerror: invalid parameters: {problems}", file=sys.stderr)
        return 2
    except errors as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    return 0


# --- arguments ------------------------------------------------------------------------------------------------
def _prepare_arguments(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """Arguments of the prepare stage (also accepted by ``flows.full``); ``several``: ``flows.study``'s
    (several datasets, each detected from its path, each in its own workspace)."""
    data = parser.add_argument_group("dataset")
    if several:
        data.add_argument(
            "--data",
            nargs="+",
            metavar="PATH",
            help="dataset files or folders, each detected from its path (default: the embedded default dataset)",
        )
        data.add_argument(
            "--workspaces",
            help="folder holding one workspace per dataset, <folder>/<dataset name> (default: workspace/ in the "
            "project folder)",
        )
        _ingest_and_split_arguments(parser)
        return
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
    _ingest_and_split_arguments(parser)


def _ingest_and_split_arguments(parser: argparse.ArgumentParser) -> None:
    ingest = parser.add_argument_group("ingest and validation")
    ingest.add_argument(
        "--duplicate-policy",
        choices=("latest", "first", "error"),
        default="latest",
        help="repeated (user, item) pairs: keep the latest (default), the first, or stop",
    )
    ingest.add_argument(
        "--text-duplicates",
        choices=("keep", "collapse", "error"),
        default="keep",
        help="one user's identical review text on several items (product variants): keep them (default; the "
        "data card warns), collapse each group to one interaction, or stop",
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
        default=0.9,
        metavar="FRACTION",
        help="with item metadata: stop when a smaller share of interactions has its item in it (default 0.9; "
        "items without metadata are still used, with id features only)",
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


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the train stage (also accepted by ``flows.full``)."""
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
    group.add_argument(
        "--min-segment-users",
        type=int,
        default=20,
        help="segments (user activity, item popularity) with fewer users get no verdict (default 20)",
    )
    group.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="significance level of the Holm-corrected paired tests behind 'better'/'worse' (default 0.05)",
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
        choices=("cpu", "gpu", "cpu-lora", "gpu-lora"),
        default="cpu",
        help="transformer fine-tuning profile: cpu (lower layers frozen, minutes on 2 cores), gpu (full "
        "fine-tuning, bf16, all GPUs), cpu-lora / gpu-lora (LoRA adapters instead) (default cpu)",
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
    group.add_argument(
        "--no-publish",
        action="store_true",
        help="do not publish the fused model to the workspace's registry (published by default; the "
        "first published model becomes the champion that `python -m serve` serves)",
    )
    _runner_arguments(parser)


def _runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Where independent work runs (each split's or seed's fits, search trials): see ``RunnerConfig``."""
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


def _workspace_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workspace", help=f"{what} (default: the default dataset's, workspace/<its name>)")


# --- parameter models from arguments ----------------------------------------------------------------------
def _prepare_params(args: argparse.Namespace):
    from data_checks import ValidationConfig
    from flows.params import PrepareParams
    from models.evaluation import SplitConfig
    from tasks.ingest import IngestConfig

    several = isinstance(args.data, list)  # flows.study: the study sets each dataset's path and workspace
    return PrepareParams(
        data=args.data if args.data and not several else None,
        format=None if several else args.format,
        items=None if several else args.items,
        users=None if several else args.users,
        tags=None if several else args.tags,
        mapping=None if several else args.mapping,
        rating_scale=tuple(args.rating_scale) if not several and args.rating_scale else None,
        delimiter="," if several else args.delimiter,
        name=None if several else args.name,
        workspace=None if several else args.workspace,
        ingest=IngestConfig(duplicate_policy=args.duplicate_policy, text_duplicates=args.text_duplicates),
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


def _runner_config(args: argparse.Namespace):
    from flows.params import RunnerConfig

    return RunnerConfig(kind=args.runner, workers=args.workers, address=args.dask_address)


def _train_params(args: argparse.Namespace, **fields):
    """The train flow's parameter model (``fields``: workspace and splits, when given)."""
    from flows.params import TrainParams
    from models.evaluation.harness import EvalConfig
    from models.registry import TrainConfig
    from models.serving.promotion import PromotionConfig

    return TrainParams(
        train=TrainConfig(
            models=tuple(args.models),
            lightfm_loss=args.lightfm_loss,
            lightfm_threads=args.lightfm_threads,
            lightfm_params=args.lightfm_params,
            seed=args.model_seed,
            lm_profile=args.lm_profile,
            lm_overrides={"encoder": args.lm_encoder} if args.lm_encoder else {},
        ),
        evaluation=EvalConfig(
            k=args.k,
            seed=args.model_seed,
            ranking_users=args.ranking_users,
            min_segment_users=args.min_segment_users,
            alpha=args.alpha,
        ),
        refresh_cache=args.refresh,
        publish=not args.no_publish,
        promotion=PromotionConfig(mode=args.promotion),
        runner=_runner_config(args),
        **{key: value for key, value in fields.items() if value is not None},
    )


def _existing(workspace: str | None):
    """The named (or default) workspace, which prepare must have filled: a clear error otherwise."""
    from tasks.store import DEFAULT_WORKSPACE, Workspace

    return Workspace.existing(workspace or DEFAULT_WORKSPACE)


def _flow(name: str):
    """The flow of ``flows/<name>.py``, imported only when it runs (the flow modules hand their command line
    to this module before importing anything heavy; this module never imports them at the top)."""
    return getattr(import_module(f"flows.{name}"), name)


# --- each flow's command --------------------------------------------------------------------------------------
def _run_prepare(args: argparse.Namespace) -> None:
    params = _prepare_params(args)
    params.dataset()  # a bad path or format stops here, before Prefect's server starts
    prepare = _flow("prepare")
    print_prepare_summary(prepare(params))


def _full_arguments(parser: argparse.ArgumentParser) -> None:
    _prepare_arguments(parser)
    _model_arguments(parser)
    parser.add_argument_group("report").add_argument(
        "--output", help="report folder (default: <workspace>/reports/<run id>)"
    )


def _run_full(args: argparse.Namespace) -> None:
    from flows.params import FullParams, ReportParams

    params = FullParams(
        prepare=_prepare_params(args), train=_train_params(args), report=ReportParams(output=args.output)
    )
    params.prepare.dataset()
    full = _flow("full")
    summary = full(params)
    print_prepare_summary(summary["prepare"])
    print_evaluation(summary["train"])
    print(f"\nreport: {summary['report']['html']}\n        {summary['report']['markdown']}")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _workspace_argument(parser, "prepared workspace folder")
    parser.add_argument(
        "--splits", nargs="+", help="split ids to evaluate (default: random_s0 temporal_s0 cold_items_s0)"
    )
    _model_arguments(parser)


def _run_train(args: argparse.Namespace) -> None:
    workspace = _existing(args.workspace)
    params = _train_params(args, workspace=str(workspace.root), splits=tuple(args.splits) if args.splits else None)
    train = _flow("train")
    print_evaluation(train(params))


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    _workspace_argument(parser, "workspace folder")
    parser.add_argument("--run", dest="run_id", help="run id of a train/full run (default: the latest evaluated)")
    parser.add_argument("--output", help="output folder (default: <workspace>/reports/<run id>)")


def _run_report(args: argparse.Namespace) -> None:
    from flows.params import ReportParams

    workspace = _existing(args.workspace)
    params = ReportParams(workspace=str(workspace.root), run_id=args.run_id, output=args.output)
    report = _flow("report")
    paths = report(params)
    print(f"\nreport of run {paths['run_id']}:\n  {paths['html']}\n  {paths['markdown']}")


def _search_arguments(parser: argparse.ArgumentParser) -> None:
    _workspace_argument(parser, "prepared workspace folder")
    parser.add_argument("--split", default="random_s0", help="split whose validation fold judges (default random_s0)")
    parser.add_argument("--trials", type=int, default=8, help="configurations tried, the default included (8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the configuration draws (default 0)")
    parser.add_argument("--lightfm-loss", choices=("warp", "bpr", "logistic"), default="warp")
    parser.add_argument("--max-epochs", type=int, default=30, help="epochs at most per trial (default 30)")
    _runner_arguments(parser)


def _run_search(args: argparse.Namespace) -> None:
    from flows.params import SearchParams
    from models.registry import TrainConfig

    workspace = _existing(args.workspace)
    params = SearchParams(
        workspace=str(workspace.root),
        split=args.split,
        trials=args.trials,
        seed=args.seed,
        train=TrainConfig(lightfm_loss=args.lightfm_loss, lightfm_max_epochs=args.max_epochs),
        runner=_runner_config(args),
    )
    search = _flow("search")
    out = search(params)
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


def _recommend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", dest="users", action="append", required=True, help="user id (repeatable)")
    parser.add_argument("-k", type=int, default=10, help="items per user (default 10, at most 1000)")
    _workspace_argument(parser, "workspace whose champion answers")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _run_recommend(args: argparse.Namespace) -> None:
    from flows.params import RecommendParams

    fields = {"workspace": args.workspace} if args.workspace else {}
    params = RecommendParams(users=tuple(args.users), k=args.k, **fields)
    recommend = _flow("recommend")
    result = recommend.fn(params)  # the flow's function: no Prefect run for one shell answer
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"model {result['model_version']}")
    for rec in result["recommendations"]:
        print(f"\n{rec['user_id']} ({rec['strategy']})")
        for n, (item, score) in enumerate(zip(rec["items"], rec["scores"], strict=True)):
            why = rec["explanations"][n] if rec["explanations"] else {}
            drivers = ", ".join(f"{name} {value:+.2f}" for name, value in why.get("drivers", {}).items())
            similar = "; like " + ", ".join(s["item_id"] for s in why["similar_to"]) if why.get("similar_to") else ""
            print(f"  {n + 1:>3}. {item:<14} {score:8.3f}   {drivers}{similar}")


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    _prepare_arguments(parser, several=True)
    _model_arguments(parser)  # --runner: where the datasets' experiments run (each trains its splits in turn)
    parser.add_argument_group("report").add_argument(
        "--output", help="study report folder (default: <workspaces>/studies/<study id>)"
    )


def _run_study(args: argparse.Namespace) -> None:
    from flows.params import FullParams, RunnerConfig, StudyParams

    experiment = FullParams(
        prepare=_prepare_params(args), train=_train_params(args).model_copy(update={"runner": RunnerConfig()})
    )
    params = StudyParams(
        data=tuple(args.data or ()),
        experiment=experiment,
        runner=_runner_config(args),
        workspaces=args.workspaces,
        output=args.output,
    )
    for path in params.datasets():  # a bad path stops here, before Prefect's server starts
        params.experiment.prepare.model_copy(update={"data": path}).dataset()
    study = _flow("study")
    summary = study(params)
    print(f"\nstudy {summary['study_id']}:")
    for name, outcome in summary["datasets"].items():
        state = outcome["status"] if outcome["status"] == "completed" else f"failed: {outcome['error']}"
        print(f"  {name}: {state}")
    print(f"report: {summary['html']}\n        {summary['markdown']}")


COMMANDS: dict[str, Command] = {
    "prepare": Command(_prepare_arguments, _run_prepare),
    "train": Command(_train_arguments, _run_train),
    "report": Command(_report_arguments, _run_report),
    "full": Command(_full_arguments, _run_full),
    "search": Command(_search_arguments, _run_search),
    "recommend": Command(_recommend_arguments, _run_recommend),
    "study": Command(_study_arguments, _run_study),
}


# --- what a user checks -----------------------------------------------------------------------------------------
def print_prepare_summary(summary: dict) -> None:
    """The counts a user checks after prepare: accounting per file, table sizes, split sizes."""
    print(f"\nprepared {summary['dataset']} in {summary['database']} (run {summary['run_id']})")
    print(
        f"\n{'input':<14}{'raw':>10}{'kept':>10}{'quarantined':>13}{'exact dup':>11}{'superseded':>12}{'text dup':>10}"
    )
    for role, a in summary["accounting"].items():
        print(
            f"{role:<14}{a['raw']:>10,}{a['kept']:>10,}{a['quarantined']:>13,}"
            f"{a['exact_duplicates']:>11,}{a['superseded']:>12,}{a.get('text_duplicates', 0):>10,}"
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
    if summary.get("data_card"):
        print_data_card(summary["data_card"])


def print_data_card(card: dict) -> None:
    """The data card's few lines: what the data is, and its warnings as one paragraph."""
    from data_checks.card import card_lines, warning_paragraph

    print("\ndata card")
    for line in card_lines(card):
        print(f"  {line}")
    paragraph = warning_paragraph(card)
    print(f"\n{paragraph}" if paragraph else "  no threat to validity above the thresholds")


RATING_COLUMNS = ("rmse", "mae")
RANKING_COLUMNS = ("ndcg", "recall", "map", "mrr", "auc", "diversity", "novelty")


def _cell(rows, metric: str) -> str:
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
