"""The LM's rating readout: closed-form ridge regressions on the fine-tuned vectors and the profiles' rating
statistics, fitted after training and applied at prediction (pure numpy: no torch here)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

READOUT_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
STAT_SHRINKS = (1.0, 3.0, 10.0, 30.0)  # n / (n + k): the shrinkage curves the readout weighs


def readout_features(u, v):
    return np.hstack([u, v, u * v]).astype(np.float64)


def stat_features(stats, mean: float):
    """Rating statistics of profiles, ``stats`` rows (rating sum, count), as readout features: the deviation of
    the profile's mean rating from the training mean shrunk by n / (n + k) for each k of ``STAT_SHRINKS`` (a
    ridge over them learns how far to trust n ratings), and log(1 + n)."""
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, 2)
    total, n = stats[:, 0], stats[:, 1]
    deviation = np.where(n > 0, total / np.maximum(n, 1) - mean, 0.0)
    return np.column_stack([deviation * n / (n + k) for k in STAT_SHRINKS] + [np.log1p(n)])


def pair_stat_features(user_stats, item_stats, mean: float):
    """The readout's first-stage features of (user, item) pairs: :func:`stat_features` of both profiles."""
    return np.hstack([stat_features(user_stats, mean), stat_features(item_stats, mean)])


def apply_readout(readout: dict, u, v, user_stats, item_stats):
    """Ratings from user/item vectors and profile rating statistics with a fitted readout (see
    :func:`fit_readout`)."""
    base = pair_stat_features(user_stats, item_stats, float(readout["mean"])) @ readout["stat_weights"]
    return base + float(readout["stat_bias"]) + readout_features(u, v) @ readout["weights"] + float(readout["bias"])


def fit_ridge(X, y, X_val, y_val, alphas) -> dict:
    """Ridge regression of ``y`` on standardised ``X``, its strength the one of ``alphas`` with the lowest MSE
    on (``X_val``, ``y_val``) (the first when there is no validation). Weights apply to unstandardised X."""
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-8
    Z = (X - mean) / scale
    target = y - y.mean()
    gram, moment = Z.T @ Z, Z.T @ target
    best = None
    for alpha in alphas:
        coef = scipy.linalg.solve(gram + alpha * np.eye(len(gram)), moment, assume_a="pos")
        weights, bias = coef / scale, y.mean() - (mean / scale) @ coef
        val = float(np.mean((X_val @ weights + bias - y_val) ** 2)) if len(y_val) else 0.0
        if best is None or val < best["val_mse"]:
            best = {"weights": weights, "bias": np.float64(bias), "alpha": np.float64(alpha), "val_mse": val}
    return best


def fit_readout(vectors, stats, pairs: dict, head_validation) -> dict:
    """Refit the rating readout on the fine-tuned, now frozen, vectors of the training pairs (their
    leave-fold-out profiles), each strength chosen on validation MSE, in two stages: a ridge regression on the
    profiles' rating statistics (:func:`stat_features` of user and item: the ratings a profile holds, read as
    numbers rather than as the "ratings: 5 4" of its text), then a ridge regression on [u, v, u⊙v] of what it
    leaves. One strength for both would shrink the ten statistics as hard as the 1,152 vector features.

    ``vectors``/``stats``: every profile's vector and rating (sum, count), rows addressed by ``pairs``, whose
    ``"train"`` and ``"validation"`` entries hold ``users``, ``items`` (profile rows) and ``ratings`` (the
    LM's pair datasets). ``head_validation``: the trained MLP head's validation predictions, for comparison.

    The MLP head is what trains the encoder, but 1-2 epochs of noisy ratings leave it short of convergence;
    the closed-form readout is converged by construction. Returns the weights, biases, strengths and
    validation MSEs (of the statistics alone, of the whole readout, of the vector stage when it was fitted and
    of the trained head). When the vector stage's validation MSE is above the statistics' alone, its weights
    are zero (``vector_stage`` False, ``alpha`` inf): the readout is the statistics stage."""
    data = {name: pairs[name] for name in ("train", "validation")}
    mean = float(data["train"].ratings.mean())
    S = {n: pair_stat_features(stats[d.users], stats[d.items], mean) for n, d in data.items()}
    X = {n: readout_features(vectors[d.users], vectors[d.items]) for n, d in data.items()}
    y = {n: d.ratings.astype(np.float64) for n, d in data.items()}
    head = np.asarray(head_validation)
    head_val_mse = float(np.mean((head - y["validation"]) ** 2)) if len(head) else float("nan")
    first = fit_ridge(S["train"], y["train"], S["validation"], y["validation"], READOUT_ALPHAS)
    base = {n: S[n] @ first["weights"] + first["bias"] for n in S}
    second = fit_ridge(
        X["train"], y["train"] - base["train"], X["validation"], y["validation"] - base["validation"], READOUT_ALPHAS
    )
    # Never use the vectors where validation says they hurt: the statistics alone are a stage the readout can
    # fall back to (cold items, whose vectors read metadata that training never paired with a rating, are
    # where this happens). Without validation there is nothing to judge by, and the vectors stay.
    vector_val_mse = second["val_mse"]
    vector_stage = not len(y["validation"]) or vector_val_mse <= first["val_mse"]
    if not vector_stage:
        zeros = np.zeros_like(second["weights"])
        second = {"weights": zeros, "bias": np.float64(0.0), "alpha": np.float64(np.inf), "val_mse": first["val_mse"]}
    return {
        **second,
        "vector_val_mse": np.float64(vector_val_mse),
        "vector_stage": np.bool_(vector_stage),
        "mean": np.float64(mean),
        "stat_weights": first["weights"],
        "stat_bias": first["bias"],
        "stat_alpha": first["alpha"],
        "stats_val_mse": np.float64(first["val_mse"]),
        "head_val_mse": np.float64(head_val_mse),
    }


def cross_fit_readout(vectors, stats, pairs: dict, folds: int, seed: int, strengths=None) -> np.ndarray:
    """Out-of-fold readout predictions of the training pairs (in ``pairs["train"]``'s order), for the fusion's
    stacking blender: the pairs get one of ``folds`` folds (seeded) and each fold is predicted by a two-stage
    readout (as :func:`fit_readout`) fitted on the other folds' pairs. The vectors stay those of the one
    fine-tuned encoder (no LM refit), which has seen every training pair's rating: these predictions are out
    of fold for the readout, not for the encoder.

    ``strengths``: the (statistics, vectors) ridge strengths, those validation chose for the readout of every
    training pair (``fit_readout``'s ``stat_alpha`` and ``alpha``); None chooses them so first. The vector
    stage standardises the features once over every training pair and gets each fold's centred Gram matrix
    by subtraction (the whole one less the fold's, less the mean's outer product): exact ridge fits at the
    cost of about one Gram matrix and one solve per fold, not one matrix and seven solves."""
    train = pairs["train"]
    if strengths is None:
        readout = fit_readout(vectors, stats, pairs, [])
        strengths = (float(readout["stat_alpha"]), float(readout["alpha"]))
    stat_alpha, alpha = strengths  # alpha inf: the readout fell back to the statistics (no vector stage)
    fold = np.random.default_rng(seed).integers(0, folds, len(train.ratings))
    y = np.asarray(train.ratings, dtype=np.float64)
    X = readout_features(vectors[train.users], vectors[train.items])
    centre, scale = X.mean(axis=0), X.std(axis=0) + 1e-8
    X -= centre
    X /= scale  # standardised in place: Z
    blocks = {f: np.flatnonzero(fold == f) for f in range(folds)}
    grams = {f: X[rows].T @ X[rows] for f, rows in blocks.items()}
    sums = {f: X[rows].sum(axis=0) for f, rows in blocks.items()}
    gram, total = sum(grams.values()), sum(sums.values())
    out = np.full(len(fold), np.nan)
    for f, held in blocks.items():
        rest = np.flatnonzero(fold != f)
        if not len(held) or not len(rest):
            continue
        u, i = train.users[rest], train.items[rest]
        mean = float(y[rest].mean())  # fit_readout's stage one: the statistics, then the vectors on the rest
        S = pair_stat_features(stats[u], stats[i], mean)
        first = fit_ridge(S, y[rest], S[:0], y[:0], (stat_alpha,))
        residual = y[rest] - (S @ first["weights"] + first["bias"])
        base = pair_stat_features(stats[train.users[held]], stats[train.items[held]], mean) @ first["weights"]
        if not np.isfinite(alpha):
            out[held] = base + first["bias"]
            continue
        n, z_sum = len(rest), total - sums[f]
        centred = gram - grams[f] - np.outer(z_sum, z_sum) / n
        moment = X[rest].T @ residual - z_sum * residual.mean()
        centred[np.diag_indices_from(centred)] += alpha
        coef = scipy.linalg.solve(centred, moment, assume_a="pos")
        # Z = (x − centre) / scale; the fit is residual ≈ mean(residual) + (z − z̄)·coef
        out[held] = base + first["bias"] + residual.mean() + (X[held] - z_sum / n) @ coef
    return out
