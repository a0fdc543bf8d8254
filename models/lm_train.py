"""Fine-tune the two-tower LM recommender: its own process, configured by one JSON file.

    python -m models.lm_train --config RUN/lm_config.json

Lightning's DDP strategy re-launches the main module once per extra process, so training runs as this
module, never inside a Prefect flow's process; the flow writes the inputs and config, launches this, and reads
the outputs back. Inputs (``data_dir``): ``train.parquet`` (user_id, item_id, rating, timestamp, summary,
review_text: the training fold only), ``validation.parquet`` and ``test.parquet`` (user_id, item_id, rating:
no text), ``items.parquet`` (item metadata, may be empty). Outputs (``output_dir``): ``checkpoints/best.ckpt``
(lowest validation RMSE) and ``checkpoints/last.ckpt`` (for resuming: rerunning the same command continues
from it), ``logs/`` (CSV metrics, TensorBoard when installed), ``embeddings.npz`` (user and item vectors),
``predictions_validation.parquet``/``predictions_test.parquet`` and ``metrics.json``.

Multi-GPU / multi-node: ``devices`` > 1 uses DDP; ``num_nodes`` > 1 is the same command started on every node
by ``torchrun``/SLURM with the usual MASTER_ADDR, MASTER_PORT, NODE_RANK (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.base import rows_at
from models.profiles import FULL

# Fault injection for tests and drills: exit abruptly after this many optimizer steps (a "kill").
FAIL_AFTER_STEPS_ENV = "RECLAB_LM_FAIL_AFTER_STEPS"


class LMConfig(BaseModel):
    """Everything one fine-tuning run needs. Profiles ``cpu`` and ``gpu`` (see ``PROFILES``) override a few."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str = "."
    output_dir: str = "lm_run"
    # encoder: "minilm" (packaged all-MiniLM-L6-v2), any local folder or hub id; encoder_config: a BERT
    # config dict for a randomly initialised encoder (tests).
    encoder: str = "minilm"
    encoder_config: dict | None = None
    max_length: int = Field(128, ge=8)  # tokens per profile
    max_reviews: int = Field(8, ge=1)  # reviews per profile, most recent first
    review_chars: int = Field(300, ge=20)  # characters kept per review
    rating_history: int = Field(10, ge=0)  # star ratings of the most recent training reviews leading a profile
    # Leave-fold-out variants of training profiles: a training pair reads profiles built from the other
    # folds' reviews, (folds - 1) / folds of them, so more folds make them closer to the full profiles that
    # prediction reads, at the cost of more profiles to encode. Default dataset, cpu profile, validation MSE
    # of the readout on random seeds 0, 1, 2: 2 folds 0.766 / 0.659 / 0.755, 4 folds 0.760 / 0.661 / 0.750
    # (frozen-state cache 33 s -> 80 s).
    folds: int = Field(4, ge=2)
    batch_size: int = Field(32, ge=2)  # training pairs per batch
    pairs_per_user: int = Field(4, ge=1)  # training pairs sharing a user profile kept together (fewer encodes)
    max_epochs: int = Field(2, ge=1)
    max_steps: int = -1  # stop after this many optimizer steps (-1: no limit)
    limit_train_batches: float | int = 1.0
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    ranking_weight: float = 0.5
    temperature: float = 0.05
    freeze_layers: int = Field(0, ge=0)  # freeze embeddings + the lowest N transformer layers
    cache_frozen: bool = True  # compute the frozen layers' output once per profile (BERT-style encoders)
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float = 1.0
    patience: int = Field(2, ge=1)  # early stopping on validation RMSE
    checkpoint_every_n_steps: int = Field(50, ge=1)  # last.ckpt cadence, for resuming mid-epoch
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    precision: str = "auto"  # "auto": bf16-mixed on GPU, 32-true on CPU
    num_threads: int = 0  # torch CPU threads (0: torch's default)
    num_workers: int = 0
    seed: int = 0
    progress_bar: bool = True


PROFILES: dict[str, dict] = {
    # Fits on 2 CPU cores in minutes: shorter profiles, one epoch, all but the top layer frozen (their
    # states are computed once per profile, see cache_frozen). Measured on the default dataset's random
    # split, validation MSE of the readout: freeze 3 0.779 (291 s), 4 0.781 (224 s), 5 0.778 (159 s).
    "cpu": {"max_length": 64, "max_reviews": 4, "freeze_layers": 5, "max_epochs": 1, "batch_size": 32},
    # Full fine-tuning in bf16 on every GPU of the machine.
    "gpu": {
        "max_length": 256,
        "max_reviews": 10,
        "freeze_layers": 0,
        "max_epochs": 4,
        "batch_size": 64,
        "accelerator": "gpu",
        "devices": -1,
        "precision": "bf16-mixed",
    },
}


def _precision(config: LMConfig) -> str:
    if config.precision != "auto":
        return config.precision
    import torch

    gpu = config.accelerator in ("gpu", "cuda") or (config.accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if gpu else "32-true"


def train(config: LMConfig) -> dict:
    """Fit, then (on global rank 0) export embeddings, predictions and metrics. Returns the metrics."""
    import lightning as L
    import pandas as pd
    import torch
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from transformers import AutoTokenizer

    from models.lm_data import PairDataModule
    from models.lm_module import LMRecommender
    from models.profiles import build_profiles
    from models.two_tower import resolve_encoder

    L.seed_everything(config.seed, workers=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    data, out = Path(config.data_dir), Path(config.output_dir)
    empty = pd.DataFrame(
        {"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str), "rating": pd.Series(dtype=float)}
    )
    frames = {
        name: pd.read_parquet(data / f"{name}.parquet") if (data / f"{name}.parquet").exists() else empty
        for name in ("train", "validation", "test")
    }
    items_path = data / "items.parquet"
    items = pd.read_parquet(items_path) if items_path.exists() else None
    profiles = build_profiles(
        frames["train"],
        items,
        max_reviews=config.max_reviews,
        review_chars=config.review_chars,
        folds=config.folds,
        seed=config.seed,
        rating_history=config.rating_history,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_encoder(config.encoder if config.encoder_config is None else "minilm")
    )
    users, item_ids = export_ids(frames["train"], items)
    datamodule = PairDataModule(
        {k: v[["user_id", "item_id", "rating"]] for k, v in frames.items()},
        profiles,
        tokenizer,
        config.max_length,
        config.batch_size,
        config.num_workers,
        config.pairs_per_user,
        config.seed,
        extra_keys=export_keys(users, item_ids),
    )
    module = LMRecommender(
        encoder=config.encoder,
        encoder_config=config.encoder_config,
        rating_mean=float(frames["train"]["rating"].mean()),
        lr=config.lr,
        head_lr=config.head_lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        ranking_weight=config.ranking_weight,
        temperature=config.temperature,
        freeze_layers=config.freeze_layers,
    )
    if config.cache_frozen and config.freeze_layers > 0:
        datamodule.setup("fit")
        start = time.perf_counter()
        if module.cache_frozen_states(datamodule.tokens):
            print(
                f"cached the {config.freeze_layers} frozen layers' states of {len(datamodule.tokens.ids)} "
                f"profiles in {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
            )

    class FailAfter(Callback):
        def on_train_batch_end(self, trainer, *args):
            limit = int(os.environ.get(FAIL_AFTER_STEPS_ENV, "0"))
            if limit and trainer.global_step >= limit:
                os._exit(3)

    checkpoints = out / "checkpoints"
    best = ModelCheckpoint(
        dirpath=checkpoints, filename="best", monitor="val_rmse", mode="min", save_top_k=1, enable_version_counter=False
    )
    last = ModelCheckpoint(
        dirpath=checkpoints, save_top_k=0, save_last=True, every_n_train_steps=config.checkpoint_every_n_steps
    )
    loggers = [CSVLogger(out, name="logs")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out, name="tensorboard"))
    except ImportError:
        pass
    devices = config.devices
    distributed = (isinstance(devices, int) and devices > 1) or devices == -1 or config.num_nodes > 1
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=devices,
        num_nodes=config.num_nodes,
        strategy="ddp" if distributed else "auto",
        precision=_precision(config),
        max_epochs=config.max_epochs,
        max_steps=config.max_steps,
        limit_train_batches=config.limit_train_batches,
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val,
        callbacks=[best, last, EarlyStopping(monitor="val_rmse", mode="min", patience=config.patience), FailAfter()],
        logger=loggers,
        log_every_n_steps=10,
        enable_progress_bar=config.progress_bar,
        default_root_dir=out,
    )
    resume = checkpoints / "last.ckpt"
    fingerprint = inputs_fingerprint(config)
    stamp = out / "inputs.sha256"
    resuming = resume.exists() and stamp.exists() and stamp.read_text() == fingerprint
    if not resuming and checkpoints.exists() and trainer.is_global_zero:
        shutil.rmtree(checkpoints)  # checkpoints of other inputs or settings: never resume from those
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    start = time.perf_counter()
    trainer.fit(module, datamodule, ckpt_path=str(resume) if resuming else None, weights_only=True)  # no pickle
    seconds = time.perf_counter() - start
    metrics = {
        "best_val_rmse": float(best.best_model_score) if best.best_model_score is not None else None,
        "best_checkpoint": best.best_model_path,
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "resumed": resuming,
        "train_seconds": seconds,
        "world_size": trainer.world_size,
        "precision": _precision(config),
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    if trainer.is_global_zero:
        metrics.update(
            export(module, datamodule, profiles, frames, users, item_ids, best.best_model_path or str(resume), out)
        )
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def inputs_fingerprint(config: LMConfig) -> str:
    """sha256 of the settings and input files: a checkpoint is resumed only by a run with the same ones."""
    import hashlib

    digest = hashlib.sha256(config.model_dump_json(exclude={"output_dir", "progress_bar", "num_workers"}).encode())
    for path in sorted(Path(config.data_dir).glob("*.parquet")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


READOUT_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
STAT_SHRINKS = (1.0, 3.0, 10.0, 30.0)  # n / (n + k): the shrinkage curves the readout weighs


def export_ids(train, items) -> tuple:
    """Sorted ids export writes vectors for: every training user, every catalogue item (trained or
    metadata-only)."""
    users = np.sort(train["user_id"].astype(str).unique())
    catalogue = set(train["item_id"].astype(str))
    if items is not None:
        catalogue |= set(items["item_id"].astype(str))
    return users, np.sort(list(catalogue))


UNKNOWN_KEYS = [("user", "\0unknown", FULL), ("item", "\0unknown", FULL)]  # the empty profiles


def export_keys(users, item_ids) -> list[tuple[str, str, int]]:
    return [("user", u, FULL) for u in users] + [("item", i, FULL) for i in item_ids] + UNKNOWN_KEYS


def readout_features(u, v):
    return np.hstack([u, v, u * v]).astype(np.float64)


def stat_features(stats, mean: float):
    """Rating statistics of profiles, ``stats`` rows (rating sum, count), as readout features: the deviation of
    the profile's mean rating from the training mean shrunk by n / (n + k) for each k of ``STAT_SHRINKS`` (a
    ridge over them learns how far to trust n ratings), and log(1 + n)."""
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, 2)
    total, n = stats[:, 0], stats[:, 1]
    deviation = np.where(n > 0, total / np.maximum(n, 1) - mean, 0.0)
    return np.column_stack([deviation * n / (n + k) for k in STAT_SHRINKS] + [np.log1p(n)])


def pair_stat_features(user_stats, item_stats, mean: float):
    """The readout's first-stage features of (user, item) pairs: :func:`stat_features` of both profiles."""
    return np.hstack([stat_features(user_stats, mean), stat_features(item_stats, mean)])


def apply_readout(readout: dict, u, v, user_stats, item_stats):
    """Ratings from user/item vectors and profile rating statistics with a fitted readout (see
    :func:`fit_readout`)."""
    base = pair_stat_features(user_stats, item_stats, float(readout["mean"])) @ readout["stat_weights"]
    return base + float(readout["stat_bias"]) + readout_features(u, v) @ readout["weights"] + float(readout["bias"])


def fit_ridge(X, y, X_val, y_val, alphas) -> dict:
    """Ridge regression of ``y`` on standardised ``X``, its strength the one of ``alphas`` with the lowest MSE
    on (``X_val``, ``y_val``) (the first when there is no validation). Weights apply to unstandardised X."""
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-8
    Z = (X - mean) / scale
    target = y - y.mean()
    gram, moment = Z.T @ Z, Z.T @ target
    best = None
    for alpha in alphas:
        coef = np.linalg.solve(gram + alpha * np.eye(len(gram)), moment)
        weights, bias = coef / scale, y.mean() - (mean / scale) @ coef
        val = float(np.mean((X_val @ weights + bias - y_val) ** 2)) if len(y_val) else 0.0
        if best is None or val < best["val_mse"]:
            best = {"weights": weights, "bias": np.float64(bias), "alpha": np.float64(alpha), "val_mse": val}
    return best


def fit_readout(module, datamodule, vectors, stats) -> dict:
    """Refit the rating readout on the fine-tuned, now frozen, vectors of the training pairs (their
    leave-fold-out profiles), each strength chosen on validation MSE, in two stages: a ridge regression on the
    profiles' rating statistics (:func:`stat_features` of user and item: the ratings a profile holds, read as
    numbers rather than as the "ratings: 5 4" of its text), then a ridge regression on [u, v, u⊙v] of what it
    leaves. One strength for both would shrink the ten statistics as hard as the 1,152 vector features.
    ``vectors``/``stats``: ``module``'s vectors and the rating (sum, count) of every profile of
    ``datamodule.tokens``.

    The MLP head is what trains the encoder, but 1-2 epochs of noisy ratings leave it short of convergence;
    the closed-form readout is converged by construction. Returns the weights, biases, strengths and
    validation MSEs (of the statistics alone, of the whole readout and of the trained head)."""
    import torch

    data = {name: datamodule.datasets[name] for name in ("train", "validation")}
    mean = float(data["train"].ratings.mean())
    S = {n: pair_stat_features(stats[d.users], stats[d.items], mean) for n, d in data.items()}
    X = {n: readout_features(vectors[d.users], vectors[d.items]) for n, d in data.items()}
    y = {n: d.ratings.astype(np.float64) for n, d in data.items()}
    with torch.inference_mode():
        head = module.net.rate(
            torch.from_numpy(vectors[data["validation"].users]), torch.from_numpy(vectors[data["validation"].items])
        ).numpy()
    head_val_mse = float(np.mean((head - y["validation"]) ** 2)) if len(head) else float("nan")
    first = fit_ridge(S["train"], y["train"], S["validation"], y["validation"], READOUT_ALPHAS)
    base = {n: S[n] @ first["weights"] + first["bias"] for n in S}
    second = fit_ridge(
        X["train"], y["train"] - base["train"], X["validation"], y["validation"] - base["validation"], READOUT_ALPHAS
    )
    return {
        **second,
        "mean": np.float64(mean),
        "stat_weights": first["weights"],
        "stat_bias": first["bias"],
        "stat_alpha": first["alpha"],
        "stats_val_mse": np.float64(first["val_mse"]),
        "head_val_mse": np.float64(head_val_mse),
    }


def export(module, datamodule, profiles, frames, users, item_ids, checkpoint: str, out: Path) -> dict:
    """The rating readout, embeddings and rating statistics of every training user and catalogue item (full
    profiles), and rating predictions for validation and test. Every profile is encoded once, for the readout
    and the export."""
    import pandas as pd
    import torch

    if checkpoint and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    module.eval().to("cpu")
    vectors = module.encode_tokens(datamodule.tokens)
    stats = np.array([profiles.rating_stats(key) for key in datamodule.tokens.keys], dtype=np.float64)
    readout = fit_readout(module, datamodule, vectors, stats)
    np.savez(out / "readout.npz", **readout)
    rows = [datamodule.tokens.keys[key] for key in export_keys(users, item_ids)]
    vectors, stats = vectors[rows], stats[rows]
    user_vec, item_vec = vectors[: len(users)], vectors[len(users) : -2]
    unknown, unknown_item = vectors[-2], vectors[-1]
    user_stats, item_stats = stats[: len(users)], stats[len(users) : -2]
    np.savez(
        out / "embeddings.npz",
        user_ids=users.astype(str),
        user_vectors=user_vec,
        item_ids=item_ids.astype(str),
        item_vectors=item_vec,
        unknown_user_vector=unknown,
        unknown_item_vector=unknown_item,
        user_stats=user_stats,
        item_stats=item_stats,
    )
    user_pos, item_pos = pd.Index(users), pd.Index(item_ids)
    for name in ("validation", "test"):
        frame = frames[name]
        if frame.empty:
            continue
        u = user_pos.get_indexer(frame["user_id"].astype(str))
        i = item_pos.get_indexer(frame["item_id"].astype(str))
        prediction = apply_readout(
            readout,
            rows_at(user_vec, u, unknown),
            rows_at(item_vec, i, unknown_item),
            rows_at(user_stats, u, 0.0),
            rows_at(item_stats, i, 0.0),
        )
        pd.DataFrame({"user_id": frame["user_id"], "item_id": frame["item_id"], "prediction": prediction}).to_parquet(
            out / f"predictions_{name}.parquet", index=False
        )
    return {
        "users": len(users),
        "items": len(item_ids),
        "readout_alpha": float(readout["alpha"]),
        "readout_stat_alpha": float(readout["stat_alpha"]),
        "readout_val_mse": float(readout["val_mse"]),
        "readout_stats_val_mse": float(readout["stats_val_mse"]),
        "head_val_mse": float(readout["head_val_mse"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="JSON file with the LMConfig fields")
    args = parser.parse_args(argv)
    config = LMConfig.model_validate_json(args.config.read_text())
    metrics = train(config)
    if metrics.get("users") is not None:
        print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
