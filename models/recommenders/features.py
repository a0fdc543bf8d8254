"""Content features from item metadata and training reviews (never from held-out reviews).

Callers pass only training-fold text (``tasks.split.training_reviews``); these functions cannot tell, so
the contract is theirs: an item is described by many of its *training* reviews, and a held-out pair's own
review is never among them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_WORD = re.compile(r"[a-z0-9][a-z0-9'+-]*")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i in is it its of on or that the this to was were with you "
    "my me we our your they them their he she his her not no so if than then too very can will just".split()
)
METADATA_FIELDS = ("title", "brand", "category", "genres", "tags", "description")
DESCRIPTION_CHARS = 300  # the share of a description the LM's item profile reads (models.lm.profiles)


def words(text: str | None) -> list[str]:
    """Lower-cased word tokens without stopwords or pure numbers."""
    if not text:
        return []
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and not w.isdigit() and len(w) > 1]


def metadata_tokens(items: pd.DataFrame | None) -> dict[str, list[str]]:
    """Per item: feature names from its metadata, e.g. ``title:guitar``, ``genre:comedy``, ``brand:fender``.

    Titles are split into words; ``category``/``genres``/``tags`` are '|'-separated lists kept whole (tags
    also as words); a description's first :data:`DESCRIPTION_CHARS` characters as words (what the LM reads
    of it). Columns that are absent or empty contribute nothing.
    """
    out: dict[str, list[str]] = {}
    if items is None or len(items) == 0:
        return out
    present = [c for c in METADATA_FIELDS if c in items.columns]
    for row in items[["item_id", *present]].itertuples(index=False):
        tokens: list[str] = []
        # a missing field (None, NaN, blank) contributes nothing
        values = {k: v if isinstance(v, str) and v.strip() else None for k, v in zip(present, row[1:], strict=True)}
        values["item_id"] = row[0]
        tokens += [f"title:{w}" for w in words(values.get("title"))]
        if values.get("brand"):
            tokens.append(f"brand:{str(values['brand']).strip().lower()}")
        for field, prefix in (("category", "category"), ("genres", "genre")):
            if values.get(field):
                tokens += [f"{prefix}:{p.strip().lower()}" for p in str(values[field]).split("|") if p.strip()]
        if values.get("tags"):
            tokens += [f"tag:{w}" for w in words(str(values["tags"]).replace("|", " "))]
        if values.get("description"):
            tokens += [f"description:{w}" for w in words(values["description"][:DESCRIPTION_CHARS])]
        if tokens:
            out[str(values["item_id"])] = list(dict.fromkeys(tokens))
    return out


def review_terms(
    train: pd.DataFrame, key: str = "item_id", top_n: int = 10, max_features: int = 20_000
) -> dict[str, list[str]]:
    """Per ``key`` (item or user): its ``top_n`` TF-IDF terms over all its training reviews and summaries.

    One document per key (the concatenation of its training texts), so a term describes the key through
    many reviews. Keys without text get no terms.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    text_cols = [c for c in ("summary", "review_text") if c in train.columns]
    if not text_cols or len(train) == 0:
        return {}
    text = train[text_cols[0]].fillna("").astype(str)  # the columns joined by a space, as " ".join does
    for column in text_cols[1:]:
        text = text + " " + train[column].fillna("").astype(str)
    docs = text.groupby(train[key].astype(str)).agg(" ".join)
    docs = docs[docs.str.strip().str.len() > 0]
    if docs.empty:
        return {}
    vectorizer = TfidfVectorizer(
        tokenizer=words, lowercase=False, token_pattern=None, max_features=max_features, min_df=2, sublinear_tf=True
    )
    try:
        matrix = vectorizer.fit_transform(docs.to_numpy())
    except ValueError:  # empty vocabulary (every term in a single document)
        return {}
    vocab = np.asarray(vectorizer.get_feature_names_out())
    out = {}
    for row, doc_key in enumerate(docs.index):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if end == start:
            continue
        best = np.argsort(-matrix.data[start:end], kind="stable")[:top_n]
        out[doc_key] = [f"review:{t}" for t in vocab[matrix.indices[start:end][best]]]
    return out


def item_vectors(item_ids: np.ndarray, tokens: dict[str, list[str]], dims: int = 64, seed: int = 0) -> np.ndarray:
    """Dense item vectors (n_items, ≤ dims) from token bags, by TF-IDF and truncated SVD.

    Used for intra-list diversity. Items without tokens get a zero vector (cosine distance 1 to anything).
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [" ".join(tokens.get(str(i), [])) for i in item_ids]
    if not any(docs):
        return np.zeros((len(item_ids), 1))
    matrix = TfidfVectorizer(tokenizer=str.split, lowercase=False, token_pattern=None).fit_transform(docs)
    k = min(dims, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if k < 1:
        return matrix.toarray()
    return TruncatedSVD(n_components=k, random_state=seed).fit_transform(matrix)
