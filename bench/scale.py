"""How cost grows with data: the default dataset enlarged 1x, 10x, 100x (bench/synth.py), measured stage by stage.

    python bench/scale.py                       # factors 1 10 100 (100x: about 1M interactions)
    python bench/scale.py --factors 1 10 --sample 1000

Each stage runs in its own process (so its peak memory is its own) on the same machine, one after another:
- prepare: ingest (streamed, 50k records per insert) -> canonical tables -> GX validation -> random and
  temporal splits -> the training-review table, into a DuckDB file;
- lightfm: the LightFM hybrid (collaborative + content) fitted on the random split's training fold, no
  hyperparameter trials, 10 epochs with validation checks every 5;
- evaluate: that model's test RMSE (every pair) and full-catalogue ranking metrics for a seeded sample of
  ``--ranking-users`` test users (ranking every user costs users x items: quadratic in size);
- lm_profiles: every user's and item's profile text built and tokenised (64 tokens);
- lm_encode: the pretrained MiniLM encoding ``--sample`` profiles (forward only, batch 64): inference
  costs the same per profile at every size, so the whole-catalogue time is that rate x the profile count
  (printed as a projection, not a measurement).
Printed as a table (seconds, peak RSS, cost per 1k interactions relative to 1x) and written to
bench/results/scale.json.
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

STAGES = ("prepare", "lightfm", "evaluate", "lm_profiles", "lm_encode")


def _split_data(db: Path):
    from tasks.split import load_split
    from tasks.store import connect

    with connect(db, read_only=True) as con:
        return load_split(con, "random_s0")


def _fit_lightfm(data):
    from models.recommenders.lightfm_hybrid import LightFMHybrid

    model = LightFMHybrid(content=True, search_trials=0, max_epochs=10, eval_every=5, seed=0)
    return model.fit(data["train"], data["validation"], items=data["items"], users=data["users"])


def stage(name: str, data_dir: Path, work: Path, sample: int, ranking_users: int | None) -> dict:
    """Run one stage; returns its figures (wall seconds measured around the stage's work only)."""
    db = work / "reclab.duckdb"
    out: dict = {}
    if name == "prepare":
        from common import prepared

        db.unlink(missing_ok=True)
        start = time.perf_counter()
        con = prepared(data_dir, db, protocols=("random", "temporal"), validate=True)
        from tasks.split import write_training_reviews

        write_training_reviews(con)
        out["interactions"] = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
        con.close()
        out["seconds"] = time.perf_counter() - start
        out["db_mib"] = db.stat().st_size / 2**20
    elif name in ("lightfm", "evaluate"):
        data = _split_data(db)
        start = time.perf_counter()
        model = _fit_lightfm(data)
        fitted = time.perf_counter()
        if name == "lightfm":
            out["seconds"] = fitted - start
            out["epochs"] = model.epochs_
        else:
            from models.evaluation import EvalConfig
            from models.evaluation.harness import aggregate, per_user_values

            config = EvalConfig(n_boot=100, ranking_users=ranking_users)
            values, _ = per_user_values(model, "lightfm_hybrid", data["train"], data["test"], config)
            table = aggregate(values, config)
            out["seconds"] = time.perf_counter() - fitted
            overall = table[table["segment"] == "all"].set_index("metric")["value"]
            out["test_users"] = int(data["test"]["user_id"].nunique())
            out["ndcg@10"] = float(overall.get("ndcg", float("nan")))
    else:
        import numpy as np
        import torch
        from transformers import AutoTokenizer

        from models.lm.data import ProfileTokens
        from models.lm.network import DEFAULT_ENCODER, build_encoder, mean_pool, resolve_encoder
        from models.lm.profiles import FULL, build_profiles

        data = _split_data(db)
        start = time.perf_counter()
        profiles = build_profiles(data["train"], data["items"], max_reviews=8, review_chars=300, rating_history=10)
        tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(DEFAULT_ENCODER))
        keys = [("user", u, FULL) for u in data["train"]["user_id"].astype(str).unique()]
        keys += [("item", i, FULL) for i in data["items"]["item_id"].astype(str)]
        tokens = ProfileTokens.build(profiles, keys, tokenizer, 64)
        built = time.perf_counter()
        out["profiles"] = len(tokens.ids)
        if name == "lm_profiles":
            out["seconds"] = built - start
        else:
            torch.set_num_threads(2)
            encoder = build_encoder(DEFAULT_ENCODER).eval()
            rows = np.random.default_rng(0).choice(len(tokens.ids), min(sample, len(tokens.ids)), replace=False)
            rows = sorted(rows.tolist(), key=lambda r: len(tokens.ids[r]))  # length-bucketed batches
            begin = time.perf_counter()
            with torch.inference_mode():
                for n in range(0, len(rows), 64):
                    ids, mask = tokens.pad(rows[n : n + 64])
                    mean_pool(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
            elapsed = time.perf_counter() - begin
            out["sampled"] = len(rows)
            out["profiles_per_s"] = len(rows) / elapsed
            out["seconds"] = elapsed
            out["projected_all_s"] = len(tokens.ids) / out["profiles_per_s"]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--sample", type=int, default=2000, help="profiles the LM encodes per size (default 2000)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "scale", help="data and workspaces")
    parser.add_argument(
        "--ranking-users",
        type=int,
        default=5000,
        help="test users ranked over the full catalogue (seeded sample; 0: all). Default 5000",
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal: run one stage, print JSON
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(
            "RESULT " + json.dumps(stage(args.stage, args.data_dir, args.work, args.sample, args.ranking_users or None))
        )
        return 0
    from synth import DEFAULT as source
    from synth import enlarge

    results: dict[str, dict] = {}
    for factor in args.factors:
        data_dir = args.work / f"x{factor}" / "data"
        if not (data_dir / "reviews.json.gz").exists():
            print(f"x{factor}: {enlarge(source, data_dir, factor)}", flush=True)
        work = args.work / f"x{factor}"
        for name in args.stages:
            cmd = [
                sys.executable,
                __file__,
                "--stage",
                name,
                "--data-dir",
                str(data_dir),
                "--work",
                str(work),
                "--sample",
                str(args.sample),
                "--ranking-users",
                str(args.ranking_users),
            ]
            results.setdefault(str(factor), {})[name] = stage_in_process(cmd, f"{name} at x{factor}")
            print(f"x{factor} {name}: {results[str(factor)][name]}", flush=True)
    out = ROOT / "bench" / "results" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    stored = json.loads(out.read_text()) if out.exists() else {}
    for factor, stages in results.items():  # a rerun of some stages updates those, keeps the others
        stored.setdefault(factor, {}).update(stages)
    out.write_text(json.dumps(stored, indent=2))
    results = {factor: stored[factor] for factor in map(str, args.factors)}
    base = results.get(str(args.factors[0]), {})
    n0 = base.get("prepare", {}).get("interactions")
    print(
        f"\n{'stage':<12}{'size':>6}{'interactions':>14}{'seconds':>10}{'peak MiB':>10}{'s per 1k':>10}{'vs x' + str(args.factors[0]):>8}"
    )
    for name in args.stages:
        for factor in args.factors:
            r = results[str(factor)][name]
            n = results[str(factor)].get("prepare", {}).get("interactions") or n0 * factor
            per_k = r["seconds"] / n * 1000 if name != "lm_encode" else r["seconds"] / r["sampled"] * 1000
            base_r = base[name]
            base_per_k = (
                base_r["seconds"] / n0 * 1000 if name != "lm_encode" else base_r["seconds"] / base_r["sampled"] * 1000
            )
            print(
                f"{name:<12}{'x' + str(factor):>6}{n:>14,}{r['seconds']:>10.1f}{r['peak_rss_mib']:>10.0f}"
                f"{per_k:>10.3f}{per_k / base_per_k:>8.2f}"
            )
    print(f"\n(lm_encode: s per 1k profiles encoded; projected whole-catalogue seconds in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
