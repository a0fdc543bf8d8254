"""How long a run's judgement takes (every unit's paired differences, bootstrap CIs and tests:
``tasks.evaluate.judge_evaluations``) on a workspace's latest evaluated run, optionally side by side with another
checkout of reclab (an older commit in a git worktree), and whether the two give the same rows bit for bit.

    python bench/judge.py W                          # this checkout, 3 runs
    python bench/judge.py W --compare /tmp/reclab-old

Each run is a process of its own that reads the run's per-user values and times the judgement alone (not the
imports or the read); runs alternate between the checkouts so that a busy machine slows both alike. The table
gives the median seconds and the ratio; JSON goes to bench/results/judge.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402

ONE_RUN = """
import json, sys, time
import duckdb
from models.evaluation import EvalConfig
from tasks.evaluate import judge_evaluations, latest_card, run_fits
con = duckdb.connect(sys.argv[1], read_only=True)
run_id = con.execute(
    "SELECT e.run_id FROM (SELECT DISTINCT run_id FROM eval_per_user) e LEFT JOIN runs r USING (run_id) "
    "ORDER BY r.started_at DESC NULLS LAST LIMIT 1"
).fetchone()[0]
per_user = con.execute(
    "SELECT * EXCLUDE (run_id) FROM eval_per_user WHERE run_id = ? ORDER BY ALL", [run_id]
).df()
fits, card = run_fits(con, run_id), latest_card(con)
start = time.perf_counter()
diffs, _ = judge_evaluations(per_user, fits, card, EvalConfig())
seconds = time.perf_counter() - start
diffs.to_pickle(sys.argv[2])
print("RESULT", json.dumps({"seconds": seconds, "rows": len(diffs), "run_id": run_id}))
"""


def judged(checkout: Path, db: Path, out: Path) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", ONE_RUN, str(db), str(out)],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise SystemExit(f"the judgement failed in {checkout}:\n{run.stderr[-2000:]}")
    line = next(x for x in reversed(run.stdout.splitlines()) if x.startswith("RESULT "))  # after progress lines
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", type=Path, help="a workspace with an evaluated run (its reclab.duckdb)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per checkout (default 3)")
    parser.add_argument("--compare", type=Path, help="another reclab checkout to time side by side")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "judge.json")
    args = parser.parse_args()
    import pandas as pd

    db = args.workspace / "reclab.duckdb"
    checkouts = {"this": ROOT, **({"other": args.compare.resolve()} if args.compare else {})}
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as scratch:
        outputs = {name: Path(scratch) / f"{name}.pkl" for name in checkouts}
        for n in range(args.repeat):
            for name, checkout in checkouts.items():
                result = judged(checkout, db, outputs[name])
                times[name].append(result["seconds"])
                print(
                    f"run {n + 1}/{args.repeat} {name}: {result['seconds']:.2f} s, {result['rows']:,} rows", flush=True
                )
        same = None
        if args.compare:
            frames = [pd.read_pickle(outputs[name]) for name in checkouts]
            same = bool(frames[0].equals(frames[1]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{'checkout':<10}{'median s':>10}")
    for name, value in medians.items():
        print(f"{name:<10}{value:>10.2f}")
    if args.compare:
        print(f"ratio this/other {medians['this'] / medians['other']:.2f}; the same rows bit for bit: {same}")
    write_json(args.out, {"workspace": str(args.workspace), "seconds": times, "median": medians, "same_rows": same})


if __name__ == "__main__":
    main()
