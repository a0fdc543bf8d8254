"""prefect.yaml for real: a Prefect server on a loopback port, the work pool, `prefect deploy --all`, a run of
the full-experiment deployment (tiny dataset, tiny transformer) through a process worker, and its report
artifact."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import import_module
from pathlib import Path

import duckdb
import pytest
import yaml
from builders import TINY_BERT, review, write_lines

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def _flow_name(entrypoint: str) -> str:
    """The Prefect flow name behind a deployment's entrypoint (``flows/full.py:full``)."""
    path, attribute = entrypoint.split(":")
    return getattr(import_module(path.removesuffix(".py").replace("/", ".")), attribute).name


def test_flow_names_say_what_they_do_and_every_deployment_the_readme_names_exists():
    flows = {d["entrypoint"]: _flow_name(d["entrypoint"]) for d in _deployments()}
    assert flows["flows/full.py:full"] == "reclab-experiment"
    assert all(name.startswith("reclab-") for name in flows.values()), flows
    deployed = {d["name"] for d in _deployments()}
    section = (ROOT / "docs" / "serving.md").read_text().split("## Prefect UI and deployments")[1].split("\n## ")[0]
    named = set(
        re.findall(
            r"`([a-z-]+)`", section.split("Deployments (`prefect.yaml`):")[1].split("Every deployment states")[0]
        )
    )
    assert named and named <= deployed | {"active: true"}, named - deployed
    for flow in ("prepare", "train", "report", "full", "search", "study", "recommend"):
        assert any(entry.startswith(f"flows/{flow}.py:") for entry in flows), f"no deployment of flows.{flow}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "HF_HUB_OFFLINE": "1",
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115  closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("Prefect server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _prefect(env, *args, timeout=300) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, f"prefect {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def test_deploy_and_run_the_full_experiment_through_a_worker(prefect_server, tmp_path):
    env = prefect_server
    _prefect(env, "work-pool", "create", "reclab-process", "--type", "process")
    deployed = _prefect(env, "--no-prompt", "deploy", "--all")
    names = [f"{_flow_name(d['entrypoint'])}/{d['name']}" for d in _deployments()]
    assert "reclab-experiment/full-experiment" in names and "reclab-experiment/retrain-weekly" in names
    for name in names:
        assert name in deployed, (name, deployed[-3000:])
    schedules = _prefect(env, "deployment", "schedule", "ls", "reclab-experiment/retrain-weekly")
    assert "0 3 * * 1" in schedules  # the weekly schedule ships, switched off
    # the UI's parameter forms: every field described, no path of the deploying machine baked in, and the
    # experiment's form made of settings only (its train and report stages' inputs, the workspace, splits and
    # run, are the earlier stages' results, not parameters); a stage deployed alone asks for its inputs
    api = env["PREFECT_API_URL"]
    for name in names:
        with urllib.request.urlopen(f"{api}/deployments/name/{name}", timeout=10) as response:
            schema = json.loads(response.read())["parameter_openapi_schema"]
        text = json.dumps(schema)
        assert str(ROOT) not in text and str(Path.home()) not in text, name
        undescribed = [
            f"{model}.{field}"
            for model, definition in schema.get("definitions", {}).items()
            for field, spec in definition.get("properties", {}).items()
            if not spec.get("description")
        ]
        assert not undescribed, (name, undescribed)
        if name == "reclab-experiment/full-experiment":
            stages = schema["definitions"]
            assert set(schema["properties"]) == {"params"}
            assert not {"workspace", "splits"} & set(stages["TrainSettings"]["properties"])
            assert not {"workspace", "run_id"} & set(stages["ReportSettings"]["properties"])
        if name == "reclab-train/train":  # alone, the stage asks which workspace and splits, apart
            assert set(schema["properties"]) == {"settings", "inputs"}
            assert set(schema["definitions"]["TrainInputs"]["properties"]) == {"workspace", "splits"}
        if name == "reclab-study/study":  # each dataset's path, name and workspace are the study's
            prepare = schema["definitions"]["PrepareSettings"]["properties"]
            assert not {"data", "name", "workspace"} & set(prepare) and "split" in prepare

    records = [review(f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i) for i in range(64)]
    data = write_lines(tmp_path / "reviews.json", records)
    workspace = tmp_path / "ws"
    tiny_lm = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1, "progress_bar": False}
    params = {
        "params": {
            "prepare": {
                "data": str(data),
                "workspace": str(workspace),
                "split": {"protocols": ["random", "temporal"]},
                "validation": {"data_docs": False},
            },
            "train": {
                "train": {
                    "models": ["global_mean", "bias_als", "popularity", "lightfm_hybrid", "lm_two_tower", "fusion"],
                    "lightfm_max_epochs": 5,
                    "lightfm_trials": 0,
                    "lm_overrides": tiny_lm,
                },
                "evaluation": {"n_boot": 100},
            },
        }
    }
    started = _prefect(env, "deployment", "run", "reclab-experiment/full-experiment", "--params", json.dumps(params))
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)
    worker = _prefect(env, "worker", "start", "--pool", "reclab-process", "--run-once", timeout=900)

    inspected = _prefect(env, "flow-run", "inspect", flow_run_id)
    assert "COMPLETED" in inspected, worker[-6000:]
    artifact = _prefect(env, "artifact", "inspect", "reclab-report")
    words = " ".join(artifact.split())  # the CLI wraps long lines anywhere
    assert "Verdict" in words and "Bottom line" in words, artifact[:3000]
    with duckdb.connect(str(workspace / "reclab.duckdb"), read_only=True) as con:
        models = {m for (m,) in con.execute("SELECT DISTINCT model FROM eval_results").fetchall()}
    assert {"fusion", "lm_two_tower", "lightfm_hybrid"} <= models
    assert list(workspace.glob("reports/*/report.html"))


def test_every_deployment_says_its_schedules_so_deploy_never_prompts():
    """`prefect deploy` in a terminal asks "Would you like to configure schedules" for a deployment without a
    `schedules` key (prefect.cli.deploy._schedules: only an absent key prompts); each one here has the key."""
    import yaml

    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert deployments and all("schedules" in d for d in deployments)
    assert {d["name"] for d in deployments} >= {"full-experiment", "retrain-weekly", "study"}


def test_every_parameter_description_reads_the_same_rendered_as_markdown():
    """The Prefect UI renders field descriptions as Markdown: a leading '>' became a quote, '<workspace>'
    vanished as an HTML tag. Every description of every flow's form must keep its text when rendered."""
    import html

    import markdown
    from pydantic import BaseModel

    import flows.params

    def text(value: str) -> str:
        return re.sub(r"\s+", " ", value).strip()

    def walk(model, path=""):
        for name, info in model.model_fields.items():
            if info.description:
                rendered = html.unescape(re.sub(r"<[^>]+>", "", markdown.markdown(info.description)))
                yield f"{path}{name}", text(info.description.replace("`", "")), text(rendered)
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                yield from walk(info.annotation, f"{path}{name}.")

    models = [
        flows.params.FullParams,
        flows.params.StudyParams,
        flows.params.SearchParams,
        flows.params.RecommendParams,
    ]
    changed = [(field, source, shown) for m in models for field, source, shown in walk(m) if source != shown]
    assert not changed, changed
    assert sum(1 for m in models for _ in walk(m)) > 50  # the forms' fields were all read
