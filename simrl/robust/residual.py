"""Residual RL on a frozen base controller (ResiP: "From Imitation to Refinement").

The agent's action is a correction on top of a base controller that never changes:

    action = clip(base_action + scale * residual, -1, 1)

The base action is appended to the residual policy's observation, and the residual network's
output layer starts at zero (with small exploration noise), so training starts exactly at the
base controller. ``ResidualEnv`` wraps a batched env with the same API, so PPO trains the
residual like any other policy. Bases: a scripted controller from ``policies/base.py``
(``stand``, ``trot``, ``pusher``), a simrl checkpoint directory, or a Stable-Baselines3 zip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from simrl.core.robot_state import RobotState

class BaseController:
    """A frozen base: maps (robot state, observation) of every world to actions in [-1, 1]."""

    def __init__(self, name: str, fn: Callable[[RobotState, np.ndarray], np.ndarray]):
        self.name, self.fn = name, fn

    def __call__(self, rs: RobotState, obs: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.fn(rs, obs), dtype=np.float64), -1.0, 1.0)


def make_base(spec: str, task: Any) -> BaseController:
    """Builds a base controller from a scripted name, a checkpoint directory or an SB3 zip."""
    from policies.base import SCRIPTED, make_scripted
    if spec in {name for names in SCRIPTED.values() for name in names}:
        try:
            ctl = make_scripted(spec, task)
        except ValueError as exc:
            raise ValueError(f"{exc} (or use a checkpoint or SB3 zip)") from None
        return BaseController(spec, lambda rs, obs: ctl(rs))
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"residual base {spec!r}: not a scripted base (stand, trot, pusher), "
                                "a checkpoint directory or an SB3 .zip")
    import policies
    policy = policies.load(str(path), task=task.name)

    def run(rs: RobotState, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = policy(np.asarray(obs, dtype=np.float32))
        return out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    return BaseController(str(path), run)


class ResidualTask:
    """The wrapped task as the residual policy sees it: observation plus the base action.
    ``residual_spec`` goes into the checkpoint so evaluation and deployment rebuild the base."""

    def __init__(self, task: Any, base: str, scale: float):
        self._task = task
        self.residual_spec = {"base": base, "scale": float(scale)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    @property
    def observation_names(self) -> list[str]:
        return list(self._task.observation_names) + [f"base_{a}" for a in self._task.action_names]

    @property
    def observation_size(self) -> int:
        return self._task.observation_size + self._task.action_size


class ResidualEnv:
    """A batched env whose actions are residuals on a frozen base controller.

    Observation: ``[env observation, base action]``. ``info["base_action"]`` holds the base's
    action for the step just taken.
    """

    def __init__(self, env: Any, base: BaseController, scale: float = 0.2):
        if scale <= 0:
            raise ValueError(f"residual scale must be positive, got {scale}")
        self.env, self.base, self.scale = env, base, scale
        self.num_envs, self.device = env.num_envs, env.device
        self.task = ResidualTask(env.task, base.name, scale)
        self.action_size = env.action_size
        self.observation_size = env.observation_size + env.action_size
        self._obs: np.ndarray | None = None
        self._base_action: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:      # param_names, distribution, set_distribution ...
        return getattr(self.env, name)

    def _augment(self, obs: np.ndarray) -> np.ndarray:
        self._obs = obs
        self._base_action = self.base(self.env.robot_state, obs)
        return np.concatenate([obs, self._base_action], axis=1)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        return self._tensor(self.reset_numpy(seed))

    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        return self._augment(self.env.reset_numpy(seed))

    def step(self, residual: Any):
        obs, reward, terminated, truncated, info = self.step_numpy(residual)
        if "final_obs" in info:
            info["final_obs"] = self._tensor(info["final_obs"])
        return (self._tensor(obs), self._tensor(reward), torch.from_numpy(terminated).to(self.device),
                torch.from_numpy(truncated).to(self.device), info)

    def step_numpy(self, residual: Any):
        if self._base_action is None:
            raise RuntimeError("call reset() before step()")
        if hasattr(residual, "detach"):
            residual = residual.detach().cpu().numpy()
        residual = np.asarray(residual, dtype=np.float64)
        if residual.shape != (self.num_envs, self.action_size):
            raise ValueError(f"residual actions must have shape ({self.num_envs}, {self.action_size}), "
                             f"got {residual.shape}")
        base_action = self._base_action
        action = np.clip(base_action + self.scale * np.clip(residual, -1.0, 1.0), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.env.step_numpy(action)
        info["base_action"] = base_action
        if "final_obs" in info:
            # Finished worlds were already reset, so the base cannot see their final state; the
            # bootstrap value uses the base action of their last step instead.
            info["final_obs"] = np.concatenate([info["final_obs"], base_action], axis=1)
        return self._augment(obs), reward, terminated, truncated, info

    @classmethod
    def from_spec(cls, env: Any, residual_spec: dict) -> "ResidualEnv":
        """Rebuilds the wrapper a residual checkpoint was trained in (``spec["residual"]``)."""
        return cls(env, make_base(residual_spec["base"], env.task), residual_spec["scale"])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, dtype=np.float32)).to(self.device)

    def close(self) -> None:
        self.env.close()
