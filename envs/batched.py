"""N worlds stepped together.

Each world owns a copy of the task's MjModel, so its randomized physics never leaks into another
world. One control step is one ``mujoco.rollout`` call over all worlds (C threads, one model per
world, the control held over the task's physics substeps); observations, rewards, latency,
noise and pushes are numpy operations over the batch. Python loops over worlds happen only at
resets, where each resetting world gets its new parameters written into its model.

:meth:`BatchedEnv.step_numpy` is the numpy core; ``reset`` and ``step`` are the torch adapter
of :class:`envs.wrappers.VecEnv` (tensors in and out, on ``device``).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import mujoco
import numpy as np
from mujoco import rollout

from envs.randomization import ParameterSpace, ParamRange, make_ranges
from envs.distributions import Distribution, Fixed, RandomizationError, Uniform
from simrl.core.robot_state import RobotState
from envs.tasks import Task
from envs.wrappers import SimEnv, Step, to_numpy

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS


def _state_slices(model: mujoco.MjModel) -> tuple[int, slice, slice]:
    """Size of the full physics state and where qpos and qvel sit in it."""
    offset, slices = 0, {}
    for bit in mujoco.mjtState.__members__.values():
        value = int(bit)
        if value & (value - 1) or not value & int(STATE_SPEC):  # composite or not included
            continue
        size = mujoco.mj_stateSize(model, value)
        slices[value] = slice(offset, offset + size)
        offset += size
    return (offset, slices[int(mujoco.mjtState.mjSTATE_QPOS)],
            slices[int(mujoco.mjtState.mjSTATE_QVEL)])


@dataclass
class EpisodeBatch:
    """Episodes that finished in one step: what DORAEMON and the logger consume."""

    env_ids: np.ndarray      # (k,) which worlds
    returns: np.ndarray      # (k,)
    lengths: np.ndarray      # (k,)
    success: np.ndarray      # (k,) bool
    terminated: np.ndarray   # (k,) bool: ended by the task, not by the time limit
    params: np.ndarray       # (k, d) the parameter vector each episode ran with
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (k,) per-step mean of each task metric

    def __len__(self) -> int:
        return len(self.env_ids)


class _RolloutPhysics:
    """Steps all worlds with ``mujoco.rollout`` in a persistent C thread pool. Each call starts
    with a zero solver warm start; carrying it (as a persistent ``mj_step`` loop does) changes
    neither solver iterations nor the error against a converged solve (``simrl bench warmstart``,
    docs/results/warmstart.json)."""

    def __init__(self, models: list[mujoco.MjModel], substeps: int, ncontrol: int,
                 control_spec: int, nthread: int):
        self.models, self.substeps, self.control_spec = models, substeps, control_spec
        n, m = len(models), models[0]
        nthread = max(0, min(nthread, n)) if n >= 8 else 0
        self.pool = rollout.Rollout(nthread=nthread)
        self.datas = [mujoco.MjData(m) for _ in range(max(1, nthread))]
        nstate = mujoco.mj_stateSize(m, int(STATE_SPEC))
        self.out_state = np.zeros((n, substeps, nstate))
        self.out_sensor = np.zeros((n, substeps, m.nsensordata))
        self.control = np.zeros((n, substeps, ncontrol))

    def step(self, state: np.ndarray, control: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.control[...] = control[:, None, :]
        self.pool.rollout(self.models, self.datas, state, self.control, control_spec=self.control_spec,
                          skip_checks=True, nstep=self.substeps, state=self.out_state,
                          sensordata=self.out_sensor)
        return self.out_state[:, -1], self.out_sensor[:, -1]

    def reset(self, idx: np.ndarray) -> None:
        """Rollouts start without solver warm-start; nothing to clear."""

    def close(self) -> None:
        self.pool.close()


class _SerialPhysics:
    """Steps worlds one after another with ``mj_step``: the single-env (Gymnasium) path."""

    def __init__(self, models: list[mujoco.MjModel], substeps: int, control_spec: int):
        self.models, self.substeps, self.control_spec = models, substeps, control_spec
        self.datas = [mujoco.MjData(m) for m in models]
        self.out_state = np.zeros((len(models), mujoco.mj_stateSize(models[0], int(STATE_SPEC))))
        self.out_sensor = np.zeros((len(models), models[0].nsensordata))

    def step(self, state: np.ndarray, control: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for i, (m, d) in enumerate(zip(self.models, self.datas)):
            mujoco.mj_setState(m, d, state[i], int(STATE_SPEC))
            mujoco.mj_setState(m, d, control[i], self.control_spec)
            mujoco.mj_step(m, d, self.substeps)
            mujoco.mj_getState(m, d, self.out_state[i], int(STATE_SPEC))
            self.out_sensor[i] = d.sensordata
        return self.out_state, self.out_sensor

    def reset(self, idx: np.ndarray) -> None:
        """Clears the solver warm-start so a reset world does not remember its last episode."""
        for i in idx:
            mujoco.mj_resetData(self.models[i], self.datas[i])

    def close(self) -> None:
        pass


def max_delay_steps(space: ParameterSpace, task: Task, kind: str) -> int:
    """The largest delay (whole control steps) a ``latency``-like kind of ``space`` can draw."""
    high = space.high[space.env_index[kind]]
    if high.size and high.max() > task.cfg.max_episode_steps:
        raise RandomizationError(f"{kind}: high {high.max():g} control steps is longer than an "
                                 f"episode ({task.cfg.max_episode_steps} steps); {kind} is "
                                 "counted in whole control steps")
    return int(np.ceil(high.max())) if high.size else 0


def command_draws(task: Task, seed: int, step: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """New commands and resample intervals for ``n`` worlds at control step ``step`` (counted
    from the env's construction or last ``reset(seed)``), from a generator seeded ``(seed,
    step)``: the worlds whose command timer ran out take their rows, so every backend draws the
    same commands (the warp env draws them ahead in blocks, not knowing which worlds are due)."""
    rng = np.random.default_rng([seed, step])
    return task.sample_commands(rng, n), task.command_resample_steps(rng, n)


def reset_record(task: Task) -> tuple[RobotState, dict[str, np.ndarray]]:
    """The robot-state record and task state of one world at a reset, without physics (zero
    sensor data): which fields a task's record has."""
    init = task.reset(np.random.default_rng(0), 1)
    rs = task.robot_state(init.qpos, init.qvel, np.zeros((1, task.model.nsensordata)),
                          init.task_state, np.zeros((1, task.action_size)))
    return rs, init.task_state


def resolve_distribution(dr: str | Mapping | Distribution | None, task: Task
                         ) -> tuple[list[ParamRange], Distribution]:
    """Turns ``dr`` (``"none"``, ``"uniform"``, ``{name: (low, high[, nominal])}`` or a
    distribution) into the parameter ranges and the distribution that samples them."""
    defaults = make_ranges(task.cfg.randomization, task.model)
    if dr is None or (isinstance(dr, str) and dr == "none"):
        return defaults, Fixed([r.name for r in defaults], [r.nominal for r in defaults])
    if isinstance(dr, str):
        if dr != "uniform":
            raise RandomizationError(f"unknown dr {dr!r}: use 'none', 'uniform', a mapping of ranges "
                                     "or a distribution object (e.g. DORAEMON's)")
        return defaults, Uniform.from_ranges(defaults)
    if isinstance(dr, Mapping):
        ranges = make_ranges(dict(dr), task.model)
        return ranges, Uniform.from_ranges(ranges)
    if not all(hasattr(dr, a) for a in ("names", "sample", "log_prob", "entropy")):
        raise RandomizationError(f"dr must be 'none', 'uniform', a mapping {{param: [low, high]}} or a "
                                 f"distribution object, got {type(dr).__name__}")
    by_name = {r.name: r for r in defaults}
    ranges = []
    for i, name in enumerate(dr.names):
        if name in by_name:
            ranges.append(by_name[name])
        elif hasattr(dr, "low") and hasattr(dr, "high"):
            ranges.append(make_ranges({name: (dr.low[i], dr.high[i])}, task.model)[0])
        else:
            raise RandomizationError(f"parameter {name!r} is not in task {task.name}'s ranges; "
                                     "give the distribution low/high bounds")
    return ranges, dr


def init_randomization(env: SimEnv, task: Task, dr: str | Mapping | Distribution | None, seed: int,
                       external_forces: bool) -> None:
    """What the CPU and the Warp env set up alike: the DR distribution and parameter space, the
    seeded generator, the body pushes and external forces act on (``root_body``, -1 if none)."""
    ranges, env.distribution = resolve_distribution(dr, task)
    env.space = ParameterSpace(ranges, task.model)
    env.rng = np.random.default_rng(seed)
    env.seed = seed
    env.root_body = (mujoco.mj_name2id(task.model, mujoco.mjtObj.mjOBJ_BODY, task.root_body)
                     if task.root_body else -1)
    env.has_push = bool(env.space.env_index["push"])
    if env.has_push and env.root_body < 0:
        raise RandomizationError(f"task {task.name} has no root body to push")
    if external_forces and env.root_body < 0:
        raise ValueError(f"task {task.name} has no root body for external forces")
    env.use_xfrc = env.has_push or external_forces


class BatchedEnv(SimEnv):
    """``num_envs`` randomized worlds of one task with auto-reset.

    ``step`` returns ``(obs, reward, terminated, truncated, info)``. ``info["episodes"]`` is an
    :class:`EpisodeBatch` of the episodes that just finished (return, length, success flag and
    parameter vector), and ``info["final_obs"]`` holds their last observations (rows of
    finished worlds; the returned ``obs`` of those rows already belongs to the next episode).
    ``info["metrics"]`` holds the step's per-world task metrics (before any reset). Tasks whose
    :meth:`~envs.tasks.base.Task.command_resample_steps` says so get new commands during the
    episode (drawn by :func:`command_draws`).
    """

    def __init__(self, task: Task, num_envs: int, device: Any = "cpu",
                 dr: str | Mapping | Distribution | None = "none", seed: int = 0,
                 nthread: int | None = None, physics: str = "rollout", autoreset: bool = True,
                 external_forces: bool = False):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.task, self.num_envs, self.autoreset = task, num_envs, autoreset
        self.device = device
        self.model = task.model
        init_randomization(self, task, dr, seed, external_forces)

        m, n = self.model, num_envs
        self.models = [copy.copy(m) for _ in range(n)]
        self.nstate, self._qpos, self._qvel = _state_slices(m)
        control_spec = int(mujoco.mjtState.mjSTATE_CTRL)
        self.ncontrol = m.nu
        if self.use_xfrc:
            control_spec |= int(mujoco.mjtState.mjSTATE_XFRC_APPLIED)
            self.ncontrol += 6 * m.nbody
        if physics == "rollout":
            self.physics = _RolloutPhysics(self.models, task.substeps, self.ncontrol, control_spec,
                                           os.cpu_count() if nthread is None else nthread)
        elif physics == "serial":
            self.physics = _SerialPhysics(self.models, task.substeps, control_spec)
        else:
            raise ValueError(f"unknown physics backend {physics!r}: use 'rollout' or 'serial'")

        self.max_latency = max_delay_steps(self.space, task, "latency")
        # observation latency: the record the policy sees is built from the physics state and
        # sensors of obs_latency steps ago (command and last action are current)
        self.max_obs_latency = max_delay_steps(self.space, task, "obs_latency")
        self.meas_history = (np.zeros((n, self.max_obs_latency + 1, self.nstate + m.nsensordata))
                             if self.max_obs_latency else None)
        self.obs_latency = np.zeros(n, dtype=np.int64)
        self.command_timer = np.full(n, np.inf)  # control steps until a world's next command draw
        self.step_count = 0                      # control steps since the last seeding (command draws)
        self.state = np.zeros((n, self.nstate))
        self.sensordata = np.zeros((n, m.nsensordata))
        self.ctrl_history = np.zeros((n, self.max_latency + 1, m.nu))
        self.control = np.zeros((n, self.ncontrol))
        self.params = np.zeros((n, self.space.dim))
        self.latency = np.zeros(n, dtype=np.int64)
        self.obs_noise = np.zeros(n)
        self.action_noise = np.zeros(n)
        self.push_force = np.zeros(n)
        self.push_phase = np.zeros(n, dtype=np.int64)
        self.push_dir = np.zeros((n, 2))
        self.last_action = np.zeros((n, task.action_size))
        self.ep_return = np.zeros(n)
        self.ep_length = np.zeros(n, dtype=np.int64)
        self.metric_sums: dict[str, np.ndarray] = {}
        self.task_state: dict[str, np.ndarray] = {}
        self.obs_noise_scale = task.obs_noise_scale()
        self._scratch = mujoco.MjData(m)
        self._arange = np.arange(n)
        self._rs: RobotState | None = None
        # (n, 3) world-frame force on the root body, applied each step (needs external_forces=True).
        self.external_force: np.ndarray | None = None
        # A learned correction of the simulator (simrl align --method delta-dynamics):
        # ``(prev_record, action, qpos, qvel) -> (qpos, qvel)`` after each control step's physics,
        # before rewards and terminations (sensor data is not recomputed).
        self.state_correction: Callable[[RobotState, np.ndarray, np.ndarray, np.ndarray],
                                        tuple[np.ndarray, np.ndarray]] | None = None

    # -- properties --------------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        return self.space.names

    @property
    def robot_state(self) -> RobotState:
        """The current robot-state record of every world."""
        if self._rs is None:
            raise RuntimeError("call reset() first")
        return self._rs

    def set_distribution(self, dist: Distribution) -> None:
        """Replaces the DR distribution; worlds use it from their next reset."""
        if tuple(dist.names) != self.space.names:
            raise RandomizationError(f"distribution parameters {tuple(dist.names)} differ from the "
                                     f"env's {self.space.names}")
        self.distribution = dist

    # -- reset ---------------------------------------------------------------------------------
    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self.seed = seed
            self.step_count = 0
        self._reset_worlds(self._arange)
        self._rs = self._make_robot_state()
        return self._observe(self._rs)

    def _reset_worlds(self, idx: np.ndarray) -> None:
        k, task = len(idx), self.task
        params = self.space.check(self.distribution.sample(k, self.rng))
        self.params[idx] = params
        for i, p in zip(idx, params):
            self.space.apply(self.models[i], p)
        init = task.reset(self.rng, k)
        self.state[idx] = 0.0
        self.state[np.ix_(idx, np.arange(self._qpos.start, self._qpos.stop))] = init.qpos
        self.state[np.ix_(idx, np.arange(self._qvel.start, self._qvel.stop))] = init.qvel
        for key, value in init.task_state.items():
            if key not in self.task_state:
                self.task_state[key] = np.zeros((self.num_envs,) + value.shape[1:])
            self.task_state[key][idx] = value
        self.ctrl_history[idx] = init.ctrl[:, None, :]
        self.physics.reset(idx)
        if self.model.nsensordata:
            d = self._scratch
            for i in idx:
                mujoco.mj_setState(self.models[i], d, self.state[i], int(STATE_SPEC))
                mujoco.mj_forward(self.models[i], d)
                self.sensordata[i] = d.sensordata
        steps = task.command_resample_steps(self.rng, k)
        self.command_timer[idx] = np.inf if steps is None else steps
        sp = self.space
        self.latency[idx] = np.rint(sp.env_values(params, "latency")).astype(np.int64)
        self.obs_latency[idx] = np.rint(sp.env_values(params, "obs_latency")).astype(np.int64)
        if self.meas_history is not None:
            self.meas_history[idx] = self._measurements(idx)[:, None]
        self.obs_noise[idx] = sp.env_values(params, "obs_noise")
        self.action_noise[idx] = sp.env_values(params, "action_noise")
        self.push_force[idx] = sp.env_values(params, "push")
        self.push_phase[idx] = self.rng.integers(0, max(1, task.cfg.push_interval_steps), k)
        self.last_action[idx] = 0.0
        self.ep_return[idx] = 0.0
        self.ep_length[idx] = 0
        for v in self.metric_sums.values():
            v[idx] = 0.0

    def start_from(self, params: np.ndarray, qpos: np.ndarray, qvel: np.ndarray,
                   past_ctrl: np.ndarray | None = None, task_state: Mapping[str, np.ndarray] | None = None,
                   last_action: np.ndarray | None = None) -> np.ndarray:
        """Starts every world from given parameters and physics state instead of drawn ones
        (replays of logged windows, system identification): ``params`` (n, d) are written into
        each world's model as at a reset (latency and the other env kinds included), ``qpos`` /
        ``qvel`` (n, nq) / (n, nv) are the state, ``past_ctrl`` (n, k, nu) the controls of the k
        steps before, newest first (what a latency still applies; default: the state's own).
        Returns the observations; the next ``step`` continues from there."""
        n, sp = self.num_envs, self.space
        params = sp.check(params)
        if params.shape[0] != n or qpos.shape != (n, self.model.nq) or qvel.shape != (n, self.model.nv):
            raise ValueError(f"start_from: expected params ({n}, {sp.dim}), qpos ({n}, {self.model.nq}) "
                             f"and qvel ({n}, {self.model.nv}), got {params.shape}, {qpos.shape}, {qvel.shape}")
        self.params[...] = params
        for model, p in zip(self.models, params):
            sp.apply(model, p)
        self.state[...] = 0.0
        self.state[:, self._qpos] = qpos
        self.state[:, self._qvel] = qvel
        for key, value in (task_state or {}).items():
            self.task_state[key] = np.array(value, dtype=np.float64)
        self.ctrl_history[...] = 0.0
        if past_ctrl is not None:
            k = min(past_ctrl.shape[1], self.max_latency + 1)
            self.ctrl_history[:, :k] = past_ctrl[:, :k]
            self.ctrl_history[:, k:] = past_ctrl[:, k - 1:k]
        self.physics.reset(self._arange)
        if self.model.nsensordata:
            d = self._scratch
            for i in range(n):
                mujoco.mj_setState(self.models[i], d, self.state[i], int(STATE_SPEC))
                mujoco.mj_forward(self.models[i], d)
                self.sensordata[i] = d.sensordata
        self.latency[...] = np.rint(sp.env_values(params, "latency")).astype(np.int64)
        self.obs_latency[...] = np.rint(sp.env_values(params, "obs_latency")).astype(np.int64)
        if self.meas_history is not None:
            self.meas_history[...] = self._measurements(self._arange)[:, None]
        self.command_timer[...] = np.inf  # a replay keeps the given commands
        self.obs_noise[...] = sp.env_values(params, "obs_noise")
        self.action_noise[...] = sp.env_values(params, "action_noise")
        self.push_force[...] = sp.env_values(params, "push")
        self.last_action[...] = 0.0 if last_action is None else last_action
        self.ep_return[...] = 0.0
        self.ep_length[...] = 0
        for v in self.metric_sums.values():
            v[...] = 0.0
        self._rs = self._make_robot_state()
        return self._observe(self._rs)

    def _make_robot_state(self) -> RobotState:
        # Copies: the record must not alias the buffers the next physics step overwrites
        # (rewards compare the previous record with the new one).
        return self.task.robot_state(self.state[:, self._qpos].copy(), self.state[:, self._qvel].copy(),
                                     self.sensordata.copy(), self.task_state, self.last_action.copy())

    def _measurements(self, idx: np.ndarray) -> np.ndarray:
        """Physics state and sensor data of worlds ``idx``, side by side (observation latency)."""
        return np.concatenate([self.state[idx], self.sensordata[idx]], axis=1)

    def _observe(self, rs: RobotState) -> np.ndarray:
        if self.meas_history is not None and self.obs_latency.any():
            past = self.meas_history[self._arange, self.obs_latency]
            rs = self.task.robot_state(past[:, self._qpos], past[:, self._qvel], past[:, self.nstate:],
                                       self.task_state, self.last_action.copy())
        obs = self.task.observation(rs)
        if self.obs_noise.any():
            obs = obs + (self.obs_noise[:, None] * self.obs_noise_scale
                         * self.rng.standard_normal(obs.shape))
        return obs

    # -- step ----------------------------------------------------------------------------------
    def _check_action(self, action: Any) -> np.ndarray:
        a = np.asarray(to_numpy(action), dtype=np.float64)
        if a.shape != (self.num_envs, self.action_size):
            raise ValueError(f"{self.task.name}: actions must have shape "
                             f"({self.num_envs}, {self.action_size}), got {a.shape}")
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"{self.task.name}: action is NaN or inf (world {bad[0]}, "
                             f"{self.task.action_names[bad[1]]})")
        return np.clip(a, -1.0, 1.0)

    def step_numpy(self, action: Any) -> Step:
        if self._rs is None:
            raise RuntimeError("call reset() before step()")
        task, n = self.task, self.num_envs
        self.step_count += 1
        a = self._check_action(action)
        applied = a
        if self.action_noise.any():
            applied = np.clip(a + self.action_noise[:, None] * self.rng.standard_normal(a.shape), -1, 1)
        prev = self._rs
        ctrl = task.action_to_ctrl(applied, prev, self.task_state)
        if self.max_latency:
            self.ctrl_history[:, 1:] = self.ctrl_history[:, :-1]
            self.ctrl_history[:, 0] = ctrl
            ctrl = self.ctrl_history[self._arange, self.latency]
        self.control[:, :self.model.nu] = ctrl
        if self.use_xfrc:
            self._write_forces()
        state, sensordata = self.physics.step(self.state, self.control)
        self.state[...] = state
        if self.state_correction is not None:
            qpos, qvel = self.state_correction(prev, a, self.state[:, self._qpos], self.state[:, self._qvel])
            self.state[:, self._qpos], self.state[:, self._qvel] = qpos, qvel
        self.sensordata[...] = sensordata
        if self.meas_history is not None:
            self.meas_history[:, 1:] = self.meas_history[:, :-1]
            self.meas_history[:, 0] = self._measurements(self._arange)
        self.last_action[...] = a
        rs = self._make_robot_state()
        reward, terminated, metrics = task.reward(prev, rs, a, ctrl)
        terminated = np.asarray(terminated, dtype=bool)
        if not np.isfinite(reward).all():
            # A diverged simulation (e.g. extreme randomized parameters): end those episodes.
            bad = ~np.isfinite(reward)
            reward = np.where(bad, 0.0, reward)
            terminated = terminated | bad
        self.ep_return += reward
        self.ep_length += 1
        for key, value in metrics.items():
            self.metric_sums.setdefault(key, np.zeros(n))
            self.metric_sums[key] += value
        truncated = (self.ep_length >= task.cfg.max_episode_steps) & ~terminated
        done = terminated | truncated
        task.update_task_state(rs, self.task_state)
        redraw = self._redraw_commands(~done)
        info: dict[str, Any] = {"metrics": metrics}
        if redraw and not (self.autoreset and done.any()):
            rs = self._make_robot_state()  # the new commands in the record and the observation
        if done.any():
            idx = np.flatnonzero(done)
            final = rs.select(idx)
            success = task.success(final, self.ep_return[idx], self.ep_length[idx],
                                   {k: v[idx] for k, v in self.metric_sums.items()}, terminated[idx])
            info["episodes"] = EpisodeBatch(idx, self.ep_return[idx].copy(), self.ep_length[idx].copy(),
                                            np.asarray(success, dtype=bool), terminated[idx].copy(),
                                            self.params[idx].copy(),
                                            {k: v[idx] / np.maximum(self.ep_length[idx], 1)
                                             for k, v in self.metric_sums.items()})
            final_obs = np.zeros((n, self.observation_size))
            final_obs[idx] = task.observation(final)
            info["final_obs"] = final_obs
            if self.autoreset:
                self._reset_worlds(idx)
                rs = self._make_robot_state()
        self._rs = rs
        return self._observe(rs), reward, terminated, truncated, info

    def _redraw_commands(self, live: np.ndarray) -> bool:
        """Counts down the command timers of the ``live`` worlds and draws new commands where
        they ran out; True if any world got one."""
        self.command_timer[live] -= 1
        due = live & (self.command_timer <= 0)
        if not due.any():
            return False
        commands, steps = command_draws(self.task, self.seed, self.step_count, self.num_envs)
        self.task_state["command"][due] = commands[due]
        self.command_timer[due] = steps[due]
        return True

    def _write_forces(self) -> None:
        """Random pushes (when ``push`` is randomized) plus any external force, on the root body."""
        force = np.zeros((self.num_envs, 3))
        if self.has_push:
            cfg = self.task.cfg
            t = (self.ep_length + self.push_phase) % max(1, cfg.push_interval_steps)
            starting = (t == 0) & (self.push_force > 0)
            if starting.any():
                angle = self.rng.uniform(-np.pi, np.pi, int(starting.sum()))
                self.push_dir[starting] = np.stack([np.cos(angle), np.sin(angle)], axis=1)
            active = t < cfg.push_duration_steps
            force[:, :2] = (active * self.push_force)[:, None] * self.push_dir
        if self.external_force is not None:
            force += self.external_force
        start = self.model.nu + 6 * self.root_body
        self.control[:, start:start + 3] = force

    def close(self) -> None:
        self.physics.close()
