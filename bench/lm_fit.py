"""The LM's fit on one split, variant against variant, side by side in one run: where its seconds go and
what each variant costs in accuracy.

    python bench/lm_fit.py [--split random_s0] [--variant NAME JSON ...] [--text-cache DIR] [--out PATH]

Each variant is the ``cpu`` profile plus the overrides given as JSON (``--variant nodrop '{"dropout": 0}'``);
with no ``--variant``, the profile alone. The default dataset is split with seed 0 (no Prefect, an in-memory
DuckDB); every variant fits the LM recommender (its own trainer process, as a run does) on the same split.
``--text-cache DIR`` shares one per-text frozen-state cache between the variants (the first variant fills it:
run a throw-away variant first to time the others warm). Printed per variant: the fit's wall and CPU
seconds, the trainer's phases (profiles, start, text states, training, encoding, readout), validation MSE of
the readout (what a choice between variants may look at) and test MSE and NDCG@10 (reported, never chosen
on). JSON to ``--out`` (default bench/results/lm_fit.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fit_variant(data: dict, protocol: str, overrides: dict, work: Path, text_cache: Path | None) -> dict:
    import numpy as np

    from models.evaluation import EvalConfig
    from models.evaluation.harness import per_user_values
    from models.lm.recommender import LMTwoTower

    model = LMTwoTower(work, "cpu", overrides, cold_validation=protocol == "cold_items", text_cache=text_cache)
    start, cpu = time.perf_counter(), children_cpu()
    model.fit(data["train"], data["validation"], items=data["items"], users=data["users"])
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    values, _ = per_user_values(
        model, "lm", data["train"], data["test"], EvalConfig(), cold_candidates=protocol == "cold_items"
    )
    metrics = model.metrics_
    test = data["test"]
    mse = float(np.mean((model.predict(test["user_id"], test["item_id"]) - test["rating"].to_numpy()) ** 2))
    rows = values[(values["metric"] == "ndcg") & (values["item_segment"] == "all")]
    ndcg = rows["num"].sum() / rows["den"].sum() if len(rows) else None
    return {
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "phases": metrics.get("phase_seconds", {}),
        "encode_seconds": metrics.get("encode_seconds"),
        "readout_seconds": metrics.get("readout_seconds"),
        "steps": metrics.get("global_step"),
        "samples_per_second": round(metrics.get("train_samples_per_second", 0.0), 1),
        "peak_rss_gib": round(metrics.get("peak_rss_gib", 0.0), 2),
        "validation_mse": round(metrics["readout_val_mse"], 4),
        "test_mse": round(mse, 4),
        "test_ndcg": round(float(ndcg), 4) if ndcg is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/lm_fit.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", default="random_s0", help="split id (random_s0, temporal_s0, cold_items_s0)")
    parser.add_argument(
        "--variant", nargs=2, action="append", metavar=("NAME", "JSON"), help="a named set of LMConfig overrides"
    )
    parser.add_argument("--text-cache", type=Path, help="a per-text frozen-state cache shared by the variants")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm_fit.json")
    args = parser.parse_args(argv)
    variants = [(name, json.loads(text)) for name, text in (args.variant or [("cpu", "{}")])]

    from bench.common import prepared
    from readers import DEFAULT_DATASET
    from tasks.split import load_split, split_protocol

    protocol_name = args.split.rsplit("_s", 1)[0]
    con = prepared(DEFAULT_DATASET, protocols=(protocol_name,))
    data, protocol = load_split(con, args.split), split_protocol(con, args.split)
    rows = []
    with tempfile.TemporaryDirectory(prefix="reclab-lm-fit-") as tmp:
        for name, overrides in variants:
            print(f"[bench] {name}: fitting the LM on {args.split} with {overrides or 'the cpu profile'}", flush=True)
            row = {"variant": name, "overrides": overrides}
            row.update(fit_variant(data, protocol, overrides, Path(tmp) / name, args.text_cache))
            rows.append(row)
            print(f"[bench] {name}: {json.dumps(row)}", flush=True)
    header = (
        f"{'variant':<14}{'wall s':>8}{'cpu s':>8}{'texts s':>8}{'train s':>8}{'encode s':>9}{'readout s':>10}"
        f"{'samples/s':>10}{'val MSE':>9}{'test MSE':>9}{'NDCG@10':>9}"
    )
    print(header)
    for row in rows:
        phases = row["phases"]
        print(
            f"{row['variant']:<14}{row['wall_seconds']:>8.1f}{row['cpu_seconds']:>8.1f}"
            f"{phases.get('text_states', 0.0):>8.1f}{phases.get('train', 0.0):>8.1f}"
            f"{row['encode_seconds'] or 0:>9.1f}{row['readout_seconds'] or 0:>10.1f}{row['samples_per_second']:>10.1f}"
            f"{row['validation_mse']:>9.4f}{row['test_mse']:>9.4f}{row['test_ndcg'] or float('nan'):>9.4f}"
        )
    write_json(args.out, {"split": args.split, "variants": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
