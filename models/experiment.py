"""The experiment on one split: build every configured model from the registry, fit it on the training fold
(tuning on validation), make it know everything before the test (refitted on training + validation with the
chosen settings, or the validation interactions joining its users' histories: ``Recommender.refitted``), and
compute its per-user test values.

Pure: DataFrames in, DataFrames and fitted models out. Loading the split, caching fits and persisting their
outputs are the train stage's tasks (``tasks/train.py``). Models receive the training fold *with* its review
text and the validation/test folds *without* any text, so no model can read a held-out review.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from models.base import Recommender, catalogue
from models.evaluation import EvalConfig
from models.evaluation.harness import PER_USER_COLUMNS, known_before_test, per_user_values, validation_summary
from models.progress import duration
from models.recommenders.features import item_vectors, metadata_tokens, review_terms
from models.registry import FUSION, BuildContext, TrainConfig, build_model, encoder_variants, run_models, spec_of
from models.tuning import Tuned, tune

LOG = logging.getLogger("reclab.experiment")


@dataclass
class SplitFit:
    """One split's fitted models and their test values.

    ``per_user``: every model's per-user values (``models.evaluation.harness.PER_USER_COLUMNS``); ``fits``:
    per model, its chosen hyperparameters, fit and evaluation seconds and global figures (``extras``, with
    ``peak_memory_gib``: the process's peak resident memory during the fit, the LM's trainer process
    included, and for traditional models ``validation``: their validation MSE / NDCG sums, from which the
    reference is chosen, measured on the fit chosen there, before any refit; ``test_time``: "refit" or
    "history"; ``refit_seconds``: the refit's share of ``fit_seconds``); ``models``: the models scored on test
    by name, each knowing the training and validation interactions (the fusion holds the others as
    components). A model skipped as too costly for the data (``Recommender.too_costly``) has a fit record
    with its reason in ``extras.skipped`` and nothing else."""

    protocol: str
    per_user: pd.DataFrame
    fits: list[dict]
    models: dict[str, Recommender]


@dataclass(frozen=True)
class FitStore:
    """Fitted models kept between runs of one split, each under a key of the split's content, the code and
    the evaluation settings (``base_key``, from the train stage) and the model's name and training settings:
    a model whose key is unchanged is restored, with its test values and fit record, instead of refitted. So
    adding one model to a run fits only that model and the fusion; changing a model's settings, the data or
    the code refits. The fusion's key is made of its components' keys too (:meth:`key`'s ``components``): it
    is restored when every model it blends is, and kept without them (its components are their own entries).
    This is the only cache of fits: a rerun with unchanged inputs restores every model. ``refresh``: restore
    nothing, and replace what is kept with the fresh fits. Files: ``<root>/<model>-<key>/`` with the fit
    chosen on validation (``model``: a bundle with its ``reuse_fields``; the fusion's without components), the
    model scored on test (``refit``: refitted on training + validation; absent for a model that extends its
    history instead, which is cheap to repeat, and for the fusion, whose scored blend is its weights over the
    scored components), its per-user test values and its fit record, each checksummed; an altered or
    partial entry is refitted."""

    root: Path
    base_key: str
    refresh: bool = False

    def key(self, name: str, config: TrainConfig, components: dict[str, str] | None = None) -> str:
        """``name``'s key under ``config``; ``components``: the keys of the models it blends (the fusion)."""
        # the list of models is not a model's setting, nor whether fits overlap, nor the other encoders' variants
        settings = config.model_dump_json(exclude={"models", "overlap", "lm_encoders", "sequential_protocols"})
        encoder = encoder_variants(config).get(name, "")  # an encoder variant's own encoder
        blended = json.dumps(sorted((components or {}).items()))
        return hashlib.sha256(f"{self.base_key}|{name}|{settings}|{encoder}|{blended}".encode()).hexdigest()[:24]

    def restore(
        self,
        name: str,
        model: Recommender,
        key: str,
        history: pd.DataFrame,
        scored_by: Callable[[Recommender], Recommender] | None = None,
    ) -> Kept | None:
        """Restore the kept fit of ``name`` into copies of ``model`` (unfitted, built from the same settings)
        with the configuration its tuning chose, or None when there is none (or it was altered, or the store
        refreshes). ``history``: the training and validation interactions, which a model that does not refit
        joins to its users' histories again; ``scored_by``: how the model scored on test is made from the
        restored one where it is neither refitted nor given the history (the fusion: its weights over the
        scored components, ``Fusion.over``)."""
        from models.serving.bundle import BundleError, load_model, sha256

        if self.refresh:
            return None
        folder = self.root / f"{name}-{key}"
        try:
            record = json.loads((folder / "record.json").read_text())
            if any(sha256(folder / f) != digest for f, digest in record["files"].items()):
                return None
            chosen = record["fit"]["params"].get("tuning", {}).get("chosen", {})
            constructor = model.params()
            model = model.with_params(**{k: v for k, v in chosen.items() if k in constructor}) if chosen else model
            load_model(folder / "model", into=model)
            if scored_by is not None:
                scored = scored_by(model)
            elif model.test_time == "refit":
                scored = model.with_params(**model.fold_params())
                load_model(folder / "refit", into=scored)
            else:
                scored = model.with_history(history)
            return Kept(pd.read_parquet(folder / "per_user.parquet"), record["fit"], model, scored)
        except (OSError, ValueError, KeyError, BundleError):
            return None

    def keep(self, name: str, kept: Kept, key: str) -> None:
        """Keep a fresh fit (written to a temporary folder, then renamed: never half an entry)."""
        from models.serving.bundle import save_model, sha256

        folder = self.root / f"{name}-{key}"
        if folder.exists() and not self.refresh:
            return
        temporary = self.root / f".{name}-{key}.{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        chosen, blends = kept.chosen, bool(getattr(kept.chosen, "components", None))
        if blends:  # the fusion: its own state; its components are kept as their own entries
            chosen = copy.copy(chosen)
            chosen.components = {}
        save_model(chosen, temporary / "model", extra_fields=type(chosen).reuse_fields)
        if chosen.test_time == "refit" and not blends:
            save_model(kept.scored, temporary / "refit", extra_fields=type(kept.scored).reuse_fields)
        kept.values.to_parquet(temporary / "per_user.parquet", index=False)
        files = {"per_user.parquet": sha256(temporary / "per_user.parquet")}
        record = {"fit": json.loads(json.dumps(kept.fit, default=_plain)), "files": files}
        (temporary / "record.json").write_text(json.dumps(record))
        if self.refresh and folder.exists():
            shutil.rmtree(folder)
        try:
            temporary.rename(folder)
        except OSError:  # kept meanwhile by a concurrent run of the same split
            shutil.rmtree(temporary, ignore_errors=True)


@dataclass(frozen=True)
class Kept:
    """One model's fit on a split: its per-user test ``values``, its fit record, the fit ``chosen`` on
    validation (trained on the training fold: what the fusion learns its weights from) and the model
    ``scored`` on test (the chosen settings knowing the validation interactions too)."""

    values: pd.DataFrame
    fit: dict
    chosen: Recommender
    scored: Recommender


def _plain(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"a fit record holds a {type(value).__name__}")


def fit_split(
    data: dict[str, pd.DataFrame],
    protocol: str,
    split_id: str,
    config: TrainConfig,
    eval_config: EvalConfig,
    work_dir: Path,
    store: FitStore | None = None,
    text_cache: Path | None = None,
) -> SplitFit:
    """Fit every model of ``config`` on one split's ``data`` (``train`` with text, ``validation`` and ``test``
    without, ``items``, ``users``) in registry order, the fusion last, and evaluate each on ``test``.

    Each model's settings are chosen on validation from fits on the training fold; the model scored on test then
    knows the validation interactions too (refitted on training + validation with those settings, or, where a
    refit is too dear, the validation interactions joined to its users' histories: ``Recommender.refitted``),
    and every model's candidates exclude everything the user had before the test. The fusion learns its weights
    on validation from the training-only fits and applies them to the refitted components. ``work_dir``: where
    models write files (the LM's trainer run); ``store``: fits kept from earlier runs of this split, restored
    instead of refitted (and fresh fits kept there); ``text_cache``: the workspace's per-text encoder states
    (the LM's, shared by every split)."""

    @cache
    def vectors() -> pd.DataFrame:  # intra-list diversity's item vectors: only a fresh fit is evaluated with them
        return diversity_vectors(data, config.seed)

    history = known_before_test(data["train"], data["validation"])
    cold = protocol == "cold_items"
    order = list(run_models(config, protocol))  # the fusion last
    kept: dict[str, Kept] = {}
    position = {name: n for n, name in enumerate(order, start=1)}

    def evaluate(name: str, tuned: Tuned, wall: float, cpu: float, peak, extras_in: dict | None = None):
        chosen = tuned.model
        refit = time.perf_counter()
        if name == FUSION:
            scored = chosen.over({n: k.scored for n, k in kept.items()}, history, data["items"])
        else:
            scored = chosen.refitted(tuned.config, history, items=data["items"], users=data["users"])
        refit = time.perf_counter() - refit
        done = time.perf_counter()
        values, extras = per_user_values(
            scored,
            name,
            history,
            data["test"],
            eval_config,
            cold_candidates=cold,
            item_vectors=vectors().reindex(scored.item_ids).fillna(0.0).to_numpy(),
        )
        if spec_of(name).traditional:  # the reference is chosen among these, on validation, before any refit
            extras["validation"] = validation_summary(
                chosen, data["train"], data["validation"], eval_config.k, cold_candidates=cold
            )
        evaluated = time.perf_counter() - done
        test_time = "refit" if name == FUSION else scored.test_time
        LOG.info(
            f"{split_id}: {name} fitted in {duration(wall)}"
            + (f", refitted on training + validation in {duration(refit)}" if test_time == "refit" else "")
            + f", evaluated in {duration(evaluated)}"
        )
        child = (getattr(chosen, "metrics_", None) or {}).get("peak_rss_gib")  # the LM trains in its own process
        extras["peak_memory_gib"] = round(max(peak or 0.0, child or 0.0), 3) if peak or child else None
        extras["cpu_seconds"] = round(cpu + refit, 2) if test_time == "refit" else round(cpu, 2)
        extras["test_time"], extras["refit_seconds"] = test_time, round(refit, 3)
        extras.update(extras_in or {})
        fit = {
            "model": name,
            "params": {**chosen.fit_summary(), "tuning": tuned.record()},
            "fit_seconds": wall + refit,
            "eval_seconds": evaluated,
            "extras": extras,
        }
        kept[name] = Kept(values, fit, chosen, scored)
        if keys.get(name) is not None:
            store.keep(name, kept[name], keys[name])

    def restore(name: str, model: Recommender, scored_by=None) -> bool:
        """Keep ``name`` as the fit store holds it under ``keys[name]`` (marked reused, said in the log); False
        when the store holds no such fit."""
        restored = store.restore(name, model, keys[name], history, scored_by) if keys[name] is not None else None
        if restored is None:
            return False
        restored.fit["extras"]["reused"] = True
        LOG.info(
            f"{split_id}: {name} ({position[name]} of {len(order)}) restored from the fit store "
            f"(its first fit took {duration(restored.fit['fit_seconds'])})"
        )
        kept[name] = restored
        return True

    # restore what the fit store holds; build the rest (the fusion after every other model); skip a model too
    # costly for data this large (Recommender.too_costly)
    keys: dict[str, str | None] = {}
    skipped: dict[str, str] = {}
    todo: dict[str, Recommender] = {}
    for name in order:
        if name == FUSION:
            continue
        context = BuildContext(protocol, Path(work_dir), eval_config.k, text_cache=text_cache)
        model = build_model(name, config, context)
        reason = model.too_costly(data["train"], data["items"])
        if reason is not None:  # its cost grows faster than the data: said, recorded, never half-run
            LOG.warning(f"{split_id}: {reason}")
            skipped[name] = reason
            continue
        keys[name] = store.key(name, config) if store is not None else None
        if not restore(name, model):
            todo[name] = model

    # a model that fits in its own process (the LM) starts first and runs beside the in-process fits (the first
    # such model only: two trainers beside each other would share two cores three ways)
    background: dict[str, tuple] = {}
    in_process = [name for name in todo if not _fits_in_background(todo[name])]
    for name, model in todo.items():
        if name in in_process or not config.overlap or not in_process:
            continue
        LOG.info(f"{split_id}: fitting {name} ({position[name]} of {len(order)}) in its own process, beside the rest")
        start = time.perf_counter()
        handle = model.fit_in_background(data["train"], data["validation"], items=data["items"], users=data["users"])
        background[name] = (handle, start)
        break  # one trainer beside the in-process fits; a further one (an encoder variant) runs after them
    try:
        for name in [n for n in todo if n not in background]:
            model = todo[name]
            LOG.info(f"{split_id}: fitting {name} ({position[name]} of {len(order)})")
            reset_peak_memory()
            start, cpu = time.perf_counter(), _cpu_seconds()
            tuned = tune(model, data["train"], data["validation"], items=data["items"], users=data["users"])
            wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
            overlap = {"overlapped_with": sorted(background)} if background else None
            evaluate(name, tuned, wall, cpu, peak_memory_gib(), overlap)
    except BaseException:
        for handle, _ in background.values():
            handle.cancel()  # no trainer left running after a failed split
        raise
    for name, (handle, start) in background.items():
        cpu = handle.finish()
        tuned = tune(todo[name], data["train"], data["validation"], items=data["items"], fitted=todo[name])
        wall = time.perf_counter() - start
        besides = [n for n in in_process if n in kept]
        evaluate(name, tuned, wall, cpu, None, {"overlapped_with": besides})

    if FUSION in order:
        name = FUSION
        components = {n: k.chosen for n, k in kept.items()}  # the training-only fits: its weights learn from them
        context = BuildContext(protocol, Path(work_dir), eval_config.k, components=components, text_cache=text_cache)
        model = build_model(name, config, context)
        # kept under its components' keys: restored when every model it blends was (their fits unchanged)
        blended = {n: keys.get(n) for n in kept}
        keys[name] = store.key(name, config, blended) if store is not None and all(blended.values()) else None

        def scored_by(fusion):
            return fusion.over({n: k.scored for n, k in kept.items()}, history, data["items"])

        if not restore(name, model, scored_by):
            LOG.info(f"{split_id}: fitting {name} ({position[name]} of {len(order)})")
            reset_peak_memory()
            start, cpu = time.perf_counter(), _cpu_seconds()
            tuned = tune(model, data["train"], data["validation"], items=data["items"], users=data["users"])
            wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
            evaluate(name, tuned, wall, cpu, peak_memory_gib())
    fitted = [n for n in order if n in kept]
    values = [kept[n].values for n in fitted]
    return SplitFit(
        protocol,
        pd.concat(values, ignore_index=True) if values else pd.DataFrame(columns=PER_USER_COLUMNS),
        [kept[n].fit if n in kept else _skipped_fit(n, skipped[n]) for n in order],
        {n: kept[n].scored for n in fitted},
    )


def _skipped_fit(name: str, reason: str) -> dict:
    """The fit record of a model skipped as too costly: no values, its reason in ``extras.skipped``."""
    return {"model": name, "params": {}, "fit_seconds": 0.0, "eval_seconds": 0.0, "extras": {"skipped": reason}}


def _fits_in_background(model: Recommender) -> bool:
    return bool(getattr(type(model), "background", False))


def _cpu_seconds() -> float:
    """CPU seconds of this process (every thread) and of its finished children (the LM's trainer run by
    ``fit``), so far."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def reset_peak_memory() -> None:
    """Reset this process's peak resident memory (Linux: VmHWM), so that the next reading is one fit's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_gib() -> float | None:
    """This process's peak resident memory since the last reset (Linux), None where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        return None
    return None


def diversity_vectors(data: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """Item vectors (metadata tokens and training-review terms, TF-IDF + SVD) indexed by item id: what
    intra-list diversity measures distance with, the same for every model."""
    tokens = metadata_tokens(data["items"])
    for key, terms in review_terms(data["train"], "item_id").items():
        tokens.setdefault(key, []).extend(terms)
    ids = catalogue(data["train"], data["items"])
    return pd.DataFrame(item_vectors(ids, tokens, seed=seed), index=ids)
