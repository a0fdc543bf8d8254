"""The LightningModule (``TwoTowerModule``): trains the two-tower network on ratings (MSE) and retrieval (an
in-batch sampled softmax with logQ correction, rating-threshold positives, masked false negatives and optional
mixed negatives: :func:`retrieval_loss`)."""

from __future__ import annotations

import sys
import time

import lightning as L
import numpy as np
import torch
from torch import nn

from models.lm.config import LMConfig
from models.lm.network import TwoTower, build_encoder

PROGRESS_SECONDS = 30.0  # long loops print a progress line at most this often


class PieceStates:
    """The frozen layers' token states of the pieces of one ``ProfileTokens`` (``models.lm.data``), and how to
    assemble a profile from them.

    With the lower layers frozen, the frozen layers read each piece of a profile alone (a review, the
    metadata, the rating history) and the trainable upper layers read the profile as its pieces' states
    concatenated (``ProfileTokens.layout``): so a piece is encoded once per dataset and encoder, whatever
    profiles, fold variants and splits hold it (``models.lm.text_cache``), never once per profile.

    ``states``: float16 (or float32) rows, piece after piece, each piece as many rows as the most any profile
    uses of it; ``offsets``: each piece's first row."""

    def __init__(self, tokens, states: torch.Tensor, offsets: np.ndarray):
        self.tokens, self.states, self.offsets = tokens, states, offsets
        self._rows: dict[int, np.ndarray] = {}

    @staticmethod
    def used(tokens) -> np.ndarray:
        """Per piece, the most tokens any profile of ``tokens`` takes of it (0: in no profile)."""
        used = np.zeros(len(tokens.pieces), dtype=np.int64)
        for layout in tokens.layout:
            for piece, take in layout:
                used[piece] = max(used[piece], take)
        return used

    @classmethod
    def compute(
        cls, net, tokens, cache=None, batch: int = 64, dtype: torch.dtype = torch.float16, pieces=None
    ) -> tuple[PieceStates, dict]:
        """The states of ``pieces`` (rows of ``tokens.pieces``; default: every piece a profile uses): read from
        ``cache`` (a ``TextStateCache``) where it holds them, the rest encoded by ``net``'s frozen layers (each
        piece alone, whole, as tokenised) and added to it. Returns the states and a count of pieces by origin."""
        from models.lm.text_cache import text_hash

        used = cls.used(tokens)
        wanted = np.flatnonzero(used) if pieces is None else np.asarray(sorted(set(pieces)), dtype=np.int64)
        hashes = {int(p): text_hash(tokens.piece_texts[p]) for p in wanted}
        stored = cache.load(list(hashes.values())) if cache is not None else {}
        missing = [int(p) for p in wanted if hashes[int(p)] not in stored]
        fresh = _encode_pieces(net, tokens, missing, batch, dtype)
        if cache is not None and missing:
            cache.save([hashes[p] for p in missing], [fresh[p].astype(np.float16) for p in missing])
        offsets = np.zeros(len(tokens.pieces) + 1, dtype=np.int64)
        sizes = np.zeros(len(tokens.pieces), dtype=np.int64)
        sizes[wanted] = used[wanted] if pieces is None else [len(tokens.pieces[p]) for p in wanted]
        offsets[1:] = np.cumsum(sizes)
        states = torch.zeros((int(offsets[-1]), net.dim), dtype=dtype)
        for p in wanted:
            p = int(p)
            source = fresh[p] if p in fresh else stored[hashes[p]]
            states[offsets[p] : offsets[p + 1]] = torch.from_numpy(np.array(source[: sizes[p]])).to(dtype)
        return cls(tokens, states, offsets), {"pieces": len(wanted), "encoded": len(missing)}

    def profile_rows(self, row: int) -> np.ndarray:
        """Rows of ``states`` that make up profile ``row``, in order."""
        found = self._rows.get(row)
        if found is None:
            parts = [np.arange(self.offsets[p], self.offsets[p] + take) for p, take in self.tokens.layout[row]]
            found = self._rows[row] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return found

    def gather(self, rows: list[int], length: int) -> torch.Tensor:
        """(len(rows), length, dim) float32 states of profile ``rows``, zero-padded to ``length``."""
        parts = [self.profile_rows(r) for r in rows]
        lengths = np.array([len(p) for p in parts])
        out = torch.zeros((len(rows), length, self.states.shape[1]), dtype=torch.float32)
        if lengths.sum():
            which = torch.from_numpy(np.repeat(np.arange(len(rows)), lengths))
            position = torch.from_numpy(np.concatenate([np.arange(n) for n in lengths]))
            out[which, position] = self.states[torch.from_numpy(np.concatenate(parts))].float()
        return out


def _encode_pieces(net, tokens, pieces: list[int], batch: int, dtype=torch.float16) -> dict[int, np.ndarray]:
    """The frozen states (``dtype``) of each of ``pieces`` (rows of ``tokens.pieces``), each encoded alone."""
    from models.lm.data import pad_sequences

    out: dict[int, np.ndarray] = {}
    if not pieces:
        return out
    order = sorted(pieces, key=lambda p: len(tokens.pieces[p]))  # similar lengths together: less padding
    device = next(net.parameters()).device
    began = last = time.perf_counter()
    for start in range(0, len(order), batch):
        if time.perf_counter() - last > PROGRESS_SECONDS:
            last, done = time.perf_counter(), start / len(order)
            print(
                f"[lm] encoding text pieces with the frozen layers: {start}/{len(order)} ({100 * done:.0f}%), "
                f"ETA {(last - began) / done * (1 - done):.0f} s",
                file=sys.stderr,
                flush=True,
            )
        rows = order[start : start + batch]
        ids, mask = pad_sequences([tokens.pieces[p] for p in rows], tokens.pad_id)
        hidden = net.frozen_states(ids.to(device), mask.to(device)).to("cpu", dtype).numpy()
        for n, p in enumerate(rows):
            out[p] = hidden[n, : len(tokens.pieces[p])]
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

    Its settings are the LM's config, whole (``config``: an :class:`LMConfig` or its fields as a dict; single
    fields may be given as keywords, ``TwoTowerModule(encoder_config=..., freeze_layers=1)``); besides it, what
    the training data decides: ``rating_mean`` (the rating head's starting bias) and ``positive_threshold``
    (the config's, capped at the highest training rating; None: the config's). Lightning keeps them with every
    checkpoint (``save_hyperparameters``: the config as JSON values, so checkpoints load with
    ``weights_only=True``)."""

    def __init__(
        self,
        config: LMConfig | dict | None = None,
        *,
        rating_mean: float = 0.0,
        positive_threshold: float | None = None,
        head_hidden: int = 256,
        **settings,
    ):
        super().__init__()
        base = config.model_dump() if isinstance(config, LMConfig) else dict(config or {})
        self.config = config = LMConfig.model_validate({**base, **settings})
        threshold = config.positive_threshold if positive_threshold is None else float(positive_threshold)
        self.save_hyperparameters(
            {
                "config": config.model_dump(mode="json"),
                "rating_mean": rating_mean,
                "positive_threshold": threshold,
                "head_hidden": head_hidden,
            }
        )
        self.net = TwoTower(
            build_encoder(config.encoder, config.encoder_config), head_hidden=head_hidden, rating_mean=rating_mean
        )
        self.net.train()  # from_pretrained returns the encoder in eval mode (dropout off)
        if config.lora_rank > 0:
            if config.freeze_layers:
                raise ValueError("LoRA freezes every pretrained weight itself: set freeze_layers to 0 with lora_rank")
            self.net.add_lora(config.lora_rank, config.lora_alpha, config.lora_dropout, tuple(config.lora_targets))
        self.net.freeze_lower_layers(config.freeze_layers)
        if config.trainable == "ffn":  # the unfrozen layers' attention stays as pretrained: no backward through it
            if config.lora_rank > 0:
                raise ValueError('trainable="ffn" freezes attention weights; LoRA adapts them: use one or the other')
            for layer in self.net.encoder.encoder.layer[self.net.frozen :]:
                for p in layer.attention.parameters():
                    p.requires_grad_(False)
        if config.dropout is not None:  # the encoder's and the head's dropout (not LoRA's own)
            for name, module in self.net.named_modules():
                if isinstance(module, nn.Dropout) and "lora_" not in name:
                    module.p = float(config.dropout)
        self._sums: dict[str, torch.Tensor] = {}
        self._pieces: PieceStates | None = None  # the frozen layers' states of the attached tokens' pieces
        self._tokens = None  # the ProfileTokens whose profiles batches address by row (attach_tokens)

    def attach_tokens(self, tokens, cache=None, keep: bool = True, batch: int = 64) -> dict | None:
        """Read ``tokens``' profiles (a ``ProfileTokens``) piece by piece: the frozen lower layers see each piece
        alone, the trainable layers the concatenation (:class:`PieceStates`). ``keep``: compute every piece's
        states once now (from ``cache``, a ``TextStateCache``, where it holds them) and reuse them at every step;
        otherwise each batch computes its pieces' states afresh (the same numbers, no storage). Batches whose
        rows index ``tokens`` then take this path. Returns the count of pieces by origin when states were
        kept, None when the encoder cannot be split (no frozen layers, or not BERT-style: profiles are then
        encoded whole)."""
        if not self.net.can_split():
            return None
        self._tokens = tokens
        if not keep:
            return {"pieces": 0, "encoded": 0}
        self._pieces, counts = PieceStates.compute(self.net, tokens, cache, batch)
        return counts

    def cache_frozen_states(self, tokens, batch: int = 64) -> bool:
        """Compute once the frozen layers' states of every piece of ``tokens`` (no disk cache); whether the
        encoder could be split (:meth:`attach_tokens`)."""
        return self.attach_tokens(tokens, None, True, batch) is not None

    def _states(self, rows: list[int], length: int) -> torch.Tensor:
        if self._pieces is not None:
            return self._pieces.gather(rows, length)
        needed = {piece for row in rows for piece, _ in self._tokens.layout[row]}
        states, _ = PieceStates.compute(self.net, self._tokens, None, dtype=torch.float32, pieces=needed)
        return states.gather(rows, length)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Profile vectors of a padded batch; ``rows`` (profile rows of the attached tokens) assembles them from
        their pieces' frozen states."""
        if self._tokens is not None and rows is not None:
            hidden = self._states(rows.tolist(), mask.shape[1]).to(self.device)
            return self.net.encode_from_frozen(hidden, mask)
        return self.net.encode(ids, mask)

    def encode_tokens(self, tokens, batch: int = 64, bf16: bool = False):
        """Vectors of every profile in ``tokens`` (row order) as a float32 numpy array, without gradients;
        piece by piece when ``tokens`` are the attached ones; ``bf16``: under bfloat16 autocast (as trained)."""
        attached = self._tokens is not None and self._tokens is tokens
        # one encoding per distinct token sequence: identical profiles (every cold item without metadata reads
        # "no description") get identical vectors, not vectors that differ by their batch's padding numerics
        first: dict[tuple[int, ...], int] = {}
        source = np.array([first.setdefault(tuple(ids), row) for row, ids in enumerate(tokens.ids)])
        distinct = sorted(first.values(), key=lambda row: len(tokens.ids[row]))  # similar lengths: less padding
        encoded = np.zeros((len(tokens.ids), 2 * self.net.dim), dtype=np.float32)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(distinct), batch):
                rows = distinct[start : start + batch]
                ids, mask = tokens.pad(rows)
                out = self.encode(ids.to(self.device), mask.to(self.device), torch.tensor(rows) if attached else None)
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
            self.net.similarity(u, items) / self.config.temperature,
            batch["item_index"],
            batch["rating"],
            batch["user_entity"],
            batch["item_entity"],
            batch["column_entity"],
            batch["column_logq"] if self.config.logq_correction else torch.zeros_like(batch["column_logq"]),
            self.hparams.positive_threshold,
        )
        loss = mse + self.config.ranking_weight * ranking
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
        h = self.config
        if h.lora_rank > 0:
            name = f"LoRA r={h.lora_rank} on {', '.join(h.lora_targets)}"
        elif h.freeze_layers > 0:
            name = f"lower {h.freeze_layers} layers frozen"
            if h.trainable == "ffn" and h.freeze_layers < len(self.net.encoder.encoder.layer):
                name += ", the feed-forward blocks above them trained"
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
                {"params": groups["decay"], "weight_decay": self.config.weight_decay},
                {"params": groups["no_decay"], "weight_decay": 0.0},
                {"params": groups["head"], "weight_decay": self.config.weight_decay, "lr": self.config.head_lr},
            ],
            lr=self.config.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(total * self.config.warmup_ratio)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
