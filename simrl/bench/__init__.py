"""``simrl bench NAME``: performance and quality benchmarks.

Each benchmark is a module ``simrl.bench.NAME`` with ``add_arguments(parser)`` and
``run(args) -> int``. Benchmarks print ratios against a baseline measured in the same run, so
their numbers mean the same on any machine.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

# name -> one-line description
BENCHES = {
    "envs": "control steps/s of the batched env vs Gymnasium SyncVectorEnv and bare mujoco.rollout",
    "train": "env steps/s of simrl PPO vs Stable-Baselines3 PPO on the same task",
    "dr": "solved fraction of a dynamics grid: no randomization vs uniform vs DORAEMON",
    "residual": "success of a scripted base before and after residual RL (panda-push pusher)",
    "rank": "checkpoint ranking (VSDR vs sim-only vs OOD-only) against returns on a reality proxy; scoring speed",
    "dream": "dream-to-real return of PPO in dropout, no-dropout and mask-averaged world-model dreams",
    "deploy": "onnxruntime vs torch inference latency; control-loop jitter against the UDP robot server",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benches = parser.add_subparsers(dest="bench", metavar="BENCH")
    benches.required = True
    for name, text in BENCHES.items():
        module = f"simrl.bench.{name}"
        if importlib.util.find_spec(module) is None:
            continue
        mod = importlib.import_module(module)
        p = benches.add_parser(name, help=text, description=mod.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
