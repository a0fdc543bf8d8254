"""One metric of every model, with its 95% CI, from workspaces side by side: e.g. the same dataset and command
before and after a change of protocol.

    python bench/metrics_side_by_side.py BEFORE AFTER --labels before after --split temporal_s0
    python bench/metrics_side_by_side.py W --metric rmse --k 0 --split kfold_s0_f1

Each workspace's latest evaluated run is read (segment ``all``); the last column is the last workspace's value
over the first's. The JSON (bench/results/metrics_side_by_side.json unless --json) holds the same rows.
Read-only: nothing is refitted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402


def values(workspace: Path, metric: str, k: int, split: str | None) -> tuple[str, dict]:
    """(run id, {(split, model): (value, CI low, CI high)}) of a workspace's latest evaluated run."""
    import duckdb

    from readers.errors import InputError
    from tasks import tables
    from tasks.report import latest_evaluated_run

    db = workspace / "reclab.duckdb"
    if not db.exists():
        raise SystemExit(f"error: {db} does not exist (pass a prepared and trained workspace folder)")
    try:
        run = latest_evaluated_run(db)
    except InputError as err:
        raise SystemExit(f"error: {err}") from None
    query = (
        f"SELECT split_id, model, value, ci_low, ci_high FROM {tables.EVAL_RESULTS} "
        "WHERE run_id = ? AND metric = ? AND k = ? AND segment = 'all'"
    )
    params = [run, metric, k]
    if split:
        query += " AND split_id = ?"
        params.append(split)
    with duckdb.connect(str(db), read_only=True) as con:
        frame = con.execute(query, params).df()
    return run, {(r.split_id, r.model): (r.value, r.ci_low, r.ci_high) for r in frame.itertuples()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("workspaces", nargs="+", type=Path, help="trained workspace folders")
    parser.add_argument("--labels", nargs="+", help="one column label per workspace (default: the folder names)")
    parser.add_argument("--metric", default="ndcg", help="eval_results' metric (default: ndcg)")
    parser.add_argument("--k", type=int, default=10, help="its cut-off (0 for rating metrics; default: 10)")
    parser.add_argument("--split", help="one split id (default: every split)")
    parser.add_argument(
        "--json", type=Path, help="where the rows go (default: bench/results/metrics_side_by_side.json)"
    )
    args = parser.parse_args(argv)
    labels = args.labels or [w.name for w in args.workspaces]
    if len(labels) != len(args.workspaces):
        raise SystemExit("error: give one label per workspace")
    columns, runs = {}, {}
    for label, workspace in zip(labels, args.workspaces, strict=True):
        runs[label], columns[label] = values(workspace, args.metric, args.k, args.split)
    rows = []
    for split, model in sorted({key for column in columns.values() for key in column}):
        row = {"split": split, "model": model}
        for label in labels:
            value = columns[label].get((split, model))
            row[label] = None if value is None else {"value": value[0], "ci": [value[1], value[2]]}
        first, last = row[labels[0]], row[labels[-1]]
        row["ratio"] = last["value"] / first["value"] if first and last and first["value"] else None
        rows.append(row)
    name = f"{args.metric}@{args.k}" if args.k else args.metric
    print(f"{'split':<16} {'model':<16} " + " ".join(f"{label + ' ' + name:>28}" for label in labels) + "   ratio")
    for row in rows:
        cells = [
            f"{cell['value']:.4f} [{cell['ci'][0]:.4f}, {cell['ci'][1]:.4f}]" if cell else "—"
            for cell in map(row.get, labels)
        ]
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "—"
        print(f"{row['split']:<16} {row['model']:<16} " + " ".join(f"{c:>28}" for c in cells) + f"   {ratio}")
    write_json(args.json or ROOT / "bench" / "results" / "metrics_side_by_side.json", {"runs": runs, "rows": rows})


if __name__ == "__main__":
    main()
