"""Which files make up a dataset, in which format, and how to find them from one path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from readers.catalogue import CATALOGUE, locate
from readers.errors import InputError
from readers.formats import NAMES, detect_format, format_module
from readers.schema import INTERACTIONS, ITEMS, ROLES, TAGS, USERS

# The embedded default dataset shipped with the project (see data/README.md for source and citation).
DEFAULT_DATASET = Path(__file__).resolve().parents[1] / "data" / "amazon-musical-instruments-5core"

FORMATS: tuple[str, ...] = NAMES  # readers.formats registers them
Format = Literal[NAMES]  # type: ignore[valid-type]


class _Mapping(BaseModel):
    """Which input column holds each canonical field of a CSV/Parquet table, parsed from its flag's text."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    FLAG: ClassVar[str] = ""
    ALIASES: ClassVar[dict[str, str]] = {}  # other names a user may write for a canonical field
    # fields read when the file has the column and left empty when it has not; the others must be there
    OPTIONAL_IF_ABSENT: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parse(cls, text: str):
        """Build from ``"user_id=reviewer,item_id=product,rating=stars"`` (unnamed fields keep defaults;
        ``field=`` declares the file has no such column)."""
        pairs = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise InputError(f"{cls.FLAG}: column mapping {part!r} is not of the form canonical=column")
            key = cls.ALIASES.get(key.strip(), key.strip())
            pairs[key] = value.strip() or None
        unknown = set(pairs) - set(cls.model_fields)
        if unknown:
            raise InputError(
                f"{cls.FLAG}: column mapping names unknown field(s) {sorted(unknown)}; known: "
                f"{sorted(cls.model_fields)}"
            )
        required = [name for name, field in cls.model_fields.items() if field.annotation is str]
        cleared = [name for name in required if name in pairs and pairs[name] is None]
        if cleared:
            raise InputError(f"{cls.FLAG}: {cleared} cannot be declared absent: every row needs it")
        return cls(**pairs)

    def wanted(self, available: list[str]) -> dict[str, str]:
        """Canonical field -> the column read: every mapped field, less the optional ones left at their default
        names that the file lacks (one named in the mapping must be there)."""
        out = {field: column for field, column in self.model_dump().items() if column is not None}
        named = self.model_fields_set
        return {f: c for f, c in out.items() if f in named or f not in self.OPTIONAL_IF_ABSENT or c in available}


class ColumnMapping(_Mapping):
    """For generic CSV/Parquet interactions (``--map``): which input column holds each canonical field.

    ``timestamp``, ``review_text`` and ``summary`` are optional; leave them ``None`` when the file has
    no such column (a dataset without timestamps cannot use the temporal split).
    """

    FLAG: ClassVar[str] = "--map"

    user_id: str = "user_id"
    item_id: str = "item_id"
    rating: str = "rating"
    timestamp: str | None = "timestamp"
    review_text: str | None = None
    summary: str | None = None


class ItemMapping(_Mapping):
    """A CSV/Parquet table of items (``--items``, its columns by ``--items-map``): its id column and any text
    or category columns. By default each canonical field reads the column of its own name when the file has
    it; ``categories`` (or ``category``) and ``genres`` may be text (``a|b``) or, in Parquet, a list."""

    FLAG: ClassVar[str] = "--items-map"
    ALIASES: ClassVar[dict[str, str]] = {"categories": "category"}
    OPTIONAL_IF_ABSENT: ClassVar[tuple[str, ...]] = ("title", "description", "brand", "category", "genres", "price")

    item_id: str = "item_id"
    title: str | None = "title"
    description: str | None = "description"
    brand: str | None = "brand"
    category: str | None = "category"
    genres: str | None = "genres"
    price: str | None = "price"


class UserMapping(_Mapping):
    """A CSV/Parquet table of users (``--users``, its columns by ``--users-map``): its id column and any
    attribute columns (read when the file has them)."""

    FLAG: ClassVar[str] = "--users-map"
    OPTIONAL_IF_ABSENT: ClassVar[tuple[str, ...]] = ("age", "gender", "occupation", "zip_code")

    user_id: str = "user_id"
    age: str | None = "age"
    gender: str | None = "gender"
    occupation: str | None = "occupation"
    zip_code: str | None = "zip_code"


class DatasetSpec(BaseModel):
    """A dataset: its name, format, one file per role, and its declared rating scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    format: Format
    files: dict[str, Path] = Field(description="role -> file; 'interactions' is required")
    rating_scale: tuple[float, float]
    mapping: ColumnMapping | None = None  # tabular only
    items_mapping: ItemMapping | None = None  # tabular only: the items table's columns
    users_mapping: UserMapping | None = None  # tabular only: the users table's columns
    delimiter: str = ","  # tabular CSV only
    na_values: tuple[str, ...] = ()  # tabular only: cells read as absent (pandas' na_values), in every table
    detected: bool = False  # the format was guessed from the path (its errors say so, and how to override it)

    @field_validator("files")
    @classmethod
    def _known_roles(cls, files: dict[str, Path]) -> dict[str, Path]:
        unknown = set(files) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; known: {list(ROLES)}")
        if INTERACTIONS not in files:
            raise ValueError("a dataset needs an interactions file")
        return files

    @model_validator(mode="after")
    def _scale_ordered(self) -> DatasetSpec:
        lo, hi = self.rating_scale
        if not lo < hi:
            raise ValueError(f"rating scale ({lo}, {hi}) must have low < high")
        return self


def _exists(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    return path


def _dataset_name(path: Path) -> str:
    stem = path.name
    for suffix in (".gz", ".json", ".jsonl", ".csv", ".tsv", ".parquet"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "dataset"


def resolve_dataset(
    path: str | Path,
    format: str | None = None,
    *,
    items: str | Path | None = None,
    users: str | Path | None = None,
    tags: str | Path | None = None,
    mapping: ColumnMapping | None = None,
    rating_scale: tuple[float, float] | None = None,
    delimiter: str = ",",
    name: str | None = None,
    items_mapping: ItemMapping | None = None,
    users_mapping: UserMapping | None = None,
    na_values: tuple[str, ...] = (),
) -> DatasetSpec:
    """Turn a user's path (file or folder) into a :class:`DatasetSpec`.

    The format (``readers.formats``; detected from the path unless given) finds its files: a folder is
    searched for the files the format defines (``u.data``/``u.item``/``u.user``; ``ratings.csv``/
    ``movies.csv``/``tags.csv``; one review JSON file plus an optional ``meta_*`` file); explicit
    ``items``/``users``/``tags`` paths override what is found. A column mapping (``mapping``,
    ``items_mapping``, ``users_mapping``) means tabular input whatever the file is called; with another
    format named, it is an error that says so.
    """
    if not Path(path).exists():
        if str(path) not in CATALOGUE:
            raise InputError(
                f"dataset path {path} does not exist, nor is it a catalogue dataset ({', '.join(CATALOGUE)}; "
                "python -m flows.prepare --list-datasets)"
            )
        path = locate(str(path))  # a dataset by name: fetched once into the cache, verified
    path = Path(path)
    flags = (("--map", mapping), ("--items-map", items_mapping), ("--users-map", users_mapping))
    mapped = [flag for flag, given in (*flags, ("--na-values", na_values or None)) if given is not None]
    if mapped and format not in (None, "tabular"):
        raise InputError(
            f"{' and '.join(mapped)} describe(s) tabular input, but --format {format} was given: drop --format "
            "(a mapping means tabular) or drop the mapping"
        )
    fmt = format or ("tabular" if mapped else detect_format(path))
    module = format_module(fmt)
    files = module.files(path)
    for role, extra in ((ITEMS, items), (USERS, users), (TAGS, tags)):
        if extra is not None:
            files[role] = _exists(Path(extra), f"{role} file")
    for role, file in files.items():
        _exists(file, f"{role} file")
        if file.is_dir():
            raise InputError(f"{role} path {file} is a folder, not a file")
    return DatasetSpec(
        name=name or _dataset_name(path),
        format=fmt,
        files=files,
        rating_scale=rating_scale or module.RATING_SCALE,
        mapping=mapping,
        items_mapping=items_mapping,
        users_mapping=users_mapping,
        delimiter=delimiter,
        na_values=tuple(na_values),
        detected=format is None and not mapped,
    )
