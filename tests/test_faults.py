"""Faults: a run killed at any stage and rerun; two runs on one workspace at once; the workspace lock.

(The transformer's own kill-and-resume is in test_lm.py; atomic publishing and report writing in
test_bundle.py / test_report.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from builders import review, write_lines

from tasks.store import WorkspaceBusy, workspace_lock

ROOT = Path(__file__).resolve().parents[1]


def _hold_lock(root: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from tasks.store import workspace_lock\n"
        f"with workspace_lock({str(root)!r}, 'a test holder'):\n"
        "    print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_workspace_lock_waits_names_the_holder_and_a_kill_releases_it(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(WorkspaceBusy, match=rf"in use by a test holder \(pid {holder.pid}, since .*waited 1 s"):
            with workspace_lock(tmp_path, "second", wait_s=1):
                pass
        assert time.monotonic() - start >= 1.0  # it waited before giving up
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workspace_lock(tmp_path, "third", wait_s=5):  # the killed holder's lock is gone with its process
        with workspace_lock(tmp_path, "nested"):  # re-entrant within a process (full -> its stages)
            assert "third" in (tmp_path / ".lock").read_text()


# --- whole runs in their own processes -----------------------------------------------------------------

MODELS = ["global_mean", "bias_als", "popularity", "lightfm_hybrid", "fusion"]


def _full(data: Path, workspace: Path, prefect_home: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.full",
            "--data",
            str(data),
            "--workspace",
            str(workspace),
            "--models",
            *MODELS,
            "--protocols",
            "random",
            "temporal",
            "--no-data-docs",
            "--no-publish",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill_with_children(run: subprocess.Popen) -> None:
    """SIGKILL a run and every process it started (its temporary Prefect server would otherwise be orphaned
    and outlive the tests)."""
    import psutil

    children = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def _final_metrics(workspace: Path) -> list[tuple]:
    with duckdb.connect(str(workspace / "reclab.duckdb"), read_only=True) as con:
        runs = con.execute(
            "SELECT run_id FROM runs WHERE flow = 'train' AND status = 'completed' ORDER BY started_at"
        ).fetchall()
        return [
            con.execute(
                "SELECT split_id, model, metric, k, segment, value, ci_low, ci_high FROM eval_results "
                "WHERE run_id = ? ORDER BY ALL",
                [run],
            ).fetchall()
            for (run,) in runs
        ]


@pytest.mark.slow
def test_killed_runs_rerun_to_the_same_metrics_and_concurrent_runs_do_not_collide(tmp_path):
    records = [
        review(f"u{i // 10}", f"i{(i * 7) % 25}", 1 + (i * 3) % 5, ts=1_400_000_000 + i * 3600) for i in range(300)
    ]
    data = write_lines(tmp_path / "r.json", records)

    # two runs at once on one workspace: the second waits for the first, both complete
    together = tmp_path / "together"
    first, second = _full(data, together, tmp_path / "ph1"), _full(data, together, tmp_path / "ph2")
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert any("is in use by flow full" in out for out in outputs)
    reference, again = _final_metrics(together)
    assert len(reference) > 50 and again == reference

    # a run killed (SIGKILL) in the middle of the prepare stage, then in the middle of the train stage
    killed = tmp_path / "killed"
    for stage in ("prepare", "train"):
        run = _full(data, killed, tmp_path / "ph3")
        lines = []
        reader = threading.Thread(target=lines.extend, args=(iter(run.stdout.readline, ""),), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while not any(f"for flow 'reclab-{stage}'" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # into the stage's work
        kill_with_children(run)
        assert run.wait() == -signal.SIGKILL, f"the run finished before it could be killed in {stage}"
    rerun = _full(data, killed, tmp_path / "ph3")
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out[-3000:]
    assert _final_metrics(killed)[-1] == reference
    with duckdb.connect(str(killed / "reclab.duckdb"), read_only=True) as con:
        statuses = [s for (s,) in con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()]
    assert "running" not in statuses and statuses.count("interrupted") >= 2 and statuses[-1] == "completed"

    # the run folders deleted: the fit store (the one cache of fits) restores every model, the fusion included
    shutil.rmtree(killed / "runs")
    rerun = _full(data, killed, tmp_path / "ph3")
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0 and "fusion (" in out and "restored from the fit store" in out, out[-3000:]
    assert ": fitting " not in out, out[-3000:]  # nothing refitted
    assert _final_metrics(killed)[-1] == reference


def test_fit_outputs_round_trip_as_parquet_and_refuse_altered_files(tmp_path):
    """What a split's fit hands from the task runner to the flow is a JSON-able summary naming Parquet files
    with their sha256: no pickle."""

    import numpy as np
    import pandas as pd

    from tasks.train import FitOutputsAltered, LMTables, SavedSplitFit

    per_user = pd.DataFrame(
        {
            "model": ["m", "m"],
            "metric": ["mse", "ndcg"],
            "k": [0, 10],
            "user_id": ["u1", "u2"],
            "user_segment": ["<=3", "4-10"],
            "item_segment": ["all", "all"],
            "num": [0.25, np.nan],
            "den": [1.0, 1.0],
        }
    )
    vectors = pd.DataFrame({"kind": ["user"], "id": ["u1"], "vector": [[0.5, -1.0]]})
    fits = [
        {
            "model": "m",
            "params": {"a_": 1.5, "n_": np.int64(3)},
            "fit_seconds": 0.1,
            "extras": {"coverage": np.float64(0.5)},
        }
    ]
    outputs = SavedSplitFit("random_s0", "random", per_user, fits, LMTables(vectors, per_user[["user_id"]]), None)
    summary = outputs.save(tmp_path / "outputs")
    from prefect.serializers import JSONSerializer

    serializer = JSONSerializer()
    assert serializer.loads(serializer.dumps(summary)) == summary  # as Prefect's JSON serializer keeps it
    assert "__class__" not in serializer.dumps(summary).decode()  # plain JSON: no object to rebuild
    loaded = SavedSplitFit.load(summary)
    assert (loaded.split_id, loaded.protocol, loaded.bundle) == ("random_s0", "random", None)
    assert loaded.per_user.equals(per_user) and loaded.fits == fits
    assert type(loaded.fits[0]["params"]["n_"]) is int
    assert list(loaded.lm.embeddings["vector"][0]) == [0.5, -1.0]
    per_user.assign(num=0.0).to_parquet(summary["files"]["per_user"]["path"], index=False)
    with pytest.raises(FitOutputsAltered, match="per_user.parquet is missing or was altered"):
        SavedSplitFit.load(summary)


@pytest.mark.slow
def test_sigterm_stops_a_run_within_seconds_and_the_rerun_refits_nothing_already_fitted(tmp_path):
    """SIGTERM (a timeout, a cancellation) while the LM trains beside the other fits: the run exits within 10 s
    with no process of its own left (the trainer, Prefect's temporary server), and the same command again
    restores the fits already made instead of refitting them."""
    import json

    import psutil
    from builders import TINY_BERT

    records = [
        review(f"u{i // 10}", f"i{(i * 7) % 25}", 1 + (i * 3) % 5, ts=1_400_000_000 + i * 3600) for i in range(300)
    ]
    data = write_lines(tmp_path / "r.json", records)
    # the LM's trainer made long (many epochs of a tiny encoder): it is still training when the signal comes
    slow_lm = {"encoder_config": TINY_BERT, "max_length": 32, "max_epochs": 400, "patience": 400}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"train": {"train": {"lm_overrides": slow_lm}}}))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "ph"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [sys.executable, "-m", "flows.full", "--config", str(config), "--data", str(data)]
    command += ["--workspace", str(tmp_path / "ws"), "--protocols", "random", "--no-data-docs", "--no-publish"]
    command += ["--models", "global_mean", "bias_als", "lm_two_tower"]

    def start_and_stop_once(ready: str) -> tuple[list[str], float, list]:
        run = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        threading.Thread(target=lines.extend, args=(iter(run.stdout.readline, ""),), daemon=True).start()
        deadline = time.monotonic() + 400
        while not any(ready in line for line in lines) and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.1)
        assert any(ready in line for line in lines), "".join(lines)[-3000:]

        def trainer_running() -> list:
            children = psutil.Process(run.pid).children(recursive=True)
            return children if any("models.lm.train" in " ".join(c.cmdline()) for c in children) else []

        while not trainer_running() and time.monotonic() < deadline:  # it starts just after that line
            time.sleep(0.1)
        children = trainer_running()
        assert children, "".join(lines)[-3000:]
        start = time.monotonic()
        run.send_signal(signal.SIGTERM)
        try:
            assert run.wait(timeout=30) == 128 + signal.SIGTERM
        finally:
            if run.poll() is None:
                kill_with_children(run)
        took = time.monotonic() - start
        time.sleep(0.5)
        return lines, took, [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    lines, took, left = start_and_stop_once("random_s0: bias_als fitted in")
    assert took < 10, f"{took:.1f} s to stop"
    assert not left, f"left running: {[c.cmdline() for c in left]}"
    assert any("SIGTERM received: stopping now" in line for line in lines)

    lines, took, left = start_and_stop_once("random_s0: fitting lm_two_tower (3 of 3)")
    assert took < 10 and not left
    log = "".join(lines)
    assert "random_s0: global_mean (1 of 3) restored from the fit store" in log
    assert "random_s0: bias_als (2 of 3) restored from the fit store" in log
    assert "fitting bias_als" not in log and "fitting global_mean" not in log  # nothing fitted twice
