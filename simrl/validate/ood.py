"""OOD scores of one checkpoint on real data.

1. Reference: the checkpoint's own deterministic rollouts under its training randomization
   (``spec["dr"]``), split by world into a fit set and a held-out calibration set.
2. Features (:mod:`simrl.validate.features`) of reference and real steps, standardized with
   the fit set's mean and standard deviation.
3. Each detector is fitted on the fit set and scores every step. Step scores are calibrated
   on the held-out simulated steps: ``c = (s - median_sim) / (q_sim - median_sim)`` with
   ``q_sim`` the ``calibration_quantile`` (0.99) of held-out scores, so ``c`` is 0 for a
   typical simulated step and 1 at the threshold, whatever the detector's scale.
4. Log scores over all real steps: ``mean`` of c, ``q95`` (the ``high_quantile`` of c) and
   ``frac`` (fraction of steps with c > 1; about 0.01 on in-distribution data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import envs
from envs.distributions import distribution_from_dict
from envs.tasks import config_from_spec
from simrl.validate.data import RealData
from simrl.validate.detectors import (
    GMM,
    KNN,
    DisagreementModel,
    GMMConfig,
    KNNConfig,
    Mahalanobis,
    MahalanobisConfig,
    WorldModelDisagreement,
)
from simrl.validate.features import PARTS, check_parts, policy_features
from simrl.validate.rollout import collect

DETECTORS = ("mahalanobis", "knn", "gmm")  # "world_model" is added when a model is given
AGGREGATES = ("mean", "q95", "frac")


@dataclass
class OODConfig:
    """Reference data, features, detectors and aggregation of the OOD scores."""

    detectors: tuple[str, ...] = DETECTORS
    features: tuple[str, ...] = PARTS
    reference_envs: int = 32             # worlds of reference rollouts
    reference_steps: int = 400           # control steps per world
    holdout_fraction: float = 0.25       # worlds kept for calibration
    calibration_quantile: float = 0.99
    high_quantile: float = 0.95
    seed: int = 0
    mahalanobis: MahalanobisConfig = field(default_factory=MahalanobisConfig)
    knn: KNNConfig = field(default_factory=KNNConfig)
    gmm: GMMConfig = field(default_factory=GMMConfig)

    def __post_init__(self) -> None:
        self.features = check_parts(self.features)
        unknown = [d for d in self.detectors if d not in DETECTORS]
        if unknown or not self.detectors:
            raise ValueError(f"detectors must be a non-empty subset of {DETECTORS}, "
                             f"got {list(self.detectors)}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError("holdout_fraction must be in (0, 1)")


@dataclass
class Reference:
    """A checkpoint's simulated observations (raw), for fitting and held out for calibration."""

    fit_obs: np.ndarray
    holdout_obs: np.ndarray


@dataclass
class DetectorScores:
    """One detector's result: log scores and its calibration."""

    mean: float
    q95: float
    frac: float
    median_sim: float
    threshold_sim: float

    def aggregate(self, name: str) -> float:
        if name not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {name!r}")
        return float(getattr(self, name))


def training_distribution(spec: dict[str, Any]) -> Any:
    """The DR distribution a checkpoint was trained under ("none" when it has none)."""
    return "none" if spec.get("dr") is None else distribution_from_dict(spec["dr"])


def reference_rollouts(policy: Any, cfg: OODConfig) -> Reference:
    """Deterministic rollouts of ``policy`` (a :class:`policies.LoadedPolicy`) under its
    training randomization, split by world into fit and held-out steps."""
    spec = policy.spec
    with envs.make(spec["task"], cfg.reference_envs, dr=training_distribution(spec), seed=cfg.seed,
                   config=config_from_spec(spec)) as env:
        ro = collect(env, policy, cfg.reference_steps, seed=cfg.seed)
    n_hold = max(1, int(round(cfg.holdout_fraction * cfg.reference_envs)))
    if n_hold >= cfg.reference_envs:
        raise ValueError(f"reference_envs {cfg.reference_envs} leaves no fit worlds after holding "
                         f"out {n_hold}")
    return Reference(ro.obs[:, n_hold:].reshape(-1, ro.obs.shape[-1]),
                     ro.obs[:, :n_hold].reshape(-1, ro.obs.shape[-1]))


def make_detector(name: str, cfg: OODConfig) -> Mahalanobis | KNN | GMM:
    if name == "mahalanobis":
        return Mahalanobis(cfg.mahalanobis, cfg.seed)
    if name == "knn":
        return KNN(cfg.knn, cfg.seed)
    return GMM(cfg.gmm, cfg.seed)


def calibrate(step_scores: torch.Tensor, holdout_scores: torch.Tensor, cfg: OODConfig) -> DetectorScores:
    """Calibrated log scores (see the module docstring)."""
    hold = holdout_scores.to(torch.float64)
    median = float(hold.median())
    threshold = float(torch.quantile(hold, cfg.calibration_quantile))
    spread = max(threshold - median, 1e-12 * max(1.0, abs(median)))
    c = (step_scores.to(torch.float64) - median) / spread
    return DetectorScores(float(c.mean()), float(torch.quantile(c, cfg.high_quantile)),
                          float((c > 1).double().mean()), median, threshold)


def ood_scores(policy: Any, reference: Reference, real: RealData, cfg: OODConfig,
               world_model: DisagreementModel | None = None) -> dict[str, DetectorScores]:
    """Scores of every configured detector on ``real``, plus ``world_model``'s disagreement on
    the real observations and the actions this checkpoint would take there."""
    module = policy.module
    fit, hold, test = (policy_features(module, o, cfg.features)
                       for o in (reference.fit_obs, reference.holdout_obs, real.obs))
    mean, std = fit.mean(0), fit.std(0).clamp(min=1e-3)  # features are O(1): floor near-constant ones
    fit, hold, test = ((x - mean) / std for x in (fit, hold, test))
    out = {}
    for name in cfg.detectors:
        det = make_detector(name, cfg).fit(fit)
        out[name] = calibrate(det.score(test), det.score(hold), cfg)
    if world_model is not None:
        det = WorldModelDisagreement(world_model, module.obs_dim)
        real_rows, hold_rows = (np.concatenate([o, policy(o)], 1) for o in (real.obs, reference.holdout_obs))
        out["world_model"] = calibrate(det.score(real_rows), det.score(hold_rows), cfg)
    return out
