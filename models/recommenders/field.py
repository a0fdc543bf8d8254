"""The field's strongest public models, wrapped behind reclab's contract (not reimplemented).

Libraries (all maintained, all installed from wheels, all fast on a CPU):

- Cornac (Preferred.AI): EASE (Steck, WWW 2019) and BPR (Rendle et al., UAI 2009) for top-K ranking;
- implicit (Ben Frederickson): ALS for implicit feedback (Hu, Koren and Volinsky, ICDM 2008);
- Surprise (Nicolas Hug): SVD (Funk; Koren's biased form) and SVD++ (Koren, KDD 2008) for rating prediction.

Each wrapper trains the library's model on the training fold, tunes a small grid on validation like reclab's
own models (RMSE for rating models, NDCG@K for ranking models), refits nothing else, and then exports the
library's learned parameters into reclab's index order (catalogue items the library never saw get zero
parameters: the model's "no evidence" score). ``predict``/``score`` evaluate the library's own scoring rule on
those parameters (a test checks them against the library's ``predict``/``score`` to 1e-9), so that a fitted
model is plain arrays: saved in a bundle and served without the library (``_library_model``, the last
fitted library object, stays in memory only, for those checks). Each records ``library_`` (name and
version) in its fitted parameters, hence in ``model_fits``.

Ranking models treat every training rating as an interaction (binary), as their papers do. Unknown users get
the popularity ranking and the training mean (the contract's cold start).
"""

from __future__ import annotations

import contextlib
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import Ids, Recommender, rows_at
from models.evaluation.harness import ValidationNDCG
from models.recommenders.baselines import biased_factor_predictions


def _library(name: str) -> str:
    return f"{name} {version(name)}"


def _best(model: Recommender, configs: list, fit_one, score, lower_is_better: bool):
    """Fit every configuration, keep the best validation score (the first on ties); returns (config, score)
    with ``model`` left as the best configuration fitted it (its attributes as they were after that fit: every
    ``fit_one`` binds new arrays, and each fit is seeded, so this is what refitting the best would give,
    without paying for the fit twice). A single configuration is fitted and not scored (nan)."""
    if len(configs) == 1:
        fit_one(configs[0])
        return configs[0], float("nan")
    best = None
    for n, config in enumerate(configs):
        fit_one(config)
        value = score()
        better = best is None or (value < best[1] if lower_is_better else value > best[1])
        if better:
            best = (config, value, n, dict(vars(model)))
    if best[2] != len(configs) - 1:  # the model holds the last fit: put the best one's attributes back
        vars(model).clear()
        vars(model).update(best[3])
    return best[0], best[1]


@contextlib.contextmanager
def _one_blas_thread():
    """implicit warns (and slows down) when BLAS runs its own threads inside its parallel loops."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _rank_unknown_users_by_popularity(model: Recommender, scores: np.ndarray, u: np.ndarray) -> None:
    """The contract's cold start for ranking: rows of users unseen in training (``u`` < 0) get popularity."""
    unknown = u < 0
    if unknown.any():
        scores[unknown] = model.popularity_scores(int(unknown.sum()))


class _CornacRanker(Recommender):
    """What the Cornac ranking wrappers share: a binary Cornac dataset in reclab's index order."""

    tasks = ("ranking",)

    def _cornac_data(self, u: np.ndarray, i: np.ndarray):
        from cornac.data import Dataset

        pairs = np.unique(np.c_[u, i], axis=0)
        data = Dataset.from_uir([(str(a), str(b), 1.0) for a, b in pairs], seed=self.seed)
        users = np.array([int(raw) for raw in data.user_ids])  # cornac index -> reclab user position
        items = np.array([int(raw) for raw in data.item_ids])
        return data, users, items


class EASE(_CornacRanker):
    """Cornac's EASE: a closed-form item-item model, B = −P / diag(P) with P = (XᵀX + λI)⁻¹, zero diagonal.

    Score of user u: x_u · B over the catalogue (x_u: the user's binary training row). λ is chosen on
    validation NDCG@k from ``lambdas``. Memory: one dense items × items matrix.
    """

    name = "ease"
    state_fields = ("B", "lamb_", "library_")

    def __init__(self, lambdas: tuple[float, ...] = (20.0, 100.0, 300.0, 1000.0), k: int = 10, seed: int = 0):
        self.lambdas = lambdas
        self.k = k
        self.seed = seed

    def fit(self, train, validation=None, *, items=None, users=None) -> EASE:
        import cornac

        u, i = self._index(train, items)
        data, _, known = self._cornac_data(u, i)
        self.library_ = _library("cornac")
        judge = ValidationNDCG(self, validation, self.k)
        lambdas = list(self.lambdas) if judge.targets is not None else [self.lambdas[len(self.lambdas) // 2]]

        def fit_one(lamb):
            model = cornac.models.EASE(lamb=lamb, posB=False, verbose=False, seed=self.seed)
            model.fit(data)
            self._library_model = (model, data)
            B = np.zeros((len(self.item_ids), len(self.item_ids)), dtype=np.float32)
            B[np.ix_(known, known)] = model.B
            self.B = B

        self.lamb_, _ = _best(self, lambdas, fit_one, lambda: judge(self), False)
        return self

    def score(self, users: Ids) -> np.ndarray:
        u = self.user_index(users)
        scores = np.asarray(self.seen_matrix(users) @ self.B, dtype=np.float64)
        _rank_unknown_users_by_popularity(self, scores, u)
        return scores


class BPR(_CornacRanker):
    """Cornac's BPR: matrix factorisation with item bias trained by SGD on (user, seen item, unseen item)
    triples. Score: b_i + p_u · q_i. (factors, λ) chosen on validation NDCG@k from ``grid``; one thread (SGD
    with several is not reproducible)."""

    name = "bpr"
    state_fields = ("P", "Q", "item_bias", "factors_", "lambda_reg_", "library_")

    def __init__(
        self,
        grid: tuple[tuple[int, float], ...] = ((32, 0.01), (64, 0.01), (64, 0.001)),
        max_iter: int = 200,
        learning_rate: float = 0.05,
        k: int = 10,
        seed: int = 0,
    ):
        self.grid = grid
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.k = k
        self.seed = seed

    def fit(self, train, validation=None, *, items=None, users=None) -> BPR:
        import cornac

        u, i = self._index(train, items)
        data, known_users, known_items = self._cornac_data(u, i)
        self.library_ = _library("cornac")
        judge = ValidationNDCG(self, validation, self.k)
        grid = list(self.grid) if judge.targets is not None else [self.grid[0]]

        def fit_one(config):
            factors, reg = config
            model = cornac.models.BPR(
                k=factors,
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                lambda_reg=reg,
                num_threads=1,
                seed=self.seed,
                verbose=False,
            )
            model.fit(data)
            self._library_model = (model, data)
            self.P = np.zeros((len(self.user_ids), factors))
            self.Q = np.zeros((len(self.item_ids), factors))
            self.item_bias = np.zeros(len(self.item_ids))
            self.P[known_users] = model.u_factors
            self.Q[known_items] = model.i_factors
            self.item_bias[known_items] = model.i_biases

        (self.factors_, self.lambda_reg_), _ = _best(self, grid, fit_one, lambda: judge(self), False)
        return self

    def score(self, users: Ids) -> np.ndarray:
        u = self.user_index(users)
        scores = self.item_bias + rows_at(self.P, u, 0.0) @ self.Q.T
        _rank_unknown_users_by_popularity(self, scores, u)
        return scores


class ImplicitALS(Recommender):
    """implicit's ALS for implicit feedback (confidence 1 + α·x): score p_u · q_i. (factors, λ, α) chosen on
    validation NDCG@k from ``grid``."""

    name = "implicit_als"
    tasks = ("ranking",)
    state_fields = ("P", "Q", "factors_", "regularization_", "alpha_", "library_")

    def __init__(
        self,
        grid: tuple[tuple[int, float, float], ...] = ((32, 0.1, 1.0), (64, 0.1, 1.0), (64, 1.0, 5.0), (128, 1.0, 5.0)),
        iterations: int = 15,
        k: int = 10,
        seed: int = 0,
    ):
        self.grid = grid
        self.iterations = iterations
        self.k = k
        self.seed = seed

    def fit(self, train, validation=None, *, items=None, users=None) -> ImplicitALS:
        from implicit.cpu.als import AlternatingLeastSquares

        self._index(train, items)
        self.library_ = _library("implicit")
        user_items = sp.csr_matrix((self._seen > 0).astype(np.float32))
        judge = ValidationNDCG(self, validation, self.k)
        grid = list(self.grid) if judge.targets is not None else [self.grid[0]]

        def fit_one(config):
            factors, reg, alpha = config
            with _one_blas_thread():
                model = AlternatingLeastSquares(
                    factors=factors,
                    regularization=reg,
                    alpha=alpha,
                    iterations=self.iterations,
                    random_state=self.seed,
                    num_threads=1,
                    calculate_training_loss=False,
                )
                model.fit(user_items, show_progress=False)
            self._library_model = (model, user_items)
            self.P, self.Q = np.asarray(model.user_factors), np.asarray(model.item_factors)

        (self.factors_, self.regularization_, self.alpha_), _ = _best(self, grid, fit_one, lambda: judge(self), False)
        return self

    def score(self, users: Ids) -> np.ndarray:
        u = self.user_index(users)
        scores = rows_at(self.P, u, 0.0) @ self.Q.T
        _rank_unknown_users_by_popularity(self, scores, u)
        return scores.astype(np.float64)


class _SurpriseRater(Recommender):
    """What the Surprise wrappers share: a Surprise trainset and the export of its inner ids."""

    tasks = ("rating",)

    def _trainset(self, train: pd.DataFrame, u: np.ndarray, i: np.ndarray):
        from surprise import Dataset, Reader

        frame = pd.DataFrame({"u": u, "i": i, "r": train["rating"].to_numpy(dtype=np.float64)})
        lo, hi = float(frame["r"].min()), float(frame["r"].max())
        trainset = Dataset.load_from_df(frame, Reader(rating_scale=(lo, max(hi, lo + 1e-9)))).build_full_trainset()
        users = np.array([trainset.to_raw_uid(inner) for inner in range(trainset.n_users)])
        items = np.array([trainset.to_raw_iid(inner) for inner in range(trainset.n_items)])
        return trainset, users, items

    def _rmse(self, validation: pd.DataFrame) -> float:
        pred = self.predict(validation["user_id"], validation["item_id"])
        return float(np.sqrt(np.mean((pred - validation["rating"].to_numpy()) ** 2)))

    def _tune(self, train, validation, items, grid, make):
        """Fit ``make(config)`` (a Surprise algorithm) for each config, keep the best validation RMSE."""
        u, i = self._index(train, items)
        trainset, known_users, known_items = self._trainset(train, u, i)
        self.library_ = _library("scikit-surprise")
        grid = list(grid) if validation is not None and len(validation) else [grid[0]]

        def fit_one(config):
            algo = make(config)
            algo.fit(trainset)
            self._library_model = (algo, trainset)
            self._export(algo, trainset, known_users, known_items)

        best, _ = _best(self, grid, fit_one, lambda: self._rmse(validation), True)
        return best

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        return biased_factor_predictions(self, users, items)


class SurpriseSVD(_SurpriseRater):
    """Surprise's SVD (biased MF by SGD): r̂ = μ + b_u + b_i + p_u · q_i. (factors, reg_all) chosen on
    validation RMSE from ``grid``."""

    name = "svd"
    state_fields = ("P", "Q", "user_bias", "item_bias", "n_factors_", "reg_all_", "library_")

    def __init__(
        self,
        grid: tuple[tuple[int, float], ...] = ((20, 0.05), (50, 0.05), (50, 0.1), (100, 0.1)),
        n_epochs: int = 20,
        lr_all: float = 0.005,
        seed: int = 0,
    ):
        self.grid = grid
        self.n_epochs = n_epochs
        self.lr_all = lr_all
        self.seed = seed

    def fit(self, train, validation=None, *, items=None, users=None) -> SurpriseSVD:
        from surprise import SVD

        def make(config):
            factors, reg = config
            return SVD(
                n_factors=factors, n_epochs=self.n_epochs, lr_all=self.lr_all, reg_all=reg, random_state=self.seed
            )

        self.n_factors_, self.reg_all_ = self._tune(train, validation, items, self.grid, make)
        return self

    def refit_copy(self) -> SurpriseSVD:
        return SurpriseSVD(((self.n_factors_, self.reg_all_),), self.n_epochs, self.lr_all, self.seed)

    def _export(self, algo, trainset, known_users, known_items) -> None:
        f = algo.pu.shape[1]
        self.P, self.Q = np.zeros((len(self.user_ids), f)), np.zeros((len(self.item_ids), f))
        self.user_bias, self.item_bias = np.zeros(len(self.user_ids)), np.zeros(len(self.item_ids))
        self.P[known_users], self.Q[known_items] = algo.pu, algo.qi
        self.user_bias[known_users], self.item_bias[known_items] = algo.bu, algo.bi
        self.global_mean = float(trainset.global_mean)


class SurpriseSVDpp(_SurpriseRater):
    """Surprise's SVD++: r̂ = μ + b_u + b_i + q_i · (p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j), N(u) the user's training
    items. The bracket is exported per user (it depends on training data only). (factors, reg_all) chosen on
    validation RMSE from ``grid``."""

    name = "svdpp"
    state_fields = ("P", "Q", "user_bias", "item_bias", "n_factors_", "reg_all_", "library_")

    def __init__(
        self,
        grid: tuple[tuple[int, float], ...] = ((20, 0.02), (20, 0.05), (50, 0.1)),
        n_epochs: int = 20,
        seed: int = 0,
    ):
        self.grid = grid
        self.n_epochs = n_epochs
        self.seed = seed

    def fit(self, train, validation=None, *, items=None, users=None) -> SurpriseSVDpp:
        from surprise import SVDpp

        def make(config):
            factors, reg = config
            # cache_ratings: the user's rated items as a C array instead of a Python loop per rating; the same
            # arithmetic in the same order (identical parameters, a test checks), about 1.2x faster
            return SVDpp(
                n_factors=factors, n_epochs=self.n_epochs, reg_all=reg, random_state=self.seed, cache_ratings=True
            )

        self.n_factors_, self.reg_all_ = self._tune(train, validation, items, self.grid, make)
        return self

    def refit_copy(self) -> SurpriseSVDpp:
        return SurpriseSVDpp(((self.n_factors_, self.reg_all_),), self.n_epochs, self.seed)

    def _export(self, algo, trainset, known_users, known_items) -> None:
        f = algo.pu.shape[1]
        implicit = np.zeros((trainset.n_users, f))
        for inner in range(trainset.n_users):
            rated = [j for j, _ in trainset.ur[inner]]
            implicit[inner] = algo.yj[rated].sum(axis=0) / np.sqrt(len(rated))
        self.P, self.Q = np.zeros((len(self.user_ids), f)), np.zeros((len(self.item_ids), f))
        self.user_bias, self.item_bias = np.zeros(len(self.user_ids)), np.zeros(len(self.item_ids))
        self.P[known_users], self.Q[known_items] = algo.pu + implicit, algo.qi
        self.user_bias[known_users], self.item_bias[known_items] = algo.bu, algo.bi
        self.global_mean = float(trainset.global_mean)


class SurpriseKNNBaseline(_SurpriseRater):
    """Surprise's item-based KNNBaseline (Koren, TKDD 2010) with the shrunk Pearson-baseline similarity:
    r̂ = b_ui + Σ_j s_ij (r_uj − b_uj) / Σ_j s_ij over the ``k`` most similar items j the user rated (positive
    similarities only; at least ``min_k`` of them, else the baseline). The library's baselines and similarity
    matrix are exported; ``k`` is chosen on validation RMSE from ``ks``."""

    name = "knn_baseline"
    state_fields = ("S", "user_bias", "item_bias", "R_data", "R_indices", "R_indptr", "k_", "min_k", "library_")

    def __init__(self, ks: tuple[int, ...] = (20, 40), min_k: int = 1, shrinkage: int = 100, seed: int = 0):
        self.ks = ks
        self.min_k = min_k
        self.shrinkage = shrinkage
        self.seed = seed

    def fit(self, train, validation=None, *, items=None, users=None) -> SurpriseKNNBaseline:
        from surprise import KNNBaseline

        sim = {"name": "pearson_baseline", "user_based": False, "shrinkage": self.shrinkage}
        self.k_ = self._tune(
            train,
            validation,
            items,
            self.ks,
            lambda k: KNNBaseline(k=k, min_k=self.min_k, sim_options=sim, bsl_options={"method": "als"}, verbose=False),
        )
        return self

    def refit_copy(self) -> SurpriseKNNBaseline:
        return SurpriseKNNBaseline((int(self.k_),), self.min_k, self.shrinkage, self.seed)

    def _export(self, algo, trainset, known_users, known_items) -> None:
        n_u, n_i = len(self.user_ids), len(self.item_ids)
        self.S = np.zeros((n_i, n_i))
        self.S[np.ix_(known_items, known_items)] = algo.sim
        self.user_bias, self.item_bias = np.zeros(n_u), np.zeros(n_i)
        self.user_bias[known_users], self.item_bias[known_items] = algo.bu, algo.bi
        self.global_mean = float(trainset.global_mean)
        rows, cols, values = zip(*[(u, j, r) for u, rated in trainset.ur.items() for j, r in rated], strict=True)
        R = sp.csr_matrix((values, (known_users[list(rows)], known_items[list(cols)])), shape=(n_u, n_i))
        self.R_data, self.R_indices, self.R_indptr = R.data, R.indices, R.indptr
        self.k_ = algo.k

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        u, i = self.user_index(users), self.item_index(items)
        out = self.global_mean + rows_at(self.user_bias, u, 0.0) + rows_at(self.item_bias, i, 0.0)
        for n in np.flatnonzero((u >= 0) & (i >= 0)):
            start, end = self.R_indptr[u[n]], self.R_indptr[u[n] + 1]
            rated, r = self.R_indices[start:end], self.R_data[start:end]
            sims = self.S[i[n], rated]
            order = np.argsort(-sims, kind="stable")[: int(self.k_)]  # the k most similar, as heapq.nlargest
            keep = order[sims[order] > 0]
            if len(keep) < self.min_k or len(keep) == 0:
                continue
            baseline = self.global_mean + self.user_bias[u[n]] + self.item_bias[rated[keep]]
            out[n] += float(np.sum(sims[keep] * (r[keep] - baseline)) / np.sum(sims[keep]))
        return out
