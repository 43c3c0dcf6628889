"""VSDR ("Validate on Sim, Detect on Real"): one score per checkpoint from its simulation
score and its OOD scores on real data, robust to their scales.

Across the pool of checkpoints each raw score x (one value per checkpoint) is normalized:

* ``robust_z`` (default): ``z(x) = clip((x - median(x)) / (1.4826 * MAD(x)), -3, 3)``, MAD the
  median absolute deviation (the standard deviation when MAD is 0; all zeros when every
  checkpoint has the same value): unitless, and one outlier cannot dominate;
* ``rank``: ranks mapped linearly onto [-1, 1] (ties share their mean rank).

Then, with ood_d a checkpoint's calibrated log score of detector d (``VSDRConfig.aggregate``,
default the mean calibrated step score, see :mod:`simrl.validate.ood`), D the detectors used
and lambda = ``VSDRConfig.lam`` (default 1)::

    VSDR = z(sim) - lambda * mean_{d in D} z(ood_d)

Higher is better. The baselines are ``sim`` (z(sim) alone) and, for every detector d,
``ood:d`` (-z(ood_d): less OOD is better); ``vsdr:d`` is VSDR with d alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from simrl.validate.metrics import average_ranks
from simrl.validate.ood import AGGREGATES

NORMALIZATIONS = ("robust_z", "rank")


@dataclass
class VSDRConfig:
    lam: float = 1.0               # weight of the OOD term
    aggregate: str = "mean"        # which OOD log score enters: mean | q95 | frac
    normalize: str = "robust_z"    # robust_z | rank
    clip: float = 3.0              # robust_z is clipped to +-clip

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.lam < 0:
            raise ValueError("lam must be >= 0")


def robust_z(x: np.ndarray, clip: float = 3.0) -> np.ndarray:
    """Median/MAD standardization across the pool, clipped to +-clip."""
    x = np.asarray(x, dtype=np.float64)
    center = np.median(x)
    scale = 1.4826 * np.median(np.abs(x - center))
    if scale <= 0:
        scale = x.std()
    if scale <= 0:
        return np.zeros_like(x)
    return np.clip((x - center) / scale, -clip, clip)


def rank_normalize(x: np.ndarray) -> np.ndarray:
    """Average ranks mapped onto [-1, 1] (0 for a pool of one)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return np.zeros_like(x)
    return 2 * (average_ranks(x) - 1) / (len(x) - 1) - 1


def normalize(x: np.ndarray, cfg: VSDRConfig) -> np.ndarray:
    return robust_z(x, cfg.clip) if cfg.normalize == "robust_z" else rank_normalize(x)


def combine(sim: np.ndarray, ood: Mapping[str, np.ndarray],
            cfg: VSDRConfig = VSDRConfig()) -> dict[str, np.ndarray]:
    """Scores of every method over the pool (higher = better): ``vsdr``, ``sim``, ``ood:d`` and
    ``vsdr:d`` for each detector d in ``ood`` (raw OOD values, higher = more OOD)."""
    if not ood:
        raise ValueError("VSDR needs at least one OOD score")
    z_sim = normalize(sim, cfg)
    z_ood = {d: normalize(v, cfg) for d, v in ood.items()}
    out = {"vsdr": z_sim - cfg.lam * np.mean(list(z_ood.values()), axis=0), "sim": z_sim}
    for d, z in z_ood.items():
        out[f"ood:{d}"] = -z
        out[f"vsdr:{d}"] = z_sim - cfg.lam * z
    return out
