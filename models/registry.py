"""THE registry of models: every model reclab trains, evaluates, fuses, bundles and serves, by name.

Each entry says which class implements it, how it is built from the typed training config, what family it
belongs to (the report's "traditional" models are every family but ``language`` and ``fusion``), whether it
reads review text, and which of its outputs the fusion blends. Training (``models.experiment``), the bundle
allowlist (``models.serving.bundle``), the fusion's candidates, the command line's ``--models`` choices and
the report's model lists all derive from :data:`REGISTRY`.

Adding a model: write its class (the contract of ``models.base``, its search space for ``models.tuning``),
then add one :class:`ModelSpec` here (docs/models.md has a worked example).
Classes are named by ``"module:Class"`` and imported when first used, so reading the registry (a ``--help``,
a parameter form) imports neither torch nor the libraries models wrap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.evaluation import RANKING_CUTOFF, Protocol
from models.lm.config import Profile, profile_fields
from models.recommenders import LightFMLoss

if TYPE_CHECKING:
    from models.base import Recommender

Task = Literal["rating", "ranking"]
Family = Literal["non-personalised", "collaborative", "hybrid", "language", "fusion"]
# The fusion lists its candidates from the richest input to the simplest (the order of its weights and of
# its grid over them), then in registry order.
FUSION_ORDER: tuple[Family, ...] = ("language", "hybrid", "collaborative", "non-personalised")


@dataclass(frozen=True)
class BuildContext:
    """What a model's construction may depend on besides the training config."""

    protocol: str  # the split's protocol ("random", "temporal", "cold_items")
    work_dir: Path  # where a model writes files (the LM's trainer inputs, checkpoints and outputs)
    k: int = RANKING_CUTOFF  # the run's ranking cut-off (EvalConfig.k)
    components: dict[str, Recommender] = field(default_factory=dict)  # models fitted before it (the fusion's)
    text_cache: Path | None = None  # the workspace's per-text encoder states, shared by its splits (the LM's)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    ``target``: its class as ``"module:Class"``; ``build(cls, config, context)``: a fresh, unfitted instance;
    ``fuse``: the tasks for which the fusion blends it (none: not a fusion candidate); ``floor``: a reference
    every model must clear, never reported as the best traditional model (the global mean); ``ablation_of``:
    the registered model this one is an ablation of (the frozen encoder of the fine-tuned LM): every report
    judges that model against it, a primary question (what the ablated part adds); ``sequential``: a next-item
    model, fitted only on the protocols of ``TrainConfig.sequential_protocols``; ``default``: trained unless
    ``--models`` says otherwise (False: only when named there).
    """

    name: str
    target: str
    family: Family
    reads_text: bool
    build: Callable[[type, TrainConfig, BuildContext], Recommender]
    fuse: tuple[Task, ...] = ()
    floor: bool = False
    ablation_of: str | None = None  # the model it is an ablation of: that model's difference from it is judged
    ablates: str = ""  # what the ablation takes away, in words: "What {ablates} adds" heads its question
    label: str = ""  # a contender's name in the report's sentences ("the fine-tuned LM"); "" : its registry name
    sequential: bool = False  # reads each user's items in time order: fitted on TrainConfig.sequential_protocols
    default: bool = True  # among TrainConfig.models' default (False: trained when named in --models)

    @property
    def cls(self) -> type[Recommender]:
        module, _, name = self.target.partition(":")
        return getattr(import_module(module), name)

    @property
    def tasks(self) -> tuple[str, ...]:
        """What it serves: ``rating`` (predict), ``ranking`` (score/recommend), or both (the class says)."""
        return tuple(self.cls.tasks)

    @property
    def traditional(self) -> bool:
        return self.family not in ("language", "fusion")


def _plain(cls, config: TrainConfig, context: BuildContext):
    return cls()


def _seeded(cls, config: TrainConfig, context: BuildContext):
    return cls(seed=config.seed)


def _seeded_at_k(cls, config: TrainConfig, context: BuildContext):
    """A ranking model tuned on validation NDCG at the evaluation's cut-off."""
    return cls(k=context.k, seed=config.seed)


def _sequential(cls, config: TrainConfig, context: BuildContext):
    return cls(k=context.k, trials=config.sequential_trials, seed=config.seed)


def _lightfm(content: bool):
    def build(cls, config: TrainConfig, context: BuildContext):
        return cls(
            content=content,
            loss=config.lightfm_loss,
            num_threads=config.lightfm_threads,
            search_trials=config.lightfm_trials,
            max_epochs=config.lightfm_max_epochs,
            seed=config.seed,
            cold_validation=context.protocol == "cold_items",
            **lightfm_hyperparameters(config.lightfm_params),
        )

    return build


# On a cold-item split, this share of the LM's training pairs reads its item as a cold item would (metadata
# alone): the test's cold items have nothing else (models.lm.profiles).
COLD_ITEM_METADATA_DROPOUT = 0.25


def _lm_settings(config: TrainConfig, context: BuildContext) -> dict:
    """The LM's and text_frozen's LMConfig overrides: the run's seed, item dropout on a cold-item split, then
    the user's ``lm_overrides``."""
    cold = {"item_metadata_dropout": COLD_ITEM_METADATA_DROPOUT} if context.protocol == "cold_items" else {}
    return {"seed": config.seed, **cold, **config.lm_overrides}


def _lm(cls, config: TrainConfig, context: BuildContext):
    return cls(
        context.work_dir / "lm_two_tower",
        config.lm_profile,
        _lm_settings(config, context),
        k=context.k,
        cold_validation=context.protocol == "cold_items",
        text_cache=context.text_cache,
    )


def _text_frozen(cls, config: TrainConfig, context: BuildContext):
    """The LM's encoder without fine-tuning: the same profile and overrides (encoder, token limit, profiles)."""
    return cls(
        config.lm_profile,
        _lm_settings(config, context),
        k=context.k,
        cold_validation=context.protocol == "cold_items",
        text_cache=context.text_cache,
    )


def _lm_sequential(cls, config: TrainConfig, context: BuildContext):
    """The sequential LM and its id-only twin: the LM's profile and overrides (encoder, profiles, seed), their
    number of random configurations."""
    return cls(
        config.lm_profile,
        _lm_settings(config, context),
        k=context.k,
        trials=config.lm_sequential_trials,
        cold_validation=context.protocol == "cold_items",
        text_cache=context.text_cache,
    )


def _fusion(cls, config: TrainConfig, context: BuildContext):
    settings = cls.Config(k=context.k, cold_candidates=context.protocol == "cold_items", seed=config.seed)
    return cls(context.components, settings)  # typed: Fusion.Config is its FusionConfig


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "global_mean",
            "models.recommenders.baselines:GlobalMean",
            "non-personalised",
            reads_text=False,
            build=_plain,
            floor=True,
        ),
        ModelSpec(
            "bias_als",
            "models.recommenders.baselines:BiasALS",
            "collaborative",
            reads_text=False,
            build=_plain,
            fuse=("rating",),
        ),
        ModelSpec(
            "biased_mf",
            "models.recommenders.baselines:BiasedMF",
            "collaborative",
            reads_text=False,
            build=_seeded,
            fuse=("rating",),
        ),
        ModelSpec(
            "popularity",
            "models.recommenders.baselines:Popularity",
            "non-personalised",
            reads_text=False,
            build=_plain,
            fuse=("ranking",),
        ),
        ModelSpec(
            "lightfm_cf",
            "models.recommenders.lightfm_hybrid:LightFMHybrid",
            "collaborative",
            reads_text=False,
            build=_lightfm(content=False),
            fuse=("ranking",),
        ),
        ModelSpec(
            "lightfm_hybrid",
            "models.recommenders.lightfm_hybrid:LightFMHybrid",
            "hybrid",
            reads_text=True,
            build=_lightfm(content=True),
            fuse=("rating", "ranking"),
        ),
        # the field's strongest public models, through their libraries (models/recommenders/field.py)
        ModelSpec(
            "svd",
            "models.recommenders.field:SurpriseSVD",
            "collaborative",
            reads_text=False,
            build=_seeded,
            fuse=("rating",),
        ),
        ModelSpec(
            "svdpp",
            "models.recommenders.field:SurpriseSVDpp",
            "collaborative",
            reads_text=False,
            build=_seeded,
            fuse=("rating",),
        ),
        ModelSpec(
            "knn_baseline",
            "models.recommenders.field:SurpriseKNNBaseline",
            "collaborative",
            reads_text=False,
            build=_seeded,
            fuse=("rating",),
        ),
        ModelSpec(
            "ease",
            "models.recommenders.field:EASE",
            "collaborative",
            reads_text=False,
            build=_seeded_at_k,
            fuse=("ranking",),
        ),
        ModelSpec(
            "bpr",
            "models.recommenders.field:BPR",
            "collaborative",
            reads_text=False,
            build=_seeded_at_k,
            fuse=("ranking",),
        ),
        ModelSpec(
            "implicit_als",
            "models.recommenders.field:ImplicitALS",
            "collaborative",
            reads_text=False,
            build=_seeded_at_k,
            fuse=("ranking",),
        ),
        # the sequential models of leave-last-out, through Cornac (models/recommenders/sequential.py)
        ModelSpec(
            "sasrec",
            "models.recommenders.sequential:SASRec",
            "collaborative",
            reads_text=False,
            build=_sequential,
            fuse=("ranking",),
            sequential=True,
        ),
        ModelSpec(
            "bert4rec",
            "models.recommenders.sequential:BERT4Rec",
            "collaborative",
            reads_text=False,
            build=_sequential,
            fuse=("ranking",),
            sequential=True,
        ),
        ModelSpec(
            "lm_two_tower",
            "models.lm.recommender:LMTwoTower",
            "language",
            reads_text=True,
            build=_lm,
            fuse=("rating", "ranking"),
            label="the fine-tuned LM",
        ),
        # the same encoder frozen: what fine-tuning adds is the LM's difference from it (models/lm/frozen.py)
        ModelSpec(
            "text_frozen",
            "models.lm.frozen:TextFrozen",
            "language",
            reads_text=True,
            build=_text_frozen,
            fuse=("rating", "ranking"),
            ablation_of="lm_two_tower",
            ablates="fine-tuning",
        ),
        # item text and ids read in the user's order by a causal transformer (models/lm/sequential.py), and the
        # same network with its text zeroed: what text adds to a sequence model
        ModelSpec(
            "lm_sequential",
            "models.lm.sequential:LMSequential",
            "language",
            reads_text=True,
            build=_lm_sequential,
            fuse=("ranking",),
            label="the sequential LM",
        ),
        ModelSpec(
            "lm_sequential_ids",
            "models.lm.sequential:LMSequentialIds",
            "language",
            reads_text=False,
            build=_lm_sequential,
            ablation_of="lm_sequential",
            ablates="text to a sequence model",
        ),
        # fitted last: it blends the models fitted before it, learned on validation
        ModelSpec("fusion", "models.recommenders.fusion:Fusion", "fusion", reads_text=False, build=_fusion),
    )
}
MODELS: tuple[str, ...] = tuple(REGISTRY)
DEFAULT_MODELS: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.default)
FUSION = "fusion"  # the fused model: what is published, served and judged by the promotion gate
TRADITIONAL: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.traditional)
LANGUAGE: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.family == "language")
# ablation -> the model it ablates (text_frozen -> lm_two_tower): "what does fine-tuning add"
ABLATIONS: dict[str, str] = {name: spec.ablation_of for name, spec in REGISTRY.items() if spec.ablation_of}
# ablation -> what it takes away ("fine-tuning", "text to a sequence model"): the question's words
ABLATED: dict[str, str] = {
    name: spec.ablates or "the ablated part" for name, spec in REGISTRY.items() if spec.ablation_of
}
# the traditional models the reference ("the best traditional model") is chosen among, on validation: every
# traditional model but the floors
REFERENCE_CANDIDATES: tuple[str, ...] = tuple(name for name in TRADITIONAL if not REGISTRY[name].floor)
# the contenders the primary family judges against the reference: the fusion, then each language model that is
# not an ablation (an ablation is judged against the model it ablates instead: ABLATIONS)
CONTENDERS: tuple[str, ...] = (FUSION, *(name for name in LANGUAGE if name not in ABLATIONS))


# LM variants, one per further encoder (TrainConfig.lm_encoders): "lm_two_tower@<encoder's short name>"
VARIANT = "@"
VARIED = "lm_two_tower"  # the registered model an encoder variant is a copy of


def encoder_name(encoder: str) -> str:
    """A short name for an encoder: a folder's or hub id's last part, lower case, [a-z0-9_.-] only."""
    last = encoder.rstrip("/\\").replace("\\", "/").split("/")[-1] or encoder
    return re.sub(r"[^a-z0-9_.-]+", "-", last.lower()).strip("-") or "encoder"


def encoder_variants(config: TrainConfig) -> dict[str, str]:
    """Variant name -> encoder, for each of ``config.lm_encoders``."""
    return {f"{VARIED}{VARIANT}{encoder_name(e)}": e for e in config.lm_encoders}


def spec_of(name: str) -> ModelSpec:
    """The registered model behind ``name`` (an encoder variant's is the LM's)."""
    try:
        return REGISTRY[name.partition(VARIANT)[0]]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(MODELS)}") from None


def run_models(config: TrainConfig, protocol: str | None = None) -> tuple[str, ...]:
    """The models a run fits on a split of ``protocol``: ``config.models`` with each encoder variant after the LM
    (when the LM is one of them), the sequential models only on ``config.sequential_protocols``, the fusion
    last."""
    out = []
    for name in config.models:
        if protocol is not None and spec_of(name).sequential and protocol not in config.sequential_protocols:
            continue
        out.append(name)
        if name == VARIED:
            out += list(encoder_variants(config))
    return tuple(sorted(out, key=lambda n: spec_of(n).family == "fusion"))


def fusion_candidates(task: Task) -> tuple[str, ...]:
    """The models the fusion blends for ``task``, in the order of its weights (see :data:`FUSION_ORDER`)."""
    fused = [spec for spec in REGISTRY.values() if task in spec.fuse]
    return tuple(spec.name for spec in sorted(fused, key=lambda spec: FUSION_ORDER.index(spec.family)))


def bundle_classes() -> dict[str, type]:
    """Class name -> class of every registered model: the only classes a model bundle may name."""
    classes = (spec.cls for spec in REGISTRY.values())
    return {cls.__name__: cls for cls in classes}


class TrainConfig(BaseModel):
    """Which models to train and how (their constructors' settings; see :data:`REGISTRY`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[Literal[MODELS], ...] = Field(  # type: ignore[valid-type]
        DEFAULT_MODELS,
        description="the registered models to train (the fusion blends those trained before it)",
    )
    lightfm_loss: LightFMLoss = Field("warp", description="LightFM's loss")
    lightfm_threads: int = Field(1, ge=1, description="LightFM threads (1: exactly reproducible; more is faster)")
    lightfm_trials: int = Field(
        2, ge=0, description="random LightFM configurations tried on validation besides the default"
    )
    lightfm_max_epochs: int = Field(
        30, ge=5, description="LightFM epochs at most per fit (the number is chosen on validation NDCG)"
    )
    lightfm_params: dict[Literal["no_components", "learning_rate", "item_alpha", "content_weight"], float] = Field(
        {},
        description="LightFM hyperparameters to use instead of the defaults (keys of models.recommenders.lightfm_hybrid.SEARCH_SPACE), e.g. the best configuration of `python -m flows.search`",
    )
    lm_profile: Profile = Field(
        "cpu",
        description="transformer fine-tuning profile (models.lm.config.PROFILES): cpu (lower layers frozen, minutes on "
        "2 cores), gpu (full fine-tuning, bf16, all GPUs), cpu-lora / gpu-lora (LoRA adapters instead)",
    )
    lm_overrides: dict = Field(
        {}, description='further LMConfig fields, e.g. {"encoder": "/path/to/model", "max_epochs": 3}'
    )
    lm_encoders: tuple[str, ...] = Field(
        (),
        description="further encoders (local folders or hub ids), one LM variant each, trained beside "
        "lm_two_tower as `lm_two_tower@<its short name>` with the same settings: accuracy against parameters and "
        "cost (the fusion blends the registered LM only; default: none)",
    )
    sequential_protocols: tuple[Protocol, ...] = Field(
        ("temporal",),
        description="the split protocols on which the sequential models (sasrec, bert4rec) are fitted: "
        "leave-last-out, their protocol, by default; add kfold, random or cold_items at their cost (about a "
        "minute per fit on the default dataset on one core; the cold-item candidates are outside their vocabulary)",
    )
    sequential_trials: int = Field(
        1,
        ge=0,
        description="random SASRec / BERT4Rec configurations tried on validation besides the default",
    )
    lm_sequential_trials: int = Field(
        0,
        ge=0,
        description="random lm_sequential / lm_sequential_ids configurations tried on validation besides the "
        "default (each a fit of about a minute per split on the default dataset, one core)",
    )
    seed: int = Field(0, description="model initialisation seed")
    overlap: bool = Field(
        True,
        description="fit the LM in its own process beside the other models (one core each until they are done, "
        "then both for the LM); off: one model after the other",
    )

    @model_validator(mode="after")
    def _variants_have_names(self) -> TrainConfig:
        if self.lm_encoders and VARIED not in self.models:
            raise ValueError(f"lm_encoders trains variants of {VARIED}: add it to the models")
        names = [encoder_name(e) for e in self.lm_encoders]
        twins = sorted({n for n in names if names.count(n) > 1})
        if twins:
            raise ValueError(f"lm_encoders: two encoders share the short name {twins[0]!r}; give distinct folders")
        profile_fields(self.lm_profile, self.lm_overrides)  # a misspelt LM setting stops the run before any fit
        return self


def build_model(name: str, config: TrainConfig, context: BuildContext) -> Recommender:
    """A fresh, unfitted model by registered name, or an encoder variant of the LM by its variant name
    (:func:`encoder_variants`: the LM's settings with that encoder, in a folder of its own)."""
    spec = spec_of(name)
    if VARIANT in name:
        encoder = encoder_variants(config).get(name)
        if encoder is None:
            raise ValueError(f"{name!r} is not one of this run's encoder variants: {sorted(encoder_variants(config))}")
        config = config.model_copy(update={"lm_overrides": {**config.lm_overrides, "encoder": encoder}})
        context = replace(context, work_dir=context.work_dir / "variants" / name.partition(VARIANT)[2])
    model = spec.build(spec.cls, config, context)
    model.name = name  # a class may serve several entries (LightFM: lightfm_cf, lightfm_hybrid)
    return model


def lightfm_hyperparameters(params: dict) -> dict:
    """LightFMHybrid keyword arguments from a configuration dict (``no_components`` is an integer)."""
    return {key: int(value) if key == "no_components" else float(value) for key, value in params.items()}
