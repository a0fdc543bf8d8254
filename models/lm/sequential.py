"""The sequential LM: each item is its text through the pretrained encoder (plus, for warm items, an id
embedding), and a causal transformer reads the user's item sequence: the way text has helped ranking in the
literature (UniSRec, KDD 2022; Recformer, KDD 2023; VQ-Rec, WWW 2023), not a bag of the user's reviews.

Item text: the item's profile as the LM reads it (``models.lm.profiles``: metadata, then training reviews most
recent first), each piece embedded once by the frozen encoder and cached per workspace
(``models.lm.frozen.TextFrozen._embed``: the same pooled vectors as ``text_frozen``, so a run that fits both
encodes each text once), a profile being the L2-normalised mean of its pieces. The vectors are whitened over
the catalogue, a trainable adapter (a linear map: UniSRec's recipe with its frozen encoder) takes them to the
network's width, and a warm item adds its id embedding. Leakage inside training: every user is in one of
``LMConfig.folds`` folds (seeded), and a window of a user of fold f reads every item (its history, its target,
the catalogue it is scored against) through the items' fold-f profiles, built from the reviews of users of the
other folds: a user's own reviews never describe the items that user's windows are trained on. (Per-pair folds,
as the two-tower LM draws them, would show the target through a profile the candidates do not share: measured,
the network learns that difference instead of the user.) At scoring time every item reads the mean of its fold
profiles: the vectors training read (its full profile, a mix of more reviews than any training window saw,
scored lower on validation NDCG@10 with seeds 0 and 1: 0.0733 / 0.0724 against 0.0795 / 0.0760, docs/lm.md).

Training: every next item of every user's training sequence (time order, ties by item id; sequences longer
than ``max_len`` + 1 cut into windows from the end, so every transition is learned once per epoch), a softmax
over the whole catalogue (exact, no sampling, for catalogues up to ``full_softmax_items``; above it, the target
against ``negatives`` uniformly sampled items, whose constant sampling probability needs no logQ correction)
with *false negatives masked*: the items the user had up to that position are no candidates, as at test. On
the cold-item protocol a share of the targets (``LMConfig.item_metadata_dropout``) reads the item as a cold
item would: its metadata alone, without its id embedding.

Scoring: the last state of the user's sequence up to the test (training, then validation at test time: the
validation interactions join the sequence without retraining, :attr:`test_time` "history") scores every item
by dot product with its vector; cold items are ranked from their text alone, and a weight of log(1 + the item's
interactions), chosen on validation NDCG@k, may be added. A user without a sequence is ranked by popularity. A
dataset without timestamps has no order: it ranks nothing (a constant score) and says so.

Ratings: the two-tower LM's closed-form readout on the sequence state, the item vector and the rating
statistics (:meth:`LMSequential._fit_readout`); the training mean where the interactions have no ratings.

``lm_sequential_ids`` (:class:`LMSequentialIds`) is the same network with its text input zeroed: what text adds
to a sequence model. Runs in the calling process (torch imported at fit).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from models.base import Ids, Recommender, rows_at
from models.evaluation import RANKING_CUTOFF
from models.progress import duration
from models.recommenders.sequential import Sequences, _threads
from models.tuning import SearchSpace

LOG = logging.getLogger("reclab.lm_sequential")  # forwarded to the Prefect run's log inside a flow
POPULARITY_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
# The most training windows an epoch trains on (seeded, stratified by user: models.lm.data.budget_rows), so that
# its cost stops growing with the data: the default dataset has about 1,430 windows and MovieLens latest-small
# about 5,600 (both far below); a million ratings of the same statistics about 80,000. None: every window.
MAX_WINDOWS = 20_000
# the space the tuner draws ``trials`` random configurations from, besides the model as built
SEARCH_SPACE = {
    "epochs": (30, 60, 100),
    "factors": (32, 64, 128),
    "blocks": (1, 2),
    "dropout": (0.2, 0.5),
    "max_len": (20, 50),
    "reviews": (False, True),
}


@dataclass
class _Texts:
    """The catalogue's text vectors: ``full`` (items × dim, scoring: the folds' mean), ``folds`` (folds × items ×
    dim: fold f holds no review of a user of fold f), ``metadata`` (items × dim, metadata alone) with
    ``has_metadata``, and each training user's fold (``user_fold``, by position in ``user_ids``)."""

    full: np.ndarray
    folds: np.ndarray
    metadata: np.ndarray
    has_metadata: np.ndarray
    user_fold: np.ndarray


class LMSequential(Sequences, Recommender):
    """Item text (frozen encoder, trainable adapter) plus item ids, read in the user's order by a causal
    transformer.

    Parameters
    ----------
    profile, overrides : the LM's :class:`models.lm.config.LMConfig` profile and overrides; it reads
        ``encoder``, ``encoder_config``, ``max_length``, ``max_reviews``, ``review_chars``, ``folds``,
        ``item_metadata_dropout`` and ``seed``.
    k : the cut-off of the validation NDCG that judges the configurations and the popularity weight.
    factors, blocks, heads, dropout, max_len : the transformer's width, depth, heads, dropout and the longest
        history it reads (the most recent ``max_len`` items).
    epochs, batch_size, learning_rate : training (Adam).
    full_softmax_items, negatives : the loss's candidates (see the module's docstring).
    rating_pairs : the most training pairs (seeded sample) the rating readout is fitted on.
    max_windows : the most training windows an epoch trains on (:data:`MAX_WINDOWS`; None: all).
    trials : random configurations of :data:`SEARCH_SPACE` tried on validation besides this one (each a fit).
    cold_validation : judge on items without training interactions (the cold-item protocol).
    text_cache : the workspace's per-text cache folder (None: nothing kept between fits).
    reviews : item text from metadata and training reviews (True, the default) or from metadata alone (a
        searched axis; on a dataset whose items have no metadata, False leaves the network its ids alone).
    threads : torch's CPU threads (1: exactly reproducible).
    """

    name = "lm_sequential"
    tasks = ("rating", "ranking")
    text_input: ClassVar[bool] = True  # False: the id-only twin (the text vectors zeroed)
    # the validation interactions join the sequences at scoring time, as they do the two-tower LM's histories
    test_time = "history"
    state_fields = (
        "_item_text",
        "_has_id",
        "_weights",
        "_sequence_items",
        "_sequence_starts",
        "_ordered",
        "factors",
        "blocks",
        "heads",
        "dropout",
        "max_len",
        "threads",
        "popularity_weight_",
        "_readout",
        "_user_stats",
        "_item_stats",
    )
    summary_fields = ("epochs", "factors", "blocks", "dropout", "max_len", "ordered_", "metrics_")

    def __init__(
        self,
        profile: str | None = "cpu",
        overrides: dict | None = None,
        *,
        k: int = RANKING_CUTOFF,
        factors: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.5,
        max_len: int = 20,
        epochs: int = 60,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        full_softmax_items: int = 20_000,
        negatives: int = 2048,
        rating_pairs: int = 200_000,
        max_windows: int | None = MAX_WINDOWS,
        trials: int = 0,
        cold_validation: bool = False,
        text_cache=None,
        reviews: bool = True,
        threads: int = 1,
    ):
        from models.lm.config import profile_fields

        profile_fields(profile, dict(overrides or {}))  # a bad key or value fails here
        self.profile = profile
        self.overrides = dict(overrides or {})
        self.k = k
        self.factors = factors
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.max_len = max_len
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.full_softmax_items = full_softmax_items
        self.negatives = negatives
        self.rating_pairs = rating_pairs
        self.max_windows = max_windows
        self.trials = trials
        self.cold_validation = cold_validation
        self.text_cache = text_cache
        self.reviews = reviews
        self.threads = threads
        self.popularity_weight_ = 0.0

    def _text_model(self):
        """The frozen encoder's wrapper that embeds and caches the pieces (``text_frozen``'s)."""
        from models.lm.frozen import TextFrozen

        return TextFrozen(self.profile, self.overrides, text_cache=self.text_cache)

    def search_space(self) -> SearchSpace:
        """This configuration and ``trials`` random draws from :data:`SEARCH_SPACE`, then the popularity weight
        (:data:`POPULARITY_WEIGHTS`, the smallest on ties) on the chosen fit; judged by validation NDCG@k."""
        grid = {"grid": SEARCH_SPACE, "trials": self.trials} if self.trials else {}
        seed = self._text_model().config().seed
        return SearchSpace(**grid, seed=seed, after_fit={"popularity_weight_": POPULARITY_WEIGHTS}, judge="ndcg")

    # --- fitting -------------------------------------------------------------------------------------------
    def fit(self, train, validation=None, *, items=None, users=None) -> LMSequential:
        import torch

        start = time.perf_counter()
        self._index(train, items)
        self._ordered = bool("timestamp" in train and train["timestamp"].notna().all())
        self.ordered_ = self._ordered
        frame = self._sequences(train)
        self._has_id = (self.item_counts > 0).astype(np.float32)
        self._user_stats, self._item_stats = _rating_stats(frame, len(self.user_ids), len(self.item_ids))
        self._readout, self._budget = {}, None
        self.metrics_ = {}
        if not self._ordered:
            LOG.warning(f"{self.name}: the interactions have no timestamps, so no order to learn: it ranks nothing")
            self._item_text = np.zeros((len(self.item_ids), 1), np.float32)
            self._weights = {}
            return self
        text = self._text_model()
        config = text.config()
        texts, counts = self._text(train, items, text, config)
        self._item_text = texts.full
        windows = self._windows()
        LOG.info(
            f"{self.name}: {self.epochs} epochs over {len(frame):,} interactions "
            f"({len(windows[0]):,} windows of at most {self.max_len}), text {'on' if self.text_input else 'off'}"
        )
        with _threads(self.threads):
            torch.manual_seed(config.seed)
            network = self._build(texts.full.shape[1])
            losses = self._train(network, windows, texts, config)
        self._weights = {name: value.detach().numpy().copy() for name, value in network.state_dict().items()}
        self._net = network.eval()
        with _threads(self.threads):
            self._readout = self._fit_readout(network, windows, texts, frame, validation, config)
        self.metrics_ = {
            "encoder": config.encoder if config.encoder_config is None else "random (encoder_config)",
            "recipe": (
                f"encoder frozen; adapter, id embeddings and a {self.blocks}-block causal transformer trained"
                if self.text_input
                else f"id embeddings and a {self.blocks}-block causal transformer trained (text zeroed)"
            ),
            "parameters": int(sum(p.numel() for p in network.parameters())),
            **counts,
            "windows": len(windows[0]),
            **({"budget": {**self._budget, "setting": "max_windows"}} if self._budget else {}),
            **{
                f"readout_{key}": round(float(self._readout[key]), 4)
                for key in ("stats_val_mse", "vector_val_mse")
                if key in self._readout
            },
            "first_loss": round(losses[0], 4),
            "last_loss": round(losses[-1], 4),
            "seconds": round(time.perf_counter() - start, 2),
        }
        return self

    def _text(self, train, items, text, config) -> tuple[_Texts, dict]:
        """Each catalogue item's text vector: its fold variants (training), their mean (scoring) and its metadata
        alone (cold-item dropout); whitened over the catalogue, or zeros for the id-only twin."""
        from models.lm.frozen import _profile_vector
        from models.lm.profiles import EMPTY_ITEM, METADATA_ONLY, build_profiles

        profiles = build_profiles(
            train,
            items,
            max_reviews=config.max_reviews,
            review_chars=config.review_chars,
            folds=config.folds,
            seed=config.seed,
            rating_history=0,
            folds_by_user=True,
        )
        catalogue = [str(i) for i in self.item_ids]
        variants = [*range(config.folds), METADATA_ONLY]
        # without reviews every variant reads the metadata alone: only those pieces are embedded
        read = variants if self.reviews else [METADATA_ONLY] * len(variants)
        keys = [("item", item, variant) for variant in read for item in catalogue]
        # an item without training interactions has no fold variants: in every fold it is its metadata alone
        pieces = [profiles.pieces_of(key if key in profiles.pieces else (*key[:2], METADATA_ONLY)) for key in keys]
        texts = sorted({t for p in pieces for t in p} | {EMPTY_ITEM})
        vectors, counts = text._embed(texts, config)
        position = {t: n for n, t in enumerate(texts)}
        rows = np.stack([_profile_vector(vectors, [position[t] for t in p]) for p in pieces]).astype(np.float32)
        rows = rows.reshape(len(variants), len(catalogue), -1)
        if self.text_input:
            # centred and scaled over the catalogue (UniSRec's whitening, its scalar form): a frozen encoder's
            # vectors of one domain share most of their direction, which would drown what tells items apart
            folds = rows[:-1]
            rows = (rows - folds.mean(axis=(0, 1))) / max(float(folds.std()), 1e-6)
        else:
            rows = np.zeros_like(rows)
        with_metadata = {e for kind, e, f in profiles.pieces if kind == "item" and f == METADATA_ONLY}
        user_fold = profiles.pair_fold.groupby(level="user_id").first()
        out = _Texts(
            full=np.ascontiguousarray(rows[:-1].mean(axis=0)),
            folds=np.ascontiguousarray(rows[:-1]),
            metadata=np.ascontiguousarray(rows[-1]),
            has_metadata=np.array([item in with_metadata for item in catalogue]),
            user_fold=user_fold.reindex([str(u) for u in self.user_ids]).fillna(0).to_numpy(np.int64),
        )
        return out, {"pieces": len(texts), **{k: counts[k] for k in ("cached", "encoded")}}

    def _windows(self):
        """(inputs, targets, users, target positions) of each training window: each user's sequence cut from its
        end into windows of ``max_len`` + 1 items (inputs: all but the last; targets: all but the first, and their
        positions in the sequence arrays), left-padded with -1."""
        inputs, targets, owners, where = [], [], [], []
        length = self.max_len
        for user in range(len(self.user_ids)):
            begin, stop = self._sequence_starts[user], self._sequence_starts[user + 1]
            while stop - begin >= 2:
                first = max(begin, stop - length - 1)
                items = self._sequence_items[first:stop]
                pad = np.full(length - (len(items) - 1), -1)
                inputs.append(np.r_[pad, items[:-1]])
                targets.append(np.r_[pad, items[1:]])
                where.append(np.r_[pad, np.arange(first + 1, stop)])
                owners.append(user)
                stop = first + 1  # the next window ends where this one began: every transition once
        if not inputs:
            empty = np.zeros((0, length), dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.int64), empty
        return np.stack(inputs), np.stack(targets), np.array(owners, dtype=np.int64), np.stack(where)

    def _build(self, text_dim: int):
        return _network(len(self.item_ids), text_dim, self.factors, self.blocks, self.heads, self.dropout, self.max_len)

    def _train(self, network, windows, texts: _Texts, config) -> list[float]:
        """Adam over the windows; a window of a user of fold f reads every item (its inputs, its target, the
        catalogue) through the items' fold-f profiles, which hold no review of that user."""
        import torch

        from models.lm.data import budget_rows

        kept = budget_rows(windows[2], self.max_windows, int(config.seed))  # None: the budget does not bind
        inputs, target_items, owners = (torch.from_numpy(a if kept is None else a[kept]) for a in windows[:3])
        if kept is not None:
            self._budget = {"trained": len(kept), "of": len(windows[2]), "unit": "windows per epoch"}
            LOG.info(f"{self.name}: training on {len(kept):,} of {len(windows[2]):,} windows (max_windows, by user)")
        if len(inputs) == 0:
            return [float("nan")]
        by_fold = torch.from_numpy(texts.folds)
        metadata = torch.from_numpy(texts.metadata)
        has_metadata = torch.from_numpy(texts.has_metadata)
        window_fold = torch.from_numpy(np.array(texts.user_fold))[owners]
        has_id = torch.from_numpy(self._has_id)
        n_items = len(self.item_ids)
        dropout_share = float(config.item_metadata_dropout)
        generator = torch.Generator().manual_seed(int(config.seed))
        optimiser = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        sampled = n_items > self.full_softmax_items
        losses = []
        began = last = time.perf_counter()
        for epoch in range(self.epochs):
            network.train()
            order = torch.randperm(len(inputs), generator=generator)
            total, count = 0.0, 0
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                loss, valid = 0.0, 0
                for fold in torch.unique(window_fold[batch]).tolist():
                    part = batch[window_fold[batch] == fold]
                    x, y = inputs[part], target_items[part]
                    target = y.clamp(min=0)
                    catalogue = network.items(by_fold[fold], has_id)  # (n_items, d)
                    states = network(x, catalogue)  # (B, L, d)
                    vectors = catalogue[target]
                    if dropout_share > 0:  # the target read as a cold item would: metadata alone, no id
                        drop = (torch.rand(y.shape, generator=generator) < dropout_share) & has_metadata[target]
                        cold = network.item_vectors(metadata[target], target, torch.zeros(y.shape))
                        vectors = torch.where(drop[..., None], cold, vectors)
                    positive = (states * vectors).sum(-1)  # (B, L)
                    if sampled:
                        candidates = torch.randint(0, n_items, (self.negatives,), generator=generator)
                        logits = states @ catalogue[candidates].T
                        blocked = (candidates[None, None, :] == y[..., None]) | _seen_before(x, candidates)
                    else:
                        logits = states @ catalogue.T  # (B, L, n_items)
                        blocked = _seen_before(x, None, n_items)
                        blocked.scatter_(-1, target[..., None], True)  # the target is the positive column
                    logits = torch.cat([positive[..., None], logits.masked_fill(blocked, float("-inf"))], dim=-1)
                    keep = y >= 0
                    n = int(keep.sum())
                    zeros = torch.zeros(n, dtype=torch.long)
                    loss = loss + torch.nn.functional.cross_entropy(logits[keep], zeros, reduction="sum")
                    valid += n
                loss = loss / max(valid, 1)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, count = total + loss.item() * valid, count + valid
            losses.append(total / max(count, 1))
            if time.perf_counter() - last > 30:
                last = time.perf_counter()
                done = (epoch + 1) / self.epochs
                LOG.info(
                    f"{self.name}: epoch {epoch + 1}/{self.epochs}, loss {losses[-1]:.4f}, "
                    f"ETA {duration((last - began) / done * (1 - done))}"
                )
        elapsed = duration(time.perf_counter() - began)
        LOG.info(f"{self.name}: trained in {elapsed}, loss {losses[0]:.3f} → {losses[-1]:.3f}")
        return losses

    def _fit_readout(self, network, windows, texts: _Texts, frame: pd.DataFrame, validation, config) -> dict:
        """The rating head: the LM's two-stage closed-form readout (``models.lm.readout.fit_readout``: a ridge
        regression on the rating statistics of the user and the item, then one on [state, item vector,
        state ⊙ item vector] of what it leaves), each strength chosen on validation MSE. A training pair is a
        training rating read as the network read it in training: the state of the user's sequence before that
        item (the window's state one position earlier), the item's fold vector, the user's ratings before it
        and the item's ratings by users of the other folds (at most ``rating_pairs`` of them, seeded). A
        validation pair: the state of the user's whole training sequence, the item's full vector, all their
        training ratings. {} when the interactions have no ratings."""
        import torch

        ratings = frame["rating"].to_numpy(np.float64)
        inputs, targets, owners, where = windows
        if not len(inputs) or not np.isfinite(ratings).all():
            return {}
        n_items = len(self.item_ids)
        row_fold = texts.user_fold[frame["user"].to_numpy()]
        item_of = frame["item"].to_numpy()
        has_id = torch.from_numpy(self._has_id)
        window_fold = texts.user_fold[owners]
        states, vectors, position = [], [], []
        for fold in np.unique(window_fold):
            rows = np.flatnonzero(window_fold == fold)
            with torch.inference_mode():
                catalogue = network.items(torch.from_numpy(texts.folds[fold]), has_id)
                for start in range(0, len(rows), 512):
                    part = rows[start : start + 512]
                    keep = targets[part] >= 0
                    out = network(torch.from_numpy(inputs[part]), catalogue).numpy()
                    states.append(out[keep])
                    vectors.append(catalogue.numpy()[targets[part][keep]])
                    position.append(where[part][keep])
        states, vectors, position = np.concatenate(states), np.concatenate(vectors), np.concatenate(position)
        if len(position) > self.rating_pairs:
            pick = np.sort(np.random.default_rng(config.seed).choice(len(position), self.rating_pairs, replace=False))
            states, vectors, position = states[pick], vectors[pick], position[pick]
        # the user's ratings before the pair, the item's by the other folds' users
        cumulative = np.r_[0.0, np.cumsum(ratings)]
        first = self._sequence_starts[frame["user"].to_numpy()[position]]
        user_stats = np.column_stack([cumulative[position] - cumulative[first], position - first])
        item = item_of[position]
        item_stats = np.zeros((len(position), 2))
        for fold in np.unique(row_fold[position]):
            others = row_fold != fold
            total = np.bincount(item_of[others], ratings[others], n_items)
            count = np.bincount(item_of[others], minlength=n_items)
            mine = row_fold[position] == fold
            item_stats[mine] = np.column_stack([total[item[mine]], count[item[mine]]])
        pairs = {"train": (states, vectors, user_stats, item_stats, ratings[position])}
        pairs["validation"] = self._validation_pairs(validation)
        return _readout(pairs)

    def _validation_pairs(self, validation) -> tuple:
        """(states, item vectors, user stats, item stats, ratings) of the validation ratings of known users with
        a sequence and catalogue items."""
        width = self.factors
        empty = (np.zeros((0, width)), np.zeros((0, width)), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        if validation is None or not len(validation) or "rating" not in validation:
            return empty
        users = self.user_index(validation["user_id"].astype(str))
        items = self.item_index(validation["item_id"].astype(str))
        states, catalogue, has_state = self._states(users)
        keep = has_state & (items >= 0)
        if not keep.any():
            return empty
        u, i = users[keep], items[keep]
        ratings = validation["rating"].to_numpy(np.float64)[keep]
        return states[keep], catalogue[i], self._user_stats[u], self._item_stats[i], ratings

    # --- history and scoring -------------------------------------------------------------------------------
    def with_history(self, history: pd.DataFrame) -> LMSequential:
        """The base's copy (seen items, counts, users) whose sequences also hold ``history`` in time order."""
        out = super().with_history(history)
        if self._ordered:
            known = history[history["item_id"].astype(str).isin(set(self.item_ids))]
            if "timestamp" not in known or known["timestamp"].isna().any():
                return out
            frame = out._sequences(known)  # on the base's copy: this model's own sequences stay as they are
            out._user_stats, out._item_stats = _rating_stats(frame, len(out.user_ids), len(out.item_ids))
        return out

    def score(self, users: Ids) -> np.ndarray:

        positions = self.user_index(users)
        out = self.popularity_scores(len(positions))  # what a user without a sequence gets
        if not self._ordered:
            return np.zeros_like(out)
        states, catalogue, has_state = self._states(positions)
        out[has_state] = (states[has_state] @ catalogue.T).astype(np.float64)
        if self.popularity_weight_:
            out[positions >= 0] += self.popularity_weight_ * np.log1p(self.item_counts)
        return out

    def _states(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last state of each user's known sequence (users by position in ``user_ids``, -1 unknown), the
        catalogue's item vectors (scoring text) and whether the user has a state (a known user with a sequence;
        the others' rows are zeros)."""
        import torch

        network = self._network()
        states = np.zeros((len(positions), self.factors), dtype=np.float32)
        has_state = np.zeros(len(positions), dtype=bool)
        with _threads(self.threads), torch.inference_mode():
            catalogue = network.items(torch.from_numpy(self._item_text), torch.from_numpy(self._has_id))
            unique, back = np.unique(positions, return_inverse=True)
            for start in range(0, len(unique), 256):
                rows = unique[start : start + 256]
                x = np.full((len(rows), self.max_len), -1, dtype=np.int64)
                for n, row in enumerate(rows):
                    seq = self.sequence(row)[-self.max_len :] if row >= 0 else ()
                    if len(seq):
                        x[n, -len(seq) :] = seq
                with_seq = (x >= 0).any(axis=1)
                if with_seq.any():
                    block = network(torch.from_numpy(x[with_seq]), catalogue)[:, -1].numpy()
                    for n, value in zip(np.flatnonzero(with_seq), block, strict=True):
                        hit = back == start + n
                        states[hit], has_state[hit] = value, True
        return states, catalogue.numpy(), has_state

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        """Ratings from the readout (see :meth:`_fit_readout`); the training mean where the interactions had no
        ratings or order. An unknown user has no state and no ratings; an item outside the catalogue no vector."""
        from models.lm.readout import apply_readout

        u, i = self.user_index(users), self.item_index(items)
        if not self._readout:
            return np.full(len(u), self.global_mean)
        states, catalogue, has_state = self._states(u)
        vectors = np.where((i >= 0)[:, None], catalogue[np.maximum(i, 0)], 0.0)
        states = np.where(has_state[:, None], states, 0.0)
        return apply_readout(
            self._readout, states, vectors, rows_at(self._user_stats, u, 0.0), rows_at(self._item_stats, i, 0.0)
        )

    def _network(self):
        """The fitted network (rebuilt from the saved weights for a model loaded from a bundle)."""
        network = getattr(self, "_net", None)
        if network is not None:
            return network
        import torch

        network = self._build(self._item_text.shape[1])
        network.load_state_dict({name: torch.from_numpy(np.asarray(v)) for name, v in self._weights.items()})
        self._net = network.eval()
        return self._net

    def restore(self, state, seen_indptr, seen_indices) -> None:
        super().restore(state, seen_indptr, seen_indices)
        self._ordered = bool(self._ordered)
        self.popularity_weight_ = float(self.popularity_weight_)
        self._net = None


class LMSequentialIds(LMSequential):
    """The sequential LM's id-only twin: the same network, its text input zeroed (what text adds)."""

    name = "lm_sequential_ids"
    text_input = False


def _rating_stats(frame: pd.DataFrame, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's and item's (rating sum, count) over ``frame`` (the sorted sequences); zeros without
    ratings."""
    ratings = frame["rating"].to_numpy(np.float64)
    if not np.isfinite(ratings).all():
        return np.zeros((n_users, 2)), np.zeros((n_items, 2))
    user, item = frame["user"].to_numpy(), frame["item"].to_numpy()
    users = np.column_stack([np.bincount(user, ratings, n_users), np.bincount(user, minlength=n_users)])
    items = np.column_stack([np.bincount(item, ratings, n_items), np.bincount(item, minlength=n_items)])
    return users.astype(np.float64), items.astype(np.float64)


def _readout(pairs: dict) -> dict:
    """``models.lm.readout.fit_readout`` over (states, item vectors, user stats, item stats, ratings) of the
    training and validation pairs (its rows: each pair's state, then its item vector)."""
    from types import SimpleNamespace

    from models.lm.readout import fit_readout

    vectors, stats, sets, offset = [], [], {}, 0
    for name, (u, v, us, its, y) in pairs.items():
        n = len(y)
        vectors += [u, v]
        stats += [us, its]
        sets[name] = SimpleNamespace(
            users=offset + np.arange(n), items=offset + n + np.arange(n), ratings=np.asarray(y, np.float64)
        )
        offset += 2 * n
    readout = fit_readout(np.concatenate(vectors).astype(np.float64), np.concatenate(stats), sets, [])
    return {key: value for key, value in readout.items() if key != "head_val_mse"}


def _seen_before(x, candidates, n_items: int | None = None):
    """Whether each candidate was among the inputs up to each position: (B, L, candidates) booleans; with
    ``candidates`` None, over the whole catalogue of ``n_items``."""
    import torch

    length = x.shape[1]
    upto = torch.tril(torch.ones(length, length, dtype=torch.bool))  # (t, s): s <= t
    if candidates is None:
        idx = torch.where(upto[None] & (x >= 0)[:, None, :], x[:, None, :], n_items)  # (B, t, s)
        hot = torch.zeros(x.shape[0], length, n_items + 1, dtype=torch.bool)
        hot.scatter_(-1, idx, True)
        return hot[..., :n_items]
    hit = x[..., None] == candidates[None, None, :]  # (B, s, c)
    return (upto[None].to(torch.float32) @ hit.to(torch.float32)) > 0


def _network(n_items: int, text_dim: int, factors: int, blocks: int, heads: int, dropout: float, max_len: int):
    import torch
    from torch import nn

    class SequenceNetwork(nn.Module):
        """Item vectors = adapter(text) + id embedding (warm items); a causal transformer over the sequence."""

        def __init__(self):
            super().__init__()
            # a linear map of the (whitened) text vector, started at the id embeddings' scale, so that neither
            # input drowns the other at the start; without a bias, zero text adds nothing (the id-only twin)
            self.adapter = nn.Linear(text_dim, factors, bias=False)
            nn.init.normal_(self.adapter.weight, std=0.02 / text_dim**0.5)
            self.ids = nn.Embedding(n_items, factors)
            nn.init.normal_(self.ids.weight, std=0.02)
            self.positions = nn.Embedding(max_len, factors)
            nn.init.normal_(self.positions.weight, std=0.02)  # SASRec's: the items, scaled by √d, lead
            layer = nn.TransformerEncoderLayer(
                factors, heads, dim_feedforward=factors, dropout=dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(factors)
            self.drop = nn.Dropout(dropout)
            causal = torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1)
            self.register_buffer("causal", causal, persistent=False)
            self.register_buffer("eye", torch.eye(max_len, dtype=torch.bool), persistent=False)

        def item_vectors(self, text, ids, keep_id):
            return self.adapter(text) + self.ids(ids) * keep_id[..., None]

        def items(self, text, has_id):
            return self.item_vectors(text, torch.arange(len(has_id)), has_id)

        def forward(self, x, catalogue):
            """States (B, L, d) of the sequences ``x`` (B, L) of catalogue positions, -1 for padding."""
            pad = x < 0
            length = x.shape[1]
            h = catalogue[x.clamp(min=0)] * (~pad)[..., None] * factors**0.5
            h = self.drop(h + self.positions.weight[None, -length:])
            # no key in the future or in the padding; each position keeps its own key, so that no row of the
            # attention is empty (a padded position's state is never read)
            blocked = (self.causal[None, :length, :length] | pad[:, None, :]) & ~self.eye[None, :length, :length]
            mask = torch.zeros(blocked.shape, dtype=h.dtype).masked_fill(blocked, float("-inf"))
            h = self.encoder(h, mask=mask.repeat_interleave(heads, dim=0))
            return self.norm(h)

    return SequenceNetwork()
