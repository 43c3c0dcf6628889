"""Franka arms through libfranka (``franka://HOST``), with the official Python bindings
``pylibfranka`` (``pip install ".[franka]"``; imported only when a franka robot is made).

Control scheme. libfranka wants a command every millisecond of the robot's clock; the policy
runs at its task rate (the runtime's loop, 25 Hz for the Panda tasks). A control thread runs
libfranka's joint-position control (``start_joint_position_control`` with the robot's internal
joint-impedance controller, ``readOnce`` / ``writeOnce``) and turns the newest 7 joint targets
of the runtime into 1 kHz commands with a jerk-limited tracker (:class:`JointTracker`): every
commanded trajectory stays within the arm's documented joint position, velocity, acceleration
and jerk limits (Franka's "Robot and interface specifications"; libfranka aborts a motion that
violates them), scaled by ``?speed=``. The tracker advances by the ``duration`` libfranka
reports for each cycle (the robot's clock: one tick per millisecond of robot time, more when
packets were lost), never by wall time, so it is right on a simulator slower than real time.

Readings (robot clock ``RobotState.time`` as the stamp): ``joint_pos``/``joint_vel`` (``q``,
``dq``), ``ee_pos`` (the task model's ``gripper`` site at the measured joints, as in training:
the FR3 and the Panda share their kinematics), ``gripper_width`` and ``motor_pos``/``motor_vel``
in the task model's actuator order (7 arm joints; a finger joint or finger tendon actuator
reads half the gripper width). ``?object=X,Y,Z`` adds a fixed ``object_pos`` (and an upright
``object_quat``) for tasks that observe an object until a perception source fills it.
``target_clamped`` counts the joint targets clamped into the robot's limits so far.

Commands. RUN: the actuator targets of the 7 arm joints (the finger command is not sent: the
gripper is not moved). The arm's own joint-impedance controller tracks them with the stiffness
``K_theta`` (Nm/rad) set at connect by ``set_joint_impedance``: the checkpoint's actuator gains
(``pd_gains.kp`` of its spec, what the policy was trained with) unless ``?impedance=`` says
otherwise (``robot``: leave the arm's own setting; ``K1,...,K7``: these values). Values must lie
in (0, 10000] Nm/rad; libfranka picks the damping itself. DAMP (every safe
stop): the tracker brakes to zero velocity within the limits and holds; ``close`` ends the
motion once the arm is still.

Limits. The range the checkpoint's policy can command (the task's ``target_low`` /
``target_high`` where it declares them, as ``panda-reach`` does, else its model's joint ranges)
is compared with the robot's (:data:`FR3`) at start: ``?limits=clamp`` (default) clamps every
target into the robot's range shrunk by ``?margin=`` (rad) and names the joints that differ (on
stderr and in the log's metadata, ``limits``); ``?limits=refuse`` refuses such a checkpoint with
an error naming each joint.
libfranka's errors (``ControlException`` for reflexes such as ``joint_velocity_violation``,
``NetworkException``, ``CommandException``) end the control thread; the runtime's next read
raises :class:`~deploy.robots.base.RobotLost` with libfranka's message, a safe stop whose
reason goes into the report and the log. ``?recover=1`` runs libfranka's
``automatic_error_recovery`` once at connect (clears a reflex left from an earlier run);
nothing is recovered without it.

URI: ``franka://HOST[?realtime=enforce|ignore&limits=clamp|refuse&margin=RAD&speed=S&gripper=0|1
&impedance=spec|robot|K1,...,K7&object=X,Y,Z&recover=0|1&trace=FILE.npz]``. ``realtime``: libfranka's real-time check
(default ``ignore`` on loopback simulators, ``enforce`` otherwise). ``trace``: the 1 kHz
commands (robot time, duration, q_c, q, dq) saved as npz at close.
pylibfranka 0.21 speaks the FR3's protocol (libfranka >= 0.10): a Panda on its older system
image needs libfranka 0.9 and is not served here.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import mujoco
import numpy as np

from deploy.robots.base import DAMP, Command, LinkStats, RobotLost, RobotOptions, StateSample, register_robot

TICK = 1e-3  # libfranka's control period (s of robot time)


@dataclass(frozen=True)
class ArmLimits:
    """Documented joint limits of a Franka arm (rad, rad/s, rad/s^2, rad/s^3)."""

    name: str
    q_min: tuple[float, ...]
    q_max: tuple[float, ...]
    dq_max: tuple[float, ...]
    ddq_max: tuple[float, ...]
    dddq_max: tuple[float, ...]


# Franka's "Robot and interface specifications" (docs, control_parameters: joint space limits)
FR3 = ArmLimits("fr3",
                (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159),
                (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159),
                (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26),
                (10.0,) * 7, (5000.0,) * 7)
PANDA = ArmLimits("panda",
                  (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
                  (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
                  (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61),
                  (15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0),
                  (7500.0, 3750.0, 5000.0, 6250.0, 7500.0, 10000.0, 10000.0))


# -- the 1 kHz trajectory ---------------------------------------------------------------------
class JointTracker:
    """A jerk-limited tracker of a moving joint target, one millisecond per :meth:`tick`.

    Cascade: position error -> desired velocity (gain ``kp``, braking curve
    ``sqrt(2 a |e|)``, capped at ``v_max``) -> desired acceleration (gain ``kv``, capped at
    ``a_max`` and by the jerk needed to reach it) -> jerk clipped to ``j_max``. The commanded
    position, velocity, acceleration and jerk therefore never exceed ``v_max``, ``a_max``,
    ``j_max`` (velocity: up to the overshoot ``a_max^2 / (2 j_max)``, covered by the margin
    between these and the documented limits) and the position never leaves [``q_low``,
    ``q_high``]."""

    def __init__(self, q0: np.ndarray, v_max: np.ndarray, a_max: np.ndarray, j_max: np.ndarray,
                 q_low: np.ndarray, q_high: np.ndarray, kp: float = 25.0, kv: float = 120.0):
        self.q = np.array(q0, dtype=np.float64)
        self.v, self.a = np.zeros_like(self.q), np.zeros_like(self.q)
        self.v_max, self.a_max, self.j_max = (np.asarray(x, dtype=np.float64) for x in (v_max, a_max, j_max))
        self.q_low, self.q_high = np.asarray(q_low, dtype=np.float64), np.asarray(q_high, dtype=np.float64)
        self.kp, self.kv = kp, kv

    def tick(self, target: np.ndarray | None) -> np.ndarray:
        """One millisecond towards ``target`` (None: brake to a standstill where it is)."""
        if target is None:
            v_des = np.zeros_like(self.v)
        else:
            e = np.clip(target, self.q_low, self.q_high) - self.q
            brake = np.sqrt(2.0 * 0.5 * self.a_max * np.abs(e))
            v_des = np.sign(e) * np.minimum(np.minimum(self.kp * np.abs(e), brake), self.v_max)
        dv = v_des - self.v
        a_des = np.sign(dv) * np.minimum(np.minimum(self.kv * np.abs(dv), self.a_max),
                                         np.sqrt(2.0 * self.j_max * np.abs(dv)))
        jerk = np.clip((a_des - self.a) / TICK, -self.j_max, self.j_max)
        self.a = np.clip(self.a + jerk * TICK, -self.a_max, self.a_max)
        self.v = self.v + self.a * TICK
        q = self.q + self.v * TICK
        # the range: never commanded past it (the braking curve keeps it from getting there)
        self.q = np.clip(q, self.q_low, self.q_high)
        return self.q

    @property
    def still(self) -> bool:
        return bool(np.all(np.abs(self.v) < 1e-4) and np.all(np.abs(self.a) < 1e-2))


def trajectory_derivatives(q_c: np.ndarray, ticks: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Velocity, acceleration and jerk of 1 kHz commands ``q_c`` (T, 7) by finite differences
    over consecutive ticks (``ticks``: the robot's tick of each command; gaps are skipped)."""
    out: dict[str, np.ndarray] = {}
    d, t = np.asarray(q_c, dtype=np.float64), None if ticks is None else np.asarray(ticks)
    for name in ("velocity", "acceleration", "jerk"):
        d = np.diff(d, axis=0) / TICK
        if t is not None:
            ok = np.diff(t) == 1
            t = t[1:]
            d = np.where(ok[:, None], d, np.nan)
        out[name] = d
    return out


# -- addresses --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrankaAddress:
    host: str
    realtime: str                        # "enforce" | "ignore"
    limits: str = "clamp"                # "clamp" | "refuse"
    margin: float = 0.02                 # rad kept inside the robot's joint range
    speed: float = 0.5                   # share of the documented velocity/acceleration/jerk
    gripper: bool = True
    object_pos: tuple[float, float, float] | None = None
    recover: bool = False
    trace: str | None = None
    impedance: str | tuple[float, ...] = "spec"  # "spec" | "robot" | 7 stiffnesses (Nm/rad)


_USAGE = ("expected franka://HOST[?realtime=enforce|ignore&limits=clamp|refuse&margin=RAD&speed=S"
          "&gripper=0|1&impedance=spec|robot|K1,...,K7&object=X,Y,Z&recover=0|1&trace=FILE.npz], "
          "e.g. franka://172.16.0.2")
MAX_IMPEDANCE = 10000.0  # Nm/rad: the largest joint stiffness simrl sends


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_uri(uri: str) -> FrankaAddress:
    """``franka://HOST[?...]`` -> :class:`FrankaAddress`; ValueError naming the bad option."""
    if not uri.startswith("franka://"):
        raise ValueError(f"bad robot address {uri!r}; {_USAGE}")
    parts = urlsplit(uri)
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.port is not None:
        raise ValueError(f"bad robot address {uri!r}: give the robot's host name or IP only; {_USAGE}")
    q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    known = {"realtime", "limits", "margin", "speed", "gripper", "object", "recover", "trace", "impedance"}
    unknown = sorted(set(q) - known)
    if unknown:
        raise ValueError(f"robot address {uri!r}: unknown option {unknown[0]!r}; {_USAGE}")

    def choice(key: str, allowed: tuple[str, ...], default: str) -> str:
        v = q.get(key, default)
        if v not in allowed:
            raise ValueError(f"robot address {uri!r}: {key}={v!r}, expected one of {'|'.join(allowed)}")
        return v

    def number(key: str, default: float, low: float, high: float) -> float:
        try:
            v = float(q.get(key, default))
        except ValueError:
            raise ValueError(f"robot address {uri!r}: {key}={q[key]!r} is not a number") from None
        if not low <= v <= high:
            raise ValueError(f"robot address {uri!r}: {key}={v:g} must be in [{low:g}, {high:g}]")
        return v

    obj = None
    if "object" in q:
        try:
            obj = tuple(float(x) for x in q["object"].split(","))
        except ValueError:
            obj = ()
        if len(obj) != 3 or not np.all(np.isfinite(obj)):
            raise ValueError(f"robot address {uri!r}: object={q['object']!r}, expected X,Y,Z in metres")
    impedance: str | tuple[float, ...] = q.get("impedance", "spec")
    if impedance not in ("spec", "robot"):
        impedance = _impedance_values(str(impedance), f"robot address {uri!r}: impedance")
    return FrankaAddress(
        host, choice("realtime", ("enforce", "ignore"), "ignore" if _is_loopback(host) else "enforce"),
        choice("limits", ("clamp", "refuse"), "clamp"), number("margin", 0.02, 0.0, 0.3),
        number("speed", 0.5, 0.01, 0.9), choice("gripper", ("0", "1"), "1") == "1", obj,
        choice("recover", ("0", "1"), "0") == "1", q.get("trace") or None, impedance)


def _impedance_values(text: str | Any, where: str) -> tuple[float, ...]:
    """7 joint stiffnesses in (0, MAX_IMPEDANCE] Nm/rad from ``K1,...,K7`` or a sequence."""
    try:
        k = tuple(float(x) for x in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        k = ()
    if len(k) != 7:
        raise ValueError(f"{where}={text!r}: expected spec, robot or 7 joint stiffnesses K1,...,K7 (Nm/rad)")
    bad = [i for i, v in enumerate(k) if not 0.0 < v <= MAX_IMPEDANCE]
    if bad:
        raise ValueError(f"{where}: joint{bad[0] + 1} stiffness {k[bad[0]]:g} Nm/rad is outside "
                         f"(0, {MAX_IMPEDANCE:g}]")
    return k


def joint_impedance(addr: FrankaAddress, spec: dict[str, Any]) -> tuple[tuple[float, ...] | None, str]:
    """The joint stiffness to set at connect (None: leave the robot's) and where it comes from:
    ``?impedance=K1,...`` , else the spec's ``pd_gains.kp`` of the 7 arm actuators (``spec``,
    the default), else the robot's own (``robot``, or a spec without servo gains)."""
    if isinstance(addr.impedance, tuple):
        return addr.impedance, "the robot address (?impedance=)"
    gains = spec.get("pd_gains") if addr.impedance == "spec" else None
    if not gains or len(gains.get("kp", ())) < 7:
        return None, ("the robot's own setting" if addr.impedance == "robot"
                      else "the robot's own setting (the checkpoint has no servo gains)")
    return _impedance_values(gains["kp"][:7], "spec.json pd_gains.kp"), "the checkpoint (spec pd_gains.kp)"


# -- the model's side -------------------------------------------------------------------------
@dataclass
class ArmModel:
    """Which of the task model's actuators drive the 7 arm joints, their ranges, the finger
    tendon actuator (if any) and the end-effector site."""

    model: mujoco.MjModel
    arm_actuators: np.ndarray            # (7,) actuator index of arm joint i
    arm_qpos: np.ndarray                 # (7,) qpos address of arm joint i
    joint_low: np.ndarray
    joint_high: np.ndarray
    finger_actuators: np.ndarray         # actuators on a tendon (the Panda hand)
    site: int                            # "gripper" site, -1 if none
    joint_names: list[str] = field(default_factory=list)

    @classmethod
    def from_task(cls, task: Any) -> "ArmModel":
        """The arm of a task's model, with the joint range its policy can command: the task's
        ``target_low`` / ``target_high`` where it declares them, else the model's joint ranges."""
        arm = cls.from_model(task.model)
        low, high = getattr(task, "target_low", None), getattr(task, "target_high", None)
        if low is not None and high is not None:
            arm.joint_low, arm.joint_high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        return arm

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> "ArmModel":
        arm, fingers, names = [], [], []
        for i in range(model.nu):
            if int(model.actuator_trntype[i]) == int(mujoco.mjtTrn.mjTRN_JOINT):
                j = int(model.actuator_trnid[i, 0])
                if int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_HINGE):
                    arm.append((i, j))
                    continue
                if int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_SLIDE):
                    fingers.append(i)  # a finger joint: half the gripper width
                    continue
            if int(model.actuator_trntype[i]) == int(mujoco.mjtTrn.mjTRN_TENDON):
                fingers.append(i)  # the hand's finger tendon: half the gripper width
                continue
            raise ValueError(f"actuator {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or i} "
                             "is neither an arm joint nor the finger tendon; a franka robot has 7 arm "
                             "joints and a hand")
        if len(arm) != 7:
            raise ValueError(f"a franka robot has 7 arm joints; the checkpoint's model actuates {len(arm)} hinge joints")
        joints = np.array([j for _, j in arm])
        names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or str(j) for j in joints]
        rng = model.jnt_range[joints].copy()
        unlimited = ~model.jnt_limited[joints].astype(bool)
        rng[unlimited] = (-np.inf, np.inf)
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "gripper")
        return cls(model, np.array([i for i, _ in arm]), model.jnt_qposadr[joints].copy(),
                   rng[:, 0], rng[:, 1], np.array(fingers, dtype=int), int(site), names)


def check_limits(arm: ArmModel, robot: ArmLimits, mode: str, margin: float) -> tuple[np.ndarray, np.ndarray, str]:
    """The joint range the targets are clamped into (the robot's, shrunk by ``margin``) and a
    message listing the joints whose checkpoint range exceeds it ('' when none). ``mode``
    ``refuse``: ValueError when any does."""
    low = np.array(robot.q_min) + margin
    high = np.array(robot.q_max) - margin
    bad = [f"{n} [{lo:.4f}, {hi:.4f}] vs {robot.name} [{rl:.4f}, {rh:.4f}]"
           for n, lo, hi, rl, rh in zip(arm.joint_names, arm.joint_low, arm.joint_high, robot.q_min, robot.q_max)
           if lo < rl or hi > rh]
    msg = ""
    if bad:
        msg = (f"the checkpoint's joint ranges exceed the {robot.name.upper()}'s on {len(bad)} joint(s): "
               + "; ".join(bad))
        if mode == "refuse":
            raise ValueError(f"franka: {msg} (limits=refuse; use ?limits=clamp to clamp the targets "
                             f"into the robot's range)")
        msg += f"; targets are clamped into the robot's range less {margin:g} rad"
    return low, high, msg


# -- the robot --------------------------------------------------------------------------------
class FrankaRobot:
    """A Franka arm (or franky-sim) through pylibfranka; see the module doc."""

    lockstep = False
    source = "robot"

    def __init__(self, addr: FrankaAddress, arm: ArmModel, limits: ArmLimits = FR3,
                 warn: Callable[[str], None] | None = None, spec: dict[str, Any] | None = None):
        self.addr, self.arm, self.limits = addr, arm, limits
        self.name = f"franka://{addr.host} ({limits.name})"
        self.q_low, self.q_high, msg = check_limits(arm, limits, addr.limits, addr.margin)
        if msg:
            (warn or (lambda m: print(f"franka: {m}", file=sys.stderr, flush=True)))(msg)
        self.impedance, source = joint_impedance(addr, spec or {})
        # what the run's log metadata records about this back-end (Runtime reads ``notes``)
        self.notes = {"limits": msg or f"the checkpoint's joint ranges lie within the {limits.name.upper()}'s",
                      "joint_impedance": (f"{list(self.impedance)} Nm/rad from {source}" if self.impedance
                                          else f"not set: {source}")}
        print(f"franka: joint impedance {self.notes['joint_impedance']}", file=sys.stderr, flush=True)
        self.stats = LinkStats()
        self._data = mujoco.MjData(arm.model)
        self._lock = threading.Lock()
        self._target: np.ndarray | None = None    # arm joint targets from the runtime
        self._damp = False
        self._finish = threading.Event()
        self._thread: threading.Thread | None = None
        self._robot: Any = None
        self._gripper: Any = None
        self._gripper_width = float("nan")
        self._latest: tuple[Any, float] | None = None  # (libfranka state, robot time)
        self._seq = 0
        self._last_stamp: float | None = None   # robot time of the last state returned
        self._error: str | None = None
        self._clamped = 0
        self._trace: list[tuple] = []
        self.durations: list[float] = []          # libfranka's period of each cycle (s)
        self.wall: list[float] = []               # perf_counter at each cycle (rate statistics)

    # -- connection ---------------------------------------------------------------------------
    def connect(self, timeout: float = 60.0, cancel: Callable[[], bool] | None = None) -> StateSample:
        """Connects (within ``timeout`` s), starts joint-position control and returns the first
        state. RobotLost when the robot does not answer."""
        import pylibfranka as pf
        deadline = time.monotonic() + timeout
        rt = pf.RealtimeConfig.kEnforce if self.addr.realtime == "enforce" else pf.RealtimeConfig.kIgnore
        while self._robot is None:
            if cancel is not None and cancel():
                from deploy.robots.udp import ConnectCancelled
                raise ConnectCancelled(f"{self.name}: connecting cancelled")
            try:
                self._robot = pf.Robot(self.addr.host, rt)
            except pf.NetworkException as exc:  # nobody there yet
                if time.monotonic() > deadline:
                    raise RobotLost(f"{self.name}: no robot answered within {timeout:g} s "
                                    f"(libfranka: {exc})") from None
                time.sleep(0.2)
            except pf.FrankaException as exc:
                raise RobotLost(f"{self.name}: {type(exc).__name__}: {exc}") from None
        try:
            if self.addr.recover:
                self._robot.automatic_error_recovery()
            if self.impedance is not None:
                self._robot.set_joint_impedance(list(self.impedance))
            if self.addr.gripper:
                self._gripper = pf.Gripper(self.addr.host)
                self._gripper_width = float(self._gripper.read_once().width)
            ctl = self._robot.start_joint_position_control(pf.ControllerMode.JointImpedance)
            state, _ = ctl.readOnce()
        except pf.FrankaException as exc:
            self.close()
            raise RobotLost(f"{self.name}: {type(exc).__name__}: {exc}") from None
        q0 = np.array(state.q_d, dtype=np.float64)
        outside = (q0 < np.array(self.limits.q_min)) | (q0 > np.array(self.limits.q_max))
        if outside.any():
            self.close()
            raise RobotLost(f"{self.name}: joint {int(np.argmax(outside)) + 1} at {q0[outside][0]:.4f} rad is "
                            f"outside the {self.limits.name} range")
        s = self.addr.speed
        self._tracker = JointTracker(q0, s * np.array(self.limits.dq_max), s * np.array(self.limits.ddq_max),
                                     s * np.array(self.limits.dddq_max),
                                     np.maximum(self.q_low, np.minimum(q0, self.q_low)),
                                     np.minimum(self.q_high, np.maximum(q0, self.q_high)))
        self._latest = (state, float(state.time.to_sec()))
        self._thread = threading.Thread(target=self._control, args=(ctl, pf), name="franka-1khz", daemon=True)
        self._thread.start()
        if self._gripper is not None:
            threading.Thread(target=self._read_gripper, name="franka-gripper", daemon=True).start()
        return self._sample(state, float(state.time.to_sec()))

    # -- the 1 kHz thread ---------------------------------------------------------------------
    def _control(self, ctl: Any, pf: Any) -> None:
        """readOnce -> tracker (by libfranka's duration) -> writeOnce, until finished or an
        error (kept in ``_error``: the runtime's next read raises it as RobotLost)."""
        tick = 0
        try:
            while True:
                state, period = ctl.readOnce()
                dt = float(period.to_sec())
                now = time.perf_counter()
                n = max(int(round(dt / TICK)), 0)
                with self._lock:
                    self._latest = (state, float(state.time.to_sec()))
                    self.stats.received += 1
                    self.stats.lost += max(n - 1, 0)
                    target = None if self._damp else self._target
                    finishing = self._finish.is_set()
                self.durations.append(dt)
                self.wall.append(now)
                for _ in range(n):  # one step per millisecond of robot time
                    q_c = self._tracker.tick(None if finishing else target)
                tick += n
                q_c = self._tracker.q
                cmd = pf.JointPositions(q_c.tolist())
                done = finishing and self._tracker.still
                if done:
                    cmd.motion_finished = True
                ctl.writeOnce(cmd)
                self.stats.sent += 1
                if self.addr.trace:
                    self._trace.append((float(state.time.to_sec()), tick, dt, *q_c, *state.q, *state.dq))
                if done:
                    return
        except Exception as exc:  # noqa: BLE001  (pylibfranka raises FrankaException subclasses)
            with self._lock:
                self._error = f"libfranka {type(exc).__name__}: {exc}"

    def _read_gripper(self) -> None:
        while self._gripper is not None and not self._finish.is_set():
            try:
                width = float(self._gripper.read_once().width)
            except Exception:  # noqa: BLE001  the gripper's link: the width stays at its last value
                return
            with self._lock:
                self._gripper_width = width

    # -- the runtime's side -------------------------------------------------------------------
    def _sample(self, state: Any, stamp: float) -> StateSample:
        q = np.array(state.q, dtype=np.float64)
        dq = np.array(state.dq, dtype=np.float64)
        m, d, arm = self.arm.model, self._data, self.arm
        d.qpos[arm.arm_qpos] = q
        fields = {"joint_pos": q, "joint_vel": dq,
                  "gripper_width": np.array([self._gripper_width if self._gripper is not None else 0.0]),
                  "target_clamped": np.array([float(self._clamped)])}
        if arm.site >= 0:
            mujoco.mj_kinematics(m, d)
            fields["ee_pos"] = d.site_xpos[arm.site].copy()
        if self.addr.object_pos is not None:
            fields["object_pos"] = np.array(self.addr.object_pos, dtype=np.float64)
            fields["object_quat"] = np.array([1.0, 0.0, 0.0, 0.0])
        motor_pos, motor_vel = np.zeros(m.nu), np.zeros(m.nu)
        motor_pos[arm.arm_actuators], motor_vel[arm.arm_actuators] = q, dq
        motor_pos[arm.finger_actuators] = 0.5 * fields["gripper_width"][0]
        fields["motor_pos"], fields["motor_vel"] = motor_pos, motor_vel
        self._seq += 1
        return StateSample(self._seq, stamp, fields)

    def read_state(self) -> StateSample | None:
        with self._lock:
            error, latest = self._error, self._latest
        if error is not None:
            raise RobotLost(f"{self.name}: {error}")
        if latest is None or latest[1] == self._last_stamp:
            return None
        self._last_stamp = latest[1]
        return self._sample(*latest)

    def send_command(self, command: Command) -> None:
        with self._lock:
            error = self._error
        if error is not None:
            raise RobotLost(f"{self.name}: {error}")
        if self._thread is None or not self._thread.is_alive():
            raise RobotLost(f"{self.name}: not connected")
        if command.mode == DAMP:
            with self._lock:
                self._damp = True
            return
        target = np.asarray(command.ctrl, dtype=np.float64)[self.arm.arm_actuators]
        if not np.all(np.isfinite(target)):
            raise ValueError(f"{self.name}: non-finite joint target {target}")
        clamped = np.clip(target, self.q_low, self.q_high)
        with self._lock:
            if np.any(clamped != target):
                self._clamped += 1
            self._target = clamped

    def link_stats(self) -> LinkStats:
        return self.stats

    def rate_stats(self) -> dict[str, float]:
        """Control-loop statistics: cycles, wall-clock rate (Hz), robot time per wall second,
        share of cycles whose libfranka period exceeded 1 ms."""
        d = np.array(self.durations[1:])
        if len(d) < 2:
            return {}
        wall = self.wall[-1] - self.wall[0]
        return {"cycles": float(len(d)), "wall_rate_hz": len(d) / wall, "robot_time_per_wall_s": d.sum() / wall,
                "late_share": float(np.mean(d > TICK + 1e-9)),
                "wall_period_p50_ms": float(np.percentile(np.diff(self.wall), 50) * 1e3),
                "wall_period_p99_ms": float(np.percentile(np.diff(self.wall), 99) * 1e3)}

    def close(self) -> None:
        """Brakes to a standstill, ends the motion, joins the control thread, writes the trace
        and releases the robot; idempotent."""
        with self._lock:
            self._damp = True
        self._finish.set()
        if self._thread is not None:
            self._thread.join(timeout=3.0)
            self._thread = None
        if self.addr.trace and self._trace:
            a = np.array(self._trace)
            Path(self.addr.trace).parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.addr.trace, robot_time=a[:, 0], tick=a[:, 1].astype(np.int64), duration=a[:, 2],
                     q_c=a[:, 3:10], q=a[:, 10:17], dq=a[:, 17:24], dq_max=np.array(self.limits.dq_max),
                     ddq_max=np.array(self.limits.ddq_max), dddq_max=np.array(self.limits.dddq_max),
                     q_min=np.array(self.limits.q_min), q_max=np.array(self.limits.q_max))
            self._trace = []
        self._gripper = None
        self._robot = None


@register_robot("franka", "franka://HOST[?limits=clamp|refuse&object=X,Y,Z&...]: a Franka FR3 through "
                          "libfranka (pylibfranka; pip install '.[franka]'), or franky-sim")
def make_franka_robot(uri: str, spec: dict[str, Any], options: RobotOptions) -> FrankaRobot:
    """The ``franka://HOST`` back-end for a checkpoint ``spec``."""
    from envs.tasks import task_from_spec
    options.refuse("franka")
    addr = parse_uri(uri)
    try:
        import pylibfranka  # noqa: F401
    except ImportError:
        raise ValueError("franka robots need pylibfranka: pip install '.[franka]' "
                         "(pylibfranka==0.21.3)") from None
    return FrankaRobot(addr, ArmModel.from_task(task_from_spec(spec)), spec=spec)
