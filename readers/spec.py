"""Which files make up a dataset, in which format, and how to find them from one path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from readers.catalogue import CATALOGUE, locate
from readers.errors import InputError
from readers.formats import NAMES, detect_format, format_module
from readers.schema import INTERACTIONS, ITEMS, ROLES, TAGS, USERS

# The embedded default dataset shipped with the project (see data/README.md for source and citation).
DEFAULT_DATASET = Path(__file__).resolve().parents[1] / "data" / "amazon-musical-instruments-5core"

FORMATS: tuple[str, ...] = NAMES  # readers.formats registers them
Format = Literal[NAMES]  # type: ignore[valid-type]


class ColumnMapping(BaseModel):
    """For generic CSV/Parquet: which input column holds each canonical field.

    ``timestamp``, ``review_text`` and ``summary`` are optional; leave them ``None`` when the file has
    no such column (a dataset without timestamps cannot use the temporal split).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str = "user_id"
    item_id: str = "item_id"
    rating: str = "rating"
    timestamp: str | None = "timestamp"
    review_text: str | None = None
    summary: str | None = None

    @classmethod
    def parse(cls, text: str) -> ColumnMapping:
        """Build from ``"user_id=reviewer,item_id=product,rating=stars"`` (unnamed fields keep defaults)."""
        pairs = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise InputError(f"column mapping {part!r} is not of the form canonical=column")
            pairs[key.strip()] = value.strip() or None
        unknown = set(pairs) - set(cls.model_fields)
        if unknown:
            raise InputError(
                f"column mapping names unknown field(s) {sorted(unknown)}; known: {sorted(cls.model_fields)}"
            )
        return cls(**pairs)


class DatasetSpec(BaseModel):
    """A dataset: its name, format, one file per role, and its declared rating scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    format: Format
    files: dict[str, Path] = Field(description="role -> file; 'interactions' is required")
    rating_scale: tuple[float, float]
    mapping: ColumnMapping | None = None  # tabular only
    delimiter: str = ","  # tabular CSV only

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
) -> DatasetSpec:
    """Turn a user's path (file or folder) into a :class:`DatasetSpec`.

    The format (``readers.formats``; detected from the path unless given) finds its files: a folder is
    searched for the files the format defines (``u.data``/``u.item``/``u.user``; ``ratings.csv``/
    ``movies.csv``/``tags.csv``; one review JSON file plus an optional ``meta_*`` file); explicit
    ``items``/``users``/``tags`` paths override what is found.
    """
    if not Path(path).exists():
        if str(path) not in CATALOGUE:
            raise InputError(
                f"dataset path {path} does not exist, nor is it a catalogue dataset ({', '.join(CATALOGUE)}; "
                "python -m flows.prepare --list-datasets)"
            )
        path = locate(str(path))  # a dataset by name: fetched once into the cache, verified
    path = Path(path)
    fmt = format or detect_format(path)
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
        delimiter=delimiter,
    )
