"""franky-sim (PyPI ``franky-sim``, the ``franka`` extra): a MuJoCo FR3 that speaks the
libfranka network protocol, started as a child process on a loopback address for tests and
benchmarks. ``franka://HOST`` then reaches it through pylibfranka like a real arm."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any


def free_loopback(seed: int | None = None) -> str:
    """A loopback address of its own for this process (franky-sim binds fixed ports per
    address, so concurrent simulators need different addresses)."""
    import random
    r = random.Random(seed)
    return f"127.0.{(os.getpid() % 200) + 20}.{r.randint(2, 249)}"


class FrankySim:
    """franky-sim (``-s mujoco``, headless) on ``host``; a context manager. ``lines`` holds
    its output so far (``verbose``: its debug log too, e.g. the joint stiffness it was sent)."""

    def __init__(self, host: str, timeout: float = 30.0, verbose: bool = False):
        self.host = host
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "franky_sim.run_server", "-s", "mujoco", "--hostname", host,
             *(["-v"] if verbose else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        found = threading.Event()

        def pump() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if "Connect to the server" in line:
                    found.set()
        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout):
            self.kill()
            raise RuntimeError(f"franky-sim did not start on {host} within {timeout} s: {''.join(self.lines)}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> "FrankySim":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()
