"""The one contract every recommender in reclab shares.

A model is fitted on a training DataFrame (``user_id``, ``item_id``, ``rating``; text columns when the model
reads text) and may use a validation DataFrame for tuning and calibration, never for anything else. Then:

- ``predict(users, items) -> ratings``: one rating per (user, item) pair, float64, shape (n,).
- ``score(users) -> scores``: one row per user over the whole catalogue ``model.item_ids``, shape
  (n_users, n_items); higher is better. Only the order within a row matters.
- ``recommend(users, k, exclude_seen=True) -> (item ids, scores)``: each user's top ``k`` items, best first,
  shapes (n_users, k), excluding the user's training items.

Cold start (users or items unseen in training), unless a model documents better: ``predict`` falls back to
the training mean plus whatever bias is known; ``score`` ranks the catalogue by training popularity for an
unknown user. Items of the catalogue without training interactions get each model's "no evidence" score.

The catalogue is the union of the training items and the ids of the ``items`` DataFrame given to ``fit``
(pass the whole dataset's items so that cold items can be recommended).
"""

from __future__ import annotations

import copy
import inspect
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

Ids = np.ndarray | list | pd.Series


class Recommender:
    """Base class: id indexing, seen-item masks, top-K. Subclasses implement ``fit``, ``predict``, ``score``."""

    name: str = "recommender"  # the class's usual name; models.registry names each model it builds
    # What the model is for: "rating" (predict) and/or "ranking" (score/recommend).
    tasks: ClassVar[tuple[str, ...]] = ("rating", "ranking")
    # Fitted attributes that predict/score read, saved in a model bundle (models.serving.bundle) besides the ids.
    state_fields: ClassVar[tuple[str, ...]] = ()
    # state fields added after bundles were first published: the value that reproduces the older behaviour,
    # used when an older bundle lacks them (any other missing field refuses the bundle)
    state_defaults: ClassVar[dict] = {}
    # fitted attributes besides state_fields that a model restored from the fit store needs to serve as the
    # fusion's component as the fitted one did (models.experiment.FitStore); never published
    reuse_fields: ClassVar[tuple[str, ...]] = ()
    # state fields holding user ids (an array or Index of them, or a Series indexed by them) besides
    # ``user_ids``: a bundle published with a key stores their pseudonyms (models.serving.pseudonym)
    user_keyed_fields: ClassVar[tuple[str, ...]] = ()

    # --- fitted state shared by every model ----------------------------------------------------------------
    user_ids: np.ndarray  # training users, sorted
    item_ids: np.ndarray  # the catalogue, sorted
    item_counts: np.ndarray  # training interactions per catalogue item
    global_mean: float  # training mean rating

    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame | None = None,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ) -> Recommender:
        raise NotImplementedError

    # fitted attributes (JSON-ready figures) the fit's record keeps (models.experiment: model_fits.params)
    summary_fields: ClassVar[tuple[str, ...]] = ()

    # whether fit_in_background starts another process (then models.experiment fits this model beside the rest)
    background: ClassVar[bool] = False

    def too_costly(self, train: pd.DataFrame, items: pd.DataFrame | None = None) -> str | None:
        """Why this model is not fitted on data this large, or None when it is. A model whose cost grows faster
        than the data (a dense items x items matrix) says so before it starts, and a run skips it with this
        reason, in its log and report, instead of running out of memory inside its library."""
        return None

    def fit_in_background(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame | None = None,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ):
        """Start fitting in another process and return at once, or return None where the model fits only in
        this one (the default). A model that can returns a handle whose ``finish()`` waits for the fit,
        completes this model and returns its CPU seconds (``models.experiment`` fits the in-process models
        meanwhile)."""
        return None

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not predict ratings; use score/recommend")

    def score(self, users: Ids) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not rank items; use predict")

    def recommend(self, users: Ids, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` catalogue items per user, best first, as (item ids, scores), each of shape (n_users, k)."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        scores = self.score(users)
        if exclude_seen:
            scores = mask_seen(scores, self.seen_matrix(users))
        top = top_k(scores, min(k, scores.shape[1]))
        return self.item_ids[top], np.take_along_axis(scores, top, axis=1)

    def fit_summary(self) -> dict:
        """The fitted model's :attr:`summary_fields` that it has, for the fit's record."""
        return {name: getattr(self, name) for name in self.summary_fields if hasattr(self, name)}

    # --- hyperparameters: fixed at construction, searched by models.tuning ------------------------------------
    def search_space(self):
        """What :func:`models.tuning.tune` may try on validation (a :class:`models.tuning.SearchSpace`); None
        (the default): nothing, the model is fitted as built."""
        return None

    def params(self) -> dict:
        """The constructor's arguments as this model holds them (scikit-learn's ``get_params``)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    def with_params(self, **changes) -> Recommender:
        """A fresh, unfitted copy with ``changes`` to its constructor's arguments (the registry's name kept)."""
        unknown = sorted(set(changes) - set(self.params()))
        if unknown:
            raise ValueError(f"{self.name}: no hyperparameter {', '.join(unknown)}; it has {sorted(self.params())}")
        copy = type(self)(**{**self.params(), **changes})
        copy.name = self.name
        return copy

    # --- the model scored on test: everything known before the test (models.experiment) -----------------------
    # How the model that is scored on test comes to know the validation interactions, once its settings are
    # chosen there: "refit" (the field's protocol): refitted on training + validation with the chosen settings
    # (:meth:`refitted`); "history": too dear to refit (the LM's trainer run), so the fit chosen on validation
    # is kept and the validation interactions join each user's history at scoring time (:meth:`with_history`).
    test_time: ClassVar[Literal["refit", "history"]] = "refit"

    def refitted(
        self,
        chosen: dict,
        history: pd.DataFrame,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ) -> Recommender:
        """This model (fitted, its settings chosen on validation) made to know ``history`` (the training and
        validation interactions): a fresh copy with the chosen configuration ``chosen`` (searched settings;
        score-time ones are set on the refit) and :meth:`fold_params` fitted on ``history`` without validation
        (:attr:`test_time` "refit"), or :meth:`with_history` ("history"). ``self`` is left as it is."""
        if self.test_time == "history":
            return self.with_history(history)
        constructor = self.params()
        settings = {k: v for k, v in chosen.items() if k in constructor}
        model = self.with_params(**settings, **self.fold_params()).fit(history, None, items=items, users=users)
        for key, value in chosen.items():  # score-time settings chosen on the validation fit
            if key not in constructor:
                setattr(model, key, value)
        return model

    def with_history(self, history: pd.DataFrame) -> Recommender:
        """A shallow copy of this fitted model whose users' histories are ``history`` (a superset of its training
        interactions): their items are excluded from its candidates (:meth:`seen_matrix`, :meth:`recommend`)
        and counted in :attr:`item_counts`; users first seen there join :attr:`user_ids` (what the model
        learned is unchanged: a new user is still scored as a cold one). Items outside the catalogue are
        ignored."""
        out = copy.copy(self)
        users = history["user_id"].astype(str)
        out.user_ids = np.union1d(self.user_ids, users.unique())
        out._user_pos = pd.Index(out.user_ids)
        i = self._item_pos.get_indexer(history["item_id"].astype(str))
        u = out._user_pos.get_indexer(users)[i >= 0]
        i = i[i >= 0]
        shape = (len(out.user_ids), len(self.item_ids))
        out._seen = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=shape)  # as _index builds it
        out.item_counts = np.asarray(out._seen.sum(axis=0)).ravel()
        return out

    # --- out-of-fold predictions (what a stacking blender learns from) ---------------------------------------
    # whether refitting per fold is cheap enough for out-of-fold predictions (the fusion's stacked blender)
    refits_per_fold: ClassVar[bool] = False

    def fold_params(self) -> dict:
        """Changes to the constructor's arguments with which a refit without validation repeats what this fit
        chose on validation besides its searched configuration (an early-stopped epoch count)."""
        return {}

    def oof_predictions(
        self,
        train: pd.DataFrame,
        fold: np.ndarray,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ) -> np.ndarray | None:
        """Rating predictions of every ``train`` row by a model that never saw it: for each fold f of ``fold``
        (one integer per row), a copy with this model's hyperparameters (:meth:`with_params`,
        :meth:`fold_params`) fitted on the other folds predicts fold f's rows. None when the model does not
        predict ratings or its refits are not cheap (:attr:`refits_per_fold`)."""
        if "rating" not in self.tasks or not self.refits_per_fold:
            return None
        fold = np.asarray(fold)
        if len(fold) != len(train):
            raise ValueError(f"fold has {len(fold)} entries for {len(train)} training rows")
        out = np.full(len(train), np.nan)
        for f in np.unique(fold):
            held = fold == f
            if held.all():
                raise ValueError("out-of-fold predictions need at least two folds with rows")
            model = self.with_params(**self.fold_params()).fit(train[~held], None, items=items, users=users)
            out[held] = model.predict(train["user_id"][held].to_numpy(), train["item_id"][held].to_numpy())
        return out

    # --- helpers for subclasses ----------------------------------------------------------------------------
    def _index(self, train: pd.DataFrame, items: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """Set ``user_ids``/``item_ids``/``global_mean`` and the training matrix; return (u, i) indices of
        ``train`` rows."""
        if len(train) == 0:
            raise ValueError("cannot fit on an empty training set")
        self.user_ids = np.sort(train["user_id"].astype(str).unique())
        self.item_ids = catalogue(train, items)
        self._user_pos = pd.Index(self.user_ids)
        self._item_pos = pd.Index(self.item_ids)
        u = self._user_pos.get_indexer(train["user_id"].astype(str))
        i = self._item_pos.get_indexer(train["item_id"].astype(str))
        self.global_mean = float(train["rating"].mean()) if "rating" in train else 0.0
        self._seen = sp.csr_matrix(
            (np.ones(len(u), dtype=np.float32), (u, i)), shape=(len(self.user_ids), len(self.item_ids))
        )
        self.item_counts = np.asarray(self._seen.sum(axis=0)).ravel()
        return u, i

    def restore(self, state: dict, seen_indptr: np.ndarray, seen_indices: np.ndarray) -> None:
        """Set the fitted state read back from a bundle (see :func:`models.serving.bundle.load_model`)."""
        for key, value in state.items():
            setattr(self, key, value)
        self.global_mean = float(self.global_mean)
        self._user_pos = pd.Index(self.user_ids)
        self._item_pos = pd.Index(self.item_ids)
        self._seen = sp.csr_matrix(
            (np.ones(len(seen_indices), dtype=np.float32), seen_indices, seen_indptr),
            shape=(len(self.user_ids), len(self.item_ids)),
        )

    def user_index(self, users: Ids) -> np.ndarray:
        """Positions of ``users`` in ``user_ids``; -1 for users unseen in training."""
        return positions(self._user_pos, users)

    def item_index(self, items: Ids) -> np.ndarray:
        """Positions of ``items`` in the catalogue ``item_ids``; -1 for items outside it."""
        return positions(self._item_pos, items)

    def seen_matrix(self, users: Ids) -> sp.csr_matrix:
        """Training interactions of ``users`` (rows) over the catalogue; empty rows for unknown users."""
        idx = self.user_index(users)
        known = idx >= 0
        rows = sp.csr_matrix(self._seen[np.where(known, idx, 0)], dtype=np.float32)  # row 0 stands in, then zeroed
        return sp.csr_matrix(sp.diags(known.astype(np.float32)) @ rows)

    def popularity_scores(self, n_users: int) -> np.ndarray:
        """The cold-start ranking: training interaction counts, one identical row per user."""
        return np.broadcast_to(self.item_counts.astype(np.float64), (n_users, len(self.item_ids))).copy()


SMALL_LOOKUP = 32


def catalogue(train: pd.DataFrame, items: pd.DataFrame | None = None) -> np.ndarray:
    """The item ids a model indexes, sorted: those of the training fold and of the items table."""
    known = train["item_id"].astype(str).unique()
    if items is not None:
        known = np.union1d(known, items["item_id"].astype(str).unique())
    return np.sort(known)


def dense_items_limit(name: str, n_items: int, limit: int, bytes_per_pair: int) -> str | None:
    """The skip reason of a model holding ``bytes_per_pair`` bytes per (item, item) pair, past ``limit`` items."""
    if n_items <= limit:
        return None
    gib = n_items**2 * bytes_per_pair / 2**30
    return (
        f"{name} skipped: {n_items:,} items, and its dense items x items matrices would take about {gib:,.0f} GiB "
        f"(it runs up to {limit:,} items)"
    )


def positions(index: pd.Index, ids: Ids) -> np.ndarray:
    """Positions of ``ids`` (as strings) in a unique ``index``; -1 where absent. A few ids (a serving request)
    are looked up one by one, which is far cheaper than building an index for them."""
    if len(ids) <= SMALL_LOOKUP:
        out = np.full(len(ids), -1, dtype=np.intp)
        for n, key in enumerate(ids):
            try:
                out[n] = index.get_loc(str(key))
            except KeyError:
                pass
        return out
    return index.get_indexer(pd.Index(np.asarray(ids, dtype=str)))


def rows_at(table: np.ndarray, pos: np.ndarray, fallback) -> np.ndarray:
    """``table``'s rows at positions ``pos`` (from :func:`positions`), ``fallback`` where a position is -1."""
    known = (pos >= 0).reshape(-1, *([1] * (np.ndim(table) - 1)))
    return np.where(known, table[np.maximum(pos, 0)], fallback)


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """A copy of ``scores`` with each user's seen items set to -inf (never recommended)."""
    out = np.array(scores, dtype=np.float64, copy=True)
    rows, cols = seen.nonzero()
    out[rows, cols] = -np.inf
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` highest scores, best first (within them, ties by lower index)."""
    if k >= scores.shape[1]:
        part = np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)
