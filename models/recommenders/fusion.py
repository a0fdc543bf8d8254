"""Fusion: blend fitted component recommenders, with weights learned without touching test.

Rating fusion (``predict``): a stacking blender over the components' rating predictions. It is linear,
``r̂ = b_s + Σ_m w_{s,m} · r̂_m`` (clipped to the training ratings' range), with one weight vector per
segment s = (user activity bucket, item popularity bucket) shrunk towards one global weight vector:

    global:      w_g = argmin ‖y − X w‖² + α_g ‖w − w_0‖²     (w_0: intercept 0, equal component weights)
    segment s:   w_s = argmin ‖y_s − X_s w‖² + α_s ‖w − w_g‖²  (α_s = ∞: the global weights)

Two kinds of blenders compete, each judged on validation rows it was not fitted on:

- *stacked* (``stacking_folds`` > 0): fitted on every training rating, from out-of-fold predictions
  (``Recommender.oof_predictions``: cheap components are refitted with their chosen hyperparameters on K−1
  folds of the training fold and predict the K-th; the LM's readout is cross-fitted on its leave-fold-out
  profiles, without refitting the LM). Components without out-of-fold predictions get weight 0 there. Each
  (α_g, α_s) is judged by its MSE on the whole validation fold, which no component fit or blender fit saw.
- *validation* blenders: fitted on validation itself, (α_g, α_s) judged by K-fold cross-fitting over
  validation *users* (each candidate fitted on K−1 folds, judged on the held-out fold), the winner refitted
  on the whole validation fold.

Each component alone is a candidate too (nothing to fit: its validation MSE), so the fusion falls back to
the best single component when blending does not pay. The lowest held-out validation MSE wins.

Ranking fusion (``score``): a weighted sum of per-user standardised component scores (each row of a
component's catalogue scores minus its mean, over its standard deviation), weights on a grid over the
simplex, chosen by validation NDCG@K.

Components are already fitted (on the training fold; they may have used validation for early stopping or
tuning, which makes their validation predictions slightly optimistic: documented, and the same for every
component). Test data never reaches ``fit``. The model scored on test is :meth:`Fusion.over` the components
that know the validation interactions too (refitted, or the LM's history extended), with the weights learned
here from their training-only fits. Fixed ``rating_weights``/``ranking_weights`` skip learning
(parity checks: weights (1, 0, ...) reproduce the first component exactly).
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from models.base import Ids, Recommender
from models.evaluation import RANKING_CUTOFF
from models.evaluation.harness import ranking_targets
from models.evaluation.metrics import ndcg_at_k, user_blocks
from models.evaluation.stats import activity_segment, popularity_segment
from models.registry import fusion_candidates

NO_SEGMENTS = float("inf")


class FusionConfig(BaseModel):
    """How the blender is learned on validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # the candidates (models.registry: fuse); those fitted are used, in this order
    rating_components: tuple[str, ...] = fusion_candidates("rating")
    ranking_components: tuple[str, ...] = fusion_candidates("ranking")
    global_alphas: tuple[float, ...] = (1.0, 10.0, 100.0)  # ridge strength towards equal weights
    segment_alphas: tuple[float, ...] = (10.0, 100.0, 1000.0, NO_SEGMENTS)  # towards the global weights
    folds: int = Field(5, ge=2)  # cross-fitting folds over validation users
    # out-of-fold folds of the training ratings the stacked blender learns from (0: validation blenders only)
    stacking_folds: int = Field(5, ge=0)
    k: int = Field(RANKING_CUTOFF, ge=1)  # ranking weights maximise validation NDCG@k (the run's K)
    grid_points: int = Field(300, ge=2)  # at most this many weight vectors tried on the simplex
    cold_candidates: bool = False  # rank only items without training interactions (cold-item protocol)
    seed: int = 0


class Fusion(Recommender):
    """A blend of already fitted components (a dict name -> fitted :class:`Recommender`).

    After ``fit``: ``rating_weights_`` (per segment, plus ``"global"``), ``ranking_weights_``,
    ``blender_`` (the chosen α's), ``cv_`` (cross-fitted validation MSE of each candidate) and
    ``validation_ndcg_`` (NDCG@k of the chosen ranking weights and of each component alone).
    """

    name = "fusion"
    Config = FusionConfig  # its settings' type (the registry's builder makes one)
    # components are bundled beside it (models.serving.bundle)
    user_keyed_fields = ("_activity",)  # training ratings per user id (its segments)
    state_fields = (
        "config",
        "rating_names",
        "ranking_names",
        "tasks",
        "_weights",
        "_ranking",
        "_activity",
        "_item_segment",
        "_rating_range",
        "rating_weights_",
        "ranking_weights_",
        "blender_",
        "validation_ndcg_",
    )
    summary_fields = ("rating_weights_", "ranking_weights_", "blender_", "validation_ndcg_", "cv_")

    def __init__(
        self,
        components: dict[str, Recommender],
        config: FusionConfig | dict | None = None,
        *,
        rating_weights: dict[str, float] | None = None,
        ranking_weights: dict[str, float] | None = None,
    ):
        self.components = dict(components)  # a copy: later additions to the caller's dict are not components
        self.config = config if isinstance(config, FusionConfig) else FusionConfig(**(config or {}))
        self._fixed_rating = rating_weights
        self._fixed_ranking = ranking_weights
        self.rating_names = [
            n for n in self.config.rating_components if n in components and "rating" in components[n].tasks
        ]
        self.ranking_names = [
            n for n in self.config.ranking_components if n in components and "ranking" in components[n].tasks
        ]
        tasks = []
        if self.rating_names:
            tasks.append("rating")
        if self.ranking_names:
            tasks.append("ranking")
        self.tasks = tuple(tasks)

    def restore(self, state, seen_indptr, seen_indices) -> None:
        super().restore(state, seen_indptr, seen_indices)
        self.config = FusionConfig(**self.config)
        self.tasks = tuple(self.tasks)
        self._rating_range = tuple(self._rating_range)

    # --- fitting -------------------------------------------------------------------------------------------
    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame | None = None,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ) -> Fusion:
        if not self.tasks:
            raise ValueError(
                f"fusion needs fitted components among {self.config.rating_components} or "
                f"{self.config.ranking_components}; got {sorted(self.components)}"
            )
        self._know(train, items)
        self._rating_range = (float(train["rating"].min()), float(train["rating"].max()))
        if validation is None or len(validation) == 0:
            if self._fixed_rating is None and self.rating_names or self._fixed_ranking is None and self.ranking_names:
                raise ValueError("fusion learns its weights on validation: pass a non-empty validation fold")
        if self.rating_names:
            self._fit_rating(validation, train, items, users)
        if self.ranking_names:
            self._fit_ranking(validation)
        return self

    def over(
        self, components: dict[str, Recommender], history: pd.DataFrame, items: pd.DataFrame | None = None
    ) -> Fusion:
        """The blend learned on validation from the components' training-only fits, applied to ``components``
        (the same models made to know ``history``, the training and validation interactions:
        :meth:`Recommender.refitted`), as stacking is done: the weights are kept, the users' histories, activity
        segments and the catalogue's counts become ``history``'s. ``self`` is unchanged."""
        out = copy.copy(self)
        out.components = {name: components[name] for name in self.components}
        out._know(history, items)
        return out

    def _know(self, interactions: pd.DataFrame, items: pd.DataFrame | None) -> None:
        """The users' histories, activity segments and the catalogue's counts from ``interactions``, the
        components checked to share its catalogue."""
        self._index(interactions, items)
        for name, model in self.components.items():
            if not np.array_equal(model.item_ids, self.item_ids):
                raise ValueError(f"component {name} was fitted on another catalogue than the fusion's")
        self._activity = interactions["user_id"].astype(str).value_counts()
        self._item_segment = pd.Series(popularity_segment(self.item_counts), index=self.item_ids)

    def _features(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1 + components) design matrix [1, r̂_1, ...] of clipped predictions, and each row's segment."""
        columns = [self.components[n].predict(users, items) for n in self.rating_names]
        return self._design(columns), self._segments(users, items)

    def _design(self, columns: list[np.ndarray]) -> np.ndarray:
        lo, hi = self._rating_range
        return np.column_stack([np.ones(len(columns[0])), *(np.clip(c, lo, hi) for c in columns)])

    def _segments(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        activity = activity_segment(pd.Series(users).map(self._activity).fillna(0).to_numpy())
        popularity = pd.Series(items).map(self._item_segment).fillna("cold").to_numpy()
        return np.char.add(np.char.add(activity.astype(str), "|"), popularity.astype(str))

    def _blend(self, weights: dict[str, np.ndarray], X: np.ndarray, segments: np.ndarray) -> np.ndarray:
        return np.clip(_apply(weights, X, segments), *self._rating_range)

    def _fit_rating(self, validation, train=None, items=None, users_frame=None) -> None:
        names = ["intercept", *self.rating_names]
        if self._fixed_rating is not None:
            w = np.array([self._fixed_rating.get(n, 0.0) for n in names])
            self._weights, self.blender_, self.cv_ = {"global": w}, {"fixed": True}, {}
            self.rating_weights_ = {"global": dict(zip(names, map(float, w), strict=True))}
            return
        users = validation["user_id"].astype(str).to_numpy()
        X, segments = self._features(users, validation["item_id"].astype(str).to_numpy())
        y = validation["rating"].to_numpy(dtype=np.float64)
        fold = _user_folds(users, self.config.folds, self.config.seed)
        self.cv_, fitted = {}, {}
        for a_g, a_s in itertools.product(self.config.global_alphas, self.config.segment_alphas):
            se = np.zeros(len(y))
            for f in range(self.config.folds):
                held = fold == f
                weights = _segment_ridge(X[~held], y[~held], segments[~held], a_g, a_s)
                se[held] = (y[held] - self._blend(weights, X[held], segments[held])) ** 2
            key = f"validation:global_alpha={a_g:g},segment_alpha={a_s:g}"
            self.cv_[key] = float(se.mean())
            fitted[key] = lambda a_g=a_g, a_s=a_s: _segment_ridge(X, y, segments, a_g, a_s)
        stacked = self._stacking_rows(train, items, users_frame) if train is not None else None
        if stacked is not None:
            Xs, ys, segs, cols = stacked
            for a_g, a_s in itertools.product(self.config.global_alphas, self.config.segment_alphas):
                weights = _segment_ridge(Xs, ys, segs, a_g, a_s)
                key = f"stacked:global_alpha={a_g:g},segment_alpha={a_s:g}"
                self.cv_[key] = float(np.mean((y - self._blend(weights, X[:, cols], segments)) ** 2))
                fitted[key] = lambda weights=weights: {seg: _expand(w, cols, len(names)) for seg, w in weights.items()}
        # each component alone is a candidate too: blending must earn its place on held-out rows
        for m, name in enumerate(self.rating_names, start=1):
            key = f"only={name}"
            self.cv_[key] = float(np.mean((y - X[:, m]) ** 2))
            fitted[key] = lambda m=m: {"global": np.eye(len(names))[m]}
        best = min(self.cv_, key=self.cv_.get)
        self._weights = fitted[best]()
        if best.startswith("only="):
            self.blender_ = {"single": best[5:], "validation_mse": self.cv_[best]}
        else:
            kind, _, alphas = best.partition(":")
            a_g, a_s = (float(part.split("=")[1]) for part in alphas.split(","))
            self.blender_ = {"kind": kind, "global_alpha": a_g, "segment_alpha": a_s, "validation_mse": self.cv_[best]}
            if kind == "stacked":
                self.blender_ |= {"rows": len(stacked[1]), "components": [names[c] for c in stacked[3][1:]]}
        self.rating_weights_ = {seg: dict(zip(names, map(float, w), strict=True)) for seg, w in self._weights.items()}

    def _stacking_rows(self, train, items, users_frame):
        """The stacked blender's training data from out-of-fold predictions of every training rating:
        (design matrix, ratings, segments, the design columns of ``_features`` it holds); None when off or
        when no component has out-of-fold predictions."""
        if not self.config.stacking_folds:
            return None
        fold = np.random.default_rng(self.config.seed).integers(0, self.config.stacking_folds, len(train))
        columns, cols = [], [0]
        for m, name in enumerate(self.rating_names, start=1):
            oof = self.components[name].oof_predictions(train, fold, items=items, users=users_frame)
            if oof is not None:
                columns.append(oof)
                cols.append(m)
        if not columns:
            return None
        users, items_ = train["user_id"].astype(str).to_numpy(), train["item_id"].astype(str).to_numpy()
        ratings = train["rating"].to_numpy(dtype=np.float64)
        return self._design(columns), ratings, self._segments(users, items_), np.array(cols)

    def _fit_ranking(self, validation: pd.DataFrame | None) -> None:
        if self._fixed_ranking is not None:
            self._ranking = np.array([self._fixed_ranking.get(n, 0.0) for n in self.ranking_names])
            self.ranking_weights_ = dict(zip(self.ranking_names, map(float, self._ranking), strict=True))
            return
        users, relevant, exclude, cols = self._validation_targets(validation)
        grid = simplex_grid(len(self.ranking_names), self.config.grid_points)
        ndcg, alone = np.zeros(len(grid)), np.zeros(len(self.ranking_names))  # sums over users, block by block
        for rows in user_blocks(len(users), len(cols)):
            standardised = [_standardise(self.components[n].score(users[rows])[:, cols]) for n in self.ranking_names]
            for g, weights in enumerate(grid):
                ndcg[g] += self._ndcg_sum(
                    sum(w * s for w, s in zip(weights, standardised, strict=True)), relevant[rows], exclude[rows]
                )
            alone += [self._ndcg_sum(s, relevant[rows], exclude[rows]) for s in standardised]
        ndcg, alone = ndcg / len(users), alone / len(users)
        best = int(np.argmax(ndcg))  # first best: ties go to the earlier grid point
        self._ranking = grid[best]
        self.ranking_weights_ = dict(zip(self.ranking_names, map(float, self._ranking), strict=True))
        self.validation_ndcg_ = {
            "fusion": float(ndcg[best]),
            **dict(zip(self.ranking_names, map(float, alone), strict=True)),
        }

    def _validation_targets(self, validation: pd.DataFrame):
        """Validation users with a relevant candidate, their relevance/exclusion matrices and candidate columns."""
        targets = ranking_targets(self, validation, cold_candidates=self.config.cold_candidates)
        if len(targets[0]) == 0:
            raise ValueError("no validation user has a held-out candidate item: cannot learn ranking weights")
        return targets

    def _ndcg_sum(self, scores: np.ndarray, relevant: sp.csr_matrix, exclude: sp.csr_matrix) -> float:
        return float(np.sum(ndcg_at_k(scores, relevant, exclude, self.config.k)))

    # --- prediction ----------------------------------------------------------------------------------------
    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        if "rating" not in self.tasks:
            return super().predict(users, items)
        X, segments = self._features(np.asarray(users, dtype=str), np.asarray(items, dtype=str))
        return self._blend(self._weights, X, segments)

    def score(self, users: Ids) -> np.ndarray:
        if "ranking" not in self.tasks:
            return super().score(users)
        total = np.zeros((len(users), len(self.item_ids)))
        for part in self.score_parts(users).values():
            total += part
        return total

    def score_parts(self, users: Ids) -> dict[str, np.ndarray]:
        """Each ranking component's weighted, standardised scores (their sum is ``score``): what drove a
        recommendation."""
        return {
            name: w * _standardise(self.components[name].score(users))
            for w, name in zip(self._ranking, self.ranking_names, strict=True)
            if w != 0
        }


def _user_folds(users: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold per row, the same for every row of a user (seeded)."""
    unique, inverse = np.unique(users, return_inverse=True)
    return np.random.default_rng(seed).integers(0, folds, len(unique))[inverse]


def _ridge(X: np.ndarray, y: np.ndarray, alpha: float, prior: np.ndarray) -> np.ndarray:
    """argmin ‖y − X w‖² + α ‖w − prior‖²."""
    gram = X.T @ X + alpha * np.eye(X.shape[1])
    return np.linalg.solve(gram, X.T @ y + alpha * prior)


def _segment_ridge(X, y, segments, global_alpha: float, segment_alpha: float) -> dict[str, np.ndarray]:
    m = X.shape[1] - 1
    prior = np.concatenate([[0.0], np.full(m, 1.0 / m)])
    weights = {"global": _ridge(X, y, global_alpha, prior)}
    if np.isfinite(segment_alpha):
        for seg in np.unique(segments):
            rows = segments == seg
            weights[str(seg)] = _ridge(X[rows], y[rows], segment_alpha, weights["global"])
    return weights


def _apply(weights: dict[str, np.ndarray], X: np.ndarray, segments: np.ndarray) -> np.ndarray:
    out = X @ weights["global"]
    for seg, w in weights.items():
        if seg != "global":
            rows = segments == seg
            out[rows] = X[rows] @ w
    return out


def _expand(w: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Weights over design columns ``cols`` as weights over all ``n`` columns (0 elsewhere)."""
    full = np.zeros(n)
    full[cols] = w
    return full


def _standardise(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean over finite entries, over its standard deviation (constant rows give 0);
    non-finite entries become a large negative number (so that a zero weight cancels them)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if finite.all():  # the usual case, without the NaN-aware (slower) reductions
        mean, std = scores.mean(axis=1, keepdims=True), scores.std(axis=1, keepdims=True)
        return np.where(std > 0, (scores - mean) / np.where(std > 0, std, 1.0), 0.0)
    filled = np.where(finite, scores, np.nan)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(filled, axis=1, keepdims=True)
        std = np.nanstd(filled, axis=1, keepdims=True)
    out = np.where(std > 0, (filled - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.where(finite, out, -1e6)


def simplex_grid(m: int, max_points: int) -> np.ndarray:
    """Weight vectors w ≥ 0, Σw = 1, on the finest regular grid with at most ``max_points`` points; the
    vertices (each component alone) come first."""
    from math import comb

    if m == 1:
        return np.ones((1, 1))
    steps = 1
    while comb(steps + 1 + m - 1, m - 1) <= max_points:
        steps += 1
    points = [np.array(c) / steps for c in itertools.product(range(steps + 1), repeat=m) if sum(c) == steps]
    vertices = [p for p in points if p.max() == 1.0]
    others = [p for p in points if p.max() < 1.0]
    return np.array(vertices + others)
