"""Answering recommendation requests from a loaded model bundle: top-K with explanations, rating
predictions, and the cold-start fallbacks (pure Python and numpy: no web framework here, see ``serve``).

Cold start, as served:
- an unknown user gets the catalogue ranked by training popularity (no text of theirs is known);
- a catalogue item without training interactions is scored by every component's "no evidence" rule, and
  the fine-tuned LM encodes it from its metadata when the dataset has any (so it can be recommended);
- a rating for an unknown user or item falls back to the training mean plus whatever bias is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base import Recommender, top_k
from models.registry import LANGUAGE
from models.serving.bundle import BundleError
from models.serving.pseudonym import key_id, pseudonymise

MAX_K = 1000


class RequestError(ValueError):
    """A request the model cannot answer as asked (bad k, empty ids): a 4xx, with this message."""


@dataclass
class Recommendation:
    user_id: str
    items: list[str]
    scores: list[float]
    strategy: str  # "personalised" or "popularity (unknown user)"
    explanations: list[dict]


class ServingModel:
    """One published model, ready to answer requests. ``version``: its registry version."""

    def __init__(self, model: Recommender, version: str = "local", user_key: bytes | None = None):
        """``user_key``: the workspace's key, needed when the bundle's user ids are pseudonymous (requests
        bring raw ids: each is pseudonymised on arrival)."""
        self.model, self.version = model, version
        made_with = getattr(model, "user_key_id_", None)
        if made_with is not None and (user_key is None or key_id(user_key) != made_with):
            raise BundleError(
                f"model {version} holds pseudonymous user ids made with key {made_with}; this workspace's key "
                f"({'none' if user_key is None else key_id(user_key)}) cannot map users onto them: serve it from "
                "the workspace that published it"
            )
        self._key = user_key if made_with is not None else None
        self.components = getattr(model, "components", {})
        parts = {model.name: model, **self.components}
        lm = next((parts[name] for name in LANGUAGE if name in parts), None)  # its vectors explain items
        if lm is not None and hasattr(lm, "_item_vectors"):  # unit retrieval halves: cosine = dot product
            half = lm._item_vectors[:, : lm._dim]
            self._similarity = half / np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-12)
        else:
            self._similarity = None
        self._popular = np.argsort(-model.item_counts, kind="stable")
        lo_hi = getattr(model, "_rating_range", None)
        self.rating_range = tuple(lo_hi) if lo_hi is not None else None

    def internal(self, user_ids):
        """The ids the model knows users by: their pseudonyms for a pseudonymous bundle, else themselves."""
        ids = np.asarray(user_ids, dtype=str)
        return ids if self._key is None else pseudonymise(ids, self._key)

    @property
    def n_items(self) -> int:
        return len(self.model.item_ids)

    def check_k(self, k: int) -> int:
        if not isinstance(k, int | np.integer) or k <= 0:
            raise RequestError(f"k must be a positive integer, got {k!r}")
        if k > MAX_K:
            raise RequestError(f"k must be at most {MAX_K}, got {k}")
        return min(int(k), self.n_items)

    def recommend(self, user_id: str, k: int = 10, explain: bool = True) -> Recommendation:
        """The user's top ``k`` unseen catalogue items, best first, with per-item explanations."""
        k = self.check_k(k)
        known_as = str(self.internal([user_id])[0])
        pos = int(self.model.user_index([known_as])[0])
        if pos < 0:
            top = self._popular[:k]
            counts = self.model.item_counts[top]
            return Recommendation(
                user_id,
                self.model.item_ids[top].tolist(),
                counts.astype(float).tolist(),
                "popularity (unknown user)",
                [{"drivers": {"popularity": float(c)}} for c in counts] if explain else [],
            )
        parts = self._parts(known_as)
        scores = sum(parts.values())
        seen = self.model._seen.indices[self.model._seen.indptr[pos] : self.model._seen.indptr[pos + 1]]
        scores[seen] = -np.inf
        top = top_k(scores[None, :], min(k, self.n_items - len(seen)))[0] if len(seen) < self.n_items else []
        explanations = [self._explain(i, parts, seen) for i in top] if explain else []
        return Recommendation(
            user_id, self.model.item_ids[top].tolist(), scores[top].astype(float).tolist(), "personalised", explanations
        )

    def _parts(self, user_id: str) -> dict[str, np.ndarray]:
        if hasattr(self.model, "score_parts"):
            return {name: part[0] for name, part in self.model.score_parts([user_id]).items()}
        return {self.model.name: self.model.score([user_id])[0].astype(np.float64)}

    def _explain(self, item: int, parts: dict[str, np.ndarray], seen: np.ndarray) -> dict:
        drivers = {name: round(float(part[item]), 4) for name, part in parts.items()}
        out = {"drivers": dict(sorted(drivers.items(), key=lambda kv: -kv[1]))}
        if self._similarity is not None and len(seen):
            sims = self._similarity[seen] @ self._similarity[item]
            best = np.argsort(-sims)[:2]
            out["similar_to"] = [
                {"item_id": str(self.model.item_ids[seen[b]]), "similarity": round(float(sims[b]), 4)} for b in best
            ]
        return out

    def cold(self, user_ids: list[str], item_ids: list[str]) -> tuple[list[bool], list[bool]]:
        """Per pair: (the user is unknown to the model, the item has no training interactions)."""
        users = self.model.user_index(self.internal(user_ids)) < 0
        pos = self.model.item_index(np.asarray(item_ids, dtype=str))
        items = (pos < 0) | (self.model.item_counts[np.maximum(pos, 0)] == 0)
        return users.tolist(), items.tolist()

    def predict(self, user_ids: list[str], item_ids: list[str]) -> list[float]:
        """Rating predictions for (user, item) pairs, clipped to the training rating range."""
        if len(user_ids) != len(item_ids):
            raise RequestError(f"{len(user_ids)} user ids but {len(item_ids)} item ids")
        if "rating" not in self.model.tasks:
            raise RequestError(f"model {self.model.name} does not predict ratings")
        pred = self.model.predict(self.internal(user_ids), np.asarray(item_ids, dtype=str))
        if self.rating_range is not None:
            pred = np.clip(pred, *self.rating_range)
        return pred.astype(float).tolist()
