"""Control steps per second of the batched env, against two baselines measured in the same run:

* Gymnasium's ``SyncVectorEnv`` over the single-env adapter (same task, same env count), and
* bare ``mujoco.rollout`` physics on the same per-world models for the same substeps
  (the physics limit: no observations, rewards, resets or tensors).

Every variant replays the same random action sequence. Each is measured ``--rounds`` times,
interleaved, and the best round is kept, which damps noise from other processes.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import time

import numpy as np


@dataclass
class Config:
    """Options of ``simrl bench envs``."""

    task: str = "go1-velocity"                # task name
    num_envs: int = 256                       # worlds stepped together
    steps: int = 200                          # control steps per measurement
    sync_steps: int = 20                      # control steps for the slow SyncVectorEnv baseline
    rounds: int = 3                           # interleaved rounds; best kept
    dr: str = "uniform"                       # randomization: none or uniform
    threads: int | None = None                # rollout threads; default: all cores
    json: str | None = None                   # also write the results to this JSON file
    backend: str = "cpu"                      # cpu | warp (MuJoCo Warp env vs bare MuJoCo Warp physics, on the GPU when present)


def measure(task: str, num_envs: int, steps: int, sync_steps: int, rounds: int, dr: str,
            threads: int | None = None) -> dict:
    import gymnasium

    import envs
    from envs.gym import SimrlEnv

    env = envs.make(task, num_envs, dr=dr, seed=0, nthread=threads)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, num_envs, env.action_size))

    def batched() -> float:
        env.reset_numpy(seed=0)
        t = time.perf_counter()
        for a in actions:
            env.step(a)
        return num_envs * steps / (time.perf_counter() - t)

    def bare() -> float:
        env.reset_numpy(seed=0)
        state, control = env.state.copy(), env.control.copy()
        ctrls = [env.task.action_to_ctrl(a, env.robot_state, {k: v.copy() for k, v in env.task_state.items()})
                 for a in actions]
        t = time.perf_counter()
        for c in ctrls:
            control[:, :env.model.nu] = c
            state = env.physics.step(state, control)[0].copy()
        return num_envs * steps / (time.perf_counter() - t)

    vec = gymnasium.vector.SyncVectorEnv(
        [lambda i=i: SimrlEnv(task, dr=dr, seed=i) for i in range(num_envs)],
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)

    def sync() -> float:
        vec.reset(seed=0)
        t = time.perf_counter()
        for a in actions[:sync_steps]:
            vec.step(a.astype(np.float32))
        return num_envs * sync_steps / (time.perf_counter() - t)

    best = {"batched": 0.0, "bare_rollout": 0.0, "sync_vector_env": 0.0}
    for _ in range(rounds):
        best["bare_rollout"] = max(best["bare_rollout"], bare())
        best["batched"] = max(best["batched"], batched())
        best["sync_vector_env"] = max(best["sync_vector_env"], sync())
    env.close()
    vec.close()
    substeps = env.task.substeps
    return {
        "task": task, "num_envs": num_envs, "dr": dr, "substeps": substeps,
        "control_steps_per_s": best,
        "physics_steps_per_s_bare": best["bare_rollout"] * substeps,
        "ratio_vs_sync_vector_env": best["batched"] / best["sync_vector_env"],
        "fraction_of_physics_limit": best["batched"] / best["bare_rollout"],
    }


def run(args: Config) -> int:
    import os
    if args.backend != "cpu":
        from simrl.cli.bench.gpu import run_envs
        return run_envs(args.task, args.num_envs, args.steps, args.rounds, args.dr, args.json)
    r = measure(args.task, args.num_envs, args.steps, args.sync_steps, args.rounds, args.dr, args.threads)
    c = r["control_steps_per_s"]
    print(f"task {r['task']}, {r['num_envs']} envs, dr={r['dr']}, {r['substeps']} physics steps per "
          f"control step, {len(os.sched_getaffinity(0))} cores")
    print(f"  batched env            {c['batched']:>10,.0f} control steps/s")
    print(f"  SyncVectorEnv          {c['sync_vector_env']:>10,.0f} control steps/s")
    print(f"  bare mujoco.rollout    {c['bare_rollout']:>10,.0f} control steps/s "
          f"({r['physics_steps_per_s_bare']:,.0f} physics steps/s)")
    print(f"  batched / SyncVectorEnv      {r['ratio_vs_sync_vector_env']:6.1f}x   (target >= 5x)")
    print(f"  batched / physics limit      {100 * r['fraction_of_physics_limit']:6.1f}%   (target >= 70%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0
