"""Write a self-contained GPU benchmark folder that runs on a bare GPU machine (torch, lightning, transformers,
pandas, numpy, scipy; no DuckDB, Prefect, Great Expectations, LightFM or pydantic, no registry):

    python bench/gpu_pack.py [--out build/gpu_pack] [--data PATH]
    # then, on the GPU machine, from the folder:
    bash run.sh [--profile gpu|gpu-lora|cpu|cpu-lora] [--splits random_s0 ...] [--set '{"batch_size": 256}']

The folder (under 60 MiB) holds the trainer's inputs as Parquet (every rating with its review once, the
split assignments of random seeds 0-2 and leave-last-out seed 0, each split's items), the code the trainer
and the evaluation need (``models/``, pure), the packaged all-MiniLM-L6-v2 as float16 (``run.sh`` restores
float32 there), and wheels of the missing pure-Python dependencies (pydantic, peft and theirs). ``run.sh``
trains the chosen profile on each split through the real trainer (``python -m models.lm.train``) and prints,
per split, training samples/s, peak GPU memory, test MSE overall and for users with at most 3 training
ratings, and NDCG@10 (the recommender's own scoring: cosine plus the popularity weight chosen on
validation), and writes ``results.json``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from common import ROOT, prepared

SPLITS = ("random_s0", "random_s1", "random_s2", "temporal_s0")
CODE = (
    "models/__init__.py",
    "models/base.py",
    "models/lm",
    "models/evaluation/__init__.py",
    "models/evaluation/harness.py",
    "models/evaluation/metrics.py",
    "models/evaluation/stats.py",
)
# what a bare GPU machine lacks (pure Python, or compiled wheels for the Python versions it may have)
WHEELS = ("pydantic", "peft")
PYTHONS = ("3.11", "3.12", "3.13")


def write_data(out: Path, dataset: Path) -> None:
    import pandas as pd

    from models.evaluation.split import SplitConfig
    from tasks.split import load_split, split_workspace, write_training_reviews

    con = prepared(dataset, protocols=("random",))
    for seed in (1, 2):
        split_workspace(con, SplitConfig(seed=seed, protocols=("random",)))
    split_workspace(con, SplitConfig(seed=0, protocols=("temporal",)))
    write_training_reviews(con)
    texts, folds = [], []
    for split_id in SPLITS:
        data = load_split(con, split_id)
        texts.append(data["train"])
        for fold in ("train", "validation", "test"):
            folds.append(data[fold][["user_id", "item_id"]].assign(split_id=split_id, fold=fold))
        held = pd.concat([data["validation"], data["test"]])
        texts.append(held[["user_id", "item_id", "rating", "timestamp"]])
        data["items"].to_parquet(out / "data" / f"items_{split_id}.parquet", index=False)
    ratings = pd.concat(texts).sort_values(["user_id", "item_id"])
    # one row per pair, with its review when some split's training fold holds it
    ratings = ratings.sort_values("review_text", na_position="last").drop_duplicates(["user_id", "item_id"])
    ratings.to_parquet(out / "data" / "ratings.parquet", index=False, compression="zstd")
    pd.concat(folds).to_parquet(out / "data" / "folds.parquet", index=False, compression="zstd")


def write_encoder(out: Path) -> None:
    """all-MiniLM-L6-v2 with its float tensors as float16 (restored to float32 by run.sh), and its tokenizer."""
    from safetensors.torch import load_file, save_file

    from models.lm.network import resolve_encoder

    source, target = Path(resolve_encoder("minilm")), out / "encoder_fp16"
    target.mkdir()
    tensors = load_file(str(source / "model.safetensors"))
    save_file(
        {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, str(target / "model.safetensors")
    )
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def write_wheels(out: Path) -> None:
    wheels = out / "wheels"
    wheels.mkdir()
    for python in PYTHONS:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels)]
        command += [
            "--python-version",
            python,
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
        ]
        command += ["--platform", "manylinux_2_28_x86_64", "--no-deps"]
        for name in (
            *WHEELS,
            "pydantic-core",
            "annotated-types",
            "typing-inspection",
            "typing-extensions",
            "accelerate",
            "psutil",
        ):
            subprocess.run([*command, name], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu_pack", help="folder to write (replaced)")
    parser.add_argument("--data", type=Path, help="dataset (default: the embedded default dataset)")
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheels (a machine that has pydantic/peft)")
    args = parser.parse_args()
    from readers import DEFAULT_DATASET

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    print(f"[gpu-pack] data -> {out / 'data'}", flush=True)
    write_data(out, args.data or DEFAULT_DATASET)
    print("[gpu-pack] code, encoder (float16)", flush=True)
    for path in CODE:
        source, target = ROOT / path, out / "code" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    write_encoder(out)
    if not args.no_wheels:
        print("[gpu-pack] wheels", flush=True)
        write_wheels(out)
    for name in ("run.sh", "gpu_run.py"):
        shutil.copy(ROOT / "bench" / "gpu" / name, out / name)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"[gpu-pack] wrote {out} ({size / 2**20:.1f} MiB); on the GPU machine: bash run.sh", flush=True)


if __name__ == "__main__":
    main()
