"""The robot's side of the UDP link: a MuJoCo robot (any MJCF plus a perturbation file) served
behind the protocol of :mod:`deploy.robots.udp` (``simrl robot-server``), in this process or
a spawned one."""

from __future__ import annotations

import socket
from typing import Any

from deploy.robots.base import SpawnedServer
from deploy.robots.mujoco import MujocoSim, serve
from deploy.robots.udp import LOOPBACK, Link

def bind_server(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port``; ValueError with the reason when that fails (port in
    use, an address this machine does not have)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        hint = {98: "; pick another --port", 99: "; --host must be an address of this machine"}.get(
            getattr(exc, "errno", None), "")
        raise ValueError(f"cannot serve on udp://{host}:{port}: {reason}{hint}") from None
    return sock


def serve_udp(sim_config: Any, host: str = LOOPBACK, port: int = 0, ready: Any = None,
              command_timeout: float = 0.25, rt_priority: int | None = None,
              key: bytes | None = None, sock: socket.socket | None = None) -> None:
    """Runs a MuJoCo robot (:class:`deploy.robots.mujoco.SimConfig`) behind a UDP socket until
    interrupted. ``ready``: a connection that receives the bound port once it is listening;
    ``rt_priority``: SCHED_FIFO priority of the physics loop; ``key``: the link's HMAC key;
    ``sock``: an already bound socket (else ``host:port`` is bound)."""
    sock = sock or bind_server(host, port)
    sim = MujocoSim(sim_config)
    if ready is not None:
        ready.send(sock.getsockname()[1])
    try:
        serve(sim, Link(sock, key=key), stop=lambda: False, exit_on_bye=False,
              command_timeout=command_timeout, rt_priority=rt_priority)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


class ServerProcess(SpawnedServer):
    """A UDP robot server in its own (spawned) process on 127.0.0.1; a context manager."""

    def __init__(self, sim_config: Any, port: int = 0, timeout: float = 60.0,
                 rt_priority: int | None = None, key: bytes | None = None):
        super().__init__(serve_udp, {"sim_config": sim_config, "host": LOOPBACK, "port": port,
                                     "rt_priority": rt_priority, "key": key},
                         "robot server", timeout)
        self.port: int = self.ready_value
        self.uri = f"udp://{LOOPBACK}:{self.port}"
