"""The HTTP service and the registry: endpoints, bad requests, cold start, promotion picked up under load."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from models.serving.bundle import save_model
from models.serving.published import read_champion
from serve.app import challenger_arm, create_app
from tasks.registry import install_bundle, rollback_target, set_ab, set_champion
from tasks.serving_log import ResponseLog, compare_arms, prune
from tasks.store import connect


def test_the_service_imports_neither_prefect_nor_the_registrys_database_code():
    import subprocess
    import sys

    probe = "import serve.app, serve.__main__, sys; print(sorted(set(sys.modules) & {'prefect', 'duckdb', 'tasks.registry'}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]


@pytest.fixture
def registry(fitted, tmp_path):
    fusion, train, validation = fitted
    reg = tmp_path / "registry"
    # a publication as tasks.registry writes it: the run's parameters name the workspace folder
    details = {"metrics": {"rmse": 0.9}, "parameters": {"workspace": str(tmp_path), "splits": ["random_s0"]}}
    install_bundle(save_model(fusion, tmp_path / "b1"), reg, "v1", details)
    install_bundle(save_model(fusion.components["bias_als"], tmp_path / "b2"), reg, "v2")
    with connect(tmp_path / "reclab.duckdb") as con:
        set_champion(con, reg, "v1", "publish", "first published model")
    return reg, tmp_path / "reclab.duckdb", fusion, train


@pytest.fixture
def client(registry):
    with TestClient(create_app(registry[0], poll_s=0.05)) as client:
        yield client


def test_recommend_excludes_seen_items_and_explains(client, registry):
    _, _, fusion, train = registry
    user = train["user_id"].iloc[0]
    body = client.get("/recommend", params={"user_id": user, "k": 5}).json()
    assert body["model_version"] == "v1" and body["strategy"] == "personalised" and len(body["items"]) == 5
    ids, scores = fusion.recommend([user], k=5)
    assert [it["item_id"] for it in body["items"]] == ids[0].tolist()
    np.testing.assert_allclose([it["score"] for it in body["items"]], scores[0])
    assert not set(ids[0]) & set(train.loc[train["user_id"] == user, "item_id"])
    first = body["items"][0]
    assert set(first["drivers"]) == set(fusion.score_parts([user])) and sum(first["drivers"].values()) == pytest.approx(
        first["score"], abs=1e-3
    )
    assert first["similar_to"][0]["item_id"] in set(train.loc[train["user_id"] == user, "item_id"])


def test_unknown_users_get_popular_items_and_predictions_fall_back(client, registry):
    _, _, fusion, _ = registry
    body = client.get("/recommend", params={"user_id": "never-seen", "k": 3}).json()
    assert body["strategy"] == "popularity (unknown user)"
    assert [it["item_id"] for it in body["items"]] == fusion.item_ids[
        np.argsort(-fusion.item_counts, kind="stable")[:3]
    ].tolist()
    pairs = [{"user_id": "never-seen", "item_id": "i0"}, {"user_id": "u1", "item_id": "no-such-item"}]
    body = client.post("/predict", json={"pairs": pairs}).json()
    expected = np.clip(fusion.predict(["never-seen", "u1"], ["i0", "no-such-item"]), *fusion._rating_range)
    np.testing.assert_allclose(body["predictions"], expected)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"user_id": "u1", "k": 0}, "k"),
        ({"user_id": "u1", "k": 10**6}, "k"),
        ({"user_id": "u1", "k": "ten"}, "k"),
        ({"k": 5}, "user_id"),
        ({"user_id": "x" * 1000}, "user_id"),
        ({"user_id": ""}, "user_id"),
    ],
)
def test_bad_recommend_requests_get_422_naming_the_parameter(client, params, field):
    response = client.get("/recommend", params=params)
    assert response.status_code == 422 and field in str(response.json()["detail"])


def test_bad_predict_requests_get_4xx(client):
    assert client.post("/predict", json={"pairs": []}).status_code == 422
    assert client.post("/predict", json={"pairs": [{"user_id": "u1"}]}).status_code == 422
    assert client.post("/predict", json={"pairs": [{"user_id": "u1", "item_id": "i1", "x": 1}]}).status_code == 422
    assert client.post("/predict", content=b"not json", headers={"content-type": "application/json"}).status_code == 422
    too_many = {"pairs": [{"user_id": "u1", "item_id": "i1"}] * 10_001}
    assert client.post("/predict", json=too_many).status_code == 422
    huge = client.post("/predict", content=b"x" * 8_000_001, headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "over 8,000,000 bytes" in huge.json()["detail"]
    chunks = (b"x" * 1_000_000 for _ in range(9))  # chunked transfer: no Content-Length to check up front
    chunked = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "over 8,000,000 bytes" in chunked.json()["detail"]
    small = client.post(
        "/predict",
        content=(c for c in [b'{"pairs": [{"user_id": "u1", ', b'"item_id": "i1"}]}']),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 200, small.text


def test_health_model_and_no_stack_traces(client, monkeypatch):
    assert client.get("/health").json() == {"status": "ok", "model_version": "v1"}
    info = client.get("/model").json()
    assert info["model_version"] == "v1" and info["metrics"] == {"rmse": 0.9} and info["model"] == "fusion"
    current = client.app.state.champion.current
    monkeypatch.setattr(current, "recommend", lambda *a, **k: 1 / 0)
    as_deployed = TestClient(client.app, raise_server_exceptions=False)  # as a real server answers
    response = as_deployed.get("/recommend", params={"user_id": "u1"})
    assert response.status_code == 500 and "Traceback" not in response.text and "ZeroDivision" not in response.text


def test_without_a_champion_the_service_says_so(tmp_path):
    with TestClient(create_app(tmp_path / "registry")) as client:
        assert client.get("/health").status_code == 503
        response = client.get("/recommend", params={"user_id": "u1"})
        assert response.status_code == 503 and "no champion" in response.json()["detail"]


def test_promotion_and_rollback_are_served_without_failed_requests(client, registry):
    reg, db, _, train = registry
    users = train["user_id"].unique()[:8].tolist()
    seen, errors, stop = set(), [], threading.Event()

    def hammer():
        n = 0
        while not stop.is_set():
            response = client.get("/recommend", params={"user_id": users[n % len(users)], "k": 5})
            if response.status_code != 200 or len(response.json()["items"]) != 5:
                errors.append(response.text)
            else:
                seen.add(response.json()["model_version"])
            n += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    with connect(db) as con:
        set_champion(con, reg, "v2", "promote", "test")
    deadline = time.monotonic() + 10
    while client.get("/health").json()["model_version"] != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and seen == {"v1", "v2"}
    with connect(db) as con:
        assert rollback_target(con, reg) == "v1"
        set_champion(con, reg, "v1", "rollback", "test")
        actions = con.execute("SELECT action, champion, previous FROM promotions ORDER BY decided_at").fetchall()
    assert actions == [("publish", "v1", None), ("promote", "v2", "v1"), ("rollback", "v1", "v2")]
    assert read_champion(reg)["version"] == "v1"


def test_ab_arms_are_stable_per_user_and_every_response_is_logged(registry, tmp_path):
    reg, _, _, _ = registry
    set_ab(reg, "v2", share=0.5)
    log_db = tmp_path / "serving.duckdb"
    users = [f"u{n}" for n in range(40)]
    with TestClient(create_app(reg, poll_s=0.05, log_db=log_db)) as client:
        first = {u: client.get("/recommend", params={"user_id": u, "k": 3}).json() for u in users}
        again = {u: client.get("/recommend", params={"user_id": u, "k": 3}).json()["arm"] for u in users}
        assert client.get("/model").json()["ab_test"] == {"challenger": "v2", "share": 0.5}
    arms = {u: r["arm"] for u, r in first.items()}
    assert arms == again == {u: "challenger" if challenger_arm(u, 0.5) else "champion" for u in users}
    assert 10 < sum(a == "challenger" for a in arms.values()) < 30  # about half
    assert all(r["model_version"] == {"challenger": "v2", "champion": "v1"}[r["arm"]] for r in first.values())
    with connect(log_db, read_only=True) as con:  # flushed at shutdown
        logged = con.execute("SELECT user_id, arm, model_version, items FROM serving_log").fetchall()
    assert len(logged) == 80
    assert {(u, a, v, tuple(i)) for u, a, v, i in logged} >= {
        (u, r["arm"], r["model_version"], tuple(it["item_id"] for it in r["items"])) for u, r in first.items()
    }
    set_ab(reg, None)
    with pytest.raises(Exception, match="between 0 and 1"):
        set_ab(reg, "v2", share=1.5)


def test_arms_compare_on_later_interactions():
    at = pd.Timestamp(100, unit="s")
    served = pd.DataFrame(
        {
            "served_at": [at, at, at],
            "user_id": ["a", "b", "c"],
            "arm": ["challenger", "champion", "challenger"],
            "model_version": ["v2", "v1", "v2"],
            "items": [["x", "y"], ["z"], ["w"]],
            "latency_ms": [1.0, 2.0, 3.0],
        }
    )
    later = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "z", "q"], "timestamp": [200, 50, 200]})
    report = compare_arms(served, later)  # a: x after it was served (hit); b: z before (no); c: q not served (no)
    assert report["arms"]["challenger"]["hit_rate"] == 0.5 and report["arms"]["champion"]["hit_rate"] == 0.0
    assert report["arms"]["challenger"]["requests"] == 2 and report["arms"]["champion"]["latency_p50_ms"] == 2.0


def test_docs_render_offline_and_every_answer_has_a_schema(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn" not in html.lower() and "https://" not in html  # nothing fetched from the internet
        assets = [part.split('"')[0] for part in html.split('src="')[1:]] + [
            part.split('"')[0] for part in html.split('href="')[1:] if part.split('"')[0].endswith(".css")
        ]
        assert assets and all(a.startswith("/") for a in assets)
        for asset in assets:
            served = client.get(asset)
            assert b"cdn.redoc.ly" not in served.content  # ReDoc's footer logo too (its script points at a CDN)
            assert served.status_code == 200 and len(served.content) > 1000, asset
    schema = client.get("/openapi.json").json()
    for path in ("/health", "/model", "/recommend", "/predict"):
        method = "post" if path == "/predict" else "get"
        ok = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok.get("$ref", "").startswith("#/components/schemas/"), (path, ok)
    assert "score_kind" in schema["components"]["schemas"]["Recommendations"]["properties"]


def test_predict_flags_cold_pairs_scores_say_their_kind_and_no_server_path_is_answered(client, registry):
    _, _, fusion, train = registry
    known_user, known_item = train["user_id"].iloc[0], train["item_id"].iloc[0]
    pairs = [
        {"user_id": known_user, "item_id": known_item},
        {"user_id": "never-seen", "item_id": known_item},
        {"user_id": known_user, "item_id": "no-such-item"},
    ]
    body = client.post("/predict", json={"pairs": pairs}).json()
    assert body["cold_user"] == [False, True, False] and body["cold_item"] == [False, False, True]
    assert client.get("/recommend", params={"user_id": known_user}).json()["score_kind"] == "model score"
    assert client.get("/recommend", params={"user_id": "never-seen"}).json()["score_kind"] == "popularity"
    answer = client.get("/model")
    info = answer.json()
    assert "path" not in info and not any(isinstance(v, str) and v.startswith("/") for v in info.values())
    assert str(registry[0].parent) not in answer.text  # nor nested: the run's parameters lose the workspace
    assert info["parameters"] == {"splits": ["random_s0"]} and info["metrics"] == {"rmse": 0.9}
    assert str(registry[0]) not in client.get("/health").text


def test_the_service_prints_its_address_and_model_at_startup(registry, tmp_path, monkeypatch, capsys):
    import serve.__main__ as entry

    reg, db, _, _ = registry
    workspace = reg.parent  # the registry lives at <workspace>/registry
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: calls.append(k))
    assert entry.main(["--workspace", str(workspace), "--no-log", "--port", "8123"]) == 0
    assert calls[0]["access_log"] is False  # its request lines would carry raw user ids
    err = capsys.readouterr().err
    assert f"reclab serve: model v1 of {workspace.name} at http://127.0.0.1:8123" in err and "/docs" in err


def test_the_serving_log_keeps_requests_for_its_retention_period(tmp_path):
    from datetime import UTC, datetime, timedelta

    from tasks import tables

    db = tmp_path / "serving.duckdb"
    now = datetime(2026, 12, 1, 12, 0)
    log = ResponseLog(db, retention_days=90)
    log.start()
    for days, user in ((120, "old"), (91, "older-than-90"), (89, "recent"), (0, "today")):
        log._rows.put((now - timedelta(days=days), "recommend", user, "champion", "v1", ["x"], 1.0))
    log.stop()
    assert prune(db, 90, now=now) == 2
    with connect(db, read_only=True) as con:
        kept = [u for (u,) in con.execute(f"SELECT user_id FROM {tables.SERVING_LOG} ORDER BY served_at").fetchall()]
    assert kept == ["recent", "today"]
    assert prune(db, 90, now=now) == 0  # nothing left to remove
    assert prune(tmp_path / "no-log.duckdb", 90) == 0  # no log yet: nothing to do, no file made
    assert not (tmp_path / "no-log.duckdb").exists()
    # the service prunes when it starts, by the real clock
    real_now = datetime.now(UTC).replace(tzinfo=None)
    fresh = ResponseLog(tmp_path / "fresh.duckdb")
    fresh.start()
    for days, user in ((45, "last month"), (1, "yesterday")):
        fresh._rows.put((real_now - timedelta(days=days), "recommend", user, "champion", "v1", ["x"], 1.0))
    fresh.stop()
    restarted = ResponseLog(tmp_path / "fresh.duckdb", retention_days=30)
    restarted.start()
    restarted.stop()
    with connect(tmp_path / "fresh.duckdb", read_only=True) as con:
        assert con.execute(f"SELECT user_id FROM {tables.SERVING_LOG}").fetchall() == [("yesterday",)]


def test_the_ab_comparison_says_which_period_it_covers():
    served = pd.DataFrame(
        {
            "served_at": pd.to_datetime(["2026-11-01 10:00", "2026-11-20 09:30"]),
            "user_id": ["a", "b"],
            "arm": ["champion", "challenger"],
            "model_version": ["v1", "v2"],
            "items": [["x"], ["y"]],
            "latency_ms": [1.0, 2.0],
        }
    )
    later = pd.DataFrame({"user_id": [], "item_id": [], "timestamp": []})
    period = compare_arms(served, later)["period"]
    assert period == {"first_request": "2026-11-01T10:00:00", "last_request": "2026-11-20T09:30:00"}


def test_every_status_the_service_answers_is_in_its_schema(registry):
    """Requests generated from the service's own OpenAPI schema (hypothesis-jsonschema: valid bodies and
    parameters), arbitrary JSON, and bytes that are not JSON at all: every status answered is one the schema
    documents for that operation, and no answer is a server error."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis_jsonschema import from_schema

    with TestClient(create_app(registry[0], poll_s=0.05), raise_server_exceptions=False) as client:
        schema = client.get("/openapi.json").json()
        documented = {
            (path, method.upper()): {int(code) for code in op["responses"]}
            for path, ops in schema["paths"].items()
            for method, op in ops.items()
        }
        seen: dict[tuple[str, str], set[int]] = {key: set() for key in documented}

        def check(method: str, path: str, response) -> None:
            assert response.status_code in documented[(path, method)], (method, path, response.status_code)
            assert response.status_code < 500, response.text
            seen[(path, method)].add(response.status_code)

        operation = schema["paths"]["/predict"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"] | {"components": schema["components"]}
        json_values = st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=6,
        )
        fuzz = settings(max_examples=40, deadline=None, database=None, derandomize=True)

        @fuzz
        @given(from_schema(body) | json_values)
        def predict(value):
            check("POST", "/predict", client.post("/predict", json=value))

        @fuzz
        @given(st.binary(max_size=40))
        def predict_raw(raw):
            headers = {"content-type": "application/json"}
            check("POST", "/predict", client.post("/predict", content=raw, headers=headers))

        params = schema["paths"]["/recommend"]["get"]["parameters"]
        query = {
            "type": "object",
            "properties": {p["name"]: p["schema"] for p in params},
            "required": [p["name"] for p in params if p.get("required")],
            "additionalProperties": False,
        }

        @fuzz
        @given(from_schema(query) | st.dictionaries(st.sampled_from(["user_id", "k", "explain"]), st.text(max_size=4)))
        def recommend(values):
            values = {k: str(v).lower() if isinstance(v, bool) else v for k, v in values.items()}
            check("GET", "/recommend", client.get("/recommend", params=values))

        predict()
        predict_raw()
        recommend()
        for path in ("/health", "/model"):
            check("GET", path, client.get(path))
        big = {"content-type": "application/json", "content-length": str(10**9)}
        check("POST", "/predict", client.post("/predict", content=b"{}", headers=big))
    assert seen[("/predict", "POST")] >= {200, 413, 422}
    assert seen[("/recommend", "GET")] >= {200, 422}
