"""Command-line options generated from a pydantic parameter model: nothing here knows a flow.

An :class:`Option` names one field of the model by its dotted path (``train.evaluation.k``); its help is the
field's description, its default the field's (shown in ``--help``), its type, allowed values (a ``Literal``) and
arity (a tuple) make the argument, and a bool field makes a switch to the other value. A :class:`Command` mounts
groups of options at field paths of its model; :func:`parser_for` builds its argparse parser and
:func:`build_params` the validated model from ``--config FILE`` (YAML or JSON) overridden by the options given.
``flows/cli.py`` holds reclab's commands: which fields each offers, under which flag, and what each prints.

Parsing imports nothing heavy (pydantic-core and argparse only; the parameter model's module is imported when
a parser is built): ``--help`` answers at once.
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
    """A command line: its parameter model (a class of ``module``), its option groups, each mounted at a field
    path of that model, and how the validated parameters run (``run(params, given)``, ``given``: the options
    given, output options included)."""

    model: str
    groups: tuple[tuple[Group, str], ...]
    run: Callable[[object, dict], None]
    outputs: tuple[Option, ...] = field(default_factory=tuple)
    module: str = "flows.params"

    def model_class(self):
        return getattr(import_module(self.module), self.model)

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


def parser_for(command: Command, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """The command's parser; options given are the only attributes of its namespace."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    config = parser.add_argument_group("configuration")
    config.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML or JSON file with the parameters ({command.model} in {command.module.replace('.', '/')}.py, the "
        "fields of the Prefect UI's form); options given here override it (default: none, every field's default)",
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


def fields(title: str, paths: str, flags: dict, metavars: dict, switched_off: set, *extra: Option) -> Group:
    """A group of options, one per field path of ``paths`` (space-separated), then ``extra``. A field's flag is
    its name (``--no-<name>`` for a switch in ``switched_off``, true by default) unless ``flags`` names another."""
    options = []
    for path in paths.split():
        name = path.rsplit(".", 1)[-1].replace("_", "-")
        flag = flags.get(path, f"--no-{name}" if path in switched_off else f"--{name}")
        options.append(Option(flag, path, metavar=metavars.get(path)))
    return Group(title, (*options, *extra))


class _NoTraceback(logging.Filter):
    """Drops the traceback from log records of the given errors (their message alone says what to fix)."""

    def __init__(self, errors: tuple[type[BaseException], ...]):
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.errors):
            record.exc_info, record.exc_text = None, None
        return True


def guarded(body: Callable[[], object], errors: tuple[type[BaseException], ...], loggers: Sequence[str] = ()) -> int:
    """Run ``body`` and return the exit status: invalid parameters (pydantic) and ``errors`` end in one
    ``error:`` line on stderr and status 2, without a traceback, in the output or in ``loggers``' records."""
    import pydantic

    quiet = _NoTraceback(errors)
    for name in loggers:
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
