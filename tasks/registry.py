"""The published-model registry, its persistence in one place: the train stage's fused model published as a
registry version (Prefect tasks), the promotion gate deciding whether it replaces the champion, and the
champion and A/B pointers the operator's commands (``python -m serve.registry``) move. What a published bundle
is and how serving reads the registry folder are pure and live in ``models/serving/`` (``bundle.py``: a
bundle's files; ``published.py``: the folder's layout and readers; ``promotion.py``: the gate's decision).

Rows: ``model_registry`` (one per published bundle: run, split, code version, data fingerprint, test
metrics) and ``promotions`` (one per decision: a change of champion, or keeping it, with its reason). The
champion file, not the database, is what a serving process reads, so serving never waits on a flow's database
lock.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from models.registry import FUSION
from models.serving.bundle import load_model, save_model
from models.serving.pseudonym import pseudonymise
from models.serving.published import AB_FILE, CHAMPION_FILE, erasure_marks, read_champion, registry_dir
from readers import InputError
from tasks import tables
from tasks.runs import code_version
from tasks.split import load_split, split_fingerprint, split_protocol
from tasks.store import Workspace, connect, ensure, utc_now, write_atomically

if TYPE_CHECKING:  # the operator's commands import this module: nothing heavy at its top but Prefect
    from models.evaluation import EvalConfig
    from models.serving import PromotionConfig
    from tasks.train import SavedSplitFit


# --- publishing and the promotion gate (the train flow's tasks) --------------------------------------------
@dataclass(frozen=True)
class Published:
    """A registry version made of a split's fused model, and the champion after publishing it."""

    version: str
    path: str
    champion: str


@task(cache_policy=NONE)
def publish_model(
    workspace: Workspace, run_id: str, outputs: SavedSplitFit, metrics: dict, parameters: dict
) -> Published:
    """Publish one split's fitted fusion bundle as a new registry version; the first one becomes champion."""
    bundle, split_id = outputs.bundle, outputs.split_id
    if bundle is None or not Path(bundle).exists():
        raise InputError(
            f"the fitted model bundle of {split_id} is missing ({bundle}); it is written when the "
            "fusion is fitted: rerun with --refresh to refit"
        )
    registry = registry_dir(workspace.root)
    version = f"{utc_now():%Y%m%d-%H%M%S}-{run_id[:8]}"
    with connect(workspace.db) as con:
        ensure(con, tables.MODEL_REGISTRY)
        row = {
            "run_id": run_id,
            "split_id": split_id,
            "protocol": outputs.protocol,
            "published_at": utc_now().isoformat(),
            "code_version": code_version(),
            "data_fingerprint": split_fingerprint(con, split_id),
            "metrics": metrics,
            "parameters": parameters,
        }
        path = install_bundle(Path(bundle), registry, version, row, workspace.user_key())
        con.execute(
            f"INSERT INTO {tables.MODEL_REGISTRY} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                version,
                run_id,
                split_id,
                outputs.protocol,
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
    return Published(version, str(path), read_champion(registry)["version"])


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


def headline_metrics(results: pd.DataFrame, model: str = FUSION) -> dict[str, float]:
    """{"rmse": ..., "ndcg@10": ...}: a model's overall test metrics from the evaluation's aggregates."""
    rows = results[(results["model"] == model) & (results["segment"] == "all")]
    return {
        (m if pd.isna(k) or not k else f"{m}@{int(k)}"): float(v)
        for m, k, v in zip(rows["metric"], rows["k"], rows["value"], strict=True)
    }


@task(cache_policy=NONE)
def challenge_champion(
    workspace: Workspace, published: Published, outputs: SavedSplitFit, eval_config: EvalConfig, config: PromotionConfig
) -> dict:
    """The promotion gate for a newly published model: evaluate the current champion on the same split's test
    users, decide (``models.serving.promotion.decide``), record the decision in ``promotions`` (and move the champion
    when it says so), and publish it as the Prefect artifact ``reclab-promotion``. A champion trained on users
    erased since (``tasks.erasure``) gives way to the first model published without them, whatever the metrics."""
    registry = registry_dir(workspace.root)
    current = read_champion(registry)
    if current is None or current["version"] == published.version:
        return {"promote": False, "reason": "the published model is already the champion"}
    erased = len(erasure_marks(current["path"]))
    if erased and not erasure_marks(registry / published.version):  # erasure outranks the metrics
        reason = (
            f"the champion was trained on {erased} user(s) erased since; the first model published without them "
            "replaces it, whatever the metrics"
        )
        decision = {"promote": True, "reason": reason}
    else:
        decision = _judged(workspace, outputs, current, eval_config, config)
    decision.update(
        {"challenger_version": published.version, "champion_version": current["version"], "split_id": outputs.split_id}
    )
    with connect(workspace.db) as con:
        if decision["promote"]:
            set_champion(con, registry, published.version, "promote", decision["reason"], decision)
        else:
            record_promotion(con, "keep", current["version"], current["version"], decision["reason"], decision)
    create_markdown_artifact(
        key="reclab-promotion",
        markdown=decision_markdown(decision),
        description=f"promotion decision for {published.version}",
    )
    return decision


def _judged(workspace: Workspace, outputs: SavedSplitFit, current: dict, eval_config, config) -> dict:
    """The gate's decision on the metrics: the champion evaluated on the split's test users beside the
    challenger (``models.serving.promotion.decide``)."""
    # imported here: the registry's commands do not need them
    from models.evaluation.harness import known_before_test, per_user_values
    from models.serving.promotion import decide

    with connect(workspace.db, read_only=True) as con:
        protocol, data = split_protocol(con, outputs.split_id), load_split(con, outputs.split_id)
    champion = load_model(current["path"])
    per_user = outputs.per_user
    challenger = per_user[per_user["model"] == FUSION].assign(model="challenger")
    if champion.user_key_id_ is not None:  # its user ids are pseudonyms: ask it about the same users by theirs
        key = workspace.user_key()
        parts = ("train", "validation", "test")
        data = {part: data[part].assign(user_id=pseudonymise(data[part]["user_id"], key)) for part in parts}
        challenger = challenger.assign(user_id=pseudonymise(challenger["user_id"], key))
    values, _ = per_user_values(
        champion,
        "champion",
        known_before_test(data["train"], data["validation"]),  # the challenger's values were measured with it
        data["test"],
        eval_config,
        cold_candidates=protocol == "cold_items",
    )
    return decide(pd.concat([values, challenger], ignore_index=True), config, eval_config.k)


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


# --- the pointers and their rows (the gate above, and the operator's commands) -------------------------
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
