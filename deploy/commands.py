"""Where a deployed policy's task command comes from (``simrl deploy --command-source``).

* ``fixed``: ``--command vx vy yaw_rate`` for the whole run (the runtime's own; no source here).
* ``remote``: the robot's wireless remote, read from every state (a Unitree robot reports its
  ``wireless_remote`` bytes as the ``remote`` field: sticks lx, rx, ry, ly and the key bits).
  As in unitree_rl_gym's deploy_real: vx = ly, vy = -lx, yaw rate = -rx, each times its
  ``scale``; sticks within ``deadzone`` of the centre read zero. The ``select`` key is an e-stop
  (deploy_real leaves its loop on select; here the robot then damps).
* ``keyboard``: a terminal's keys, read without blocking once per control period (the terminal
  is put in cbreak mode for the run, so Ctrl-C still stops): w/s forward and back, a/d left and
  right, q/e turn left and right, each press one ``step``; space zeroes the command. Values are
  clipped to +-``scale``.

A source's :meth:`update` returns the command to use from this step on (None: unchanged) and
sets ``estop`` when the operator asked to stop.
"""

from __future__ import annotations

import os
import select
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

SOURCES = ("fixed", "remote", "keyboard")
REMOTE_SELECT_BIT = 3  # deploy.robots.unitree.REMOTE_KEYS.index("select")


@dataclass(frozen=True)
class CommandScale:
    """The largest command each input gives (a full stick, the keyboard's limit)."""

    vx: float = 1.0        # m/s forward
    vy: float = 0.5        # m/s to the left
    yaw_rate: float = 1.0  # rad/s counter-clockwise

    def __post_init__(self) -> None:
        for name in ("vx", "vy", "yaw_rate"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"command scale {name}: must be a finite number >= 0, got {value}")

    @property
    def array(self) -> np.ndarray:
        return np.array([self.vx, self.vy, self.yaw_rate])


class CommandSource(Protocol):
    estop: bool

    def update(self, fields: dict[str, np.ndarray]) -> np.ndarray | None:
        """The command from this step on, given the newest state's fields (None: unchanged)."""

    def close(self) -> None: ...


class RemoteCommands:
    """Velocity commands from the robot's remote (the state's ``remote`` field)."""

    def __init__(self, scale: CommandScale = CommandScale(), deadzone: float = 0.05):
        self.scale, self.deadzone, self.estop = scale, deadzone, False

    def update(self, fields: dict[str, np.ndarray]) -> np.ndarray | None:
        remote = fields.get("remote")
        if remote is None:
            raise ValueError("--command-source remote: the robot reports no remote (a Unitree SDK 2 "
                             "robot does: unitree://IFACE)")
        lx, rx, _, ly, keys = remote
        sticks = np.array([ly, -lx, -rx])
        sticks[np.abs(sticks) < self.deadzone] = 0.0
        if int(keys) >> REMOTE_SELECT_BIT & 1:
            self.estop = True
        return np.clip(sticks, -1.0, 1.0) * self.scale.array

    def close(self) -> None:
        pass


class KeyboardCommands:
    """Velocity commands from key presses on a terminal (or any readable file descriptor)."""

    KEYS = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "q": (2, 1), "e": (2, -1)}

    def __init__(self, scale: CommandScale = CommandScale(), step: float = 0.1, fd: int | None = None,
                 start: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        if not (np.isfinite(step) and step > 0):
            raise ValueError(f"--command-step: must be a finite number > 0, got {step}")
        self.scale, self.step, self.estop = scale, step, False
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.command = np.clip(np.array(start, dtype=np.float64), -scale.array, scale.array)
        self._saved: Any = None
        if os.isatty(self.fd):  # cbreak: keys arrive without Enter; Ctrl-C still signals
            import termios
            import tty
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        print("keyboard commands: w/s forward/back, a/d left/right, q/e turn, space stop "
              "(Ctrl-C: e-stop)", file=sys.stderr, flush=True)

    def update(self, fields: dict[str, np.ndarray]) -> np.ndarray | None:
        changed = False
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 64)
            if not data:  # end of input (a closed pipe): keep the command
                break
            for key in data.decode("ascii", "ignore").lower():
                if key == " ":
                    self.command[:] = 0.0
                elif key in self.KEYS:
                    axis, sign = self.KEYS[key]
                    self.command[axis] += sign * self.step
                else:
                    continue
                changed = True
        if not changed:
            return None
        self.command = np.clip(np.round(self.command, 9), -self.scale.array, self.scale.array)
        return self.command.copy()

    def close(self) -> None:
        if self._saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


def make_command_source(kind: str, scale: CommandScale = CommandScale(), step: float = 0.1,
                        start: tuple[float, ...] | None = None) -> CommandSource | None:
    """The source ``kind`` (:data:`SOURCES`); None for ``fixed`` (the runtime's --command)."""
    if kind not in SOURCES:
        raise ValueError(f"--command-source: {kind!r}, expected one of {', '.join(SOURCES)}")
    if kind != "fixed" and start is not None and len(start) != 3:
        raise ValueError(f"--command: {kind} commands are velocities (vx, vy, yaw rate), got {len(start)} values")
    if kind == "remote":
        return RemoteCommands(scale)
    if kind == "keyboard":
        return KeyboardCommands(scale, step, start=tuple(start) if start else (0.0, 0.0, 0.0))
    return None
