"""OOD detectors, ranking metrics and the VSDR combination (no simulation)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from simrl.validate.detectors import (GMM, KNN, GMMConfig, Mahalanobis, MahalanobisConfig,
                                      WorldModelDisagreement, kmeans, ledoit_wolf)
from simrl.validate.metrics import average_ranks, kendall, ranking_metrics, regret_at_1, spearman, top_k_hits
from simrl.validate.ood import OODConfig, calibrate
from simrl.validate.rollout import torch_threads
from simrl.validate.score import VSDRConfig, combine, rank_normalize, robust_z

D = 6
SHIFTS = (0.0, 0.5, 1.0, 2.0, 4.0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one torch thread is faster than two spinning on a shared machine."""
    with torch_threads(1):
        yield


def correlated_gaussian(n: int, shift: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.eye(D) + 0.4 * np.random.default_rng(99).standard_normal((D, D))
    return rng.standard_normal((n, D)) @ mix + shift


DETECTORS = {
    "mahalanobis": lambda: Mahalanobis(MahalanobisConfig(clusters=4)),
    "mahalanobis_per_cluster": lambda: Mahalanobis(MahalanobisConfig(clusters=4, shared_covariance=False)),
    "knn": lambda: KNN(),
    "gmm_full": lambda: GMM(GMMConfig(components=3)),
    "gmm_diag": lambda: GMM(GMMConfig(components=3, covariance="diag")),
}


@pytest.mark.parametrize("name", DETECTORS)
def test_detectors_order_shifted_gaussians(name):
    det = DETECTORS[name]().fit(correlated_gaussian(3000, 0.0, 0))
    means = [float(det.score(correlated_gaussian(1000, s, 1)).mean()) for s in SHIFTS]
    assert means == sorted(means) and means[-1] > means[0], means


class ShiftModel:
    """A stand-in world model: disagreement grows with the distance of obs from 0."""

    def disagreement(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.linalg.norm(obs, axis=1) + 0 * action.sum(1)


def test_world_model_disagreement_orders_and_checks():
    det = WorldModelDisagreement(ShiftModel(), obs_dim=D).fit(None)
    means = [float(det.score(np.concatenate([correlated_gaussian(500, s, 2), np.zeros((500, 2))], 1)).mean())
             for s in SHIFTS]
    assert means == sorted(means)
    with pytest.raises(TypeError, match="disagreement"):
        WorldModelDisagreement(object(), obs_dim=D)


def test_mahalanobis_closed_form_without_shrinkage():
    x, q = correlated_gaussian(500, 0.0, 3), correlated_gaussian(50, 1.0, 4)
    det = Mahalanobis(MahalanobisConfig(clusters=1, shrinkage=False)).fit(x)
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    expected = np.einsum("nd,nd->n", q - mean, np.linalg.solve(cov, (q - mean).T).T)
    np.testing.assert_allclose(det.score(q).numpy(), expected, rtol=1e-4)


def ledoit_wolf_reference(x: np.ndarray) -> np.ndarray:
    """Ledoit & Wolf (2004), written per sample: s = min(1, b2 / d2)."""
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    d2 = np.sum((s - mu * np.eye(d)) ** 2)
    b2 = sum(np.sum((np.outer(r, r) - s) ** 2) for r in xc) / n ** 2
    shrink = min(1.0, b2 / d2)
    return (1 - shrink) * s + shrink * mu * np.eye(d)


def test_mahalanobis_closed_form_with_ledoit_wolf_shrinkage():
    x, q = correlated_gaussian(40, 0.0, 5), correlated_gaussian(30, 0.5, 6)  # few samples: real shrinkage
    cov = ledoit_wolf_reference(x)
    _, shrink = ledoit_wolf(torch.as_tensor(x - x.mean(0)))
    assert 0.0 < shrink < 1.0
    det = Mahalanobis(MahalanobisConfig(clusters=1, shrinkage=True)).fit(x)
    diff = q - x.mean(0)
    expected = np.einsum("nd,nd->n", diff, np.linalg.solve(cov, diff.T).T)
    np.testing.assert_allclose(det.score(q).numpy(), expected, rtol=1e-4)


def test_kmeans_separates_blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    x = np.concatenate([c + rng.standard_normal((100, 2)) for c in centers])
    found, labels = kmeans(torch.as_tensor(x), 3)
    found = found.numpy()[np.argsort(found.numpy()[:, 0] + 2 * found.numpy()[:, 1])]
    np.testing.assert_allclose(found, centers[np.argsort(centers[:, 0] + 2 * centers[:, 1])], atol=0.5)
    assert len(set(labels[:100].tolist())) == 1


def test_calibration_is_scale_free():
    cfg = OODConfig()
    rng = np.random.default_rng(0)
    hold, real = torch.as_tensor(rng.standard_normal(5000)), torch.as_tensor(rng.standard_normal(2000) + 1)
    a, b = calibrate(real, hold, cfg), calibrate(7 * real + 3, 7 * hold + 3, cfg)
    assert a.mean == pytest.approx(b.mean) and a.q95 == pytest.approx(b.q95) and a.frac == b.frac
    in_dist = calibrate(torch.as_tensor(rng.standard_normal(20000)), hold, cfg)
    assert abs(in_dist.frac - 0.01) < 0.005 and abs(in_dist.mean) < 0.05


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_match_scipy(seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=12)
    score = truth + rng.normal(size=12)
    score[:3] = score[3]  # ties
    truth[5:7] = truth[7]
    assert spearman(score, truth) == pytest.approx(stats.spearmanr(score, truth).statistic)
    assert kendall(score, truth) == pytest.approx(stats.kendalltau(score, truth).statistic)
    np.testing.assert_array_equal(average_ranks(score), stats.rankdata(score))


def test_regret_and_top_k():
    truth = np.array([10.0, 50.0, 30.0, 40.0, 20.0])
    assert regret_at_1(truth, truth) == 0 and top_k_hits(truth, truth) == 3
    score = np.array([5.0, 1.0, 4.0, 3.0, 2.0])  # picks checkpoint 0 (true 10)
    assert regret_at_1(score, truth) == 40.0
    assert top_k_hits(score, truth) == 2  # {0, 2, 3} & {1, 3, 2}
    assert set(ranking_metrics(score, truth)) == {"spearman", "kendall", "regret@1", "top3_hits"}


def test_vsdr_combination_is_scale_free_and_robust():
    sim = np.array([100.0, 200.0, 300.0, 400.0, 250.0])
    ood = {"a": np.array([0.1, 0.2, 0.1, 5.0, 0.3]), "b": np.array([1.0, 2.0, 1.0, 40.0, 3.0])}
    scores = combine(sim, ood)
    rescaled = combine(10 * sim - 7, {k: 3 * v for k, v in ood.items()})
    for m in scores:
        np.testing.assert_allclose(scores[m], rescaled[m])
    assert np.argmax(scores["sim"]) == 3 and np.argmax(scores["vsdr"]) != 3  # OOD pulls down the best-in-sim
    np.testing.assert_allclose(combine(sim, ood, VSDRConfig(lam=0))["vsdr"], scores["sim"])
    assert np.abs(robust_z(np.array([0, 0, 0, 0, 1e9]))).max() <= 3
    np.testing.assert_allclose(rank_normalize(np.array([3.0, 1.0, 2.0])), [1.0, -1.0, 0.0])
