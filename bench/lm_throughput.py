"""LM fine-tuning throughput: a plain PyTorch + transformers loop against reclab's trainer, side by side.

Same data (the default dataset's random-split training pairs and their leave-fold-out profiles), same
encoder (all-MiniLM-L6-v2, no pooler), same batch size and loss (rating MSE + in-batch ranking), same
threads. The plain loop tokenises each batch's texts and encodes one user and one item sequence per pair.
Reclab tokenises each distinct profile once, keeps pairs of one user profile together, encodes each distinct
profile once per batch and pads dynamically; "cpu profile" also freezes the lower layers as the cpu profile
does and computes their states once per profile (that one-off cost is reported, and amortised over one epoch
of the training pairs in the last column).

    python bench/lm_throughput.py [--steps 20] [--lengths 64 128] [--out bench/results/lm_throughput.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def training_data():
    from bench.common import prepared
    from readers import DEFAULT_DATASET
    from tasks.split import training_reviews

    return training_reviews(prepared(DEFAULT_DATASET, protocols=("random",)), "random_s0")


def plain_loop(train, profiles, tokenizer, length: int, batch: int, steps: int) -> float:
    """Samples/s of a straightforward loop (timed after 2 warm-up steps)."""
    import torch

    from models.lm.network import TwoTower, build_encoder

    torch.manual_seed(0)
    net = TwoTower(build_encoder("minilm"), rating_mean=float(train["rating"].mean())).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-5)
    pairs = train.sample(frac=1.0, random_state=0).reset_index(drop=True)
    folds = profiles.pair_fold
    start = None
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        rows = pairs.iloc[step * batch : (step + 1) * batch]
        f = [int(folds.loc[(u, i)]) for u, i in zip(rows["user_id"], rows["item_id"], strict=True)]
        users = tokenizer(
            [profiles.user(u, k) for u, k in zip(rows["user_id"], f, strict=True)],
            padding=True,
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )
        items = tokenizer(
            [profiles.item(i, k) for i, k in zip(rows["item_id"], f, strict=True)],
            padding=True,
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )
        u = net.encode(users["input_ids"], users["attention_mask"])
        v = net.encode(items["input_ids"], items["attention_mask"])
        pred = net.rate(u, v)
        target = torch.tensor(rows["rating"].to_numpy(), dtype=torch.float32)
        loss = torch.nn.functional.mse_loss(pred, target) + 0.5 * torch.nn.functional.cross_entropy(
            net.similarity(u, v) / 0.05, torch.arange(len(rows))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def reclab_trainer(train, profiles, tokenizer, length: int, batch: int, steps: int, freeze: int) -> tuple:
    """Samples/s of reclab's LightningModule + DataModule under a Lightning Trainer (after 2 warm-up steps),
    and the seconds spent caching the frozen layers' states (0 without frozen layers)."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from models.lm.data import PairDataModule
    from models.lm.module import TwoTowerModule

    class Clock(Callback):
        def __init__(self):
            self.start, self.end, self.pairs = None, None, 0

        def on_train_batch_start(self, trainer, module, batch_data, batch_idx):
            if batch_idx == 2:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch_data, batch_idx):
            if batch_idx >= 2:
                self.pairs += int(batch_data["rating"].shape[0])
                self.end = time.perf_counter()

    L.seed_everything(0)
    frames = {"train": train[["user_id", "item_id", "rating"]]}
    data = PairDataModule(frames, profiles, tokenizer, length, batch, pairs_per_user=4)
    module = TwoTowerModule(rating_mean=float(train["rating"].mean()), freeze_layers=freeze)
    loader = _train_loader(data)
    start = time.perf_counter()
    cache_seconds = time.perf_counter() - start if module.cache_frozen_states(data.tokens) else 0.0
    clock = Clock()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps + 2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[clock],
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    return clock.pairs / (clock.end - clock.start), cache_seconds


def _train_loader(data):
    data.setup()
    return data.train_dataloader()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per measurement")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm_throughput.json")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from models.lm.config import PROFILES
    from models.lm.network import resolve_encoder
    from models.lm.profiles import build_profiles

    train = training_data()
    profiles = build_profiles(train)
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    results = {
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "steps": args.steps,
        "rows": [],
        "cpu_profile_freeze_layers": PROFILES["cpu"]["freeze_layers"],
        "training_pairs": len(train),
    }
    freeze = PROFILES["cpu"]["freeze_layers"]
    print(
        f"{'tokens':>7}{'plain s/s':>11}{'reclab same work':>18}{'ratio':>7}{'reclab cpu profile':>20}{'ratio':>7}"
        f"{'cache s':>9}{'epoch s/s':>11}{'ratio':>7}"
    )
    for length in args.lengths:
        plain = plain_loop(train, profiles, tokenizer, length, args.batch, args.steps)
        same, _ = reclab_trainer(train, profiles, tokenizer, length, args.batch, args.steps, freeze=0)
        cpu, cache = reclab_trainer(train, profiles, tokenizer, length, args.batch, args.steps, freeze=freeze)
        epoch = len(train) / (cache + len(train) / cpu)  # one epoch of the training pairs, cache included
        results["rows"].append(
            {
                "tokens": length,
                "plain": plain,
                "reclab_full": same,
                "reclab_cpu_profile": cpu,
                "cache_seconds": cache,
                "reclab_cpu_profile_epoch": epoch,
                "ratio_full": same / plain,
                "ratio_cpu_profile": cpu / plain,
                "ratio_cpu_profile_epoch": epoch / plain,
            }
        )
        print(
            f"{length:>7}{plain:>11.1f}{same:>18.1f}{same / plain:>7.2f}{cpu:>20.1f}{cpu / plain:>7.2f}"
            f"{cache:>9.0f}{epoch:>11.1f}{epoch / plain:>7.2f}"
        )
    write_json(args.out, results)


if __name__ == "__main__":
    main()
