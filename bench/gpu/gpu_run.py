"""The GPU benchmark inside a folder written by ``bench/gpu_pack.py`` (``run.sh`` sets up the path): for each
split, train the chosen LM profile through the real trainer (``python -m models.lm.train``), then evaluate
the result as the recommender does, and print one table: training samples/s, peak GPU memory, test MSE
overall and for users with at most 3 training ratings, NDCG@10 (cosine plus the popularity weight chosen on
validation). Writes ``results.json`` beside it."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = ("random_s0", "random_s1", "random_s2", "temporal_s0")


def restore_encoder() -> Path:
    """The packed float16 encoder as float32 (once)."""
    target = HERE / "encoder"
    if (target / "model.safetensors").exists():
        return target
    from safetensors.torch import load_file, save_file

    source = HERE / "encoder_fp16"
    target.mkdir(exist_ok=True)
    tensors = load_file(str(source / "model.safetensors"))
    save_file(
        {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, str(target / "model.safetensors")
    )
    for path in source.iterdir():
        if path.name != "model.safetensors":
            shutil.copy(path, target / path.name)
    return target


def split_frames(split_id: str) -> dict:
    """The split's train (with text), validation and test (without) folds and its items, as the recommender
    hands them to the trainer."""
    import pandas as pd

    ratings = pd.read_parquet(HERE / "data" / "ratings.parquet")
    folds = pd.read_parquet(HERE / "data" / "folds.parquet")
    merged = folds[folds["split_id"] == split_id].merge(ratings, on=["user_id", "item_id"], how="left")
    text = [c for c in ("user_id", "item_id", "rating", "timestamp", "summary", "review_text") if c in merged]
    frames = {"train": merged.loc[merged["fold"] == "train", text].reset_index(drop=True)}
    for fold in ("validation", "test"):
        frames[fold] = merged.loc[merged["fold"] == fold, ["user_id", "item_id", "rating"]].reset_index(drop=True)
    frames["items"] = pd.read_parquet(HERE / "data" / f"items_{split_id}.parquet")
    return frames


def evaluate(folder: Path, frames: dict, config) -> dict:
    import numpy as np

    from models.evaluation.harness import ranking_targets
    from models.evaluation.metrics import ndcg_at_k, user_blocks
    from models.lm.recommender import LMTwoTower
    from models.tuning import tune

    model = LMTwoTower(folder, profile=None)
    model._index(frames["train"], frames["items"])
    model._load(Path(config.output_dir))
    tune(model, frames["train"], frames["validation"], items=frames["items"], fitted=model)  # its popularity weight
    test = frames["test"]
    error = (np.clip(model.predict(test["user_id"], test["item_id"]), 1, 5) - test["rating"].to_numpy()) ** 2
    counts = frames["train"]["user_id"].value_counts()
    sparse = test["user_id"].map(counts).fillna(0).to_numpy() <= 3
    users, relevant, exclude, cols = ranking_targets(model, test)
    ndcg = []
    for rows in user_blocks(len(users), len(cols)):
        ndcg.append(ndcg_at_k(model.score(users[rows])[:, cols], relevant[rows], exclude[rows], 10))
    return {
        "test_mse": float(error.mean()),
        "test_mse_users_le3": float(error[sparse].mean()) if sparse.any() else None,
        "users_le3": int(sparse.sum()),
        "ndcg@10": float(np.concatenate(ndcg).mean()) if ndcg else None,
        "popularity_weight": model.popularity_weight_,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="gpu", help="LM profile: gpu, gpu-lora, cpu, cpu-lora (default gpu)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help=f"splits (default {' '.join(SPLITS)})")
    parser.add_argument("--set", default="{}", help="further LMConfig fields as JSON, e.g. '{\"batch_size\": 256}'")
    args = parser.parse_args()
    from models.lm.config import PROFILES, LMConfig

    encoder = restore_encoder()
    rows = []
    for split_id in args.splits:
        folder = HERE / "runs" / args.profile / split_id
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "data").mkdir(parents=True)
        frames = split_frames(split_id)
        for name, frame in frames.items():
            frame.to_parquet(folder / "data" / f"{name}.parquet", index=False)
        fields = {
            **PROFILES[args.profile],
            "encoder": str(encoder),
            "progress_bar": False,
            "text_cache": str(HERE / "text_states"),  # profiles with frozen layers share their pieces' states
            **json.loads(args.set),
        }
        config = LMConfig(**fields, data_dir=str(folder / "data"), output_dir=str(folder / "out"))
        (folder / "lm_config.json").write_text(config.model_dump_json(indent=2))
        print(f"[gpu-run] {split_id}: training ({args.profile})", flush=True)
        start = time.perf_counter()
        command = [sys.executable, "-m", "models.lm.train", "--config", str(folder / "lm_config.json")]
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
        metrics = json.loads((folder / "out" / "metrics.json").read_text())
        row = {
            "split": split_id,
            "profile": args.profile,
            "recipe": metrics.get("recipe"),
            "samples_per_s": metrics.get("train_samples_per_second"),
            "peak_gpu_gib": metrics.get("peak_gpu_mem_gib"),
            "train_s": metrics.get("train_seconds"),
            "wall_s": time.perf_counter() - start,
            "epochs": metrics.get("epochs"),
            "phase_s": metrics.get("phase_seconds"),
            **evaluate(folder, frames, config),
        }
        rows.append(row)
        print(f"[gpu-run] {split_id}: {json.dumps(row)}", flush=True)
    print(f"\n{'split':<13}{'samples/s':>10}{'peak GiB':>9}{'MSE':>8}{'MSE ≤3':>8}{'NDCG@10':>9}{'train s':>9}")
    for r in rows:
        gib = f"{r['peak_gpu_gib']:.1f}" if r["peak_gpu_gib"] is not None else "-"
        le3 = f"{r['test_mse_users_le3']:.4f}" if r["test_mse_users_le3"] is not None else "-"
        print(
            f"{r['split']:<13}{r['samples_per_s']:>10.0f}{gib:>9}{r['test_mse']:>8.4f}{le3:>8}"
            f"{r['ndcg@10']:>9.4f}{r['train_s']:>9.0f}"
        )
    (HERE / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
