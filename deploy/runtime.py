"""The robot runtime: a fixed-rate control loop from robot readings to safe motor commands.

Each control period (absolute deadlines on ``time.perf_counter``; lockstep robots need none):

1. read the newest state sample (the stale-data watchdog stops when no new state came for
   ``stale_timeout_s`` on a monotonic clock, see :mod:`deploy.safety`; a sample whose fields
   differ from the first one's is a stop);
2. build the robot-state record (the robot's readings + the runtime's command, last action and
   task state) and the observation with the task's own ``observation`` (as in training);
3. zero torque and soft start (the robot's start-up), or the policy (onnxruntime, no torch) -> safety layer (action limits) ->
   ``task.action_to_ctrl`` -> safety layer (command limits) -> the robot, with the spec's PD
   gains;
4. evaluate the task reward on consecutive records when the robot reports what it needs (the
   MuJoCo proxy does): the run's "real return";
5. queue the step for the recorder (a background thread writes the MCAP log).

A stop (see :mod:`deploy.safety`) sends damped-stop commands for ``stop_hold_s`` and ends the
run; Ctrl-C and SIGTERM are an e-stop, also while connecting. Every other way out (an error,
a robot that never answers) still sends the damped stop, closes the log (removed when no step
ran: it would hold nothing) and releases the robot.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from deploy.clock import Rate, realtime_scheduling
from deploy.commands import CommandSource
from deploy.policy import OnnxPolicy
from deploy.policy_io import PolicyIO
from deploy.recorder import Recorder, log_meta
from deploy.robots import Robot, RobotOptions, make_robot, spec_control_dt
from deploy.robots.base import Command, RobotLost, StateSample, compose_state
from deploy.robots.udp import ConnectCancelled, Faults
from deploy.actuators import Actuators
from deploy.safety import SafetyConfig, SafetyLayer
from envs.perturbation import Perturbation
from envs.tasks import task_from_spec
from simrl.core.robot_state import RobotState
from simrl.core.spec import load_spec, policy_id

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class RuntimeConfig:
    """How the runtime runs (the safety limits are in ``safety``)."""

    realtime: bool = True               # False: lockstep, only with the MuJoCo robot
    command: tuple[float, ...] | None = None  # the task command (Go1: vx, vy, yaw rate); None: drawn
    seed: int = 0                       # task command / task state draw, and the MuJoCo robot's
    end_on_termination: bool = True     # end when the task terminates (needs privileged readings)
    spin_s: float = 0.0002              # busy-wait this long before each deadline (precision)
    rt_priority: int | None = None      # SCHED_FIFO priority of the loop (needs privileges)
    safety: SafetyConfig = field(default_factory=SafetyConfig)


@dataclass
class DeployReport:
    """What a run did. ``real_return``: the task's return over the policy's steps up to the
    task's termination (as a training episode counts it), None when the robot does not report
    what the reward needs. ``jitter_ms``: |period - control period|."""

    checkpoint: str
    robot: str
    realtime: bool
    control_period_s: float
    steps: int
    policy_steps: int
    duration_s: float
    deadline_misses: int
    jitter_ms: dict[str, float]
    inference_ms: dict[str, float]
    safety_events: dict[str, int]
    stop_reason: str | None             # a safety stop event, "terminated", or None (ran out)
    terminated: bool
    real_return: float | None
    link: dict[str, int]
    log_path: str | None
    stop_detail: str | None = None      # what the robot said when it was lost (libfranka's error)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        events = ", ".join(f"{k} {v}" for k, v in self.safety_events.items() if v) or "none"
        link = ", ".join(f"{k} {v}" for k, v in self.link.items()) if self.link.get("sent") else "no link"
        lines = [
            f"deployed {self.checkpoint} on {self.robot} ({'real time' if self.realtime else 'lockstep'}, "
            f"{1 / self.control_period_s:g} Hz)",
            f"  steps {self.steps} ({self.policy_steps} by the policy) in {self.duration_s:.2f} s, "
            f"stop: {self.stop_reason or 'none (ran the full duration)'}"
            + (f" ({self.stop_detail})" if self.stop_detail else ""),
            f"  inference p50 {self.inference_ms['p50']:.3f} ms, p99 {self.inference_ms['p99']:.3f} ms",
            f"  safety events: {events}",
            f"  packets: {link}",
        ]
        if self.realtime and self.jitter_ms:
            j = self.jitter_ms
            lines.insert(2, f"  deadline misses {self.deadline_misses}, period jitter p50 {j['p50']:.3f} ms, "
                            f"p99 {j['p99']:.3f} ms, max {j['max']:.3f} ms")
        if self.real_return is not None:
            ended = " (the task terminated)" if self.terminated else ""
            lines.append(f"  real return {self.real_return:.3f}{ended}")
        if self.log_path:
            lines.append(f"  log {self.log_path}")
        return "\n".join(lines)


@contextmanager
def _estop_signals(flag: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``flag`` (main thread only) instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = lambda signum, frame: flag.set()  # noqa: E731
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Runtime:
    """Runs one checkpoint on one robot, once. ``policy``: replaces the ONNX policy (tests,
    scripted controllers): the network's input (obs_dim,) -> its output (act_dim,);
    :class:`~deploy.policy_io.PolicyIO` adds the history or the residual base around it."""

    def __init__(self, checkpoint: str | os.PathLike, robot: Robot, config: RuntimeConfig | None = None,
                 policy: Policy | None = None, commands: CommandSource | None = None):
        self.checkpoint, self.robot = str(checkpoint), robot
        self.commands = commands
        self.cfg = config or RuntimeConfig()
        if robot.lockstep == self.cfg.realtime:
            raise ValueError(f"robot {robot.name} is {'lockstep' if robot.lockstep else 'real time'}, "
                             f"the runtime is configured {'real time' if self.cfg.realtime else 'lockstep'}")
        self.spec = load_spec(checkpoint)
        self.task = task_from_spec(self.spec)
        self.io = PolicyIO(self.spec, self.task)
        if self.io.input_size != len(self.spec["observation"]["names"]):
            raise ValueError(f"checkpoint {checkpoint}: the network takes "
                             f"{len(self.spec['observation']['names'])} observations, task "
                             f"{self.task.name} and the checkpoint's wrapper make {self.io.input_size}")
        self.dt = spec_control_dt(self.spec, f"{checkpoint}/spec.json")
        self.policy = policy or OnnxPolicy(checkpoint, self.spec)
        actuators = Actuators.from_model(self.task.model, self.spec.get("pd_gains"), self.cfg.safety)
        self.safety = SafetyLayer(actuators, self.cfg.safety)
        self.inference: list[float] = []  # seconds per policy call
        self.task_state = self.task.reset(np.random.default_rng(self.cfg.seed), 1).task_state
        if self.cfg.command is not None:
            width = self.task_state.get("command", np.zeros((1, 0))).shape[1]
            if len(self.cfg.command) != width:
                raise ValueError(f"task {self.task.name} takes a command of {width} values, got "
                                 f"{len(self.cfg.command)}")
            self.task_state["command"] = np.asarray(self.cfg.command, dtype=np.float64)[None]
        width = self.task_state.get("command", np.zeros((1, 0))).shape[1]
        if commands is not None and width != 3:
            raise ValueError(f"task {self.task.name} takes a command of {width} values; remote and "
                             "keyboard commands are velocities (vx, vy, yaw rate)")
        if commands is not None and self.cfg.command is None:
            self.task_state["command"] = np.zeros((1, 3))  # stand still until the operator moves

    def _check_sample(self, sample: StateSample) -> None:
        nu = self.task.model.nu
        for key in ("motor_pos", "motor_vel"):
            if sample.fields.get(key, np.zeros(0)).shape != (nu,):
                raise ValueError(f"robot {self.robot.name}: state lacks {key} for {nu} actuators")
        rs = compose_state(sample.fields, self.task_state, np.zeros(self.task.action_size))
        try:
            obs = self.task.observation(rs)
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"robot {self.robot.name} does not report what task {self.task.name}'s "
                             f"observation needs ({type(exc).__name__}: {exc})") from None
        if obs.shape != (1, self.task.observation_size):
            raise ValueError(f"robot {self.robot.name}: observation of shape {obs.shape}, "
                             f"the policy takes {self.task.observation_size}")

    def run(self, duration: float, log_path: str | os.PathLike | None = None,
            connect_timeout: float = 60.0) -> DeployReport:
        """Connects (within ``connect_timeout`` seconds), runs for ``duration`` seconds (robot
        time in lockstep), stops damped, closes the log and the robot, whatever happens."""
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration must be a finite number of seconds > 0, got {duration}")
        recorder, steps = None, [0]
        if log_path is not None:  # before connecting: nothing slow between connect and loop
            meta = log_meta(self.spec, self.task.observation_names, self.robot.name, self.robot.source, policy_id(self.checkpoint),
                            {"checkpoint": str(Path(self.checkpoint).resolve()),
                             **getattr(self.robot, "notes", {})})  # what the back-end says of itself
            recorder = Recorder(log_path, meta, threaded=self.cfg.realtime)
        self._stopped = False
        estop = threading.Event()
        report, error = None, None
        try:
            with _estop_signals(estop):
                try:
                    sample = self.robot.connect(connect_timeout, cancel=estop.is_set)
                except ConnectCancelled:
                    self.safety.flag("estop")
                    report = self._report(_Progress(None, np.zeros(self.task.action_size), None, None,
                                                    stop_reason="estop"), None, 0.0, None)
                    return report
                self._check_sample(sample)
                report = self._loop(sample, duration, recorder, estop, steps)
                return report
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                self._safe_stop()
            finally:
                try:
                    if recorder is not None:
                        recorder.close(end=_end_record(report, error))
                        if steps[0] == 0:  # nothing ran: no log rather than an empty one
                            Path(log_path).unlink(missing_ok=True)
                        elif report is not None:
                            report.log_path = str(log_path)
                finally:
                    self.robot.close()
                    if self.commands is not None:
                        self.commands.close()

    def _safe_stop(self) -> None:
        """The damped stop, unless the loop already sent it (best effort: the robot may be
        gone)."""
        if not self._stopped:
            self._stopped = True
            try:
                self.robot.send_command(self.safety.stop_command())
            except (RobotLost, OSError):
                pass

    def _loop(self, sample: StateSample, duration: float, recorder: Recorder | None,
              estop: threading.Event, steps: list[int]) -> DeployReport:
        cfg, na = self.cfg, self.task.action_size
        rs0 = compose_state(sample.fields, self.task_state, np.zeros(na))
        default_ctrl = self.task.action_to_ctrl(np.zeros((1, na)), rs0, copy.deepcopy(self.task_state))[0]
        p = _Progress(sample, np.zeros(na), sample.fields["motor_pos"], default_ctrl)
        p.schema = {k: v.shape for k, v in sample.fields.items()}
        try:  # does the robot report what the reward needs? (real robots: no privileged state)
            self.task.reward(rs0, rs0, np.zeros((1, na)), default_ctrl[None])
        except (TypeError, KeyError, AttributeError):
            p.reward_ok = False  # decided once, so every logged step has the same fields
        rate = Rate(self.dt, cfg.spin_s) if cfg.realtime else None
        hold_steps = int(np.ceil(cfg.safety.stop_hold_s / self.dt))
        with (realtime_scheduling(cfg.rt_priority) if cfg.realtime else nullcontext()):
            t_start = time.perf_counter()
            for k in range(int(round(duration / self.dt))):
                if p.stop_step is not None and (k - p.stop_step > hold_steps
                                                or p.stop_reason == "robot_lost"):
                    break
                if rate is not None:
                    rate.wait()
                self.safety.begin_step()
                if estop.is_set():
                    self.safety.flag("estop")
                rs = self._read(k, p)
                obs = self.task.observation(rs)[0]
                self.io.observe(obs)
                reward = self._reward(p, rs)
                if p.stop_step is None:
                    p.stop_reason = self.safety.stop_reason() or (
                        "terminated" if p.terminated and cfg.end_on_termination else None)
                    p.stop_step = k if p.stop_reason else None
                command, action = self._act(k, p, rs, obs)
                if p.stop_step is not None:
                    self._stopped = True  # the damped stop is under way
                try:
                    self.robot.send_command(command)
                except RobotLost as exc:
                    self.safety.flag("robot_lost")
                    p.stop_detail = p.stop_detail or str(exc)
                    if p.stop_step is None:
                        p.stop_reason, p.stop_step = "robot_lost", k
                if recorder is not None:
                    t = k * self.dt if rate is None else rate.elapsed()
                    self._record(recorder, t, k, p, rs, obs, action, command, reward)
                p.steps += 1
                steps[0] = p.steps
            wall = time.perf_counter() - t_start
            self._safe_stop()  # the end of the run: the robot stops damped too
        return self._report(p, rate, wall, None)

    def _read(self, k: int, p: "_Progress") -> RobotState:
        """The newest sample into ``p`` (watchdog, schema and robot-lost checks) and its
        record; the first step starts from the connect sample when nothing newer came."""
        fresh, s = None, self.cfg.safety
        try:
            fresh = self.robot.read_state()
        except RobotLost as exc:
            self.safety.flag("robot_lost")
            p.stop_detail = p.stop_detail or str(exc)
        if fresh is not None and {n: v.shape for n, v in fresh.fields.items()} != p.schema:
            self.safety.flag("malformed_state")  # a field missing, added or of another size
            fresh = None
        # Stale = no new state for longer than the timeout on a monotonic clock, counted from
        # the last read that brought one: a stall of this loop followed by a new state, or a
        # few lost states between two reads, is no stop; a robot that stopped sending is.
        now = k * self.dt if self.robot.lockstep else time.monotonic()
        if k == 0:
            fresh = fresh or p.sample
            p.start_pos = fresh.fields["motor_pos"].copy()
            p.fresh_at = now
        elif fresh is not None:
            if p.stamped and not (math.isfinite(fresh.stamp) and fresh.stamp > p.sample.stamp):
                p.stamped = False  # no usable robot clock: judge by control periods
            p.fresh_at = now
        p.stale = 0 if fresh is not None else p.stale + 1
        if (now - p.fresh_at > s.stale_timeout_s if p.stamped else p.stale >= s.stale_periods):
            self.safety.flag("stale_data")
        p.sample = fresh or p.sample
        if self.commands is not None:  # the operator's command from this step on
            command = self.commands.update(p.sample.fields)
            if command is not None:
                self.task_state["command"] = np.asarray(command, dtype=np.float64)[None]
            if self.commands.estop:
                self.safety.flag("estop")
        rs = compose_state(p.sample.fields, self.task_state, p.last_action)
        self.safety.check_state(p.sample.fields, rs)
        return rs

    def _reward(self, p: "_Progress", rs: RobotState) -> float:
        """The task reward of the last policy step, added to the return until the task
        terminates (0 when none)."""
        if p.prev is None or not p.reward_ok or p.stop_step is not None or p.terminated:
            return 0.0
        try:
            r, term, _ = self.task.reward(p.prev[0], rs, p.prev[1][None], p.prev[2][None])
        except (TypeError, KeyError, AttributeError):  # the readings lack privileged fields
            p.reward_ok = False
            return 0.0
        p.ret += float(r[0])
        p.terminated = bool(term[0])
        return float(r[0])

    def _act(self, k: int, p: "_Progress", rs: RobotState, obs: np.ndarray) -> tuple[Command, np.ndarray]:
        """This step's command and the action it executes: stop, soft start or the policy."""
        safety, na = self.safety, self.task.action_size
        q, qd = p.sample.fields["motor_pos"], p.sample.fields["motor_vel"]
        if p.stop_step is not None:
            p.prev = None
            return safety.stop_command(), np.zeros(na)
        t = k * self.dt
        if not safety.zero_torque_done(t):
            p.start_pos = q.copy()  # the soft start begins where zero torque left the robot
            return safety.zero_torque(q), np.zeros(na)
        if safety.has_servos:
            t -= safety.cfg.zero_torque_s
        if not safety.soft_start_done(t):
            ctrl = safety.soft_start(t, p.start_pos, p.default_ctrl)
            return safety.run_command(safety.limit_command(ctrl, q, qd)), np.zeros(na)
        t0 = time.perf_counter()
        raw = self.policy(self.io.network_input(rs))
        self.inference.append(time.perf_counter() - t0)
        action = safety.limit_action(self.io.action(np.asarray(raw, dtype=np.float64)), p.last_action)
        if safety.flags["nonfinite_action"]:
            p.stop_reason, p.stop_step, p.prev = "nonfinite_action", k, None
            return safety.stop_command(), np.zeros(na)
        ctrl = self.task.action_to_ctrl(action[None], rs, self.task_state)[0]
        ctrl = safety.limit_command(ctrl, q, qd)
        p.prev, p.last_action = (rs, action, ctrl), action
        p.policy_steps += 1
        return safety.run_command(ctrl), action

    def _record(self, recorder: Recorder, t: float, k: int, p: "_Progress", rs: RobotState,
                obs: np.ndarray, action: np.ndarray, command: Command, reward: float) -> None:
        state = {**{n: v[0] for n, v in rs.to_dict().items()},
                 "motor_pos": p.sample.fields["motor_pos"], "motor_vel": p.sample.fields["motor_vel"],
                 "ctrl": command.ctrl, "robot_time": np.array([p.sample.stamp])}
        if p.reward_ok:
            state["reward"] = np.array([reward])
        stats = self.robot.link_stats()
        flags = {**self.safety.flags, "packets_lost": stats.lost, "packets_rejected": stats.rejected,
                 "packets_late": stats.late}
        recorder.record(t, k, state, obs, action, flags)  # NaN stays NaN: a log records what happened

    def _report(self, p: "_Progress", rate: Rate | None, wall: float,
                log_path: str | os.PathLike | None) -> DeployReport:
        """The report; ``log_path`` is filled in by :meth:`run` once the log is closed."""
        timing = rate.stats() if rate is not None else None
        inf = np.array(self.inference) * 1e3 if self.inference else np.zeros(1)
        return DeployReport(
            checkpoint=self.checkpoint, robot=self.robot.name, realtime=self.cfg.realtime,
            control_period_s=self.dt, steps=p.steps, policy_steps=p.policy_steps,
            duration_s=wall if rate is not None else p.steps * self.dt,
            deadline_misses=timing.deadline_misses if timing else 0,
            jitter_ms={"p50": timing.jitter_p50_ms, "p99": timing.jitter_p99_ms,
                       "max": timing.jitter_max_ms} if timing else {},
            inference_ms={"p50": float(np.percentile(inf, 50)), "p99": float(np.percentile(inf, 99))},
            safety_events=dict(self.safety.counts), stop_reason=p.stop_reason, stop_detail=p.stop_detail,
            terminated=p.terminated, real_return=p.ret if p.reward_ok else None,
            link=self.robot.link_stats().as_dict(), log_path=None if log_path is None else str(log_path))


def _end_record(report: DeployReport | None, error: BaseException | None) -> dict[str, str]:
    """How the run ended, for the log's closing record."""
    if report is None:
        return {"stop_reason": "error", "stop_detail": f"{type(error).__name__}: {error}" if error else ""}
    return {"stop_reason": report.stop_reason or "none", "stop_detail": report.stop_detail or "",
            "policy_steps": str(report.policy_steps)}


@dataclass
class _Progress:
    """The loop's running state."""

    sample: StateSample | None
    last_action: np.ndarray
    start_pos: np.ndarray | None         # motor positions at the first step (soft start from here)
    default_ctrl: np.ndarray | None      # the commands of a zero action (soft start to here)
    prev: tuple | None = None            # (record, action, ctrl) of the last policy step
    ret: float = 0.0
    reward_ok: bool = True
    terminated: bool = False
    stale: int = 0
    steps: int = 0
    policy_steps: int = 0
    stop_reason: str | None = None
    stop_detail: str | None = None       # the robot's message when it was lost
    stop_step: int | None = None
    schema: dict = field(default_factory=dict)  # field name -> shape of the first sample
    stamped: bool = True                 # the robot's timestamps increase (its clock is usable)
    fresh_at: float = 0.0                # when the newest sample was read (s, monotonic clock)


def run(checkpoint: str | os.PathLike, robot: str | Robot = "mujoco", duration: float = 10.0,
        log_path: str | os.PathLike | None = None, *, perturb: str | os.PathLike | Perturbation | None = None,
        config: RuntimeConfig | None = None, policy: Policy | None = None,
        faults: Faults | None = None, key: bytes | None = None,
        connect_timeout: float = 60.0, camera: tuple[str, str | os.PathLike] | None = None,
        commands: CommandSource | None = None) -> DeployReport:
    """Deploys ``checkpoint`` (with ``policy.onnx``) on ``robot`` for ``duration`` seconds.

    ``robot``: ``"mujoco"`` (the task's model), ``"mujoco:MODEL.xml"``, ``"udp://HOST:PORT"``
    or a :class:`~deploy.robots.Robot`. ``perturb``: a perturbation file or object for the
    MuJoCo robot. ``config.realtime=False`` runs the MuJoCo robot in lockstep, faster than real
    time. ``faults``: loss and delay injected into the robot link (a soak); ``key``: the UDP
    link's HMAC key. ``camera``: (SOURCE, CALIBRATION FILE): object poses from an ArUco marker
    seen by the camera (:mod:`deploy.perception`) replace the robot's own. ``commands``: the
    task command from the robot's remote or a keyboard (:mod:`deploy.commands`) instead of
    ``config.command``. Returns the :class:`DeployReport`; the log (when ``log_path`` is given)
    is closed.
    """
    config = config or RuntimeConfig()
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration}")
    if isinstance(robot, str):
        if isinstance(perturb, (str, os.PathLike)):
            perturb = Perturbation.load(perturb)
        spec = load_spec(checkpoint)
        spec_control_dt(spec, f"{checkpoint}/spec.json")
        robot = make_robot(robot, spec, RobotOptions(perturb, config.realtime, config.seed,
                                                     config.rt_priority, faults, key))
    elif perturb is not None or faults is not None or key is not None:
        raise ValueError("perturb, faults and key apply when the robot is given by name")
    if camera is not None:
        from deploy.perception import CameraCalibration, CameraPoseSource, PerceivedRobot
        robot = PerceivedRobot(robot, CameraPoseSource(camera[0], CameraCalibration.load(camera[1])))
    return Runtime(checkpoint, robot, config, policy, commands).run(duration, log_path, connect_timeout)
