"""The published-model registry's writers: bundles installed into the workspace's registry folder, the
champion and A/B pointers moved, and their DuckDB rows (the folder's layout and its readers, which serving
uses, are ``models.serving.published``).

Rows: ``model_registry`` (one per published bundle: run, split, code version, data fingerprint, test
metrics) and ``promotions`` (one per change of champion, with its reason). The champion file, not the
database, is what a serving process reads, so serving never waits on a flow's database lock.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import duckdb
import pandas as pd

from models.serving.bundle import load_model, save_model
from models.serving.published import AB_FILE, CHAMPION_FILE, read_champion
from readers import InputError
from tasks import tables
from tasks.store import ensure, utc_now, write_atomically


def set_ab(registry: Path, version: str | None, share: float = 0.1) -> dict | None:
    """Start (or change) an A/B test: ``share`` of users, chosen by a stable hash of their id, get
    ``version``; the others the champion. ``version=None`` stops it."""
    path = Path(registry) / AB_FILE
    if version is None:
        path.unlink(missing_ok=True)
        return None
    if not 0 < share < 1:
        raise InputError(f"the challenger's share of users must be between 0 and 1, got {share}")
    pointer = {
        "challenger": version,
        "path": str(published(registry, version)),
        "share": share,
        "since": utc_now().isoformat(),
    }
    write_atomically(path, json.dumps(pointer, indent=1))
    return pointer


def published(registry: Path, version: str) -> Path:
    """The folder of published ``version``, verified to load (checksums, classes); a clear error otherwise."""
    path = Path(registry) / version
    if not (path / "manifest.json").exists():
        raise InputError(f"no published model {version!r} in {registry}; see `python -m serve.registry list`")
    load_model(path)  # never point serving at a bundle that does not load
    return path


def record_promotion(
    con: duckdb.DuckDBPyConnection,
    action: str,
    champion: str,
    previous: str | None,
    reason: str,
    details: dict | None = None,
) -> None:
    """One ``promotions`` row: a change of champion, or a decision to keep it."""
    ensure(con, tables.PROMOTIONS)
    con.execute(
        f"INSERT INTO {tables.PROMOTIONS} VALUES (?, ?, ?, ?, ?, ?)",
        [utc_now(), action, champion, previous, reason, json.dumps(details or {}, default=str)],
    )


def install_bundle(
    source: Path, registry: Path, version: str, publication: dict | None = None, user_key: bytes | None = None
) -> Path:
    """Copy a bundle into the registry as ``version``: staged beside it, verified, then renamed into place
    (one atomic rename: no reader ever sees half a bundle). ``publication`` (run, split, metrics, ...) is
    written beside the bundle's files as ``publication.json``. ``user_key``: the bundle is written again with
    its user ids as keyed pseudonyms (what a service host receives carries no raw user id)."""
    target = registry / version
    if target.exists():
        raise FileExistsError(f"{target} already exists: a published version is never overwritten")
    registry.mkdir(parents=True, exist_ok=True)
    staging = registry / f".staging-{version}-{uuid.uuid4().hex[:8]}"
    if user_key is None:
        shutil.copytree(source, staging)
    else:
        save_model(load_model(source), staging, user_key=user_key)
    (staging / "publication.json").write_text(json.dumps({"version": version, **(publication or {})}, indent=1))
    try:
        load_model(staging)  # checksums and classes verified before the bundle becomes visible
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def set_champion(
    con: duckdb.DuckDBPyConnection, registry: Path, version: str, action: str, reason: str, details: dict | None = None
) -> dict:
    """Point the champion at ``version`` (which must be published) and record why."""
    path = published(registry, version)
    previous = read_champion(registry)
    pointer = {"version": version, "path": str(path), "since": utc_now().isoformat()}
    write_atomically(registry / CHAMPION_FILE, json.dumps(pointer, indent=1))
    record_promotion(con, action, version, previous and previous["version"], reason, details)
    return pointer


def list_models(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    ensure(con, tables.MODEL_REGISTRY)
    return con.execute(
        f"SELECT version, run_id, split_id, published_at, metrics FROM {tables.MODEL_REGISTRY} ORDER BY published_at"
    ).df()


def rollback_target(con: duckdb.DuckDBPyConnection, registry: Path) -> str:
    """The champion before the current one (the ``previous`` of the change that made the current one)."""
    ensure(con, tables.PROMOTIONS)
    current = read_champion(registry)
    row = con.execute(
        f"SELECT previous FROM {tables.PROMOTIONS} WHERE champion = ? ORDER BY decided_at DESC LIMIT 1",
        [current and current["version"]],
    ).fetchone()
    if not row or row[0] is None:
        raise InputError("nothing to roll back to: the current champion has no predecessor")
    return row[0]
