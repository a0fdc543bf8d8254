"""Benchmark the whole experiment: `python -m flows.full` cold (fresh workspace and Prefect home), then
rerun unchanged (cached fits), with wall time and peak memory; then the headline figures of the run.

    python bench/full.py [--seeds 0 1 2] [--data PATH] [--out bench/results/full.json] [-- extra flow args]

Peak memory is the largest resident set of any process of the run (the flow or the LM trainer it launches).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402


def run_flow(args: list[str], env: dict) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "flows.full", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"flows.full failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB, largest child so far
    return {"seconds": round(seconds, 1), "peak_rss_gib_so_far": round(peak, 2), "stdout_tail": proc.stdout[-4000:]}


def headline(db: Path) -> dict:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        run_id = con.execute(
            "SELECT run_id FROM runs WHERE flow = 'train' AND status = 'completed' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()[0]
        results = con.execute(
            """SELECT r.split_id, s.protocol, s.seed, r.model, r.metric, r.k, r.segment, r.value, r.ci_low, r.ci_high
               FROM eval_results r JOIN splits s USING (split_id)
               WHERE r.run_id = ? AND r.metric IN ('mse', 'rmse', 'ndcg') AND r.segment IN ('all', 'users:≤3')
               ORDER BY ALL""",
            [run_id],
        ).df()
        tests = con.execute(
            """SELECT split_id, metric, k, model_a, model_b, mean_diff, t_p_holm, wilcoxon_p_holm FROM eval_tests
               WHERE run_id = ? AND metric IN ('mse', 'ndcg') AND 'fusion' IN (model_a, model_b) ORDER BY ALL""",
            [run_id],
        ).df()
        fits = con.execute(
            "SELECT split_id, model, fit_seconds, params FROM model_fits WHERE run_id = ? ORDER BY ALL", [run_id]
        ).df()
    return {
        "run_id": run_id,
        "results": results.to_dict(orient="records"),
        "tests": tests.to_dict(orient="records"),
        "fits": fits.to_dict(orient="records"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data", help="dataset (default: the embedded default dataset)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "full.json")
    parser.add_argument("extra", nargs="*", help="more flows.full arguments (after --)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reclab-bench-"))
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    flow_args = ["--workspace", str(work / "ws"), "--split-seeds", *map(str, args.seeds), *args.extra]
    if args.data:
        flow_args += ["--data", args.data]
    cold = run_flow(flow_args, env)
    cached = run_flow(flow_args, env)
    figures = headline(work / "ws" / "reclab.duckdb")
    out = {"args": flow_args, "cold": cold, "cached": cached, "figures": figures}
    print(
        f"cold run {cold['seconds']} s, cached rerun {cached['seconds']} s, peak RSS {cached['peak_rss_gib_so_far']} GiB"
    )
    import pandas as pd

    results = pd.DataFrame(figures["results"])
    for (metric, k, segment), g in results.groupby(["metric", "k", "segment"]):
        table = g.pivot_table(index="model", columns="split_id", values="value")
        print(f"\n{metric}@{k} ({segment})\n{table.round(4).to_string()}")
    print("\npaired tests involving fusion (Holm-corrected t-test p)")
    print(pd.DataFrame(figures["tests"]).round(4).to_string(index=False))
    write_json(args.out, out)


if __name__ == "__main__":
    main()
