"""Replaying log windows in the simulator step by step, and the prediction error every method
reports (the same normalized error system identification minimizes).

:class:`WindowEnv` starts every world from a log window's state (:meth:`envs.batched.BatchedEnv.start_from`,
the task's nominal physics unless ``dr`` is given) and steps it with whatever action it is
handed; the delta-action model trains in it and every method replays held-out windows with
:func:`replay` (an optional action transform: the delta-action model; an optional state
correction on the env: the delta-dynamics model).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from envs.batched import BatchedEnv
from simrl.align.data import LogWindows

BAD_LOSS = 1e6                           # score of a diverged replay
MAX_WORLDS = 128                         # worlds per replay batch (each holds a model copy: 11 MB for go1)
# (observation, logged action) -> the action the simulator gets
ActionFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def field_scales(w: LogWindows, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-element standard deviation of each field over the windows' logged steps."""
    return {f: w.targets[f].reshape(-1, w.targets[f].shape[-1]).std(axis=0) for f in fields}


def field_weights(scale: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """1 / std per element (0 for elements that never vary)."""
    return {f: np.where(s > 1e-9, 1.0 / np.maximum(s, 1e-9), 0.0) for f, s in scale.items()}


def normalized_residuals(sim: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                         weight: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Residuals of replays ``sim[f]`` (n, W, H, k) against ``targets[f]`` (W, H, k), each
    element divided by its std and each field counting equally: (n, R) with ``(r**2).sum(1)``
    the loss, and the per-field mean squared normalized errors (n,). Diverged values count as
    :data:`BAD_LOSS`."""
    res, per_field = [], {}
    fields = list(weight)
    for f in fields:
        err = (sim[f] - targets[f][None]) * weight[f]
        err = np.where(np.isfinite(err), err, math.sqrt(BAD_LOSS))
        err = np.clip(err, -math.sqrt(BAD_LOSS), math.sqrt(BAD_LOSS))
        W, H = targets[f].shape[:2]
        used = max(1, int((weight[f] > 0).sum()))
        flat = err.reshape(err.shape[0], -1) / math.sqrt(used * W * H)
        per_field[f] = (flat ** 2).sum(axis=1)
        res.append(flat / math.sqrt(len(fields)))
    return np.concatenate(res, axis=1), per_field


class WindowEnv:
    """``len(windows)`` worlds (or ``num_envs``, drawing windows at random) replaying log
    windows in the task's simulator (nominal physics, or fixed ``dr`` such as a proxy's
    :meth:`~envs.perturbation.Perturbation.dr`; drawn once): :meth:`start` puts each world at a window's first state,
    :meth:`step` applies actions; the robot-state record after each step is
    ``env.robot_state``."""

    def __init__(self, task: Any, windows: LogWindows, num_envs: int | None = None, seed: int = 0,
                 dr: Any = "none", threads: int = 0):
        self.task, self.w = task, windows
        self.num_envs = num_envs or len(windows)
        self.env = BatchedEnv(task, self.num_envs, dr=dr, autoreset=False, seed=seed,
                              nthread=threads or None)
        self.params = self.env.distribution.sample(self.num_envs, self.env.rng)
        self.rng = np.random.default_rng(seed)
        self.idx = np.zeros(self.num_envs, dtype=np.int64)
        self.t = 0

    def start(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Every world at the start of window ``idx[i]`` (default: all windows in order when
        there are as many worlds, else random ones); returns the observations."""
        w = self.w
        if idx is None:
            idx = (np.arange(self.num_envs) if self.num_envs == len(w)
                   else self.rng.integers(0, len(w), self.num_envs))
        self.idx, self.t = np.asarray(idx), 0
        return self.env.start_from(self.params, w.qpos[idx], w.qvel[idx], w.past_ctrl[idx],
                                   {k: v[idx] for k, v in w.task_state.items()}, w.last_action[idx])

    @property
    def logged_action(self) -> np.ndarray:
        """(n, na) the logged action of the current step of every world."""
        return self.w.actions[self.idx, self.t]

    def step(self, action: np.ndarray) -> np.ndarray:
        """One control step; returns the observation (episode ends and rewards are ignored)."""
        obs, *_ = self.env.step_numpy(action)
        self.t += 1
        return obs

    def measured(self, fields: Sequence[str]) -> dict[str, np.ndarray]:
        """The fields of the record after the last step, flattened (n, k)."""
        rs = self.env.robot_state.to_dict()
        return {f: rs[f].reshape(len(rs[f]), -1) for f in fields}

    def close(self) -> None:
        self.env.close()


def batches(n: int, size: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` items in batches of exactly ``min(n, size)`` indices (default size
    :data:`MAX_WORLDS`; the last batch padded with its last item) and the mask of each batch's
    real entries."""
    width = min(n, size or MAX_WORLDS)
    out = []
    for start in range(0, n, width):
        idx = np.arange(start, start + width)
        out.append((np.minimum(idx, n - 1), idx < n))
    return out


def replay(task: Any, windows: LogWindows, fields: Sequence[str], act: ActionFn | None = None,
           correct: Any = None, threads: int = 0) -> dict[str, np.ndarray]:
    """Replays every window once (its logged actions, through ``act(obs, action)`` when given,
    with ``correct`` as the env's state correction, see :attr:`BatchedEnv.state_correction`),
    :data:`MAX_WORLDS` windows at a time; returns ``field -> (W, H, k)``."""
    chunks = batches(len(windows))
    env = WindowEnv(task, windows, num_envs=len(chunks[0][0]), threads=threads)
    env.env.state_correction = correct
    out = {f: np.zeros((len(windows), windows.steps) + windows.targets[f].shape[2:]) for f in fields}
    for idx, real in chunks:
        obs = env.start(idx)
        for k in range(windows.steps):
            a = env.logged_action
            obs = env.step(a if act is None else act(obs, a))
            for f, v in env.measured(fields).items():
                out[f][idx[real], k] = v[real]
    env.close()
    return out


def prediction_error(sims: Sequence[Mapping[str, np.ndarray]], windows: LogWindows,
                     scale: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The normalized open-loop prediction error of each replay in ``sims`` (each ``field ->
    (W, H, k)``) on ``windows``: (n,) losses and the per-field errors."""
    weight = field_weights(scale)
    stacked = {f: np.stack([s[f] for s in sims]) for f in weight}
    r, per_field = normalized_residuals(stacked, windows.targets, weight)
    return (r ** 2).sum(axis=1), per_field


__all__ = ["WindowEnv", "replay", "batches", "MAX_WORLDS", "prediction_error", "field_scales", "field_weights",
           "normalized_residuals", "BAD_LOSS"]
