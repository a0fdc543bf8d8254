"""The published-model folder of a workspace, as serving reads it: files only, no database.

    <workspace>/registry/<version>/      a model bundle (``models.serving.bundle``) and its publication.json
    <workspace>/registry/champion.json   {"version", "path", "since"}: the version being served
    <workspace>/registry/ab.json         {"challenger", "path", "share", "since"}: a running A/B test
    <workspace>/registry/<version>/erased.json  the erasures of users the bundle was trained on (tasks.erasure)

The pointer files are replaced atomically by the train stage's publishing and by ``python -m serve.registry``
(``tasks/registry.py`` writes them and records each change in the workspace database); a serving process
only reads them, so it never waits on a flow's database lock.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.serving.bundle import BundleError, load_model
from models.serving.model import ServingModel

REGISTRY = "registry"
CHAMPION_FILE = "champion.json"
AB_FILE = "ab.json"
ERASED_FILE = "erased.json"  # beside a published bundle's manifest: the erasures of users it was trained on


def registry_dir(workspace_root: str | Path) -> Path:
    return Path(workspace_root) / REGISTRY


def read_champion(registry: Path) -> dict | None:
    """The champion pointer ({"version", "path", "since"}), or None before the first publish."""
    path = Path(registry) / CHAMPION_FILE
    return json.loads(path.read_text()) if path.exists() else None


def read_ab(registry: Path) -> dict | None:
    """The running A/B test ({"challenger", "path", "share"}), or None."""
    path = Path(registry) / AB_FILE
    return json.loads(path.read_text()) if path.exists() else None


def erasure_marks(bundle: str | Path) -> list[dict]:
    """The erasures ({"erasure_id", "erased_at"}) of users a published bundle was trained on; [] for none."""
    path = Path(bundle) / ERASED_FILE
    return json.loads(path.read_text()) if path.exists() else []


def load_champion(workspace_root: str | Path, user_key: bytes | None = None) -> ServingModel:
    """The workspace's champion, ready to answer requests (checksums verified); ``user_key``: the workspace's
    key (``tasks.store.Workspace.user_key``), for a bundle with pseudonymous user ids."""
    registry = registry_dir(workspace_root)
    pointer = read_champion(registry)
    if pointer is None:
        raise BundleError(f"no champion model in {registry}: run `python -m flows.full` (it publishes one)")
    return ServingModel(load_model(pointer["path"]), pointer["version"], user_key)
