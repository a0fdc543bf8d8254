"""Pseudonymous user ids: no raw user id leaves the workspace for serving (bundles, the serving log); the
service takes raw ids and answers as the model with raw ids would; the key is the workspace's, owner-only."""

from __future__ import annotations

import stat

import numpy as np
import pytest
from builders import genre_world
from fastapi.testclient import TestClient

from models.serving.bundle import BundleError, load_model, save_model
from models.serving.model import ServingModel
from models.serving.pseudonym import key_id, pseudonym, pseudonymise
from serve.app import create_app
from tasks import tables
from tasks.registry import install_bundle, set_champion
from tasks.store import Workspace, connect


@pytest.fixture(scope="module")
def raw_world(tmp_path_factory):
    """A fusion (with the fake LM, whose vectors are keyed by user id) on users with distinctive raw ids."""
    from builders import fake_lm

    from models.recommenders.baselines import BiasALS, GlobalMean, Popularity
    from models.recommenders.fusion import Fusion, FusionConfig

    train, items = genre_world()
    train = train.assign(user_id="reviewer-" + train["user_id"].astype(str) + "-raw")
    validation = train.sample(frac=0.2, random_state=0)
    train = train.drop(validation.index)
    components = {"global_mean": GlobalMean(), "popularity": Popularity(), "bias_als": BiasALS()}
    for model in components.values():
        model.fit(train, validation, items=items)
    components["lm_two_tower"] = fake_lm(tmp_path_factory.mktemp("lm"), train, items)
    fusion = Fusion(components, FusionConfig(grid_points=10)).fit(train, validation, items=items)
    return fusion, train


def test_pseudonyms_are_keyed_stable_and_unlinkable_without_the_key():
    key, other = b"k" * 32, b"o" * 32
    assert pseudonym("alice", key) == pseudonym("alice", key) != pseudonym("bob", key)
    assert pseudonym("alice", key) != pseudonym("alice", other)  # another workspace: other pseudonyms
    assert pseudonym("alice", key).startswith("p-") and "alice" not in pseudonym("alice", key)
    assert list(pseudonymise(["alice", "bob"], key)) == [pseudonym("alice", key), pseudonym("bob", key)]
    assert key_id(key) != key_id(other) and key.hex() not in key_id(key)


def test_the_workspace_key_is_owner_only_and_the_same_across_retrains(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    assert workspace.user_key(create=False) is None  # nothing made until asked
    key = workspace.user_key()
    assert len(key) == 32 and workspace.user_key() == key == Workspace(tmp_path / "ws").user_key(create=False)
    assert stat.S_IMODE((tmp_path / "ws" / "secret.key").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "ws").iterdir()] == ["secret.key"]  # no staged copy left behind


def test_no_raw_user_id_is_in_a_published_bundle_and_it_answers_as_the_raw_one(raw_world, tmp_path):
    fusion, train = raw_world
    key = Workspace(tmp_path).user_key()
    raw = sorted(set(train["user_id"]))
    plain = load_model(save_model(fusion, tmp_path / "plain"))
    published = install_bundle(save_model(fusion, tmp_path / "fit"), tmp_path / "registry", "v1", {}, user_key=key)

    # byte for byte, as UTF-8 (JSON) and as numpy stores strings (UTF-32): no file of the published bundle holds
    # a raw user id (the plain bundle does: the search works)
    def holds(path, user):
        data = path.read_bytes()
        return user.encode() in data or user.encode("utf-32-le") in data

    files = [p for p in published.rglob("*") if p.is_file()]
    assert any(holds(p, raw[0]) for p in (tmp_path / "plain").rglob("*") if p.is_file())
    leaked = [(p.name, u) for p in files for u in raw if holds(p, u)]
    assert not leaked, leaked[:5]
    assert key.hex().encode() not in b"".join(p.read_bytes() for p in files)  # nor the key
    # served with the key, a raw id gets what the raw model gives it
    served, reference = ServingModel(load_model(published), "v1", key), ServingModel(plain, "plain")
    for user in raw[:5] + ["never-seen"]:
        a, b = served.recommend(user, 5), reference.recommend(user, 5)
        assert a.user_id == user and a.items == b.items and a.strategy == b.strategy
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-12)
    items = list(train["item_id"].iloc[:5])
    assert served.predict(raw[:5], items) == reference.predict(raw[:5], items)
    assert served.cold(raw[:2] + ["never-seen"], items[:3]) == reference.cold(raw[:2] + ["never-seen"], items[:3])
    # without the key (or with another workspace's) the bundle refuses to serve rather than call everyone cold
    with pytest.raises(BundleError, match="pseudonymous user ids made with key"):
        ServingModel(load_model(published), "v1")
    with pytest.raises(BundleError, match="pseudonymous user ids made with key"):
        ServingModel(load_model(published), "v1", b"x" * 32)


def test_the_service_takes_raw_ids_and_logs_pseudonyms_only(raw_world, tmp_path):
    fusion, train = raw_world
    key = Workspace(tmp_path).user_key()
    registry = tmp_path / "registry"
    install_bundle(save_model(fusion, tmp_path / "fit"), registry, "v1", {}, user_key=key)
    with connect(tmp_path / "reclab.duckdb") as con:
        set_champion(con, registry, "v1", "publish", "first")
    user = train["user_id"].iloc[0]
    log_db = tmp_path / "serving.duckdb"
    with TestClient(create_app(registry, poll_s=0.05, log_db=log_db, user_key=key)) as client:
        body = client.get("/recommend", params={"user_id": user, "k": 3}).json()
        assert body["user_id"] == user and body["strategy"] == "personalised"
        assert client.post("/predict", json={"pairs": [{"user_id": user, "item_id": "i1"}]}).json()["cold_user"] == [
            False
        ]
    with connect(log_db, read_only=True) as con:
        logged = [u for (u,) in con.execute(f"SELECT user_id FROM {tables.SERVING_LOG}").fetchall()]
    assert pseudonym(user, key) in logged and not any(u in logged for u in set(train["user_id"]))
    assert user.encode() not in log_db.read_bytes() and user.encode("utf-32-le") not in log_db.read_bytes()


@pytest.mark.parametrize("keyed", [False, True])
def test_the_ab_report_matches_the_log_to_interactions_by_the_id_it_holds(tmp_path, keyed):
    """The log holds pseudonyms where the workspace has a key, raw ids otherwise; either way a served item the
    user rated after it was served is a hit, and users who were never served are not read."""
    from datetime import datetime

    from tasks.serving_log import ab_report

    key = Workspace(tmp_path).user_key() if keyed else None
    logged = (lambda u: pseudonym(u, key)) if keyed else (lambda u: u)
    with connect(tmp_path / "reclab.duckdb") as con:
        con.execute(tables.ddl(tables.CANONICAL["interactions"]))
        rows = [("alice", "x", 200), ("bob", "z", 50), ("carol", "q", 200), ("never-served", "x", 300)]
        for user, item, ts in rows:
            con.execute(
                f"INSERT INTO {tables.CANONICAL['interactions']} (user_id, item_id, rating, timestamp) VALUES (?, ?, 5, ?)",
                [user, item, ts],
            )
    at = datetime.fromtimestamp(100)
    with connect(tmp_path / "serving.duckdb") as con:
        con.execute(tables.ddl(tables.SERVING_LOG))
        for user, arm, items in (
            ("alice", "challenger", ["x", "y"]),
            ("bob", "champion", ["z"]),
            ("carol", "challenger", ["w"]),
        ):
            con.execute(
                f"INSERT INTO {tables.SERVING_LOG} VALUES (?, 'recommend', ?, ?, 'v', ?, 1.0)",
                [at, logged(user), arm, items],
            )
    report = ab_report(tmp_path)
    # alice: x rated after it was served (hit); bob: z before (no); carol: q was not served (no)
    assert report["arms"]["challenger"]["hit_rate"] == 0.5 and report["arms"]["champion"]["hit_rate"] == 0.0
