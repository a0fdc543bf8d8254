"""The field's strongest public models, wrapped behind reclab's contract (not reimplemented).

Libraries (all maintained, all installed from wheels, all fast on a CPU):

- Cornac (Preferred.AI): EASE (Steck, WWW 2019) and BPR (Rendle et al., UAI 2009) for top-K ranking;
- implicit (Ben Frederickson): ALS for implicit feedback (Hu, Koren and Volinsky, ICDM 2008);
- Surprise (Nicolas Hug): SVD (Funk; Koren's biased form) and SVD++ (Koren, KDD 2008) for rating prediction.

Each wrapper trains the library's model with fixed hyperparameters on the training fold and declares a small
search space, searched on validation by ``models.tuning`` like reclab's own models (RMSE for rating models,
NDCG@K for ranking models); it then exports the library's learned parameters into reclab's index order (catalogue items the library never saw get zero
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

from models.base import Ids, Recommender, catalogue, dense_items_limit, rows_at
from models.evaluation import RANKING_CUTOFF
from models.recommenders.baselines import biased_factor_predictions
from models.tuning import SearchSpace


def _library(name: str) -> str:
    return f"{name} {version(name)}"


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

    Score of user u: x_u · B over the catalogue (x_u: the user's binary training row). Search space: λ from
    :data:`LAMBDAS` (validation NDCG@k). Memory: one dense items × items matrix.
    """

    name = "ease"
    state_fields = ("B", "lamb_", "library_")
    summary_fields = ("lamb_", "library_")
    LAMBDAS = (20.0, 100.0, 300.0, 1000.0)

    def __init__(self, lamb: float = 300.0, k: int = RANKING_CUTOFF, seed: int = 0):
        self.lamb = lamb
        self.k = k
        self.seed = seed

    def search_space(self) -> SearchSpace:
        return SearchSpace(grid={"lamb": self.LAMBDAS})

    # B (float32) here and, inside Cornac, the Gram matrix, its inverse and B in float64: 58 bytes per item pair
    # at the peak, measured (5.5 GiB and 276 s for the 4-value search at MovieLens latest-small's 9,742 items:
    # python bench/stage_costs.py); the time grows with the cube of the items, so 12,000 is about 9 minutes
    MAX_ITEMS = 12_000

    def too_costly(self, train, items=None) -> str | None:
        return dense_items_limit(self.name, len(catalogue(train, items)), self.MAX_ITEMS, 58)

    def fit(self, train, validation=None, *, items=None, users=None) -> EASE:
        import cornac

        u, i = self._index(train, items)
        data, _, known = self._cornac_data(u, i)
        self.library_ = _library("cornac")
        model = cornac.models.EASE(lamb=self.lamb, posB=False, verbose=False, seed=self.seed)
        model.fit(data)
        self._library_model = (model, data)
        self.B = np.zeros((len(self.item_ids), len(self.item_ids)), dtype=np.float32)
        self.B[np.ix_(known, known)] = model.B
        self.lamb_ = self.lamb
        return self

    def score(self, users: Ids) -> np.ndarray:
        u = self.user_index(users)
        scores = np.asarray(self.seen_matrix(users) @ self.B, dtype=np.float64)
        _rank_unknown_users_by_popularity(self, scores, u)
        return scores


class BPR(_CornacRanker):
    """Cornac's BPR: matrix factorisation with item bias trained by SGD on (user, seen item, unseen item)
    triples. Score: b_i + p_u · q_i. Search space: (factors, λ) from :data:`CONFIGS` (validation NDCG@k);
    one thread (SGD with several is not reproducible)."""

    name = "bpr"
    state_fields = ("P", "Q", "item_bias", "factors_", "lambda_reg_", "library_")
    summary_fields = ("factors_", "lambda_reg_", "library_")
    CONFIGS = (
        {"factors": 32, "lambda_reg": 0.01},
        {"factors": 64, "lambda_reg": 0.01},
        {"factors": 64, "lambda_reg": 0.001},
    )

    def __init__(
        self,
        factors: int = 32,
        lambda_reg: float = 0.01,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        k: int = RANKING_CUTOFF,
        seed: int = 0,
    ):
        self.factors = factors
        self.lambda_reg = lambda_reg
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.k = k
        self.seed = seed

    def search_space(self) -> SearchSpace:
        return SearchSpace(configs=self.CONFIGS)

    def fit(self, train, validation=None, *, items=None, users=None) -> BPR:
        import cornac

        u, i = self._index(train, items)
        data, known_users, known_items = self._cornac_data(u, i)
        self.library_ = _library("cornac")
        model = cornac.models.BPR(
            k=self.factors,
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            lambda_reg=self.lambda_reg,
            num_threads=1,
            seed=self.seed,
            verbose=False,
        )
        model.fit(data)
        self._library_model = (model, data)
        self.P = np.zeros((len(self.user_ids), self.factors))
        self.Q = np.zeros((len(self.item_ids), self.factors))
        self.item_bias = np.zeros(len(self.item_ids))
        self.P[known_users] = model.u_factors
        self.Q[known_items] = model.i_factors
        self.item_bias[known_items] = model.i_biases
        self.factors_, self.lambda_reg_ = self.factors, self.lambda_reg
        return self

    def score(self, users: Ids) -> np.ndarray:
        u = self.user_index(users)
        scores = self.item_bias + rows_at(self.P, u, 0.0) @ self.Q.T
        _rank_unknown_users_by_popularity(self, scores, u)
        return scores


class ImplicitALS(Recommender):
    """implicit's ALS for implicit feedback (confidence 1 + α·x): score p_u · q_i. Search space: (factors, λ,
    α) from :data:`CONFIGS` (validation NDCG@k)."""

    name = "implicit_als"
    tasks = ("ranking",)
    state_fields = ("P", "Q", "factors_", "regularization_", "alpha_", "library_")
    summary_fields = ("factors_", "regularization_", "alpha_", "library_")
    CONFIGS = tuple(
        {"factors": f, "regularization": r, "alpha": a}
        for f, r, a in ((32, 0.1, 1.0), (64, 0.1, 1.0), (64, 1.0, 5.0), (128, 1.0, 5.0))
    )

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.1,
        alpha: float = 1.0,
        iterations: int = 15,
        k: int = RANKING_CUTOFF,
        seed: int = 0,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.k = k
        self.seed = seed

    def search_space(self) -> SearchSpace:
        return SearchSpace(configs=self.CONFIGS)

    def fit(self, train, validation=None, *, items=None, users=None) -> ImplicitALS:
        from implicit.cpu.als import AlternatingLeastSquares

        self._index(train, items)
        self.library_ = _library("implicit")
        user_items = sp.csr_matrix((self._seen > 0).astype(np.float32))
        with _one_blas_thread():
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=1,
                calculate_training_loss=False,
            )
            model.fit(user_items, show_progress=False)
        self._library_model = (model, user_items)
        self.P, self.Q = np.asarray(model.user_factors), np.asarray(model.item_factors)
        self.factors_, self.regularization_, self.alpha_ = self.factors, self.regularization, self.alpha
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

    refits_per_fold = True

    def _fit_library(self, train, items, algo) -> None:
        """Fit the Surprise algorithm ``algo`` on ``train`` and export its parameters (``_export``)."""
        u, i = self._index(train, items)
        trainset, known_users, known_items = self._trainset(train, u, i)
        self.library_ = _library("scikit-surprise")
        algo.fit(trainset)
        self._library_model = (algo, trainset)
        self._export(algo, trainset, known_users, known_items)

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        return biased_factor_predictions(self, users, items)


class SurpriseSVD(_SurpriseRater):
    """Surprise's SVD (biased MF by SGD): r̂ = μ + b_u + b_i + p_u · q_i. Search space: (factors, reg_all)
    from :data:`CONFIGS` (validation RMSE)."""

    name = "svd"
    state_fields = ("P", "Q", "user_bias", "item_bias", "n_factors_", "reg_all_", "library_")
    summary_fields = ("n_factors_", "reg_all_", "library_")
    CONFIGS = tuple({"n_factors": f, "reg_all": r} for f, r in ((20, 0.05), (50, 0.05), (50, 0.1), (100, 0.1)))

    def __init__(
        self, n_factors: int = 20, reg_all: float = 0.05, n_epochs: int = 20, lr_all: float = 0.005, seed: int = 0
    ):
        self.n_factors = n_factors
        self.reg_all = reg_all
        self.n_epochs = n_epochs
        self.lr_all = lr_all
        self.seed = seed

    def search_space(self) -> SearchSpace:
        return SearchSpace(configs=self.CONFIGS)

    def fit(self, train, validation=None, *, items=None, users=None) -> SurpriseSVD:
        from surprise import SVD

        algo = SVD(
            n_factors=self.n_factors,
            n_epochs=self.n_epochs,
            lr_all=self.lr_all,
            reg_all=self.reg_all,
            random_state=self.seed,
        )
        self._fit_library(train, items, algo)
        self.n_factors_, self.reg_all_ = self.n_factors, self.reg_all
        return self

    def _export(self, algo, trainset, known_users, known_items) -> None:
        f = algo.pu.shape[1]
        self.P, self.Q = np.zeros((len(self.user_ids), f)), np.zeros((len(self.item_ids), f))
        self.user_bias, self.item_bias = np.zeros(len(self.user_ids)), np.zeros(len(self.item_ids))
        self.P[known_users], self.Q[known_items] = algo.pu, algo.qi
        self.user_bias[known_users], self.item_bias[known_items] = algo.bu, algo.bi
        self.global_mean = float(trainset.global_mean)


class SurpriseSVDpp(_SurpriseRater):
    """Surprise's SVD++: r̂ = μ + b_u + b_i + q_i · (p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j), N(u) the user's training
    items. The bracket is exported per user (it depends on training data only). Search space: (factors,
    reg_all) from :data:`CONFIGS` (validation RMSE)."""

    name = "svdpp"
    state_fields = ("P", "Q", "user_bias", "item_bias", "n_factors_", "reg_all_", "library_")
    summary_fields = ("n_factors_", "reg_all_", "library_")
    CONFIGS = tuple({"n_factors": f, "reg_all": r} for f, r in ((20, 0.02), (20, 0.05), (50, 0.1)))

    def __init__(self, n_factors: int = 20, reg_all: float = 0.02, n_epochs: int = 20, seed: int = 0):
        self.n_factors = n_factors
        self.reg_all = reg_all
        self.n_epochs = n_epochs
        self.seed = seed

    def search_space(self) -> SearchSpace:
        return SearchSpace(configs=self.CONFIGS)

    def fit(self, train, validation=None, *, items=None, users=None) -> SurpriseSVDpp:
        from surprise import SVDpp

        # cache_ratings: the user's rated items as a C array instead of a Python loop per rating; the same
        # arithmetic in the same order (identical parameters, a test checks), about 1.2x faster
        algo = SVDpp(
            n_factors=self.n_factors,
            n_epochs=self.n_epochs,
            reg_all=self.reg_all,
            random_state=self.seed,
            cache_ratings=True,
        )
        self._fit_library(train, items, algo)
        self.n_factors_, self.reg_all_ = self.n_factors, self.reg_all
        return self

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
    matrix are exported. Search space: ``k`` from :data:`NEIGHBOURS` (validation RMSE)."""

    name = "knn_baseline"
    state_fields = ("S", "user_bias", "item_bias", "R_data", "R_indices", "R_indptr", "k_", "min_k", "library_")
    summary_fields = ("k_", "library_")
    NEIGHBOURS = (20, 40)

    def __init__(self, k: int = 20, min_k: int = 1, shrinkage: int = 100, seed: int = 0):
        self.k = k
        self.min_k = min_k
        self.shrinkage = shrinkage
        self.seed = seed

    def search_space(self) -> SearchSpace:
        return SearchSpace(grid={"k": self.NEIGHBOURS})

    # Surprise's pearson_baseline keeps four items x items arrays besides the similarities (float64), and the
    # export a copy: about 56 bytes per item pair (an estimate from its code, not measured)
    MAX_ITEMS = 12_000

    def too_costly(self, train, items=None) -> str | None:
        return dense_items_limit(self.name, len(catalogue(train, items)), self.MAX_ITEMS, 56)

    def fit(self, train, validation=None, *, items=None, users=None) -> SurpriseKNNBaseline:
        from surprise import KNNBaseline

        sim = {"name": "pearson_baseline", "user_based": False, "shrinkage": self.shrinkage}
        algo = KNNBaseline(k=self.k, min_k=self.min_k, sim_options=sim, bsl_options={"method": "als"}, verbose=False)
        self._fit_library(train, items, algo)
        return self

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
