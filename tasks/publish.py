"""Publish: the train stage's fused model becomes a registry version, and the promotion gate decides whether
it replaces the champion (Prefect tasks; the registry's files and rows are written by ``tasks/registry.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from models.evaluation import EvalConfig
from models.evaluation.harness import per_user_values
from models.registry import FUSION
from models.serving import PromotionConfig
from models.serving.bundle import load_model
from models.serving.promotion import decide
from models.serving.pseudonym import pseudonymise
from models.serving.published import erasure_marks, read_champion, registry_dir
from readers import InputError
from tasks import tables
from tasks.registry import install_bundle, record_promotion, set_champion
from tasks.runs import code_version
from tasks.split import load_split, split_fingerprint, split_protocol
from tasks.store import Workspace, connect, ensure, utc_now


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
        path = install_bundle(Path(bundle), registry, version, row, Workspace(Path(workspace_root)).user_key())
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


def headline_metrics(results: pd.DataFrame, model: str = FUSION) -> dict[str, float]:
    """{"rmse": ..., "ndcg@10": ...}: a model's overall test metrics from the evaluation's aggregates."""
    rows = results[(results["model"] == model) & (results["segment"] == "all")]
    return {
        (m if pd.isna(k) or not k else f"{m}@{int(k)}"): float(v)
        for m, k, v in zip(rows["metric"], rows["k"], rows["value"], strict=True)
    }


@task(cache_policy=NONE)
def challenge_champion(
    db: Path,
    workspace_root: Path,
    split_id: str,
    published: dict,
    per_user: pd.DataFrame,
    eval_config: EvalConfig,
    config: PromotionConfig,
) -> dict:
    """The promotion gate for a newly published model: evaluate the current champion on the same split's test
    users, decide (``models.serving.promotion.decide``), record the decision in ``promotions`` (and move the champion
    when it says so), and publish it as the Prefect artifact ``reclab-promotion``. A champion trained on users
    erased since (``tasks.erasure``) gives way to the first model published without them, whatever the metrics."""
    registry = registry_dir(workspace_root)
    current = read_champion(registry)
    if current is None or current["version"] == published["version"]:
        return {"promote": False, "reason": "the published model is already the champion"}
    erased = len(erasure_marks(current["path"]))
    if erased and not erasure_marks(registry / published["version"]):  # erasure outranks the metrics
        reason = (
            f"the champion was trained on {erased} user(s) erased since; the first model published without them "
            "replaces it, whatever the metrics"
        )
        decision = {"promote": True, "reason": reason}
    else:
        decision = _judged(db, workspace_root, split_id, current, per_user, eval_config, config)
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


def _judged(db, workspace_root, split_id, current, per_user, eval_config, config) -> dict:
    """The gate's decision on the metrics: the champion evaluated on the split's test users beside the
    challenger (``models.serving.promotion.decide``)."""
    if config.k is None:
        config = config.model_copy(update={"k": eval_config.k})
    with connect(db, read_only=True) as con:
        protocol, data = split_protocol(con, split_id), load_split(con, split_id)
    champion = load_model(current["path"])
    challenger = per_user[per_user["model"] == FUSION].assign(model="challenger")
    if champion.user_key_id_ is not None:  # its user ids are pseudonyms: ask it about the same users by theirs
        key = Workspace(Path(workspace_root)).user_key()
        data = {part: data[part].assign(user_id=pseudonymise(data[part]["user_id"], key)) for part in ("train", "test")}
        challenger = challenger.assign(user_id=pseudonymise(challenger["user_id"], key))
    values, _ = per_user_values(
        champion, "champion", data["train"], data["test"], eval_config, cold_candidates=protocol == "cold_items"
    )
    return decide(pd.concat([values, challenger], ignore_index=True), config)


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
