"""What every robot back-end speaks: state samples in, commands out.

A back-end fills the *measured* part of the robot-state record (:class:`envs.RobotState`:
joint positions and velocities, IMU orientation and gyro, task extras such as object poses) plus
actuator-space readings ``motor_pos`` / ``motor_vel`` (the units of the actuator commands, which
the safety layer needs). The runtime owns the rest: the command, the last action and the task
state, so the same ``task.observation`` runs on the simulator and on the robot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

import numpy as np

from envs.perturbation import MOTOR_FIELDS, Perturbation
from simrl.core.registry import Registry
from simrl.core.robot_state import RobotState

RUN, DAMP = 0, 1  # command modes
_RECORD_FIELDS = {f.name for f in fields(RobotState)} - {"extras", "command", "last_action"}


class RobotLost(RuntimeError):
    """The robot (its process or its link) is gone."""


@dataclass
class StateSample:
    """One state reading: ``fields`` maps names to 1-D float arrays (no batch dimension)."""

    seq: int                      # increases by one per sample the robot sends
    stamp: float                  # robot clock, seconds
    fields: dict[str, np.ndarray]


@dataclass
class Command:
    """Actuator commands for one control step.

    ``mode`` RUN: ``ctrl`` are the actuator inputs (joint position targets for position servos,
    normalized efforts for direct actuators) tracked with stiffness ``kp`` and damping ``kd``
    (per actuator; ignored by direct actuators). ``mode`` DAMP: the robot stops, servos apply
    only ``-kd * velocity`` and direct actuators go to zero effort.
    """

    ctrl: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    mode: int = RUN


@dataclass
class LinkStats:
    """Packet counters of a link (zeros for back-ends without one)."""

    sent: int = 0
    send_dropped: int = 0         # the socket refused the packet (buffer full)
    received: int = 0             # valid packets
    rejected: int = 0             # malformed, short, unknown or bad-CRC packets
    lost: int = 0                 # sequence numbers never seen
    late: int = 0                 # arrived after a newer packet; discarded

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@runtime_checkable
class Robot(Protocol):
    """A robot back-end. ``lockstep`` back-ends advance their physics by one control period per
    ``send_command`` and never need the runtime to sleep; the others run on their own clock."""

    name: str                     # for the log metadata, e.g. "mujoco:go1-flat"
    source: str                   # real-log source: "robot" or "sim2sim"
    lockstep: bool
    # optional: ``notes`` (dict[str, str]), what the back-end decided about the checkpoint
    # (limits, gains), copied into the log's metadata

    def connect(self, timeout: float = 60.0) -> StateSample:
        """Starts or reaches the robot; returns its first state."""

    def read_state(self) -> StateSample | None:
        """The newest state not returned before, or None when nothing new arrived."""

    def send_command(self, command: Command) -> None: ...

    def link_stats(self) -> LinkStats: ...

    def close(self) -> None:
        """Stops the robot (damped) and releases it; idempotent."""



def measured_fields(rs: RobotState, task_state_keys: Iterable[str]) -> dict[str, np.ndarray]:
    """What a robot reports of the record ``rs`` (one row, copied): everything except the
    runtime's parts (command, last action, task-state entries)."""
    runtime = {"command", "last_action", *task_state_keys}
    return {k: np.array(v[0], dtype=np.float64) for k, v in rs.to_dict().items() if k not in runtime}


def compose_state(fields: dict[str, np.ndarray], task_state: dict[str, np.ndarray],
                  last_action: np.ndarray) -> RobotState:
    """The robot-state record (batch of one) from a robot's ``fields`` and the runtime's
    task state and last action: the inverse of :func:`measured_fields`."""
    kw = {k: v[None] for k, v in fields.items() if k in _RECORD_FIELDS}
    extras = {k: v[None] for k, v in fields.items() if k not in _RECORD_FIELDS and k not in MOTOR_FIELDS}
    extras.update({k: v.copy() for k, v in task_state.items() if k != "command"})
    command = task_state.get("command", np.zeros((1, 0)))
    return RobotState(**kw, command=command, last_action=last_action[None], extras=extras)


# -- back-ends by URI scheme ----------------------------------------------------------------------
@dataclass
class RobotOptions:
    """What ``simrl deploy`` passes every back-end; each refuses the options it cannot honour."""

    perturbation: Perturbation | None = None  # reality proxy (simulated robots)
    realtime: bool = True                     # False: lockstep with the runtime (simulated robots)
    seed: int = 0
    rt_priority: int | None = None            # SCHED_FIFO priority of a robot process
    faults: Any = None                        # deploy.robots.udp.Faults injected into the link
    key: bytes | None = None                  # HMAC key of a network link

    def refuse(self, robot: str, perturbation: str = "", link: bool = False) -> None:
        """For back-ends of real hardware (and its twins): a ValueError for options they cannot
        honour: lockstep, a perturbation (``perturbation``: where to give it instead, e.g. the
        twin), and unless ``link`` the UDP link's fault injection and key."""
        if not self.realtime:
            raise ValueError(f"lockstep runs need the mujoco robot; a {robot} robot runs on its own clock")
        if self.perturbation is not None:
            raise ValueError(f"perturbations apply to simulated robots, not to a {robot} robot"
                             + (f"; give them to {perturbation}" if perturbation else ""))
        if not link and (self.faults is not None or self.key is not None):
            raise ValueError(f"link faults and keys apply to udp robots, not to a {robot} robot")


RobotFactory = Callable[[str, dict, RobotOptions], Robot]


@dataclass(frozen=True)
class BackEnd:
    scheme: str
    usage: str
    factory: RobotFactory


ROBOTS: Registry[BackEnd] = Registry("robot back-end", "deploy.robots")


def register_robot(scheme: str, usage: str) -> Callable[[RobotFactory], RobotFactory]:
    """Decorator on ``factory(uri, spec, options) -> Robot``: robots named ``scheme``,
    ``scheme:...`` or ``scheme://...`` are built by it. ``usage`` is shown in errors and help."""
    def add(factory: RobotFactory) -> RobotFactory:
        ROBOTS.register(scheme, BackEnd(scheme, usage, factory))
        return factory
    return add


def robot_scheme(uri: str) -> str:
    """``udp`` for ``udp://host:port``, ``mujoco`` for ``mujoco`` and ``mujoco:model.xml``."""
    return uri.split("://", 1)[0] if "://" in uri else uri.split(":", 1)[0]


def make_robot(uri: str, spec: dict[str, Any], options: RobotOptions | None = None) -> Robot:
    """The robot named ``uri`` for a checkpoint ``spec``, built by its registered back-end."""
    scheme = robot_scheme(uri)
    if scheme not in ROBOTS:
        usages = "; ".join(b.usage for b in ROBOTS.values())
        raise ValueError(f"unknown robot {uri!r}; back-ends: {usages}")
    return ROBOTS.get(scheme).factory(uri, spec, options or RobotOptions())


def spec_control_dt(spec: dict[str, Any], where: str = "checkpoint spec") -> float:
    """The spec's ``control_dt`` (seconds, finite, > 0); ValueError naming the field."""
    if "control_dt" not in spec:
        raise ValueError(f"{where}: missing field 'control_dt' (the control period in seconds)")
    try:
        dt = float(spec["control_dt"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field 'control_dt' must be a number, got "
                         f"{spec['control_dt']!r}") from None
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"{where}: field 'control_dt' must be finite and > 0, got {dt}")
    return dt


class SpawnedServer:
    """A robot server run by ``target(**kwargs, ready=PIPE)`` in its own spawned process; the
    server sends one value on the pipe once it serves (a port, a message family ...), kept in
    ``self.ready_value``. A context manager."""

    def __init__(self, target: Callable[..., Any], kwargs: dict[str, Any], what: str,
                 timeout: float = 60.0):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=target, daemon=True, kwargs={**kwargs, "ready": sender})
        self.process.start()
        sender.close()
        if not receiver.poll(timeout):
            self.close()
            raise RuntimeError(f"{what} did not start within {timeout:g} s")
        self.ready_value: Any = receiver.recv()

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)

    def __enter__(self) -> "SpawnedServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
