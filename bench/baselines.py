"""Benchmark the traditional models: every model's test metrics with 95% CIs per split, the bias baseline
against Surprise's tuned BaselineOnly on the same split, and LightFM hybrid vs identity-only on cold items.

    python bench/baselines.py [--datasets default movielens] [--out bench/results/baselines.json]

Datasets are prepared (ingest, validate, split with seed 0) into bench/results/workspaces/ first.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import prepared, write_json  # noqa: E402
from readers import DEFAULT_DATASET  # noqa: E402

DATASETS = {"default": DEFAULT_DATASET, "movielens": ROOT.parent / "shared" / "data" / "movielens-latest-small"}
HEADLINE = {
    "random": ("rmse", "mse", "mae"),
    "temporal": ("ndcg", "recall", "auc", "diversity", "novelty"),
    "cold_items": ("ndcg", "recall", "auc"),
}


def surprise_tuned_mse(data) -> tuple[float, tuple[float, float]]:
    """Surprise BaselineOnly (ALS), reg_u/reg_i chosen on validation RMSE over our BiasALS grid; test MSE."""
    import surprise

    from models.recommenders.baselines import BiasALS

    train, valid, test = data["train"], data["validation"], data["test"]
    reader = surprise.Reader(rating_scale=(train["rating"].min(), train["rating"].max()))
    trainset = surprise.Dataset.load_from_df(train[["user_id", "item_id", "rating"]], reader).build_full_trainset()
    best = None
    for reg_u, reg_i in itertools.product(BiasALS.PENALTIES, BiasALS.PENALTIES):
        algo = surprise.BaselineOnly(bsl_options={"method": "als", "reg_u": reg_u, "reg_i": reg_i}, verbose=False)
        algo.fit(trainset)
        pred = np.array([algo.predict(u, i).est for u, i in zip(valid["user_id"], valid["item_id"], strict=True)])
        rmse = float(np.sqrt(np.mean((pred - valid["rating"].to_numpy()) ** 2)))
        if best is None or rmse < best[0]:
            best = (rmse, (reg_u, reg_i), algo)
    pred = np.array([best[2].predict(u, i).est for u, i in zip(test["user_id"], test["item_id"], strict=True)])
    return float(np.mean((pred - test["rating"].to_numpy()) ** 2)), best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "baselines.json")
    args = parser.parse_args()

    from models.evaluation import EvalConfig
    from models.evaluation.harness import aggregate, significance
    from models.experiment import fit_split
    from models.registry import LANGUAGE, TrainConfig
    from tasks.split import load_split, split_protocol

    results: dict = {}
    config = TrainConfig(models=tuple(m for m in TrainConfig().models if m not in LANGUAGE))
    eval_config = EvalConfig()
    for name in args.datasets:
        path = DATASETS[name]
        if not path.exists():
            print(f"skipping {name}: {path} not found")
            continue
        workspaces = ROOT / "bench" / "results" / "workspaces"
        workspaces.mkdir(parents=True, exist_ok=True)
        con = prepared(path, workspaces / f"{path.name}.duckdb", validate=True)
        results[name] = {}
        for split_id in ("random_s0", "temporal_s0", "cold_items_s0"):
            start = time.perf_counter()
            data = load_split(con, split_id)
            out = fit_split(
                data,
                split_protocol(con, split_id),
                split_id,
                config,
                eval_config,
                ROOT / "bench" / "results" / split_id,
            )
            seconds = time.perf_counter() - start
            table = aggregate(out.per_user, eval_config)
            tests = significance(out.per_user)
            overall = table[table["segment"] == "all"]
            protocol = out.protocol
            print(f"\n{name} {split_id}: test set, 95% bootstrap CIs over users ({seconds:.0f} s for all models)")
            metrics = HEADLINE[protocol]
            print("  " + "model".ljust(16) + "".join(m.rjust(26) for m in metrics) + "fit s".rjust(8))
            fit_s = {f["model"]: f["fit_seconds"] for f in out.fits}
            for model, rows in overall.groupby("model"):
                by = rows.set_index("metric")
                cells = "".join(
                    (
                        f"{by.at[m, 'value']:.4f} [{by.at[m, 'ci_low']:.4f},{by.at[m, 'ci_high']:.4f}]"
                        if m in by.index
                        else "-"
                    ).rjust(26)
                    for m in metrics
                )
                print("  " + model.ljust(16) + cells + f"{fit_s[model]:8.1f}")
            results[name][split_id] = {
                "protocol": protocol,
                "seconds": seconds,
                "results": overall.to_dict(orient="records"),
                "segments": table[table["segment"] != "all"].to_dict(orient="records"),
                "tests": tests.to_dict(orient="records"),
                "fits": out.fits,
            }
            if protocol == "random":
                ours = overall[(overall["model"] == "bias_als") & (overall["metric"] == "mse")]["value"].item()
                theirs, regs = surprise_tuned_mse(load_split(con, split_id))
                results[name]["surprise_baselineonly"] = {
                    "test_mse": theirs,
                    "reg_u_reg_i": regs,
                    "ours": ours,
                    "ratio": ours / theirs,
                }
                print(
                    f"  bias_als test MSE {ours:.4f} vs Surprise BaselineOnly (tuned on validation, regs {regs}) "
                    f"{theirs:.4f}: ratio {ours / theirs:.4f}"
                )
            if protocol == "cold_items":
                auc = overall[overall["metric"] == "auc"].set_index("model")["value"]
                row = tests[
                    (tests["metric"] == "auc")
                    & (tests["model_a"] == "lightfm_cf")
                    & (tests["model_b"] == "lightfm_hybrid")
                ]
                p = row["wilcoxon_p_holm"].item() if len(row) else float("nan")
                print(
                    f"  cold items AUC: hybrid {auc.get('lightfm_hybrid', float('nan')):.4f} vs identity-only "
                    f"{auc.get('lightfm_cf', float('nan')):.4f} (Wilcoxon, Holm-corrected p = {p:.2g})"
                )
        con.close()
    write_json(args.out, results)


if __name__ == "__main__":
    main()
