"""The LM's typed configuration: every setting of one fine-tuning run, and the ``cpu``/``gpu`` profiles that
override a few of them. Read by the trainer (``models.lm.train``) and by the recommender that launches it."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError


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
    # the share of training pairs whose item (when it has metadata) reads its metadata-only profile, as a cold
    # item does: training for the shift from warm items (reviews) to cold ones (metadata alone)
    item_metadata_dropout: float = Field(0.0, ge=0, lt=1)
    # Leave-fold-out variants of training profiles: a training pair reads profiles built from the other
    # folds' reviews, (folds - 1) / folds of them, so more folds make them closer to the full profiles that
    # prediction reads, at the cost of more profiles to encode. Default dataset, cpu profile, validation MSE
    # of the readout on random seeds 0, 1, 2: 2 folds 0.766 / 0.659 / 0.755, 4 folds 0.760 / 0.661 / 0.750
    # (frozen-state cache 33 s -> 80 s).
    folds: int = Field(4, ge=2)
    # folds of the readout's out-of-fold predictions of the training pairs (what the fusion's stacking
    # blender learns from; models.lm.readout.cross_fit_readout)
    readout_folds: int = Field(5, ge=2)
    # the most training pairs an epoch trains on, drawn once per fit (seeded, stratified by user:
    # models.lm.data.budget_rows); None: every pair. Profiles still read every training review and the readout
    # every pair. The cpu profiles set it (the LM's cost then stops growing with the data); the gpu ones lift it.
    max_train_pairs: int | None = Field(None, ge=1)
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
    # retrieval training (models.lm.module.retrieval_loss): pairs rated at or above this are positives (capped
    # at the training fold's highest rating, so implicit 1.0-only data keeps every pair); catalogue items drawn
    # uniformly per batch as extra negatives (mixed negative sampling); popularity mixed into the ranking
    # score with the weight of this grid that validation NDCG@k prefers (0: cosine alone)
    positive_threshold: float = 4.0
    logq_correction: bool = True  # False: the plain in-batch softmax (for ablations)
    mixed_negatives: int = Field(0, ge=0)
    popularity_weights: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    freeze_layers: int = Field(0, ge=0)  # freeze embeddings + the lowest N transformer layers
    dropout: float | None = Field(None, ge=0, lt=1)  # the encoder's and head's dropout (None: the encoder's own)
    # what trains in the unfrozen layers: "all", or "ffn": only their feed-forward blocks (attention frozen, so
    # no backward pass runs through it); pooling and the rating head train either way
    trainable: Literal["all", "ffn"] = "all"
    # LoRA adapters (peft) instead: rank (0: off), scaling, dropout and the encoder's linear layers they wrap
    lora_rank: int = Field(0, ge=0)
    lora_alpha: float = 16.0
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_targets: tuple[str, ...] = ("query", "value")
    # With lower layers frozen (BERT-style encoders), the frozen layers read each piece of a profile (review,
    # metadata, rating history) alone and the trainable layers the pieces' states concatenated
    # (models.lm.module.PieceStates). cache_frozen: compute each piece's states once and keep them (False:
    # afresh at every step, the same numbers); text_cache: the folder where they are kept across splits and
    # runs (models.lm.text_cache; the LM recommender sets <workspace>/text_states; None: this run only).
    cache_frozen: bool = True
    text_cache: str | None = None
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float = 1.0
    patience: int = Field(2, ge=1)  # early stopping on validation RMSE
    checkpoint_every_n_steps: int = Field(50, ge=1)  # last.ckpt cadence, for resuming mid-epoch
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    # "auto": bf16-mixed on GPU, 32-true on CPU; "bf16-mixed" on a CPU without native bfloat16 (AMX or
    # AVX512-BF16, which oneDNN uses) runs 32-true, and says so
    precision: str = "auto"
    # the trainer's torch CPU threads, fixed for the whole fit (0: half the cores, the other half left to the
    # fits beside it; models.lm.train.trainer_threads)
    num_threads: int = Field(0, ge=0)
    num_workers: int = 0  # DataLoader worker processes (0: batches are built in the training process)
    # training batches of similar profile lengths (less padding): that many batches per length-sorted chunk
    length_buckets: int = Field(0, ge=0)
    seed: int = 0
    progress_bar: bool = True  # Lightning's bar (a terminal); progress lines are logged either way
    log_every_n_steps: int = Field(50, ge=1)  # a progress line (step, loss, samples/s, ETA) every N steps


# Training pairs per fit on the cpu profiles: at the cpu profile's ~200 pairs/s on 2 cores about 8 minutes, so
# that a million-rating split's fine-tuning is bounded (docs/benchmarks.md "A million ratings"); the default
# dataset's largest training fold (9,291 pairs) is far below it.
CPU_PAIR_BUDGET = 100_000

PROFILES: dict[str, dict] = {
    # Fits on 2 CPU cores in about a minute: shorter profiles, one epoch, all but the top layer frozen (each
    # text piece's states computed once per workspace, see cache_frozen / text_cache), of the top layer only
    # the feed-forward block trained, no dropout, bfloat16 autocast where the CPU has it natively. Measured
    # on the default dataset's random split, one session (python bench/lm_fit.py, README "The LM's cost"):
    # validation MSE of the readout / training seconds: the whole top layer, dropout, float32 0.7611 / 93 s;
    # no dropout, bf16 0.7608 / 67 s; feed-forward only, no dropout, bf16 0.7630 / 37 s.
    "cpu": {
        "max_length": 64,
        "max_reviews": 4,
        "freeze_layers": 5,
        "max_epochs": 1,
        "batch_size": 32,
        "trainable": "ffn",
        "dropout": 0.0,
        "precision": "bf16-mixed",
        "max_train_pairs": CPU_PAIR_BUDGET,
    },
    # Parameter-efficient: LoRA adapters (rank 8 on the attention's query and value) on every layer, the
    # pretrained weights frozen; otherwise as "cpu".
    "cpu-lora": {
        "max_length": 64,
        "max_reviews": 4,
        "max_epochs": 1,
        "batch_size": 32,
        "lora_rank": 8,
        "max_train_pairs": CPU_PAIR_BUDGET,
    },
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
        "length_buckets": 50,
        "num_workers": 4,
        "max_train_pairs": None,
    },
}
# LoRA on the GPU: the "gpu" profile with adapters instead of full fine-tuning
PROFILES["gpu-lora"] = {**PROFILES["gpu"], "lora_rank": 8}

# The profiles' names, spelled once: TrainConfig.lm_profile and the command line's choices read them here.
Profile = Literal["cpu", "gpu", "cpu-lora", "gpu-lora"]
assert set(get_args(Profile)) == set(PROFILES), "every profile has a name and every name a profile"


def profile_fields(profile: str | None, overrides: dict) -> dict:
    """The LMConfig fields of a profile with ``overrides`` on top, checked as LMConfig checks them: an unknown
    key or a bad value is a ``ValueError`` naming it, raised when parameters are validated, before any model
    fits (not when the LM's turn comes)."""
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown LM profile {profile!r}; known: {sorted(PROFILES)}")
    fields = {**(PROFILES[profile] if profile else {}), **overrides}
    try:
        LMConfig(**fields)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {'not a setting of the LM (models/lm/config.py LMConfig)' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in err.errors()
        )
        raise ValueError(f"LM settings ({profile or 'no'} profile with lm_overrides): {problems}") from None
    return fields
