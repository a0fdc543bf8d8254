"""The frozen layers' states of each piece of text, computed once per dataset and encoder and kept on disk.

With the encoder's lower layers frozen, what they compute for a piece of text (a review, an item's metadata,
a rating history: ``models.lm.profiles``) never changes: it is computed once, stored under a key of the
encoder (a digest of the frozen layers' weights and configuration, of the tokenizer, the number of frozen
layers and the piece's token limit) and the text's sha256, and reused by every split, fold, seed and rerun
of the workspace. A changed encoder, layer count, tokenizer or token limit is another key, so a stale state is
never read; a changed text is another hash.

Layout: ``<root>/<key>/`` holds shards, each ``states-<id>.npy`` (float16, one row per token, the pieces'
rows one after the other) and ``index-<id>.npz`` (the pieces' text hashes and row offsets), written to
temporary names and renamed, the index last: a shard without its index is ignored (an interrupted write),
and one whose states do not match its index is ignored with a warning. The folder can be deleted at any time
(states are computed again). Pure numpy and hashlib; the encoder runs in ``models.lm.module``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from pathlib import Path

import numpy as np

FORMAT = 1


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """A digest of a Hugging Face tokenizer: its whole fast-tokenizer definition (vocabulary, normalisation,
    pre-tokenisation), or its vocabulary where it has no fast backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(vocabulary.encode()).hexdigest()


def encoder_key(parameters, config_json: str, tokenizer_digest: str, frozen: int, max_length: int) -> str:
    """The cache key of an encoder's frozen part: ``parameters`` (name, tensor) pairs of the frozen modules
    (their bytes are hashed), the encoder's configuration as JSON, a digest of the tokenizer, the number of
    frozen layers and the token limit of a piece."""
    digest = hashlib.sha256(json.dumps([FORMAT, config_json, tokenizer_digest, frozen, max_length]).encode())
    for name, tensor in parameters:
        digest.update(name.encode())
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(str(array.dtype).encode() + str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


class TextStateCache:
    """Per-text frozen states under one encoder key (see the module's docstring)."""

    def __init__(self, root: str | Path, key: str):
        self.folder = Path(root) / key
        self._index: dict[str, tuple[Path, int, int]] | None = None

    def index(self) -> dict[str, tuple[Path, int, int]]:
        """text hash -> (states file, first row, end row) over every complete shard."""
        if self._index is not None:
            return self._index
        index: dict[str, tuple[Path, int, int]] = {}
        for path in sorted(self.folder.glob("index-*.npz")) if self.folder.exists() else []:
            states = path.with_name(path.name.replace("index-", "states-").replace(".npz", ".npy"))
            try:
                with np.load(path, allow_pickle=False) as shard:
                    hashes, offsets = shard["hashes"], shard["offsets"]
                rows = np.load(states, mmap_mode="r").shape[0]
            except (OSError, ValueError, KeyError) as err:
                print(f"[lm] text-state cache: ignoring shard {path.name} ({err})", file=sys.stderr, flush=True)
                continue
            if len(offsets) != len(hashes) + 1 or int(offsets[-1]) != rows:
                print(
                    f"[lm] text-state cache: ignoring shard {path.name} (its states do not match its index)",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            for n, h in enumerate(hashes.astype(str)):
                index.setdefault(h, (states, int(offsets[n]), int(offsets[n + 1])))
        self._index = index
        return index

    def load(self, hashes: list[str]) -> dict[str, np.ndarray]:
        """The stored states (float16, tokens × dim) of those of ``hashes`` that are in the cache."""
        index = self.index()
        found: dict[str, np.ndarray] = {}
        opened: dict[Path, np.ndarray] = {}
        for h in hashes:
            if h in index and h not in found:
                path, start, end = index[h]
                if path not in opened:
                    opened[path] = np.load(path, mmap_mode="r")
                found[h] = np.asarray(opened[path][start:end])
        return found

    def save(self, hashes: list[str], states: list[np.ndarray]) -> None:
        """Add pieces (``states``: float16 tokens × dim each) as one new shard."""
        if not hashes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:16]
        offsets = np.zeros(len(states) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in states])
        temporary = self.folder / f".states-{name}.{os.getpid()}.npy"
        np.save(temporary, np.concatenate(states).astype(np.float16))
        temporary.rename(self.folder / f"states-{name}.npy")
        temporary = self.folder / f".index-{name}.{os.getpid()}.npz"
        with open(temporary, "wb") as handle:
            np.savez(handle, hashes=np.array(hashes, dtype="S64"), offsets=offsets)
        temporary.rename(self.folder / f"index-{name}.npz")
        self._index = None
