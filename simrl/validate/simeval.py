"""Simulation score: a checkpoint's return (or success rate) under held-out randomization,
i.e. parameter families it was not trained on and ranges wider than its training ranges.

Defaults per task are the task's :meth:`~envs.tasks.Task.heldout` ranges; any ``{param: (low, high)}`` mapping replaces them.
Each of ``num_envs`` worlds runs one full episode (deterministic actions), so every world
counts once whatever the episode length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import envs
from envs.tasks import task_from_spec
from simrl.validate.rollout import first_episodes

METRICS = ("return", "success")


@dataclass
class SimEvalConfig:
    """How the simulation score is measured."""

    dr: dict[str, tuple[float, float]] | None = None  # None: the task's heldout()
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


def sim_score(policy: Any, cfg: SimEvalConfig = SimEvalConfig()) -> SimResult:
    """Score of a :class:`policies.LoadedPolicy` on its own task under held-out randomization."""
    task = task_from_spec(policy.spec)
    dr = dict(cfg.dr) if cfg.dr is not None else task.heldout()
    with envs.make(task, cfg.num_envs, dr=dr, seed=cfg.seed) as env:
        returns, success = first_episodes(env, policy, seed=cfg.seed)
    score = float(returns.mean()) if cfg.metric == "return" else float(success.mean())
    return SimResult(score, returns, success)
