"""What a policy trained inside an env wrapper takes and gives: the observation and action
transforms of history students, residual policies and privileged teachers.

Numpy only and batched over worlds (leading dimension ``n``): the training wrappers
(:mod:`simrl.distill`, :mod:`simrl.robust.residual`) run them over all worlds, the robot
runtime (:mod:`deploy.policy_io`) runs the same code with ``n = 1``, so a network sees on the
robot exactly the inputs it was trained on.

* :class:`History`: the last ``length`` task observations, oldest first, zeros before the
  episode start; a world's history restarts when its episode ends (``spec["history"]``).
* :class:`ActionHistory`: the last ``length`` actions the policy took, oldest first, zeros
  before the episode start (``spec["history"]["actions"]``: the observation-action history of
  the DORAEMON paper's SAC actor).
* :class:`Residual`: the observation plus a frozen base controller's action; the network's
  output is a correction ``action = clip(base + scale * clip(residual, -1, 1), -1, 1)``
  (``spec["residual"]``).
* :class:`Privileged`: the observation plus the true base velocity and the world's
  standardized domain-randomization parameters (``spec["privileged"]``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from policies.base import make_scripted
from simrl.core.robot_state import RobotState


class BaseController:
    """A frozen base: maps (robot state, observation) of every world to actions in [-1, 1]."""

    def __init__(self, name: str, fn: Callable[[RobotState, np.ndarray], np.ndarray]):
        self.name, self.fn = name, fn

    def __call__(self, rs: RobotState, obs: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.fn(rs, obs), dtype=np.float64), -1.0, 1.0)


def scripted_base(name: str, task: Any) -> BaseController:
    """The scripted controller ``name`` of :mod:`policies.base` as a residual base; ValueError
    when it does not drive ``task``."""
    controller = make_scripted(name, task)
    return BaseController(name, lambda rs, obs: controller(rs))


class History:
    """The last ``length`` observations of ``num_envs`` worlds, flattened oldest first."""

    def __init__(self, num_envs: int, length: int, obs_size: int):
        if length < 1:
            raise ValueError(f"history length must be >= 1, got {length}")
        self.length = length
        self.buffer = np.zeros((num_envs, length, obs_size))

    @staticmethod
    def names(names: Sequence[str], length: int) -> list[str]:
        """The stacked observation's names: ``name@t-k``, oldest first."""
        return [f"{name}@t-{k}" for k in range(length - 1, -1, -1) for name in names]

    def flat(self) -> np.ndarray:
        """(n, length * obs_size) the stacked observations (a copy)."""
        return self.buffer.reshape(len(self.buffer), -1).copy()

    def reset(self, obs: np.ndarray) -> np.ndarray:
        """Every world starts a new history with ``obs``."""
        self.buffer[...] = 0.0
        self.buffer[:, -1] = obs
        return self.flat()

    def step(self, obs: np.ndarray, done: np.ndarray | None = None) -> np.ndarray:
        """Appends ``obs``; worlds in ``done`` (their episode just ended, ``obs`` starts the
        next one) start from zeros."""
        self.buffer[:, :-1] = self.buffer[:, 1:]
        if done is not None:
            self.buffer[done] = 0.0
        self.buffer[:, -1] = obs
        return self.flat()

    def final(self, final_obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        """The last stacked observation of the worlds in ``done`` (zeros elsewhere); before
        :meth:`step` of the same step."""
        out = np.zeros((len(self.buffer), self.buffer[0].size))
        stacked = np.concatenate([self.buffer[done, 1:], final_obs[done, None]], axis=1)
        out[done] = stacked.reshape(len(stacked), -1)
        return out


class ActionHistory:
    """The last ``length`` actions (clipped to [-1, 1]) of ``num_envs`` worlds, flattened oldest
    first; zeros before a world's episode start."""

    def __init__(self, num_envs: int, length: int, action_size: int):
        if length < 1:
            raise ValueError(f"action history length must be >= 1, got {length}")
        self.length = length
        self.buffer = np.zeros((num_envs, length, action_size))

    @staticmethod
    def names(action_names: Sequence[str], length: int) -> list[str]:
        """The stacked actions' names: ``action:NAME@t-k``, oldest first (k = length .. 1)."""
        return [f"action:{name}@t-{k}" for k in range(length, 0, -1) for name in action_names]

    def flat(self) -> np.ndarray:
        """(n, length * action_size) the stacked actions (a copy)."""
        return self.buffer.reshape(len(self.buffer), -1).copy()

    def reset(self, done: np.ndarray | None = None) -> np.ndarray:
        """Worlds in ``done`` (every world when None) start an empty history."""
        if done is None:
            self.buffer[...] = 0.0
        else:
            self.buffer[done] = 0.0
        return self.flat()

    def shifted(self, action: np.ndarray) -> np.ndarray:
        """(n, length * action_size) the history with ``action`` appended, without storing it."""
        stacked = np.concatenate([self.buffer[:, 1:], np.clip(action, -1.0, 1.0)[:, None]], axis=1)
        return stacked.reshape(len(stacked), -1)

    def push(self, action: np.ndarray) -> None:
        """Appends the action every world just took."""
        self.buffer[:, :-1] = self.buffer[:, 1:]
        self.buffer[:, -1] = np.clip(action, -1.0, 1.0)


class Residual:
    """A residual policy's input (observation + base action) and output (the corrected action)."""

    def __init__(self, base: BaseController, scale: float):
        if scale <= 0:
            raise ValueError(f"residual scale must be positive, got {scale}")
        self.base, self.scale = base, float(scale)
        self.base_action: np.ndarray | None = None

    @staticmethod
    def names(obs_names: Sequence[str], action_names: Sequence[str]) -> list[str]:
        return list(obs_names) + [f"base_{a}" for a in action_names]

    def observe(self, obs: np.ndarray, rs: RobotState) -> np.ndarray:
        """The network's input; the base acts on the record ``rs`` of the same step."""
        self.base_action = self.base(rs, obs)
        return np.concatenate([obs, self.base_action], axis=1)

    def final(self, final_obs: np.ndarray) -> np.ndarray:
        """``final_obs`` with the base action of the last step (finished worlds were reset, so
        the base cannot see their final state)."""
        return np.concatenate([final_obs, self.base_action], axis=1)

    def action(self, residual: np.ndarray) -> np.ndarray:
        """The task action for the network's output (after :meth:`observe`)."""
        if self.base_action is None:
            raise RuntimeError("Residual.action before observe: no base action yet")
        return np.clip(self.base_action + self.scale * np.clip(residual, -1.0, 1.0), -1.0, 1.0)


class Privileged:
    """Observation + privileged features, fixed by ``spec`` (a teacher's ``spec["privileged"]``:
    ``params``, ``low``, ``high``, ``nominal``, ``base_lin_vel``). Parameters are standardized
    to ``2 (p - low) / (high - low) - 1`` (0 without range); a recorded parameter missing from
    ``param_names`` (the env's randomized parameters) reads its nominal value."""

    def __init__(self, spec: dict[str, Any], param_names: Sequence[str]):
        missing = sorted({"params", "low", "high", "nominal", "base_lin_vel"} - set(spec))
        if missing:
            raise ValueError(f"privileged spec lacks fields {missing}")
        self.spec = spec
        low, high = np.asarray(spec["low"], dtype=np.float64), np.asarray(spec["high"], dtype=np.float64)
        span = high - low
        self._low, self._scale = low, np.divide(2.0, span, out=np.zeros_like(span), where=span > 0)
        columns = {name: i for i, name in enumerate(param_names)}
        self._present = np.array([p in columns for p in spec["params"]], dtype=bool)
        self._columns = np.array([columns[p] for p in spec["params"] if p in columns], dtype=np.int64)
        self._nominal = np.asarray(spec["nominal"], dtype=np.float64)
        self.features: np.ndarray | None = None

    @staticmethod
    def names(obs_names: Sequence[str], spec: dict[str, Any]) -> list[str]:
        names = list(obs_names)
        names += [f"priv_base_lin_vel_{a}" for a in "xyz"] if spec["base_lin_vel"] else []
        return names + [f"priv_{p}" for p in spec["params"]]

    def standardized(self, params: np.ndarray) -> np.ndarray:
        """(n, d) the worlds' parameters (columns ``param_names``) standardized by the spec."""
        full = np.tile(self._nominal, (len(params), 1))
        full[:, self._present] = params[:, self._columns]
        return np.where(self._scale > 0, (full - self._low) * self._scale - 1.0, 0.0)

    def observe(self, obs: np.ndarray, params: np.ndarray, rs: RobotState) -> np.ndarray:
        """The teacher's input from the task observation, parameters and record of every world."""
        parts = []
        if self.spec["base_lin_vel"]:
            if rs.base_lin_vel is None:
                raise ValueError("the privileged spec includes the base linear velocity; this "
                                 "robot-state record has none")
            parts.append(rs.base_lin_vel)
        self.features = np.concatenate([*parts, self.standardized(params)], axis=1)
        return np.concatenate([obs, self.features], axis=1)

    def final(self, final_obs: np.ndarray) -> np.ndarray:
        """``final_obs`` with the features of the last step (parameters are constant within an
        episode; the base velocity is one step old, for bootstrap values only)."""
        return np.concatenate([final_obs, self.features], axis=1)
