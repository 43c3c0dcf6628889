"""``simrl bench NAME``: performance and quality benchmarks.

Each benchmark is a module ``simrl.cli.bench.NAME`` with a ``Config`` dataclass (its options)
and ``run(config) -> int``, listed in :data:`BENCHES`. Benchmarks compose other commands (they
train pools of checkpoints with ``simrl train``), so they live with the command line. Benchmarks print ratios
against a baseline measured in the same run, so their numbers mean the same on any machine.
"""

from __future__ import annotations

import importlib

from simrl.cli import command, parse

# name -> one-line description
BENCHES = {
    "envs": "control steps/s of the batched env vs Gymnasium SyncVectorEnv and bare mujoco.rollout",
    "train": "env steps/s of simrl PPO vs Stable-Baselines3 PPO on the same task",
    "dr": "solved fraction of a dynamics grid: no randomization vs uniform vs DORAEMON",
    "residual": "success of a scripted base before and after residual RL (panda-push pusher)",
    "rank": "checkpoint ranking (VSDR vs sim-only vs OOD-only) against returns on a reality proxy; scoring speed",
    "dream": "dream-to-real return of PPO in dropout, no-dropout and mask-averaged world-model dreams",
    "deploy": "onnxruntime vs torch inference latency; control-loop jitter against the UDP robot server",
    "stand": "a G1 standing (scripted PD stand) on the Unitree twin through unitree_hg messages",
}


def machine(**extra: object) -> dict:
    """Where a result was measured: platform, cores, load average (a shared machine makes
    timings noisy), Python, torch and MuJoCo versions, plus ``extra``."""
    import os
    import platform

    import mujoco
    import torch

    return {"platform": platform.platform(), "cores": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "mujoco": mujoco.__version__, **extra}


@command("bench", help="run a benchmark")
def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ + "\nbenchmarks:\n" + "\n".join(f"  {name:9s} {text}" for name, text in BENCHES.items()))
        if not argv:
            raise ValueError(f"give a benchmark: {', '.join(BENCHES)}")
        return 0
    name = argv[0]
    if name not in BENCHES:
        raise ValueError(f"unknown benchmark {name!r}; use one of: {', '.join(BENCHES)}")
    module = importlib.import_module(f"{__name__}.{name}")
    config = parse(module.Config, argv[1:], f"simrl bench {name}", module.__doc__)
    return int(module.run(config) or 0)
