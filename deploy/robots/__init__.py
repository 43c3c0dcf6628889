"""Robot back-ends behind one protocol (:class:`Robot`), looked up by the robot URI's scheme in
:data:`ROBOTS`: the MuJoCo sim-to-sim proxy (``mujoco[:MODEL.xml]``, :mod:`deploy.robots.mujoco`)
robots on the network (``udp://HOST:PORT``, :mod:`deploy.robots.udp`) and Unitree SDK 2 robots
on DDS (``unitree://IFACE``, :mod:`deploy.robots.unitree`). A new back-end is
one module here (or anywhere) with a ``@register_robot("scheme", usage)`` factory."""

from deploy.robots.base import (DAMP, ROBOTS, RUN, Command, LinkStats, Robot, RobotLost, RobotOptions,
                                StateSample, make_robot, register_robot, spec_control_dt)
from envs.perturbation import Perturbation

__all__ = ["Robot", "RobotLost", "StateSample", "Command", "LinkStats", "RUN", "DAMP", "ROBOTS",
           "RobotOptions", "Perturbation", "make_robot", "register_robot", "spec_control_dt"]
