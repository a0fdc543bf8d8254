"""Honest baselines: global mean, regularised user + item biases (ALS), popularity, biased MF (ALS).

Each declares a small search space that ``models.tuning`` searches on validation RMSE; none looks at test
data. Cold start: an unknown user or item contributes a zero bias (and zero factors), so
predictions fall back to the global mean plus whichever bias is known; an unknown user is ranked by item
bias (bias ALS, biased MF) or popularity (popularity).
"""

from __future__ import annotations

import numpy as np

from models.base import Ids, Recommender, rows_at
from models.tuning import SearchSpace, validation_rmse


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
    Search space: (reg_user, reg_item) over :data:`PENALTIES` × :data:`PENALTIES`, by validation RMSE.

    Parameters
    ----------
    reg_user, reg_item : float
        L2 penalties.
    n_epochs : int
        ALS sweeps; the estimate converges in a handful.
    """

    name = "bias_als"
    state_fields = ("user_bias", "item_bias", "reg_user_", "reg_item_")
    summary_fields = ("reg_user_", "reg_item_")
    refits_per_fold = True
    PENALTIES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 15.0, 20.0, 30.0)

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_epochs: int = 20):
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs

    def search_space(self) -> SearchSpace:
        return SearchSpace(grid={"reg_user": self.PENALTIES, "reg_item": self.PENALTIES})

    def fit(self, train, validation=None, *, items=None, users=None) -> BiasALS:
        u, i = self._index(train, items)
        r = train["rating"].to_numpy(dtype=np.float64)
        self.reg_user_, self.reg_item_ = self.reg_user, self.reg_item
        n_u, n_i = len(self.user_ids), len(self.item_ids)
        count_u = np.bincount(u, minlength=n_u)
        count_i = np.bincount(i, minlength=n_i)
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        resid = r - self.global_mean
        for _ in range(self.n_epochs):
            bi = np.bincount(i, resid - bu[u], minlength=n_i) / np.maximum(self.reg_item + count_i, 1e-12)
            bu = np.bincount(u, resid - bi[i], minlength=n_u) / np.maximum(self.reg_user + count_u, 1e-12)
        self.user_bias, self.item_bias = bu, bi
        return self

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        u, i = self.user_index(users), self.item_index(items)
        return self.global_mean + rows_at(self.user_bias, u, 0.0) + rows_at(self.item_bias, i, 0.0)

    def score(self, users: Ids) -> np.ndarray:
        # A user's bias does not change the order of items: rank by item bias (cold items: 0).
        return np.broadcast_to(self.item_bias, (len(users), len(self.item_ids))).copy()


class BiasedMF(Recommender):
    """Biased matrix factorisation for explicit ratings, r̂ = μ + b_u + b_i + p_u·q_i, fitted by ALS.

    Each half-sweep solves one small ridge regression per user (or item) on its ratings, with penalty
    ``reg`` × (number of its ratings) on factors ("weighted-λ") and ``reg_bias`` on the bias. With a
    validation fold, the number of sweeps is chosen by validation RMSE (early stopping: the parameters of the
    best sweep are kept). Search space: (factors, reg) from :data:`CONFIGS`, by validation RMSE.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    reg, reg_bias : float
        Penalties on factors (per rating) and on biases.
    max_epochs : int
        ALS sweeps (at most, with a validation fold).
    seed : int
        Seed of the factor initialisation.
    """

    name = "biased_mf"
    state_fields = ("user_bias", "item_bias", "P", "Q", "factors_", "reg_", "epochs_")
    summary_fields = ("factors_", "reg_", "epochs_")
    refits_per_fold = True
    CONFIGS = ({"factors": 8, "reg": 0.1}, {"factors": 16, "reg": 0.3}, {"factors": 32, "reg": 1.0})

    def __init__(self, factors: int = 16, reg: float = 0.1, reg_bias: float = 5.0, max_epochs: int = 10, seed: int = 0):
        self.factors = factors
        self.reg = reg
        self.reg_bias = reg_bias
        self.max_epochs = max_epochs
        self.seed = seed

    def search_space(self) -> SearchSpace:
        return SearchSpace(configs=self.CONFIGS)

    def fold_params(self) -> dict:
        return {"max_epochs": self.epochs_}  # the early-stopped count, refitted without validation

    def fit(self, train, validation=None, *, items=None, users=None) -> BiasedMF:
        u, i = self._index(train, items)
        r = train["rating"].to_numpy(dtype=np.float64)
        self.factors_, self.reg_ = self.factors, self.reg
        rng = np.random.default_rng(self.seed)
        n_u, n_i = len(self.user_ids), len(self.item_ids)
        self.P = rng.normal(0, 0.1, (n_u, self.factors))
        self.Q = rng.normal(0, 0.1, (n_i, self.factors))
        self.user_bias, self.item_bias = np.zeros(n_u), np.zeros(n_i)
        by_user = _groups(u, n_u)
        by_item = _groups(i, n_i)
        resid = r - self.global_mean
        early = validation is not None and len(validation) > 0
        best = (np.inf, 0, (self.P, self.Q, self.user_bias, self.item_bias))
        for epoch in range(1, self.max_epochs + 1):
            self.P, self.user_bias = _ridge_side(by_user, i, resid - self.item_bias[i], self.Q, self.reg, self.reg_bias)
            self.Q, self.item_bias = _ridge_side(by_item, u, resid - self.user_bias[u], self.P, self.reg, self.reg_bias)
            if early:
                loss = validation_rmse(self, validation)
                if loss < best[0]:  # each sweep binds new arrays: keeping them is a snapshot
                    best = (loss, epoch, (self.P, self.Q, self.user_bias, self.item_bias))
        self.epochs_ = self.max_epochs
        if early:
            self.epochs_ = best[1]
            self.P, self.Q, self.user_bias, self.item_bias = best[2]
        return self

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
