"""Fine-tune the two-tower LM recommender: its own process, configured by one JSON file.

    python -m models.lm.train --config RUN/lm_config.json

Lightning's DDP strategy re-launches the main module once per extra process, so training runs as this
module, never inside a Prefect flow's process: the LM recommender (``models.lm.recommender.LMTwoTower.fit``)
writes the inputs and the config (``models.lm.config.LMConfig``), launches this, and reads the outputs back.
Inputs (``data_dir``): ``train.parquet`` (user_id, item_id, rating, timestamp, summary, review_text: the
training fold only), ``validation.parquet`` (user_id, item_id, rating: no text), optionally ``test.parquet``
(the same columns) and ``items.parquet`` (item metadata). Outputs (``output_dir``): ``checkpoints/best.ckpt``
(lowest validation RMSE) and ``checkpoints/last.ckpt`` (for resuming: rerunning the same command continues
from it), ``logs/`` (CSV metrics, TensorBoard when installed), ``embeddings.npz`` (user and item vectors),
``predictions_validation.parquet``/``predictions_test.parquet`` and ``metrics.json``.

Multi-GPU / multi-node: ``devices`` > 1 uses DDP; ``num_nodes`` > 1 is the same command started on every node
by ``torchrun``/SLURM with the usual MASTER_ADDR, MASTER_PORT, NODE_RANK (see the README).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from models.base import rows_at
from models.lm.config import LMConfig
from models.lm.profiles import FULL
from models.lm.readout import apply_readout, cross_fit_readout, fit_readout

# Fault injection for tests and drills: exit abruptly after this many optimizer steps (a "kill").
FAIL_AFTER_STEPS_ENV = "RECLAB_LM_FAIL_AFTER_STEPS"


def _precision(config: LMConfig) -> str:
    import torch

    gpu = config.accelerator in ("gpu", "cuda") or (config.accelerator == "auto" and torch.cuda.is_available())
    if config.precision == "auto":
        return "bf16-mixed" if gpu else "32-true"
    if config.precision.startswith("bf16") and not gpu and not cpu_has_bf16():
        return "32-true"
    return config.precision


def trainer_threads(config: LMConfig) -> int:
    """The trainer's torch threads, fixed for the whole fit: ``num_threads`` when set, else half this process's
    cores (at least one), the other half left to the fits that run beside it in the flow's process
    (``models.experiment``). Never changed mid-fit: thread counts change float sums in their last digits, so a
    count that followed when the other fits end would make a rerun's numbers depend on the machine's load."""
    if config.num_threads:
        return config.num_threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's AMX or AVX512-BF16 kernels): elsewhere bf16 on
    the CPU is emulated and slower than float32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def train(config: LMConfig) -> dict:
    """Fit, then (on global rank 0) export embeddings, predictions and metrics. Returns the metrics.

    In phases, each timed (``metrics.json`` "phase_seconds"): read the inputs and build the profiles
    (:func:`_inputs`), build the module and its frozen layers' text states (:func:`_module`), build the trainer
    (:func:`_trainer`), fit (resuming a checkpoint of the same inputs), then export (:func:`export`)."""
    import lightning as L
    import torch

    began = time.perf_counter()
    phases: dict[str, float] = {}
    L.seed_everything(config.seed, workers=True)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them; no effect on CPU
    torch.set_num_threads(trainer_threads(config))
    print(f"[lm] {torch.get_num_threads()} thread(s) for the whole fit", file=sys.stderr, flush=True)

    frames, profiles, datamodule, users, item_ids, pairs = _inputs(config)
    phases["profiles"] = time.perf_counter() - began
    module, text_seconds = _module(config, frames, datamodule)
    phases["start"] = time.perf_counter() - began - phases["profiles"] - (text_seconds or 0.0)
    if text_seconds is not None:
        phases["text_states"] = text_seconds
    trainer, best, resume, resuming = _trainer(config, datamodule)

    start = time.perf_counter()
    trainer.fit(module, datamodule, ckpt_path=str(resume) if resuming else None, weights_only=True)  # no pickle
    seconds = phases["train"] = time.perf_counter() - start
    metrics = {
        "best_val_rmse": float(best.best_model_score) if best.best_model_score is not None else None,
        "best_checkpoint": best.best_model_path,
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        **pairs,
        "resumed": resuming,
        "train_seconds": seconds,
        "world_size": trainer.world_size,
        "precision": _precision(config),
        "recipe": module.recipe(),
        "encoder": config.encoder if config.encoder_config is None else "random (encoder_config)",
        "parameters": module.net.trainable_parameters()[1],
        "trainable_parameters": module.net.trainable_parameters()[0],
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "peak_rss_gib": _peak_rss_gib(),
        "train_samples_per_second": trainer.global_step
        * config.batch_size
        * config.accumulate_grad_batches
        * trainer.world_size
        / max(seconds, 1e-9),
    }
    if trainer.is_global_zero:
        start = time.perf_counter()
        out = Path(config.output_dir)
        exported = export(
            module,
            datamodule,
            profiles,
            frames,
            users,
            item_ids,
            best.best_model_path or str(resume),
            out,
            readout_folds=config.readout_folds,
            seed=config.seed,
            device=str(trainer.strategy.root_device),
            bf16=_precision(config).startswith("bf16"),
        )
        metrics.update(exported)
        phases["export"] = time.perf_counter() - start
        metrics["peak_rss_gib"] = _peak_rss_gib()  # export holds every profile's vector: its peak counts too
        metrics["phase_seconds"] = {name: round(value, 2) for name, value in phases.items()}
        metrics["cpu_seconds"] = time.process_time()  # every thread of this process, from its start
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _inputs(config: LMConfig):
    """The folds and items from ``data_dir``, the profiles and the data module set up for fitting, and the
    training pairs' counts (with the budget, when ``max_train_pairs`` trains fewer: the report's cost table
    says so)."""
    import pandas as pd

    data = Path(config.data_dir)
    empty = pd.DataFrame(
        {"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str), "rating": pd.Series(dtype=float)}
    )
    frames = {
        name: pd.read_parquet(data / f"{name}.parquet") if (data / f"{name}.parquet").exists() else empty
        for name in ("train", "validation", "test")
    }
    items_path = data / "items.parquet"
    items = pd.read_parquet(items_path) if items_path.exists() else None
    profiles, datamodule, users, item_ids = data_module(config, frames, items)
    datamodule.setup("fit")
    pairs = {"train_pairs": len(frames["train"]), "train_pairs_trained": datamodule.datasets["train"].pairs}
    if pairs["train_pairs_trained"] < pairs["train_pairs"]:
        pairs["budget"] = {
            "trained": pairs["train_pairs_trained"],
            "of": pairs["train_pairs"],
            "unit": "training pairs per epoch",
            "setting": "max_train_pairs",
        }
        print(
            f"[lm] training on {pairs['train_pairs_trained']:,} of {pairs['train_pairs']:,} training pairs per epoch "
            f"(max_train_pairs, stratified by user, seeded); profiles and the readout read all of them",
            file=sys.stderr,
            flush=True,
        )
    return frames, profiles, datamodule, users, item_ids, pairs


def _module(config: LMConfig, frames: dict, datamodule):
    """The Lightning module (the config whole, and what the training ratings decide), with its frozen layers'
    text states computed or read from the text-state cache; and the seconds those took (None: no frozen
    layers)."""
    from models.lm.module import TwoTowerModule

    module = TwoTowerModule(  # the config whole; besides it, what the training ratings decide
        config,
        rating_mean=float(frames["train"]["rating"].mean()),
        positive_threshold=min(config.positive_threshold, float(frames["train"]["rating"].max())),
    )
    precision = _precision(config)
    if precision != config.precision and config.precision != "auto":
        print(f"[lm] {config.precision} asked, {precision} used: this CPU has no native bfloat16", file=sys.stderr)
    print(f"[lm] recipe: {module.recipe()}, {precision}", file=sys.stderr, flush=True)
    if config.freeze_layers <= 0:
        return module, None
    start = time.perf_counter()
    cache = text_state_cache(config, module, datamodule.tokenizer) if config.cache_frozen else None
    counts = module.attach_tokens(datamodule.tokens, cache, keep=config.cache_frozen)
    if counts and config.cache_frozen:
        tokens = datamodule.tokens
        print(
            f"[lm] {len(tokens.ids)} profiles from {counts['pieces']} text pieces: {counts['encoded']} encoded by "
            f"the {config.freeze_layers} frozen layers, {counts['pieces'] - counts['encoded']} read from the "
            f"text-state cache{'' if cache is not None else ' (none: states kept for this run only)'}, "
            f"in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return module, time.perf_counter() - start


def _trainer(config: LMConfig, datamodule):
    """The Lightning trainer (checkpoints, early stopping on validation RMSE, loggers, the progress lines and
    the guards that stop it), its best-checkpoint callback, the resume checkpoint and whether it resumes (a
    ``last.ckpt`` of the same inputs and settings; any other is removed)."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    out = Path(config.output_dir)
    batches = len(datamodule.train_dataloader())
    if isinstance(config.limit_train_batches, float):
        batches = max(1, int(batches * config.limit_train_batches))
    else:
        batches = min(batches, config.limit_train_batches)
    steps_per_epoch = max(1, batches // config.accumulate_grad_batches)
    total_steps = steps_per_epoch * config.max_epochs
    if config.max_steps > 0:
        total_steps = min(total_steps, config.max_steps)
    # a run shorter than an epoch validates where it stops, so that best.ckpt and early stopping have val_rmse
    val_check = (
        min(batches, config.max_steps * config.accumulate_grad_batches)
        if 0 < config.max_steps < steps_per_epoch
        else None
    )

    parent = os.getppid()

    class ParentGone(Callback):  # the run that started this trainer is gone (killed): stop, do not train on
        def on_train_batch_start(self, *args):
            if os.getppid() != parent:
                print("[lm] the run that started this trainer is gone: stopping", file=sys.stderr, flush=True)
                os._exit(143)

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
        callbacks=[
            best,
            last,
            EarlyStopping(monitor="val_rmse", mode="min", patience=config.patience, check_on_train_epoch_end=False),
            FailAfter(),
            ParentGone(),
            progress_callback()(config.log_every_n_steps, total_steps, config.batch_size),
        ],
        val_check_interval=val_check,
        logger=loggers,
        log_every_n_steps=10,
        enable_progress_bar=config.progress_bar,
        enable_model_summary=False,  # the recipe line says what trains; the training line where
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
    return trainer, best, resume, resuming


def text_state_cache(config: LMConfig, module, tokenizer):
    """The workspace's per-text frozen-state cache for this encoder (``models.lm.text_cache``), None when the
    config names no folder."""
    if not config.text_cache or not module.net.can_split():
        return None
    from models.lm.text_cache import TextStateCache, encoder_key, tokenizer_digest

    net = module.net
    frozen = [("embeddings", net.encoder.embeddings)] + [
        (f"layer{n}", layer) for n, layer in enumerate(net.encoder.encoder.layer[: net.frozen])
    ]
    parameters = [(f"{prefix}.{name}", p) for prefix, m in frozen for name, p in m.state_dict().items()]
    key = encoder_key(
        parameters,
        net.encoder.config.to_json_string(use_diff=False),
        tokenizer_digest(tokenizer),
        net.frozen,
        config.max_length,
    )
    return TextStateCache(config.text_cache, key)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _peak_rss_gib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_callback():
    """The ProgressLog class (Lightning imported on first use)."""
    from lightning.pytorch.callbacks import Callback

    class ProgressLog(Callback):
        """A plain line every ``every`` optimizer steps and after each validation (step, loss, samples/s, ETA),
        on stderr, flushed: readable in a non-terminal log (global rank 0 only)."""

        def __init__(self, every: int, total_steps: int, batch_size: int):
            self.every, self.total, self.batch_size = every, total_steps, batch_size
            self.start = self.last_time = None
            self.last_step = 0

        def _print(self, trainer, text: str) -> None:
            if trainer.is_global_zero:
                print(f"[lm] {text}", file=sys.stderr, flush=True)

        def on_train_start(self, trainer, module):
            self.start = self.last_time = time.perf_counter()
            self.last_step = trainer.global_step
            self._print(
                trainer,
                f"training: {self.total} steps of {self.batch_size} pairs ({trainer.world_size} process(es) on "
                f"{trainer.strategy.root_device.type})",
            )

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            step = trainer.global_step
            if step == self.last_step or step % self.every:
                return
            now = time.perf_counter()
            rate = (step - self.last_step) * self.batch_size * trainer.world_size / max(now - self.last_time, 1e-9)
            done = step / max(1, self.total)
            eta = (now - self.start) / max(done, 1e-9) * (1 - done)
            loss = trainer.callback_metrics.get("train_loss")
            loss_text = f"loss {float(loss):.4f} " if loss is not None else ""
            self._print(
                trainer,
                f"epoch {trainer.current_epoch + 1} step {step}/{self.total} ({100 * done:.0f}%) {loss_text}"
                f"| {rate:.1f} samples/s | ETA {_duration(eta)}",
            )
            self.last_step, self.last_time = step, now

        def on_validation_end(self, trainer, module):
            rmse = trainer.callback_metrics.get("val_rmse")
            if rmse is not None and not trainer.sanity_checking:
                self._print(trainer, f"validation at step {trainer.global_step}: RMSE {float(rmse):.4f}")

    return ProgressLog


def data_module(config: LMConfig, frames: dict, items):
    """(training profiles, the data module over ``frames``' pairs and every exported profile, exported user ids,
    exported item ids): what training and export read. ``frames``: train (with text), validation, test."""
    from transformers import AutoTokenizer

    from models.lm.data import PairDataModule
    from models.lm.network import resolve_encoder
    from models.lm.profiles import build_profiles

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
        mixed_negatives=config.mixed_negatives,
        length_buckets=config.length_buckets,
        pin_memory=config.accelerator in ("gpu", "cuda") or (config.accelerator == "auto" and _cuda()),
        item_metadata_dropout=config.item_metadata_dropout,
        max_train_pairs=config.max_train_pairs,
    )
    return profiles, datamodule, users, item_ids


def inputs_fingerprint(config: LMConfig) -> str:
    """sha256 of the settings and input files: a checkpoint is resumed only by a run with the same ones."""
    import hashlib

    digest = hashlib.sha256(
        config.model_dump_json(exclude={"output_dir", "progress_bar", "num_workers", "text_cache"}).encode()
    )
    for path in sorted(Path(config.data_dir).glob("*.parquet")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


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


def export(
    module,
    datamodule,
    profiles,
    frames,
    users,
    item_ids,
    checkpoint: str,
    out: Path,
    *,
    readout_folds: int = 5,
    seed: int = 0,
    device: str = "cpu",
    bf16: bool = False,
) -> dict:
    """The rating readout, embeddings and rating statistics of every training user and catalogue item (full
    profiles), rating predictions for validation and test, and the readout's out-of-fold predictions of the
    training pairs (``predictions_train_oof.parquet``). Every profile is encoded once, for the readout and the
    export."""
    import pandas as pd
    import torch

    if checkpoint and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    module.eval().to(device)  # encode every profile where training ran (a GPU encodes them in seconds)
    start = time.perf_counter()
    vectors = module.encode_tokens(datamodule.tokens, bf16=bf16)
    print(
        f"[lm] encoded {len(vectors)} profiles on {device} in {_duration(time.perf_counter() - start)}",
        file=sys.stderr,
        flush=True,
    )
    module.to("cpu")
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    stats = np.array([profiles.rating_stats(key) for key in datamodule.tokens.keys], dtype=np.float64)
    validation = datamodule.datasets["validation"]
    head = module.rate_vectors(vectors[validation.users], vectors[validation.items])
    readout = fit_readout(vectors, stats, datamodule.datasets, head)
    np.savez(out / "readout.npz", **readout)
    strengths = (float(readout["stat_alpha"]), float(readout["alpha"]))
    oof = cross_fit_readout(vectors, stats, datamodule.datasets, readout_folds, seed, strengths)
    readout_seconds = time.perf_counter() - start
    train_pairs = frames["train"][["user_id", "item_id"]].astype(str)
    train_pairs.assign(prediction=oof).to_parquet(out / "predictions_train_oof.parquet", index=False)
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
        "readout_vector_val_mse": float(readout["vector_val_mse"]),
        "readout_vector_stage": bool(readout["vector_stage"]),
        "head_val_mse": float(readout["head_val_mse"]),
        "encode_seconds": round(encode_seconds, 2),
        "readout_seconds": round(readout_seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.lm.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, type=Path, help="JSON file with the LMConfig fields")
    args = parser.parse_args(argv)
    # Lightning's informational lines (devices found, seed set, batch-limit notes) are noise in a run's log;
    # its warnings still show. The trainer's own lines say what runs where.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    config = LMConfig.model_validate_json(args.config.read_text())
    metrics = train(config)
    if metrics.get("users") is not None:  # the caller reads metrics.json; a reader of the log gets one line
        print(
            f"[lm] done: validation MSE of the readout {metrics['readout_val_mse']:.4f} (rating statistics alone "
            f"{metrics['readout_stats_val_mse']:.4f}, with the vectors {metrics['readout_vector_val_mse']:.4f}"
            + ("" if metrics["readout_vector_stage"] else ": worse, so the readout uses the statistics alone")
            + f"); metrics in {Path(config.output_dir) / 'metrics.json'}",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
