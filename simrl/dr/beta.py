"""Independent, rescaled Beta distributions: the family DORAEMON optimizes over.

Each dimension ``i`` is ``x_i = low_i + (high_i - low_i) * z_i`` with ``z_i ~ Beta(a_i, b_i)``
(Tiboni et al., "Domain Randomization via Entropy Maximization", ICLR 2024, use one univariate
Beta per dynamics parameter, rescaled to its search range; so does their reference code).

Closed forms used below (``B`` the Beta function, ``psi`` the digamma function):

* log-density  ``log p(x) = sum_i (a_i-1) log z_i + (b_i-1) log(1-z_i) - log B(a_i,b_i) - log w_i``
  with ``w_i = high_i - low_i``;
* entropy      ``H = sum_i log B(a,b) - (a-1) psi(a) - (b-1) psi(b) + (a+b-2) psi(a+b) + log w_i``
  (an affine map ``x = low + w z`` adds ``log w`` to the differential entropy);
* KL           ``KL(p||q) = sum_i log B(a_q,b_q) - log B(a_p,b_p) + (a_p-a_q) psi(a_p)
  + (b_p-b_q) psi(b_p) + (a_q-a_p+b_q-b_p) psi(a_p+b_p)`` (the rescaling cancels, so both
  distributions must share the same support).

A dimension with ``low == high`` is fixed: it always samples ``low``, contributes nothing to the
entropy or the KL (as in :class:`envs.randomization.Uniform`) and its ``a``/``b`` are inert.

The numpy methods serve sampling, checkpoints and diagnostics; :func:`beta_log_prob_torch`,
:func:`beta_entropy_torch` and :func:`beta_kl_torch` are the same formulas as functions of
``(a, b)`` tensors, so the DORAEMON optimizer gets exact autograd gradients. torch is imported
lazily so that env workers that only sample never load it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from scipy import special

if TYPE_CHECKING:  # pragma: no cover
    import torch


class BetaDistribution:
    """Independent ``Beta(a_i, b_i)`` per dimension, rescaled from [0, 1] to ``[low_i, high_i]``.

    Satisfies the :class:`envs.randomization.Distribution` protocol.
    """

    def __init__(self, names: Sequence[str], low: Sequence[float], high: Sequence[float],
                 a: Sequence[float], b: Sequence[float]):
        self.names = tuple(names)
        d = len(self.names)
        self.low = np.asarray(low, dtype=np.float64).reshape(-1).copy()
        self.high = np.asarray(high, dtype=np.float64).reshape(-1).copy()
        self.a = np.asarray(a, dtype=np.float64).reshape(-1).copy()
        self.b = np.asarray(b, dtype=np.float64).reshape(-1).copy()
        for what, arr in (("low", self.low), ("high", self.high), ("a", self.a), ("b", self.b)):
            if arr.shape != (d,):
                raise ValueError(f"BetaDistribution: {d} names but {what} has shape {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"BetaDistribution: {what} must be finite, got {arr.tolist()}")
        if len(set(self.names)) != d:
            raise ValueError(f"BetaDistribution: duplicate names in {self.names}")
        bad = [n for n, lo, hi in zip(self.names, self.low, self.high) if lo > hi]
        if bad:
            raise ValueError(f"BetaDistribution: low > high for {bad}")
        if (self.a <= 0).any() or (self.b <= 0).any():
            raise ValueError(f"BetaDistribution: a and b must be > 0, got a={self.a.tolist()}, "
                             f"b={self.b.tolist()}")
        self.width = self.high - self.low
        self.free = self.width > 0  # dimensions that are actually random

    # ----------------------------------------------------------------------------- constructors
    @classmethod
    def narrow_around(cls, names: Sequence[str], low: Sequence[float], high: Sequence[float],
                      nominal: Sequence[float], concentration: float = 100.0) -> "BetaDistribution":
        """A narrow starting distribution centred on the nominal values (DORAEMON's phi_0).

        Per dimension, with the standardized mean ``m = (nominal - low) / (high - low)`` and
        ``c = concentration = a + b``: ``a = clip(m c, 1, c - 1)`` and ``b = c - a``, i.e. ``m`` is
        clamped to ``[1/c, 1 - 1/c]``.
        The clamp keeps ``a, b >= 1`` so a nominal on a boundary still gives a valid, finite
        density whose mode sits at the nominal value and whose mean is just inside the range.
        The standardized std is ``sqrt(m (1 - m) / (c + 1))``: about 0.05 of the range at the
        centre for the default ``c = 100``.
        """
        if not concentration > 2.0:
            raise ValueError(f"narrow_around: concentration must be > 2, got {concentration}")
        low_a = np.asarray(low, dtype=np.float64)
        high_a = np.asarray(high, dtype=np.float64)
        nom = np.asarray(nominal, dtype=np.float64)
        if nom.shape != low_a.shape:
            raise ValueError(f"narrow_around: nominal has shape {nom.shape}, low {low_a.shape}")
        if ((nom < low_a) | (nom > high_a)).any():
            raise ValueError(f"narrow_around: nominal {nom.tolist()} outside "
                             f"[{low_a.tolist()}, {high_a.tolist()}]")
        width = high_a - low_a
        m = np.divide(nom - low_a, width, out=np.full_like(width, 0.5), where=width > 0)
        # Clamp in (a, b) space so that a nominal on a boundary gives a == 1 exactly (a density
        # finite and maximal at the boundary) rather than 1 -/+ rounding error (infinite/zero).
        a = np.clip(m * concentration, 1.0, concentration - 1.0)
        return cls(names, low_a, high_a, a, concentration - a)

    def with_params(self, a: Sequence[float], b: Sequence[float]) -> "BetaDistribution":
        """Same names and support, new Beta parameters."""
        return BetaDistribution(self.names, self.low, self.high, a, b)

    # ----------------------------------------------------------------------------- protocol
    def standardize(self, x: np.ndarray) -> np.ndarray:
        """Maps ``x`` (n, d) to [0, 1]^d coordinates; fixed dimensions map to 0.5."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        safe = np.where(self.free, self.width, 1.0)
        return np.where(self.free, (x - self.low) / safe, 0.5)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` parameter vectors, shape (n, d), float64, always inside ``[low, high]``."""
        z = rng.beta(self.a, self.b, size=(int(n), len(self.names)))
        return np.clip(self.low + self.width * z, self.low, self.high)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Log-density of each row of ``x`` (n, d) -> (n,).

        Outside the support -> ``-inf``. On the boundary the Beta density is finite or
        infinite depending on ``a``/``b`` (``z = 0``: ``-inf`` if ``a > 1``, finite if ``a == 1``,
        ``+inf`` if ``a < 1``); ``xlogy``/``xlog1py`` give these limits without ``0 * -inf = nan``.
        A fixed dimension contributes 0 where ``x == low`` and ``-inf`` elsewhere.
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != len(self.names):
            raise ValueError(f"log_prob: expected (n, {len(self.names)}), got {x.shape}")
        inside = np.all((x >= self.low) & (x <= self.high), axis=1)
        z = np.clip(self.standardize(x), 0.0, 1.0)
        lp = (special.xlogy(self.a - 1.0, z) + special.xlog1py(self.b - 1.0, -z)
              - special.betaln(self.a, self.b) - np.log(np.where(self.free, self.width, 1.0)))
        lp = np.where(self.free, lp, 0.0).sum(axis=1)
        lp = np.where(inside, lp, -np.inf)
        return np.where(np.isnan(lp), -np.inf, lp)  # nan only for x == nan

    def entropy(self) -> float:
        """Differential entropy: sum over free dims of Beta entropy + ``log(high - low)``."""
        h = _beta_entropy_np(self.a, self.b) + np.log(np.where(self.free, self.width, 1.0))
        return float(np.where(self.free, h, 0.0).sum())

    def kl(self, other: "BetaDistribution") -> float:
        """``KL(self || other)`` in closed form; both must have the same names and support."""
        self._check_same_support(other)
        kl = _beta_kl_np(self.a, self.b, other.a, other.b)
        return float(np.where(self.free, kl, 0.0).sum())

    def mean(self) -> np.ndarray:
        return self.low + self.width * self.a / (self.a + self.b)

    def std(self) -> np.ndarray:
        s = self.a + self.b
        return self.width * np.sqrt(self.a * self.b / (s * s * (s + 1.0)))

    def pdf_1d(self, i: int, x: np.ndarray) -> np.ndarray:
        """Marginal density of dimension ``i`` at points ``x`` (1-D), for plots."""
        x = np.asarray(x, dtype=np.float64)
        if not self.free[i]:
            raise ValueError(f"pdf_1d: dimension {self.names[i]} is fixed")
        z = (x - self.low[i]) / self.width[i]
        inside = (z >= 0) & (z <= 1)
        zc = np.clip(z, 0.0, 1.0)
        lp = (special.xlogy(self.a[i] - 1, zc) + special.xlog1py(self.b[i] - 1, -zc)
              - special.betaln(self.a[i], self.b[i]) - math.log(self.width[i]))
        return np.where(inside, np.exp(lp), 0.0)

    # ----------------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        return {"type": "beta", "names": list(self.names), "low": self.low.tolist(),
                "high": self.high.tolist(), "a": self.a.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BetaDistribution":
        if d.get("type") != "beta":
            raise ValueError(f"BetaDistribution.from_dict: type must be 'beta', got {d.get('type')!r}")
        return cls(d["names"], d["low"], d["high"], d["a"], d["b"])

    def _check_same_support(self, other: "BetaDistribution") -> None:
        if (self.names != other.names or not np.array_equal(self.low, other.low)
                or not np.array_equal(self.high, other.high)):
            raise ValueError("KL between Beta distributions needs the same names and [low, high]")

    def __repr__(self) -> str:
        dims = ", ".join(f"{n}: Beta({a:.4g}, {b:.4g}) on [{lo:.4g}, {hi:.4g}]"
                         for n, a, b, lo, hi in zip(self.names, self.a, self.b, self.low, self.high))
        return f"BetaDistribution({dims})"


# --------------------------------------------------------------------------------- numpy forms
def _beta_entropy_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Entropy of Beta(a, b) on [0, 1], per element."""
    return (special.betaln(a, b) - (a - 1) * special.digamma(a) - (b - 1) * special.digamma(b)
            + (a + b - 2) * special.digamma(a + b))


def _beta_kl_np(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """KL(Beta(a1, b1) || Beta(a2, b2)), per element."""
    return (special.betaln(a2, b2) - special.betaln(a1, b1) + (a1 - a2) * special.digamma(a1)
            + (b1 - b2) * special.digamma(b1) + (a2 - a1 + b2 - b1) * special.digamma(a1 + b1))


# --------------------------------------------------------------------------------- torch forms
def _betaln_torch(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    import torch
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def beta_log_prob_torch(z: "torch.Tensor", a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """Standardized log-density ``sum_i log Beta(z_i; a_i, b_i)`` for ``z`` (n, k) in [0, 1].

    The ``-log(high - low)`` term is omitted: it does not depend on ``(a, b)`` and cancels in
    importance weights. Boundary points are handled with ``xlogy``/``xlog1py`` (no nan).
    """
    import torch
    lp = (torch.special.xlogy(a - 1.0, z) + torch.special.xlog1py(b - 1.0, -z)
          - _betaln_torch(a, b))
    return lp.sum(dim=-1)


def beta_entropy_torch(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """Entropy of Beta(a, b) on [0, 1], per element (add ``log(high - low)`` for the rescaled one)."""
    import torch
    return (_betaln_torch(a, b) - (a - 1) * torch.digamma(a) - (b - 1) * torch.digamma(b)
            + (a + b - 2) * torch.digamma(a + b))


def beta_kl_torch(a1: "torch.Tensor", b1: "torch.Tensor", a2: "torch.Tensor",
                  b2: "torch.Tensor") -> "torch.Tensor":
    """KL(Beta(a1, b1) || Beta(a2, b2)), per element; differentiable in all four arguments."""
    import torch
    return (_betaln_torch(a2, b2) - _betaln_torch(a1, b1) + (a1 - a2) * torch.digamma(a1)
            + (b1 - b2) * torch.digamma(b1) + (a2 - a1 + b2 - b1) * torch.digamma(a1 + b1))
