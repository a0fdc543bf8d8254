"""The model registry: published model bundles, their DuckDB rows, and the champion serving follows.

    <workspace>/registry/<version>/      a model bundle (models.bundle), moved into place by one rename
    <workspace>/registry/champion.json   {"version", "path", "since"}, replaced atomically; serving polls it

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
from prefect import task
from prefect.cache_policies import NONE

from readers import InputError
from tasks import tables
from tasks.store import connect, ensure, utc_now, write_atomically

REGISTRY = "registry"
CHAMPION_FILE = "champion.json"
AB_FILE = "ab.json"  # {"challenger": version, "share": fraction of users}: an A/B test the service follows


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
    from models.bundle import load_model

    path = Path(registry) / version
    if not (path / "manifest.json").exists():
        raise InputError(f"no published model {version!r} in {registry}; see `python -m flows.registry list`")
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


def install_bundle(source: Path, registry: Path, version: str, publication: dict | None = None) -> Path:
    """Copy a bundle into the registry as ``version``: staged beside it, verified, then renamed into place
    (one atomic rename: no reader ever sees half a bundle). ``publication`` (run, split, metrics, ...) is
    written beside the bundle's files as ``publication.json``."""
    from models.bundle import load_model

    target = registry / version
    if target.exists():
        raise FileExistsError(f"{target} already exists: a published version is never overwritten")
    registry.mkdir(parents=True, exist_ok=True)
    staging = registry / f".staging-{version}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, staging)
    (staging / "publication.json").write_text(json.dumps({"version": version, **(publication or {})}, indent=1))
    try:
        load_model(staging)  # checksums and classes verified before the bundle becomes visible
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def headline_metrics(results: pd.DataFrame, model: str = "fusion") -> dict[str, float]:
    """{"rmse": ..., "ndcg@10": ...}: a model's overall test metrics from the evaluation's aggregates."""
    rows = results[(results["model"] == model) & (results["segment"] == "all")]
    return {
        (m if pd.isna(k) or not k else f"{m}@{int(k)}"): float(v)
        for m, k, v in zip(rows["metric"], rows["k"], rows["value"], strict=True)
    }


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


@task(cache_policy=NONE)
def publish_model(
    db: Path,
    workspace_root: Path,
    run_id: str,
    split_id: str,
    protocol: str,
    bundle: str | None,
    metrics: dict,
    parameters: dict,
) -> dict:
    """Publish one split's fitted fusion bundle as a new registry version; the first one becomes champion."""
    from tasks.runs import code_version
    from tasks.train import split_fingerprint

    if bundle is None or not Path(bundle).exists():
        raise InputError(
            f"the fitted model bundle of {split_id} is missing ({bundle}); it is written when the "
            "fusion is fitted: rerun with --refresh to refit"
        )
    registry = registry_dir(workspace_root)
    version = f"{utc_now():%Y%m%d-%H%M%S}-{run_id[:8]}"
    with connect(db) as con:
        ensure(con, tables.MODEL_REGISTRY)
        row = {
            "run_id": run_id,
            "split_id": split_id,
            "protocol": protocol,
            "published_at": utc_now().isoformat(),
            "code_version": code_version(),
            "data_fingerprint": split_fingerprint(con, split_id),
            "metrics": metrics,
            "parameters": parameters,
        }
        path = install_bundle(Path(bundle), registry, version, row)
        con.execute(
            f"INSERT INTO {tables.MODEL_REGISTRY} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                version,
                run_id,
                split_id,
                protocol,
                str(path),
                row["published_at"],
                row["code_version"],
                row["data_fingerprint"],
                json.dumps(metrics),
                json.dumps(parameters, default=str),
            ],
        )
        if read_champion(registry) is None:
            set_champion(con, registry, version, "publish", "first published model")
    return {"version": version, "path": str(path), "champion": read_champion(registry)["version"]}


def choose_publish_split(db: Path, splits: tuple[str, ...], preferred: str | None) -> str:
    """``preferred`` (checked), else the first temporal split (its training fold is closest to all the
    data: everything but each user's latest interactions), else the first split."""
    if preferred is not None:
        if preferred not in splits:
            raise InputError(f"publish split {preferred!r} is not among the evaluated splits {list(splits)}")
        return preferred
    with connect(db, read_only=True) as con:
        protocols = dict(con.execute(f"SELECT split_id, protocol FROM {tables.SPLITS}").fetchall())
    return next((s for s in splits if protocols.get(s) == "temporal"), splits[0])


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


def load_champion(workspace_root: str | Path):
    """The workspace's champion as a :class:`models.serving.ServingModel` (checksums verified)."""
    from models.bundle import load_model
    from models.serving import ServingModel

    registry = registry_dir(workspace_root)
    pointer = read_champion(registry)
    if pointer is None:
        raise InputError(f"no champion model in {registry}: run `python -m flows.full` (it publishes one)")
    return ServingModel(load_model(pointer["path"]), pointer["version"])


@task(cache_policy=NONE)
def challenge_champion(
    db: Path, workspace_root: Path, split_id: str, published: dict, per_user: pd.DataFrame, eval_config, config
) -> dict:
    """The promotion gate for a newly published model: evaluate the current champion on the same split's test
    users, decide (``models.promotion.decide``), record the decision in ``promotions`` (and move the champion
    when it says so), and publish it as the Prefect artifact ``reclab-promotion``."""
    from prefect.artifacts import create_markdown_artifact

    from models.bundle import load_model
    from models.evaluation import per_user_values
    from models.promotion import decide
    from tasks.train import load_split, split_protocol

    registry = registry_dir(workspace_root)
    current = read_champion(registry)
    if current is None or current["version"] == published["version"]:
        return {"promote": False, "reason": "the published model is already the champion"}
    if config.k is None:
        config = config.model_copy(update={"k": eval_config.k})
    with connect(db, read_only=True) as con:
        protocol, data = split_protocol(con, split_id), load_split(con, split_id)
    champion = load_model(current["path"])
    values, _ = per_user_values(
        champion, "champion", data["train"], data["test"], eval_config, cold_candidates=protocol == "cold_items"
    )
    challenger = per_user[per_user["model"] == "fusion"].assign(model="challenger")
    decision = decide(pd.concat([values, challenger], ignore_index=True), config)
    decision.update(
        {"challenger_version": published["version"], "champion_version": current["version"], "split_id": split_id}
    )
    with connect(db) as con:
        if decision["promote"]:
            set_champion(con, registry, published["version"], "promote", decision["reason"], decision)
        else:
            record_promotion(con, "keep", current["version"], current["version"], decision["reason"], decision)
    create_markdown_artifact(
        key="reclab-promotion",
        markdown=decision_markdown(decision),
        description=f"promotion decision for {published['version']}",
    )
    return decision


def decision_markdown(decision: dict) -> str:
    verdict = "promoted" if decision["promote"] else "kept the champion"
    lines = [f"# Promotion: {verdict}", "", decision["reason"], ""]
    if "champion" in decision:
        lines += [
            "| | champion | challenger |",
            "|---|---:|---:|",
            f"| {decision['metric']} (p = {decision['p_value']:.3g}, {decision['users']} users) | "
            f"{decision['champion']:.4f} | {decision['challenger']:.4f} |",
        ]
        lines += [
            f"| {g} (guard, {r['relative_regression']:+.1%}) | {r['champion']:.4f} | {r['challenger']:.4f} |"
            for g, r in decision.get("guards", {}).items()
        ]
    lines += [
        "",
        f"champion {decision['champion_version']}, challenger {decision['challenger_version']}, "
        f"split {decision['split_id']}",
    ]
    return "\n".join(lines)
