"""The field's sequential recommenders, SASRec and BERT4Rec, through Cornac (``cornac.models.SASRec``,
``cornac.models.BERT4Rec``), behind reclab's contract.

Leave-last-out is the sequential recommenders' protocol: the next item is predicted from the items a user
chose before it, in their order. Each user's training interactions, sorted by time (ties by item id), are one
sequence (a Cornac session); the model is trained to predict every next item of every sequence, and ``score``
reads the user's sequence up to the last interaction it knows (on test, training + validation: see
``Recommender.refitted``) and scores the catalogue by the library's own ``score``. The same on every protocol:
in k-fold and random splits the sequence is the user's known interactions in time order.

Cornac rather than RecTools: RecTools 0.19 pins numpy < 2, pandas < 3, attrs < 24 and pytorch-lightning <= 2.5.2,
so pip finds no installation beside reclab's stack (``ResolutionImpossible``), and installed without its
dependencies it fails on pandas 3 (``pd.unique`` of a tuple in its data preparator). Cornac, already one of
reclab's libraries, ships both models (torch, CPU or GPU).

Cold start: an unknown user (no sequence) is ranked by popularity (the contract's default); items without
training interactions are outside the network's vocabulary and rank below every known item. A dataset without
timestamps has no order: the model ranks nothing there (a constant score, which the report says) and logs why.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import pandas as pd

from models.base import Ids, Recommender
from models.evaluation import RANKING_CUTOFF
from models.progress import duration
from models.tuning import SearchSpace

LOG = logging.getLogger("reclab.sequential")

# The logQ correction (Yi et al., RecSys 2019) at scoring time: Cornac's sampled softmax learns against the
# in-batch targets, drawn by popularity, so its scores are pushed down by log-popularity; this weight of
# log(1 + interactions) puts it back, chosen on validation NDCG@k (0, Cornac's own scores, on ties).
POPULARITY_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
# the space the tuner draws from on validation NDCG@k: the model as built, then ``trials`` seeded random draws
SEARCH_SPACE = {
    "epochs": (20, 30, 50),
    "factors": (32, 64, 128),
    "blocks": (1, 2),
    "dropout": (0.2, 0.5),
    "max_len": (20, 50),
}


class Sequences:
    """Each user's known items in time order (ties by item id), as CSR-like arrays over the catalogue: what a
    model that reads the user's sequence keeps (SASRec and BERT4Rec here, the sequential LM in
    ``models.lm.sequential``). Needs the contract's indexing (``user_index``, ``item_index``, ``user_ids``)
    and ``_ordered`` (whether the interactions have timestamps)."""

    def _sequences(self, train: pd.DataFrame) -> pd.DataFrame:
        """Each user's known items in time order (ties by item id); kept as CSR-like arrays over the catalogue.
        Returns the sorted frame (user, item, time and rating positions)."""
        frame = pd.DataFrame(
            {
                "user": self.user_index(train["user_id"].astype(str)),
                "item": self.item_index(train["item_id"].astype(str)),
                "time": train["timestamp"].to_numpy() if self._ordered else np.zeros(len(train)),
                "rating": train["rating"].to_numpy(np.float64) if "rating" in train else np.nan,
            }
        )
        frame = frame.sort_values(["user", "time", "item"], kind="stable").reset_index(drop=True)
        self._sequence_items = frame["item"].to_numpy(np.int64)
        starts = np.searchsorted(frame["user"].to_numpy(), np.arange(len(self.user_ids) + 1))
        self._sequence_starts = starts.astype(np.int64)
        return frame

    def sequence(self, user: int) -> np.ndarray:
        """Catalogue positions of a known user's items, oldest first (``user``: a position in ``user_ids``)."""
        return self._sequence_items[self._sequence_starts[user] : self._sequence_starts[user + 1]]


class SequentialRecommender(Sequences, Recommender):
    """A Cornac next-item transformer (``network``) over each user's items in time order.

    Parameters
    ----------
    k : the evaluation's cut-off (validation NDCG@k judges the configurations).
    factors, blocks, heads, dropout : the transformer's width, depth, attention heads and dropout.
    max_len : the longest history the network reads (the most recent ``max_len`` items).
    epochs, batch_size, learning_rate : training; Adam as Cornac sets it.
    negatives, sample_alpha : items sampled per batch for the loss (Cornac's ``n_sample``), drawn with
        probability ∝ popularity^``sample_alpha`` (0: uniformly).
    loss : Cornac's loss over the batch's targets and the sampled items (``"ce"``: sampled softmax; ``"bce"``,
        ``"bpr"``, ``"bpr-max"``, ``"top1"``).
    trials : random configurations of :data:`SEARCH_SPACE` tried on validation besides this one (each a fit).
    threads : torch's CPU threads during fit and score (1: exactly reproducible, and one core left to a
        trainer running beside it).
    seed : torch's and the sampler's seed.
    """

    tasks = ("ranking",)
    network: ClassVar[str] = ""  # the Cornac class
    # the network's shape beside its weights: a bundle rebuilds it (``_network``)
    state_fields = (
        "_sequence_items",
        "_sequence_starts",
        "_vocabulary",
        "_weights",
        "_ordered",
        "factors",
        "blocks",
        "heads",
        "dropout",
        "max_len",
        "threads",
        "seed",
        "popularity_weight_",
        "batch_size",
        "learning_rate",
        "negatives",
        "sample_alpha",
        "loss",
    )
    summary_fields = ("epochs", "factors", "blocks", "dropout", "max_len", "ordered_")

    def __init__(
        self,
        *,
        k: int = RANKING_CUTOFF,
        factors: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
        max_len: int = 20,
        epochs: int = 30,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        negatives: int = 2048,
        sample_alpha: float = 0.0,
        loss: str = "ce",
        trials: int = 1,
        threads: int = 1,
        seed: int = 0,
    ):
        self.k = k
        self.factors = factors
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.max_len = max_len
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.sample_alpha = sample_alpha
        self.loss = loss
        self.trials = trials
        self.threads = threads
        self.seed = seed
        self.popularity_weight_ = 0.0

    def search_space(self) -> SearchSpace:
        """This configuration and ``trials`` random draws from :data:`SEARCH_SPACE` (epochs, factors, blocks,
        dropout, sequence length), then, on the chosen fit, the weight of log(1 + the item's interactions) added to
        the network's scores (:data:`POPULARITY_WEIGHTS`, the smallest on ties; 0: Cornac's scores)."""
        return SearchSpace(
            grid=SEARCH_SPACE,
            trials=self.trials,
            seed=self.seed,
            after_fit={"popularity_weight_": POPULARITY_WEIGHTS},
        )

    # --- fitting -------------------------------------------------------------------------------------------
    def fit(self, train, validation=None, *, items=None, users=None) -> SequentialRecommender:
        self._index(train, items)
        self._ordered = bool("timestamp" in train and train["timestamp"].notna().all())
        self.ordered_ = self._ordered
        frame = self._sequences(train)
        self._library = None
        if not self._ordered:
            LOG.warning(f"{self.name}: the interactions have no timestamps, so no order to learn: it ranks nothing")
            return self
        self._library = self._train(frame)
        return self

    def _train(self, frame: pd.DataFrame):
        # one session per user, its items in order; Cornac's ids are reclab's catalogue positions (as strings)
        users, items = frame["user"].astype(str), frame["item"].astype(str)
        start = time.perf_counter()
        library, dataset = self._cornac(list(zip(users, users, items, range(len(frame)), strict=True)), self.epochs)
        elapsed = duration(time.perf_counter() - start)
        LOG.info(f"{self.name}: {self.epochs} epochs over {len(frame):,} interactions in {elapsed}")
        # the network's vocabulary: its item index -> catalogue position
        self._vocabulary = np.array([int(key) for key in dataset.iid_map], dtype=np.int64)
        self._weights = {name: value.detach().numpy().copy() for name, value in library.model.state_dict().items()}
        return library

    def _cornac(self, sessions: list[tuple], epochs: int):
        """Cornac's model with this model's settings fitted ``epochs`` epochs on ``sessions`` ((user, session,
        item, time) rows, in order), on :attr:`threads` threads; (the model, its dataset)."""
        import cornac
        from cornac.data import SequentialDataset

        dataset = SequentialDataset.build(sessions, fmt="USIT", seed=self.seed)
        library = getattr(cornac.models, self.network)(
            embedding_dim=self.factors,
            num_blocks=self.blocks,
            num_heads=self.heads,
            dropout=self.dropout,
            max_len=self.max_len,
            n_epochs=epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            n_sample=self.negatives,
            sample_alpha=self.sample_alpha,
            loss=self.loss,
            seed=self.seed,
        )
        with _threads(self.threads):
            library.fit(dataset)
        return library, dataset

    # --- scoring -------------------------------------------------------------------------------------------
    def score(self, users: Ids) -> np.ndarray:
        positions = self.user_index(users)
        out = self.popularity_scores(len(positions))  # what an unknown user gets
        if not self._ordered:
            return np.zeros_like(out)
        library = self._network()
        to_library = np.full(len(self.item_ids), -1, dtype=np.int64)
        to_library[self._vocabulary] = np.arange(len(self._vocabulary))
        with _threads(self.threads):
            for row, user in enumerate(positions):
                if user < 0:
                    continue
                history = to_library[self.sequence(user)]
                scores = np.asarray(library.score(int(user), list(history[history >= 0])), dtype=np.float64)
                known = np.full(len(self.item_ids), scores.min() - 1.0)  # outside the vocabulary: below all
                known[self._vocabulary] = scores
                out[row] = known
        if self.popularity_weight_:
            out[positions >= 0] += self.popularity_weight_ * np.log1p(self.item_counts)
        return out

    def _network(self):
        """The fitted Cornac model (rebuilt from the saved weights for a model loaded from a bundle)."""
        library = getattr(self, "_library", None)
        if library is not None:
            return library
        import torch

        # a one-session dataset over the vocabulary: what Cornac's fit needs to size the network, trained 0 epochs
        library, _ = self._cornac([("0", "0", str(position), n) for n, position in enumerate(self._vocabulary)], 0)
        library.model.load_state_dict({name: torch.from_numpy(np.asarray(v)) for name, v in self._weights.items()})
        self._library = library
        return library

    def restore(self, state, seen_indptr, seen_indices) -> None:
        super().restore(state, seen_indptr, seen_indices)
        self._ordered = bool(self._ordered)
        self.popularity_weight_ = float(self.popularity_weight_)
        self._library = None


@contextmanager
def _threads(n: int):
    """torch's CPU threads set to ``n`` inside the block, as they were after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SASRec(SequentialRecommender):
    """SASRec (Kang & McAuley, ICDM 2018): a causal self-attention encoder over the user's item sequence; the
    last position's state scores the catalogue by dot product (``cornac.models.SASRec``)."""

    name = "sasrec"
    network = "SASRec"


class BERT4Rec(SequentialRecommender):
    """BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer encoder over the user's item sequence,
    trained on the next item at the last position, as Cornac's interface fixes it (``cornac.models.BERT4Rec``)."""

    name = "bert4rec"
    network = "BERT4Rec"
