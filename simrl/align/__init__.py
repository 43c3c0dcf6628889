"""Alignment: learning from the robot's logs to fix the simulator (``simrl align``).

Each method is one entry of :data:`METHODS`, registered with :func:`register_method` in its own
module of this package: ``sysid`` (system identification of the task's named physical
parameters), ``delta_action`` (ASAP's delta-action model), ``delta_dynamics`` (a learned
next-state correction) and ``vgdf`` (SAC with value-guided filtering of simulator data). A
method takes the task, the real logs and an :class:`AlignConfig` and writes its outputs into a
directory; see ``docs/architecture.md``.
"""

from __future__ import annotations

from simrl.align.base import METHODS, AlignConfig, AlignMethod, register_method
from simrl.align.data import LogWindows, StateMap, load_windows

__all__ = ["METHODS", "AlignConfig", "AlignMethod", "register_method", "LogWindows", "StateMap",
           "load_windows"]
