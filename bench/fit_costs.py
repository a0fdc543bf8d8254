"""Where a run's time goes: fit seconds (and peak memory) per model and split, from workspaces' ``model_fits``,
side by side, e.g. the same dataset before and after a change.

    python bench/fit_costs.py workspace/movielens-latest-small                  # one workspace's latest run
    python bench/fit_costs.py BEFORE AFTER --labels before after --json /tmp/costs.json

Each workspace's latest evaluated run is read (``--runs`` picks others). The table lists every model of
every split with its fit seconds in each workspace, the last column over the first, and the split totals;
the JSON (bench/results/fit_costs.json unless --json) holds the same rows with peak memory. Read-only: nothing is refitted. Seconds from different runs compare only as far as
the machine was equally loaded during both (say so when reporting them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402


def fits(workspace: Path, run: str | None) -> tuple[str, dict]:
    """(run id, {(split, model): (fit seconds, peak memory GiB or None, CPU seconds or None)}) of a workspace's
    run (its latest evaluated one when ``run`` is None: every train run records its fits and evaluates them).
    CPU seconds are recorded by runs since the LM trains beside the other fits."""
    import duckdb

    from readers.errors import InputError
    from tasks import tables
    from tasks.report import latest_evaluated_run

    db = workspace / "reclab.duckdb"
    if not db.exists():
        raise SystemExit(f"error: {db} does not exist (pass a prepared and trained workspace folder)")
    try:
        run = run or latest_evaluated_run(db)
    except InputError as err:
        raise SystemExit(f"error: {err}") from None
    with duckdb.connect(str(db), read_only=True) as con:
        frame = con.execute(
            "SELECT split_id, model, fit_seconds, TRY_CAST(json_extract(extras, '$.peak_memory_gib') AS DOUBLE) "
            "AS peak, TRY_CAST(json_extract(extras, '$.cpu_seconds') AS DOUBLE) AS cpu "
            f"FROM {tables.MODEL_FITS} WHERE run_id = ?",
            [run],
        ).df()
    cpu = frame["cpu"].astype(object).where(frame["cpu"].notna(), None)
    return run, {
        (r.split_id, r.model): (float(r.fit_seconds), r.peak, c) for r, c in zip(frame.itertuples(), cpu, strict=True)
    }


def table(columns: dict[str, dict]) -> list[dict]:
    """One row per (split, model) seen in any column, then one total per split."""
    labels = list(columns)
    keys = sorted({key for fitted in columns.values() for key in fitted})
    rows = []
    for split, model in keys:
        row = {"split": split, "model": model}
        for label in labels:
            seconds, peak, cpu = columns[label].get((split, model), (None, None, None))
            row[f"{label}_seconds"], row[f"{label}_peak_gib"], row[f"{label}_cpu_seconds"] = seconds, peak, cpu
        rows.append(row)
    for split in sorted({split for split, _ in keys}):
        total = {"split": split, "model": "(total)"}
        for label in labels:
            values = [seconds for (s, _), (seconds, _, _) in columns[label].items() if s == split]
            cpu = [c for (s, _), (_, _, c) in columns[label].items() if s == split and c is not None]
            total[f"{label}_seconds"] = sum(values) if values else None
            total[f"{label}_peak_gib"] = None
            total[f"{label}_cpu_seconds"] = sum(cpu) if cpu else None
        rows.append(total)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/fit_costs.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workspaces", nargs="+", type=Path, help="workspace folders (each holds reclab.duckdb)")
    parser.add_argument("--labels", nargs="+", help="a column name per workspace (default: their folder names)")
    parser.add_argument("--runs", nargs="+", help="a run id per workspace (default: each one's latest fitted run)")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "fit_costs.json",
        help="where the rows go (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    labels = args.labels or [str(path) for path in args.workspaces]
    runs = args.runs or [None] * len(args.workspaces)
    if len(labels) != len(args.workspaces) or len(runs) != len(args.workspaces):
        parser.error("--labels and --runs need one value per workspace")
    columns, used = {}, {}
    for label, workspace, run in zip(labels, args.workspaces, runs, strict=True):
        used[label], columns[label] = fits(workspace, run)
    rows = table(columns)
    head = ["split", "model", *(f"{label} s" for label in labels), *(f"{label} CPU s" for label in labels)]
    head += [f"{labels[-1]}/{labels[0]}"] * (len(labels) > 1)
    print(" | ".join(head))
    for row in rows:
        cells = [row["split"], row["model"]]
        cells += ["-" if row[f"{x}_seconds"] is None else f"{row[f'{x}_seconds']:.1f}" for x in labels]
        cells += ["-" if row[f"{x}_cpu_seconds"] is None else f"{row[f'{x}_cpu_seconds']:.1f}" for x in labels]
        if len(labels) > 1:
            first, last = row[f"{labels[0]}_seconds"], row[f"{labels[-1]}_seconds"]
            cells.append(f"{last / first:.2f}" if first and last is not None else "-")
        print(" | ".join(cells))
    write_json(args.json, {"runs": used, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
