"""THE tuner: one model-selection loop on validation for every model (as Cornac keeps ``hyperopt`` outside its
models). A model declares its search space (:meth:`models.base.Recommender.search_space`); ``fit`` takes fixed
hyperparameters (its constructor's). :func:`tune` fits one copy of the model per candidate configuration
(``model.with_params(**config)``), judges each on validation and keeps the best fitted copy:

- the judge: validation RMSE for a model that predicts ratings, NDCG@K for a ranking-only one
  (:class:`models.evaluation.harness.ValidationNDCG`), or the model's own validation score where its fit
  already measures one while it early-stops (``validation_score_``, LightFM's NDCG over its epochs);
- the candidates: a grid (every combination of the axes, the last varying fastest), listed configurations,
  or, for large spaces, the model's default then ``trials`` seeded random draws (:func:`random_configs`);
- score-time settings (``after_fit``: attributes read by ``score`` only, the LM's popularity weight) are tried
  on the one fitted model, without refitting;
- ties keep the earlier candidate; without a validation fold to judge by, the model's own configuration is
  fitted and nothing is scored.

The chosen configuration, its validation score and every candidate's are returned (:class:`Tuned`) and recorded
per fit (``model_fits.params``). ``flows/search.py`` runs the same candidates and judge as parallel tasks
(:func:`candidates`, :func:`judge_fit`, :func:`best_of`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from models.progress import Progress

Judge = Literal["rmse", "ndcg", "own"]


@dataclass(frozen=True)
class SearchSpace:
    """What a model may be tuned over on validation.

    ``grid``: axes (constructor argument -> values), every combination tried; ``configs``: listed
    configurations instead; ``trials``: with ``grid`` as the space to draw from, the model's own configuration
    then this many seeded random draws (random search for large spaces); ``after_fit``: score-time attributes
    tried on the fitted model (no refit), the smallest value first; ``fixed``: settings every candidate takes
    (after the draws: LightFM without content has no content weight to vary); ``judge``: how a candidate is scored
    (None: RMSE for a rating model, NDCG@K for a ranking-only one); ``seed``: of the random draws."""

    grid: dict[str, tuple] = field(default_factory=dict)
    configs: tuple[dict, ...] = ()
    trials: int | None = None
    after_fit: dict[str, tuple] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    judge: Judge | None = None
    seed: int = 0

    def __post_init__(self):
        if self.grid and self.configs:
            raise ValueError("a search space is a grid or listed configurations, not both")
        if self.trials is not None and not self.grid:
            raise ValueError("random search (trials) draws from a grid's axes: give grid=")


NOTHING = SearchSpace()


def random_configs(axes: dict[str, tuple], trials: int, seed: int) -> list[dict]:
    """``trials`` seeded random draws from ``axes`` (each axis uniformly, in the axes' order)."""
    rng = np.random.default_rng(seed)
    return [{key: values[rng.integers(len(values))] for key, values in axes.items()} for _ in range(trials)]


def candidates(model, space: SearchSpace) -> list[dict]:
    """The configurations :func:`tune` fits, in order, duplicates dropped (the first kept); ``[{}]`` (the
    model as built) when the space has none."""
    if space.trials is not None:
        own = {key: getattr(model, key) for key in space.grid}
        found = [own, *random_configs(space.grid, space.trials, space.seed)]
    elif space.grid:
        keys = list(space.grid)
        found = [dict(zip(keys, values, strict=True)) for values in itertools.product(*space.grid.values())]
    else:
        found = [dict(c) for c in space.configs] or [{}]
    if space.fixed:
        found = [{**c, **space.fixed} for c in found]
    unique = {tuple(sorted(c.items())): c for c in reversed(found)}  # the first of equal ones survives
    return [c for c in found if unique.get(tuple(sorted(c.items()))) is c]


@dataclass
class Tuned:
    """A tuned fit: the fitted ``model`` (built with the chosen configuration), ``config`` (the searched
    settings chosen; score-time ones included), its validation ``score`` (nan when nothing was judged),
    ``judge`` and every candidate's ``(config, score)`` in the order tried."""

    model: Any
    config: dict
    score: float
    judge: str | None
    tried: list[tuple[dict, float]]

    def record(self) -> dict:
        """The JSON-ready summary kept with the fit (``model_fits.params``)."""
        score = None if np.isnan(self.score) else round(float(self.score), 6)
        return {
            "chosen": dict(self.config),
            "validation": {self.judge: score} if self.judge else {},
            "tried": len(self.tried),
        }


def validation_rmse(model, validation: pd.DataFrame) -> float:
    """Root mean squared error of ``model.predict`` on the validation ratings (no clipping)."""
    pred = model.predict(validation["user_id"], validation["item_id"])
    return float(np.sqrt(np.mean((pred - validation["rating"].to_numpy()) ** 2)))


class _Judge:
    """Scores fitted candidates on one validation fold; ``usable`` is False when there is nothing to judge
    (no validation fold; for NDCG, no validation user with a candidate item)."""

    def __init__(self, kind: Judge, validation: pd.DataFrame | None, k: int, cold: bool, train, items):
        self.kind, self.validation = kind, validation
        self.usable = validation is not None and len(validation) > 0
        self.ndcg = None
        if self.usable and kind == "ndcg":  # the targets depend on the training index only, not on the fit
            from models.base import Recommender
            from models.evaluation.harness import ValidationNDCG

            index = Recommender()
            index._index(train, items)
            self.ndcg = ValidationNDCG(index, validation, k, cold_candidates=cold)
            self.usable = self.ndcg.targets is not None

    def lower_is_better(self) -> bool:
        return self.kind == "rmse"

    def __call__(self, model) -> float:
        if self.kind == "rmse":
            return validation_rmse(model, self.validation)
        if self.kind == "own":
            return float(model.validation_score_)
        return self.ndcg(model)


def judge_kind(model, space: SearchSpace) -> Judge:
    return space.judge or ("rmse" if "rating" in model.tasks else "ndcg")


def _judge(model, space: SearchSpace, train, validation, items) -> _Judge:
    kind = judge_kind(model, space)
    k = int(getattr(model, "k", 10)) if kind == "ndcg" else 0  # a ranking model's cut-off
    return _Judge(kind, validation, k, bool(getattr(model, "cold_validation", False)), train, items)


def _better(value: float, best: float | None, lower: bool) -> bool:
    return best is None or (value < best if lower else value > best)


def best_of(scored: list[tuple[dict, float]], lower_is_better: bool) -> int:
    """Position of the best score (the earliest on ties)."""
    best, where = None, 0
    for n, (_, value) in enumerate(scored):
        if _better(value, best, lower_is_better):
            best, where = value, n
    return where


def _fit(model, config: dict, train, validation, items, users):
    """``model`` with ``config`` fitted (``{}``: the model as it was built, not a copy)."""
    return (model.with_params(**config) if config else model).fit(train, validation, items=items, users=users)


def judge_fit(model, config: dict, space: SearchSpace, train, validation, *, items=None, users=None):
    """Fit ``model.with_params(**config)`` on ``train`` (it may early-stop on ``validation``) and judge it;
    (the fitted copy, its validation score). What one trial of ``flows/search.py`` runs."""
    fitted = _fit(model, config, train, validation, items, users)
    judge = _judge(model, space or NOTHING, train, validation, items)
    return fitted, judge(fitted) if judge.usable else float("nan")


def tune(
    model,
    train: pd.DataFrame,
    validation: pd.DataFrame | None = None,
    *,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    space: SearchSpace | None = None,
    fitted=None,
) -> Tuned:
    """Choose ``model``'s configuration on ``validation`` over ``space`` (default: the model's own
    :meth:`search_space`) and return the best fitted copy (:class:`Tuned`). ``fitted``: the model already
    fitted with its own configuration (a fit run in another process): only score-time settings are tried."""
    space = (model.search_space() or NOTHING) if space is None else space
    judge = _judge(model, space, train, validation, items)
    found = candidates(model, space) if judge.usable and fitted is None else [{}]
    tried: list[tuple[dict, float]] = []
    best = None
    progress = Progress(f"{model.name}: tuning", len(found), "configurations")  # a line every 10 s, if that long
    for config in found:
        if fitted is not None:
            current = fitted
        else:
            current = _fit(model, config, train, validation, items, users)
        value = judge(current) if judge.usable and len(found) > 1 else float("nan")
        tried.append((config, value))
        if best is None or _better(value, best[1], judge.lower_is_better()):
            best = (current, value, config)
        progress.advance(note=f"(best so far: {_short(best[2])})" if len(found) > 1 else "")
    progress.finish(note=f"(chose {_short(best[2])})")
    chosen, value, config = best
    if len(found) == 1 and judge.usable and judge.kind == "own":
        value = judge(chosen)  # its own early-stopping score costs nothing to read
    config = dict(config)
    for key, values in space.after_fit.items():  # score-time settings, on the chosen fit
        if not judge.usable or len(values) < 2:
            continue  # nothing to choose between, or nothing to judge by: the value the fit left
        scores = []
        for candidate in sorted(values):
            setattr(chosen, key, type(getattr(chosen, key))(candidate))
            scores.append(({key: getattr(chosen, key)}, judge(chosen)))
        at = best_of(scores, judge.lower_is_better())
        setattr(chosen, key, scores[at][0][key])
        config[key], value = scores[at][0][key], scores[at][1]
        tried += [({**config, **c}, s) for c, s in scores]
    return Tuned(chosen, config, value, judge.kind if judge.usable else None, tried)


def _short(config: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in config.items())
