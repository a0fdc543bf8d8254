"""The LM's per-text frozen-layer states: each piece of text encoded once per workspace and encoder, reused
by every split, keyed so that a stale state is never read, never holding a held-out review, and training on
kept states giving the loss of states computed afresh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import TINY_BERT, lm_reviews

from models.lm.data import Collate, ProfileTokens
from models.lm.module import PieceStates, TwoTowerModule
from models.lm.profiles import FULL, build_profiles
from models.lm.text_cache import TextStateCache, encoder_key, text_hash


def tokens_of(train, tokenizer, folds=2, max_length=32, max_reviews=3):
    profiles = build_profiles(train, folds=folds, max_reviews=max_reviews, rating_history=2)
    return profiles, ProfileTokens.build(profiles, list(profiles.pieces), tokenizer, max_length)


def key_of(model: TwoTowerModule, max_length: int = 32, tokenizer_digest: str = "tok") -> str:
    net = model.net
    frozen = [("embeddings", net.encoder.embeddings)] + [
        (f"layer{n}", layer) for n, layer in enumerate(net.encoder.encoder.layer[: net.frozen])
    ]
    parameters = [(f"{prefix}.{name}", p) for prefix, m in frozen for name, p in m.state_dict().items()]
    return encoder_key(parameters, net.encoder.config.to_json_string(), tokenizer_digest, net.frozen, max_length)


class Counting:
    """Wraps a network's frozen_states to count the pieces it encodes."""

    def __init__(self, net):
        self.net, self.rows, self.inner = net, 0, net.frozen_states

    def __call__(self, ids, mask):
        self.rows += len(ids)
        return self.inner(ids, mask)


def test_a_pieces_states_are_encoded_once_and_read_by_the_next_split(tokenizer, tmp_path):
    data = lm_reviews()
    first_split, second_split = data.iloc[::2], data.iloc[1::2].head(20)
    second_split = __import__("pandas").concat([second_split, first_split.head(10)])  # shares 10 reviews
    torch.manual_seed(0)
    model = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0, freeze_layers=1).eval()
    counter = Counting(model.net)
    model.net.frozen_states = counter
    cache = TextStateCache(tmp_path, key_of(model))

    _, tokens = tokens_of(first_split, tokenizer)
    counts = model.attach_tokens(tokens, cache)
    used = PieceStates.used(tokens)
    assert counts == {"pieces": int((used > 0).sum()), "encoded": int((used > 0).sum())}
    assert counter.rows == counts["encoded"]  # each piece through the frozen layers once
    first_vectors = model.encode_tokens(tokens)

    counter.rows = 0
    again = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0, freeze_layers=1).eval()
    again.load_state_dict(model.state_dict())
    again.net.frozen_states = counter
    assert again.attach_tokens(tokens, TextStateCache(tmp_path, key_of(again)))["encoded"] == 0  # a rerun
    assert counter.rows == 0
    np.testing.assert_array_equal(again.encode_tokens(tokens), first_vectors)  # the same states, read back

    _, second = tokens_of(second_split, tokenizer)
    second_counts = model.attach_tokens(second, TextStateCache(tmp_path, key_of(model)))
    new_texts = {second.piece_texts[p] for p in np.flatnonzero(PieceStates.used(second))} - {
        tokens.piece_texts[p] for p in np.flatnonzero(used)
    }
    assert second_counts["encoded"] == len(new_texts) == counter.rows  # only what the first split lacked
    assert second_counts["pieces"] > second_counts["encoded"] > 0


def test_the_cache_key_changes_with_the_encoder_its_frozen_layers_the_tokenizer_and_the_token_limit():
    torch.manual_seed(0)
    base = TwoTowerModule(encoder_config=TINY_BERT, freeze_layers=1)
    torch.manual_seed(1)
    other_weights = TwoTowerModule(encoder_config=TINY_BERT, freeze_layers=1)
    same = TwoTowerModule(encoder_config=TINY_BERT, freeze_layers=1)
    same.load_state_dict(base.state_dict())
    more_layers = TwoTowerModule(encoder_config=TINY_BERT, freeze_layers=2)
    more_layers.load_state_dict(base.state_dict())
    key = key_of(base)
    assert key_of(same) == key
    assert key_of(other_weights) != key
    assert key_of(more_layers) != key
    assert key_of(base, max_length=64) != key
    assert key_of(base, tokenizer_digest="another") != key
    # the trainable top layer is not part of the key: training it does not invalidate the frozen states
    with torch.no_grad():
        same.net.encoder.encoder.layer[1].output.dense.weight.add_(1.0)
    assert key_of(same) == key


def test_a_changed_text_is_another_entry(tmp_path):
    cache = TextStateCache(tmp_path, "k")
    cache.save([text_hash("a review")], [np.ones((3, 4), dtype=np.float16)])
    assert set(cache.load([text_hash("a review"), text_hash("a review!")])) == {text_hash("a review")}
    np.testing.assert_array_equal(cache.load([text_hash("a review")])[text_hash("a review")], np.ones((3, 4)))


def test_an_interrupted_or_damaged_shard_is_ignored(tmp_path):
    cache = TextStateCache(tmp_path, "k")
    cache.save([text_hash("x")], [np.ones((2, 4), dtype=np.float16)])
    cache.save([text_hash("y")], [np.ones((5, 4), dtype=np.float16)])
    index = sorted((tmp_path / "k").glob("index-*.npz"))
    states = sorted((tmp_path / "k").glob("states-*.npy"))
    assert len(index) == len(states) == 2
    index[0].unlink()  # a write that stopped before its index: its states are never read
    np.save(states[1], np.ones((1, 4), dtype=np.float16))  # states that no longer match their index
    assert TextStateCache(tmp_path, "k").load([text_hash("x"), text_hash("y")]) == {}


def test_no_profile_assembled_from_pieces_holds_the_pairs_own_or_a_held_out_review(tokenizer):
    data = lm_reviews()
    held_out = data.sample(frac=0.25, random_state=0)
    train = data.drop(held_out.index)
    profiles, tokens = tokens_of(train, tokenizer, folds=3, max_length=512, max_reviews=50)
    held_texts = {
        f"s{u[1:]}-{i[1:]}. review by {u} of {i}" for u, i in zip(held_out.user_id, held_out.item_id, strict=True)
    }
    assert not any(t.split(" word")[0] in held_texts for t in tokens.piece_texts)
    for row in train.itertuples():
        fold = int(profiles.pair_fold.loc[(row.user_id, row.item_id)])
        own = f"review by {row.user_id} of {row.item_id} "
        for key in (("user", row.user_id, fold), ("item", row.item_id, fold)):
            if key not in tokens.keys:
                continue
            texts = [tokens.piece_texts[p] for p, _ in tokens.layout[tokens.keys[key]]]
            assert not any(own in t for t in texts), (key, texts)
        full = tokens.layout[tokens.keys[("user", row.user_id, FULL)]]
        assert any(own in tokens.piece_texts[p] for p, _ in full)  # prediction's profile holds every review


def test_training_loss_on_kept_states_equals_states_computed_afresh(tokenizer):
    _, tokens = tokens_of(lm_reviews(), tokenizer)
    torch.manual_seed(0)
    model = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0, freeze_layers=1, dropout=0.0)
    model.log = lambda *args, **kwargs: None
    batch = Collate(tokens)([[(0, len(tokens.ids) - 1, 4.0), (1, len(tokens.ids) - 2, 2.0)], [(2, 5, 5.0)]])
    model.attach_tokens(tokens, keep=False)  # uncached: every step encodes its pieces afresh (float32)
    afresh = model._common_step(batch, "train")
    model._pieces, _ = PieceStates.compute(model.net, tokens, None, dtype=torch.float32)  # kept, float32
    kept = model._common_step(batch, "train")
    assert float(kept) == pytest.approx(float(afresh), rel=1e-5)
    model.attach_tokens(tokens)  # kept as a run keeps them: float16
    assert float(model._common_step(batch, "train")) == pytest.approx(float(afresh), rel=1e-2)
