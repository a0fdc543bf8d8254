"""Metrics, as pure vectorised functions returning one value per user (aggregate with ``mean`` or a ratio).

Ranking metrics are computed over the full catalogue, with each user's excluded items (their training
items) removed from both the ranking and the candidates, and binary relevance (the user's held-out items).
Definitions, for a user with relevant set R, top-K list L (best first), hits h_j = [L_j ∈ R]:

- precision@K = Σ h_j / K;   recall@K = Σ h_j / |R|;   hit rate@K = [Σ h_j > 0]
- NDCG@K = Σ h_j / log2(j + 1)  /  Σ_{j ≤ min(|R|, K)} 1 / log2(j + 1)          (j from 1)
- MAP@K (average precision) = Σ_j h_j · precision@j  /  min(|R|, K)
- MRR@K = 1 / (rank of the first hit), 0 when no hit in the top K
- AUC = P(score of a relevant item > score of a non-relevant candidate), ties counting one half

Ties never decide: every ranking metric is its expected value over a uniformly random order of tied
candidates (closed form per tie group, :func:`tie_expectations`), so a model that scores every candidate the
same gets exactly what a random list gets, whatever the items' order in the catalogue.

Beyond accuracy: catalogue coverage (share of items recommended to anyone), intra-list diversity (mean
pairwise cosine distance of a list's item vectors), novelty (mean self-information −log2 p(i) of the
recommended items, p(i) = share of training users who interacted with i, smoothed), popularity bias
(average recommended item popularity, as that share).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln
from scipy.stats import rankdata

from models.base import mask_seen, top_k

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "auc")
SCORE_BUDGET = 1 << 24  # values per user block held at once while ranking (16M floats, 128 MB)


def user_blocks(n_users: int, n_items: int) -> list[slice]:
    """Row slices of users such that a block's scores over ``n_items`` stay within ``SCORE_BUDGET``: score a
    block, rank it, let it go, so that ranking a whole catalogue for any number of users holds a bounded
    amount of memory."""
    block = max(1, SCORE_BUDGET // max(n_items, 1))
    return [slice(start, min(start + block, n_users)) for start in range(0, n_users, block)]


def squared_and_absolute_errors(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return err**2, np.abs(err)


def rating_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MSE and MAE over all pairs."""
    se, ae = squared_and_absolute_errors(y_true, y_pred)
    return {"rmse": float(np.sqrt(se.mean())), "mse": float(se.mean()), "mae": float(ae.mean())}


def ranking_metrics(
    scores: np.ndarray,
    relevant: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    k: int,
    metrics: tuple[str, ...] = RANKING_METRICS,
) -> dict[str, np.ndarray]:
    """Per-user ranking metrics at ``k``.

    Parameters
    ----------
    scores : (n_users, n_items) float array; higher ranks first.
    relevant : (n_users, n_items) sparse; nonzero = held-out relevant item. Every row needs one.
    exclude : (n_users, n_items) sparse or None; nonzero = not a candidate (the user's training items).
    k : cut-off.
    metrics : the names (of ``RANKING_METRICS``) to compute; without ``"auc"`` the full ranking of every
        candidate is skipped (most of the time on a large catalogue; tuning calls :func:`ndcg_at_k`).

    Returns
    -------
    dict of metric name -> (n_users,) float64 array, for each name of ``metrics``.
    """
    unknown = sorted(set(metrics) - set(RANKING_METRICS))
    if unknown:
        raise ValueError(f"unknown ranking metrics {unknown}; known: {', '.join(RANKING_METRICS)}")
    relevant = sp.csr_matrix(relevant)
    exclude = sp.csr_matrix(scores.shape, dtype=np.float32) if exclude is None else sp.csr_matrix(exclude)
    out = {name: [] for name in metrics}
    for rows in user_blocks(*scores.shape):  # bounds the per-block temporaries (masks, rankings)
        values = _ranking_chunk(scores[rows], relevant[rows], exclude[rows], k, auc="auc" in metrics)
        for name in metrics:
            out[name].append(values[name])
    return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in out.items()}


def ndcg_at_k(scores: np.ndarray, relevant: sp.csr_matrix, exclude: sp.csr_matrix | None, k: int) -> np.ndarray:
    """Per-user NDCG@k alone (what tuning judges by): :func:`ranking_metrics` without the AUC's ranking of
    every candidate."""
    return ranking_metrics(scores, relevant, exclude, k, ("ndcg",))["ndcg"]


def _ranking_chunk(scores, relevant, exclude, k, auc: bool = True) -> dict[str, np.ndarray]:
    allowed = np.ones(scores.shape, dtype=bool)
    allowed[exclude.nonzero()] = False
    rel = relevant.toarray() > 0
    rel &= allowed
    n_rel = rel.sum(axis=1)
    if (n_rel == 0).any():
        raise ValueError("every evaluated user needs at least one relevant candidate item")
    masked = mask_seen(scores, exclude)
    k = min(k, scores.shape[1])
    expected = tie_expectations(masked, rel, allowed, k)
    p, discounts = expected["p"], 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k) - 1]
    expected_hits = p.sum(axis=1)
    return {
        "precision": expected_hits / k,
        "recall": expected_hits / n_rel,
        "ndcg": (p * discounts).sum(axis=1) / ideal,
        "map": (expected["hit_times_hits_so_far"] / np.arange(1, k + 1)).sum(axis=1) / np.minimum(n_rel, k),
        "hit_rate": 1.0 - expected["none_so_far"][:, -1],
        "mrr": ((expected["none_before"] - expected["none_so_far"]) / np.arange(1, k + 1)).sum(axis=1),
        "auc": _auc(masked, rel, allowed, n_rel) if auc else None,
    }


def _auc(masked: np.ndarray, rel: np.ndarray, allowed: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """AUC from ranks among candidates: excluded items are -inf, so they take the lowest ranks."""
    n_excluded = (~allowed).sum(axis=1)
    ranks = rankdata(masked, axis=1, method="average") - n_excluded[:, None]
    n_neg = allowed.sum(axis=1) - n_rel
    pos_rank_sum = np.where(rel, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos_rank_sum - n_rel * (n_rel + 1) / 2) / (n_rel * n_neg)
    return np.where(n_neg > 0, auc, np.nan)


def tie_expectations(masked: np.ndarray, rel: np.ndarray, allowed: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Closed-form expectations over a uniformly random order of tied candidates, per user and top-k slot.

    Tied items form groups of equal score; a group of ``g`` candidates holding ``r`` relevant ones, starting
    after ``a`` better-scored candidates, fills slots a+1..a+g in a uniformly random order, independently of
    the other groups. For slot j in such a group, with ``c`` earlier slots of the same group:

    - P(hit at j) = r / g                       (every slot of the group is equally likely to be relevant)
    - E[h_j · Σ_{i≤j} h_i] = p_j + p_j (Σ_{i<j} p_i − c p_j) + c · r(r−1) / (g(g−1))   (for MAP)
    - P(no hit in slots 1..j) = [no relevant item in earlier groups] · C(g−r, c+1) / C(g, c+1)
      (for the hit rate, 1 − P(no hit in 1..k), and MRR, Σ_j (P(none before j) − P(none up to j)) / j)

    A group that crosses the cut-off is counted over all its candidates, in the catalogue beyond slot k too,
    so the expectation never depends on item order. Slots past the last candidate hold nothing.

    Returns arrays of shape (n_users, k): ``p``, ``hit_times_hits_so_far``, ``none_so_far`` and
    ``none_before``.
    """
    n, m = masked.shape
    top = top_k(masked, k)
    values = np.take_along_axis(masked, top, axis=1)
    boundary = values[:, -1:]  # the k-th best score: its group may extend past slot k
    # groups entirely inside the top k: candidates and relevant items counted within the top-k slice
    same = values[:, :, None] == values[:, None, :]
    top_allowed = np.take_along_axis(allowed, top, axis=1)
    top_rel = np.take_along_axis(rel, top, axis=1)
    g = (same & top_allowed[:, None, :]).sum(axis=2).astype(np.float64)
    r = (same & top_rel[:, None, :]).sum(axis=2).astype(np.float64)
    start = (values[:, None, :] > values[:, :, None]).sum(axis=2)  # slots with a strictly better score
    # the boundary group, counted over the whole row
    at_boundary = values == boundary
    boundary_start = (masked > boundary).sum(axis=1, keepdims=True)
    g = np.where(at_boundary, (allowed & (masked == boundary)).sum(axis=1, keepdims=True), g)
    r = np.where(at_boundary, (rel & (masked == boundary)).sum(axis=1, keepdims=True), r)
    start = np.where(at_boundary, boundary_start, start)
    slot = np.arange(k)[None, :]  # 0-based
    earlier = slot - start  # earlier slots of the same group
    filled = earlier < g  # a candidate occupies this slot
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(filled, r / g, 0.0)
        pair = np.where(filled & (g > 1), r * (r - 1) / (g * (g - 1)), 0.0)
    before = np.cumsum(p, axis=1) - p  # Σ_{i<j} p_i
    hit_times_hits = p + p * (before - earlier * p) + earlier * pair
    # P(no hit among this group's first c+1 slots): C(g−r, c+1) / C(g, c+1) via log-gamma, 0 when c+1 > g−r
    taken = earlier + 1.0
    free = g - r
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ratio = (
            gammaln(free + 1) - gammaln(np.maximum(free - taken, 0) + 1) - gammaln(g + 1) + gammaln(g - taken + 1)
        )
        none_in_group = np.where(taken <= free, np.exp(log_ratio), 0.0)
    # no relevant item in the groups that start before this one: all their slots lie before it in the top k
    cum_p = np.concatenate([np.zeros((n, 1)), np.cumsum(p, axis=1)], axis=1)
    clear_before_group = np.take_along_axis(cum_p, np.minimum(start, k), axis=1) <= 0
    none_so_far = np.where(clear_before_group, none_in_group, 0.0)
    # an empty slot (no candidate left) changes nothing
    for j in range(k):
        if not filled[:, j].all():
            prev = none_so_far[:, j - 1] if j else np.ones(n)
            none_so_far[:, j] = np.where(filled[:, j], none_so_far[:, j], prev)
    none_before = np.concatenate([np.ones((n, 1)), none_so_far[:, :-1]], axis=1)
    return {"p": p, "hit_times_hits_so_far": hit_times_hits, "none_so_far": none_so_far, "none_before": none_before}


def constant_scores(scores: np.ndarray, exclude: sp.csr_matrix | None) -> np.ndarray:
    """Per user: True when every candidate (non-excluded item) has the same score, i.e. the model does not
    rank them at all (popularity or bias models among cold items, for instance)."""
    masked = mask_seen(scores, sp.csr_matrix(scores.shape) if exclude is None else exclude)
    finite = np.where(np.isfinite(masked), masked, np.nan)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(finite, axis=1) - np.nanmin(finite, axis=1)
    return ~(spread > 0)


def catalogue_coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list. ``top``: (n_users, k) item positions."""
    return float(np.unique(top).size / n_items)


def intra_list_diversity(top: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Per list: mean pairwise cosine distance (1 − cosine similarity) of its items' vectors."""
    norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
    unit = np.divide(item_vectors, norms, out=np.zeros_like(item_vectors, dtype=np.float64), where=norms > 0)
    k = top.shape[1]
    if k < 2:
        return np.zeros(top.shape[0])
    out = np.empty(top.shape[0])
    for rows in user_blocks(top.shape[0], k * unit.shape[1]):  # a block's (users, k, dim) vectors in budget
        v = unit[top[rows]]
        gram = np.einsum("nkd,njd->nkj", v, v)
        off_diagonal = gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2)
        out[rows] = 1.0 - off_diagonal / (k * (k - 1))
    return out


def item_popularity(train_counts: np.ndarray, n_users: int) -> np.ndarray:
    """Smoothed share of training users who interacted with each item: (count + 1) / (n_users + 1)."""
    return (np.asarray(train_counts, dtype=np.float64) + 1.0) / (n_users + 1.0)


def novelty(top: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Per list: mean self-information −log2 p(i) of its items (higher = less popular, more novel)."""
    return (-np.log2(popularity[top])).mean(axis=1)


def popularity_bias(top: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Per list: average popularity p(i) of its items (ARP; higher = more popularity-biased)."""
    return popularity[top].mean(axis=1)
