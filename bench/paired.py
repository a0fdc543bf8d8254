"""Paired comparisons a run did not pre-register, from its per-user values: any two models on one unit (a
split, or a k-fold protocol's folds pooled as the report pools them), with the report's own tests (paired t on
the per-user differences, bootstrap CI, Wilcoxon). Exploratory: no multiplicity correction.

    python bench/paired.py --workspace W --unit kfold_s0 --pair lm_sequential popularity --pair lm_sequential lm_two_tower
    python bench/paired.py --workspace W --unit temporal_s0 --metric mse --pair lm_sequential lm_two_tower
    python bench/paired.py --workspace W --unit temporal_s0 --pair lm_two_tower lm_two_tower --run R1 --reference-run R2

Each run's own values: the workspace's latest evaluated run unless ``--run`` names one; ``--reference-run``
takes the references' values from another run of the same workspace (a model against itself under other
settings, on the same split and users). Read-only on the workspace; the JSON (bench/results/paired.json unless --json) holds the same rows.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="a workspace a run has evaluated")
    parser.add_argument("--unit", required=True, help="a split id, or a k-fold unit (kfold_s0: its folds pooled)")
    parser.add_argument("--metric", choices=("ndcg", "mse"), default="ndcg", help="default: ndcg (at the run's K)")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("MODEL", "REFERENCE"), required=True)
    parser.add_argument("--run", help="the run whose values are compared (default: the latest evaluated one)")
    parser.add_argument("--reference-run", help="the run the references' values come from (default: --run)")
    parser.add_argument("--json", type=Path, help="where the rows go (default: bench/results/paired.json)")
    args = parser.parse_args(argv)

    import pandas as pd

    from models.evaluation.comparisons import paired_differences, pool_folds
    from tasks.store import connect

    db = args.workspace / "reclab.duckdb"
    if not db.exists():
        raise SystemExit(f"error: {db} does not exist (pass an evaluated workspace folder)")
    from tasks.report import latest_evaluated_run

    def read(con, run: str, models: list[str]) -> pd.DataFrame:
        return con.execute(
            "SELECT * EXCLUDE (run_id) FROM eval_per_user WHERE run_id = ? AND regexp_full_match(split_id, ?) "
            f"AND metric = ? AND model IN ({', '.join('?' * len(models))})",
            [run, f"{re.escape(args.unit)}(_f[0-9]+)?", args.metric, *models],
        ).df()

    with connect(db, read_only=True) as con:
        run = args.run or latest_evaluated_run(db)
        reference_run = args.reference_run or run
        if reference_run == run:
            values = read(con, run, sorted({m for pair in args.pair for m in pair}))
        else:  # the references from the other run, named apart: a model may be compared with itself
            mine = read(con, run, sorted({m for m, _ in args.pair}))
            theirs = read(con, reference_run, sorted({r for _, r in args.pair}))
            theirs["model"] = theirs["model"] + f"@{reference_run[:8]}"
            values = pd.concat([mine, theirs], ignore_index=True)
            args.pair = [(m, f"{r}@{reference_run[:8]}") for m, r in args.pair]
    if values.empty:
        raise SystemExit(f"error: no {args.metric} values of {args.pair} on {args.unit} in run {run} of {db}")
    k = int(values["k"].max())
    pooled = pool_folds(values)
    pairs = [(args.metric, k, model, reference, "exploratory") for model, reference in args.pair]
    table = paired_differences(pooled, pairs)
    table = table[table["segment"] == "all"]
    columns = [
        "model",
        "reference",
        "n_users",
        "value",
        "reference_value",
        "diff",
        "ci_low",
        "ci_high",
        "t_p",
        "wilcoxon_p",
    ]
    rows = table[columns].to_dict("records")
    label = f"{args.metric.upper()}@{k}" if k else args.metric.upper()
    print(
        f"{args.unit} of {args.workspace} (run {run}), {label}, {values['split_id'].nunique()} split(s) pooled "
        "(exploratory)"
    )
    print(f"{'model':<20} {'reference':<20} {'users':>6} {'value':>8} {'ref':>8} {'diff [95% CI]':>28} {'t p':>9}")
    for r in rows:
        ci = f"{r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        print(
            f"{r['model']:<20} {r['reference']:<20} {r['n_users']:>6} {r['value']:>8.4f} {r['reference_value']:>8.4f} "
            f"{ci:>28} {r['t_p']:>9.2g}"
        )
    write_json(
        args.json or ROOT / "bench" / "results" / "paired.json", {"unit": args.unit, "metric": label, "rows": rows}
    )


if __name__ == "__main__":
    main()
