"""The Unitree twin: a MuJoCo robot behind Unitree SDK 2's DDS topics, as Unitree's own
unitree_mujoco serves one (``simrl robot-server --protocol unitree``).

It publishes ``rt/lowstate`` after every physics step (``tick`` = simulated milliseconds) and
takes ``rt/lowcmd``: commands whose CRC is wrong, whose ``dq``/``tau`` feed-forward is not zero
(not modelled) or whose values are not finite are dropped and counted; the others act through
:class:`~deploy.robots.mujoco.MujocoSim` (latency, motor lag, perturbations, the robot's own
command limits). Without a command for ``command_timeout`` seconds the robot damps itself.
Before the first command it holds the task's reset pose with the model's gains. It runs until
interrupted; restart it for a fresh episode.

``remote_schedule`` (:class:`RemoteSchedule`, ``--remote-schedule FILE``) scripts the wireless
remote: each state's ``wireless_remote`` bytes hold the sticks and keys of the schedule's latest
entry at that time (seconds since the first command), so runs with changing remote commands
need no human.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy.clock import Rate, realtime_scheduling
from deploy.robots.base import SpawnedServer
from deploy.robots.mujoco import MujocoSim, SimConfig
from deploy.robots.unitree import (LOWCMD, LOWSTATE, MotorMap, command_from, encode_remote, low_state,
                                   participant)


@dataclass
class RemoteSchedule:
    """Scripted remote input: entries ``{"t": s, "lx": .., "ly": .., "rx": .., "ry": ..,
    "keys": [names]}`` (sticks -1..1, default 0) in increasing ``t``; each holds until the next."""

    times: list[float]
    remotes: list[list[int]]   # wireless_remote bytes per entry

    @classmethod
    def from_entries(cls, entries: Any, where: str = "remote schedule") -> "RemoteSchedule":
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{where}: expected a non-empty list of {{t, lx, ly, rx, ry, keys}}")
        times, remotes = [], []
        for i, e in enumerate(entries):
            field = f"{where}: entry {i}"
            if not isinstance(e, dict) or "t" not in e:
                raise ValueError(f"{field}: expected a mapping with a time t, got {e!r}")
            unknown = set(e) - {"t", "lx", "ly", "rx", "ry", "keys"}
            if unknown:
                raise ValueError(f"{field}: unknown field {sorted(unknown)[0]!r}")
            try:
                t = float(e["t"])
                sticks = {k: float(e.get(k, 0.0)) for k in ("lx", "ly", "rx", "ry")}
            except (TypeError, ValueError):
                raise ValueError(f"{field}: t and the sticks must be numbers") from None
            bad = [k for k, v in sticks.items() if not -1.0 <= v <= 1.0]
            if bad or not math.isfinite(t) or (times and t < times[-1]):
                raise ValueError(f"{field}: " + (f"{bad[0]} must be in [-1, 1]" if bad else
                                                 "t must be finite and not before the previous entry's"))
            try:
                remotes.append(encode_remote(**sticks, keys=tuple(e.get("keys", ()))))
            except ValueError as exc:
                raise ValueError(f"{field}: {exc}") from None
            times.append(t)
        return cls(times, remotes)

    @classmethod
    def load(cls, path: str) -> "RemoteSchedule":
        """From a JSON or YAML file (a list, or ``{"schedule": [...]}``)."""
        import yaml
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"remote schedule {path}: {exc}") from None
        if isinstance(data, dict) and "schedule" in data:
            data = data["schedule"]
        return cls.from_entries(data, f"remote schedule {path}")

    def at(self, t: float) -> list[int]:
        """The wireless_remote bytes at ``t`` seconds (the centre before the first entry)."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.remotes[i] if i >= 0 else encode_remote()


@dataclass
class TwinStats:
    states: int = 0
    commands: int = 0
    rejected: int = 0
    damped: int = 0           # times the robot damped itself (no commands)
    held_s: float = 0.0       # simulated seconds under position commands (kp > 0), before any damping
    min_base_height: float = math.inf  # the root body's lowest height (m) during held_s

    def summary(self) -> str:
        held = (f"; base height at least {self.min_base_height:.3f} m over {self.held_s:.1f} s of "
                f"position commands" if self.held_s else "")
        return (f"{self.states} states sent, {self.commands} commands applied, {self.rejected} "
                f"rejected (bad CRC or values), damped itself {self.damped} times{held}")


def serve_unitree(sim_config: SimConfig, iface: str = "lo", domain: int = 0, robot: str | None = None,
                  ready: Any = None, command_timeout: float = 0.25, rt_priority: int | None = None,
                  stop: Callable[[], bool] = lambda: False, max_catch_up: int = 25,
                  remote_schedule: RemoteSchedule | None = None) -> TwinStats:
    """Runs the MuJoCo robot ``sim_config`` on DDS ``domain`` over ``iface`` until ``stop()``
    or Ctrl-C. ``ready``: a connection that receives the family name once publishing;
    ``remote_schedule``: the scripted wireless remote."""
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
    last_command, damped, first_command = None, False, None
    holding = ever_damped = False  # under position commands; damped at some point
    try:
        with realtime_scheduling(rt_priority):
            while not stop():
                due = rate.wait()
                for msg in reader.take(N=64):
                    if isinstance(msg, InvalidSample):
                        continue
                    try:
                        command = command_from(msg, mm)
                        sim.submit(command)
                    except ValueError:
                        stats.rejected += 1
                        continue
                    holding = bool(command.kp.any())
                    ever_damped |= not holding
                    stats.commands += 1
                    last_command, damped = rate.elapsed(), False
                    first_command = last_command if first_command is None else first_command
                if last_command is not None and not damped and rate.elapsed() - last_command > command_timeout:
                    sim.damp()
                    damped = ever_damped = True
                    stats.damped += 1
                steps = min(due, max_catch_up)
                sim.step(steps)
                s = sim.sample()
                if holding and not ever_damped and "base_pos" in s.fields:
                    stats.held_s += steps * sim.dt
                    stats.min_base_height = min(stats.min_base_height, float(s.fields["base_pos"][2]))
                remote = (remote_schedule.at(rate.elapsed() - first_command)
                          if remote_schedule is not None and first_command is not None else None)
                writer.write(low_state(s.fields, mm, round(sim.time * 1000), remote=remote))
                stats.states += 1
    except KeyboardInterrupt:
        pass
    return stats


class TwinProcess(SpawnedServer):
    """The twin in its own (spawned) process; a context manager."""

    def __init__(self, sim_config: SimConfig, domain: int, iface: str = "lo", robot: str | None = None,
                 timeout: float = 60.0, command_timeout: float = 0.25,
                 remote_schedule: RemoteSchedule | None = None):
        super().__init__(serve_unitree, {"sim_config": sim_config, "iface": iface, "domain": domain,
                                         "robot": robot, "command_timeout": command_timeout,
                                         "remote_schedule": remote_schedule},
                         "unitree twin", timeout)
        self.family: str = self.ready_value
        self.uri = f"unitree://{iface}?domain={domain}"
        self.started = time.monotonic()
