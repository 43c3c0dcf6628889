"""The safety layer between the policy and the motors.

Every control step the runtime passes the policy's action and the resulting actuator commands
through it. Limits (the step goes on, the event is flagged and counted):

* ``action_rate_limit``: the action moves at most ``max_action_delta`` (policy units) per step;
* ``velocity_limit``: a servo turning faster than ``max_velocity`` gets no torque that would
  speed it up further;
* ``torque_limit``: the servo torque estimate ``kp * (target - q) - kd * qd`` stays within the
  actuator force limit (times ``torque_fraction``), by moving the target; direct (effort)
  actuators are clamped to their control and force ranges;
* ``position_limit``: servo targets are clamped into the joint range (shrunk by
  ``position_margin``) and the control range. Position limits always hold; the torque limit
  holds whenever it is compatible with them (a joint already outside its range is pulled back
  even if that takes more torque);
* ``zero_torque``: for the first ``zero_torque_s`` seconds (default 0) the servos get zero
  stiffness and damping (the first step of unitree_rl_gym's deploy_real start-up); the soft
  start begins from the pose measured at its end;
* ``soft_start``: for ``soft_start_s`` seconds the servos move from the measured pose to the
  default pose before the policy takes over. Each servo moves at ``|offset| / soft_start_s``
  but no slower than ``soft_start_speed``: a robot far from the default pose (lying down) gets
  up slowly, while the small offsets of a standing start are corrected within a fraction of a
  second (holding a skewed stance for the whole second let a go1 dropped onto its legs roll
  over).

Stops (the run ends with damped-stop commands): ``nonfinite_action`` (NaN/inf from the policy),
``nonfinite_state``, ``malformed_state`` (a state whose fields or shapes differ from the
first one's), ``tilt`` (the base tilts past ``max_tilt_deg``: a fall), ``stale_data``,
``robot_lost`` (the robot process or link died), ``stale_pose`` (the camera's object pose,
``object_pose_age`` in the state, is older than ``max_pose_age_s``: the marker is out of view
or the camera stopped; see :mod:`deploy.perception`) and ``estop`` (Ctrl-C / SIGTERM).

``stale_data``: where the robot's states carry increasing timestamps (Unitree's ``tick``, the
UDP robot's clock), the runtime stops when no new state (timestamp advanced) was read for
longer than ``stale_timeout_s`` on a monotonic clock. Lost states in between do not count, nor
how far apart two reads are: a runtime that stalls under CPU load and then reads a new state,
or a link that drops isolated states, is not stopped; a robot that stops sending (killed,
unplugged, paused too long) is, ``stale_timeout_s`` after its last new state (within 3 control
periods of 20 ms with ``stale_timeout_s`` = 0.05). Without usable timestamps: ``stale_periods``
control periods without a fresh state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.actuators import Actuators
from deploy.robots.base import DAMP, Command
from simrl.core.robot_state import RobotState, projected_gravity

LIMIT_EVENTS = ("zero_torque", "soft_start", "action_rate_limit", "velocity_limit", "torque_limit", "position_limit")
STOP_EVENTS = ("nonfinite_action", "nonfinite_state", "malformed_state", "tilt", "stale_data",
               "stale_pose", "robot_lost", "estop")
EVENTS = LIMIT_EVENTS + STOP_EVENTS


@dataclass
class SafetyConfig:
    """Limits and reactions of the safety layer (units of the actuators: rad for hinge joints)."""

    position_margin: float = 0.0     # keep servo targets this far inside the joint ranges
    max_velocity: float = 30.0       # servo speed above which no torque may speed it up
    torque_fraction: float = 1.0     # share of the actuator force limit the PD may demand
    max_action_delta: float = 1.0    # policy units per control step
    max_tilt_deg: float = 60.0       # base tilt counted as a fall (robots with an IMU)
    stale_periods: int = 3           # robots without usable timestamps: control periods without a fresh state before stopping
    stale_timeout_s: float = 0.2     # seconds (monotonic clock) without a new state before stopping
    zero_torque_s: float = 0.0       # zero torque this long before the soft start (servo robots)
    soft_start_s: float = 1.0        # move to the default pose first (servo robots only)
    soft_start_speed: float = 1.0    # servo units (rad) per second, at least, during soft start
    stop_kd: float = 1.0             # damping of the damped stop (force per unit velocity)
    stop_hold_s: float = 0.2         # damped-stop commands are sent this long before the end
    max_pose_age_s: float = 0.2      # camera object poses older than this stop the robot (stale_pose)

    def __post_init__(self) -> None:
        for name in ("position_margin", "max_velocity", "torque_fraction", "max_action_delta",
                     "zero_torque_s", "soft_start_s", "soft_start_speed", "stop_kd", "stop_hold_s",
                     "max_pose_age_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"SafetyConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.stale_timeout_s > 0 and np.isfinite(self.stale_timeout_s)):
            raise ValueError(f"SafetyConfig.stale_timeout_s must be finite and > 0, got {self.stale_timeout_s}")
        if self.stale_periods < 1:
            raise ValueError("SafetyConfig.stale_periods must be >= 1")


class SafetyLayer:
    """Applies :class:`SafetyConfig` to actions and commands; ``flags`` holds this step's
    events, ``counts`` the run's totals."""

    def __init__(self, actuators: Actuators, cfg: SafetyConfig):
        self.act, self.cfg = actuators, cfg
        self.counts = {e: 0 for e in EVENTS}
        self.flags = {e: False for e in EVENTS}
        self.last_ctrl: np.ndarray | None = None  # the last command that passed the layer
        self._cos_tilt = float(np.cos(np.radians(cfg.max_tilt_deg)))

    @property
    def has_servos(self) -> bool:
        return bool(self.act.servo.any())

    def begin_step(self) -> None:
        for e in self.flags:
            self.flags[e] = False

    def flag(self, event: str) -> None:
        if not self.flags[event]:
            self.flags[event] = True
            self.counts[event] += 1

    def stop_reason(self) -> str | None:
        """The first stop event flagged this step, if any."""
        return next((e for e in STOP_EVENTS if self.flags[e]), None)

    # -- checks on what comes in ------------------------------------------------------------
    def check_state(self, fields: dict[str, np.ndarray], rs: RobotState) -> None:
        """Flags stale camera poses, non-finite readings and falls."""
        age = fields.get("object_pose_age")
        if age is not None and not float(age[0]) <= self.cfg.max_pose_age_s:
            self.flag("stale_pose")
        if not all(np.isfinite(v).all() for v in fields.values()):
            self.flag("nonfinite_state")
        elif rs.base_quat is not None and projected_gravity(rs.base_quat)[0, 2] > -self._cos_tilt:
            self.flag("tilt")

    def limit_action(self, action: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """The action clipped to [-1, 1] and rate limited; non-finite actions are flagged (the
        caller stops) and replaced by ``previous``."""
        if not np.isfinite(action).all():
            self.flag("nonfinite_action")
            return previous.copy()
        a = np.clip(action, -1.0, 1.0)
        m = self.cfg.max_action_delta
        limited = previous + np.clip(a - previous, -m, m)
        if np.any(np.abs(limited - a) > 1e-12):
            self.flag("action_rate_limit")
        return limited

    # -- commands -----------------------------------------------------------------------------
    def limit_command(self, ctrl: np.ndarray, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """Actuator commands within the limits for the motor positions ``q`` and velocities
        ``qd`` (actuator units). Non-finite entries keep the last safe command."""
        a = self.act
        fallback = self.last_ctrl if self.last_ctrl is not None else np.where(
            a.servo & np.isfinite(q), q, 0.0)
        t = np.where(np.isfinite(ctrl), ctrl, fallback)
        if np.any(a.servo & ((t < a.low - 1e-9) | (t > a.high + 1e-9))):
            self.flag("position_limit")
        t = np.where(a.servo, np.clip(t, a.low, a.high), t)
        s = a.servo & np.isfinite(q) & np.isfinite(qd) & (a.kp > 0)
        if s.any():
            kp, kd, qs, qds = a.kp[s], a.kd[s], q[s], qd[s]
            tau = kp * (t[s] - qs) - kd * qds
            fast = (np.abs(qds) > self.cfg.max_velocity) & (tau * qds > 0)
            if fast.any():
                self.flag("velocity_limit")
                tau = np.where(fast, 0.0, tau)
            clipped = np.clip(tau, -a.force_limit[s], a.force_limit[s])
            if np.any(clipped != tau):
                self.flag("torque_limit")
            t[s] = qs + (clipped + kd * qds) / kp
        outside = (t < a.low - 1e-9) | (t > a.high + 1e-9)
        if np.any(outside & ~a.servo):
            self.flag("torque_limit")
        if np.any(outside & a.servo):  # the torque limit pulled a target out of the range
            self.flag("position_limit")
        t = np.clip(t, a.low, a.high)
        self.last_ctrl = t
        return t

    def soft_start(self, elapsed: float, q_start: np.ndarray, default_ctrl: np.ndarray) -> np.ndarray:
        """Servo targets from the start pose straight to the default pose, each at
        ``max(|offset| / soft_start_s, soft_start_speed)``; direct actuators get the default
        command."""
        self.flag("soft_start")
        offset = np.where(np.isfinite(q_start), default_ctrl - q_start, 0.0)
        if self.cfg.soft_start_s > 0:
            speed = np.maximum(np.abs(offset) / self.cfg.soft_start_s, self.cfg.soft_start_speed)
            step = np.clip(offset, -speed * elapsed, speed * elapsed)
        else:
            step = offset
        return np.where(self.act.servo, np.where(np.isfinite(q_start), q_start + step, default_ctrl),
                        default_ctrl)

    def zero_torque(self, q: np.ndarray) -> Command:
        """Zero stiffness and damping on every servo (targets at the measured pose), direct
        actuators zero."""
        self.flag("zero_torque")
        n = len(self.act.servo)
        return Command(np.where(self.act.servo & np.isfinite(q), q, 0.0), np.zeros(n), np.zeros(n))

    def zero_torque_done(self, elapsed: float) -> bool:
        return not self.has_servos or elapsed >= self.cfg.zero_torque_s

    def soft_start_done(self, elapsed: float) -> bool:
        return not self.has_servos or elapsed >= self.cfg.soft_start_s

    def stop_command(self) -> Command:
        """The damped stop: servos apply ``-stop_kd * velocity`` only, direct actuators zero."""
        a = self.act
        hold = self.last_ctrl if self.last_ctrl is not None else np.zeros(len(a.servo))
        kd = np.where(a.servo, self.cfg.stop_kd, 0.0)
        return Command(np.where(a.servo, hold, 0.0), np.zeros(len(a.servo)), kd, DAMP)

    def run_command(self, ctrl: np.ndarray) -> Command:
        return Command(ctrl, self.act.kp, self.act.kd)
