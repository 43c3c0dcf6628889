"""The MuJoCo robot: the sim-to-sim reality proxy that tests and benchmarks deploy to.

It simulates the checkpoint's task model (or any MJCF of the same robot) with a
:class:`~envs.perturbation.Perturbation` written in (masses, friction, motor strength
...) plus what training never modelled: command latency, a first-order motor lag and sensor
noise. Readings are the measured part of the task's robot-state record (built by the task's own
``robot_state``) plus actuator positions and velocities.

Two ways to run it (:class:`MujocoRobot`):

* real time (default): in its own spawned process, stepping physics at the model's timestep on
  absolute deadlines (catching up when late) and publishing a state packet after every physics
  step over a local datagram socket pair, with the protocol of :mod:`deploy.robots.udp`;
  ``simrl robot-server`` runs the same loop behind UDP;
* lockstep (``realtime=False``): in-process, each command advances physics by exactly one
  control period, no sleeping: as fast as the CPU allows, for recording many episodes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import mujoco
import numpy as np

from deploy.clock import Rate, realtime_scheduling
from deploy.robots.base import (DAMP, Command, LinkStats, RobotLost, RobotOptions, StateSample,
                                measured_fields, register_robot, spec_control_dt)
from deploy.robots.udp import (BYE, COMMAND, HELLO, STATE, DatagramRobot, Faults, FaultySocket,
                               Link, ProtocolError, SessionGate, decode_command, encode_state)
from deploy.actuators import Actuators
from envs.perturbation import Perturbation
from envs.tasks import make_config, task_from_spec


@dataclass
class SimConfig:
    """A picklable description of a MuJoCo robot (it crosses into the robot process)."""

    task: str
    task_config: dict[str, Any] = field(default_factory=dict)  # a spec's "task_config"
    model: str | None = None           # an MJCF replacing the task's model
    perturbation: dict[str, Any] = field(default_factory=dict)  # Perturbation.to_dict()
    seed: int = 0
    damp_kd: float = 1.0               # damping when the robot stops itself
    max_gain_scale: float = 10.0       # commanded kp (kd) at most this times the model's kp
                                       # (kd, or a tenth of kp when the model has none)
    start_qpos: list[float] | None = None  # replaces the drawn start pose (tests, reproductions)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], model: str | None = None,
                  perturbation: Perturbation | None = None, seed: int = 0) -> "SimConfig":
        return cls(spec["task"], spec.get("task_config", {}), model,
                   (perturbation or Perturbation()).to_dict(), seed)

    @property
    def name(self) -> str:
        return f"mujoco:{self.model or self.task_config.get('model') or make_config(self.task).model}"


class MujocoSim:
    """One simulated robot: physics, perturbations, latency, motor lag, sensor noise."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.task = task_from_spec({"task": cfg.task, "task_config": cfg.task_config}, cfg.model)
        pert = Perturbation.from_dict(cfg.perturbation)
        self.model = pert.apply(self.task.model)
        self.data = mujoco.MjData(self.model)
        self.kp_scale, self.kd_scale = pert.gain_scales(self.task.model)
        self.servo = Actuators.from_model(self.task.model).servo
        self.latency, self.noise = pert.latency, pert.noise
        self.alpha = 1.0 if pert.motor_lag == 0 else float(-np.expm1(-self.dt / pert.motor_lag))
        self.rng = np.random.default_rng(cfg.seed)
        self._gains = self.model.actuator_gainprm.copy(), self.model.actuator_biasprm.copy()
        nominal = Actuators.from_model(self.task.model)
        self.low, self.high = nominal.low, nominal.high
        self.max_kp = cfg.max_gain_scale * nominal.kp
        self.max_kd = cfg.max_gain_scale * np.maximum(nominal.kd, 0.1 * nominal.kp)
        self.clamped = 0                   # commands the robot had to clamp to its limits
        if cfg.start_qpos is not None and len(cfg.start_qpos) != self.model.nq:
            raise ValueError(f"SimConfig.start_qpos: {len(cfg.start_qpos)} values, the model has "
                             f"nq={self.model.nq}")
        self.reset()
        pert.check_noise(self.task.name, self._readings())

    @property
    def dt(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def reset(self, episode: int = 0) -> None:
        """Episode ``episode`` from the task's reset distribution (seeded by the config's seed
        and ``episode``), holding the reset controls until commands arrive."""
        init = self.task.reset(np.random.default_rng([self.cfg.seed, episode]), 1)
        mujoco.mj_resetData(self.model, self.data)
        self.model.actuator_gainprm[:], self.model.actuator_biasprm[:] = self._gains
        self.data.qpos[:], self.data.qvel[:] = init.qpos[0], init.qvel[0]
        if self.cfg.start_qpos is not None:
            self.data.qpos[:] = self.cfg.start_qpos
        self.task_state = init.task_state
        self.target = init.ctrl[0].copy()
        self.applied = self.target.copy()
        self.pending: deque[tuple[float, Command]] = deque()
        self.seq = 0
        mujoco.mj_forward(self.model, self.data)

    def submit(self, command: Command) -> None:
        """Queues a command, clamped to the robot's own limits (the model's joint and control
        ranges, gains within ``[0, max_gain_scale x`` nominal]); it acts ``latency`` seconds
        of robot time from now. ValueError for a wrong size or non-finite values."""
        nu = self.model.nu
        if not all(len(v) == nu for v in (command.ctrl, command.kp, command.kd)):
            raise ValueError(f"command for {len(command.ctrl)} actuators, robot has {nu}")
        if not all(np.isfinite(v).all() for v in (command.ctrl, command.kp, command.kd)):
            raise ValueError("command with non-finite values")
        safe = Command(np.clip(command.ctrl, self.low, self.high), np.clip(command.kp, 0, self.max_kp),
                       np.clip(command.kd, 0, self.max_kd), command.mode)
        if any(np.any(a != b) for a, b in ((safe.ctrl, command.ctrl), (safe.kp, command.kp),
                                           (safe.kd, command.kd))):
            self.clamped += 1
        self.pending.append((self.time + self.latency, safe))

    def damp(self) -> None:
        """Stops at once: servos only damp, direct actuators go to zero."""
        nu = self.model.nu
        self.pending.clear()
        self._apply(Command(self.target, np.zeros(nu), np.full(nu, self.cfg.damp_kd), DAMP))

    def _apply(self, cmd: Command) -> None:
        m, s = self.model, self.servo
        kp = np.where(cmd.mode == DAMP, 0.0, cmd.kp) * self.kp_scale
        m.actuator_gainprm[s, 0] = kp[s]
        m.actuator_biasprm[s, 1] = -kp[s]
        m.actuator_biasprm[s, 2] = -(cmd.kd * self.kd_scale)[s]
        self.target = np.where(s | (cmd.mode != DAMP), cmd.ctrl, 0.0)

    def step(self, n: int = 1) -> None:
        """``n`` physics steps, applying commands as their latency expires."""
        for _ in range(n):
            while self.pending and self.pending[0][0] <= self.time + 1e-9:
                self._apply(self.pending.popleft()[1])
            self.applied += self.alpha * (self.target - self.applied)
            self.data.ctrl[:] = self.applied
            mujoco.mj_step(self.model, self.data)

    def _readings(self) -> dict[str, np.ndarray]:
        """Exact readings: the measured part of the task's record, actuator positions and
        velocities."""
        d, n = self.data, self.model.nu
        rs = self.task.robot_state(d.qpos[None], d.qvel[None], d.sensordata[None], self.task_state,
                                   np.zeros((1, self.task.action_size)))
        fields = measured_fields(rs, self.task_state)
        fields["motor_pos"] = d.actuator_length[:n].copy()
        fields["motor_vel"] = d.actuator_velocity[:n].copy()
        return fields

    def sample(self) -> StateSample:
        """The readings with sensor noise, numbered."""
        fields = self._readings()
        for name, std in self.noise.items():
            fields[name] = fields[name] + std * self.rng.standard_normal(fields[name].shape)
        self.seq += 1
        return StateSample(self.seq, self.time, fields)


def serve(sim: MujocoSim, link: Link, stop: Callable[[], bool], exit_on_bye: bool,
          command_timeout: float = 0.25, rt_priority: int | None = None, max_catch_up: int = 25,
          session_timeout: float | None = None) -> None:
    """The robot's real-time loop: physics on the wall clock (up to ``max_catch_up`` steps at
    once when late), one session at a time (:class:`~deploy.robots.udp.SessionGate`: a fresh
    episode per accepted HELLO; a session silent for ``session_timeout``, default
    ``max(1 s, 4 x command_timeout)``, may be replaced), commands in (only of that session,
    clamped to the robot's limits), a state packet out after every wake-up while a session
    is open. Without commands for ``command_timeout`` seconds the robot damps itself.
    ``exit_on_bye``: return on BYE or when the peer is gone (the robot process) instead of
    waiting for the next runtime."""
    timeout = max(1.0, 4 * command_timeout) if session_timeout is None else session_timeout
    with realtime_scheduling(rt_priority):
        _serve(sim, link, stop, exit_on_bye, command_timeout, max_catch_up, SessionGate(link, timeout))


def _serve(sim: MujocoSim, link: Link, stop: Callable[[], bool], exit_on_bye: bool,
           command_timeout: float, max_catch_up: int, gate: SessionGate) -> None:
    rate = Rate(sim.dt)
    episodes, last_command, damped = 0, None, False
    while not stop():
        due = rate.wait()
        for packet, addr in link.receive():
            now = rate.elapsed()
            if packet.type == HELLO:
                if gate.hello(packet, addr, now):  # a fresh episode for every runtime
                    sim.reset(episodes)
                    last_command, damped = None, False
                    episodes += 1
            elif packet.type == COMMAND:
                gate.seen(now)
                try:
                    sim.submit(decode_command(packet.payload))
                except (ProtocolError, ValueError):
                    link.stats.rejected += 1
                    continue
                last_command, damped = now, False
            elif packet.type == BYE:
                sim.damp()
                gate.end()
                if exit_on_bye:
                    return
        if last_command is not None and not damped and rate.elapsed() - last_command > command_timeout:
            sim.damp()
            damped = True
        sim.step(min(due, max_catch_up))
        if link.session:
            try:
                link.send(STATE, encode_state(sim.sample().fields), stamp=sim.time)
            except OSError:  # the runtime is gone
                if exit_on_bye:
                    return
                gate.end()


def _robot_process(sock: socket.socket, cfg: SimConfig, rt_priority: int | None) -> None:
    """Entry point of the robot process: serves its parent until BYE or the parent dies."""
    parent = os.getppid()
    sim = MujocoSim(cfg)
    serve(sim, Link(sock), stop=lambda: os.getppid() != parent, exit_on_bye=True,
          rt_priority=rt_priority)


class MujocoRobot:
    """The MuJoCo robot behind the :class:`~deploy.robots.base.Robot` protocol.

    ``realtime=True``: physics in a spawned process on its own clock (with the SCHED_FIFO
    ``rt_priority`` when given); ``False``: lockstep in this process, one ``control_dt`` of
    physics per command.
    """

    source = "sim2sim"

    def __init__(self, cfg: SimConfig, realtime: bool = True, control_dt: float | None = None,
                 rt_priority: int | None = None, faults: Faults | None = None):
        if faults is not None and faults.active and not realtime:
            raise ValueError("link faults apply to a real-time robot (lockstep has no link)")
        self.cfg, self.lockstep, self.rt_priority, self.faults = cfg, not realtime, rt_priority, faults
        self.name = cfg.name
        self.control_dt = control_dt
        self.process: mp.process.BaseProcess | None = None
        self._client: DatagramRobot | None = None
        self._sim: MujocoSim | None = None
        self._next: StateSample | None = None

    def connect(self, timeout: float = 60.0, cancel: Callable[[], bool] | None = None) -> StateSample:
        if self.lockstep:
            self._sim = MujocoSim(self.cfg)
            dt = self.control_dt or self._sim.task.cfg.control_dt
            self._substeps = max(1, int(round(dt / self._sim.dt)))
            return self._sim.sample()
        ctx = mp.get_context("spawn")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.process = ctx.Process(target=_robot_process, args=(theirs, self.cfg, self.rt_priority),
                                   daemon=True)
        self.process.start()
        theirs.close()
        if self.faults is not None and self.faults.active:
            ours = FaultySocket(ours, self.faults)
        self._client = DatagramRobot(ours, None, self.name, self.source)
        try:
            return self._client.connect(timeout, cancel)
        except RobotLost:
            self.close()
            raise

    def read_state(self) -> StateSample | None:
        if self.lockstep:
            sample, self._next = self._next, None
            return sample
        sample = self._client.read_state()
        if sample is None and not self.process.is_alive():
            raise RobotLost(f"{self.name}: the robot process exited (code {self.process.exitcode})")
        return sample

    def send_command(self, command: Command) -> None:
        if self._sim is None and self._client is None:
            raise RobotLost(f"{self.name}: not connected")
        if self.lockstep:
            self._sim.submit(command)
            self._sim.step(self._substeps)
            self._next = self._sim.sample()
            return
        self._client.send_command(command)

    def link_stats(self) -> LinkStats:
        return self._client.link_stats() if self._client else LinkStats()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.process is not None:
            self.process.join(2.0)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(2.0)


@register_robot("mujoco", "mujoco or mujoco:MODEL.xml: the task's MuJoCo model (or your MJCF) in a "
                          "robot process, with a perturbation file as the reality proxy")
def make_mujoco_robot(uri: str, spec: dict[str, Any], options: RobotOptions) -> MujocoRobot:
    """The ``mujoco[:MODEL.xml]`` back-end."""
    if options.key is not None:
        raise ValueError("a link key applies to udp robots; the mujoco robot's link is a local "
                         "socket pair")
    cfg = SimConfig.from_spec(spec, uri.partition(":")[2] or None, options.perturbation, options.seed)
    return MujocoRobot(cfg, options.realtime, spec_control_dt(spec), options.rt_priority,
                       options.faults)
