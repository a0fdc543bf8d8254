"""What each stage costs as the data grows: MovieLens latest-small enlarged F times (bench/synth.py keeps its
per-user and per-item statistics), stage by stage, each in its own process (its peak memory its own).

    python bench/stage_costs.py --data path/to/ml-latest-small                 # 1x, 4x, 16x: 100K, 400K, 1.6M
    python bench/stage_costs.py --data path/to/ml-latest-small --factors 1 4 --models bias_als popularity

Stages: ``ingest`` (raw tables, canonical tables), ``validate`` (the Great Expectations suites), ``split`` (the
default protocols: 5-fold, leave-last-out, cold items), ``datacard``, then on the leave-last-out split one stage
per model of ``--models`` (its fit, tuned on validation as in a run, the refit on training + validation, and its
per-user test values: ``models.experiment.fit_split`` with that model alone), and ``statistics`` (the
bootstrap CIs and all-pairs tests of the evaluation stage, then the judge's paired differences, over every
model measured). Printed as a table (seconds, peak resident memory, the growth from one size to the next: 4.0
at 4x the data is linear) and written to bench/results/stage_costs.json (a rerun of some stages keeps the
others).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, stage_in_process  # noqa: E402

DATA_STAGES = ("ingest", "validate", "split", "datacard")
MODELS = ("global_mean", "bias_als", "popularity", "svd", "implicit_als", "bpr", "lightfm_cf")
SPLIT = "temporal_s0"


def _spec(data_dir: Path):
    from readers import resolve_dataset

    return resolve_dataset(data_dir)


def stage(name: str, data_dir: Path, work: Path) -> dict:
    """Run one stage on the workspace database in ``work`` (the stages before it already run)."""
    import duckdb

    db, out = work / "reclab.duckdb", {}
    start = time.perf_counter()
    if name == "ingest":
        from tasks import IngestConfig
        from tasks.ingest import build_canonical_tables, load_raw_tables

        db.unlink(missing_ok=True)
        with duckdb.connect(str(db)) as con:
            load_raw_tables(con, _spec(data_dir))
            build_canonical_tables(con, _spec(data_dir), IngestConfig())
            out["interactions"] = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
    elif name == "validate":
        from data_checks import ValidationConfig
        from tasks.validate import validate_workspace

        with duckdb.connect(str(db)) as con:
            validate_workspace(con, _spec(data_dir), ValidationConfig(data_docs=False), "bench")
    elif name == "split":
        from models.evaluation.split import SplitConfig
        from tasks.split import split_workspace, write_training_reviews

        with duckdb.connect(str(db)) as con:
            out["splits"] = len(split_workspace(con, SplitConfig(seed=0)))
            write_training_reviews(con)
    elif name == "datacard":
        from data_checks import DataCardConfig
        from tasks.datacard import card_for_workspace

        with duckdb.connect(str(db), read_only=True) as con:
            out["warnings"] = len(card_for_workspace(con, _spec(data_dir), DataCardConfig())["warnings"])
    elif name == "statistics":
        import pandas as pd

        from models.evaluation import EvalConfig
        from models.evaluation.harness import aggregate, significance
        from tasks.evaluate import judge_evaluations

        parts = sorted((work / "per_user").glob("*.parquet"))
        per_user = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        fits = [json.loads(p.with_suffix(".json").read_text()) for p in parts]
        config = EvalConfig()
        begin = time.perf_counter()
        aggregate(per_user, config)
        out["cis_s"] = time.perf_counter() - begin
        begin = time.perf_counter()
        significance(per_user)
        out["tests_s"] = time.perf_counter() - begin
        begin = time.perf_counter()
        judged, _ = judge_evaluations(per_user.assign(split_id=SPLIT), fits, None, config)
        out["judge_s"] = time.perf_counter() - begin
        out["models"], out["rows"], out["comparisons"] = len(parts), len(per_user), len(judged)
    else:  # a model
        from models.evaluation import EvalConfig
        from models.experiment import fit_split
        from models.registry import TrainConfig
        from tasks.split import load_split, split_protocol

        with duckdb.connect(str(db), read_only=True) as con:
            data, protocol = load_split(con, SPLIT), split_protocol(con, SPLIT)
        loaded = time.perf_counter()
        config = TrainConfig(models=(name,), lightfm_trials=0)
        fitted = fit_split(data, protocol, SPLIT, config, EvalConfig(), work / "runs")
        fit = fitted.fits[0]
        out["load_s"] = loaded - start
        if fit["extras"].get("skipped"):  # too costly for data this large: its reason, no values
            out["skipped"] = fit["extras"]["skipped"]
            out["seconds"] = time.perf_counter() - loaded
            out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            return out
        out["fit_s"], out["eval_s"] = fit["fit_seconds"], fit["eval_seconds"]
        out["training"] = len(data["train"])
        (work / "per_user").mkdir(exist_ok=True)
        fitted.per_user.to_parquet(work / "per_user" / f"{name}.parquet", index=False)
        (work / "per_user" / f"{name}.json").write_text(json.dumps({**fit, "split_id": SPLIT}, default=str))
        start = loaded  # the stage's seconds: the fit and its evaluation, not reading the split
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a MovieLens folder (ratings.csv, movies.csv); required")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16], help="sizes (default 1 4 16)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help=f"models measured (default: {MODELS})")
    parser.add_argument("--stages", nargs="+", help="only these stages (default: every one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reclab-stage-costs"), help="data and workspaces")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage, print JSON
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print("RESULT " + json.dumps(stage(args.stage, args.data_dir, args.work)))
        return 0
    if args.data is None:
        parser.error("--data (a MovieLens folder: ratings.csv, movies.csv) is required")
    from synth import enlarge_movielens

    stages = args.stages or [*DATA_STAGES, *args.models, "statistics"]
    out = ROOT / "bench" / "results" / "stage_costs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    stored = json.loads(out.read_text()) if out.exists() else {}
    for factor in args.factors:
        work = args.work / f"x{factor}"
        data_dir = work / "data"
        if not (data_dir / "ratings.csv").exists():
            print(f"x{factor}: {enlarge_movielens(args.data, data_dir, factor)}", flush=True)
        for name in stages:
            cmd = [sys.executable, __file__, "--stage", name, "--data-dir", str(data_dir), "--work", str(work)]
            stored.setdefault(str(factor), {})[name] = stage_in_process(cmd, f"{name} at x{factor}", cwd=ROOT)
            print(f"x{factor} {name}: {stored[str(factor)][name]}", flush=True)
            out.write_text(json.dumps(stored, indent=2))
    print(table(stored, args.factors, stages))
    return 0


def table(stored: dict, factors: list[int], stages: list[str]) -> str:
    """Seconds and peak MiB per stage and size, and each size's time over the previous size's."""
    head = f"{'stage':<14}" + "".join(f"{'x' + str(f) + ' s':>10}{'MiB':>7}" for f in factors)
    head += "".join(f"{'x' + str(b) + '/x' + str(a):>10}" for a, b in zip(factors, factors[1:], strict=False))
    rows = [head]
    for name in stages:
        cells = [stored.get(str(f), {}).get(name) for f in factors]
        line = f"{name:<14}" + "".join(
            f"{c['seconds']:>10.1f}{c['peak_rss_mib']:>7.0f}" if c and not c.get("skipped") else f"{'-':>10}{'-':>7}"
            for c in cells
        )
        for a, b in zip(cells, cells[1:], strict=False):
            both = a and b and not a.get("skipped") and not b.get("skipped")
            line += f"{b['seconds'] / max(a['seconds'], 1e-3):>10.2f}" if both else f"{'-':>10}"
        rows.append(line)
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
