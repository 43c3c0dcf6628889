"""Robot back-ends behind one protocol (:class:`Robot`): the MuJoCo sim-to-sim proxy
(``mujoco[:MODEL.xml]``) and robots on the network (``udp://HOST:PORT``)."""

from __future__ import annotations

import math
from typing import Any

from deploy.robots.base import DAMP, RUN, Command, LinkStats, Robot, RobotLost, StateSample
from envs.perturbation import Perturbation


def make_robot(uri: str, spec: dict[str, Any], perturbation: Perturbation | None = None,
               realtime: bool = True, seed: int = 0, rt_priority: int | None = None,
               faults: Any = None, key: bytes | None = None) -> Robot:
    """The robot named ``uri`` for a checkpoint ``spec``: ``mujoco`` (the task's model),
    ``mujoco:MODEL.xml`` or ``udp://HOST:PORT``. ``rt_priority``: SCHED_FIFO priority of the
    MuJoCo robot process; ``faults``: :class:`deploy.robots.udp.Faults` injected into the link
    (real time only); ``key``: the UDP link's HMAC key."""
    if uri == "mujoco" or uri.startswith("mujoco:"):
        from deploy.robots.mujoco import MujocoRobot, SimConfig
        if key is not None:
            raise ValueError("a link key applies to udp robots; the mujoco robot's link is a local "
                             "socket pair")
        cfg = SimConfig.from_spec(spec, uri.partition(":")[2] or None, perturbation, seed)
        return MujocoRobot(cfg, realtime, spec_control_dt(spec), rt_priority, faults)
    if uri.startswith("udp://"):
        from deploy.robots.udp import UdpRobot, parse_uri
        if not realtime:
            raise ValueError("lockstep runs need the mujoco robot; a udp robot runs in real time")
        if perturbation is not None:
            raise ValueError("perturbations apply to the mujoco robot; give them to the robot server "
                             "(simrl robot-server --perturb FILE)")
        return UdpRobot(*parse_uri(uri), faults=faults, key=key)
    raise ValueError(f"unknown robot {uri!r}; use mujoco, mujoco:MODEL.xml or udp://HOST:PORT")


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


__all__ = ["Robot", "RobotLost", "StateSample", "Command", "LinkStats", "RUN", "DAMP",
           "Perturbation", "make_robot"]
