"""The baselines the env and training benches measure simrl against, with matched resources.

* :class:`ChunkEnv`: ``k`` single Gymnasium envs stepped one after another with same-step
  auto-reset, as one env with batched spaces. Gymnasium's ``AsyncVectorEnv`` over ``N`` of them
  is ``N`` worker processes sharing the envs, as simrl's ``N`` physics threads (and EnvPool's
  ``N`` threads) do; its default of one process per env would be 256 processes on 2 cores.
* :class:`ProcessVecEnv`: the same ``N`` worker processes as a Stable-Baselines3 ``VecEnv``
  (SB3's ``SubprocVecEnv`` too starts one process per env).
* :func:`envpool_steps_per_s`: EnvPool (C++ thread pool) in its own Python, through
  ``envpool_worker.py`` in a subprocess (EnvPool needs ``envpool-assets-mujoco-large<0.4``,
  simrl ``>=0.4``).
* :func:`single_env`: Gymnasium's native env where one exists (``Hopper-v5``), else simrl's
  single-world Gymnasium env.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from typing import Any, Callable

import gymnasium
import numpy as np
from gymnasium import spaces

# simrl task -> Gymnasium's own env with the same model, reward and frame skip
NATIVE_GYM = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
# simrl task -> EnvPool's task id (checked with envpool 1.2.5)
ENVPOOL = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5",
           "go1-velocity": "Go1JoystickFlatTerrain-v1"}
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "envpool_worker.py")


def single_env(task: str, seed: int, dr: str = "none", native: bool = True) -> gymnasium.Env:
    """One env of ``task``: Gymnasium's native env when ``native`` and one exists (no domain
    randomization there), else simrl's single-world env (``envs.gym.SimrlEnv``)."""
    if native and task in NATIVE_GYM:
        return gymnasium.make(NATIVE_GYM[task])
    from envs.gym import SimrlEnv
    return SimrlEnv(task, dr=dr, seed=seed)


def baseline_name(task: str, native: bool = True) -> str:
    """What :func:`single_env` builds, for the reports."""
    return f"Gymnasium {NATIVE_GYM[task]}" if native and task in NATIVE_GYM else f"simrl single env ({task})"


class ChunkEnv(gymnasium.Env):
    """``len(seeds)`` envs made by ``make(seed)``, stepped in sequence; an env that ends is reset
    in the same step (its last observation goes to ``info["final_obs"]``). Rewards and flags
    are arrays: use it under a vector env with ``autoreset_mode=DISABLED``."""

    metadata = {"render_modes": []}

    def __init__(self, make: Callable[[int], gymnasium.Env], seeds: list[int]):
        self.envs = [make(s) for s in seeds]
        self.seeds = list(seeds)
        one = self.envs[0]
        k = len(seeds)
        self.obs_dim = int(np.prod(one.observation_space.shape))
        self.observation_space = spaces.Box(-np.inf, np.inf, (k, self.obs_dim), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (k,) + one.action_space.shape, np.float32)
        self.episode_returns = np.zeros(k)
        self.episode_lengths = np.zeros(k, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = [env.reset(seed=s if seed is None else seed + i)[0]
               for i, (env, s) in enumerate(zip(self.envs, self.seeds))]
        self.episode_returns[:] = 0.0
        self.episode_lengths[:] = 0
        return np.stack(obs).reshape(len(self.envs), -1).astype(np.float32), {}

    def step(self, action):
        k = len(self.envs)
        obs = np.zeros((k, self.obs_dim), np.float32)
        final = np.zeros((k, self.obs_dim), np.float32)
        rewards, terminated, truncated = np.zeros(k), np.zeros(k, bool), np.zeros(k, bool)
        returns, lengths = np.zeros(k), np.zeros(k, dtype=np.int64)
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(action[i])
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            self.episode_returns[i] += r
            self.episode_lengths[i] += 1
            if term or trunc:
                final[i] = np.ravel(o)
                returns[i], lengths[i] = self.episode_returns[i], self.episode_lengths[i]
                self.episode_returns[i], self.episode_lengths[i] = 0.0, 0
                o = env.reset()[0]
            obs[i] = np.ravel(o)
        return obs, rewards, terminated, truncated, {"final_obs": final, "episode_return": returns,
                                                   "episode_length": lengths}

    def close(self) -> None:
        for env in self.envs:
            env.close()


def worker_chunks(num_envs: int, workers: int) -> list[list[int]]:
    """Env indices of each of ``workers`` processes (as even as possible)."""
    if not 1 <= workers <= num_envs:
        raise ValueError(f"workers must be in [1, num_envs={num_envs}], got {workers}")
    return [list(c) for c in np.array_split(np.arange(num_envs), workers)]


def make_async(task: str, num_envs: int, workers: int, seed: int = 0, dr: str = "none",
               native: bool = True) -> gymnasium.vector.AsyncVectorEnv:
    """Gymnasium's ``AsyncVectorEnv`` with ``workers`` processes sharing ``num_envs`` envs
    (observations ``(workers, k, obs)``; ``num_envs`` must divide evenly)."""
    chunks = worker_chunks(num_envs, workers)
    if len({len(c) for c in chunks}) != 1:
        raise ValueError(f"num_envs {num_envs} must be a multiple of the {workers} workers")
    make = functools.partial(single_env, task, dr=dr, native=native)
    fns = [functools.partial(ChunkEnv, make, [seed + i for i in c]) for c in chunks]
    return gymnasium.vector.AsyncVectorEnv(fns, context="spawn",
                                           autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED)


def make_sb3_vec(task: str, num_envs: int, workers: int, seed: int = 0, native: bool = True):
    """SB3 ``DummyVecEnv`` (``workers == 1``, in this process) or :class:`ProcessVecEnv`."""
    if workers == 1:
        from stable_baselines3.common.vec_env import DummyVecEnv
        return DummyVecEnv([functools.partial(single_env, task, seed + i, native=native)
                            for i in range(num_envs)])
    return ProcessVecEnv(task, num_envs, workers, seed, native)


def _sb3_vec_env_base() -> type:
    from stable_baselines3.common.vec_env import VecEnv
    return VecEnv


class ProcessVecEnv(_sb3_vec_env_base()):
    """A Stable-Baselines3 ``VecEnv`` over ``workers`` processes (:func:`make_async`), with
    SB3's conventions: flat arrays, ``terminal_observation`` and ``TimeLimit.truncated`` infos."""

    def __init__(self, task: str, num_envs: int, workers: int, seed: int = 0, native: bool = True):
        self.vec = make_async(task, num_envs, workers, seed, native=native)
        self.workers, self._seed = workers, seed
        obs_dim = self.vec.single_observation_space.shape[-1]
        act_shape = self.vec.single_action_space.shape[1:]
        super().__init__(num_envs, spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                         spaces.Box(-1.0, 1.0, act_shape, np.float32))

    def reset(self):
        obs, _ = self.vec.reset(seed=self._seed)
        return obs.reshape(self.num_envs, -1)

    def step_async(self, actions: np.ndarray) -> None:
        a = np.clip(np.asarray(actions, np.float32), -1.0, 1.0)
        self.vec.step_async(a.reshape(self.workers, -1, *self.action_space.shape))

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.vec.step_wait()
        n = self.num_envs
        obs, terminated, truncated = obs.reshape(n, -1), terminated.reshape(n), truncated.reshape(n)
        # Gymnasium gathers the workers' array infos as an object array of arrays
        final = np.stack([np.asarray(x) for x in info["final_obs"]]).reshape(n, -1)
        returns = np.stack([np.asarray(x) for x in info["episode_return"]]).reshape(n)
        lengths = np.stack([np.asarray(x) for x in info["episode_length"]]).reshape(n)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        for i in np.flatnonzero(done):
            infos[i] = {"terminal_observation": final[i],
                        "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                        "episode": {"r": float(returns[i]), "l": int(lengths[i]), "t": 0.0}}
        return obs, rewards.reshape(n).astype(np.float32), done, infos

    def close(self) -> None:
        self.vec.close()

    def get_attr(self, attr_name: str, indices=None) -> list:
        if attr_name == "render_mode":
            return [None] * len(self._get_indices(indices))
        raise AttributeError(f"ProcessVecEnv does not forward attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError(f"ProcessVecEnv does not forward attribute {attr_name!r}")

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list:
        raise AttributeError(f"ProcessVecEnv does not forward method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


def envpool_steps_per_s(python: str, task: str, num_envs: int, threads: int, steps: int,
                        seed: int = 0, timeout: float = 600.0) -> dict:
    """Steps/s of EnvPool's ``task`` (random actions, ``num_envs`` envs, ``threads`` threads) run
    by the interpreter ``python`` of a venv that has envpool. Returns ``{"steps_per_s", "env_id",
    "envpool_version", ...}`` or ``{"error": why}`` when the task has no EnvPool twin or it fails."""
    if task not in ENVPOOL:
        return {"error": f"EnvPool has no counterpart of task {task!r}"}
    if not os.path.exists(python):
        return {"error": f"--envpool-python {python}: no such file"}
    cmd = [python, WORKER, "--env-id", ENVPOOL[task], "--num-envs", str(num_envs),
           "--threads", str(threads), "--steps", str(steps), "--seed", str(seed)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"EnvPool worker timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"EnvPool worker failed (exit {done.returncode}): {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])
