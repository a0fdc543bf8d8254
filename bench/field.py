"""The field's models beside reclab's, side by side from one run on reclab's own stored splits of a dataset:
every model's test MSE on random seeds 0, 1, 2 and its mean, NDCG@10 on leave-last-out (seed 0), and fit
seconds, each model tuned on validation as in the flows (``models.experiment.fit_split_models``).

    python bench/field.py                     # the default dataset, every model but the LM and the fusion
    python bench/field.py --with-lm           # the LM and the fusion too (about 4 minutes per split on 2 cores)
    python bench/field.py --data PATH [--out bench/results/field.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import ROOT, prepared

SPLITS = ("random_s0", "random_s1", "random_s2", "temporal_s0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="dataset path (default: the embedded default dataset)")
    parser.add_argument("--with-lm", action="store_true", help="also fit the fine-tuned LM and the fusion")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "field.json")
    args = parser.parse_args()

    from models.evaluation.harness import EvalConfig, aggregate
    from models.evaluation.split import SplitConfig
    from models.experiment import fit_split_models
    from models.registry import LANGUAGE, MODELS, TrainConfig
    from readers import DEFAULT_DATASET
    from tasks.split import load_split, split_workspace, write_training_reviews

    models = [m for m in MODELS if args.with_lm or (m not in LANGUAGE and m != "fusion")]
    con = prepared(args.data or DEFAULT_DATASET, protocols=("random",))
    for seed in (1, 2):
        split_workspace(con, SplitConfig(seed=seed, protocols=("random",)))
    split_workspace(con, SplitConfig(seed=0, protocols=("temporal",)))
    write_training_reviews(con)
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for split_id in SPLITS:
            start = time.perf_counter()
            print(f"[field] {split_id}: fitting {len(models)} models ...", flush=True)
            fit = fit_split_models(
                load_split(con, split_id),
                split_id.rsplit("_", 1)[0],
                split_id,
                TrainConfig(models=tuple(models)),
                EvalConfig(),
                Path(work),
            )
            results = aggregate(fit.per_user, EvalConfig(n_boot=100))
            overall = results[results["segment"] == "all"].set_index(["model", "metric"])["value"]
            for f in fit.fits:
                row = rows.setdefault(f["model"], {"fit_seconds": {}})
                row["fit_seconds"][split_id] = round(f["fit_seconds"], 2)
                for metric in ("mse", "ndcg"):
                    if (f["model"], metric) in overall.index:
                        row.setdefault(metric, {})[split_id] = round(float(overall[(f["model"], metric)]), 4)
                if "library_" in f["params"]:
                    row["library"] = f["params"]["library_"]
            print(f"[field] {split_id}: done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n{'model':<16}{'MSE s0':>9}{'s1':>8}{'s2':>8}{'mean':>8}{'NDCG@10 LLO':>13}{'fit s (mean)':>14}  library")
    for model, row in rows.items():
        mse = row.get("mse", {})
        seeds = [mse.get(f"random_s{s}") for s in range(3)]
        mean = sum(seeds) / 3 if all(v is not None for v in seeds) else None
        row["mse_mean"] = None if mean is None else round(mean, 4)
        blank = " " * 8
        cells = "".join(f"{v:>8.4f}" if v is not None else blank for v in [*seeds, mean])
        ndcg = row.get("ndcg", {}).get("temporal_s0")
        ndcg_cell = f"{ndcg:>13.4f}" if ndcg is not None else " " * 13
        fit = sum(row["fit_seconds"].values()) / len(row["fit_seconds"])
        print(f"{model:<16} {cells}{ndcg_cell}{fit:>14.2f}  {row.get('library', 'reclab')}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
