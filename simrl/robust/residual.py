"""Residual RL on a frozen base controller (ResiP: "From Imitation to Refinement").

The agent's action is a correction on top of a base controller that never changes:

    action = clip(base_action + scale * residual, -1, 1)

The base action is appended to the residual policy's observation, and the residual network's
output layer starts at zero (with small exploration noise), so training starts exactly at the
base controller. ``ResidualEnv`` wraps a batched env with the same API, so PPO trains the
residual like any other policy. Bases: a scripted controller from ``policies/base.py``
(``stand``, ``trot``, ``pusher``, ``reacher``), a simrl checkpoint directory, or a Stable-Baselines3 zip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import policies
from envs.wrappers import Step, TaskView, Wrapper, to_numpy
from policies.base import SCRIPTED
from policies.io import BaseController, Residual, scripted_base
from simrl.core.robot_state import RobotState


def make_base(spec: str, task: Any, trust_pickle: bool = False) -> BaseController:
    """Builds a base controller from a scripted name, a checkpoint directory or an SB3 zip
    (read without unpickling unless ``trust_pickle``)."""
    if spec in {name for names in SCRIPTED.values() for name in names}:
        try:
            return scripted_base(spec, task)
        except ValueError as exc:
            raise ValueError(f"{exc} (or use a checkpoint or SB3 zip)") from None
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"residual base {spec!r}: not a scripted base (stand, trot, pusher, reacher), "
                                "a checkpoint directory or an SB3 .zip")
    options = {"trust_pickle": trust_pickle} if path.suffix == ".zip" else {}
    policy = policies.load(str(path), task=task.name, **options)

    def run(rs: RobotState, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = policy(np.asarray(obs, dtype=np.float32))
        return out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    return BaseController(str(path), run)


class ResidualTask(TaskView):
    """The wrapped task as the residual policy sees it: observation plus the base action.
    ``residual_spec`` goes into the checkpoint so evaluation and deployment rebuild the base."""

    def __init__(self, task: Any, base: str, scale: float):
        super().__init__(task, Residual.names(task.observation_names, task.action_names),
                         residual={"base": base, "scale": float(scale)})


class ResidualEnv(Wrapper):
    """A batched env whose actions are residuals on a frozen base controller
    (:class:`policies.io.Residual`).

    Observation: ``[env observation, base action]``. ``info["base_action"]`` holds the base's
    action for the step just taken.
    """

    def __init__(self, env: Any, base: BaseController, scale: float = 0.2):
        self.io = Residual(base, scale)
        super().__init__(env, ResidualTask(env.task, base.name, scale))
        self.base, self.scale = base, scale

    def on_reset(self, obs: np.ndarray) -> np.ndarray:
        return self.io.observe(obs, self.env.robot_state)

    def on_step(self, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        return self.io.observe(obs, self.env.robot_state)

    def final_observation(self, final_obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        return self.io.final(final_obs)

    def action(self, residual: Any) -> np.ndarray:
        if self.io.base_action is None:
            raise RuntimeError("call reset() before step()")
        residual = to_numpy(residual)
        if residual.shape != (self.num_envs, self.action_size):
            raise ValueError(f"residual actions must have shape ({self.num_envs}, {self.action_size}), "
                             f"got {residual.shape}")
        return self.io.action(residual)

    def step_numpy(self, residual: Any) -> Step:
        base_action = self.io.base_action
        obs, reward, terminated, truncated, info = super().step_numpy(residual)
        info["base_action"] = base_action
        return obs, reward, terminated, truncated, info

    @classmethod
    def from_spec(cls, env: Any, residual_spec: dict) -> "ResidualEnv":
        """Rebuilds the wrapper a residual checkpoint was trained in (``spec["residual"]``)."""
        return cls(env, make_base(residual_spec["base"], env.task), residual_spec["scale"])
