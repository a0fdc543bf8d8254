"""The fine-tuned LM behind the common recommender contract.

``fit`` writes the training fold (with its text) and the validation fold (without) into ``work_dir``, runs
``python -m models.lm.train`` as its own process (so Lightning's DDP can re-launch it), and loads what it
exported: user/item vectors of the full training profiles (best checkpoint) and the rating readout.
``predict`` applies the readout (ridge regressions on the profiles' rating statistics, then on [u, v, u⊙v] of
the fine-tuned vectors) to a user's and an item's vectors and statistics; ``score`` is the cosine of the
vectors' retrieval halves over the catalogue (one matrix product) plus ``popularity_weight_`` × log(1 + the
item's training interactions), the weight chosen on validation NDCG@k from ``LMConfig.popularity_weights``.

The trainer's output (progress lines, warnings) is streamed line by line to the ``reclab.lm`` logger (the
Prefect run's log inside a flow; stderr when nothing handles it).

Cold start: a user (item) unseen in training is encoded from the empty profile; an item with metadata but
no training reviews is encoded from its metadata.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from models.base import Ids, Recommender, positions, rows_at
from models.evaluation import RANKING_CUTOFF
from models.lm.config import LMConfig, profile_fields
from models.tuning import SearchSpace

LOG = logging.getLogger("reclab.lm")
# lines of the trainer's output that say nothing to a reader of the run's log
NOISE = (
    "LOAD REPORT",
    "UNEXPECTED",
    "pooler.dense",
    "Notes:",
    "can be ignored when loading",
    "litlogger",
    "💡 Tip",
    "LeafSpec",
    "Loading weights",  # transformers' progress bar over the checkpoint's tensors
    "| Status",  # the load report's table header and rule
    "--+--",
    "Seed set to",
)


class LMTwoTower(Recommender):
    """Two-tower fine-tuned language model.

    Parameters
    ----------
    work_dir : folder for the trainer's inputs and outputs (checkpoints, logs, embeddings).
    profile : ``"cpu"``, ``"gpu"`` or None: a set of :class:`models.lm.config.LMConfig` overrides.
    overrides : further LMConfig fields (e.g. ``encoder``, ``max_epochs``, ``devices``).
    k : the cut-off of the validation NDCG that chooses the popularity weight.
    cold_validation : judge that choice on items without training interactions (the cold-item protocol).
    text_cache : folder of the per-text frozen-layer states shared by every split of a workspace
        (``models.lm.text_cache``); None: the trainer keeps them for its own run only.
    """

    name = "lm_two_tower"
    # the fine-tuned vectors and readout (serving needs no encoder for users and items it knows), and the
    # encoder reference and trainer metrics (best checkpoint path) they came from
    user_keyed_fields = ("_users",)
    state_fields = (
        "_users",
        "_user_vectors",
        "_unknown_user",
        "_item_vectors",
        "_unknown_item",
        "_readout",
        "_dim",
        "_user_stats",
        "_item_stats",
        "profile",
        "overrides",
        "metrics_",
        "popularity_weight_",
    )
    state_defaults = {"popularity_weight_": 0.0}  # bundles published before it ranked by the cosine alone
    summary_fields = ("metrics_", "popularity_weight_")
    reuse_fields = ("_oof",)  # the readout's out-of-fold predictions of the training pairs: the fusion stacks them
    background = True  # its trainer is its own process (fit_in_background)
    # a refit on training + validation would be a second trainer run: the validation interactions join the
    # users' histories at scoring time instead (seen items, item counts); the profiles keep training text only
    test_time = "history"

    def __init__(
        self,
        work_dir: str | Path,
        profile: str | None = "cpu",
        overrides: dict | None = None,
        *,
        k: int = RANKING_CUTOFF,
        cold_validation: bool = False,
        text_cache: str | Path | None = None,
    ):
        profile_fields(profile, dict(overrides or {}))  # a bad key or value fails here, not in the trainer
        self.work_dir = Path(work_dir)
        self.profile = profile
        self.overrides = dict(overrides or {})
        self.k = k
        self.cold_validation = cold_validation
        self.text_cache = text_cache
        self.popularity_weight_ = 0.0

    def config(self) -> LMConfig:
        # the trainer's output is piped (see _Stream): progress lines, not a terminal's bar
        fields = {"progress_bar": False, **profile_fields(self.profile, self.overrides)}
        if getattr(self, "text_cache", None) is not None:
            fields.setdefault("text_cache", str(self.text_cache))
        return LMConfig(**fields, data_dir=str(self.work_dir / "data"), output_dir=str(self.work_dir / "out"))

    def fit(self, train, validation=None, *, items=None, users=None) -> LMTwoTower:
        self.fit_in_background(train, validation, items=items, users=users).finish()
        return self

    def fit_in_background(self, train, validation=None, *, items=None, users=None):
        """Write the trainer's inputs, start ``python -m models.lm.train`` and return a :class:`Training` handle
        at once (``finish()`` waits, loads what it exported and chooses the popularity weight)."""
        self._index(train, items)
        config = self.config()
        data = Path(config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        columns = [c for c in ("user_id", "item_id", "rating", "timestamp", "summary", "review_text") if c in train]
        train[columns].to_parquet(data / "train.parquet", index=False)
        if validation is not None:
            validation[["user_id", "item_id", "rating"]].to_parquet(data / "validation.parquet", index=False)
        if items is not None:
            items.to_parquet(data / "items.parquet", index=False)
        config_path = self.work_dir / "lm_config.json"
        config_path.write_text(config.model_dump_json(indent=2))
        command = [sys.executable, "-m", "models.lm.train", "--config", str(config_path)]
        return Training(self, config, validation, _Stream(command))

    def search_space(self) -> SearchSpace:
        """The weight of log(1 + popularity) in ``score``, tried on the fitted model by validation NDCG@k (the
        smallest on ties; without validation users to judge by, 0: the cosine alone)."""
        return SearchSpace(after_fit={"popularity_weight_": tuple(self.config().popularity_weights)}, judge="ndcg")

    def _load(self, out: Path) -> None:
        self.metrics_ = json.loads((out / "metrics.json").read_text())
        emb = np.load(out / "embeddings.npz", allow_pickle=False)
        self._users = pd.Index(emb["user_ids"].astype(str))
        item_vec = pd.DataFrame(emb["item_vectors"], index=emb["item_ids"].astype(str))
        self._user_vectors = emb["user_vectors"]
        self._unknown_user = emb["unknown_user_vector"]
        self._item_vectors = item_vec.reindex(self.item_ids).to_numpy(copy=True)
        missing = np.isnan(self._item_vectors).any(axis=1)
        self._item_vectors[missing] = emb["unknown_item_vector"]
        self._unknown_item = emb["unknown_item_vector"]
        self._user_stats = emb["user_stats"]  # (rating sum, count) of each profile; none for unknown ids
        item_stats = pd.DataFrame(emb["item_stats"], index=emb["item_ids"].astype(str)).reindex(self.item_ids)
        self._item_stats = item_stats.fillna(0.0).to_numpy()
        readout = np.load(out / "readout.npz", allow_pickle=False)
        self._readout = {key: readout[key] for key in ("weights", "stat_weights")} | {
            key: float(readout[key]) for key in ("bias", "alpha", "mean", "stat_bias", "stat_alpha")
        }
        self._dim = self._user_vectors.shape[1] // 2  # vectors are [retrieval half | attention-pooled half]
        oof = out / "predictions_train_oof.parquet"  # the readout's, for the fusion's stacking (not published)
        self._oof = None
        if oof.exists():
            table = pd.read_parquet(oof)
            self._oof = {
                "user_id": table["user_id"].astype(str).to_numpy(),
                "item_id": table["item_id"].astype(str).to_numpy(),
                "prediction": table["prediction"].to_numpy(dtype=np.float64),
            }

    def oof_predictions(self, train, fold, *, items=None, users=None) -> np.ndarray | None:
        """The readout's out-of-fold predictions of the training pairs (``models.lm.readout.cross_fit_readout``,
        its own folds: ``fold`` is not used; no LM refit), None for a model loaded from a bundle."""
        if getattr(self, "_oof", None) is None:
            return None
        index = pd.MultiIndex.from_arrays([self._oof["user_id"], self._oof["item_id"]])
        table = pd.Series(self._oof["prediction"], index=index)
        keys = pd.MultiIndex.from_arrays([train["user_id"].astype(str), train["item_id"].astype(str)])
        out = table[~table.index.duplicated()].reindex(keys).to_numpy(dtype=np.float64)
        return None if np.isnan(out).any() else out

    def restore(self, state, seen_indptr, seen_indices) -> None:
        super().restore(state, seen_indptr, seen_indices)
        self._dim = int(self._dim)

    def _user_vectors_for(self, users: Ids) -> np.ndarray:
        return rows_at(self._user_vectors, positions(self._users, users), self._unknown_user)

    def predict(self, users: Ids, items: Ids) -> np.ndarray:
        from models.lm.readout import apply_readout

        upos, ipos = positions(self._users, users), self.item_index(items)
        u, v = (
            rows_at(self._user_vectors, upos, self._unknown_user),
            rows_at(self._item_vectors, ipos, self._unknown_item),
        )
        # unknown ids have no ratings: their statistics are (0, 0)
        return apply_readout(
            self._readout, u, v, rows_at(self._user_stats, upos, 0.0), rows_at(self._item_stats, ipos, 0.0)
        )

    def embeddings(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(user vectors indexed by user id, item vectors indexed by catalogue item id)."""
        return pd.DataFrame(self._user_vectors, index=self._users), pd.DataFrame(
            self._item_vectors, index=self.item_ids
        )

    def score(self, users: Ids) -> np.ndarray:
        d = self._dim
        scores = self._user_vectors_for(users)[:, :d] @ self._item_vectors[:, :d].T
        weight = float(getattr(self, "popularity_weight_", 0.0))  # bundles written before it: cosine alone
        if weight:
            scores = scores + weight * np.log1p(self.item_counts)[None, :]
        return scores


class Training:
    """A fit of :class:`LMTwoTower` running in its trainer process (``LMTwoTower.fit_in_background``)."""

    def __init__(self, model: LMTwoTower, config: LMConfig, validation, stream: _Stream):
        self.model, self.config, self.validation, self.stream = model, config, validation, stream

    def finish(self) -> float:
        """Wait for the trainer, load its outputs into the model; the trainer's CPU seconds. (The popularity
        weight is chosen by ``models.tuning.tune`` on the fitted model.)"""
        code = self.stream.wait()
        if code != 0:
            last = "\n".join(self.stream.tail)
            raise RuntimeError(
                f"LM training failed (exit {code}); see {self.config.output_dir}/logs. Last output:\n{last}"
            )
        self.model._load(Path(self.config.output_dir))
        return float(self.model.metrics_.get("cpu_seconds") or 0.0)

    def cancel(self) -> None:
        """Stop the trainer (another fit of the split failed)."""
        self.stream.process.kill()
        self.stream.wait()


class _Stream:
    """Runs ``command``, sending each line of its merged stdout/stderr to the ``reclab.lm`` logger (stderr when
    no handler would show an INFO line) as it comes, without known noise, from a reader thread; the records
    carry the starting thread's id, so that a task run forwarding that thread's records gets them
    (``tasks.logs``). ``tail``: its last ``keep`` lines."""

    def __init__(self, command: list[str], keep: int = 40):
        self.tail: deque = deque(maxlen=keep)
        self.owner = threading.get_ident()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, name="lm-trainer-output", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip()
            if not line or any(mark in line for mark in NOISE):
                continue
            self.tail.append(line)
            if LOG.hasHandlers() and LOG.isEnabledFor(logging.INFO):  # a run's log (tasks.logs) or a configured one
                record = LOG.makeRecord(LOG.name, logging.INFO, __file__, 0, line, None, None)
                record.thread = self.owner
                LOG.handle(record)
            else:  # nothing would show it: the process's stderr, as the trainer wrote it
                print(line, file=sys.stderr, flush=True)

    def wait(self) -> int:
        code = self.process.wait()
        self.reader.join()
        return code
