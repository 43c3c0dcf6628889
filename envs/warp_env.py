"""N worlds stepped by MuJoCo Warp (``envs.make(..., backend="warp")``): the GPU backend.

The same task (config, model, reset, observation, reward, termination, success) as
:class:`envs.batched.BatchedEnv`, with its functions run on torch tensors that alias the Warp
arrays (``wp.to_torch``: no copies), so on a GPU a control step never waits for the host:

* physics: ``mujoco_warp.step`` x the task's substeps on all worlds (one Warp data of
  ``nworld`` worlds), captured once as a CUDA graph on CUDA devices (plain launches on CPU);
* randomization: every model field a randomization kind writes (``envs.randomization``
  ``FieldWrite``: masses, inertias, friction, damping, gains, gravity ...) is a per-world Warp
  model array (``put_model(batch_sizes=...)``, the way mjlab expands fields to ``nworld``);
  at a reset the resetting worlds' rows are rewritten from their new parameter vector,
  starting from the nominal values, as ``ParameterSpace.apply`` does on CPU;
* auto-reset: start states and parameter vectors are drawn on the host in blocks (the task's
  ``reset`` and the DR distribution, numpy, as on CPU) and uploaded ahead of use; worlds that
  finish take theirs with masked device writes, no host round trip;
* episode statistics: returns, lengths, success, termination and parameters accumulate on the
  device; ``info["episodes"]`` (an :class:`~envs.batched.EpisodeBatch`, numpy) is read back
  every ``episode_interval`` control steps (1: every step, as on CPU; the one small
  device-to-host copy per step of this env).

Env-level randomization as on CPU: latency (whole control steps), observation latency (a
device ring buffer of qpos, qvel and sensor data), observation and action noise, pushes,
external forces (the H-infinity disturber). Per step as on CPU: commands redrawn during the
episode (:func:`~envs.batched.command_draws`, drawn ahead on the host in blocks like the
starts, so both backends draw the same commands), ``Task.update_task_state`` after the reward,
``info["metrics"]`` (tensors; numpy from ``step_numpy``).

Not supported: tasks whose functions are not array-generic (``Task.array_generic``:
panda-push), ``physics="serial"``, ``start_from`` (system identification runs on CPU).
Sensor data of a world that was just reset is its last episode's until the next step (the CPU
env runs ``mj_forward`` at a reset): a reset record's sensor extras (go1-velocity's feet contact
and velocity) and an observation-latency buffer's sensor part differ until then; no supported
task's observation reads sensors.

``reset``/``step`` are the torch core (tensors on the env's device); ``reset_numpy`` /
``step_numpy`` copy to the host for the numpy wrappers (history, residual, privileged,
disturber), which then work unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping

import mujoco
import numpy as np

from envs.batched import EpisodeBatch, command_draws, init_randomization, max_delay_steps
from envs.distributions import Distribution, RandomizationError
from envs.tasks import Task
from envs.wrappers import SimEnv, Step, step_to_numpy, to_numpy
from simrl.core.robot_state import RobotState

INSTALL_HINT = "pip install 'simrl[warp]' (mujoco-warp)"


def import_warp() -> tuple[Any, Any]:
    """``(warp, mujoco_warp)``, or an ImportError that says how to install them."""
    try:
        import warp
        warp.config.quiet = True        # before mujoco_warp initializes Warp: no banner ...
        warp.config.log_level = max(warp.config.log_level, warp.LOG_WARNING)  # ... nor load lines
        import mujoco_warp
    except ImportError as exc:
        raise ImportError(f"backend 'warp' needs MuJoCo Warp ({exc}); install it with "
                          f"{INSTALL_HINT}") from None
    return warp, mujoco_warp


def check_task(task: Task) -> None:
    """Raises ValueError unless ``task``'s functions run on torch tensors."""
    if not getattr(task, "array_generic", False):
        raise ValueError(f"task {task.name} is not supported by backend 'warp' (its observation, "
                         "reward and termination functions are numpy-only); use backend 'cpu'")


def _model_field(wm: Any, name: str) -> Any:
    return wm.opt.gravity if name == "gravity" else getattr(wm, name)


class WarpEnv(SimEnv):
    """``num_envs`` randomized worlds of one task on MuJoCo Warp, with auto-reset.

    The interface of :class:`~envs.batched.BatchedEnv` (``step`` returns ``(obs, reward,
    terminated, truncated, info)``, ``info["episodes"]``, ``info["final_obs"]``,
    ``info["metrics"]``, ``robot_state``, ``params``, ``set_distribution``), on torch tensors on
    ``device``.
    ``start_block``: control steps of start states drawn per host upload; ``graph``: capture the
    substep loop as a CUDA graph (None: on CUDA devices).
    """

    def __init__(self, task: Task, num_envs: int, device: Any = "cpu",
                 dr: str | Mapping | Distribution | None = "none", seed: int = 0,
                 autoreset: bool = True, external_forces: bool = False,
                 episode_interval: int = 1, start_block: int = 4, graph: bool | None = None):
        import torch
        wp, mjw = import_warp()
        check_task(task)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if episode_interval < 1 or start_block < 1:
            raise ValueError("episode_interval and start_block must be >= 1")
        self.torch, self.wp, self.mjw = torch, wp, mjw
        self.task, self.num_envs, self.autoreset = task, num_envs, autoreset
        self.device = torch.device(device)
        self.episode_interval, self.start_block = episode_interval, start_block
        m = self.model = task.model
        init_randomization(self, task, dr, seed, external_forces)
        self.max_latency = max_delay_steps(self.space, task, "latency")
        self.max_obs_latency = max_delay_steps(self.space, task, "obs_latency")
        self.resample_commands = task.command_resample_steps(np.random.default_rng(0), 1) is not None

        # -- Warp model and data: randomized fields batched over worlds --------------------------
        n = num_envs
        self.wp_device = "cpu" if self.device.type == "cpu" else f"cuda:{self.device.index or 0}"
        fields = sorted(self.space._nominal_fields)
        with wp.ScopedDevice(self.wp_device):
            self.wm = mjw.put_model(m, batch_sizes={f: n for f in fields if f != "gravity"})
            if "gravity" in fields:
                g = wp.array(np.tile(m.opt.gravity, (n, 1)), dtype=wp.vec3)
                g._is_batched = True
                self.wm.opt.gravity = g
            self.wm.opt.warn_overflow = 0
            data = mujoco.MjData(m)
            mujoco.mj_forward(m, data)
            self.wd = mjw.put_data(m, data, nworld=n)
        t = wp.to_torch
        self.qpos, self.qvel, self.ctrl = t(self.wd.qpos), t(self.wd.qvel), t(self.wd.ctrl)
        self.warmstart = t(self.wd.qacc_warmstart)
        self.xfrc = t(self.wd.xfrc_applied) if self.use_xfrc else None
        self.act = t(self.wd.act) if m.na else None
        self.sensordata = t(self.wd.sensordata)
        self.fields = {f: t(_model_field(self.wm, f)) for f in fields}
        # field -> [(parameter index, rows, cols, op)], index tensors made once
        self._writes: dict[str, list] = {f: [] for f in fields}
        for i, writes in enumerate(self.space.writes):
            for w in writes:
                cols = None if w.cols is None else torch.as_tensor(w.cols, device=self.device)
                self._writes[w.field].append((i, torch.as_tensor(w.rows, device=self.device), cols, w.op))
        dt = self.qpos.dtype
        self._zeros = lambda *shape, dtype=dt: torch.zeros(shape, dtype=dtype, device=self.device)
        self.nominal = {f: torch.as_tensor(np.asarray(v), dtype=torch.float64, device=self.device)
                        for f, v in self.space._nominal_fields.items()}
        self.param_values = self._zeros(n, self.space.dim, dtype=torch.float64)   # (n, d) on the device
        self.latency = self._zeros(n, dtype=torch.long)
        self.obs_latency = self._zeros(n, dtype=torch.long)
        # (n, obs latency + 1, nq + nv + nsensordata): measurements of the last steps, newest first
        self.meas_history = (self._zeros(n, self.max_obs_latency + 1, m.nq + m.nv + m.nsensordata)
                             if self.max_obs_latency else None)
        self.command_timer = torch.full((n,), float("inf"), dtype=dt, device=self.device)
        self.step_count = 0                 # control steps since the last seeding (command draws)
        self._commands: tuple[int, Any, Any] | None = None   # (first step, commands, timers)
        self.obs_noise, self.action_noise, self.push_force = (self._zeros(n) for _ in range(3))
        self.push_phase = self._zeros(n, dtype=torch.long)
        self.push_dir = self._zeros(n, 2)
        self.ctrl_history = self._zeros(n, self.max_latency + 1, m.nu)
        self.last_action = self._zeros(n, task.action_size)
        self.ep_return, self.ep_length = self._zeros(n), self._zeros(n, dtype=torch.long)
        self.metric_sums: dict[str, Any] = {}
        self.task_state: dict[str, Any] = {}
        on = {k: bool(idx) and bool(self.space.high[idx].max() > 0)
              for k, idx in self.space.env_index.items()}
        self._obs_noise_on, self._action_noise_on = on["obs_noise"], on["action_noise"]
        self.obs_noise_scale = torch.as_tensor(task.obs_noise_scale(), dtype=dt, device=self.device)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.external_force: Any = None     # (n, 3) world-frame force on the root body
        self._arange = torch.arange(n, device=self.device)
        self._starts: dict[str, Any] | None = None
        self._start_step = 0
        self._records: list[tuple] = []
        self._rs: RobotState | None = None
        self._graph = None
        self.use_graph = (self.device.type == "cuda") if graph is None else graph
        if self.use_graph and self.device.type != "cuda":
            raise ValueError("CUDA graph capture needs a CUDA device")

    # -- properties ------------------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        return self.space.names

    @property
    def robot_state(self) -> RobotState:
        """The current robot-state record of every world, as numpy (for the numpy wrappers)."""
        rs = self._require_reset()
        kw = {k: (None if v is None else to_numpy(v)) for k, v in vars(rs).items() if k != "extras"}
        return RobotState(**kw, extras={k: to_numpy(v) for k, v in rs.extras.items()})

    @property
    def params(self) -> np.ndarray:
        """(n, d) the parameter vector each world runs with, as numpy (float64)."""
        return to_numpy(self.param_values)

    @property
    def robot_state_tensors(self) -> RobotState:
        """The current robot-state record as tensors on the device."""
        return self._require_reset()

    def set_distribution(self, dist: Distribution) -> None:
        """Replaces the DR distribution; worlds use it from their next reset."""
        if tuple(dist.names) != self.space.names:
            raise RandomizationError(f"distribution parameters {tuple(dist.names)} differ from the "
                                     f"env's {self.space.names}")
        self.distribution = dist
        self._starts = None          # drawn under the old distribution

    def _require_reset(self) -> RobotState:
        if self._rs is None:
            raise RuntimeError("call reset() first")
        return self._rs

    # -- start states ----------------------------------------------------------------------------
    def _draw_starts(self, k: int) -> dict[str, Any]:
        """``k`` start states and parameter vectors (host draws, as on CPU), on the device."""
        torch, task = self.torch, self.task
        params = self.space.check(self.distribution.sample(k, self.rng))
        init = task.reset(self.rng, k)
        sp = self.space
        steps = task.command_resample_steps(self.rng, k)     # the CPU env's draw order
        host = {"params": params, "qpos": init.qpos, "qvel": init.qvel, "ctrl": init.ctrl,
                "command_timer": np.full(k, np.inf) if steps is None else steps,
                "latency": np.rint(sp.env_values(params, "latency")),
                "obs_latency": np.rint(sp.env_values(params, "obs_latency")),
                "obs_noise": sp.env_values(params, "obs_noise"),
                "action_noise": sp.env_values(params, "action_noise"),
                "push": sp.env_values(params, "push"),
                "push_phase": self.rng.integers(0, max(1, task.cfg.push_interval_steps), k)}
        host.update({f"task:{key}": v for key, v in init.task_state.items()})
        out = {}
        for key, v in host.items():
            # parameter vectors stay float64: DORAEMON's densities need them inside their bounds
            dtype = {"latency": torch.long, "obs_latency": torch.long, "push_phase": torch.long,
                     "params": torch.float64}.get(key, self.qpos.dtype)
            out[key] = self._upload(v, dtype)
        return out

    def _upload(self, v: Any, dtype: Any) -> Any:
        t = self.torch.as_tensor(np.asarray(v)).to(dtype)
        if self.device.type == "cuda":       # pinned: the upload does not wait for the GPU
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _next_commands(self) -> tuple[Any, Any]:
        """This step's new command and resample interval for every world (used where a world's
        timer runs out): :func:`~envs.batched.command_draws` of ``start_block`` steps ahead,
        uploaded at once."""
        t = self.step_count
        if self._commands is None or not 0 <= t - self._commands[0] < self.start_block:
            draws = [command_draws(self.task, self.seed, t + j, self.num_envs)
                     for j in range(self.start_block)]
            dt = self.qpos.dtype
            self._commands = (t, self._upload(np.stack([c for c, _ in draws]), dt),
                              self._upload(np.stack([s for _, s in draws]), dt))
        j = t - self._commands[0]
        return self._commands[1][j], self._commands[2][j]

    def _next_starts(self) -> dict[str, Any]:
        """This step's candidate start of every world (rows of the current block). Without
        auto-reset only ``reset`` takes starts: one step's, drawn as the CPU env draws them."""
        n = self.num_envs
        block = self.start_block if self.autoreset else 1
        if self._starts is None or self._start_step >= block:
            self._starts = self._draw_starts(n * block)
            self._start_step = 0
        j = self._start_step
        self._start_step += 1
        return {k: v[j * n:(j + 1) * n] for k, v in self._starts.items()}

    def _apply_starts(self, mask: Any, s: dict[str, Any]) -> None:
        """Resets the worlds in ``mask`` (bool (n,)) to the starts ``s``: physics state, model
        fields, env-level parameters and episode counters."""
        torch = self.torch
        col = mask[:, None]
        self.qpos.copy_(torch.where(col, s["qpos"], self.qpos))
        self.qvel.copy_(torch.where(col, s["qvel"], self.qvel))
        self.warmstart.copy_(torch.where(col, 0.0, self.warmstart))
        if self.act is not None:
            self.act.copy_(torch.where(col, 0.0, self.act))
        self.param_values = torch.where(col, s["params"], self.param_values)
        self._write_fields(mask)
        for key, value in s.items():
            if key.startswith("task:"):
                name = key[5:]
                if name not in self.task_state:
                    self.task_state[name] = torch.zeros_like(value)
                m = mask.reshape((-1,) + (1,) * (value.ndim - 1))
                self.task_state[name] = torch.where(m, value, self.task_state[name])
        self.ctrl_history = torch.where(mask[:, None, None], s["ctrl"][:, None, :], self.ctrl_history)
        self.latency = torch.where(mask, s["latency"], self.latency)
        self.obs_latency = torch.where(mask, s["obs_latency"], self.obs_latency)
        self.command_timer = torch.where(mask, s["command_timer"], self.command_timer)
        if self.meas_history is not None:
            self.meas_history = torch.where(mask[:, None, None], self._measurements()[:, None],
                                            self.meas_history)
        self.obs_noise = torch.where(mask, s["obs_noise"], self.obs_noise)
        self.action_noise = torch.where(mask, s["action_noise"], self.action_noise)
        self.push_force = torch.where(mask, s["push"], self.push_force)
        self.push_phase = torch.where(mask, s["push_phase"], self.push_phase)
        self.last_action = torch.where(col, 0.0, self.last_action)
        self.ep_return = torch.where(mask, 0.0, self.ep_return)
        self.ep_length = torch.where(mask, 0, self.ep_length)
        for key, v in self.metric_sums.items():
            self.metric_sums[key] = torch.where(mask, 0.0, v)

    def _write_fields(self, mask: Any) -> None:
        """The randomized model fields of the worlds in ``mask`` from their parameter vectors,
        starting from the nominal values (``ParameterSpace.apply`` on the batched arrays)."""
        torch, n = self.torch, self.num_envs
        for name, field in self.fields.items():
            nominal = self.nominal[name]
            value = nominal.unsqueeze(0).repeat((n,) + (1,) * nominal.ndim)
            for i, rows, cols, op in self._writes[name]:
                v = self.param_values[:, i]
                sel = value[:, rows] if cols is None else value[:, rows[:, None], cols[None, :]]
                v = v.reshape((n,) + (1,) * (sel.ndim - 1))
                new = sel * v if op == "scale" else sel + v if op == "offset" else v.expand(sel.shape)
                if cols is None:
                    value[:, rows] = new
                else:
                    value[:, rows[:, None], cols[None, :]] = new
            m = mask.reshape((n,) + (1,) * (field.ndim - 1))
            field.copy_(torch.where(m, value.reshape(field.shape).to(field.dtype), field))

    # -- reset -------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Any:
        """Resets every world; observations as a tensor on the device."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self.generator.manual_seed(seed)
            self.seed = seed
            self.step_count = 0
        self._starts = self._commands = None
        self._records.clear()
        every = self.torch.ones(self.num_envs, dtype=self.torch.bool, device=self.device)
        self._apply_starts(every, self._next_starts())
        self._rs = self._make_robot_state()
        return self._observe(self._rs)

    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        return to_numpy(self.reset(seed))

    def _make_robot_state(self) -> RobotState:
        # Clones: the record must not alias the Warp arrays the next physics step overwrites.
        return self.task.robot_state(self.qpos.clone(), self.qvel.clone(), self.sensordata.clone(),
                                     self.task_state, self.last_action.clone())

    def _measurements(self) -> Any:
        """qpos, qvel and sensor data of every world, side by side (observation latency)."""
        return self.torch.cat([self.qpos, self.qvel, self.sensordata], dim=1)

    def _observe(self, rs: RobotState) -> Any:
        if self.meas_history is not None:
            m = self.model
            past = self.meas_history[self._arange, self.obs_latency]
            rs = self.task.robot_state(past[:, :m.nq], past[:, m.nq:m.nq + m.nv], past[:, m.nq + m.nv:],
                                       self.task_state, self.last_action.clone())
        obs = self.task.observation(rs)
        if self._obs_noise_on:
            noise = self.torch.randn(obs.shape, generator=self.generator, device=self.device)
            obs = obs + self.obs_noise[:, None] * self.obs_noise_scale * noise
        return obs

    # -- step --------------------------------------------------------------------------------------
    def _physics(self) -> None:
        """The task's substeps on every world; each control step starts without the solver's
        warm start, as ``mujoco.rollout`` does on the CPU backend. On CUDA, Warp runs on torch's
        current stream (ordered with the torch ops around it); the graph is captured once on
        Warp's own stream and launched on torch's."""
        wp = self.wp
        if self.device.type == "cpu":
            with wp.ScopedDevice(self.wp_device):
                self._substeps()
            return
        import torch
        stream = wp.stream_from_torch(torch.cuda.current_stream(self.device))
        if not self.use_graph:
            with wp.ScopedDevice(self.wp_device), wp.ScopedStream(stream):
                self._substeps()
            return
        if self._graph is None:
            torch.cuda.synchronize(self.device)
            with wp.ScopedDevice(self.wp_device):
                saved = {k: wp.clone(getattr(self.wd, k)) for k in ("qpos", "qvel", "act", "time")}
                self.mjw.step(self.wm, self.wd)      # compile every kernel before the capture
                for k, v in saved.items():
                    wp.copy(getattr(self.wd, k), v)
                with wp.ScopedCapture() as capture:
                    self._substeps()
                wp.synchronize_device(self.wp_device)
            self._graph = capture.graph
        wp.capture_launch(self._graph, stream=stream)

    def _substeps(self) -> None:
        self.wd.qacc_warmstart.zero_()
        for _ in range(self.task.substeps):
            self.mjw.step(self.wm, self.wd)

    def step(self, action: Any) -> tuple:
        """One control step of every world; tensors in and out, on the device."""
        torch, task, n = self.torch, self.task, self.num_envs
        prev = self._require_reset()
        self.step_count += 1
        a = torch.as_tensor(action, device=self.device).to(self.qpos.dtype)
        if a.shape != (n, self.action_size):
            raise ValueError(f"{task.name}: actions must have shape ({n}, {self.action_size}), "
                             f"got {tuple(a.shape)}")
        a = a.clamp(-1.0, 1.0)
        applied = a
        if self._action_noise_on:
            noise = torch.randn(a.shape, generator=self.generator, device=self.device)
            applied = (a + self.action_noise[:, None] * noise).clamp(-1.0, 1.0)
        ctrl = task.action_to_ctrl(applied, prev, self.task_state)
        if self.max_latency:
            self.ctrl_history = torch.cat([ctrl[:, None], self.ctrl_history[:, :-1]], dim=1)
            ctrl = self.ctrl_history[self._arange, self.latency]
        self.ctrl.copy_(ctrl)
        if self.use_xfrc:
            self._write_forces()
        self._physics()
        if self.meas_history is not None:
            self.meas_history = torch.cat([self._measurements()[:, None], self.meas_history[:, :-1]], dim=1)
        self.last_action = a
        rs = self._make_robot_state()
        reward, terminated, metrics = task.reward(prev, rs, a, ctrl)
        bad = ~torch.isfinite(reward)           # a diverged world: end its episode
        reward = torch.where(bad, 0.0, reward)
        terminated = terminated | bad
        self.ep_return = self.ep_return + reward
        self.ep_length = self.ep_length + 1
        for key, value in metrics.items():
            self.metric_sums[key] = self.metric_sums.get(key, torch.zeros_like(value)) + value
        truncated = (self.ep_length >= task.cfg.max_episode_steps) & ~terminated
        done = terminated | truncated
        success = task.success(rs, self.ep_return, self.ep_length, self.metric_sums, terminated)
        final_obs = torch.where(done[:, None], task.observation(rs), 0.0)
        sums = (torch.stack(list(self.metric_sums.values()), 1) if self.metric_sums
                else self.ep_return.new_zeros((len(done), 0)))
        self._records.append((done, self.ep_return, self.ep_length, success, terminated, self.param_values, sums))
        task.update_task_state(rs, self.task_state)
        if self.resample_commands:
            self._redraw_commands(~done)
        info: dict[str, Any] = {"final_obs": final_obs, "metrics": metrics}
        if len(self._records) >= self.episode_interval:
            batch = self._flush_episodes()
            if batch is not None:
                info["episodes"] = batch
        if self.autoreset:
            self._apply_starts(done, self._next_starts())
        if self.autoreset or self.resample_commands:
            rs = self._make_robot_state()    # the new starts and commands in the record
        self._rs = rs
        return self._observe(rs), reward, terminated, truncated, info

    def step_numpy(self, action: Any) -> Step:
        """The numpy step: ``final_obs`` only when an episode ended, as on CPU."""
        obs, reward, terminated, truncated, info = step_to_numpy(self.step(action))
        info["metrics"] = {k: to_numpy(v) for k, v in info["metrics"].items()}
        if not (terminated | truncated).any():
            del info["final_obs"]
        return obs, reward, terminated, truncated, info

    def _redraw_commands(self, live: Any) -> None:
        """Counts down the command timers of the ``live`` worlds (bool (n,)); where one runs
        out, the world takes this step's drawn command and interval (masked, no host sync)."""
        torch = self.torch
        self.command_timer = torch.where(live, self.command_timer - 1, self.command_timer)
        due = live & (self.command_timer <= 0)
        commands, steps = self._next_commands()
        self.task_state["command"] = torch.where(due[:, None], commands, self.task_state["command"])
        self.command_timer = torch.where(due, steps, self.command_timer)

    def _flush_episodes(self) -> EpisodeBatch | None:
        """The episodes that finished since the last read-back (one device-to-host copy)."""
        torch = self.torch
        cols = [torch.stack(c) for c in zip(*self._records)]
        self._records.clear()
        done, returns, lengths, success, terminated, params, sums = (c.cpu().numpy() for c in cols)
        steps, ids = np.nonzero(done)
        if not len(ids):
            return None
        length = lengths[steps, ids]
        means = sums[steps, ids] / np.maximum(length, 1)[:, None]
        return EpisodeBatch(ids, returns[steps, ids].astype(np.float64), length,
                            success[steps, ids].astype(bool), terminated[steps, ids].astype(bool),
                            params[steps, ids].astype(np.float64),
                            {k: means[:, i].astype(np.float64) for i, k in enumerate(self.metric_sums)})

    def _write_forces(self) -> None:
        """Random pushes (when ``push`` is randomized) plus any external force, on the root body."""
        torch = self.torch
        force = self._zeros(self.num_envs, 3)
        if self.has_push:
            cfg = self.task.cfg
            t = (self.ep_length + self.push_phase) % max(1, cfg.push_interval_steps)
            starting = (t == 0) & (self.push_force > 0)
            angle = (torch.rand(self.num_envs, generator=self.generator, device=self.device)
                     * 2 - 1) * np.pi
            direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
            self.push_dir = torch.where(starting[:, None], direction, self.push_dir)
            active = t < cfg.push_duration_steps
            force[:, :2] = (active * self.push_force)[:, None] * self.push_dir
        if self.external_force is not None:
            force = force + torch.as_tensor(self.external_force, device=self.device).to(force.dtype)
        self.xfrc[:, self.root_body, :3] = force

    def close(self) -> None:
        self._graph = None
