"""The LM's encoder *frozen*: what the text gives without fine-tuning, the ablation that says whether
fine-tuning earns its cost.

``text_frozen`` reads the same profiles as the fine-tuned LM (``models.lm.profiles``: reviews most recent
first, an item's metadata with its field names; leave-fold-out variants for training pairs, so a pair never
reads its own review), but no weight is updated: each piece of text (a review, an item's metadata) is
embedded once by the pretrained encoder (the mean of its last layer's token states, each piece alone, cut to
``max_length`` tokens), a profile's vector is the L2-normalised mean of its pieces' vectors (at most
``max_reviews`` reviews), and the LM's own readout (``models.lm.readout``: ridge regressions on the profiles'
rating statistics, then on [u, v, u⊙v]) and ranking score (the cosine of the vectors plus a popularity weight
chosen on validation NDCG@k) turn them into ratings and rankings. The rating history is not embedded: the
readout reads the ratings as numbers.

Cost: one forward pass per distinct piece of text of the dataset, kept in the workspace's text cache
(``models.lm.text_cache``, one row per piece under the whole encoder's key), so the other splits, seeds and
reruns only average and solve. Runs in the calling process (torch and transformers are imported at fit).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.base import Recommender
from models.evaluation import RANKING_CUTOFF
from models.lm.recommender import LMTwoTower

PROGRESS_SECONDS = 30.0
LOG = logging.getLogger("reclab.text_frozen")  # forwarded to the Prefect run's log inside a flow (tasks.logs)


@dataclass
class _Pairs:
    """Profile rows and ratings of (user, item) pairs, as ``models.lm.readout`` reads them."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray


class TextFrozen(LMTwoTower):
    """The pretrained encoder without fine-tuning, behind the LM's readout and ranking score.

    Parameters are the LM's (``profile``/``overrides``: :class:`models.lm.config.LMConfig` fields; it reads
    ``encoder``, ``encoder_config``, ``max_length``, ``max_reviews``, ``review_chars``, ``folds``,
    ``readout_folds``, ``item_metadata_dropout``, ``popularity_weights`` and ``seed``), ``text_cache``: the
    workspace's per-text cache folder (None: nothing kept between fits).
    """

    name = "text_frozen"
    background = False  # fitted in the calling process (its forward passes are cached per text)
    fit_in_background = Recommender.fit_in_background  # never the LM's trainer process

    def __init__(
        self,
        profile: str | None = "cpu",
        overrides: dict | None = None,
        *,
        k: int = RANKING_CUTOFF,
        cold_validation: bool = False,
        text_cache: str | Path | None = None,
        batch_size: int = 64,
    ):
        super().__init__(Path("."), profile, overrides, k=k, cold_validation=cold_validation, text_cache=text_cache)
        self.batch_size = batch_size

    def fit(self, train, validation=None, *, items=None, users=None) -> TextFrozen:
        from models.lm.data import pair_keys
        from models.lm.profiles import EMPTY_ITEM, EMPTY_USER, FULL, METADATA_ONLY, build_profiles
        from models.lm.readout import cross_fit_readout, fit_readout

        start = time.perf_counter()
        self._index(train, items)
        config = self.config()
        profiles = build_profiles(
            train,
            items,
            max_reviews=config.max_reviews,
            review_chars=config.review_chars,
            folds=config.folds,
            seed=config.seed,
            rating_history=0,
        )
        train_pairs = train[["user_id", "item_id"]].astype(str)
        with_metadata = {e for kind, e, f in profiles.pieces if kind == "item" and f == METADATA_ONLY}
        keys = {
            "train": pair_keys(
                train_pairs, profiles.pair_fold, with_metadata, config.item_metadata_dropout, config.seed
            ),
        }
        if validation is not None and len(validation):
            keys["validation"] = pair_keys(validation[["user_id", "item_id"]].astype(str), None)
        self._users = pd.Index(pd.unique(train_pairs["user_id"]))
        export = [("user", u, FULL) for u in self._users] + [("item", i, FULL) for i in self.item_ids]
        rows: dict[tuple[str, str, int], int] = {}
        for key in [k for users_, items_ in keys.values() for k in (*users_, *items_)] + export:
            rows.setdefault(key, len(rows))
        profile_pieces = [profiles.pieces_of(key) for key in rows]
        texts = sorted({t for pieces in profile_pieces for t in pieces} | {EMPTY_USER, EMPTY_ITEM})
        piece_vectors, counts = self._embed(texts, config)
        position = {t: n for n, t in enumerate(texts)}
        vectors = np.stack([_profile_vector(piece_vectors, [position[t] for t in p]) for p in profile_pieces])
        stats = np.array([profiles.rating_stats(key) for key in rows], dtype=np.float64)

        def pairs(name: str, frame: pd.DataFrame) -> _Pairs:
            users_, items_ = keys[name]
            return _Pairs(
                np.array([rows[k] for k in users_], dtype=np.int64),
                np.array([rows[k] for k in items_], dtype=np.int64),
                frame["rating"].to_numpy(dtype=np.float64),
            )

        datasets = {"train": pairs("train", train)}
        datasets["validation"] = (
            pairs("validation", validation)
            if "validation" in keys
            else _Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        )
        readout = fit_readout(vectors, stats, datasets, [])
        oof = cross_fit_readout(
            vectors,
            stats,
            datasets,
            config.readout_folds,
            config.seed,
            (float(readout["stat_alpha"]), float(readout["alpha"])),
        )
        self._oof = {
            "user_id": train_pairs["user_id"].to_numpy(),
            "item_id": train_pairs["item_id"].to_numpy(),
            "prediction": oof,
        }
        self._readout = {key: readout[key] for key in ("weights", "stat_weights")} | {
            key: float(readout[key]) for key in ("bias", "alpha", "mean", "stat_bias", "stat_alpha")
        }
        user_rows = [rows[("user", u, FULL)] for u in self._users]
        item_rows = [rows[("item", i, FULL)] for i in self.item_ids]
        self._user_vectors, self._item_vectors = vectors[user_rows], vectors[item_rows]
        self._user_stats, self._item_stats = stats[user_rows], stats[item_rows]
        self._unknown_user = _profile_vector(piece_vectors, [position[EMPTY_USER]])
        self._unknown_item = _profile_vector(piece_vectors, [position[EMPTY_ITEM]])
        self._dim = vectors.shape[1]  # the whole vector is the retrieval vector
        self.metrics_ = {
            "encoder": config.encoder if config.encoder_config is None else "random (encoder_config)",
            "pieces": len(texts),
            **counts,
            "readout_val_mse": float(readout["val_mse"]),
            "readout_stats_val_mse": float(readout["stats_val_mse"]),
            "readout_vector_val_mse": float(readout["vector_val_mse"]),
            "readout_vector_stage": bool(readout["vector_stage"]),
        }
        self.metrics_["seconds"] = round(time.perf_counter() - start, 2)
        return self

    def _embed(self, texts: list[str], config) -> tuple[np.ndarray, dict]:
        """(vectors of ``texts`` in order, counts of pieces read from the cache and encoded)."""
        import torch
        from transformers import AutoTokenizer

        from models.lm.network import build_encoder, mean_pool, resolve_encoder
        from models.lm.text_cache import TextStateCache, text_hash

        if config.encoder_config is not None:
            torch.manual_seed(config.seed)  # a randomly initialised encoder (tests): the same one every fit
        encoder = build_encoder(config.encoder, config.encoder_config).eval()
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_encoder(config.encoder if config.encoder_config is None else "minilm")
        )
        cache = None
        if getattr(self, "text_cache", None) is not None:
            cache = TextStateCache(self.text_cache, pooled_key(encoder, tokenizer, config.max_length))
        hashes = [text_hash(t) for t in texts]
        stored = cache.load(hashes) if cache is not None else {}
        missing = [n for n, h in enumerate(hashes) if h not in stored]
        fresh: dict[int, np.ndarray] = {}
        began = last = time.perf_counter()
        order = sorted(missing, key=lambda n: len(texts[n]))  # similar lengths together: less padding
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                if time.perf_counter() - last > PROGRESS_SECONDS:
                    last, done = time.perf_counter(), start / len(order)
                    LOG.info(
                        f"[text_frozen] embedding texts: {start}/{len(order)} ({100 * done:.0f}%), "
                        f"ETA {(last - began) / done * (1 - done):.0f} s"
                    )
                batch = order[start : start + self.batch_size]
                encoded = tokenizer(
                    [texts[n] for n in batch],
                    truncation=True,
                    max_length=config.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                hidden = encoder(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])[0]
                pooled = mean_pool(hidden, encoded["attention_mask"]).numpy()
                for n, vector in zip(batch, pooled, strict=True):
                    fresh[n] = vector
        if missing:
            LOG.info(f"[text_frozen] embedded {len(missing):,} texts in {time.perf_counter() - began:.0f} s")
        if cache is not None and missing:
            cache.save([hashes[n] for n in missing], [fresh[n][None, :].astype(np.float16) for n in missing])
        dim = encoder.config.hidden_size
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for n, h in enumerate(hashes):
            out[n] = fresh[n] if n in fresh else np.asarray(stored[h][0], dtype=np.float32)
        counts = {"cached": len(texts) - len(missing), "encoded": len(missing)}
        return out, counts | {"parameters": sum(p.numel() for p in encoder.parameters())}


def pooled_key(encoder, tokenizer, max_length: int) -> str:
    """The text cache's key of a whole frozen encoder's pooled vectors (every parameter, the configuration,
    the tokenizer, the token limit; "pooled" keeps it apart from the LM's per-token frozen-layer states)."""
    from models.lm.text_cache import encoder_key, tokenizer_digest

    return "pooled-" + encoder_key(
        list(encoder.state_dict().items()),
        encoder.config.to_json_string(use_diff=False),
        tokenizer_digest(tokenizer),
        -1,
        max_length,
    )


def _profile_vector(piece_vectors: np.ndarray, pieces: list[int]) -> np.ndarray:
    """The L2-normalised mean of a profile's piece vectors."""
    mean = piece_vectors[pieces].mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-9)).astype(np.float32)
