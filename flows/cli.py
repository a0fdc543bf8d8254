"""The flows' command line: ``python -m flows.<name>`` parses its arguments here, builds the flow's parameter
model (``flows/params.py``, the same model the Prefect UI's form and ``--config FILE`` fill), runs the flow and
prints what a user checks (``reports/console.py``).

This module says which fields each command offers and under which flag; everything else about an option comes
from its field (``flows/options.py``: help, default, type, allowed values). One flag per concept across the
commands (``--k``, ``--splits``, ``--workspace``, ``--split-seeds``, ``--model-seed``; tests check it).
``--config FILE`` (YAML or JSON, the parameter model's fields) sets any field, options given on the command line
override it, and ``--print-config`` prints the validated parameters without running: a run configured in a
file, on the command line or in the UI is the same run.

Parsing imports nothing heavy (no Prefect, pandas or torch: ``--help`` answers at once); a flow module runs
:func:`main` before its own imports. Errors a user can cause (a bad path or config file, invalid parameters, a
dataset that fails validation, a busy workspace) end in one ``error:`` line and exit status 2, without a
traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import import_module

from flows.options import UNSET, Command, ConfigError, Group, Option, build_params, fields, guarded
from flows.options import parser_for as _parser

__all__ = ["COMMANDS", "UNSET", "build_params", "main", "parser_for", "run_cli"]


# --- the options, one group per component: field paths; the flag is the field's name (``--no-<name>`` for a
# switch off), except for the short names below; help, default, type and choices are the field's --------------
FLAGS = {  # field path -> its flag, where the field's own name is not the flag
    "mapping": "--map",
    "items_mapping": "--items-map",
    "users_mapping": "--users-map",
    "validation.max_quarantine_fraction": "--max-quarantine",
    "seeds": "--split-seeds",
    "refresh_cache": "--refresh",
    "promotion.mode": "--promotion",
    "promotion.alpha": "--promotion-alpha",
    "promotion.tolerance": "--promotion-tolerance",
    "kind": "--runner",
    "address": "--dask-address",
    "run_id": "--run",
    "dataset": "--dataset-title",
    "split": "--splits",  # the search's one split, named as the train stage's several
    "seed": "--search-seed",
    "train.seed": "--model-seed",
}
METAVARS = {
    "mapping": "FIELD=COLUMN,...",
    "items_mapping": "FIELD=COLUMN,...",
    "users_mapping": "FIELD=COLUMN,...",
    "na_values": "TEXT",
    "rating_scale": ("LOW", "HIGH"),
    "validation.max_quarantine_fraction": "FRACTION",
    "validation.min_item_coverage": "FRACTION",
    "seeds": "SEED",
    "split.protocols": "PROTOCOL",
    "split.fractions": ("TRAIN", "VALIDATION", "TEST"),
    "split.folds": "K",
    "split.kfold_validation": "FRACTION",
    "split.train_fractions": "FRACTION",
    "train.lm_encoders": "ENCODER",
    "train.sequential_protocols": "PROTOCOL",
}


def _fields(title: str, paths: str, *extra: Option) -> Group:
    return fields(title, paths, FLAGS, METAVARS, SWITCHED_OFF, *extra)


SWITCHED_OFF = {"validation.data_docs", "train.overlap", "publish"}  # True by default: the flag turns them off
DATASET = _fields(
    "dataset",
    "data format items users tags mapping items_mapping users_mapping rating_scale delimiter na_values name workspace",
)
DATASETS = Group("datasets", (Option("--data", "data", metavar="PATH"), Option("--workspaces", "workspaces")))
INGEST = _fields(
    "ingest and validation",
    "ingest.duplicate_policy ingest.text_duplicates validation.max_quarantine_fraction validation.min_item_coverage "
    "validation.data_docs",
)
SPLIT = _fields(
    "split",
    "seeds split.protocols split.fractions split.folds split.kfold_validation split.train_fractions "
    "split.cold_item_fraction split.min_user_interactions split.kcore",
)
MODELS_GROUP = _fields(
    "models",
    "train.models",
    Option("--model-seed", ("train.seed", "evaluation.seed"), "model initialisation and bootstrap seed"),
    *_fields(
        "",
        "train.lightfm_loss train.lightfm_threads train.lightfm_trials train.lightfm_max_epochs "
        "train.lightfm_params train.sequential_protocols train.sequential_trials train.lm_sequential_trials "
        "train.lm_profile",
    ).options,  # fmt: skip
    Option(
        "--lm-encoder",
        "train.lm_overrides.encoder",
        "pretrained encoder: a local folder or hub id (default: the packaged all-MiniLM-L6-v2)",
    ),
    *_fields("", "train.lm_encoders train.overlap refresh_cache").options,
)
EVALUATION = _fields("evaluation", "k n_boot ranking_users min_segment_users alpha")
PUBLISHING = _fields("publishing", "publish publish_split promotion.mode promotion.alpha promotion.tolerance")
RUNNER = _fields(
    "where independent work runs (splits and seeds, search trials, a study's datasets)", "kind workers address"
)
WORKSPACE = _fields("workspace", "workspace")
SPLITS = _fields("splits", "splits")
REPORT_OUTPUT = _fields("report", "output")
REPORT_RUN = _fields("report", "run_id output dataset")
SEARCH = _fields("search", "split trials seed train.lightfm_loss train.lightfm_max_epochs train.seed")
RECOMMEND = Group(
    "recommendations",
    (
        Option(
            "--user",
            "users",
            "a user id, repeatable: --user a --user b (no default: at least one, here or in --config)",
            metavar="USER",
            repeat=True,
        ),
        Option("--k", "k"),
    ),
)
RETENTION = _fields("retention", "retention_days")
FORGET = _fields("erasure", "user_id")
STUDY_OUTPUT = _fields("report", "output report_only")


def parser_for(flow: str, description: str | None = None):
    """``python -m flows.<flow>``'s parser; options given are the only attributes of its namespace."""
    return _parser(COMMANDS[flow], f"python -m flows.{flow}", description)


def main(flow: str, description: str | None, argv: list[str] | None = None) -> int:
    """Parse ``argv`` for ``python -m flows.<flow>``, run it, and return the process's exit status."""
    command = COMMANDS[flow]
    given = vars(parser_for(flow, description).parse_args(argv))
    config, show = given.pop("config", None), given.pop("print_config", False)

    def body() -> None:
        params = build_params(command, given, config)
        if show:
            print(json.dumps(params.model_dump(mode="json"), indent=2))
            return
        command.run(params, given)

    return run_cli(body)


def run_cli(body: Callable[[], object]) -> int:
    """Run ``body``; the errors a user can cause end in one clear message and exit status 2 (Prefect's log of a
    failed task or flow keeps the message and drops the traceback for them)."""
    from data_checks import ValidationFailed
    from flows.stop import stop_promptly
    from models.serving.bundle import BundleError
    from models.serving.model import RequestError
    from readers import InputError
    from tasks.store import WorkspaceBusy

    errors = (InputError, ValidationFailed, WorkspaceBusy, BundleError, RequestError, ConfigError)
    stop_promptly()  # until a flow starts (Prefect's server starting, say) as well as inside each flow
    return guarded(body, errors, loggers=("prefect.flow_runs", "prefect.task_runs"))


# --- each flow's command ---------------------------------------------------------------------------------------
def _runs(flow: str, printer: str, *, existing: bool = True, check: Callable | None = None) -> Callable:
    """How ``python -m flows.<flow>`` runs: ``check`` its inputs before Prefect's server starts (a bad path stops
    there; the dataset it resolves is resolved for the run: ``PrepareParams.dataset``), require its workspace to
    exist (prepare must have filled it), run the flow (imported only now: this module never imports the flows at
    the top) on its settings and inputs (a flat command-line model taken apart: ``TrainParams.settings()``,
    ``.inputs()``), print its result with ``reports.console.<printer>``."""

    def run(params, given: dict) -> None:
        if check is not None:
            check(params)
        if existing:
            from tasks.store import DEFAULT_WORKSPACE, Workspace

            root = Workspace.existing(params.workspace or DEFAULT_WORKSPACE).root
            params = params.model_copy(update={"workspace": str(root)})
        stage = getattr(import_module(f"flows.{flow}"), flow)
        if hasattr(params, "inputs"):  # a stage: its settings and its inputs
            result = stage(params.settings(), params.inputs())
        else:
            result = stage(params)
        getattr(import_module("reports.console"), printer)(result)

    return run


def _run_prepare(params, given: dict) -> None:
    if given.get("list_datasets"):
        from readers.catalogue import listing

        print(listing())
        return
    _runs("prepare", "print_prepare_summary", existing=False, check=lambda p: p.dataset())(params, given)


def _run_recommend(params, given: dict) -> None:
    from flows.recommend import recommend
    from reports.console import print_recommendations

    result = recommend.fn(params)  # the flow's function: no Prefect run for one shell answer
    if given.get("json"):
        print(json.dumps(result, indent=1))
    else:
        print_recommendations(result)


def _check_study(params) -> None:
    for path in params.datasets():
        params.prepare_for(path).dataset()


def _under(prefix: str, mount: str) -> str:
    return ".".join(part for part in (prefix, mount) if part)


_PREPARE = ((DATASET, ""), (INGEST, ""), (SPLIT, ""))
_TRAIN = ((MODELS_GROUP, ""), (EVALUATION, "evaluation"), (PUBLISHING, ""), (RUNNER, "runner"))
_LIST = Option("--list-datasets", None, "print the dataset catalogue (names for --data, sizes, licences, whether "
               "cached) and exit", const=True)  # fmt: skip
COMMANDS: dict[str, Command] = {
    "prepare": Command("PrepareParams", _PREPARE, _run_prepare, outputs=(_LIST,)),
    "train": Command("TrainParams", ((WORKSPACE, ""), (SPLITS, ""), *_TRAIN), _runs("train", "print_evaluation")),
    "report": Command("ReportParams", ((WORKSPACE, ""), (REPORT_RUN, "")), _runs("report", "print_report")),
    "full": Command(
        "FullParams",
        (
            *((group, "prepare") for group, _ in _PREPARE),
            *((group, _under("train", mount)) for group, mount in _TRAIN),
            (REPORT_OUTPUT, "report"),
        ),
        _runs("full", "print_experiment", existing=False, check=lambda p: p.prepare.dataset()),
    ),
    "search": Command(
        "SearchParams", ((WORKSPACE, ""), (SEARCH, ""), (RUNNER, "runner")), _runs("search", "print_search")
    ),
    "recommend": Command(
        "RecommendParams",
        ((WORKSPACE, ""), (RECOMMEND, "")),
        _run_recommend,
        outputs=(Option("--json", None, "print the result as JSON", const=True),),
    ),
    "prune": Command("PruneParams", ((WORKSPACE, ""), (RETENTION, "")), _runs("prune", "print_prune")),
    "forget": Command("ForgetParams", ((WORKSPACE, ""), (FORGET, "")), _runs("forget", "print_erasure")),
    "study": Command(
        "StudyParams",
        (
            (DATASETS, ""),
            (INGEST, "experiment.prepare"),
            (SPLIT, "experiment.prepare"),
            *((group, _under("experiment.train", mount)) for group, mount in _TRAIN if group is not RUNNER),
            (RUNNER, "runner"),  # the datasets' experiments; each trains its splits in turn
            (STUDY_OUTPUT, ""),
        ),
        _runs("study", "print_study", existing=False, check=_check_study),
    ),
}
