"""Data for the language-model recommender: profile tokens cached once, pairs batched with dynamic padding.

Each distinct piece of text (a review, an item's metadata, a rating history) is tokenised once, and each
profile (a user's or item's full profile, or one of its fold variants) is the concatenation of its pieces'
token ids; a batch pads only to its longest profile and encodes each distinct profile it contains once,
however many of its pairs share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from models.lm.profiles import FULL, METADATA_ONLY, Profiles

TOKENIZE_CHUNK = 4096  # profiles tokenised at a time (full encodings, overflow included, are large)


@dataclass
class ProfileTokens:
    """Token ids per profile key ("user"/"item", id, fold variant), tokenised once, piece by piece.

    Each distinct piece text (``Profiles.pieces_of``: metadata, rating history, one review) is tokenised once,
    with the tokenizer's special tokens, cut to ``max_length``: ``pieces``. A profile is its pieces'
    tokens concatenated in reading order and cut to ``max_length`` in all: ``ids``, and ``layout`` says which
    piece each stretch of it came from, as (piece row, tokens used) pairs, so that the frozen layers' states
    of the pieces (``models.lm.module.PieceStates``) assemble the profile without re-encoding it."""

    keys: dict[tuple[str, str, int], int]
    ids: list[list[int]]
    pad_id: int
    pieces: list[list[int]] = field(default_factory=list)
    piece_texts: list[str] = field(default_factory=list)
    layout: list[list[tuple[int, int]]] = field(default_factory=list)

    @classmethod
    def build(cls, profiles: Profiles, needed: list[tuple[str, str, int]], tokenizer, max_length: int) -> ProfileTokens:
        keys: dict[tuple[str, str, int], int] = {}
        piece_row: dict[str, int] = {}
        profile_pieces: list[list[int]] = []
        for key in needed:
            if key not in keys:
                keys[key] = len(profile_pieces)
                profile_pieces.append([piece_row.setdefault(t, len(piece_row)) for t in profiles.pieces_of(key)])
        texts = list(piece_row)
        pieces: list[list[int]] = []
        for start in range(0, len(texts), TOKENIZE_CHUNK):  # a fast tokenizer's encodings of every text at once
            batch = tokenizer(texts[start : start + TOKENIZE_CHUNK], truncation=True, max_length=max_length)
            pieces += [list(x) for x in batch["input_ids"]]  # keep the ids only; the encodings are let go
        ids, layout = [], []
        for rows in profile_pieces:
            sequence, used = [], []
            for row in rows:
                take = min(len(pieces[row]), max_length - len(sequence))
                if take <= 0:
                    break
                sequence += pieces[row][:take]
                used.append((row, take))
            ids.append(sequence)
            layout.append(used)
        return cls(
            keys=keys, ids=ids, pad_id=tokenizer.pad_token_id or 0, pieces=pieces, piece_texts=texts, layout=layout
        )

    def pad(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask of profiles ``rows``, padded to the longest of them."""
        return pad_sequences([self.ids[r] for r in rows], self.pad_id)


def pad_sequences(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of ``sequences``, padded to the longest of them."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for n, sequence in enumerate(sequences):
        ids[n, : len(sequence)] = torch.tensor(sequence)
        mask[n, : len(sequence)] = 1
    return ids, mask


def budget_rows(users: np.ndarray, budget: int | None, seed: int = 0) -> np.ndarray | None:
    """At most ``budget`` of the pairs whose user codes are ``users``, stratified by user: every user keeps one
    pair (when the budget covers the users), the rest of the budget is spread over the other pairs in
    proportion to each user's count (a systematic sample over the pairs grouped by user, in a seeded random
    order within each user). Returns the kept rows, sorted, or None when the budget does not bind."""
    n = len(users)
    if budget is None or budget >= n:
        return None
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), users))  # grouped by user, a random order within each
    grouped = users[order]
    first = np.r_[True, grouped[1:] != grouped[:-1]]
    kept = order[first] if first.sum() <= budget else order[first][rng.permutation(int(first.sum()))[:budget]]
    rest, left = order[~first], budget - len(kept)
    if left > 0 and len(rest):
        step = len(rest) / left  # >= 1: one pick in each window of that many pairs
        picks = np.floor((np.arange(left) + rng.random()) * step).astype(np.int64)
        kept = np.r_[kept, rest[np.minimum(picks, len(rest) - 1)]]
    return np.sort(kept)


class PairDataset(Dataset):
    """Pairs grouped by user profile: each element is up to ``group`` pairs sharing one user profile.

    Grouping lets a batch encode fewer distinct user profiles for the same number of pairs (the user tower
    is the costlier half when profiles are long); every pair still appears exactly once per epoch, and
    samplers (including DDP's) shuffle and shard whole groups.
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        group: int = 1,
        seed: int = 0,
        keep: np.ndarray | None = None,
    ):
        """``keep``: the rows (pair indices) that form groups, the others left out of every epoch (a pair
        budget, :func:`budget_rows`); ``users``/``items``/``ratings`` stay whole (the readout reads them)."""
        ratings = ratings.astype(np.float32)
        rows = np.arange(len(users)) if keep is None else np.asarray(keep, dtype=np.int64)
        if group <= 1:
            self.groups = [np.array([n]) for n in rows]
        else:  # by user profile, shuffled (seeded) within each, cut into groups of at most ``group``
            shuffled = np.random.default_rng(seed).random(len(users))[rows]
            order = rows[np.lexsort((shuffled, users[rows]))]
            by_user = users[order]
            starts = np.flatnonzero(np.r_[True, by_user[1:] != by_user[:-1]])
            ends = np.r_[starts[1:], len(order)]
            self.groups = [
                order[k : min(k + group, end)]
                for start, end in zip(starts, ends, strict=True)
                for k in range(start, end, group)
            ]
        self.users, self.items, self.ratings = users, items, ratings
        self.pairs = int(sum(len(g) for g in self.groups))  # the pairs an epoch trains on

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, n: int):
        rows = self.groups[n]
        return [(int(self.users[r]), int(self.items[r]), float(self.ratings[r])) for r in rows]


class LengthBuckets(Dataset):
    """Training batches with little padding: each element is one whole batch of pair groups.

    Groups are shuffled (seeded), cut into chunks of ``buckets`` batches, sorted within a chunk by the length
    of their user profile, then of their longest item profile, and cut into batches of ``groups_per_batch``; a loader over this
    (batch size 1, shuffled) draws them in a fresh order every epoch, and DDP's sampler shards whole batches.
    A batch then pads to a length close to all of its profiles' instead of to the longest of random ones."""

    def __init__(self, pairs: PairDataset, lengths: np.ndarray, groups_per_batch: int, buckets: int, seed: int = 0):
        self.pairs = pairs
        user = np.array([lengths[pairs.users[g]].max() for g in pairs.groups])
        item = np.array([lengths[pairs.items[g]].max() for g in pairs.groups])
        order = np.random.default_rng(seed).permutation(len(pairs.groups))
        chunk = max(1, buckets) * groups_per_batch
        self.batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.lexsort((item[part], user[part]))]  # by user profile length, then item
            self.batches += [part[k : k + groups_per_batch] for k in range(0, len(part), groups_per_batch)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, n: int):
        return [pair for group in self.batches[n] for pair in self.pairs[group]]


class Collate:
    """Batch pairs: encode each distinct profile once; indices map pairs back to their profiles.

    Besides the tokens, a batch carries what the retrieval loss needs (``models.lm.module.retrieval_loss``):
    each pair's user and item entity (the fold variants of one profile share it), the item columns'
    entities and the log of their expected count among the columns (``log(B·q_j + M/N)``: B pairs drawn from
    the training pairs, where item j has share q_j, plus M mixed negatives drawn uniformly from the N
    catalogue items, Yang et al., WWW 2020, appended as extra columns)."""

    def __init__(
        self, tokens: ProfileTokens, row_entity=None, row_share=None, mixed_rows=None, mixed: int = 0, seed: int = 0
    ):
        self.tokens = tokens
        n = len(tokens.ids)
        self.row_entity = np.arange(n) if row_entity is None else row_entity
        self.row_share = np.full(n, 1.0 / max(1, n)) if row_share is None else row_share
        self.mixed_rows = np.asarray(mixed_rows if mixed_rows is not None else [], dtype=np.int64)
        self.mixed = mixed if len(self.mixed_rows) else 0
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch):
        batch = [pair for group in batch for pair in group]
        users, items, ratings = zip(*batch, strict=True)
        user_rows, user_index = np.unique(users, return_inverse=True)
        item_rows, item_index = np.unique(items, return_inverse=True)
        if self.mixed:
            drawn = np.unique(self.rng.choice(self.mixed_rows, self.mixed, replace=True))
            item_rows = np.concatenate([item_rows, np.setdiff1d(drawn, item_rows)])
        expected = len(batch) * self.row_share[item_rows] + self.mixed / max(1, len(self.mixed_rows))
        user_ids, user_mask = self.tokens.pad(user_rows.tolist())
        item_ids, item_mask = self.tokens.pad(item_rows.tolist())
        return {
            "user_ids": user_ids,
            "user_mask": user_mask,
            "item_ids": item_ids,
            "item_mask": item_mask,
            "user_rows": torch.as_tensor(user_rows),
            "item_rows": torch.as_tensor(item_rows),
            "user_index": torch.as_tensor(user_index),
            "item_index": torch.as_tensor(item_index),
            "rating": torch.tensor(ratings, dtype=torch.float32),
            "user_entity": torch.as_tensor(self.row_entity[np.asarray(users)]),
            "item_entity": torch.as_tensor(self.row_entity[np.asarray(items)]),
            "column_entity": torch.as_tensor(self.row_entity[item_rows]),
            "column_logq": torch.as_tensor(np.log(expected), dtype=torch.float32),
        }


def pair_keys(
    pairs: pd.DataFrame,
    fold: pd.Series | None,
    metadata_items: set[str] = frozenset(),
    metadata_share: float = 0.0,
    seed: int = 0,
) -> tuple[list, list]:
    """Profile keys of each pair: fold variants for training pairs (``fold`` given), full otherwise. Item
    dropout, for training pairs only: a seeded ``metadata_share`` of the pairs whose item is in
    ``metadata_items`` read the item's metadata-only profile (as a cold item would), not its fold variant."""
    folds = (
        fold.reindex(pd.MultiIndex.from_arrays([pairs["user_id"], pairs["item_id"]])).to_numpy()
        if fold is not None
        else np.full(len(pairs), FULL)
    )
    if np.isnan(folds.astype(float)).any():
        raise ValueError("some training pairs have no fold: profiles were built from another training set")
    item_folds = folds.astype(np.int64)
    if fold is not None and metadata_share > 0 and metadata_items:
        eligible = pairs["item_id"].isin(metadata_items).to_numpy()
        drawn = np.random.default_rng([seed, 2]).random(len(pairs)) < metadata_share
        item_folds = np.where(eligible & drawn, METADATA_ONLY, item_folds)
    users = [("user", u, int(f)) for u, f in zip(pairs["user_id"], folds, strict=True)]
    items = [("item", i, int(f)) for i, f in zip(pairs["item_id"], item_folds, strict=True)]
    return users, items


class PairDataModule(L.LightningDataModule):
    """Train/validation/test pairs with their cached profile tokens.

    ``frames``: {"train", "validation", "test"} DataFrames of (user_id, item_id, rating) as strings/floats;
    ``profiles``: built from the training fold only; ``extra_keys``: more profiles to tokenise alongside
    (the full profiles export encodes), so that one ``tokens`` table serves training and export;
    ``mixed_negatives``: catalogue items (full profiles) drawn uniformly per training batch as extra negatives;
    ``length_buckets`` > 0: training batches of similar profile lengths (:class:`LengthBuckets`, that many
    batches per sorted chunk); ``pin_memory``: page-locked batches for a faster copy to the GPU;
    ``item_metadata_dropout``: the share of training pairs whose item (when it has metadata) reads its
    metadata-only profile, so that training sees items as cold ones look (:func:`pair_keys`);
    ``max_train_pairs``: the most training pairs an epoch trains on (:func:`budget_rows`; None: all of them;
    the readout still reads every one).
    """

    def __init__(
        self,
        frames: dict[str, pd.DataFrame],
        profiles: Profiles,
        tokenizer,
        max_length: int = 128,
        batch_size: int = 32,
        num_workers: int = 0,
        pairs_per_user: int = 1,
        seed: int = 0,
        extra_keys: list[tuple[str, str, int]] = (),
        mixed_negatives: int = 0,
        length_buckets: int = 0,
        pin_memory: bool = False,
        item_metadata_dropout: float = 0.0,
        max_train_pairs: int | None = None,
    ):
        super().__init__()
        self.item_metadata_dropout, self.max_train_pairs = item_metadata_dropout, max_train_pairs
        self.mixed_negatives = mixed_negatives
        self.length_buckets, self.pin_memory = length_buckets, pin_memory
        self.extra_keys = list(extra_keys)
        self.frames, self.profiles, self.tokenizer = frames, profiles, tokenizer
        self.max_length, self.batch_size, self.num_workers = max_length, batch_size, num_workers
        self.pairs_per_user, self.seed = pairs_per_user, seed
        self.tokens: ProfileTokens | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.tokens is not None:
            return
        keys = {}
        with_metadata = {e for kind, e, f in self.profiles.pieces if kind == "item" and f == METADATA_ONLY}
        for name, frame in self.frames.items():
            if name == "train":
                keys[name] = pair_keys(
                    frame, self.profiles.pair_fold, with_metadata, self.item_metadata_dropout, self.seed
                )
            else:
                keys[name] = pair_keys(frame, None)
        needed = [k for users, items in keys.values() for k in (*users, *items)] + self.extra_keys
        self.tokens = ProfileTokens.build(self.profiles, needed, self.tokenizer, self.max_length)
        user_codes = {name: np.array([self.tokens.keys[k] for k in users]) for name, (users, _) in keys.items()}
        entity = {name: pd.factorize(self.frames[name]["user_id"].astype(str))[0] for name in keys}
        self.datasets = {
            name: PairDataset(
                user_codes[name],
                np.array([self.tokens.keys[k] for k in items]),
                self.frames[name]["rating"].to_numpy(),
                group=self.pairs_per_user if name == "train" else 1,
                seed=self.seed,
                keep=budget_rows(entity[name], self.max_train_pairs, self.seed) if name == "train" else None,
            )
            for name, (_, items) in keys.items()
        }
        # entities (a profile's fold variants share one) and each item row's smoothed share of training pairs
        codes: dict[tuple[str, str], int] = {}
        self.row_entity = np.array([codes.setdefault((kind, e), len(codes)) for kind, e, _ in self.tokens.keys])
        counts = self.frames["train"]["item_id"].astype(str).value_counts()
        catalogue = sum(1 for kind, _ in codes if kind == "item")
        total = int(counts.sum())
        self.row_share = np.array(
            [(counts.get(e, 0) + 1) / (total + catalogue) if kind == "item" else 0.0 for kind, e, _ in self.tokens.keys]
        )
        self.mixed_rows = np.array(
            [row for (kind, _, fold), row in self.tokens.keys.items() if kind == "item" and fold == FULL]
        )

    def collate(self, mixed: int = 0) -> Collate:
        return Collate(self.tokens, self.row_entity, self.row_share, self.mixed_rows, mixed, self.seed)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[name]
        mean_group = dataset.pairs / max(1, len(dataset))  # batch_size counts pairs; a loader counts groups
        groups_per_batch = max(1, round(self.batch_size / mean_group))
        if name == "train" and self.length_buckets > 0:
            lengths = np.array([len(ids) for ids in self.tokens.ids])
            dataset = LengthBuckets(dataset, lengths, groups_per_batch, self.length_buckets, self.seed)
            groups_per_batch = 1  # each element is a whole batch
        return DataLoader(
            dataset,
            batch_size=groups_per_batch,
            shuffle=shuffle,
            collate_fn=self.collate(self.mixed_negatives if name == "train" else 0),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
