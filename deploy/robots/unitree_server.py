"""The Unitree twin: a MuJoCo robot behind Unitree SDK 2's DDS topics, as Unitree's own
unitree_mujoco serves one (``simrl robot-server --protocol unitree``).

It publishes ``rt/lowstate`` after every physics step (``tick`` = simulated milliseconds) and
takes ``rt/lowcmd``: commands whose CRC is wrong, whose ``dq``/``tau`` feed-forward is not zero
(not modelled) or whose values are not finite are dropped and counted; the others act through
:class:`~deploy.robots.mujoco.MujocoSim` (latency, motor lag, perturbations, the robot's own
command limits). Without a command for ``command_timeout`` seconds the robot damps itself.
Before the first command it holds the task's reset pose with the model's gains. It runs until
interrupted; restart it for a fresh episode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from deploy.clock import Rate, realtime_scheduling
from deploy.robots.base import SpawnedServer
from deploy.robots.mujoco import MujocoSim, SimConfig
from deploy.robots.unitree import LOWCMD, LOWSTATE, MotorMap, command_from, low_state, participant


@dataclass
class TwinStats:
    states: int = 0
    commands: int = 0
    rejected: int = 0
    damped: int = 0           # times the robot damped itself (no commands)

    def summary(self) -> str:
        return (f"{self.states} states sent, {self.commands} commands applied, {self.rejected} "
                f"rejected (bad CRC or values), damped itself {self.damped} times")


def serve_unitree(sim_config: SimConfig, iface: str = "lo", domain: int = 0, robot: str | None = None,
                  ready: Any = None, command_timeout: float = 0.25, rt_priority: int | None = None,
                  stop: Callable[[], bool] = lambda: False, max_catch_up: int = 25) -> TwinStats:
    """Runs the MuJoCo robot ``sim_config`` on DDS ``domain`` over ``iface`` until ``stop()``
    or Ctrl-C. ``ready``: a connection that receives the family name once publishing."""
    from cyclonedds.internal import InvalidSample
    from cyclonedds.pub import DataWriter
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    sim = MujocoSim(sim_config)
    mm = MotorMap.from_model(sim.model, robot)
    dp = participant(domain, iface)
    writer = DataWriter(dp, Topic(dp, LOWSTATE, mm.family.state_type))
    reader = DataReader(dp, Topic(dp, LOWCMD, mm.family.cmd_type), Qos(Policy.History.KeepLast(8)))
    stats = TwinStats()
    if ready is not None:
        ready.send(mm.family.name)
    rate = Rate(sim.dt)
    last_command, damped = None, False
    try:
        with realtime_scheduling(rt_priority):
            while not stop():
                due = rate.wait()
                for msg in reader.take(N=64):
                    if isinstance(msg, InvalidSample):
                        continue
                    try:
                        sim.submit(command_from(msg, mm))
                    except ValueError:
                        stats.rejected += 1
                        continue
                    stats.commands += 1
                    last_command, damped = rate.elapsed(), False
                if last_command is not None and not damped and rate.elapsed() - last_command > command_timeout:
                    sim.damp()
                    damped = True
                    stats.damped += 1
                sim.step(min(due, max_catch_up))
                s = sim.sample()
                writer.write(low_state(s.fields, mm, round(sim.time * 1000)))
                stats.states += 1
    except KeyboardInterrupt:
        pass
    return stats


class TwinProcess(SpawnedServer):
    """The twin in its own (spawned) process; a context manager."""

    def __init__(self, sim_config: SimConfig, domain: int, iface: str = "lo", robot: str | None = None,
                 timeout: float = 60.0, command_timeout: float = 0.25):
        super().__init__(serve_unitree, {"sim_config": sim_config, "iface": iface, "domain": domain,
                                         "robot": robot, "command_timeout": command_timeout},
                         "unitree twin", timeout)
        self.family: str = self.ready_value
        self.uri = f"unitree://{iface}?domain={domain}"
        self.started = time.monotonic()
