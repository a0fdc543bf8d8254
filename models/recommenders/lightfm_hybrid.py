"""LightFM hybrid: collaborative identity features plus content features, tuned and calibrated on validation.

Item features: an identity feature per item (``identity=True``) plus content tokens: metadata (title words,
category, brand, genres, training-pair tags) and the item's top TF-IDF terms over its *training* reviews.
User features: identity plus attributes when the dataset has them (age band, gender, occupation) and the
user's top training-review terms. Rows are normalised; ``content_weight`` sets how much of a row the content
tokens share against the identity feature.

LightFM learns a ranking (WARP/BPR/logistic over all training interactions as positives); its scores are not
ratings, so ``predict`` maps them through an isotonic regression fitted on the *validation* pairs.

Pitfall guarded here: LightFM's own ``predict`` without the feature matrices used in training silently
returns wrong scores. The wrapper keeps its matrices, fingerprints them at fit time, and refuses to score
if they no longer match the model.

Reproducibility: exact only with ``num_threads=1`` (LightFM's Hogwild updates race across threads).

Cold start: an unknown user is scored by item biases and item features alone (a zero user vector); an item
without training interactions is scored through its content features (identity-only: its untrained
random embedding, i.e. chance).
"""

from __future__ import annotations

import copy
import hashlib
from typing import get_args

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import Ids, Recommender
from models.evaluation import RANKING_CUTOFF
from models.evaluation.metrics import ndcg_at_k, user_blocks
from models.progress import Progress
from models.recommenders import LightFMLoss
from models.recommenders.features import metadata_tokens, review_terms
from models.tuning import SearchSpace

# Validation users ranked at each early-stopping check, at most (a seeded sample beyond that).
VALIDATION_USERS = 10_000

SEARCH_SPACE = {
    "no_components": (16, 32, 64),
    "learning_rate": (0.01, 0.03, 0.05),
    "item_alpha": (0.0, 1e-6, 1e-5),
    "content_weight": (0.25, 1.0, 4.0),
}


def _fingerprint(*matrices: sp.csr_matrix) -> str:
    digest = hashlib.sha256()
    for m in matrices:
        m = sp.csr_matrix(m)
        digest.update(np.asarray(m.shape).tobytes())
        for part in (m.indptr, m.indices, m.data):
            digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


class LightFMHybrid(Recommender):
    """LightFM with identity + content features.

    Parameters
    ----------
    loss : {"warp", "bpr", "logistic"}
    no_components, learning_rate, item_alpha, user_alpha : LightFM hyperparameters.
    content : bool
        Use content features; ``False`` gives pure collaborative LightFM (identity features only).
    identity : bool
        Keep per-user/per-item identity features.
    content_weight : float
        Weight of the content tokens (together) against the identity feature (1) before normalisation.
    text_terms : int
        TF-IDF terms per item/user from training reviews (0: none).
    max_epochs, eval_every : int
        Epoch budget; with a validation fold, NDCG@k is measured every ``eval_every`` epochs and the best
        epoch's parameters are kept (early stopping).
    search_trials : int
        Its search space (:meth:`search_space`): the given configuration and this many seeded random draws
        from ``SEARCH_SPACE``, by the early-stopped validation NDCG.
    k : int
        Cut-off of the validation NDCG that picks the epoch count (and the configuration).
    cold_validation : bool
        Rank validation items only among items without training interactions (the cold-item protocol).
    num_threads : int
        LightFM threads; results are exactly reproducible only with 1.
    seed : int
        Seed of LightFM's initialisation and sampling, and of the search.
    """

    name = "lightfm_hybrid"
    # a bundle keeps the learned representations (bias + embedding sums of each user's and item's features)
    # and the calibration, not LightFM itself: serving needs numpy only
    state_fields = (
        "_user_bias",
        "_user_repr",
        "_item_bias",
        "_item_repr",
        "calibration_",
        "content",
        "config_",
        "epochs_",
        "validation_ndcg_",
    )
    summary_fields = ("config_", "epochs_", "validation_ndcg_")

    def __init__(
        self,
        loss: LightFMLoss = "warp",
        no_components: int = 32,
        learning_rate: float = 0.05,
        item_alpha: float = 1e-6,
        user_alpha: float = 1e-6,
        content: bool = True,
        identity: bool = True,
        content_weight: float = 1.0,
        text_terms: int = 10,
        max_epochs: int = 30,
        eval_every: int = 5,
        search_trials: int = 2,
        k: int = RANKING_CUTOFF,
        cold_validation: bool = False,
        num_threads: int = 1,
        seed: int = 0,
    ):
        if loss not in get_args(LightFMLoss):
            raise ValueError(f"loss must be 'warp', 'bpr' or 'logistic', got {loss!r}")
        if not (content or identity):
            raise ValueError("at least one of content and identity features is needed")
        self.loss = loss
        self.no_components = no_components
        self.learning_rate = learning_rate
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.content = content
        self.identity = identity
        self.content_weight = content_weight
        self.text_terms = text_terms
        self.max_epochs = max_epochs
        self.eval_every = eval_every
        self.search_trials = search_trials
        self.k = k
        self.cold_validation = cold_validation
        self.num_threads = num_threads
        self.seed = seed

    # --- features ------------------------------------------------------------------------------------------
    def _build(self, train: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None, weight: float):
        from lightfm.data import Dataset

        item_tokens: dict[str, list[str]] = {}
        user_tokens: dict[str, list[str]] = {}
        if self.content:
            for source in (
                metadata_tokens(items),
                review_terms(train, "item_id", self.text_terms) if self.text_terms else {},
            ):
                for key, toks in source.items():
                    item_tokens.setdefault(key, []).extend(toks)
            if users is not None:
                for row in users.itertuples(index=False):
                    toks = []
                    if getattr(row, "age", None) is not None and pd.notna(row.age):
                        toks.append(f"age:{int(row.age) // 10 * 10}")
                    for field in ("gender", "occupation"):
                        value = getattr(row, field, None)
                        if isinstance(value, str) and value:
                            toks.append(f"{field}:{value.lower()}")
                    if toks:
                        user_tokens[str(row.user_id)] = toks
            if self.text_terms:
                for key, toks in review_terms(train, "user_id", self.text_terms).items():
                    user_tokens.setdefault(key, []).extend(toks)
        dataset = Dataset(user_identity_features=self.identity, item_identity_features=self.identity)
        item_vocab = sorted({t for toks in item_tokens.values() for t in toks})
        user_vocab = sorted({t for toks in user_tokens.values() for t in toks})
        dataset.fit(self.user_ids, self.item_ids, user_features=user_vocab, item_features=item_vocab)

        def rows(ids, tokens):
            for key in ids:
                toks = tokens.get(key, [])
                yield key, {t: weight / len(toks) for t in toks} if toks else {}

        item_features = dataset.build_item_features(rows(self.item_ids, item_tokens), normalize=self.identity)
        user_features = dataset.build_user_features(rows(self.user_ids, user_tokens), normalize=self.identity)
        if not self.identity:  # rows without any content would be all-zero: give them a shared fallback
            item_features, user_features = _with_fallback(item_features), _with_fallback(user_features)
        self._dataset = dataset
        return sp.csr_matrix(user_features, dtype=np.float32), sp.csr_matrix(item_features, dtype=np.float32)

    # --- fitting -------------------------------------------------------------------------------------------
    def search_space(self) -> SearchSpace:
        fixed = {} if self.content else {"content_weight": 0.0}  # no content: nothing for its weight to weigh
        return SearchSpace(grid=SEARCH_SPACE, trials=self.search_trials, seed=self.seed, judge="own", fixed=fixed)

    def fold_params(self) -> dict:
        # the early-stopped epoch count, refitted without validation (its calibration then reads training pairs)
        return {"max_epochs": self.epochs_}

    def fit(self, train, validation=None, *, items=None, users=None) -> LightFMHybrid:
        u, i = self._index(train, items)
        interactions = sp.coo_matrix(
            (np.ones(len(u), dtype=np.float32), (u, i)), shape=(len(self.user_ids), len(self.item_ids))
        )
        self.config_ = {key: getattr(self, key) for key in SEARCH_SPACE}
        early = validation is not None and len(validation) > 0
        self.user_features, self.item_features = self._build(train, items, users, self.content_weight)
        self._progress = Progress(self.name, self.max_epochs, "epochs")
        self.epochs_, self.validation_ndcg_ = self._train(interactions, validation if early else None)
        self._progress.finish()
        del self._progress  # nothing of the fit's progress stays on the model
        self.validation_score_ = self.validation_ndcg_  # what models.tuning judges it by
        self._calibrate(validation if early else train)
        return self

    def _new_model(self):
        from lightfm import LightFM

        return LightFM(
            loss=self.loss,
            no_components=self.no_components,
            learning_rate=self.learning_rate,
            item_alpha=self.item_alpha,
            user_alpha=self.user_alpha,
            random_state=self.seed,
        )

    def _train(self, interactions, validation) -> tuple[int, float]:
        """Train ``max_epochs`` in chunks of ``eval_every``; with ``validation``, keep the parameters of the
        chunk with the best validation NDCG (the earliest on ties). (epochs kept, their NDCG or nan)"""
        self.model_ = self._new_model()
        if validation is None:
            total = self.max_epochs
            for chunk in np.diff(np.r_[0 : total : self.eval_every, total]):  # an epoch count is its chunks' sum
                self._epochs(interactions, int(chunk))
            self._freeze()
            return total, float("nan")
        best = (-np.inf, self.eval_every, None)
        for epoch in range(self.eval_every, self.max_epochs + 1, self.eval_every):
            self._epochs(interactions, self.eval_every)
            self._freeze()
            quality = self._validation_ndcg(validation)
            if quality > best[0]:  # fit_partial trains model_ in place: keep a copy of this epoch's state
                best = (quality, epoch, self._snapshot())
        if best[2] is not None:
            self._restore_snapshot(best[2])
        return best[1], best[0]

    def _snapshot(self) -> tuple:
        return (copy.deepcopy(self.model_), self._fingerprint, self._user_bias, self._user_repr, self._item_bias,
                self._item_repr)  # fmt: skip

    def _restore_snapshot(self, state: tuple) -> None:
        (self.model_, self._fingerprint, self._user_bias, self._user_repr, self._item_bias, self._item_repr) = state

    def _epochs(self, interactions, epochs: int) -> None:
        """``epochs`` more epochs of the current model (LightFM's ``fit_partial`` continues where it stopped:
        n calls of one epoch train exactly as one call of n), with a progress line when due."""
        self.model_.fit_partial(
            interactions,
            user_features=self.user_features,
            item_features=self.item_features,
            epochs=epochs,
            num_threads=self.num_threads,
        )
        progress = getattr(self, "_progress", None)
        if progress is not None:
            progress.advance(epochs)

    def _freeze(self) -> None:
        """Cache the learned representations and fingerprint the feature matrices they belong to."""
        self._fingerprint = _fingerprint(self.user_features, self.item_features)
        self._user_bias, self._user_repr = self.model_.get_user_representations(self.user_features)
        self._item_bias, self._item_repr = self.model_.get_item_representations(self.item_features)

    def _validation_ndcg(self, validation: pd.DataFrame) -> float:
        cols = np.flatnonzero(self.item_counts == 0) if self.cold_validation else np.arange(len(self.item_ids))
        u = self.user_index(validation["user_id"])
        i = pd.Index(cols).get_indexer(self.item_index(validation["item_id"]))
        keep = (u >= 0) & (i >= 0)
        if not keep.any():
            return 0.0
        users = np.unique(u[keep])
        row = pd.Index(users).get_indexer(u[keep])
        relevant = sp.csr_matrix((np.ones(keep.sum()), (row, i[keep])), shape=(len(users), len(cols)))
        if len(users) > VALIDATION_USERS:  # early-stopping checks on a seeded sample keep the fit linear in size
            chosen = np.sort(np.random.default_rng(self.seed).choice(len(users), VALIDATION_USERS, replace=False))
            users, relevant = users[chosen], relevant[chosen]
        exclude = self._seen[users][:, cols]
        ndcg = [
            ndcg_at_k(self._raw_scores(users[rows])[:, cols], relevant[rows], exclude[rows], self.k)
            for rows in user_blocks(len(users), len(cols))
        ]
        return float(np.mean(np.concatenate(ndcg)))

    def _calibrate(self, pairs: pd.DataFrame) -> None:
        from sklearn.isotonic import IsotonicRegression

        raw = self._raw_pair_scores(self.user_index(pairs["user_id"]), self.item_index(pairs["item_id"]))
        iso = IsotonicRegression(out_of_bounds="clip").fit(raw, pairs["rating"].to_numpy(np.float64))
        # its piecewise-linear map, applied with np.interp (clamped at the ends, as out_of_bounds="clip")
        self.calibration_ = {
            "x": np.asarray(iso.X_thresholds_, np.float64),
            "y": np.asarray(iso.y_thresholds_, np.float64),
        }

    # --- scoring -------------------------------------------------------------------------------------------
    def restore(self, state, seen_indptr, seen_indices) -> None:
        super().restore(state, seen_indptr, seen_indices)
        self._restored = True  # representations only: no LightFM object or feature matrices to check

    def _check(self) -> None:
        if getattr(self, "_restored", False):
            return
        if not hasattr(self, "model_"):
            raise RuntimeError("LightFMHybrid is not fitted; call fit first")
        if _fingerprint(self.user_features, self.item_features) != self._fingerprint:
            raise RuntimeError("the feature matrices changed since training; LightFM would return wrong scores")
        n_user_feat, n_item_feat = self.model_.user_embeddings.shape[0], self.model_.item_embeddings.shape[0]
        if (self.user_features.shape[1], self.item_features.shape[1]) != (n_user_feat, n_item_feat):
            raise RuntimeError("feature matrices do not match the model's embeddings")

    def _raw_scores(self, user_pos: np.ndarray) -> np.ndarray:
        self._check()
        scores = np.tile(self._item_bias.astype(np.float64), (len(user_pos), 1))
        known = user_pos >= 0
        scores[known] += self._user_repr[user_pos[known]] @ self._item_repr.T + self._user_bias[user_pos[known], None]
        return scores

    def _raw_pair_scores(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        self._check()
        out = np.zeros(len(u))
        ki, both = i >= 0, (u >= 0) & (i >= 0)
        out[ki] += self._item_bias[i[ki]]
        out[u >= 0] += self._user_bias[u[u >= 0]]
        out[both] += np.einsum("nf,nf->n", self._user_repr[u[both]], self._item_repr[i[both]])
        return out

    def score(self, users: Ids) -> np.ndarray:
        self._check()
        return self._raw_scores(self.user_index(users))

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        self._check()
        raw = self._raw_pair_scores(self.user_index(users), self.item_index(items))
        return np.interp(raw, self.calibration_["x"], self.calibration_["y"])


def _with_fallback(features) -> sp.csr_matrix:
    """Append one shared column set to 1 for rows that have no feature at all."""
    features = sp.csr_matrix(features)
    empty = np.diff(features.indptr) == 0
    extra = sp.csr_matrix(empty.astype(np.float32)[:, None])
    return sp.hstack([features, extra], format="csr")
