"""Pseudonymous user ids: what leaves the workspace for serving (bundles, the serving log, logs) carries a
keyed pseudonym of each user id, never the id itself.

A pseudonym is HMAC-SHA256 of the id under the workspace's secret key (``tasks.store.Workspace.user_key``,
owner-only, never in a bundle or a log), truncated to 96 bits and marked ``p-``: the same id maps to the same
pseudonym for as long as the key lives (across retrains), and nobody without the key can map one back or test a
guess. The service receives raw ids and pseudonymises them on arrival.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import numpy as np
import pandas as pd

PREFIX = "p-"


def pseudonym(user_id: str, key: bytes) -> str:
    digest = hmac.new(key, str(user_id).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:24]


def pseudonymise(user_ids: Iterable[str], key: bytes) -> np.ndarray:
    """Each id's pseudonym, in order (a string array); each distinct id is hashed once (a split's training
    fold repeats every user's id per rating)."""
    distinct, inverse = np.unique(np.asarray(list(user_ids), dtype=str), return_inverse=True)
    return np.array([pseudonym(u, key) for u in distinct], dtype=object).astype(str)[inverse.reshape(-1)]


def key_id(key: bytes) -> str:
    """A short fingerprint of the key (not the key: a bundle says which key made its pseudonyms)."""
    return hashlib.sha256(b"reclab key id" + key).hexdigest()[:12]


def pseudonymise_field(value, key: bytes):
    """A user-keyed attribute with its user ids replaced: an array or Index of ids, or a Series indexed by them."""
    if isinstance(value, pd.Series):
        return pd.Series(value.to_numpy(), index=pseudonymise(value.index.astype(str), key), name=value.name)
    if isinstance(value, pd.Index):
        return pd.Index(pseudonymise(value.astype(str), key), name=value.name)
    if isinstance(value, np.ndarray):
        return pseudonymise(value.astype(str), key)
    raise TypeError(f"cannot pseudonymise a {type(value).__name__}")
