"""Paired comparisons a run did not pre-register, from its per-user values: any two models on one unit (a
split, or a k-fold protocol's folds pooled as the report pools them), with the report's own tests (paired t on
the per-user differences, bootstrap CI, Wilcoxon). Exploratory: no multiplicity correction.

    python bench/paired.py --workspace W --unit kfold_s0 --pair lm_sequential popularity --pair lm_sequential lm_two_tower
    python bench/paired.py --workspace W --unit temporal_s0 --metric mse --pair lm_sequential lm_two_tower

Read-only on the workspace; the JSON (bench/results/paired.json unless --json) holds the same rows.
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
    parser.add_argument("--json", type=Path, help="where the rows go (default: bench/results/paired.json)")
    args = parser.parse_args(argv)

    from models.evaluation.comparisons import paired_differences, pool_folds
    from tasks.store import connect

    db = args.workspace / "reclab.duckdb"
    if not db.exists():
        raise SystemExit(f"error: {db} does not exist (pass an evaluated workspace folder)")
    models = sorted({m for pair in args.pair for m in pair})
    with connect(db, read_only=True) as con:
        values = con.execute(
            "SELECT * EXCLUDE (run_id) FROM eval_per_user WHERE regexp_full_match(split_id, ?) AND metric = ? "
            f"AND model IN ({', '.join('?' * len(models))})",
            [f"{re.escape(args.unit)}(_f[0-9]+)?", args.metric, *models],
        ).df()
    if values.empty:
        raise SystemExit(f"error: no {args.metric} values of {models} on {args.unit} in {db}")
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
    print(f"{args.unit} of {args.workspace}, {label}, {values['split_id'].nunique()} split(s) pooled (exploratory)")
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
