"""Out-of-distribution detectors on feature vectors: fit on reference (simulated) features,
then give every query row a score, higher = further from the reference.

* :class:`Mahalanobis`: k-means groups the reference; each group keeps its mean, and a
  Ledoit-Wolf shrunk covariance is estimated from the within-group residuals (shared by all
  groups, or one per group). Score: squared Mahalanobis distance to the nearest group mean.
* :class:`KNN`: distance to the k-th nearest reference row (a random subsample of the
  reference), with ``torch.cdist`` in query batches.
* :class:`GMM`: negative log-likelihood under a Gaussian mixture fitted by EM (full or
  diagonal covariances, initialized by k-means).
* :class:`WorldModelDisagreement`: any object with ``disagreement(obs, action)`` (the
  dropout world models of ``simrl.dream``); it scores raw observation/action pairs.

Every detector has ``fit(x)`` and ``score(x) -> (n,)``; inputs are (n, d) arrays or tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def _as64(x: Array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float64)


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding: (centers (k, d), labels (n,)). ``k`` is capped
    at the number of distinct rows; empty clusters are re-seeded at the farthest point."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    k = max(1, min(k, n))
    centers = x[torch.randint(n, (1,), generator=g)]
    d2 = torch.cdist(x, centers).square().squeeze(1)
    for _ in range(1, k):
        if float(d2.sum()) <= 0:
            break
        idx = torch.multinomial(d2 / d2.sum(), 1, generator=g)
        centers = torch.cat([centers, x[idx]])
        d2 = torch.minimum(d2, torch.cdist(x, x[idx]).square().squeeze(1))
    labels = torch.zeros(n, dtype=torch.long)
    for it in range(iters):
        dist = torch.cdist(x, centers)
        new = dist.argmin(1)
        if it and torch.equal(new, labels):
            break
        labels = new
        counts = torch.bincount(labels, minlength=len(centers)).to(x.dtype)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        empty = counts == 0
        centers = torch.where(empty[:, None], centers, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            far = dist.min(1).values.topk(int(empty.sum())).indices
            centers[empty] = x[far]
    return centers, labels


def ledoit_wolf(residuals: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrinkage of the covariance of zero-mean rows towards ``mu * I``
    (mu = mean eigenvalue): ``(1 - s) * S + s * mu * I`` with
    ``s = min(1, sum_k ||x_k x_k^T - S||_F^2 / n^2 / ||S - mu I||_F^2)``. Returns (cov, s)."""
    x = residuals
    n, d = x.shape
    s = x.T @ x / n
    mu = torch.trace(s) / d
    sq_norms = x.square().sum(1)
    b2 = (sq_norms.square().sum() / n - s.square().sum()) / n  # = sum_k ||x_k x_k^T - S||^2 / n^2
    d2 = (s - mu * torch.eye(d, dtype=x.dtype)).square().sum()
    shrink = 0.0 if float(d2) == 0 else float(torch.clamp(b2 / d2, 0.0, 1.0))
    return (1 - shrink) * s + shrink * mu * torch.eye(d, dtype=x.dtype), shrink


def _inverse_cholesky(cov: torch.Tensor, jitter: float = 1e-9) -> torch.Tensor:
    """W with W^T W = cov^-1, batched over leading dimensions (so ||W (x - m)||^2 is the
    squared Mahalanobis distance)."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype).expand_as(cov)
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        scale = torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1).clamp(min=1e-12)[..., None, None]
        chol = torch.linalg.cholesky(cov + jitter * scale * eye)
    return torch.linalg.solve_triangular(chol, eye, upper=False)


def _whitened_sq_dist(x: torch.Tensor, means: torch.Tensor, whiteners: torch.Tensor) -> torch.Tensor:
    """(n, k) squared distances ||W_j (x - m_j)||^2; one whitening when ``whiteners`` is (1, d, d)."""
    if len(whiteners) == 1:
        w = whiteners[0]
        return torch.cdist(x @ w.T, means @ w.T).square()
    return torch.einsum("knd,ked->kne", x[None] - means[:, None], whiteners).square().sum(-1).T


@dataclass
class MahalanobisConfig:
    clusters: int = 8            # k-means groups (1: a single Gaussian)
    shared_covariance: bool = True
    shrinkage: bool = True       # Ledoit-Wolf; False: the empirical covariance
    min_cluster: int = 0         # groups smaller than this use the shared covariance; 0 = 2 * dim


class Mahalanobis:
    """Squared Mahalanobis distance to the nearest k-means group (see the module docstring)."""

    def __init__(self, cfg: MahalanobisConfig = MahalanobisConfig(), seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.means: torch.Tensor | None = None
        self.whiteners: torch.Tensor | None = None  # (k, d, d) or (1, d, d) when shared

    def _cov(self, residuals: torch.Tensor) -> torch.Tensor:
        if self.cfg.shrinkage:
            return ledoit_wolf(residuals)[0]
        return residuals.T @ residuals / residuals.shape[0]

    def fit(self, x: Array) -> "Mahalanobis":
        x = _as64(x)
        means, labels = kmeans(x, self.cfg.clusters, seed=self.seed)
        residuals = x - means[labels]
        shared = self._cov(residuals)
        if self.cfg.shared_covariance:
            covs = shared[None]
        else:
            small = self.cfg.min_cluster or 2 * x.shape[1]
            covs = torch.stack([self._cov(residuals[labels == j]) if int((labels == j).sum()) >= small
                                else shared for j in range(len(means))])
        self.whiteners = _inverse_cholesky(covs)
        self.means = means
        return self

    def score(self, x: Array, batch: int = 16384) -> torch.Tensor:
        """Squared distance to the nearest group (computed in float32)."""
        means, whiteners = self.means.float(), self.whiteners.float()
        return torch.cat([_whitened_sq_dist(q, means, whiteners).min(1).values
                          for q in _as64(x).float().split(batch)]).double()


@dataclass
class KNNConfig:
    k: int = 5
    max_reference: int = 1024    # random subsample of the reference rows
    batch: int = 8192            # query rows per cdist call


class KNN:
    """Euclidean distance to the k-th nearest reference row."""

    def __init__(self, cfg: KNNConfig = KNNConfig(), seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.reference: torch.Tensor | None = None

    def fit(self, x: Array) -> "KNN":
        x = _as64(x).to(torch.float32)
        if len(x) > self.cfg.max_reference:
            g = torch.Generator().manual_seed(self.seed)
            x = x[torch.randperm(len(x), generator=g)[:self.cfg.max_reference]]
        self.reference = x
        return self

    def score(self, x: Array) -> torch.Tensor:
        x = _as64(x).to(torch.float32)
        k = min(self.cfg.k, len(self.reference))
        out = [torch.cdist(q, self.reference).topk(k, dim=1, largest=False).values[:, -1]
               for q in x.split(self.cfg.batch)]
        return torch.cat(out).to(torch.float64)


@dataclass
class GMMConfig:
    components: int = 4
    covariance: str = "full"     # full | diag
    iters: int = 30
    max_reference: int = 2048    # EM runs on a random subsample of this many rows
    reg: float = 1e-3            # added to covariance diagonals (x mean variance)
    tol: float = 1e-4            # stop when the mean log-likelihood improves less


class GMM:
    """Gaussian mixture fitted by EM; score = negative log-likelihood of each row."""

    def __init__(self, cfg: GMMConfig = GMMConfig(), seed: int = 0):
        if cfg.covariance not in ("full", "diag"):
            raise ValueError(f"GMM covariance must be 'full' or 'diag', got {cfg.covariance!r}")
        self.cfg, self.seed = cfg, seed
        self.log_weights = self.means = self.params = None

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(n, k) log of weight_j * N(x | mean_j, cov_j), in the dtype of ``x``."""
        means, params, log_w = (t.to(x.dtype) for t in (self.means, self.params, self.log_weights))
        if self.cfg.covariance == "diag":  # params: (k, d) variances
            maha = ((x[:, None, :] - means[None]).square() / params[None]).sum(-1)
            logdet = params.log().sum(1)
        else:  # params: (k, d, d) inverse Cholesky factors
            maha = _whitened_sq_dist(x, means, params)
            logdet = -2 * torch.diagonal(params, dim1=1, dim2=2).abs().log().sum(1)
        return log_w[None] - 0.5 * (maha + logdet[None] + x.shape[1] * math.log(2 * math.pi))

    def _m_step(self, x: torch.Tensor, resp: torch.Tensor) -> None:
        nk = resp.sum(0) + 1e-10
        self.log_weights = (nk / nk.sum()).log()
        self.means = resp.T @ x / nk[:, None]
        reg = self.cfg.reg * float(x.var(0).mean())
        if self.cfg.covariance == "diag":
            self.params = (resp.T @ x.square()) / nk[:, None] - self.means.square() + reg
        else:
            xc = x[None] - self.means[:, None]  # (k, n, d)
            covs = torch.einsum("knd,nk,kne->kde", xc, resp, xc) / nk[:, None, None]
            self.params = _inverse_cholesky(covs + reg * torch.eye(x.shape[1], dtype=x.dtype))

    def fit(self, x: Array) -> "GMM":
        x = _as64(x)
        g = torch.Generator().manual_seed(self.seed)
        if len(x) > self.cfg.max_reference:
            x = x[torch.randperm(len(x), generator=g)[:self.cfg.max_reference]]
        _, labels = kmeans(x, self.cfg.components, seed=self.seed)
        resp = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).to(x.dtype)
        self._m_step(x, resp)
        previous = -math.inf
        for _ in range(self.cfg.iters):
            lp = self._log_prob(x)
            total = torch.logsumexp(lp, 1)
            self._m_step(x, (lp - total[:, None]).exp())
            mean_ll = float(total.mean())
            if mean_ll - previous < self.cfg.tol:
                break
            previous = mean_ll
        return self

    def score(self, x: Array, batch: int = 16384) -> torch.Tensor:
        """Negative log-likelihood per row (computed in float32)."""
        return torch.cat([-torch.logsumexp(self._log_prob(q), 1)
                          for q in _as64(x).float().split(batch)]).double()


@runtime_checkable
class DisagreementModel(Protocol):
    """What the validator needs of a world-model ensemble: a per-step disagreement score for
    raw observations (n, obs_dim) and actions (n, act_dim), higher = less certain."""

    def disagreement(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray: ...


class WorldModelDisagreement:
    """Wraps a :class:`DisagreementModel` as a detector on ``[raw obs, action]`` rows (it is
    trained elsewhere: ``fit`` does nothing)."""

    uses_raw = True  # scores raw observation/action rows, not the policy features

    def __init__(self, model: DisagreementModel, obs_dim: int):
        if not isinstance(model, DisagreementModel):
            raise TypeError(f"{type(model).__name__} has no disagreement(obs, action) method")
        self.model, self.obs_dim = model, obs_dim

    def fit(self, x: Array) -> "WorldModelDisagreement":
        return self

    def score(self, x: Array) -> torch.Tensor:
        x = np.asarray(x, dtype=np.float64)
        out = np.asarray(self.model.disagreement(x[:, :self.obs_dim], x[:, self.obs_dim:]), dtype=np.float64)
        if out.shape != (len(x),):
            raise ValueError(f"disagreement() returned shape {out.shape}, expected ({len(x)},)")
        return torch.from_numpy(out)


Detector = Mahalanobis | KNN | GMM | WorldModelDisagreement
