"""How long each command takes to answer ``--help`` (a whole ``python -m ...`` process), optionally side by side
with another checkout of reclab (e.g. an older commit in a git worktree) in the same run.

    python bench/cli_help.py                                   # this checkout, 5 runs per command
    python bench/cli_help.py --compare /tmp/reclab-old --renamed flows.train=flows.baselines serve.registry=flows.registry

Runs alternate between the checkouts so that a busy machine slows both alike; the table gives the median
seconds per command and the ratio. JSON goes to bench/results/cli_help.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402

MODULES = (
    "flows.prepare",
    "flows.train",
    "flows.full",
    "flows.report",
    "flows.search",
    "flows.recommend",
    "serve",
    "serve.registry",
)


def seconds(module: str, cwd: Path) -> float:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{module} --help failed in {cwd}:\n{run.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per command and checkout (default 5)")
    parser.add_argument("--compare", type=Path, help="another reclab checkout to time side by side")
    parser.add_argument(
        "--renamed", nargs="*", default=[], metavar="NAME=OTHER", help="commands the other checkout names otherwise"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cli_help.json")
    args = parser.parse_args()
    old_names = dict(pair.split("=", 1) for pair in args.renamed)
    rows = []
    print(f"{'command':<18}{'this (s)':>10}" + (f"{'other (s)':>11}{'ratio':>8}" if args.compare else ""))
    for module in MODULES:
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(seconds(module, ROOT))
            if args.compare:
                theirs.append(seconds(old_names.get(module, module), args.compare))
        row = {"module": module, "seconds": statistics.median(ours), "runs": ours}
        line = f"{module:<18}{row['seconds']:>10.2f}"
        if args.compare:
            row |= {"other_module": old_names.get(module, module), "other_seconds": statistics.median(theirs)}
            row["ratio"] = row["other_seconds"] / row["seconds"]
            line += f"{row['other_seconds']:>11.2f}{row['ratio']:>7.1f}x"
        rows.append(row)
        print(line)
    write_json(args.out, {"python": sys.executable, "compare": str(args.compare), "rows": rows})


if __name__ == "__main__":
    main()
