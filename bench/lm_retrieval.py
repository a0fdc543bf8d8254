"""The fine-tuned LM's ranking and rating, before and after the retrieval changes, and its fine-tuning recipes,
side by side from one run on reclab's own stored splits of the default dataset (every variant trained with
the same seed on the same splits; popularity for reference):

    python bench/lm_retrieval.py [--variants before after lora] [--splits temporal_s0 cold_items_s0 random_s0]

Variants (LMConfig overrides on the cpu profile):
- before: the retrieval loss as it was (every rated pair a positive, no logQ correction, cosine alone);
- after: the defaults (logQ correction, positives rated >= 4, masked false negatives, popularity mixed in where
  validation NDCG prefers it);
- mixed: after, plus 32 catalogue items per batch as mixed negatives;
- lora: after, with LoRA adapters (rank 8) instead of the frozen lower layers (the cpu-lora profile).

Prints NDCG@10 on leave-last-out, AUC on cold items, test MSE on the random split, fit seconds, training
samples/s, peak memory and trainable parameters; writes JSON (default bench/results/lm_retrieval.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import ROOT, prepared, write_json

VARIANTS = {
    "before": ("cpu", {"positive_threshold": 0.0, "logq_correction": False, "popularity_weights": (0.0,)}),
    "after": ("cpu", {}),
    "mixed": ("cpu", {"mixed_negatives": 32}),
    "lora": ("cpu-lora", {}),
}
METRICS = {"temporal_s0": ("ndcg", 10), "cold_items_s0": ("auc", 10), "random_s0": ("mse", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["before", "after"], choices=sorted(VARIANTS))
    parser.add_argument("--splits", nargs="+", default=list(METRICS), choices=sorted(METRICS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm_retrieval.json")
    args = parser.parse_args()

    from models.evaluation import EvalConfig
    from models.evaluation.harness import aggregate
    from models.experiment import fit_split
    from models.registry import TrainConfig
    from readers import DEFAULT_DATASET
    from tasks.split import load_split, split_protocol, write_training_reviews

    con = prepared(DEFAULT_DATASET)
    write_training_reviews(con)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for split_id in args.splits:
            data, protocol = load_split(con, split_id), split_protocol(con, split_id)
            metric, k = METRICS[split_id]
            for variant in ["popularity", *args.variants]:
                if variant == "popularity" and metric == "mse":
                    continue
                models = ("popularity",) if variant == "popularity" else ("lm_two_tower",)
                profile, overrides = VARIANTS.get(variant, ("cpu", {}))
                config = TrainConfig(models=models, lm_profile=profile, lm_overrides=overrides)
                start = time.perf_counter()
                print(f"[lm-retrieval] {split_id}: {variant} ...", flush=True)
                fit = fit_split(data, protocol, split_id, config, EvalConfig(), Path(work) / f"{split_id}_{variant}")
                seconds = time.perf_counter() - start
                results = aggregate(fit.per_user, EvalConfig(n_boot=200))
                row = results[(results["segment"] == "all") & (results["metric"] == metric) & (results["k"] == k)].iloc[
                    0
                ]
                model = fit.models[models[0]]
                lm = getattr(model, "metrics_", {})
                rows.append(
                    {
                        "split": split_id,
                        "variant": variant,
                        "metric": f"{metric}@{k}" if k else metric,
                        "value": round(float(row["value"]), 4),
                        "ci": [round(float(row["ci_low"]), 4), round(float(row["ci_high"]), 4)],
                        "fit_s": round(seconds, 1),
                        "samples_per_s": lm.get("train_samples_per_second"),
                        "peak_rss_gib": lm.get("peak_rss_gib"),
                        "recipe": lm.get("recipe"),
                        "popularity_weight": getattr(model, "popularity_weight_", None),
                    }
                )
                print(f"[lm-retrieval] {split_id}: {variant}: {json.dumps(rows[-1])}", flush=True)
    print(
        f"\n{'split':<15}{'variant':<12}{'metric':<9}{'value [95% CI]':>26}{'fit s':>8}{'samples/s':>11}{'RSS GiB':>9}  recipe"
    )
    for r in rows:
        value = f"{r['value']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]"
        rate = f"{r['samples_per_s']:.1f}" if r["samples_per_s"] else ""
        rss = f"{r['peak_rss_gib']:.2f}" if r["peak_rss_gib"] else ""
        print(
            f"{r['split']:<15}{r['variant']:<12}{r['metric']:<9}{value:>26}{r['fit_s']:>8}{rate:>11}{rss:>9}  {r['recipe'] or ''}"
        )
    write_json(args.out, rows)


if __name__ == "__main__":
    main()
