"""``simrl bench NAME``: performance and quality benchmarks.

Each benchmark is a module ``simrl.cli.bench.NAME`` with a ``Config`` dataclass (its options)
and ``run(config) -> int``, listed in :data:`BENCHES`. Benchmarks compose other commands (they
train pools of checkpoints with ``simrl train``), so they live with the command line. Benchmarks print ratios
against baselines measured in the same run with the same threads; a ratio still depends on the
machine (core count, load: the JSONs record both), so re-run it where it matters.
"""

from __future__ import annotations

import importlib

from simrl.cli import command, parse

# name -> one-line description
BENCHES = {
    "envs": "control steps/s of the batched env vs EnvPool, Gymnasium Async/SyncVectorEnv and bare mujoco.rollout, matched threads",
    "train": "env steps/s of simrl PPO vs rsl_rl and Stable-Baselines3 PPO, matched threads; learning curves",
    "warmstart": "solver warm start carried between control steps or not: iterations, fidelity, speed",
    "dr": "solved fraction of a dynamics grid: no randomization vs uniform vs DORAEMON",
    "residual": "success of a scripted base before and after residual RL (panda-push pusher)",
    "rank": "checkpoint ranking (VSDR vs sim-only vs OOD-only) against returns on a reality proxy; scoring speed",
    "dream": "dream-to-real return of PPO in dropout, no-dropout and mask-averaged world-model dreams",
    "deploy": "onnxruntime vs torch inference latency; control-loop jitter against the UDP robot server",
    "stand": "a G1 standing (scripted PD stand) on the Unitree twin through unitree_hg messages",
    "reach": "panda-reach goals on a Franka arm (franky-sim) through libfranka: success, final error, 1 kHz loop",
    "gpu": "every MuJoCo Warp check in one call: bare physics, warp env, PPO on it, mjlab (JSON in docs/results)",
    "align": "return (hopper) or tracking error (go1) on a reality proxy after alignment: original, DR, sysid, delta-action, delta-dynamics, VGDF vs log length",
    "track": "go1-velocity: env steps and training time to a tracker (lin-vel, yaw-rate error, falls), every checkpoint scored, also on the full Go1",
}


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
