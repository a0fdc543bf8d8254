"""The flows' command line: ``python -m flows.<name>`` builds the flow's parameter model (``flows/params.py``, the
same model the Prefect UI's form and ``--config FILE`` fill) from its options, runs the flow and prints what a
user checks (``reports/console.py``).

Every field of the model is an option, grouped under its nested model's path: its flag is the field's name
(``--no-<name>`` for a switch that is on by default) unless :data:`FLAGS` names another or keeps it off, its help
is the field's description with its default, its type, allowed values and arity are the field's. One flag per
concept across the commands (``--k``, ``--splits``, ``--workspace``, ``--split-seeds``; tests check it). Options
given override ``--config FILE`` field by field. Parsing imports nothing heavy (``--help`` answers at once); the
errors a user can cause end in one ``error:`` line and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# a field's "--flag [METAVAR ...]" where its name is not its flag, keyed by its model's name and path, else by
# its path's last parts (the longest match wins: ``train.seed`` before ``seed``); "": not on the command line
# (``--config`` sets it). The fields a command gives one flag are set together.
FLAGS = {
    "mapping": "--map FIELD=COLUMN,...",
    "items_mapping": "--items-map FIELD=COLUMN,...",
    "users_mapping": "--users-map FIELD=COLUMN,...",
    "rating_scale": "--rating-scale LOW HIGH",
    "validation.max_quarantine_fraction": "--max-quarantine FRACTION",
    "validation.min_item_coverage": "--min-item-coverage FRACTION",
    "seeds": "--split-seeds",
    "split.seed": "",  # the splits' seeds are --split-seeds
    "split.fractions": "--fractions TRAIN VALIDATION TEST",
    "split.folds": "--folds K",
    "split.kfold_validation": "--kfold-validation FRACTION",
    "lm_overrides": "--lm-overrides JSON",
    "refresh_cache": "--refresh",
    "promotion.mode": "--promotion",
    "promotion.metric": "--promotion-metric",
    "promotion.test": "--promotion-test",
    "promotion.alpha": "--promotion-alpha",
    "promotion.guards": "--promotion-guards",
    "promotion.tolerance": "--promotion-tolerance",
    "runner.kind": "--runner",
    "runner.address": "--dask-address",
    "run_id": "--run",
    "dataset": "--dataset-title",
    "SearchParams.split": "--splits",  # the search's one split, named as the train stage's several
    "SearchParams.seed": "--search-seed",
    "train.seed": "--model-seed",
    "evaluation.seed": "--model-seed",  # one seed for the models' initialisation and the bootstrap
    "StudyParams.data": "--data PATH",
    "RecommendParams.users": "--user USER",  # a tuple field whose flag is its name's singular: one per flag
}
# a key of a dict field as an option of its own: the field's path (last parts) -> (key, flag, help)
KEYS = {
    "lm_overrides": (
        "encoder",
        "--lm-encoder",
        "pretrained encoder: a local folder or hub id (default: the packaged all-MiniLM-L6-v2)",
    )
}


@dataclass(frozen=True)
class Option:
    """One option: its flag, the fields it sets (dotted paths of the command's model; none for an option of the
    command's output), argparse's keywords for it and the default its help shows (None: none shown)."""

    flag: str
    paths: tuple[str, ...]
    kwargs: dict
    default: object = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _fields(model, prefix: str = "", title: str = "parameters"):
    """(group title, path, field) of each field of a parameter model that is not a model itself, depth first;
    a nested model's fields are grouped under its path and description."""
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from _fields(info.annotation, f"{prefix}{name}.", f"{prefix}{name}: {info.description}")
        else:
            yield title, prefix + name, info


def _argument(annotation) -> dict:
    """argparse's type, choices and nargs for a field's annotation (``X | None`` as X)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        annotation, args = args[0], list(get_args(args[0]))
    if get_origin(annotation) is Literal:
        return {"choices": get_args(annotation)}
    if get_origin(annotation) is tuple:
        nargs = "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
        return {"nargs": nargs, **_argument(args[0])}
    if annotation in (int, float):
        return {"type": annotation}
    return {"type": _json_object} if annotation is dict or get_origin(annotation) is dict else {}


def _option(flag: str, metavars: list[str], fields: list) -> Option:
    """The option ``flag`` that sets ``fields`` ((path, field) pairs), made from the first one's field."""
    paths, info = tuple(path for path, _ in fields), fields[0][1]
    help_ = "; ".join(dict.fromkeys(i.description for _, i in fields))
    kwargs, default = _argument(info.annotation), info.get_default(call_default_factory=True)
    if flag[2:] + "s" == paths[0].rsplit(".", 1)[-1]:  # one value per flag: --user a --user b
        kwargs = {"action": "append"}
        help_ = f"{help_}, one per flag ({flag} a {flag} b)"
    if default is PydanticUndefined:
        default, help_ = None, help_ if "default" in help_ else f"{help_} (no default: required)"
    if info.annotation is bool:  # a switch to the other value
        turn = "turn off" if default else "turn on"
        return Option(flag, paths, {"action": "store_const", "const": not default, "help": f"{turn}: {help_}"})
    if default not in (None, (), {}):
        help_ += f" (default: {' '.join(map(str, default)) if isinstance(default, tuple) else default})"
    elif "default" not in help_:  # every help says what happens when the option is not given
        help_ += " (default: none)"
    if metavars or kwargs.get("nargs") == "+":  # --split-seeds SEED [SEED ...]
        kwargs["metavar"] = (
            tuple(metavars) if len(metavars) > 1 else (metavars or [flag.split("-")[-1].upper().rstrip("S")])[0]
        )
    return Option(flag, paths, {**kwargs, "help": help_.replace("%", "%%")}, default)  # argparse expands %(x)s


def _flag(path: str, info, model) -> str:
    """The field's "--flag [METAVAR ...]": :data:`FLAGS`' entry for the longest last parts of its path (or for
    its model's name and path), else its name ("": kept off)."""
    parts = path.split(".")
    for key in (f"{model.__name__}.{path}", *(".".join(parts[i:]) for i in range(len(parts)))):
        if key in FLAGS:
            return FLAGS[key]
    return f"--{'no-' if info.default is True else ''}{parts[-1].replace('_', '-')}"


@dataclass(frozen=True)
class Command:
    """A command: its parameter model (a class of ``flows.params``), how the validated parameters run (``run(params,
    given)``, ``given``: the options given, output options included), the fields it keeps off its command line
    (path prefixes) and the options of its output."""

    model: str
    run: Callable[[object, dict], None]
    hide: str = ""
    outputs: tuple[Option, ...] = ()

    def model_class(self):
        return getattr(import_module("flows.params"), self.model)

    def options(self) -> list[tuple[str, Option]]:
        """(group title, option) for each option of the command's parameters, in the model's order."""
        model, found, keys = self.model_class(), {}, []
        for title, path, info in _fields(model):
            flag, *metavars = _flag(path, info, model).split() or [""]
            if not flag or any(path.startswith(hidden) for hidden in self.hide.split()):
                continue
            found.setdefault(flag, (title, metavars, []))[2].append((path, info))
            keys += [
                (title, Option(f, (f"{path}.{k}",), {"help": h})) for n, (k, f, h) in KEYS.items() if path.endswith(n)
            ]
        return [(title, _option(flag, m, fields)) for flag, (title, m, fields) in found.items()] + keys


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg} at character {err.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"no_components\": 64}}', got {text!r}")
    return value


class ConfigError(ValueError):
    """A config file that cannot be read as parameters."""


def load_config(path: str) -> dict:
    """The parameter model's fields from a YAML (``.yaml``/``.yml``) or JSON file, as a mapping."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    yaml = file.suffix.lower() in (".yaml", ".yml")
    try:
        text = file.read_text("utf-8")
        values = __import__("yaml").safe_load(text) if yaml else json.loads(text)
    except Exception as err:  # the parser's own message names the line and column
        raise ConfigError(f"config file {file} is not valid {'YAML' if yaml else 'JSON'}: {err}") from None
    if not isinstance(values, dict | None):
        raise ConfigError(f"config file {file} must hold a mapping of parameter names, not a {type(values).__name__}")
    return values or {}


def build_params(command: Command, given: dict, config: str | None = None):
    """The flow's validated parameter model: the config file's values, overridden by the options given."""
    values = load_config(config) if config else {}
    for _, option in command.options():
        for path in option.paths if option.dest in given else ():
            *parents, leaf = path.split(".")
            node = values
            for name in parents:
                node[name] = node[name] if isinstance(node.get(name), dict) else {}
                node = node[name]
            node[leaf] = list(given[option.dest]) if isinstance(given[option.dest], tuple) else given[option.dest]
    return command.model_class().model_validate(values)


def parser_for(flow: str, description: str | None = None) -> argparse.ArgumentParser:
    """``python -m flows.<flow>``'s parser; options given are the only attributes of its namespace."""
    command = COMMANDS[flow]
    parser = argparse.ArgumentParser(
        prog=f"python -m flows.{flow}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    config = [("configuration", option) for option in _configuration(command.model)]
    for title, option in [*config, *command.options(), *(("output", option) for option in command.outputs)]:
        group = groups[title] = groups.get(title) or parser.add_argument_group(title)
        group.add_argument(option.flag, dest=option.dest, **option.kwargs)
    return parser


def main(flow: str, description: str | None, argv: list[str] | None = None) -> int:
    """Parse ``argv`` for ``python -m flows.<flow>``, run it, and return the process's exit status."""
    given = vars(parser_for(flow, description).parse_args(argv))
    config, show = given.pop("config", None), given.pop("print_config", False)

    def body() -> None:
        params = build_params(COMMANDS[flow], given, config)
        if show:
            return print(json.dumps(params.model_dump(mode="json"), indent=2))
        COMMANDS[flow].run(params, given)

    return run_cli(body)


def run_cli(body: Callable[[], object]) -> int:
    """Run ``body`` and return the exit status: invalid parameters and the errors a user can cause end in one
    ``error:`` line on stderr and status 2, without a traceback, here or in Prefect's log of the failed run."""
    import pydantic

    from data_checks import ValidationFailed
    from flows.stop import stop_promptly
    from models.serving.bundle import BundleError
    from models.serving.model import RequestError
    from readers import InputError
    from tasks.store import WorkspaceBusy

    errors = (InputError, ValidationFailed, WorkspaceBusy, BundleError, RequestError, ConfigError)

    def quiet(record: logging.LogRecord) -> bool:  # the message alone says what to fix
        if record.exc_info and isinstance(record.exc_info[1], errors):
            record.exc_info, record.exc_text = None, None
        return True

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(quiet)
    stop_promptly()  # until a flow starts (Prefect's server starting, say) as well as inside each flow
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


# --- each flow's command -------------------------------------------------------------------------------------
def _runs(flow: str, printer: str, *, existing: bool = True, check: Callable | None = None) -> Callable:
    """Run ``flows.<flow>`` (imported only now) on the parameters, a stage on its settings and inputs, and print
    its result with ``reports.console.<printer>``: first ``check`` them before Prefect's server starts (a dataset
    resolved stays resolved for the run) and require an ``existing`` workspace (prepare must have filled it)."""

    def run(params, given: dict) -> None:
        if check is not None:
            check(params)
        if existing:
            from tasks.store import DEFAULT_WORKSPACE, Workspace

            root = Workspace.existing(params.workspace or DEFAULT_WORKSPACE).root
            params = params.model_copy(update={"workspace": str(root)})
        stage = getattr(import_module(f"flows.{flow}"), flow)
        result = stage(params.settings(), params.inputs()) if hasattr(params, "inputs") else stage(params)
        getattr(import_module("reports.console"), printer)(result)

    return run


def _run_prepare(params, given: dict) -> None:
    if given.get("list_datasets"):
        return print(import_module("readers.catalogue").listing())
    _runs("prepare", "print_prepare_summary", existing=False, check=lambda p: p.dataset())(params, given)


def _run_recommend(params, given: dict) -> None:
    from flows.recommend import recommend
    from reports.console import print_recommendations

    result = recommend.fn(params)  # the flow's function: no Prefect run for one shell answer
    if given.get("json"):
        return print(json.dumps(result, indent=1))
    print_recommendations(result)


def _switch(flag: str, help_: str) -> Option:
    return Option(flag, (), {"action": "store_const", "const": True, "help": help_})


def _configuration(model: str) -> tuple[Option, ...]:
    given = f"YAML or JSON file with the parameters ({model} in flows/params.py, the fields of the Prefect UI's form); "
    given += "options given override it (default: none)"
    shown = "print the validated parameters as JSON and exit without running"
    return Option("--config", (), {"metavar": "FILE", "help": given}), _switch("--print-config", shown)


_LIST = _switch(
    "--list-datasets", "print the dataset catalogue (names for --data, sizes, licences, whether cached) and exit"
)
_NOT_SEARCHED = "train.models train.lightfm_trials train.lightfm_params train.lm_ train.sequential_ train.overlap"
COMMANDS: dict[str, Command] = {
    "prepare": Command("PrepareParams", _run_prepare, outputs=(_LIST,)),
    "train": Command("TrainParams", _runs("train", "print_evaluation")),
    "report": Command("ReportParams", _runs("report", "print_report")),
    "full": Command(
        "FullParams", _runs("full", "print_experiment", existing=False, check=lambda p: p.prepare.dataset())
    ),
    "search": Command("SearchParams", _runs("search", "print_search"), hide=_NOT_SEARCHED),  # LightFM's settings
    "recommend": Command("RecommendParams", _run_recommend, outputs=(_switch("--json", "print the result as JSON"),)),
    "prune": Command("PruneParams", _runs("prune", "print_prune")),
    "forget": Command("ForgetParams", _runs("forget", "print_erasure")),
    # each dataset's experiment trains its splits in turn (the study's runner runs the datasets) and reports
    # where the study's report says
    "study": Command(
        "StudyParams",
        _runs(
            "study", "print_study", existing=False, check=lambda p: [p.prepare_for(d).dataset() for d in p.datasets()]
        ),
        hide="experiment.train.runner experiment.report",
    ),
}
