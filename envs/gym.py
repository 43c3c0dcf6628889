"""Single-env ``gymnasium.Env`` adapter over the same task code as the batched env.

Every registered task has an id (``Task.gym_id``: ``simrl/Go1Velocity-v0``,
``simrl/PandaPush-v0``, ``simrl/Hopper-v0``, ``simrl/HalfCheetah-v0``, ``simrl/Walker2d-v0``),
registered by ``import envs``. Steps
with ``mj_step`` on one MjData, as a Gymnasium MuJoCo env does; no auto-reset, and the task's
time limit is reported as ``truncated``. Passes Gymnasium's and Stable-Baselines3's env checkers.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.batched import BatchedEnv
from envs.distributions import Distribution
from envs.tasks import make_task

class SimrlEnv(gymnasium.Env):
    """One randomized world of a simrl task.

    ``info`` of the last step of an episode has ``episode`` (return, length, success) and
    ``params`` (the parameter vector the episode ran with, in ``param_names`` order).
    """

    metadata = {"render_modes": []}

    def __init__(self, task: str = "hopper", dr: str | Mapping | Distribution | None = "none",
                 seed: int | None = None, render_mode: str | None = None, **overrides: Any):
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported")
        self.core = BatchedEnv(make_task(task, **overrides), 1, dr=dr,
                               seed=0 if seed is None else seed, physics="serial", autoreset=False)
        self.task = self.core.task
        self.param_names = self.core.param_names
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.task.observation_size,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.task.action_size,), np.float32)
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # Each reset draws its randomness from gymnasium's np_random, so seeding is standard.
        self.core.rng = self.np_random
        obs = self.core.reset_numpy()
        self._needs_reset = False
        return obs[0].astype(np.float32), {"params": self.core.params[0].copy()}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        obs, reward, terminated, truncated, info = self.core.step_numpy(np.asarray(action)[None])
        out: dict[str, Any] = {}
        if "episodes" in info:
            ep = info["episodes"]
            out["episode"] = {"r": float(ep.returns[0]), "l": int(ep.lengths[0]),
                              "success": bool(ep.success[0])}
            out["is_success"] = bool(ep.success[0])
            out["params"] = ep.params[0].copy()
            self._needs_reset = True
        return (obs[0].astype(np.float32), float(reward[0]), bool(terminated[0]),
                bool(truncated[0]), out)

    def close(self) -> None:
        self.core.close()
