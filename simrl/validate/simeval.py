"""Simulation score: a checkpoint's return (or success rate) under held-out randomization,
i.e. parameter families it was not trained on and ranges wider than its training ranges.

Defaults per task are in :data:`HELDOUT`; any ``{param: (low, high)}`` mapping replaces them.
Each of ``num_envs`` worlds runs one full episode (deterministic actions), so every world
counts once whatever the episode length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simrl.validate.rollout import first_episodes

_WIDE = (0.3, 1.8)
_PLANAR = {"friction": _WIDE, "damping": (0.5, 2.0), "gain": (0.75, 1.25)}
# Held-out randomization per task: wider mass and friction ranges than the tasks' defaults
# (0.5-1.5) plus families the defaults leave out (joint damping, motor strength, latency).
HELDOUT: dict[str, dict[str, tuple[float, float]]] = {
    "hopper": {**{f"mass:{b}": _WIDE for b in ("torso", "thigh", "leg", "foot")}, **_PLANAR},
    "walker2d": {**{f"mass:{b}": _WIDE for b in ("torso", "thigh", "leg", "foot")}, **_PLANAR},
    "halfcheetah": {**{f"mass:{b}": _WIDE for b in ("torso", "bthigh", "fthigh")}, **_PLANAR},
    "go1-velocity": {"mass:trunk": (0.7, 1.5), "friction:floor": (0.3, 2.0), "kp": (0.7, 1.3),
                     "damping": (0.5, 1.5), "gain": (0.8, 1.2), "latency": (0, 1), "obs_noise": (0.0, 1.5)},
    "panda-push": {"mass:box": (0.3, 3.0), "friction": (0.4, 1.6), "kp": (0.7, 1.3),
                   "damping": (0.3, 3.0), "latency": (0, 1), "obs_noise": (0.0, 1.5)},
}
METRICS = ("return", "success")


@dataclass
class SimEvalConfig:
    """How the simulation score is measured."""

    dr: dict[str, tuple[float, float]] | None = None  # None: HELDOUT[task]
    num_envs: int = 32                                # episodes (one per world)
    metric: str = "return"                            # return | success
    seed: int = 10_000                                # env seed, the same for every checkpoint

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"sim metric must be one of {METRICS}, got {self.metric!r}")


@dataclass
class SimResult:
    score: float                 # mean return or success rate, per ``metric``
    returns: np.ndarray          # (num_envs,) episode returns
    success: np.ndarray          # (num_envs,) success flags


def heldout_dr(task: str, cfg: SimEvalConfig) -> dict[str, tuple[float, float]]:
    if cfg.dr is not None:
        return dict(cfg.dr)
    if task not in HELDOUT:
        raise ValueError(f"no default held-out randomization for task {task!r}; give SimEvalConfig.dr")
    return HELDOUT[task]


def sim_score(policy: Any, cfg: SimEvalConfig = SimEvalConfig()) -> SimResult:
    """Score of a :class:`policies.LoadedPolicy` on its own task under held-out randomization."""
    import envs
    from policies.checkpoint import task_config

    spec = policy.spec
    with envs.make(spec["task"], cfg.num_envs, dr=heldout_dr(spec["task"], cfg), seed=cfg.seed,
                   config=task_config(spec)) as env:
        returns, success = first_episodes(env, policy, seed=cfg.seed)
    score = float(returns.mean()) if cfg.metric == "return" else float(success.mean())
    return SimResult(score, returns, success)
