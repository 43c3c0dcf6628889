"""Distributions over randomization parameter vectors: what DR and DORAEMON hand to the env.

A distribution has ``names``, ``sample(n, rng)``, ``log_prob(x)``, ``entropy()`` and ``to_dict()``;
checkpoint specs store it as that dict, whose ``type`` names its class in
:data:`DISTRIBUTIONS` (``fixed``, ``uniform``, ``beta``; a new family registers itself with
:func:`register_distribution`). numpy and scipy only: the robot computer reads specs too.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from scipy import special

from simrl.core.registry import Registry


class RandomizationError(ValueError):
    """A randomization parameter, range or distribution is invalid."""


DISTRIBUTIONS: Registry[Callable[[dict], Any]] = Registry("distribution type")


def register_distribution(type_name: str) -> Callable[[type], type]:
    """Class decorator: ``to_dict()`` of the class carries ``"type": type_name`` and
    ``cls.from_dict`` rebuilds it."""
    def add(cls: type) -> type:
        DISTRIBUTIONS.register(type_name, cls)
        return cls
    return add


def distribution_from_dict(d: Any, where: str = "distribution") -> "Distribution":
    """Rebuilds a distribution saved with ``to_dict`` (checkpoint specs store them this way)."""
    if not isinstance(d, dict):
        raise RandomizationError(f"{where}: expected an object with a 'type', got {type(d).__name__}")
    kind = d.get("type")
    if kind not in DISTRIBUTIONS:
        raise RandomizationError(f"{where}: unknown distribution type {kind!r}; known: "
                                 f"{', '.join(DISTRIBUTIONS.names())}")
    try:
        return DISTRIBUTIONS.get(kind).from_dict(d)
    except (KeyError, TypeError) as exc:
        raise RandomizationError(f"{where}: {kind} distribution is missing or has a bad field ({exc})"
                                 ) from None


class Distribution(Protocol):
    """A distribution over parameter vectors: what DR and DORAEMON hand to the env."""

    names: tuple[str, ...]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...
    def log_prob(self, x: np.ndarray) -> np.ndarray: ...
    def entropy(self) -> float: ...


@register_distribution("fixed")
class Fixed:
    """Every world gets the same vector (``dr=none`` uses the nominal values)."""

    def __init__(self, names: Sequence[str], values: Sequence[float]):
        self.names = tuple(names)
        self.values = np.asarray(values, dtype=np.float64)
        if self.values.shape != (len(self.names),):
            raise RandomizationError(f"Fixed: {len(self.names)} names but values of shape {self.values.shape}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.tile(self.values, (n, 1))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        return np.where(np.all(x == self.values, axis=1), 0.0, -np.inf)

    def entropy(self) -> float:
        """A point mass has differential entropy minus infinity."""
        return -math.inf if len(self.names) else 0.0

    def to_dict(self) -> dict:
        return {"type": "fixed", "names": list(self.names), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Fixed":
        return cls(d["names"], d["values"])


@register_distribution("uniform")
class Uniform:
    """Independent uniform distribution per dimension; a dimension with low == high is fixed."""

    def __init__(self, names: Sequence[str], low: Sequence[float], high: Sequence[float]):
        self.names = tuple(names)
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != (len(self.names),) or self.high.shape != self.low.shape:
            raise RandomizationError("Uniform: names, low and high must have the same length")
        bad = [n for n, lo, hi in zip(self.names, self.low, self.high) if lo > hi]
        if bad:
            raise RandomizationError(f"Uniform: low > high for {bad}")
        self._width = self.high - self.low
        self._free = self._width > 0

    @classmethod
    def from_ranges(cls, ranges: Sequence[Any]) -> "Uniform":
        """From :class:`envs.randomization.ParamRange` objects (name, low, high)."""
        return cls([r.name for r in ranges], [r.low for r in ranges], [r.high for r in ranges])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.low + self._width * rng.random((n, len(self.names)))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        inside = np.all((x >= self.low) & (x <= self.high), axis=1)
        return np.where(inside, -np.log(self._width[self._free]).sum(), -np.inf)

    def entropy(self) -> float:
        return float(np.log(self._width[self._free]).sum())

    def to_dict(self) -> dict:
        return {"type": "uniform", "names": list(self.names),
                "low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Uniform":
        return cls(d["names"], d["low"], d["high"])


@register_distribution("beta")
class BetaDistribution:
    """Independent ``Beta(a_i, b_i)`` per dimension, rescaled from [0, 1] to ``[low_i, high_i]``.

    DORAEMON's family (Tiboni et al., ICLR 2024: one rescaled Beta per dynamics parameter).
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
