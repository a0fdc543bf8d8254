"""The LightningModule (``TwoTowerModule``): trains the two-tower network on ratings (MSE) and retrieval (an
in-batch sampled softmax with logQ correction, rating-threshold positives, masked false negatives and optional
mixed negatives: :func:`retrieval_loss`)."""

from __future__ import annotations

import itertools
import sys
import time

import lightning as L
import torch
from torch import nn

from models.lm.network import TwoTower, build_encoder

PROGRESS_SECONDS = 30.0  # long loops print a progress line at most this often


class FrozenStates:
    """The frozen layers' token states of every profile of one ``ProfileTokens``, stored once (float16,
    unpadded, concatenated): with the lower layers frozen, a step no longer recomputes them."""

    def __init__(self, tokens, states: torch.Tensor, offsets: list[int]):
        self.tokens, self.states, self.offsets = tokens, states, offsets

    @classmethod
    def compute(cls, net, tokens, batch: int = 64) -> FrozenStates:
        lengths = [len(ids) for ids in tokens.ids]
        offsets = [0, *itertools.accumulate(lengths)]
        states = torch.zeros((offsets[-1], net.dim), dtype=torch.float16)
        order = sorted(range(len(lengths)), key=lengths.__getitem__)  # similar lengths together: less padding
        device = next(net.parameters()).device
        began = last = time.perf_counter()
        for start in range(0, len(order), batch):
            if time.perf_counter() - last > PROGRESS_SECONDS:
                last, done = time.perf_counter(), start / len(order)
                print(
                    f"[lm] caching frozen states: {start}/{len(order)} profiles ({100 * done:.0f}%), "
                    f"ETA {(last - began) / done * (1 - done):.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            rows = order[start : start + batch]
            ids, mask = tokens.pad(rows)
            hidden = net.frozen_states(ids.to(device), mask.to(device)).to("cpu", torch.float16)
            for n, row in enumerate(rows):
                states[offsets[row] : offsets[row + 1]] = hidden[n, : lengths[row]]
        return cls(tokens, states, offsets)

    def gather(self, rows: list[int], length: int) -> torch.Tensor:
        """(len(rows), length, dim) float32 states of profile ``rows``, zero-padded to ``length``."""
        out = torch.zeros((len(rows), length, self.states.shape[1]), dtype=torch.float32)
        for n, row in enumerate(rows):
            part = self.states[self.offsets[row] : self.offsets[row + 1]]
            out[n, : len(part)] = part
        return out


def retrieval_loss(
    scores: torch.Tensor,
    item_index: torch.Tensor,
    ratings: torch.Tensor,
    user_entity: torch.Tensor,
    item_entity: torch.Tensor,
    column_entity: torch.Tensor,
    column_logq: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """The sampled-softmax retrieval loss of one batch, as two-tower retrieval is trained in the literature.

    ``scores`` (pairs, columns): each pair's user against each item column of the batch (the distinct items
    of its pairs, then any mixed negatives), already divided by the temperature; ``item_index``: each pair's
    own column; ``*_entity``: user/item ids as integers (a profile's fold variants share one); ``column_logq``:
    the log of each column's expected count among the batch's columns.

    - logQ correction (Yi et al., RecSys 2019): logit = score − log E[count], so that an item is not demoted
      for being sampled as a negative as often as it is popular;
    - only pairs rated at or above ``threshold`` are positives (rows of the loss); every rating still trains
      the rating head;
    - false negatives are masked: for a pair, a column holding its own item in another profile variant, or an
      item its user rated at or above ``threshold`` in the same batch, is not a negative.

    Returns the mean cross-entropy over positive pairs (a zero that keeps the graph when there are none)."""
    positive = ratings >= threshold
    if not bool(positive.any()) or scores.shape[1] < 2:
        return scores.sum() * 0.0
    logits = scores - column_logq[None, :]
    item_of_column = item_entity[:, None] == column_entity[None, :]  # (pairs, columns)
    same_user_positive = (user_entity[:, None] == user_entity[None, :]) & positive[None, :]  # (pairs, pairs)
    users_positives = (same_user_positive.float() @ item_of_column.float()) > 0  # (pairs, columns)
    own = torch.zeros_like(users_positives)
    own[torch.arange(len(item_index), device=own.device), item_index] = True
    masked = (item_of_column | users_positives) & ~own
    logits = logits.masked_fill(masked, float("-inf"))
    return nn.functional.cross_entropy(logits[positive], item_index[positive])


class TwoTowerModule(L.LightningModule):
    """Fine-tunes a pretrained encoder as a two-tower recommender.

    Loss = MSE(rating) + ``ranking_weight`` × :func:`retrieval_loss` over the batch's item columns, with
    temperature ``temperature`` and positives rated at or above ``positive_threshold``.
    """

    def __init__(
        self,
        encoder: str = "minilm",
        encoder_config: dict | None = None,
        rating_mean: float = 0.0,
        lr: float = 5e-5,
        head_lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        ranking_weight: float = 0.5,
        temperature: float = 0.05,
        freeze_layers: int = 0,
        head_hidden: int = 256,
        positive_threshold: float = 4.0,
        lora_rank: int = 0,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.1,
        lora_targets: tuple[str, ...] = ("query", "value"),
        logq_correction: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = TwoTower(build_encoder(encoder, encoder_config), head_hidden=head_hidden, rating_mean=rating_mean)
        self.net.train()  # from_pretrained returns the encoder in eval mode (dropout off)
        if lora_rank > 0:
            if freeze_layers:
                raise ValueError("LoRA freezes every pretrained weight itself: set freeze_layers to 0 with lora_rank")
            self.net.add_lora(lora_rank, lora_alpha, lora_dropout, tuple(lora_targets))
        self.net.freeze_lower_layers(freeze_layers)
        self._sums: dict[str, torch.Tensor] = {}
        self._frozen: FrozenStates | None = None

    def cache_frozen_states(self, tokens, batch: int = 64) -> bool:
        """Compute once the frozen lower layers' output for every profile of ``tokens`` (a ``ProfileTokens``);
        batches whose rows index those tokens then run only the trainable layers. Returns whether a cache
        was built (it needs frozen layers and a BERT-style encoder)."""
        if not self.net.can_split():
            return False
        self._frozen = FrozenStates.compute(self.net, tokens, batch)
        return True

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Profile vectors of a padded batch; ``rows`` (profile rows of the cached tokens) takes the cache."""
        if self._frozen is not None and rows is not None:
            hidden = self._frozen.gather(rows.tolist(), mask.shape[1]).to(self.device)
            return self.net.encode_from_frozen(hidden, mask)
        return self.net.encode(ids, mask)

    def encode_tokens(self, tokens, batch: int = 64):
        """Vectors of every profile in ``tokens`` (row order) as a float32 numpy array, without gradients;
        uses the frozen-state cache when ``tokens`` is the one it was built from."""
        import numpy as np

        cached = self._frozen is not None and self._frozen.tokens is tokens
        # one encoding per distinct token sequence: identical profiles (every cold item without metadata reads
        # "no description") get identical vectors, not vectors that differ by their batch's padding numerics
        first: dict[tuple[int, ...], int] = {}
        source = np.array([first.setdefault(tuple(ids), row) for row, ids in enumerate(tokens.ids)])
        distinct = sorted(first.values(), key=lambda row: len(tokens.ids[row]))  # similar lengths: less padding
        encoded = np.zeros((len(tokens.ids), 2 * self.net.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(distinct), batch):
                rows = distinct[start : start + batch]
                ids, mask = tokens.pad(rows)
                out = self.encode(ids.to(self.device), mask.to(self.device), torch.tensor(rows) if cached else None)
                encoded[rows] = out.float().cpu().numpy()
        return encoded[source]

    def rate_vectors(self, u, v):
        """The trained rating head's predictions for user/item vectors (numpy, as :meth:`encode_tokens` gives),
        without gradients."""
        with torch.inference_mode():
            return self.net.rate(torch.from_numpy(u), torch.from_numpy(v)).numpy()

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        users = self.encode(batch["user_ids"], batch["user_mask"], batch.get("user_rows"))
        items = self.encode(batch["item_ids"], batch["item_mask"], batch.get("item_rows"))
        u, v = users[batch["user_index"]], items[batch["item_index"]]
        return self.net.rate(u, v), u, items

    def _common_step(self, batch: dict, stage: str) -> torch.Tensor:
        pred, u, items = self(batch)
        mse = nn.functional.mse_loss(pred, batch["rating"])
        ranking = retrieval_loss(
            self.net.similarity(u, items) / self.hparams.temperature,
            batch["item_index"],
            batch["rating"],
            batch["user_entity"],
            batch["item_entity"],
            batch["column_entity"],
            batch["column_logq"] if self.hparams.logq_correction else torch.zeros_like(batch["column_logq"]),
            self.hparams.positive_threshold,
        )
        loss = mse + self.hparams.ranking_weight * ranking
        n = batch["rating"].shape[0]
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=n, sync_dist=stage != "train")
        self.log(f"{stage}_mse", mse, batch_size=n, sync_dist=stage != "train")
        if stage != "train":
            se = ((pred - batch["rating"]) ** 2).sum()
            self._sums[stage] = self._sums.get(stage, torch.zeros(2, device=self.device)) + torch.stack(
                [se.detach(), torch.tensor(float(n), device=self.device)]
            )
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "test")

    def _log_rmse(self, stage: str) -> None:
        sums = self._sums.pop(stage, torch.zeros(2, device=self.device))
        sums = self.all_gather(sums).reshape(-1, 2).sum(0) if self.trainer.world_size > 1 else sums
        # Every rank holds the same gathered sums; sync_dist only averages identical values.
        self.log(f"{stage}_rmse", torch.sqrt(sums[0] / sums[1].clamp(min=1)), prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_rmse("val")

    def on_test_epoch_end(self) -> None:
        self._log_rmse("test")

    def recipe(self) -> str:
        """The fine-tuning recipe in words, with its trainable share (the report's cost section names it)."""
        trainable, total = self.net.trainable_parameters()
        h = self.hparams
        if h.lora_rank > 0:
            name = f"LoRA r={h.lora_rank} on {', '.join(h.lora_targets)}"
        elif h.freeze_layers > 0:
            name = f"lower {h.freeze_layers} layers frozen"
        else:
            name = "full fine-tuning"
        return f"{name} ({trainable / 1e6:.2f} M of {total / 1e6:.1f} M parameters trained)"

    def configure_optimizers(self):
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        groups = {"decay": [], "no_decay": [], "head": []}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith(("net.head", "net.attention")):  # new layers: the higher head_lr
                groups["head"].append(param)
            elif any(key in name for key in no_decay):
                groups["no_decay"].append(param)
            else:
                groups["decay"].append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": groups["decay"], "weight_decay": self.hparams.weight_decay},
                {"params": groups["no_decay"], "weight_decay": 0.0},
                {"params": groups["head"], "weight_decay": self.hparams.weight_decay, "lr": self.hparams.head_lr},
            ],
            lr=self.hparams.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(total * self.hparams.warmup_ratio)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
