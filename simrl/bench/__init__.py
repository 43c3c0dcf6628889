"""``simrl bench NAME``: performance and quality benchmarks.

Each benchmark is a module ``simrl.bench.NAME`` with a ``Config`` dataclass (its options) and
``run(config) -> int``; :mod:`simrl.cli.bench` is the command. Benchmarks print ratios
against a baseline measured in the same run, so their numbers mean the same on any machine.
"""

from __future__ import annotations

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
