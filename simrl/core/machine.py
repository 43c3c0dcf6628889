"""What a benchmark JSON records about the run: machine, threads, versions, load, command."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

PACKAGES = ("simrl", "mujoco", "numpy", "torch", "gymnasium", "stable-baselines3", "rsl-rl-lib")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None for one that is not installed)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info(threads: int, packages: tuple[str, ...] = PACKAGES) -> dict:
    """The run's context: CPU, cores, threads given to every contender, versions of
    ``packages``, the load average (1, 5, 15 min) when it starts (the machine may be shared)
    and the command line."""
    return {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "threads": threads,
            "python": platform.python_version(), "versions": versions(packages),
            "load_avg_start": list(os.getloadavg()),
            "command": command()}


def command() -> str:
    """The command line that ran this (``simrl ...`` for the console script or ``-m simrl.cli``)."""
    first = sys.argv[0]
    if os.path.basename(first) == "simrl" or first.endswith(os.path.join("cli", "__main__.py")):
        return " ".join(["simrl", *sys.argv[1:]])
    return " ".join(sys.argv)


def finish(info: dict) -> dict:
    """Adds the load average at the end of the run."""
    info["load_avg_end"] = list(os.getloadavg())
    return info
