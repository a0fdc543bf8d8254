"""The flows' command line: ``python -m flows.<name>`` parses its arguments here, builds the flow's parameter
model (``flows/params.py``, the same model the Prefect UI's form and ``--config FILE`` fill), runs the flow and
prints what a user checks.

Every option names one field of the flow's parameter model (``Option.path``): one flag per concept across the
commands (``--k``, ``--splits``, ``--workspace``, ``--split-seeds``, ``--model-seed``), and the default shown in
``--help`` is the model's (tests check both). ``--config FILE`` (YAML or JSON, the parameter model's fields)
sets any field, options given on the command line override it, and ``--print-config`` prints the validated
parameters without running: a run configured in a file, on the command line or in the UI is the same run.

Parsing imports nothing heavy (no Prefect, pandas or torch: ``--help`` answers at once); a flow module runs
:func:`main` before its own imports. Errors a user can cause (a bad path or config file, invalid parameters, a
dataset that fails validation, a busy workspace) end in one ``error:`` line and exit status 2, without a
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import get_args

from models.evaluation import DEFAULT_PROTOCOLS, DEFAULT_SPLITS, PROTOCOLS
from models.lm.config import Profile
from models.recommenders import LightFMLoss
from models.registry import MODELS
from readers.spec import FORMATS

UNSET = object()  # an option whose field's default is resolved at run time (its help says how)


@dataclass(frozen=True)
class Option:
    """One command-line option: the parameter-model field(s) it sets, relative to where its group is mounted.

    ``default`` is the field's default as ``--help`` shows it (tests check it equals the model's); ``const``
    makes a switch that sets the field to that value; ``path=None``: an option of the command's output, not
    of the flow's parameters."""

    flag: str
    path: str | tuple[str, ...] | None
    help: str
    default: object = UNSET
    type: Callable | None = None
    choices: Sequence | None = None
    nargs: int | str | None = None
    metavar: str | tuple[str, ...] | None = None
    const: object = UNSET
    repeat: bool = False  # given once per value (``--user a --user b``)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def paths(self, mount: str) -> tuple[str, ...]:
        relative = (self.path,) if isinstance(self.path, str) else tuple(self.path or ())
        return tuple(f"{mount}.{p}" if mount else p for p in relative)

    def add_to(self, group) -> None:
        shown = self.help
        if self.default is not UNSET and self.const is UNSET:
            value = " ".join(map(str, self.default)) if isinstance(self.default, tuple | list) else self.default
            shown = f"{self.help} (default: {value})"
        shown = shown.replace("%", "%%")  # argparse expands %(...)s in help
        if self.const is not UNSET:
            group.add_argument(self.flag, dest=self.dest, action="store_const", const=self.const, help=shown)
            return
        extra = {"type": self.type, "choices": self.choices, "nargs": self.nargs, "metavar": self.metavar}
        extra = {key: value for key, value in extra.items() if value is not None}
        if self.repeat:
            extra["action"] = "append"
        group.add_argument(self.flag, dest=self.dest, help=shown, **extra)


@dataclass(frozen=True)
class Group:
    title: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Command:
    """A flow's command line: its parameter model (a class of ``flows/params.py``), its option groups, each
    mounted at a field path of that model, and how the validated parameters run the flow."""

    model: str
    groups: tuple[tuple[Group, str], ...]
    run: Callable[[object, dict], None]
    outputs: tuple[Option, ...] = field(default_factory=tuple)

    def options(self):
        """(option, mount) for every option of the command's parameters."""
        return [(option, mount) for group, mount in self.groups for option in group.options]


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg} at character {err.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"no_components\": 64}}', got {text!r}")
    return value


# --- the options, one group per component ------------------------------------------------------------------
DATASET = Group(
    "dataset",
    (
        Option("--data", "data", "dataset file or folder (default: the embedded Amazon Musical Instruments 5-core)"),
        Option("--format", "format", "input format (default: detected from the path)", choices=FORMATS),
        Option("--items", "items", "item metadata file, e.g. an Amazon meta_*.json.gz (default: detected)"),
        Option("--users", "users", "user attributes file, e.g. MovieLens 100K u.user (default: detected)"),
        Option("--tags", "tags", "MovieLens tags.csv (default: detected)"),
        Option(
            "--map",
            "mapping",
            "tabular input: canonical field to input column, e.g. "
            "'user_id=reviewer,item_id=product,rating=stars,timestamp=time,review_text=body' (default: the "
            "canonical names)",
            metavar="FIELD=COLUMN,...",
        ),
        Option(
            "--rating-scale",
            "rating_scale",
            "declared rating scale (default: the format's, e.g. 1 5 or 0.5 5)",
            type=float,
            nargs=2,
            metavar=("LOW", "HIGH"),
        ),
        Option("--delimiter", "delimiter", "tabular CSV field delimiter", default=","),
        Option("--name", "name", "dataset name; names the default workspace (default: from the path)"),
        Option(
            "--workspace",
            "workspace",
            "folder holding reclab.duckdb and run outputs (default: workspace/<dataset name> in the project folder)",
        ),
    ),
)
DATASETS = Group(  # flows.study: several datasets, each detected from its path, each in its own workspace
    "datasets",
    (
        Option(
            "--data",
            "data",
            "dataset files or folders, each detected from its path (default: the embedded default dataset)",
            nargs="+",
            metavar="PATH",
        ),
        Option(
            "--workspaces",
            "workspaces",
            "folder holding one workspace per dataset, <folder>/<dataset name> (default: workspace/ in the "
            "project folder)",
        ),
    ),
)
INGEST = Group(
    "ingest and validation",
    (
        Option(
            "--duplicate-policy",
            "ingest.duplicate_policy",
            "repeated (user, item) pairs: keep the latest, the first, or stop",
            default="latest",
            choices=("latest", "first", "error"),
        ),
        Option(
            "--text-duplicates",
            "ingest.text_duplicates",
            "one user's identical review text on several items (product variants): keep them (the data card "
            "warns), collapse each group to one interaction, or stop",
            default="keep",
            choices=("keep", "collapse", "error"),
        ),
        Option(
            "--max-quarantine",
            "validation.max_quarantine_fraction",
            "stop when more than this share of a file's records is quarantined",
            default=0.01,
            type=float,
            metavar="FRACTION",
        ),
        Option(
            "--min-item-coverage",
            "validation.min_item_coverage",
            "with item metadata: stop when a smaller share of interactions has its item in it (items without "
            "metadata are still used, with id features only)",
            default=0.9,
            type=float,
            metavar="FRACTION",
        ),
        Option("--no-data-docs", "validation.data_docs", "skip writing GX Data Docs HTML", const=False),
    ),
)
SPLIT = Group(
    "split",
    (
        Option(
            "--split-seeds",
            "seeds",
            "split seeds: every protocol is split once per seed (e.g. 0 1 2; the report adds mean ± sd) (default: 0)",
            type=int,
            nargs="+",
            metavar="SEED",
        ),
        Option(
            "--protocols",
            "split.protocols",
            f"splits to make, of {', '.join(PROTOCOLS)} (kfold: every rating tested once over --folds folds, "
            "judged as one pooled unit)",
            default=DEFAULT_PROTOCOLS,
            choices=PROTOCOLS,
            nargs="+",
            metavar="PROTOCOL",
        ),
        Option(
            "--fractions",
            "split.fractions",
            "random split shares",
            default=(0.8, 0.1, 0.1),
            type=float,
            nargs=3,
            metavar=("TRAIN", "VALIDATION", "TEST"),
        ),
        Option(
            "--folds",
            "split.folds",
            "kfold: the number of folds K (each rating in exactly one test fold)",
            default=5,
            type=int,
            metavar="K",
        ),
        Option(
            "--kfold-validation",
            "split.kfold_validation",
            "kfold: share of each fold's training part held out as its validation set",
            default=0.125,
            type=float,
            metavar="FRACTION",
        ),
        Option(
            "--train-fractions",
            "split.train_fractions",
            "the sparsity axis: also make each split with only these shares of each user's training ratings "
            "(nested, seeded; the same validation and test folds), e.g. 0.1 0.25 1.0",
            default=(1.0,),
            type=float,
            nargs="+",
            metavar="FRACTION",
        ),
        Option(
            "--cold-item-fraction",
            "split.cold_item_fraction",
            "share of items held out by the cold_items split",
            default=0.1,
            type=float,
        ),
        Option(
            "--min-user-interactions",
            "split.min_user_interactions",
            "temporal split: users with fewer interactions keep them all in training",
            default=3,
            type=int,
        ),
        Option("--kcore", "split.kcore", "k-core filter before splitting (default: none)", type=int),
    ),
)
# options of the LightFM configuration shared by the train stage and the search (fields of TrainConfig)
LIGHTFM_LOSS = Option(
    "--lightfm-loss", "train.lightfm_loss", "LightFM's loss", default="warp", choices=get_args(LightFMLoss)
)
LIGHTFM_MAX_EPOCHS = Option(
    "--lightfm-max-epochs",
    "train.lightfm_max_epochs",
    "LightFM epochs at most per fit (the number is chosen on validation NDCG)",
    default=30,
    type=int,
)
MODELS_GROUP = Group(
    "models",
    (
        Option(
            "--models",
            "train.models",
            f"models to train, of {', '.join(MODELS)}",
            default=MODELS,
            choices=MODELS,
            nargs="+",
            metavar="MODEL",
        ),
        Option(
            "--model-seed",
            ("train.seed", "evaluation.seed"),
            "model initialisation and bootstrap seed",
            default=0,
            type=int,
        ),
        LIGHTFM_LOSS,
        Option(
            "--lightfm-threads",
            "train.lightfm_threads",
            "LightFM threads (1: exactly reproducible; more is faster)",
            default=1,
            type=int,
        ),
        Option(
            "--lightfm-trials",
            "train.lightfm_trials",
            "random LightFM configurations tried on validation besides the default",
            default=2,
            type=int,
        ),
        LIGHTFM_MAX_EPOCHS,
        Option(
            "--lightfm-params",
            "train.lightfm_params",
            "LightFM hyperparameters as JSON, e.g. the best of `python -m flows.search`: "
            '\'{"no_components": 64, "learning_rate": 0.03}\' (default: none, the library defaults)',
            type=_json_object,
        ),
        Option(
            "--lm-profile",
            "train.lm_profile",
            "transformer fine-tuning profile: cpu (lower layers frozen, minutes on 2 cores), gpu (full "
            "fine-tuning, bf16, all GPUs), cpu-lora / gpu-lora (LoRA adapters instead)",
            default="cpu",
            choices=get_args(Profile),
        ),
        Option(
            "--lm-encoder",
            "train.lm_overrides.encoder",
            "pretrained encoder: a local folder or hub id (default: the packaged all-MiniLM-L6-v2)",
        ),
        Option(
            "--lm-encoders",
            "train.lm_encoders",
            "further encoders (local folders or hub ids), one LM variant each beside lm_two_tower, named "
            "lm_two_tower@<folder name>: accuracy against parameters and cost (default: none)",
            nargs="+",
            metavar="ENCODER",
        ),
        Option(
            "--no-overlap",
            "train.overlap",
            "fit one model after the other (default: the LM trains in its own process beside the other fits)",
            const=False,
        ),
        Option(
            "--refresh",
            "refresh_cache",
            "refit every model even when a cached fit of the same split, settings and code exists",
            const=True,
        ),
    ),
)
EVALUATION = Group(
    "evaluation",
    (
        Option("--k", "k", "ranking cut-off K", default=10, type=int),
        Option("--n-boot", "n_boot", "bootstrap resamples behind every 95% CI", default=1000, type=int),
        Option(
            "--ranking-users",
            "ranking_users",
            "rank at most this many test users per split (a seeded sample, the same for every model; "
            "default: all). Full-catalogue ranking costs users x items: for very large datasets",
            type=int,
        ),
        Option(
            "--min-segment-users",
            "min_segment_users",
            "segments (user activity, item popularity) with fewer users get no verdict",
            default=20,
            type=int,
        ),
        Option(
            "--alpha",
            "alpha",
            "significance level behind 'better'/'worse' (primary comparisons Holm-corrected, exploratory ones "
            "Benjamini-Hochberg)",
            default=0.05,
            type=float,
        ),
    ),
)
PUBLISHING = Group(
    "publishing",
    (
        Option(
            "--no-publish",
            "publish",
            "do not publish the fused model to the workspace's registry (published by default; the first "
            "published model becomes the champion that `python -m serve` serves)",
            const=False,
        ),
        Option(
            "--publish-split",
            "publish_split",
            "whose fit to publish (default: the first temporal split, else the first)",
        ),
        Option(
            "--promotion",
            "promotion.mode",
            "when the published model replaces the champion: gate (a significant gain on the same test users, "
            "guards held), always, or never",
            default="gate",
            choices=("gate", "always", "never"),
        ),
        Option(
            "--promotion-alpha",
            "promotion.alpha",
            "the promotion gate's significance level",
            default=0.05,
            type=float,
        ),
        Option(
            "--promotion-tolerance",
            "promotion.tolerance",
            "the promotion gate: relative regression allowed on a guard metric",
            default=0.02,
            type=float,
        ),
    ),
)
RUNNER = Group(
    "where independent work runs (splits and seeds, search trials, a study's datasets)",
    (
        Option(
            "--runner",
            "kind",
            "Prefect task runner: sequential, threads, or dask (prefect-dask: a local cluster of --workers "
            "processes, or the cluster at --dask-address)",
            default="sequential",
            choices=("sequential", "threads", "dask"),
        ),
        Option("--workers", "workers", "threads or local Dask worker processes", default=2, type=int),
        Option(
            "--dask-address", "address", "an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local one)"
        ),
    ),
)


def _workspace(what: str) -> Group:
    return Group("workspace", (Option("--workspace", "workspace", f"{what} (default: the default dataset's)"),))


SPLITS = Group(
    "splits",
    (
        Option(
            "--splits",
            "splits",
            "split ids made by prepare",
            default=DEFAULT_SPLITS,
            nargs="+",
        ),
    ),
)
REPORT_OUTPUT = Group(
    "report", (Option("--output", "output", "report folder (default: <workspace>/reports/<run id>)"),)
)
REPORT_RUN = Group(
    "report",
    (
        Option("--run", "run_id", "run id of a train/full run (default: the latest evaluated)"),
        Option("--output", "output", "report folder (default: <workspace>/reports/<run id>)"),
        Option("--dataset-title", "dataset", "the dataset name in the title (default: the workspace folder's name)"),
    ),
)
SEARCH = Group(
    "search",
    (
        Option(
            "--splits", "split", "the split whose validation fold judges the trials (one id)", default="kfold_s0_f1"
        ),
        Option("--trials", "trials", "configurations tried, the default one included", default=8, type=int),
        Option("--search-seed", "seed", "seed of the configuration draws", default=0, type=int),
        LIGHTFM_LOSS,
        LIGHTFM_MAX_EPOCHS,
        Option("--model-seed", "train.seed", "model initialisation seed", default=0, type=int),
    ),
)
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
        Option("--k", "k", "items per user (at most 1000)", default=10, type=int),
    ),
)
STUDY_OUTPUT = Group(
    "report",
    (
        Option("--output", "output", "study report folder (default: <workspaces>/studies/<study id>)"),
        Option(
            "--report-only",
            "report_only",
            "train nothing: write the study report from each dataset's latest evaluated run in its workspace "
            "(after a change to the report, or to read a study again)",
            const=True,
        ),
    ),
)


# --- parameters from the config file and the command line ---------------------------------------------------
def load_config(path: str) -> dict:
    """The parameter model's fields from a YAML (``.yaml``/``.yml``) or JSON file, as a mapping."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as err:  # the parser's own message names the line and column
        raise ConfigError(
            f"config file {file} is not valid {'YAML' if file.suffix in ('.yaml', '.yml') else 'JSON'}: {err}"
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {file} must hold a mapping of parameter names, not a {type(values).__name__}")
    return values


class ConfigError(ValueError):
    """A config file that cannot be read as parameters."""


def _set(values: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        child = values.get(name)
        if not isinstance(child, dict):
            child = values[name] = {}
        values = child
    values[leaf] = list(value) if isinstance(value, tuple) else value


def build_params(command: Command, given: dict, config: str | None = None):
    """The flow's validated parameter model: the config file's values, overridden by the options given."""
    values = load_config(config) if config else {}
    for option, mount in command.options():
        if option.dest in given:
            for path in option.paths(mount):
                _set(values, path, given[option.dest])
    model = getattr(import_module("flows.params"), command.model)
    return model.model_validate(values)


def offered(params) -> dict:
    """The parameters as JSON values, without the fields the flow sets itself (hidden from the UI's form by
    ``SkipJsonSchema``, e.g. the full experiment's train-stage workspace): what a config file holds."""
    from pydantic import BaseModel
    from pydantic.json_schema import SkipJsonSchema

    def prune(model: BaseModel, dumped: dict) -> dict:
        return {
            name: prune(getattr(model, name), dumped[name])
            if isinstance(getattr(model, name), BaseModel)
            else dumped[name]
            for name, info in type(model).model_fields.items()
            if not any(isinstance(mark, SkipJsonSchema) for mark in info.metadata)
        }

    return prune(params, params.model_dump(mode="json"))


def parser_for(flow: str, description: str | None = None) -> argparse.ArgumentParser:
    """``python -m flows.<flow>``'s parser; options given are the only attributes of its namespace."""
    command = COMMANDS[flow]
    parser = argparse.ArgumentParser(
        prog=f"python -m flows.{flow}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    config = parser.add_argument_group("configuration")
    config.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML or JSON file with the parameters ({command.model} in flows/params.py, the fields of the "
        "Prefect UI's form); options given here override it (default: none, every field's default)",
    )
    config.add_argument(
        "--print-config", action="store_true", help="print the validated parameters as JSON and exit without running"
    )
    seen: dict[str, argparse._ArgumentGroup] = {}
    for group, _ in command.groups:
        if group.title not in seen:
            seen[group.title] = parser.add_argument_group(group.title)
        for option in group.options:
            option.add_to(seen[group.title])
    output = parser.add_argument_group("output") if command.outputs else None
    for option in command.outputs:
        option.add_to(output)
    return parser


def main(flow: str, description: str | None, argv: list[str] | None = None) -> int:
    """Parse ``argv`` for ``python -m flows.<flow>``, run it, and return the process's exit status."""
    command = COMMANDS[flow]
    given = vars(parser_for(flow, description).parse_args(argv))
    config, show = given.pop("config", None), given.pop("print_config", False)

    def body() -> None:
        params = build_params(command, given, config)
        if show:
            print(json.dumps(offered(params), indent=2))
            return
        command.run(params, given)

    return run_cli(body)


# --- errors ---------------------------------------------------------------------------------------------------
def _user_errors() -> tuple[type[BaseException], ...]:
    from data_checks import ValidationFailed
    from models.serving.bundle import BundleError
    from models.serving.model import RequestError
    from readers import InputError
    from tasks.store import WorkspaceBusy

    return (InputError, ValidationFailed, WorkspaceBusy, BundleError, RequestError, ConfigError)


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


# --- each flow's command --------------------------------------------------------------------------------------
def _existing(workspace: str | None) -> str:
    """The named (or default) workspace, which prepare must have filled: a clear error otherwise."""
    from tasks.store import DEFAULT_WORKSPACE, Workspace

    return str(Workspace.existing(workspace or DEFAULT_WORKSPACE).root)


def _flow(name: str):
    """The flow of ``flows/<name>.py``, imported only when it runs (the flow modules hand their command line
    to this module before importing anything heavy; this module never imports them at the top)."""
    return getattr(import_module(f"flows.{name}"), name)


def _run_prepare(params, _) -> None:
    params.dataset()  # a bad path or format stops here, before Prefect's server starts
    print_prepare_summary(_flow("prepare")(params))


def _run_train(params, _) -> None:
    params = params.model_copy(update={"workspace": _existing(params.workspace)})
    print_evaluation(_flow("train")(params))


def _run_report(params, _) -> None:
    paths = _flow("report")(params.model_copy(update={"workspace": _existing(params.workspace)}))
    print(f"\nreport of run {paths['run_id']}:\n  {paths['html']}\n  {paths['markdown']}")


def _run_full(params, _) -> None:
    params.prepare.dataset()
    summary = _flow("full")(params)
    print_prepare_summary(summary["prepare"])
    print_evaluation(summary["train"])
    print(f"\nreport: {summary['report']['html']}\n        {summary['report']['markdown']}")


def _run_search(params, _) -> None:
    out = _flow("search")(params.model_copy(update={"workspace": _existing(params.workspace)}))
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


def _run_recommend(params, given: dict) -> None:
    result = _flow("recommend").fn(params)  # the flow's function: no Prefect run for one shell answer
    if given.get("json"):
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


def _run_study(params, _) -> None:
    for path in params.datasets():  # a bad path stops here, before Prefect's server starts
        params.experiment.prepare.model_copy(update={"data": path}).dataset()
    summary = _flow("study")(params)
    print(f"\nstudy {summary['study_id']}:")
    for name, outcome in summary["datasets"].items():
        state = outcome["status"] if outcome["status"] == "completed" else f"failed: {outcome['error']}"
        print(f"  {name}: {state}")
    print(f"report: {summary['html']}\n        {summary['markdown']}")


def _under(prefix: str, mount: str) -> str:
    return ".".join(part for part in (prefix, mount) if part)


_PREPARE = ((DATASET, ""), (INGEST, ""), (SPLIT, ""))
_TRAIN = ((MODELS_GROUP, ""), (EVALUATION, "evaluation"), (PUBLISHING, ""), (RUNNER, "runner"))
COMMANDS: dict[str, Command] = {
    "prepare": Command("PrepareParams", _PREPARE, _run_prepare),
    "train": Command("TrainParams", ((_workspace("prepared workspace folder"), ""), (SPLITS, ""), *_TRAIN), _run_train),
    "report": Command("ReportParams", ((_workspace("workspace folder"), ""), (REPORT_RUN, "")), _run_report),
    "full": Command(
        "FullParams",
        (
            *((group, "prepare") for group, _ in _PREPARE),
            *((group, _under("train", mount)) for group, mount in _TRAIN),
            (REPORT_OUTPUT, "report"),
        ),
        _run_full,
    ),
    "search": Command(
        "SearchParams", ((_workspace("prepared workspace folder"), ""), (SEARCH, ""), (RUNNER, "runner")), _run_search
    ),
    "recommend": Command(
        "RecommendParams",
        ((_workspace("workspace whose champion answers"), ""), (RECOMMEND, "")),
        _run_recommend,
        outputs=(Option("--json", None, "print the result as JSON", const=True),),
    ),
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
        _run_study,
    ),
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
    """Each split's models x headline metrics, value [95% CI], segment 'all' (a k-fold protocol's folds in one
    line: they are judged pooled), then the verdict: the bottom line and one sentence per contender and task."""
    from models.evaluation import judged_unit

    folds: dict[str, list[str]] = {}
    for split_id, split in summary["splits"].items():
        if judged_unit(split_id) != split_id:
            folds.setdefault(judged_unit(split_id), []).append(split_id)
            continue
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
    for unit, ids in folds.items():
        print(
            f"\n{unit}: {len(ids)} folds ({', '.join(ids)}), judged pooled: every rating tested once (see the report)"
        )
    differences = summary.get("differences")
    if differences is not None and not differences.empty:
        from reports.conclusions import bottom_line, task_sentences

        print("\nverdict (pre-registered primary comparisons)")
        for line in [bottom_line(differences), *task_sentences(differences)]:
            print(f"  {line}")
    print(
        f"\nper-user values, metrics and paired tests are in {summary['database']} "
        "(eval_per_user, eval_results, eval_tests)"
    )
