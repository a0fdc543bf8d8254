"""Benchmark the prepare stage: per-step timings on the default dataset and MovieLens latest, the whole
``python -m flows.prepare`` command (Prefect's temporary server included), and ingest peak memory on the
default dataset enlarged 1x, 10x and 30x (streaming: memory should not grow with file size).

    python bench/prepare.py [--movielens PATH] [--skip-cli] [--out bench/results/prepare.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402
from readers import DEFAULT_DATASET  # noqa: E402

DEFAULT_ML = ROOT.parent / "shared" / "data" / "movielens-latest-small"


def time_steps(data: Path, workdir: Path) -> dict:
    """Seconds per prepare step, run in-process without Prefect."""
    import duckdb

    from data_checks import ValidationConfig
    from models.evaluation.split import SplitConfig
    from readers import resolve_dataset
    from tasks import IngestConfig
    from tasks.ingest import build_canonical_tables, load_raw_tables
    from tasks.split import split_workspace, write_training_reviews
    from tasks.validate import validate_workspace

    spec = resolve_dataset(data)
    con = duckdb.connect(str(workdir / f"{spec.name}.duckdb"))
    steps, t = {}, time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        steps[name] = round(now - t, 3)
        t = now

    load_raw_tables(con, spec)
    lap("load_raw")
    accounting = build_canonical_tables(con, spec, IngestConfig())
    lap("canonical")
    validate_workspace(con, spec, ValidationConfig(data_docs=False), "bench")
    lap("validate")
    split_workspace(con, SplitConfig())
    lap("split")
    write_training_reviews(con)
    lap("train_reviews")
    steps["total"] = round(sum(steps.values()), 3)
    steps["interactions"] = accounting["interactions"]["kept"]
    con.close()
    return steps


def time_cli(data: Path, workdir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.prepare",
            "--data",
            str(data),
            "--workspace",
            str(workdir / "cli"),
            "--no-data-docs",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return round(time.perf_counter() - start, 2)


def enlarge(src: Path, dst: Path, factor: int) -> Path:
    """The default reviews repeated ``factor`` times with distinct user ids per copy (no duplicates)."""
    lines = gzip.open(src, "rt").read().splitlines()
    with gzip.open(dst, "wt") as out:
        for k in range(factor):
            for line in lines:
                rec = json.loads(line)
                rec["reviewerID"] = f"{rec['reviewerID']}-{k}"
                out.write(json.dumps(rec) + "\n")
    return dst


PEAK_RSS = """
import resource, sys, duckdb
sys.path.insert(0, {root!r})
from readers import resolve_dataset
from tasks import IngestConfig
from tasks.ingest import build_canonical_tables, load_raw_tables
spec = resolve_dataset({path!r})
con = duckdb.connect({db!r}, config={{"memory_limit": "256MB"}})
load_raw_tables(con, spec)
build_canonical_tables(con, spec, IngestConfig())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_ingest_mib(path: Path, workdir: Path) -> float:
    code = PEAK_RSS.format(root=str(ROOT), path=str(path), db=str(workdir / f"{path.stem}.duckdb"))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return round(int(out.stdout.strip().splitlines()[-1]) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movielens", type=Path, default=DEFAULT_ML, help="MovieLens latest-small folder")
    parser.add_argument("--skip-cli", action="store_true", help="skip timing the whole command")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prepare.json")
    args = parser.parse_args()

    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        datasets = {"amazon-musical-instruments": DEFAULT_DATASET}
        if args.movielens.exists():
            datasets["movielens-latest-small"] = args.movielens
        print(
            f"{'dataset':<28}{'rows':>9}{'load_raw':>10}{'canonical':>11}{'validate':>10}{'split':>8}"
            f"{'train_rev':>11}{'steps':>8}{'CLI':>8}"
        )
        for name, path in datasets.items():
            steps = time_steps(path, tmp)
            steps["cli_s"] = None if args.skip_cli else time_cli(path, tmp / name)
            results[name] = steps
            print(
                f"{name:<28}{steps['interactions']:>9,}{steps['load_raw']:>10.2f}{steps['canonical']:>11.2f}"
                f"{steps['validate']:>10.2f}{steps['split']:>8.2f}{steps['train_reviews']:>11.2f}"
                f"{steps['total']:>8.2f}{steps['cli_s'] or float('nan'):>8.2f}"
            )

        src = DEFAULT_DATASET / "reviews_Musical_Instruments_5.json.gz"
        peaks = {f"x{k}": peak_ingest_mib(enlarge(src, tmp / f"x{k}.json.gz", k), tmp) for k in (1, 10, 30)}
        results["ingest_peak_rss_mib"] = {**peaks, "duckdb_memory_limit": "256MB"}
        print(
            "\ningest peak RSS (DuckDB memory_limit 256MB): "
            + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items())
            + f"; x30/x10 = {peaks['x30'] / peaks['x10']:.2f} for 3x the rows"
        )
    write_json(args.out, results)


if __name__ == "__main__":
    main()
