"""Model bundles: a fitted recommender (a fusion with its components, or any single model) saved as plain
arrays and JSON, and loaded back into the same classes, so serving runs the very code that was evaluated.

A bundle folder holds ``manifest.json`` (class, JSON attributes, array names, sha256 of every file) and
``arrays.npz`` (numpy arrays only, loaded with ``allow_pickle=False``); a fusion's components are bundles in
``components/<name>/``. Nothing is pickled, so loading a bundle cannot execute code, and only the classes of
registered models (``models.registry``) can be saved or built. Loading verifies every checksum.

Each model class lists the fitted attributes serving needs in ``state_fields``; the shared contract state
(ids, training mean, seen items) is saved for every model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.base import Recommender
from models.registry import bundle_classes
from models.serving.pseudonym import key_id, pseudonymise_field
from readers.records import sha256

FORMAT = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
COMMON_FIELDS = ("user_ids", "item_ids", "item_counts", "global_mean")


class BundleError(ValueError):
    """A bundle is missing, incomplete, altered or of an unknown kind."""


def save_model(
    model: Recommender, folder: str | Path, *, extra_fields: tuple[str, ...] = (), user_key: bytes | None = None
) -> Path:
    """Write ``model`` (fitted) into ``folder`` (created; must not exist yet). Returns the folder.

    ``extra_fields``: fitted attributes to keep besides its ``state_fields`` (the fit store keeps a model's
    ``reuse_fields``; a published bundle has none). ``user_key``: store every user id (``user_ids`` and the
    class's ``user_keyed_fields``) as its keyed pseudonym, the components' too (a published bundle)."""
    if bundle_classes().get(type(model).__name__) is not type(model):
        raise BundleError(f"{type(model).__name__} is not a registered model (models.registry): it could not be loaded")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    arrays: dict[str, np.ndarray] = {}
    values: dict[str, object] = {}
    user_keyed = {"user_ids", *type(model).user_keyed_fields}
    for field in (*COMMON_FIELDS, *type(model).state_fields, *extra_fields):
        value = getattr(model, field, None)
        if user_key is not None and field in user_keyed and value is not None:
            value = pseudonymise_field(value, user_key)
        _encode(field, value, arrays, values)
    seen = model._seen.tocsr()
    arrays.update({"_seen.indptr": seen.indptr, "_seen.indices": seen.indices})
    components = {}
    for name, component in getattr(model, "components", {}).items():
        save_model(component, folder / "components" / name, user_key=user_key)
        components[name] = type(component).__name__
    np.savez(folder / ARRAYS, **arrays)
    files = {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {
        "format": FORMAT,
        "class": type(model).__name__,
        "name": model.name,
        "tasks": list(model.tasks),
        "values": values,
        "arrays": sorted(arrays),
        "components": components,
        "user_key_id": key_id(user_key) if user_key is not None else None,  # pseudonymous user ids: which key
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
    return folder


def load_model(folder: str | Path, *, verify: bool = True, into: Recommender | None = None) -> Recommender:
    """The model saved in ``folder`` by :func:`save_model`, ready to ``predict``/``score``/``recommend``.

    ``into``: an unfitted instance of the saved class, built with the constructor arguments the fit had
    (those its tuning chose: ``models.experiment.FitStore``), to restore the state into; a bare instance of the class otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder}: not a model bundle (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: bundle format {manifest.get('format')!r}, this reclab reads {FORMAT}")
    cls = bundle_classes().get(manifest["class"])
    if cls is None:
        raise BundleError(f"{path}: unknown model class {manifest['class']!r}")
    if verify:
        for name, digest in manifest["files"].items():
            file = folder / name
            if not file.is_file() or sha256(file) != digest:
                raise BundleError(f"{file}: missing or altered since it was published (checksum mismatch)")
    with np.load(folder / ARRAYS, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if into is not None and type(into) is not cls:
        raise BundleError(f"{path}: holds a {cls.__name__}, not a {type(into).__name__}")
    model = cls.__new__(cls) if into is None else into
    # a field added since the bundle was published takes the value that reproduces that reclab's behaviour
    state = {**getattr(cls, "state_defaults", {}), **_decode(manifest["values"], arrays)}
    missing = [field for field in (*COMMON_FIELDS, *cls.state_fields) if field not in state]
    if missing:
        raise BundleError(f"{path}: no {', '.join(missing)}: published by an older reclab; publish the model again")
    if manifest["components"]:
        state["components"] = {
            name: load_model(folder / "components" / name, verify=False) for name in manifest["components"]
        }
    model.restore(state, arrays["_seen.indptr"], arrays["_seen.indices"])
    model.name = manifest["name"]
    model.user_key_id_ = manifest.get("user_key_id")  # None: raw user ids
    return model


# --- encoding of attribute values --------------------------------------------------------------------------
def _array(value: np.ndarray) -> np.ndarray:
    return value.astype(str) if value.dtype == object else value  # object arrays would need pickle


def _encode(field: str, value, arrays: dict, values: dict) -> None:
    if isinstance(value, np.ndarray):
        arrays[field] = _array(value)
        values[field] = {"array": field}
    elif isinstance(value, pd.Index):
        arrays[field] = _array(value.to_numpy())
        values[field] = {"index": field}
    elif isinstance(value, pd.Series):
        arrays[f"{field}.index"] = _array(value.index.to_numpy())
        arrays[f"{field}.values"] = _array(value.to_numpy())
        values[field] = {"series": field}
    elif isinstance(value, dict) and any(isinstance(v, np.ndarray) for v in value.values()):
        spec = {}
        for n, (key, item) in enumerate(value.items()):
            if isinstance(item, np.ndarray):
                arrays[f"{field}.{n}"] = _array(item)
                spec[key] = {"array": f"{field}.{n}"}
            else:
                spec[key] = {"json": item}
        values[field] = {"dict": spec}
    else:
        values[field] = {"json": value}


def _decode(values: dict, arrays: dict) -> dict:
    def one(field: str, spec: dict):
        if "array" in spec:
            return arrays[spec["array"]]
        if "index" in spec:
            return pd.Index(arrays[spec["index"]])
        if "series" in spec:
            return pd.Series(arrays[f"{field}.values"], index=pd.Index(arrays[f"{field}.index"]))
        if "dict" in spec:
            return {key: one(field, item) for key, item in spec["dict"].items()}
        return spec["json"]

    return {field: one(field, spec) for field, spec in values.items()}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__} in a bundle manifest")
