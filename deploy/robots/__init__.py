"""Robot back-ends behind one protocol (:class:`Robot`): the MuJoCo sim-to-sim proxy
(``mujoco[:MODEL.xml]``) and robots on the network (``udp://HOST:PORT``)."""

from __future__ import annotations

from typing import Any

from deploy.robots.base import DAMP, RUN, Command, LinkStats, Robot, RobotLost, StateSample
from envs.perturbation import Perturbation


def make_robot(uri: str, spec: dict[str, Any], perturbation: Perturbation | None = None,
               realtime: bool = True, seed: int = 0, rt_priority: int | None = None) -> Robot:
    """The robot named ``uri`` for a checkpoint ``spec``: ``mujoco`` (the task's model),
    ``mujoco:MODEL.xml`` or ``udp://HOST:PORT``. ``rt_priority``: SCHED_FIFO priority of the
    MuJoCo robot process."""
    if uri == "mujoco" or uri.startswith("mujoco:"):
        from deploy.robots.mujoco import MujocoRobot, SimConfig
        cfg = SimConfig.from_spec(spec, uri.partition(":")[2] or None, perturbation, seed)
        return MujocoRobot(cfg, realtime, float(spec["control_dt"]), rt_priority)
    if uri.startswith("udp://"):
        from deploy.robots.udp import UdpRobot, parse_uri
        if not realtime:
            raise ValueError("lockstep runs need the mujoco robot; a udp robot runs in real time")
        if perturbation is not None:
            raise ValueError("perturbations apply to the mujoco robot; give them to the robot server "
                             "(simrl robot-server --perturb FILE)")
        return UdpRobot(*parse_uri(uri))
    raise ValueError(f"unknown robot {uri!r}; use mujoco, mujoco:MODEL.xml or udp://HOST:PORT")


__all__ = ["Robot", "RobotLost", "StateSample", "Command", "LinkStats", "RUN", "DAMP",
           "Perturbation", "make_robot"]
