"""Deterministic rollouts of a policy in a batched env: the one loop behind reference data for
the OOD detectors, the simulation score, recorded logs and the benchmark's true returns."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

PolicyFn = Callable[[np.ndarray], Any]  # raw observations (n, obs_dim) -> actions (n, act_dim)


@dataclass
class Rollout:
    """``steps`` control steps of ``N`` worlds. Arrays are (T, N, ...): what the policy saw and
    did; ``starts[t, i]`` marks the first step of an episode. Finished episodes are listed in
    the order they ended."""

    obs: np.ndarray
    action: np.ndarray
    starts: np.ndarray
    states: dict[str, np.ndarray] = field(default_factory=dict)  # robot-state record, if kept
    episode_world: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    episode_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # last step t
    episode_return: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_success: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def num_steps(self) -> int:
        return self.obs.shape[0] * self.obs.shape[1]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Runs the block with ``n`` torch threads (``n`` <= 0: unchanged). Small per-step batches
    want one: OpenMP threads spinning against the simulator's threads cost 10x on a busy
    2-core machine."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _actions(policy: PolicyFn, obs: np.ndarray) -> np.ndarray:
    a = policy(obs)
    return np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=np.float64)


@torch_threads(1)
def collect(env: Any, policy: PolicyFn, steps: int, seed: int | None = None,
            keep_states: bool = False) -> Rollout:
    """Runs ``policy`` for ``steps`` control steps of every world of ``env`` (a
    :class:`envs.batched.BatchedEnv`, auto-resetting)."""
    obs = env.reset_numpy(seed)
    n = env.num_envs
    out_obs = np.zeros((steps, n, env.observation_size))
    out_act = np.zeros((steps, n, env.action_size))
    starts = np.zeros((steps, n), dtype=bool)
    states: dict[str, list[np.ndarray]] = {}
    ended: dict[str, list[np.ndarray]] = {"world": [], "end": [], "return": [], "success": []}
    first = np.ones(n, dtype=bool)
    for t in range(steps):
        action = _actions(policy, obs)
        out_obs[t], out_act[t], starts[t] = obs, action, first
        if keep_states:
            for k, v in env.robot_state.to_dict().items():
                states.setdefault(k, []).append(np.array(v))
        obs, _, _, _, info = env.step_numpy(action)
        first = np.zeros(n, dtype=bool)
        if "episodes" in info:
            ep = info["episodes"]
            first[ep.env_ids] = True
            for key, value in (("world", ep.env_ids), ("end", np.full(len(ep), t)),
                               ("return", ep.returns), ("success", ep.success)):
                ended[key].append(value)
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in ended.items()}
    return Rollout(out_obs, out_act, starts, {k: np.stack(v) for k, v in states.items()},
                   cat["world"].astype(np.int64), cat["end"].astype(np.int64), cat["return"],
                   cat["success"].astype(bool))


@torch_threads(1)
def first_episodes(env: Any, policy: PolicyFn, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(returns, success) of the first episode of every world: steps until each world has
    finished one (at most the task's episode limit), so short episodes are not over-counted."""
    obs = env.reset_numpy(seed)
    n = env.num_envs
    returns, success = np.full(n, np.nan), np.zeros(n, dtype=bool)
    done = np.zeros(n, dtype=bool)
    while not done.all():
        obs, _, _, _, info = env.step_numpy(_actions(policy, obs))
        if "episodes" in info:
            ep = info["episodes"]
            new = ~done[ep.env_ids]
            ids = ep.env_ids[new]
            returns[ids], success[ids] = ep.returns[new], ep.success[new]
            done[ids] = True
    return returns, success
