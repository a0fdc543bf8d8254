"""The GPU benchmark folder (bench/gpu_pack.py) runs where DuckDB, Prefect, GX, LightFM and the field's
libraries are missing: built here without wheels, then run on one split with a tiny encoder for 2 steps
with those imports blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import TINY_BERT

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_pack_runs_without_the_projects_heavy_libraries(tmp_path):
    out = tmp_path / "pack"
    build = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_pack.py"), "--out", str(out), "--no-wheels"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 60 * 2**20  # what travels to a GPU machine (the wheels add about 10 MiB)
    settings = {"encoder_config": TINY_BERT, "max_steps": 2, "max_length": 32, "num_threads": 1, "cache_frozen": False}
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": f"{ROOT / 'tests' / 'bare_gpu_machine'}:{out / 'code'}",
    }
    run = subprocess.run(
        [
            sys.executable,
            str(out / "gpu_run.py"),
            "--profile",
            "cpu",
            "--splits",
            "temporal_s0",
            "--set",
            json.dumps(settings),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=out,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "is blocked" not in run.stderr
    (row,) = json.loads((out / "results.json").read_text())
    assert row["split"] == "temporal_s0" and row["test_mse"] > 0 and 0 <= row["ndcg@10"] <= 1
    assert row["users_le3"] > 0 and row["recipe"].startswith("lower 5 layers frozen")
    assert "temporal_s0" in run.stdout.split("split")[-1]  # the printed table
