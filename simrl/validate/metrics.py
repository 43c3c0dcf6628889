"""How well a score ranks checkpoints against their measured real returns ("truth")."""

from __future__ import annotations

import math

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (scipy's ``rankdata`` 'average')."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return ranks


def spearman(score: np.ndarray, truth: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of average ranks (nan if either is constant)."""
    a, b = average_ranks(score), average_ranks(truth)
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else math.nan


def kendall(score: np.ndarray, truth: np.ndarray) -> float:
    """Kendall's tau-b (tie-corrected; nan if either is constant)."""
    x, y = np.asarray(score, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n_x, n_y = float((dx != 0).sum()), float((dy != 0).sum())
    if n_x == 0 or n_y == 0:
        return math.nan
    return float((dx * dy).sum() / math.sqrt(n_x * n_y))


def regret_at_1(score: np.ndarray, truth: np.ndarray) -> float:
    """Best true return minus the true return of the top-scored checkpoint."""
    truth = np.asarray(truth, dtype=np.float64)
    return float(truth.max() - truth[int(np.argmax(score))])


def top_k_hits(score: np.ndarray, truth: np.ndarray, k: int = 3) -> int:
    """How many of the k top-scored checkpoints are among the k truly best."""
    k = min(k, len(truth))
    return len(set(np.argsort(-np.asarray(score), kind="stable")[:k])
               & set(np.argsort(-np.asarray(truth), kind="stable")[:k]))


def ranking_metrics(score: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"spearman": spearman(score, truth), "kendall": kendall(score, truth),
            "regret@1": regret_at_1(score, truth), "top3_hits": top_k_hits(score, truth, 3)}
