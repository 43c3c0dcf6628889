"""The batched-env interface every env and wrapper shares: a numpy core and one torch adapter.

:class:`VecEnv` is what :class:`envs.batched.BatchedEnv`, the dream env and every wrapper are:
``reset_numpy`` / ``step_numpy`` are the numpy core, ``reset`` / ``step`` the torch adapter
around it (float32 tensors, bool flags, on ``device``). :class:`Wrapper` changes an env's
observation or action through three hooks and forwards everything else (task, sizes,
distribution, rng, robot state ...) to the env it wraps.

Torch is imported only when the adapter runs, so the robot side (``deploy``, no torch) can use
the wrappers' numpy parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Step = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


def to_numpy(x: Any) -> np.ndarray:
    """An array (float64 unless bool) from a numpy array, a list or a tensor on any device."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x if x.dtype == np.bool_ else x.astype(np.float64, copy=False)


def to_torch(x: np.ndarray, device: Any) -> Any:
    """The torch adapter of one array: bool stays bool, everything else becomes float32."""
    import torch
    if x.dtype == np.bool_:
        return torch.from_numpy(x.copy()).to(device)
    return torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device)


def step_to_torch(step: Step, device: Any) -> tuple:
    """A numpy ``(obs, reward, terminated, truncated, info)`` as tensors (and ``final_obs``)."""
    obs, reward, terminated, truncated, info = step
    if "final_obs" in info:
        info["final_obs"] = to_torch(info["final_obs"], device)
    return (to_torch(obs, device), to_torch(reward, device), to_torch(terminated, device),
            to_torch(truncated, device), info)


def step_to_numpy(step: tuple) -> Step:
    """The inverse of :func:`step_to_torch`, for envs whose core is torch (the dream env)."""
    obs, reward, terminated, truncated, info = step
    if "final_obs" in info:
        info["final_obs"] = to_numpy(info["final_obs"])
    return to_numpy(obs), to_numpy(reward), to_numpy(terminated), to_numpy(truncated), info


class VecEnv:
    """``num_envs`` worlds of ``task`` with auto-reset. Subclasses set ``task``, ``num_envs`` and
    ``device`` and implement the numpy core; the torch adapter comes with the base."""

    task: Any
    num_envs: int
    device: Any
    distribution: Any = None

    @property
    def observation_size(self) -> int:
        return self.task.observation_size

    @property
    def action_size(self) -> int:
        return self.task.action_size

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the randomized parameters (none by default)."""
        return ()

    def set_distribution(self, dist: Any) -> None:
        raise ValueError(f"{type(self).__name__} has no domain-randomization distribution to set")

    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def step_numpy(self, action: Any) -> Step:
        raise NotImplementedError

    def reset(self, seed: int | None = None) -> Any:
        """Resets every world; observations as a tensor on ``device``."""
        return to_torch(self.reset_numpy(seed), self.device)

    def step(self, action: Any) -> tuple:
        """One control step of every world; tensors in and out."""
        return step_to_torch(self.step_numpy(action), self.device)

    def close(self) -> None:
        """Releases what the env holds (nothing by default)."""

    def __enter__(self) -> "VecEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SimEnv(VecEnv):
    """The worlds of a physics backend (:class:`envs.batched.BatchedEnv` on MuJoCo's C threads,
    :class:`envs.warp_env.WarpEnv` on MuJoCo Warp), under any wrappers: what evaluation and
    training read besides the steps: ``task_state`` (commands ...), ``metric_sums``,
    ``robot_state``, ``params``, ``rng``, ``space``. Wrappers reach it through ``.env``."""

    task_state: dict[str, Any]
    metric_sums: dict[str, Any]


def unwrap(env: Any) -> SimEnv:
    """The :class:`SimEnv` inside env wrappers (``.env`` chains)."""
    inner = env
    while not isinstance(inner, SimEnv):
        if not hasattr(inner, "env"):
            raise TypeError(f"cannot find a physics env (BatchedEnv, WarpEnv) inside {type(env).__name__}")
        inner = inner.env
    return inner


class TaskView:
    """A wrapped task with other observation names; every ``NAME_spec`` keyword becomes an
    attribute that goes into the checkpoint (``policies.checkpoint.build_spec``)."""

    def __init__(self, task: Any, names: list[str], **spec: Any):
        self._task, self._names = task, list(names)
        self.__dict__.update({f"{key}_spec": value for key, value in spec.items()})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_task":
            raise AttributeError(name)
        return getattr(self._task, name)

    @property
    def observation_names(self) -> list[str]:
        return list(self._names)

    @property
    def observation_size(self) -> int:
        return len(self._names)


class Wrapper(VecEnv):
    """An env with another observation and/or action and the wrapped env's dynamics.

    Subclasses override :meth:`action` (the wrapper's action -> the env's), :meth:`on_reset`,
    :meth:`on_step` and :meth:`final_observation` (the env's observations -> the wrapper's).
    The observation hooks also let a wrapper *watch* an env stepped by someone else (DAgger
    steps one env and computes the teacher's and the student's observations from its outputs).
    ``task`` is the wrapped env's unless given (a :class:`TaskView` for another observation).
    Every attribute the wrapper does not define is the wrapped env's.
    """

    def __init__(self, env: Any, task: Any = None):
        self.env = env
        self.task = env.task if task is None else task

    def __getattr__(self, name: str) -> Any:      # rng, space, params, robot_state, metric_sums ...
        if name.startswith("__") or name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    @property
    def num_envs(self) -> int:
        return self.env.num_envs

    @property
    def device(self) -> Any:
        return self.env.device

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.env.param_names

    @property
    def distribution(self) -> Any:
        return self.env.distribution

    def set_distribution(self, dist: Any) -> None:
        self.env.set_distribution(dist)

    # -- hooks -----------------------------------------------------------------------------------
    def action(self, action: Any) -> Any:
        """The wrapped env's action for this wrapper's ``action``."""
        return action

    def on_reset(self, obs: np.ndarray) -> np.ndarray:
        """This wrapper's observation after the env was reset (``obs``: the env's)."""
        return obs

    def on_step(self, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        """This wrapper's observation after a step (``done``: worlds whose episode just ended;
        with auto-reset, their ``obs`` starts the next episode)."""
        return obs

    def final_observation(self, final_obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        """``info["final_obs"]`` in this wrapper's terms; called before :meth:`on_step`."""
        return final_obs

    # -- numpy core --------------------------------------------------------------------------------
    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        return self.on_reset(self.env.reset_numpy(seed))

    def step_numpy(self, action: Any) -> Step:
        obs, reward, terminated, truncated, info = self.env.step_numpy(self.action(action))
        done = terminated | truncated
        if "final_obs" in info:
            info["final_obs"] = self.final_observation(info["final_obs"], done)
        return self.on_step(obs, done), reward, terminated, truncated, info

    def close(self) -> None:
        self.env.close()
