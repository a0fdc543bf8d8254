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
from dataclasses import dataclass, field, replace
from importlib import import_module
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic_core import PydanticUndefined

UNSET = object()  # an option whose field's default is resolved at run time (its help says how)


@dataclass(frozen=True)
class Option:
    """One command-line option: its flag and the parameter-model field(s) it sets, relative to where its group
    is mounted. Everything else comes from the field (:func:`resolved`): its description is the help, its
    default is shown, its type, allowed values (a ``Literal``) and arity (a tuple) make the argument, a bool
    field makes a switch to the other value. ``help`` is given only where no field describes the option
    (a key of a dict field, an output option) or the option sets several fields; ``path=None``: an option of
    the command's output, not of the flow's parameters."""

    flag: str
    path: str | tuple[str, ...] | None
    help: str | None = None
    metavar: str | tuple[str, ...] | None = None
    repeat: bool = False  # given once per value (``--user a --user b``)
    # filled from the field by resolved() (or given, for an option without one)
    default: object = UNSET
    type: Callable | None = None
    choices: Sequence | None = None
    nargs: int | str | None = None
    const: object = UNSET

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def paths(self, mount: str) -> tuple[str, ...]:
        relative = (self.path,) if isinstance(self.path, str) else tuple(self.path or ())
        return tuple(f"{mount}.{p}" if mount else p for p in relative)

    def add_to(self, group) -> None:
        shown = self.help or ""
        if self.default is not UNSET and self.const is UNSET and self.default not in (None, (), {}):
            value = " ".join(map(str, self.default)) if isinstance(self.default, tuple | list) else self.default
            shown = f"{shown} (default: {value})"
        shown = shown.replace("%", "%%")  # argparse expands %(...)s in help
        if self.const is not UNSET:
            group.add_argument(self.flag, dest=self.dest, action="store_const", const=self.const, help=shown)
            return
        extra = {"type": self.type, "choices": self.choices, "nargs": self.nargs, "metavar": self.metavar}
        extra = {key: value for key, value in extra.items() if value is not None}
        if self.repeat:
            extra["action"] = "append"
        group.add_argument(self.flag, dest=self.dest, help=shown, **extra)


def _field(model, path: str):
    """The pydantic field at a dotted path of a parameter model, or None inside a dict field."""
    info = None
    for name in path.split("."):
        if not (isinstance(model, type) and hasattr(model, "model_fields")):
            return None
        info = model.model_fields[name]
        model = info.annotation
    return info


def _argument(annotation) -> dict:
    """argparse's type, choices and nargs for a field's annotation (``X | None`` as X)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        annotation, args = args[0], list(get_args(args[0]))
    if get_origin(annotation) is Literal:
        return {"choices": get_args(annotation)}
    if get_origin(annotation) is tuple:
        element = args[0]
        nargs = "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
        return {"nargs": nargs, **_argument(element)}
    if annotation in (int, float):
        return {"type": annotation}
    if annotation is dict or get_origin(annotation) is dict:
        return {"type": _json_object}
    return {}


def resolved(option: Option, model, mount: str) -> Option:
    """``option`` with its help, default, type, choices, arity or switch value taken from its field."""
    if option.path is None:
        return option
    info = _field(model, option.paths(mount)[0])
    if info is None:
        return option
    default = info.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        default = UNSET
    help_ = option.help or info.description
    if info.annotation is bool:  # a switch to the other value
        return replace(option, help=f"{'turn on' if not default else 'turn off'}: {help_}", const=not default)
    metavar = option.metavar
    argument = _argument(info.annotation)
    if option.repeat:  # one value per flag (--user a --user b), appended
        argument.pop("nargs", None)
    if argument.get("choices") and argument.get("nargs") and metavar is None:
        metavar = option.flag.lstrip("-").upper().rstrip("S")  # --models MODEL [MODEL ...]
    return replace(option, help=help_, default=default, metavar=metavar, **argument)


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

    def model_class(self):
        return getattr(import_module("flows.params"), self.model)

    def options(self, resolve: bool = True):
        """(option, mount) for every option of the command's parameters, resolved from its field (help,
        default, type, ...) unless ``resolve`` is False (its flag and paths are all that setting a value needs)."""
        model = self.model_class() if resolve else None
        return [
            (resolved(option, model, mount) if resolve else option, mount)
            for group, mount in self.groups
            for option in group.options
        ]


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg} at character {err.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"no_components\": 64}}', got {text!r}")
    return value


# --- the options, one group per component: field paths; the flag is the field's name (``--no-<name>`` for a
# switch off), except for the short names below; help, default, type and choices are the field's --------------
FLAGS = {  # field path -> its flag, where the field's own name is not the flag
    "mapping": "--map",
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
}


def _fields(title: str, paths: str, *extra: Option) -> Group:
    """A group of options, one per field path of ``paths`` (space-separated), then ``extra``."""
    options = []
    for path in paths.split():
        name = path.rsplit(".", 1)[-1].replace("_", "-")
        flag = FLAGS.get(path, f"--no-{name}" if path in SWITCHED_OFF else f"--{name}")
        options.append(Option(flag, path, metavar=METAVARS.get(path)))
    return Group(title, (*options, *extra))


SWITCHED_OFF = {"validation.data_docs", "train.overlap", "publish"}  # True by default: the flag turns them off
DATASET = _fields("dataset", "data format items users tags mapping rating_scale delimiter name workspace")
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
        "train.lightfm_params train.lm_profile",
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
    for option, mount in command.options(resolve=False):
        if option.dest in given:
            for path in option.paths(mount):
                _set(values, path, given[option.dest])
    return command.model_class().model_validate(values)


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
    model = command.model_class()
    for group, mount in command.groups:
        if group.title not in seen:
            seen[group.title] = parser.add_argument_group(group.title)
        for option in group.options:
            resolved(option, model, mount).add_to(seen[group.title])
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


def _run_prepare(params, given: dict) -> None:
    from reports.console import print_prepare_summary

    if given.get("list_datasets"):
        from readers.catalogue import listing

        print(listing())
        return
    params.dataset()  # a bad path or format stops here, before Prefect's server starts
    print_prepare_summary(_flow("prepare")(params))


def _run_train(params, _) -> None:
    from reports.console import print_evaluation

    params = params.model_copy(update={"workspace": _existing(params.workspace)})
    print_evaluation(_flow("train")(params))


def _run_report(params, _) -> None:
    paths = _flow("report")(params.model_copy(update={"workspace": _existing(params.workspace)}))
    print(f"\nreport of run {paths['run_id']}:\n  {paths['html']}\n  {paths['markdown']}")


def _run_full(params, _) -> None:
    from reports.console import print_evaluation, print_prepare_summary

    params.prepare.dataset()
    summary = _flow("full")(params)
    print_prepare_summary(summary["prepare"])
    print_evaluation(summary["train"])
    print(f"\nreport: {summary['report']['html']}\n        {summary['report']['markdown']}")


def _run_search(params, _) -> None:
    from reports.console import print_search

    print_search(_flow("search")(params.model_copy(update={"workspace": _existing(params.workspace)})))


def _run_recommend(params, given: dict) -> None:
    from reports.console import print_recommendations

    result = _flow("recommend").fn(params)  # the flow's function: no Prefect run for one shell answer
    if given.get("json"):
        print(json.dumps(result, indent=1))
    else:
        print_recommendations(result)


def _run_study(params, _) -> None:
    for path in params.datasets():  # a bad path stops here, before Prefect's server starts
        params.experiment.prepare.model_copy(update={"data": path}).dataset()
    summary = _flow("study")(params)
    print(f"\nstudy {summary['study_id']}:")
    for name, outcome in summary["datasets"].items():
        state = outcome["status"] if outcome["status"] == "completed" else f"failed: {outcome['error']}"
        print(f"  {name}: {state}")
    print(f"report: {summary['html']}\n        {summary['markdown']}")


def _run_prune(params, _) -> None:
    out = _flow("prune")(params.model_copy(update={"workspace": _existing(params.workspace)}))
    print(
        f"\n{out['workspace']}: {out['removed']} serving-log requests older than {out['retention_days']} days removed"
    )


def _run_forget(params, _) -> None:
    from reports.console import print_erasure

    print_erasure(_flow("forget")(params.model_copy(update={"workspace": _existing(params.workspace)})))


def _under(prefix: str, mount: str) -> str:
    return ".".join(part for part in (prefix, mount) if part)


_PREPARE = ((DATASET, ""), (INGEST, ""), (SPLIT, ""))
_TRAIN = ((MODELS_GROUP, ""), (EVALUATION, "evaluation"), (PUBLISHING, ""), (RUNNER, "runner"))
COMMANDS: dict[str, Command] = {
    "prepare": Command(
        "PrepareParams",
        _PREPARE,
        _run_prepare,
        outputs=(
            Option(
                "--list-datasets",
                None,
                "print the dataset catalogue (names for --data, sizes, licences, whether cached) and exit",
                const=True,
            ),
        ),
    ),
    "train": Command("TrainParams", ((WORKSPACE, ""), (SPLITS, ""), *_TRAIN), _run_train),
    "report": Command("ReportParams", ((WORKSPACE, ""), (REPORT_RUN, "")), _run_report),
    "full": Command(
        "FullParams",
        (
            *((group, "prepare") for group, _ in _PREPARE),
            *((group, _under("train", mount)) for group, mount in _TRAIN),
            (REPORT_OUTPUT, "report"),
        ),
        _run_full,
    ),
    "search": Command("SearchParams", ((WORKSPACE, ""), (SEARCH, ""), (RUNNER, "runner")), _run_search),
    "recommend": Command(
        "RecommendParams",
        ((WORKSPACE, ""), (RECOMMEND, "")),
        _run_recommend,
        outputs=(Option("--json", None, "print the result as JSON", const=True),),
    ),
    "prune": Command("PruneParams", ((WORKSPACE, ""), (RETENTION, "")), _run_prune),
    "forget": Command("ForgetParams", ((WORKSPACE, ""), (FORGET, "")), _run_forget),
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
