"""Transitions a world model learns from: collected in a batched env or read from real logs.

A :class:`Transitions` holds flat arrays, one row per control step: observation, action, next
observation, reward, termination flag, episode id and the step's index in its episode. Rows of
one episode are contiguous and in time order, so open-loop segments can be cut from them.
Saved as ``.npz`` (arrays plus a JSON header).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

import envs
import policies
from policies.base import RandomController, StandController
from simrl.core.logs import LogError, check_compatible, read_logs
from simrl.core.robot_state import RobotState

ARRAYS = ("obs", "action", "next_obs", "reward", "terminated", "episode", "step")


@dataclass
class Transitions:
    """One row per control step (T rows)."""

    task: str
    observation_names: list[str]
    action_names: list[str]
    source: str                  # "sim" (collected here) or a real log's source
    behaviour: str               # what chose the actions: random, stand, a checkpoint, a log policy id
    obs: np.ndarray              # (T, obs_dim) float32
    action: np.ndarray           # (T, act_dim) float32, policy units [-1, 1]
    next_obs: np.ndarray         # (T, obs_dim) float32 (the final observation at episode ends)
    reward: np.ndarray           # (T,) float32
    terminated: np.ndarray       # (T,) bool: the episode ended by the task after this step
    episode: np.ndarray          # (T,) int64
    step: np.ndarray             # (T,) int64, index in the episode (0 = first step)

    def __post_init__(self) -> None:
        n = len(self.obs)
        for name in ARRAYS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"transitions: {name} has {len(getattr(self, name))} rows, obs has {n}")
        if n == 0:
            raise ValueError("transitions: no rows")
        if self.obs.shape[1] != len(self.observation_names) or self.action.shape[1] != len(self.action_names):
            raise ValueError("transitions: array widths differ from the observation/action names")
        for name in ("obs", "action", "next_obs", "reward"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"transitions: {name} has NaN or inf")

    def __len__(self) -> int:
        return len(self.obs)

    @property
    def starts(self) -> np.ndarray:
        """Observations at the first step of each episode: where dream episodes begin."""
        return self.obs[self.step == 0]

    def select(self, rows: np.ndarray) -> "Transitions":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw.update({name: getattr(self, name)[rows] for name in ARRAYS})
        return Transitions(**kw)

    def split(self, fraction: float, seed: int = 0) -> tuple["Transitions", "Transitions"]:
        """(kept, held out): whole episodes, about ``fraction`` of them held out."""
        ids = np.unique(self.episode)
        if len(ids) < 2:
            raise ValueError("transitions: need at least 2 episodes to hold some out")
        rng = np.random.default_rng(seed)
        k = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
        held = np.isin(self.episode, rng.choice(ids, k, replace=False))
        return self.select(np.flatnonzero(~held)), self.select(np.flatnonzero(held))

    def segments(self, horizon: int) -> np.ndarray:
        """(S, horizon) row indices of every run of ``horizon`` consecutive steps of one episode."""
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        n = len(self)
        starts = np.arange(max(0, n - horizon + 1))
        rows = starts[:, None] + np.arange(horizon)
        if not len(rows):
            return rows
        same = (self.episode[rows] == self.episode[rows[:, :1]]).all(1)
        consecutive = (np.diff(self.step[rows], axis=1) == 1).all(1)
        return rows[same & consecutive]

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"task": self.task, "observation_names": self.observation_names,
                  "action_names": self.action_names, "source": self.source, "behaviour": self.behaviour}
        with open(path, "wb") as f:
            np.savez_compressed(f, header=np.array(json.dumps(header)),
                                **{name: getattr(self, name) for name in ARRAYS})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Transitions":
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            return cls(**header, **{name: data[name] for name in ARRAYS})


def concatenate(parts: Iterable[Transitions]) -> Transitions:
    """One dataset from several of the same task (episode ids are renumbered)."""
    parts = list(parts)
    first, offset, episodes = parts[0], 0, []
    for p in parts:
        if (p.task, p.observation_names, p.action_names) != (first.task, first.observation_names,
                                                             first.action_names):
            raise ValueError("transitions of different tasks or observation/action names")
        _, inverse = np.unique(p.episode, return_inverse=True)
        episodes.append(inverse + offset)
        offset += inverse.max() + 1
    arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in ARRAYS}
    arrays["episode"] = np.concatenate(episodes)
    return Transitions(first.task, first.observation_names, first.action_names,
                       ",".join(sorted({p.source for p in parts})),
                       ",".join(sorted({p.behaviour for p in parts})), **arrays)


# -- collecting in simulation -----------------------------------------------------------------
Behaviour = Callable[[np.ndarray, RobotState], np.ndarray]


def make_behaviour(spec: str, action_size: int, task: Any, seed: int = 0,
                   action_noise: float = 0.0) -> Behaviour:
    """``spec``: ``random`` or ``stand`` (``policies.base``), or a checkpoint path; plus Gaussian
    ``action_noise`` (std, policy units) for exploration around a checkpoint."""
    rng = np.random.default_rng(seed + 1)
    if spec == "random":
        controller = RandomController(action_size, seed)
        base: Behaviour = lambda obs, rs: controller(rs)
    elif spec == "stand":
        stand = StandController(action_size)
        base = lambda obs, rs: stand(rs)
    else:
        policy = policies.load(spec, task=task)
        base = lambda obs, rs: policy(obs.astype(np.float32)).astype(np.float64)
    if action_noise <= 0:
        return base
    return lambda obs, rs: np.clip(base(obs, rs) + action_noise * rng.standard_normal(
        (len(obs), action_size)), -1.0, 1.0)


def collect(task: str, steps: int, behaviour: str = "random", num_envs: int = 16, seed: int = 0,
            dr: str = "none", action_noise: float = 0.0) -> Transitions:
    """About ``steps`` transitions of ``task`` (nominal physics unless ``dr``) under
    ``behaviour`` (see :func:`make_behaviour`), from ``num_envs`` worlds with auto-reset."""
    env = envs.make(task, num_envs, dr=dr, seed=seed)
    act = make_behaviour(behaviour, env.action_size, env.task, seed, action_noise)
    obs = env.reset_numpy()
    episode = np.arange(num_envs)
    t = np.zeros(num_envs, dtype=np.int64)
    next_id = num_envs
    rows: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    for _ in range(max(1, -(-steps // num_envs))):
        action = act(obs, env.robot_state)
        new_obs, reward, terminated, truncated, info = env.step_numpy(action)
        done = terminated | truncated
        next_obs = np.where(done[:, None], info["final_obs"], new_obs) if done.any() else new_obs
        for name, value in (("obs", obs), ("action", np.clip(action, -1.0, 1.0)), ("next_obs", next_obs),
                            ("reward", reward), ("terminated", terminated), ("episode", episode),
                            ("step", t)):
            rows[name].append(np.array(value))
        t = np.where(done, 0, t + 1)
        episode = episode.copy()
        episode[done] = next_id + np.arange(int(done.sum()))
        next_id += int(done.sum())
        obs = new_obs
    env.close()
    # world-major order keeps each episode's rows contiguous and in time order
    arrays = {name: np.stack(v, axis=1).reshape(num_envs * len(v), *np.shape(v[0])[1:])
              for name, v in rows.items()}
    dtypes = {"obs": np.float32, "action": np.float32, "next_obs": np.float32, "reward": np.float32,
              "terminated": bool, "episode": np.int64, "step": np.int64}
    label = behaviour if action_noise <= 0 else f"{behaviour}+noise{action_noise:g}"
    return Transitions(task, list(env.task.observation_names), list(env.task.action_names), "sim",
                       label, **{k: v.astype(dtypes[k]) for k, v in arrays.items()})


# -- reading real logs ------------------------------------------------------------------------
ROBOT_STATE_FIELDS = tuple(f.name for f in fields(RobotState) if f.name != "extras")


def _robot_states(state: dict[str, np.ndarray]) -> RobotState | None:
    """The logged robot-state record as one batched :class:`RobotState`, or None when the log
    lacks the required fields."""
    if not {"joint_pos", "joint_vel", "command", "last_action"} <= set(state):
        return None
    kw = {name: state[name] for name in ROBOT_STATE_FIELDS if name in state}
    extras = {k: v for k, v in state.items() if k not in ROBOT_STATE_FIELDS}
    return RobotState(**kw, extras=extras)


def from_logs(paths: str | os.PathLike | Iterable[str | os.PathLike], task: str | None = None
              ) -> Transitions:
    """Transitions of real logs (:mod:`simrl.core.logs`): the state is the logged observation; the
    action of step t leads to the observation of step t + 1.

    Reward and termination are recomputed with the task's functions from the logged
    robot-state record when it has one (``joint_pos``, ``joint_vel``, ``command``,
    ``last_action``; the planar tasks need the root x in ``joint_pos``); otherwise they are
    read from ``state["reward"]`` (and ``state["terminated"]`` if present), aligned with the
    action row. A log with neither is an error.
    """
    logs = read_logs(paths)
    name = task or logs[0].meta.task
    task_obj = envs.make_task(name)
    parts = []
    for i, log in enumerate(logs):
        check_compatible(log, task=name, observation_names=task_obj.observation_names,
                         action_names=task_obj.action_names)
        if len(log) < 2:
            raise LogError(f"file {log.path}: field step: a log needs 2 steps for one transition")
        action = np.clip(log.action[:-1], -1.0, 1.0)
        rs = _robot_states(log.state)
        if rs is not None:
            prev, nxt = rs.select(np.arange(len(log) - 1)), rs.select(np.arange(1, len(log)))
            ctrl = task_obj.action_to_ctrl(action, prev, {})
            reward, terminated, _ = task_obj.reward(prev, nxt, action, ctrl)
        elif "reward" in log.state:
            reward = log.state["reward"].reshape(len(log))[:-1]
            terminated = log.state.get("terminated", np.zeros(len(log))).reshape(len(log))[:-1]
        else:
            raise LogError(f"file {log.path}: field state: no robot-state record (joint_pos, "
                           "joint_vel, command, last_action) to recompute rewards, and no reward")
        n = len(log) - 1
        parts.append(Transitions(
            name, list(task_obj.observation_names), list(task_obj.action_names), log.meta.source,
            log.meta.policy_id, log.obs[:-1].astype(np.float32), action.astype(np.float32),
            log.obs[1:].astype(np.float32), np.asarray(reward, dtype=np.float32),
            np.asarray(terminated, dtype=bool), np.full(n, i, dtype=np.int64),
            np.arange(n, dtype=np.int64)))
    return concatenate(parts)


def load_data(paths: Iterable[str | os.PathLike], task: str | None = None) -> Transitions:
    """Transitions from ``.npz`` files (:meth:`Transitions.save`) and real logs (``.mcap``
    files or directories of them), concatenated."""
    parts = []
    for p in map(Path, paths):
        if p.suffix == ".npz":
            parts.append(Transitions.load(p))
        elif p.suffix == ".mcap" or p.is_dir():
            parts.append(from_logs(p, task))
        else:
            raise ValueError(f"{p}: data must be a .npz of transitions, an .mcap log or a directory of logs")
    if not parts:
        raise ValueError("no data given")
    return concatenate(parts)
