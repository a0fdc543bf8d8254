"""What the LM's text adds to the ratings: its rating readout variants on the same fine-tuned vectors.

    python bench/lm_readout.py --workspace W [--splits random_s0 random_s1 random_s2] [--out PATH]

``W`` is a workspace a full run left (``bench/full.py`` keeps its own under /tmp/reclab-bench-*/ws). For each
split, the LM of the newest run that fitted it is loaded from its best checkpoint and every profile encoded once;
then readouts are fitted on its training pairs (leave-fold-out profiles), strengths chosen on validation, and
scored on test, overall and for users with at most 3 training ratings:

- vectors: one ridge on [u, v, u⊙v] (the readout before the rating statistics);
- statistics: one ridge on the profiles' rating statistics only (no text at all);
- one ridge: statistics and vectors with one strength;
- two stages: statistics, then vectors on what they leave (``models.lm.readout.fit_readout``, the LM's readout).

Beside them, from the run's published bundle of the split: bias ALS alone, and the equal-weight average of the
LM and bias ALS (no weights learned). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402

SPARSE = 3  # users with at most this many training ratings


def fold_frame(con, split: str, fold: str) -> pd.DataFrame:
    from tasks.tables import CANONICAL, SPLIT_ASSIGNMENTS

    return con.execute(
        f"""SELECT a.user_id, a.item_id, i.rating FROM {SPLIT_ASSIGNMENTS} a
            JOIN {CANONICAL["interactions"]} i USING (user_id, item_id) WHERE a.split_id = ? AND a.fold = ?""",
        [split, fold],
    ).df()


def encode(lm_dir: Path, test: pd.DataFrame):
    """(datamodule with train/validation/test pairs, vectors and rating statistics of its profiles)."""
    import torch

    from models.lm.config import LMConfig
    from models.lm.module import TwoTowerModule
    from models.lm.train import data_module

    config = LMConfig.model_validate_json((lm_dir / "lm_config.json").read_text())
    data = Path(config.data_dir)
    frames = {n: pd.read_parquet(data / f"{n}.parquet") for n in ("train", "validation")} | {"test": test}
    items = pd.read_parquet(data / "items.parquet") if (data / "items.parquet").exists() else None
    profiles, datamodule, _, _ = data_module(config.model_copy(update={"num_workers": 0}), frames, items)
    datamodule.setup("fit")
    state = torch.load(lm_dir / "out" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    module = TwoTowerModule(**state["hyper_parameters"])
    module.load_state_dict(state["state_dict"])
    module.eval()
    module.cache_frozen_states(datamodule.tokens)
    vectors = module.encode_tokens(datamodule.tokens)
    stats = np.array([profiles.rating_stats(key) for key in datamodule.tokens.keys], dtype=np.float64)
    return module, datamodule, vectors, stats


def readouts(module, datamodule, vectors, stats) -> dict[str, np.ndarray]:
    """Test predictions of each readout variant."""
    from models.lm.readout import (
        READOUT_ALPHAS,
        apply_readout,
        fit_readout,
        fit_ridge,
        pair_stat_features,
        readout_features,
    )

    d = datamodule.datasets
    mean = float(d["train"].ratings.mean())
    features = {}  # fold -> readout variant -> design matrix
    for name, pairs in d.items():
        S = pair_stat_features(stats[pairs.users], stats[pairs.items], mean)
        X = readout_features(vectors[pairs.users], vectors[pairs.items])
        features[name] = {"vectors": X, "statistics": S, "one ridge": np.hstack([S, X])}
    y = {n: d[n].ratings.astype(np.float64) for n in d}
    out = {}
    for kind in ("vectors", "statistics", "one ridge"):
        fit = fit_ridge(
            features["train"][kind], y["train"], features["validation"][kind], y["validation"], READOUT_ALPHAS
        )
        out[kind] = features["test"][kind] @ fit["weights"] + fit["bias"]
    head = module.rate_vectors(vectors[d["validation"].users], vectors[d["validation"].items])
    readout = fit_readout(vectors, stats, d, head)
    test = d["test"]
    out["two stages"] = apply_readout(
        readout, vectors[test.users], vectors[test.items], stats[test.users], stats[test.items]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["random_s0", "random_s1", "random_s2"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm_readout.json")
    args = parser.parse_args()
    import duckdb

    from models.serving.bundle import load_model

    rows = []
    with duckdb.connect(str(args.workspace / "reclab.duckdb"), read_only=True) as con:
        folds = {s: {f: fold_frame(con, s, f) for f in ("train", "test")} for s in args.splits}
    for split in args.splits:
        runs = sorted((args.workspace / "runs").glob(f"*/{split}/lm_two_tower"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise SystemExit(f"{args.workspace}: no LM fitted on {split}")
        lm_dir, test = runs[-1], folds[split]["test"]
        module, datamodule, vectors, stats = encode(lm_dir, test)
        predictions = readouts(module, datamodule, vectors, stats)
        bundle = load_model(lm_dir.parent / "bundle")
        users, items = test["user_id"].to_numpy(str), test["item_id"].to_numpy(str)
        bias = np.clip(bundle.components["bias_als"].predict(users, items), 1, 5)
        lm = np.clip(bundle.components["lm_two_tower"].predict(users, items), 1, 5)
        predictions |= {"bias ALS": bias, "LM + bias ALS, equal weights": (lm + bias) / 2}
        y = datamodule.datasets["test"].ratings.astype(np.float64)
        counts = folds[split]["train"]["user_id"].value_counts()
        sparse = test["user_id"].map(counts).fillna(0).to_numpy() <= SPARSE
        for name, pred in predictions.items():
            rows.append(
                {
                    "split": split,
                    "readout": name,
                    "test_mse": float(np.mean((pred - y) ** 2)),
                    f"test_mse_users_le{SPARSE}": float(np.mean((pred[sparse] - y[sparse]) ** 2)),
                    "sparse_rows": int(sparse.sum()),
                }
            )
        print(pd.DataFrame(rows[-len(predictions) :]).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print("\nmean over splits\n" + table.groupby("readout", sort=False).mean(numeric_only=True).round(4).to_string())
    write_json(args.out, {"workspace": str(args.workspace), "rows": rows})


if __name__ == "__main__":
    main()
