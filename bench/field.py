"""The field's models beside reclab's, side by side from one run on reclab's own stored splits of a dataset:
every model's test MSE on random seeds 0, 1, 2 and its mean, NDCG@10 on leave-last-out (seed 0), and fit
seconds, each model tuned on validation as in the flows (``models.experiment.fit_split``). With the
fusion: per split, the fusion against the best single model (paired t-test on per-user values, Holm-corrected
over every single model, bootstrap CI of the difference), the rating blender it chose, and how correlated
the rating components' test errors are (what limits what a blend can gain).

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

    from models.evaluation import EvalConfig
    from models.evaluation.harness import aggregate
    from models.evaluation.split import SplitConfig
    from models.experiment import fit_split
    from models.registry import LANGUAGE, MODELS, TrainConfig
    from readers import DEFAULT_DATASET
    from tasks.split import load_split, split_workspace, write_training_reviews

    models = [m for m in MODELS if args.with_lm or (m not in LANGUAGE and m != "fusion")]
    con = prepared(args.data or DEFAULT_DATASET, protocols=("random",))
    for seed in (1, 2):
        split_workspace(con, SplitConfig(seed=seed, protocols=("random",)))
    split_workspace(con, SplitConfig(seed=0, protocols=("temporal",)))
    write_training_reviews(con)
    rows, judged, blenders, correlations = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as work:
        for split_id in SPLITS:
            start = time.perf_counter()
            print(f"[field] {split_id}: fitting {len(models)} models ...", flush=True)
            fit = fit_split(
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
            if "fusion" in fit.models:
                metric = ("ndcg", 10) if split_id.startswith("temporal") else ("mse", 0)
                judged[split_id] = fusion_vs_best(fit.per_user, overall, *metric)
                fusion = fit.models["fusion"]
                blenders[split_id] = {
                    **getattr(fusion, "blender_", {}),
                    "weights": {k: round(v, 3) for k, v in fusion.rating_weights_["global"].items()},
                }
                correlations[split_id] = error_correlations(fusion, load_split(con, split_id)["test"])
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
    if judged:
        print(
            f"\n{'split':<13}{'metric':<9}{'best single':<16}{'fusion':>8}{'single':>8}{'diff [95% CI]':>26}{'Holm p':>9}"
        )
        for split_id, j in judged.items():
            ci = f"{j['diff']:+.4f} [{j['ci_low']:+.4f}, {j['ci_high']:+.4f}]"
            print(
                f"{split_id:<13}{j['metric']:<9}{j['reference']:<16}{j['value']:>8.4f}{j['reference_value']:>8.4f}"
                f"{ci:>26}{j['t_p_adj']:>9.3g}"
            )
        print("\nrating blender chosen on validation, per split:")
        for split_id, b in blenders.items():
            print(f"  {split_id}: {json.dumps(b)}")
        print("\ncorrelation of the rating components' test errors, per split:")
        for split_id, c in correlations.items():
            print(f"  {split_id}:")
            for line in c["table"].splitlines():
                print(f"    {line}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = dict(rows)
    if judged:
        out["_fusion_vs_best_single"] = judged
        out["_rating_blender"] = blenders
        out["_error_correlation"] = {k: v["matrix"] for k, v in correlations.items()}
        out["_oracle_blend_mse"] = {k: v["oracle_mse"] for k, v in correlations.items()}
    args.out.write_text(json.dumps(out, indent=1, default=float))
    print(f"\nwritten {args.out}")


def fusion_vs_best(per_user, overall, metric: str, k: int) -> dict:
    """The fusion against the single model with the best test value of ``metric``@``k``: paired difference
    with its bootstrap CI, t-test Holm-corrected over the fusion's comparisons with every single model."""
    import numpy as np

    from models.evaluation.comparisons import LOWER_IS_BETTER, PRIMARY, SECONDARY, judge, paired_differences
    from models.registry import REGISTRY

    singles = [m for (m, name) in overall.index if name == metric and m != "fusion" and not REGISTRY[m].floor]
    values = overall[[(m, metric) for m in singles]]
    best = (values.idxmin() if metric in LOWER_IS_BETTER else values.idxmax())[0]
    pairs = [(metric, k, "fusion", m, "vs_single") for m in singles]
    table = paired_differences(per_user, pairs, n_boot=1000)
    # the fusion against every single model (all users) is one Holm family; segments are exploratory
    families = np.where(table["segment"] == "all", PRIMARY, SECONDARY)
    table = judge(table.assign(family=families, split_id="bench"))
    row = table[(table["segment"] == "all") & (table["reference"] == best)].iloc[0]
    keys = (
        "metric",
        "reference",
        "value",
        "reference_value",
        "diff",
        "ci_low",
        "ci_high",
        "t_p",
        "t_p_adj",
        "verdict",
    )
    return {key: row[key] if isinstance(row[key], str) else float(row[key]) for key in keys}


def error_correlations(fusion, test) -> dict:
    """Pearson correlation of the rating components' test errors (prediction − rating)."""
    import numpy as np
    import pandas as pd

    errors = pd.DataFrame(
        {
            name: fusion.components[name].predict(test["user_id"], test["item_id"]) - test["rating"].to_numpy()
            for name in fusion.rating_names
        }
    )
    matrix = errors.corr()
    # a diagnostic bound, never a result: the best linear blend fitted on the test ratings themselves
    design = np.column_stack([np.ones(len(test)), errors.to_numpy() + test["rating"].to_numpy()[:, None]])
    weights = np.linalg.lstsq(design, test["rating"].to_numpy(), rcond=None)[0]
    oracle = float(np.mean((design @ weights - test["rating"].to_numpy()) ** 2))
    table = matrix.round(2).to_string() + f"\noracle blend fitted on test (a bound, not a result): MSE {oracle:.4f}"
    return {"matrix": matrix.round(3).to_dict(), "table": table, "oracle_mse": oracle, "n": int(np.size(test, 0))}


if __name__ == "__main__":
    main()
