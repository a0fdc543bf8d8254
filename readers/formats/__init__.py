"""Input formats: one small module per format, registered here once.

A format module defines ``NAME``, ``RATING_SCALE`` (its declared scale), ``ROLES`` (the files it can read),
``FOLDER_HINT`` (what marks one of its folders, or None), ``detect(path)`` (does this file or folder look like
the format?), ``files(path)`` (role -> file, found from the user's path), ``layout(spec, role)`` (how a file
splits into records: ``readers.records``) and ``parser(spec, role, header, now)`` (one record -> one
canonical row, built from ``readers.fields``).

Adding a format: write its module beside the others, then add its name and module to :data:`FORMATS`.
Modules are imported when used, so reading the names (a command line's choices) is cheap.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from readers.errors import InputError, MissingColumns
from readers.schema import INTERACTIONS

if TYPE_CHECKING:
    from readers.fields import Parser
    from readers.spec import DatasetSpec

# name -> module, in the order detection tries them (MovieLens latest's ratings.csv before generic CSV)
FORMATS: dict[str, str] = {
    "movielens-100k": "readers.formats.movielens_100k",
    "movielens": "readers.formats.movielens",
    "amazon": "readers.formats.amazon",
    "tabular": "readers.formats.tabular",
}
NAMES: tuple[str, ...] = tuple(FORMATS)


def is_main_file(path: Path, main: str) -> bool:
    """A GroupLens-style dataset: a folder holding the file ``main``, or that file itself."""
    return (path / main).exists() if path.is_dir() else path.name.lower() == main


def main_and_companions(path: Path, main: str, companions: dict[str, str]) -> dict[str, Path]:
    """Role -> file of a GroupLens-style dataset: ``main`` (the interactions; ``path`` or in it) and the
    ``companions`` (role -> file name) that exist beside it."""
    folder = path if path.is_dir() else path.parent
    found = {INTERACTIONS: folder / main if path.is_dir() else path}
    found |= {role: folder / name for role, name in companions.items() if (folder / name).exists()}
    return found


def format_module(name: str) -> ModuleType:
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r}; choose one of {', '.join(NAMES)}")
    return import_module(FORMATS[name])


def detect_format(path: Path) -> str:
    """Guess a dataset's format from its path (a GroupLens folder, Amazon JSON lines, CSV/Parquet)."""
    modules = [format_module(name) for name in NAMES]
    for module in modules:
        if module.detect(path):
            return module.NAME
    if path.is_dir():
        hints = [module.FOLDER_HINT for module in modules if module.FOLDER_HINT]
        raise InputError(
            f"cannot tell the format of folder {path}: expected {', '.join(hints[:-1])} or {hints[-1]}; pass --format"
        )
    raise InputError(f"cannot tell the format of {path} from its name; pass --format one of {', '.join(NAMES)}")


def layout_for(spec: DatasetSpec, role: str) -> str:
    """How the file of ``role`` splits into records (see :mod:`readers.records`)."""
    return format_module(spec.format).layout(spec, role)


def parser_for(spec: DatasetSpec, role: str, header: bytes | None, now: int) -> Parser:
    """Build the parser for the file of ``role`` in ``spec``.

    ``header`` is the file's CSV header (ignored for other layouts); ``now`` (Unix seconds) bounds
    plausible timestamps. Raises :class:`readers.InputError` when the file's layout cannot work at all (a CSV
    missing a required column); each record that is wrong on its own raises :class:`readers.Reject` when
    parsed.
    """
    module = format_module(spec.format)
    if role not in module.ROLES:
        raise InputError(f"format {spec.format!r} has no {role} file; roles it reads: {list(module.ROLES)}")
    try:
        return module.parser(spec, role, header, now)
    except MissingColumns as err:  # the format may be the wrong guess: say what was guessed from what
        if not spec.detected or spec.format == "tabular" or role != INTERACTIONS:
            raise
        name = spec.files[INTERACTIONS].name
        raise InputError(
            f"{err} (the format {spec.format!r} was detected from the name {name}; if the file is not "
            f"{spec.format}, pass --format tabular, or a --map of its columns)"
        ) from None
