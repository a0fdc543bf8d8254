"""Honest baselines: global mean, regularised user + item biases (ALS), popularity, biased MF (ALS).

Each is tuned on the validation set it is given (a small grid, chosen by validation RMSE) and never looks
at test data. Cold start: an unknown user or item contributes a zero bias (and zero factors), so
predictions fall back to the global mean plus whichever bias is known; an unknown user is ranked by item
bias (bias ALS, biased MF) or popularity (popularity).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from models.base import Ids, Recommender, rows_at


def _rmse(model: Recommender, frame: pd.DataFrame) -> float:
    pred = model.predict(frame["user_id"], frame["item_id"])
    return float(np.sqrt(np.mean((pred - frame["rating"].to_numpy()) ** 2)))


class GlobalMean(Recommender):
    """Predicts the training mean rating for every pair. The floor any rating model must clear."""

    name = "global_mean"
    tasks = ("rating",)

    def fit(self, train, validation=None, *, items=None, users=None) -> GlobalMean:
        self._index(train, items)
        return self

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        return np.full(len(users), self.global_mean)


class Popularity(Recommender):
    """Ranks items by their number of training interactions (the same list for everyone)."""

    name = "popularity"
    tasks = ("ranking",)

    def fit(self, train, validation=None, *, items=None, users=None) -> Popularity:
        self._index(train, items)
        return self

    def score(self, users: Ids) -> np.ndarray:
        return self.popularity_scores(len(users))


class BiasALS(Recommender):
    """r̂(u, i) = μ + b_u + b_i, biases fitted by alternating least squares with L2 penalties.

    The same estimator as Surprise's ``BaselineOnly`` (ALS): each sweep sets every item bias to
    Σ(r − μ − b_u) / (reg_item + n_i), then every user bias to Σ(r − μ − b_i) / (reg_user + n_u).
    With a validation set, (reg_user, reg_item) are chosen from ``grid`` by validation RMSE.

    Parameters
    ----------
    reg_user, reg_item : float
        L2 penalties (used as given when no validation set is passed).
    n_epochs : int
        ALS sweeps; the estimate converges in a handful.
    grid : sequence of float
        Candidate penalties for both biases, tried as a full cross product.
    """

    name = "bias_als"
    state_fields = ("user_bias", "item_bias", "reg_user_", "reg_item_")

    def __init__(
        self,
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        n_epochs: int = 20,
        grid: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 15.0, 20.0, 30.0),
    ):
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs
        self.grid = grid

    def fit(self, train, validation=None, *, items=None, users=None) -> BiasALS:
        u, i = self._index(train, items)
        r = train["rating"].to_numpy(dtype=np.float64)
        candidates = [(self.reg_user, self.reg_item)]
        if validation is not None and len(validation):
            candidates = list(itertools.product(self.grid, self.grid))
        best = None
        for reg_u, reg_i in candidates:
            self._fit_biases(u, i, r, reg_u, reg_i)
            loss = _rmse(self, validation) if len(candidates) > 1 else 0.0
            if best is None or loss < best[0]:
                best = (loss, reg_u, reg_i)
        self.reg_user_, self.reg_item_ = best[1], best[2]
        self._fit_biases(u, i, r, self.reg_user_, self.reg_item_)
        return self

    def refit_copy(self) -> BiasALS:
        return BiasALS(reg_user=self.reg_user_, reg_item=self.reg_item_, n_epochs=self.n_epochs)

    def _fit_biases(self, u, i, r, reg_u, reg_i) -> None:
        n_u, n_i = len(self.user_ids), len(self.item_ids)
        count_u = np.bincount(u, minlength=n_u)
        count_i = np.bincount(i, minlength=n_i)
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        resid = r - self.global_mean
        for _ in range(self.n_epochs):
            bi = np.bincount(i, resid - bu[u], minlength=n_i) / np.maximum(reg_i + count_i, 1e-12)
            bu = np.bincount(u, resid - bi[i], minlength=n_u) / np.maximum(reg_u + count_u, 1e-12)
        self.user_bias, self.item_bias = bu, bi

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        u, i = self.user_index(users), self.item_index(items)
        return self.global_mean + rows_at(self.user_bias, u, 0.0) + rows_at(self.item_bias, i, 0.0)

    def score(self, users: Ids) -> np.ndarray:
        # A user's bias does not change the order of items: rank by item bias (cold items: 0).
        return np.broadcast_to(self.item_bias, (len(users), len(self.item_ids))).copy()


class BiasedMF(Recommender):
    """Biased matrix factorisation for explicit ratings, r̂ = μ + b_u + b_i + p_u·q_i, fitted by ALS.

    Each half-sweep solves one small ridge regression per user (or item) on its ratings, with penalty
    ``reg`` × (number of its ratings) on factors ("weighted-λ") and ``reg_bias`` on the bias. The number of
    sweeps is chosen by validation RMSE (early stopping) and (factors, reg) from ``grid``.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    reg, reg_bias : float
        Penalties on factors (per rating) and on biases.
    max_epochs : int
        Upper bound on ALS sweeps.
    grid : sequence of (factors, reg)
        Configurations tried when a validation set is given.
    seed : int
        Seed of the factor initialisation.
    """

    name = "biased_mf"
    state_fields = ("user_bias", "item_bias", "P", "Q", "factors_", "reg_", "epochs_")

    def __init__(
        self,
        factors: int = 16,
        reg: float = 0.1,
        reg_bias: float = 5.0,
        max_epochs: int = 10,
        grid: tuple[tuple[int, float], ...] = ((8, 0.1), (16, 0.3), (32, 1.0)),
        seed: int = 0,
    ):
        self.factors = factors
        self.reg = reg
        self.reg_bias = reg_bias
        self.max_epochs = max_epochs
        self.grid = grid
        self.seed = seed

    def fit(self, train, validation=None, *, items=None, users=None) -> BiasedMF:
        u, i = self._index(train, items)
        r = train["rating"].to_numpy(dtype=np.float64)
        configs = list(self.grid) if validation is not None and len(validation) else [(self.factors, self.reg)]
        best = None
        for factors, reg in configs:
            epochs, loss = self._train(u, i, r, factors, reg, validation, self.max_epochs)
            if best is None or loss < best[0]:
                best = (loss, factors, reg, epochs)
        _, self.factors_, self.reg_, self.epochs_ = best
        self._train(u, i, r, self.factors_, self.reg_, None, self.epochs_)
        return self

    def refit_copy(self) -> BiasedMF:
        return BiasedMF(
            factors=self.factors_, reg=self.reg_, reg_bias=self.reg_bias, max_epochs=self.epochs_, seed=self.seed
        )

    def _train(self, u, i, r, factors, reg, validation, epochs) -> tuple[int, float]:
        rng = np.random.default_rng(self.seed)
        n_u, n_i = len(self.user_ids), len(self.item_ids)
        self.P = rng.normal(0, 0.1, (n_u, factors))
        self.Q = rng.normal(0, 0.1, (n_i, factors))
        self.user_bias, self.item_bias = np.zeros(n_u), np.zeros(n_i)
        by_user = _groups(u, n_u)
        by_item = _groups(i, n_i)
        resid = r - self.global_mean
        best = (np.inf, 0, None)
        for epoch in range(1, epochs + 1):
            self.P, self.user_bias = _ridge_side(by_user, i, resid - self.item_bias[i], self.Q, reg, self.reg_bias)
            self.Q, self.item_bias = _ridge_side(by_item, u, resid - self.user_bias[u], self.P, reg, self.reg_bias)
            if validation is not None:
                loss = _rmse(self, validation)
                if loss < best[0]:
                    best = (loss, epoch, None)
        return (best[1], best[0]) if validation is not None else (epochs, 0.0)

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        return biased_factor_predictions(self, users, items)

    def score(self, users: Ids) -> np.ndarray:
        u = self.user_index(users)
        scores = np.tile(self.item_bias, (len(u), 1))
        known = u >= 0
        scores[known] += self.P[u[known]] @ self.Q.T
        return scores


def biased_factor_predictions(model: Recommender, users: Ids, items: Ids) -> np.ndarray:
    """r̂ = μ + b_u + b_i + p_u · q_i from a model's ``global_mean``, ``user_bias``, ``item_bias``, ``P`` and
    ``Q``; an unknown user or item contributes nothing (the contract's cold start)."""
    u, i = model.user_index(users), model.item_index(items)
    ku, ki = u >= 0, i >= 0
    out = np.full(len(u), model.global_mean)
    out[ku] += model.user_bias[u[ku]]
    out[ki] += model.item_bias[i[ki]]
    both = ku & ki
    out[both] += np.einsum("nf,nf->n", model.P[u[both]], model.Q[i[both]])
    return out


def _groups(index: np.ndarray, n: int) -> list[np.ndarray]:
    """Row positions grouped by ``index`` value (0..n-1)."""
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(n + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(n)]


def _ridge_side(groups, other, target, other_factors, reg, reg_bias):
    """Solve every row's [factors, bias] given the other side's factors (ridge per row)."""
    f = other_factors.shape[1]
    factors = np.zeros((len(groups), f))
    bias = np.zeros(len(groups))
    penalty = np.diag(np.r_[np.ones(f), 0.0])
    for k, rows in enumerate(groups):
        if len(rows) == 0:
            continue
        X = np.c_[other_factors[other[rows]], np.ones(len(rows))]
        A = X.T @ X + penalty * reg * len(rows)
        A[f, f] += reg_bias
        sol = np.linalg.solve(A, X.T @ target[rows])
        factors[k], bias[k] = sol[:f], sol[f]
    return factors, bias
