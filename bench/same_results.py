"""Do two runs give the same figures? Compare their evaluation tables row by row, exactly.

    python bench/same_results.py WORKSPACE_A WORKSPACE_B            # each workspace's latest evaluated run
    python bench/same_results.py A B --runs RUN_A RUN_B --tables eval_results eval_tests

For a change that must not move any figure (a refactor): run ``python -m flows.full`` before and after the
change, each on a fresh workspace and Prefect home, then compare. Rows are matched on every column but
``run_id`` and compared for exact equality (floats bit for bit); the script prints a table (rows, equal,
differing, only in A, only in B, largest difference per table), writes JSON, and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402

TABLES = ("eval_results", "eval_tests", "eval_differences", "eval_per_user", "lm_predictions")


def latest_run(con) -> str:
    (run,) = con.execute(
        "SELECT e.run_id FROM (SELECT DISTINCT run_id FROM eval_results) e "
        "LEFT JOIN runs r USING (run_id) ORDER BY r.started_at DESC NULLS LAST LIMIT 1"
    ).fetchone()
    return run


def rows(con, table: str, run: str):
    import pandas as pd

    frame = con.execute(f"SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = ?", [run]).df()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True) if len(frame) else pd.DataFrame()


def compare(a, b) -> dict:
    """Counts of equal and differing rows; rows are keyed by their non-float columns."""
    import numpy as np

    if a.empty and b.empty:
        return {"rows_a": 0, "rows_b": 0, "equal": 0, "differing": 0, "only_a": 0, "only_b": 0, "max_abs_diff": 0.0}
    numbers = [c for c in a.columns if a[c].dtype.kind == "f"]
    keys = [c for c in a.columns if c not in numbers]
    merged = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    same = np.ones(len(both), dtype=bool)
    largest = 0.0
    for column in numbers:
        x, y = both[f"{column}_a"].to_numpy(), both[f"{column}_b"].to_numpy()
        equal = (x == y) | (np.isnan(x) & np.isnan(y))
        same &= equal
        if (~equal).any():
            largest = max(largest, float(np.nanmax(np.abs(x - y)[~equal])))
    return {
        "rows_a": len(a),
        "rows_b": len(b),
        "equal": int(same.sum()),
        "differing": int((~same).sum()),
        "only_a": int((merged["_merge"] == "left_only").sum()),
        "only_b": int((merged["_merge"] == "right_only").sum()),
        "max_abs_diff": largest,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspaces", nargs=2, type=Path, help="the two workspace folders (or reclab.duckdb files)")
    parser.add_argument("--runs", nargs=2, metavar=("RUN_A", "RUN_B"), help="run ids (default: each latest)")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), help=f"tables to compare (default: {TABLES})")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "same_results.json")
    args = parser.parse_args()
    import duckdb

    dbs = [w / "reclab.duckdb" if w.is_dir() else w for w in args.workspaces]
    cons = [duckdb.connect(str(db), read_only=True) for db in dbs]
    runs = args.runs or [latest_run(con) for con in cons]
    report = {"databases": [str(db) for db in dbs], "runs": runs, "tables": {}}
    print(f"A: {dbs[0]} run {runs[0]}\nB: {dbs[1]} run {runs[1]}\n")
    print(
        f"{'table':<16}{'rows A':>11}{'rows B':>11}{'equal':>11}{'differ':>8}{'only A':>8}{'only B':>8}{'max |diff|':>12}"
    )
    for table in args.tables:
        result = compare(rows(cons[0], table, runs[0]), rows(cons[1], table, runs[1]))
        report["tables"][table] = result
        print(
            f"{table:<16}{result['rows_a']:>11,}{result['rows_b']:>11,}{result['equal']:>11,}{result['differing']:>8,}"
            f"{result['only_a']:>8,}{result['only_b']:>8,}{result['max_abs_diff']:>12.3g}"
        )
    identical = all(r["differing"] == r["only_a"] == r["only_b"] == 0 for r in report["tables"].values())
    report["identical"] = identical
    print("\nidentical" if identical else "\nDIFFERENT")
    write_json(args.out, report)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
