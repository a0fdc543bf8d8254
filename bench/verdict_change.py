"""What the pre-registered comparisons change: the same stored per-user values judged by an earlier commit's
rules and by today's, side by side, per dataset, unit, task and contender.

    python bench/verdict_change.py WORKSPACE [WORKSPACE ...] [--before 9433f01] [--json OUT]

"Before" is that commit's ``models/evaluation/comparisons.py`` itself, loaded from git (not rewritten here):
the reference is the traditional model best on *test*, the t-test runs on per-user values, and Holm runs over
every comparison of a split's (metric, k, segment). "After" is the run's ``eval_differences`` (the reference
best on validation, the primary family Holm-corrected over the run, the data card's gates). Both read the same
fits: nothing is refitted. A k-fold unit has no "before" (its folds were judged one by one then). The JSON
(bench/results/verdict_change.json unless --json) holds the same rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402

TASKS = (("rating", "mse", 0), ("ranking", "ndcg", 10))


def rules_at(revision: str):
    """The comparisons module as it was at ``revision`` (git), imported under another name."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:models/evaluation/comparisons.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader(f"comparisons_{revision}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{revision}:models/evaluation/comparisons.py", "exec"), module.__dict__)  # noqa: S102
    return module


def before_rows(old, per_user, fits, config) -> dict[tuple[str, str, str], dict]:
    """(split, task, contender) -> the earlier rules' row, one split at a time as they judged."""
    from models import registry
    from models.evaluation.harness import aggregate
    from tasks.evaluate import fusion_components

    out = {}
    for split_id, values in per_user.groupby("split_id"):
        if split_id.startswith("kfold_"):
            continue
        values = values.drop(columns=["split_id"])
        here = [f for f in fits if f["split_id"] == split_id]
        silent = {f["model"] for f in here if old.ranks_nothing(f.get("extras"))}
        pairs = old.comparisons(
            aggregate(values, config),
            reference_candidates=registry.REFERENCE_CANDIDATES,
            fusion=registry.FUSION,
            components=fusion_components(here),
            no_ranking=silent,
        )
        table = old.paired_differences(
            values,
            pairs,
            n_boot=config.n_boot,
            seed=config.seed,
            alpha=config.alpha,
            min_users=config.min_segment_users,
        )
        for task, metric, _ in TASKS:
            rows = table[
                (table["metric"] == metric) & (table["segment"] == "all") & (table["kind"] == old.BEST_TRADITIONAL)
            ]
            for _, row in rows[rows["model"].isin([*registry.LANGUAGE, registry.FUSION])].iterrows():
                out[(split_id, task, row["model"])] = {
                    "reference": row["reference"],
                    "diff": float(row["diff"]),
                    "ci": [float(row["ci_low"]), float(row["ci_high"])],
                    "holm_p": float(row["t_p_holm"]),
                    "verdict": row["verdict"],
                }
    return out


def after_rows(diffs) -> dict[tuple[str, str, str], dict]:
    from reports.conclusions import primary

    out = {}
    for _, row in primary(diffs).iterrows():
        task = "ranking" if int(row["k"]) else "rating"
        out[(row["split_id"], task, row["model"])] = {
            "reference": row["reference"],
            "test_best": row["test_best"],
            "diff": float(row["diff"]),
            "ci": [float(row["ci_low"]), float(row["ci_high"])],
            "holm_p": float(row["t_p_adj"]),
            "mdd": float(row["mdd"]),
            "verdict": row["verdict"],
            "note": row["note"],
        }
    return out


def workspace_rows(workspace: Path, old) -> list[dict]:
    import duckdb

    from models.evaluation import EvalConfig
    from tasks import tables
    from tasks.evaluate import run_fits
    from tasks.report import latest_evaluated_run

    db = workspace / "reclab.duckdb"
    if not db.exists():
        raise SystemExit(f"error: {db} does not exist (pass a trained workspace folder)")
    run = latest_evaluated_run(db)
    with duckdb.connect(str(db), read_only=True) as con:
        per_user = con.execute(f"SELECT * EXCLUDE (run_id) FROM {tables.EVAL_PER_USER} WHERE run_id = ?", [run]).df()
        diffs = con.execute(f"SELECT * FROM {tables.EVAL_DIFFERENCES} WHERE run_id = ?", [run]).df()
        params = con.execute(f"SELECT parameters FROM {tables.RUNS} WHERE run_id = ?", [run]).fetchone()
        fits = run_fits(con, run)
    evaluation = json.loads(params[0]).get("evaluation", {}) if params else {}
    config = EvalConfig(**evaluation)
    before, after = before_rows(old, per_user, fits, config), after_rows(diffs)
    return [
        {
            "dataset": workspace.name,
            "unit": unit,
            "task": task,
            "contender": model,
            "before": before.get(key),
            "after": after.get(key),
        }
        for key in sorted(set(before) | set(after))
        for unit, task, model in [key]
    ]


def _cell(side: dict | None, after: bool) -> str:
    if side is None:
        return "—"
    text = (
        f"{side['reference']} {side['diff']:+.4f} [{side['ci'][0]:+.4f}, {side['ci'][1]:+.4f}] p={side['holm_p']:.2g}"
    )
    if after:
        if side["verdict"] == "not judged":
            return f"{side['reference']} {side['diff']:+.4f}: not judged ({str(side['note']).split(':')[0]})"
        text += f" det {side['mdd']:.4f}"
    return f"{text}: {side['verdict']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspaces", nargs="+", type=Path, help="trained workspace folders (each one's latest run)")
    parser.add_argument("--before", default="9433f01", help="the commit whose rules judge 'before' (default: 9433f01)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "verdict_change.json")
    args = parser.parse_args(argv)
    old = rules_at(args.before)
    rows = [row for workspace in args.workspaces for row in workspace_rows(workspace, old)]
    print(f"| dataset | unit | task | contender | before ({args.before}) | after |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['unit']} | {r['task']} | {r['contender']} | {_cell(r['before'], False)} | "
            f"{_cell(r['after'], True)} |"
        )
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
