"""Real logs cut into short replay windows: the physics state at each window start, the logged
actions, and what the log measured after each step.

A log step ``t`` holds the robot-state record the action ``t`` was computed from; a window
starting at ``t0`` replays actions ``t0 .. t0+H-1`` from the state at ``t0`` and is compared with
the records at ``t0+1 .. t0+H``.

The physics state at a window start comes from the record by inverting the task's own
``robot_state`` (found by probing it, :class:`StateMap`). A floating base (a free joint) is the
exception: a robot measures its orientation and angular velocity (IMU) but not its position or
linear velocity. When the log has them (motion capture, an estimator, a simulated proxy) and
``base_state="log"`` they are used; otherwise the base is placed on its lowest collision geom
(the stance foot, touching a flat floor at height 0) and given the velocity that keeps the
stance feet still (leg odometry). Horizontal position is irrelevant on flat ground and set to 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import mujoco
import numpy as np

from envs.batched import reset_record
from simrl.core.logs import LogError, RealLog, check_compatible, read_logs
from simrl.core.robot_state import quat_rotate_inverse

_QPOS, _QVEL = 1000.5, -2000.25   # probe values: entry i of qpos is _QPOS + i, of qvel _QVEL - i
STANCE_BAND = 0.005               # m: collision geoms this close to the lowest one are in stance


@dataclass
class StateMap:
    """Where the task's robot-state record keeps each ``qpos`` / ``qvel`` entry: ``(field,
    element)``, or None when no record field copies it."""

    qpos: list[tuple[str, int] | None]
    qvel: list[tuple[str, int] | None]
    free_qpos: int | None                # qpos address of the floating base's free joint
    free_qvel: int | None
    task_state_keys: tuple[str, ...]

    @classmethod
    def probe(cls, task: Any) -> "StateMap":
        """Calls ``task.robot_state`` on distinct probe values and finds which record elements
        are copies of which state entries."""
        m = task.model
        _, task_state = reset_record(task)
        qpos = _QPOS + np.arange(m.nq, dtype=np.float64)[None]
        qvel = _QVEL - np.arange(m.nv, dtype=np.float64)[None]
        rs = task.robot_state(qpos, qvel, np.zeros((1, m.nsensordata)), task_state,
                              np.zeros((1, task.action_size)))
        where: dict[float, tuple[str, int]] = {}
        for name, value in rs.to_dict().items():
            for j, v in enumerate(np.asarray(value, dtype=np.float64).reshape(-1)):
                where.setdefault(float(v), (name, j))
        free = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        return cls([where.get(float(v)) for v in qpos[0]], [where.get(float(v)) for v in qvel[0]],
                   int(m.jnt_qposadr[free[0]]) if free else None,
                   int(m.jnt_dofadr[free[0]]) if free else None, tuple(task_state))

    def _base(self, kind: str, i: int) -> bool:
        """Is qpos (kind "q") / qvel ("v") entry ``i`` the floating base's position / linear velocity?"""
        adr = self.free_qpos if kind == "q" else self.free_qvel
        return adr is not None and adr <= i < adr + 3

    def state(self, log: RealLog, t: np.ndarray, model: mujoco.MjModel, base_state: str
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """qpos, qvel at steps ``t`` of ``log``, and notes on what was reconstructed."""
        n, notes = len(t), []
        qpos, qvel = np.zeros((n, model.nq)), np.zeros((n, model.nv))
        need_pos = need_vel = False
        for kind, out, entries in (("q", qpos, self.qpos), ("v", qvel, self.qvel)):
            for i, src in enumerate(entries):
                logged = src is not None and src[0] in log.state
                use_log = logged and not (self._base(kind, i) and base_state == "support")
                if use_log:
                    out[:, i] = log.state[src[0]][t].reshape(n, -1)[:, src[1]]
                elif self._base(kind, i):
                    need_pos, need_vel = need_pos or kind == "q", need_vel or kind == "v"
                elif src is None:
                    raise LogError(f"file {log.path}: field state: the task's robot-state record "
                                   f"does not hold {'qpos' if kind == 'q' else 'qvel'}[{i}]; "
                                   "its physics state cannot be rebuilt from logs")
                else:
                    raise LogError(f"file {log.path}: field state.{src[0]} is missing; replaying "
                                   f"the log needs it (robot-state fields logged: {sorted(log.state)})")
        if need_vel and self.free_qvel is not None and "base_lin_vel" in log.state and base_state == "log":
            quat = qpos[:, self.free_qpos + 3:self.free_qpos + 7]
            conj = quat * np.array([1.0, -1.0, -1.0, -1.0])
            qvel[:, self.free_qvel:self.free_qvel + 3] = quat_rotate_inverse(conj, log.state["base_lin_vel"][t])
            need_vel = False
        if need_pos or need_vel:
            support(model, qpos, qvel, self.free_qpos, self.free_qvel, need_pos, need_vel)
            notes.append("floating base " + " and ".join(
                w for w, on in (("height", need_pos), ("linear velocity", need_vel)) if on)
                + " from the stance feet (lowest collision geoms on the floor, held still)")
        return qpos, qvel, notes


def support(model: mujoco.MjModel, qpos: np.ndarray, qvel: np.ndarray, qadr: int, vadr: int,
            height: bool, velocity: bool) -> None:
    """In place: puts each floating base so its lowest collision geom touches the floor (z = 0),
    horizontal position 0, and/or gives it the linear velocity that keeps the stance geoms (those
    within :data:`STANCE_BAND` of the lowest) still on average (leg odometry)."""
    data = mujoco.MjData(model)
    robot = np.flatnonzero((model.geom_bodyid > 0) & ((model.geom_contype | model.geom_conaffinity) > 0))
    jacp = np.zeros((3, model.nv))
    for i in range(qpos.shape[0]):
        if height:
            qpos[i, qadr:qadr + 3] = 0.0
        data.qpos[:] = qpos[i]
        mujoco.mj_kinematics(model, data)
        bottom = data.geom_xpos[robot, 2] - model.geom_rbound[robot]
        if height:
            qpos[i, qadr + 2] = -bottom.min()
            data.qpos[:] = qpos[i]
            mujoco.mj_kinematics(model, data)
        if velocity:
            mujoco.mj_comPos(model, data)
            v = qvel[i].copy()
            v[vadr:vadr + 3] = 0.0
            stance = robot[bottom <= bottom.min() + STANCE_BAND]
            moving = []
            for g in stance:
                point = data.geom_xpos[g] - np.array([0.0, 0.0, model.geom_rbound[g]])
                mujoco.mj_jac(model, data, jacp, None, point, int(model.geom_bodyid[g]))
                moving.append(jacp @ v)
            qvel[i, vadr:vadr + 3] = -np.mean(moving, axis=0)


@dataclass
class LogWindows:
    """``W`` replay windows of ``H`` steps cut from real logs."""

    qpos: np.ndarray                     # (W, nq) physics state at the window start
    qvel: np.ndarray                     # (W, nv)
    actions: np.ndarray                  # (W, H, na) logged actions replayed
    past_ctrl: np.ndarray                # (W, L+1, nu) controls of the steps before, newest first
    last_action: np.ndarray              # (W, na) the action before the window
    task_state: dict[str, np.ndarray]    # (W, ...) each
    targets: dict[str, np.ndarray]       # field -> (W, H, k) what the log measured after each step
    next_qpos: np.ndarray                # (W, H, nq) physics state rebuilt from the log after each step
    next_qvel: np.ndarray                # (W, H, nv)
    obs: np.ndarray                      # (W, H, obs_dim) the observations the logged actions were computed from
    source: list[tuple[str, int]] = field(default_factory=list)  # (log file, start step)

    def __len__(self) -> int:
        return self.qpos.shape[0]

    @property
    def steps(self) -> int:
        return self.actions.shape[1]


def check_logs(logs: Sequence[RealLog], task: Any) -> None:
    """LogError naming the file and field unless every log is of ``task``'s robot and actions."""
    robot = task.cfg.model or task.name
    for log in logs:
        check_compatible(log, task=task.name, action_names=task.action_names)
        if log.meta.robot not in (robot, task.name):
            raise LogError(f"file {log.path}: field robot is {log.meta.robot!r}, expected {robot!r} "
                           f"(task {task.name})")
        rs, _ = reset_record(task)
        shapes = {k: np.asarray(v).shape[1:] for k, v in rs.to_dict().items()}
        for name, value in log.state.items():
            if name in shapes and value.shape[1:] != shapes[name]:
                raise LogError(f"file {log.path}: field state.{name} has shape {value.shape[1:]} per "
                               f"step, the task's record has {shapes[name]} (another robot?)")


def _cut(log: RealLog, starts: np.ndarray, steps: int, lookback: int, task: Any, smap: StateMap,
         fields: Sequence[str], base_state: str) -> tuple[LogWindows, list[str]]:
    """The windows of ``log`` starting at ``starts``."""
    n, m = len(starts), task.model
    qpos, qvel, notes = smap.state(log, starts, m, base_state)
    idx = starts[:, None] + np.arange(steps)[None]
    task_state = {}
    for key in smap.task_state_keys:
        if key not in log.state:
            raise LogError(f"file {log.path}: field state.{key} is missing (the task's state: "
                           f"{list(smap.task_state_keys)})")
        task_state[key] = log.state[key][starts]
    last = (log.state["last_action"][starts] if "last_action" in log.state
            else log.action[np.maximum(starts - 1, 0)] * (starts > 0)[:, None])
    rs = task.robot_state(qpos, qvel, np.zeros((n, m.nsensordata)), task_state, last)
    past = np.zeros((n, lookback + 1, m.nu))
    for j in range(lookback + 1):
        ts = {k: v.copy() for k, v in task_state.items()}
        past[:, j] = task.action_to_ctrl(log.action[np.maximum(starts - 1 - j, 0)], rs, ts)
    targets = {f: log.state[f][idx + 1].reshape(n, steps, -1) for f in fields}
    nq, nv, _ = smap.state(log, (idx + 1).reshape(-1), m, base_state)
    return LogWindows(qpos, qvel, log.action[idx], past, last, task_state, targets,
                      nq.reshape(n, steps, -1), nv.reshape(n, steps, -1), log.obs[idx],
                      [(log.path, int(s)) for s in starts]), notes


def concat(parts: Sequence[LogWindows]) -> LogWindows:
    """One set of windows from several."""
    cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    return LogWindows(cat([p.qpos for p in parts]), cat([p.qvel for p in parts]),
                      cat([p.actions for p in parts]), cat([p.past_ctrl for p in parts]),
                      cat([p.last_action for p in parts]),
                      {k: cat([p.task_state[k] for p in parts]) for k in parts[0].task_state},
                      {k: cat([p.targets[k] for p in parts]) for k in parts[0].targets},
                      cat([p.next_qpos for p in parts]), cat([p.next_qvel for p in parts]),
                      cat([p.obs for p in parts]), [s for p in parts for s in p.source])


def select(w: LogWindows, idx: np.ndarray) -> LogWindows:
    """The windows ``idx`` of ``w``."""
    return LogWindows(w.qpos[idx], w.qvel[idx], w.actions[idx], w.past_ctrl[idx], w.last_action[idx],
                      {k: v[idx] for k, v in w.task_state.items()},
                      {k: v[idx] for k, v in w.targets.items()}, w.next_qpos[idx], w.next_qvel[idx],
                      w.obs[idx], [w.source[i] for i in idx])


@dataclass
class WindowSplit:
    """Fitted and held-out windows, the fields compared and how the state was rebuilt."""

    fit: LogWindows
    heldout: LogWindows
    fields: tuple[str, ...]
    notes: list[str]
    logs: list[str]
    log_steps: int                       # control steps in all logs together
    control_dt: float


def load_windows(path: str | Path | Sequence[str | Path], task: Any, *, windows: int, steps: int,
                 lookback: int = 0, fields: Sequence[str] = ("joint_pos", "joint_vel"),
                 base_state: str = "log", holdout: float = 0.25, seed: int = 0) -> WindowSplit:
    """Reads the logs at ``path`` (a directory of ``*.mcap``, a file or a list), checks they are
    of ``task``, and cuts non-overlapping windows of ``steps`` control steps (starting at least
    ``lookback`` steps in, for latency): up to ``windows`` fitted and ``windows`` held out (whole
    logs when there are several, else the end of the log)."""
    logs = read_logs(path)
    check_logs(logs, task)
    present = [f for f in fields if all(f in log.state for log in logs)]
    if not present:
        raise LogError(f"file {logs[0].path}: field state: none of the fields {list(fields)} is logged "
                       f"(logged: {sorted(logs[0].state)})")
    smap = StateMap.probe(task)
    every = max(2, int(round(1.0 / holdout)))
    held_logs = {i for i in range(len(logs)) if (i + 1) % every == 0} or ({len(logs) - 1} if len(logs) > 1 else set())
    fit_parts, held_parts, notes = [], [], []
    for i, log in enumerate(logs):
        starts = np.arange(lookback, len(log) - steps, steps)
        if not len(starts):
            continue
        if len(logs) > 1:
            parts = [(held_parts if i in held_logs else fit_parts, starts)]
        else:
            k = max(1, int(round(holdout * len(starts))))
            parts = [(fit_parts, starts[:-k]), (held_parts, starts[-k:])]
        for bucket, s in parts:
            if len(s):
                w, n = _cut(log, s, steps, lookback, task, smap, present, base_state)
                bucket.append(w)
                notes += [x for x in n if x not in notes]
    if not fit_parts or not held_parts:
        need = lookback + steps + 1
        short = ", ".join(f"{Path(log.path).name} {len(log)}" for log in logs[:5])
        raise LogError(f"file {logs[0].path}: field step: logs too short to identify anything: a window "
                       f"needs {need} steps ({steps} replayed + {lookback} of latency + 1) and one fitted "
                       f"plus one held-out window are needed; steps per log: {short}")
    rng = np.random.default_rng(seed)
    fit, held = concat(fit_parts), concat(held_parts)
    fit = select(fit, np.sort(rng.permutation(len(fit))[:windows]))
    held = select(held, np.sort(rng.permutation(len(held))[:windows]))
    return WindowSplit(fit, held, tuple(present), notes, [log.path for log in logs],
                       int(sum(len(log) for log in logs)), task.cfg.control_dt)


__all__ = ["StateMap", "LogWindows", "WindowSplit", "load_windows", "check_logs", "support"]
