"""Control steps per second of the batched env against the CPU baselines users pick, with
matched resources, all measured in the same run:

* simrl's batched env with ``--threads N`` physics threads (and N torch threads), and with 1;
* EnvPool (C++ thread pool, N threads, same env count) on the same task, run by the Python of
  its own venv (``--envpool-python``; EnvPool needs older MuJoCo assets than simrl);
* Gymnasium ``AsyncVectorEnv`` with N worker processes sharing the envs, and ``SyncVectorEnv``
  (one thread, against simrl at one thread), over Gymnasium's native env where one exists
  (``Hopper-v5``), else simrl's single-world Gymnasium env;
* bare ``mujoco.rollout`` physics on the same per-world models with N threads, replaying the
  states and controls the batched env stepped (the physics limit: no observations, rewards,
  resets or arrays).

All step uniform random actions (simrl and the Gymnasium baselines replay one sequence; EnvPool
draws its own from the same distribution); simrl is timed through its numpy core
(``step_numpy``, as EnvPool and Gymnasium return numpy). simrl, the physics limit and EnvPool
are measured ``--rounds`` times, interleaved, then SyncVectorEnv and AsyncVectorEnv ``--rounds``
times each (both at once do not fit in memory with 256 go1 envs); the best round of each is
kept, which damps noise from other processes, and the JSON records the load average. One-line re-run of the README's figures on an idle machine:
``simrl bench envs --task go1-velocity --envpool-python /work/venvs/envpool/bin/python --json docs/results/bench_envs_go1.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import ctypes
import gc
import json
import os
import time

import numpy as np


@dataclass
class Config:
    """Options of ``simrl bench envs``."""

    task: str = "go1-velocity"                # task name
    num_envs: int = 256                       # worlds stepped together (every contender)
    steps: int = 200                          # control steps per measurement (simrl, EnvPool, physics)
    baseline_steps: int = 20                  # control steps for the slower Sync/AsyncVectorEnv baselines
    rounds: int = 3                           # interleaved rounds; best kept
    dr: str = "none"                          # randomization of simrl's envs: none or uniform (baselines: none)
    threads: int | None = None                # physics threads, torch threads, worker processes; default: all cores
    envpool_python: str | None = None         # python of a venv with envpool (see README); none: EnvPool skipped
    json: str | None = None                   # also write the results to this JSON file
    backend: str = "cpu"                      # cpu | warp (MuJoCo Warp env vs bare MuJoCo Warp physics, on the GPU when present)


def _release_memory() -> None:
    """Collects dropped envs and hands their memory back to the OS: glibc keeps freed model
    buffers (12 MB per go1 env) in the heap otherwise, so 256 closed go1 envs held 11 GB."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def measure(cfg: Config) -> dict:
    """Runs every contender; returns the rows (steps/s and resources), ratios and run context."""
    import gymnasium
    import torch

    import envs
    from simrl.cli.bench import baselines
    from simrl.core.machine import finish, machine_info

    threads = cfg.threads or len(os.sched_getaffinity(0))
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    info = machine_info(threads)
    n, steps = cfg.num_envs, cfg.steps
    env_n = envs.make(cfg.task, n, dr=cfg.dr, seed=0, nthread=threads)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n, env_n.action_size))
    base = baselines.baseline_name(cfg.task)

    def batched(env) -> float:
        env.reset_numpy(seed=0)
        t = time.perf_counter()
        for a in actions:
            env.step_numpy(a)
        return n * steps / (time.perf_counter() - t)

    # The physics limit replays the very states and controls the batched env stepped (its resets
    # included): open-loop physics from one start would simulate fallen robots instead.
    inputs: list[tuple[np.ndarray, np.ndarray]] = []
    step_physics = env_n.physics.step

    def recording(state, control):
        inputs.append((state.copy(), control.copy()))
        return step_physics(state, control)

    env_n.physics.step = recording
    batched(env_n)
    del env_n.physics.step  # back to the class's method

    def bare() -> float:
        t = time.perf_counter()
        for state, control in inputs:
            step_physics(state, control)
        return n * steps / (time.perf_counter() - t)

    # simrl at one thread: the same worlds (models are large: go1 12 MB each) on a 1-thread pool
    one = type(env_n.physics)(env_n.models, env_n.task.substeps, env_n.ncontrol,
                              env_n.physics.control_spec, 1)

    def batched_1thread() -> float:
        many, env_n.physics = env_n.physics, one
        try:
            return batched(env_n)
        finally:
            env_n.physics = many

    workers = min(threads, n)
    if n % workers:
        raise ValueError(f"--num-envs {n} must be a multiple of --threads {workers} "
                         "(the AsyncVectorEnv workers share the envs evenly)")
    baseline_actions = actions[:cfg.baseline_steps].astype(np.float32)

    def vector_rate(vec, shape: tuple[int, ...]) -> float:
        vec.reset(seed=0)
        t = time.perf_counter()
        for a in baseline_actions:
            vec.step(a.reshape(shape))
        return n * len(baseline_actions) / (time.perf_counter() - t)

    def sync_env():
        return gymnasium.vector.SyncVectorEnv(
            [lambda i=i: baselines.single_env(cfg.task, i, cfg.dr) for i in range(n)],
            autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)

    envpool: dict = {"error": "no --envpool-python given (set-up: see README, Benchmarks)"}

    def envpool_rate() -> float:
        nonlocal envpool
        if cfg.envpool_python is None:
            return 0.0
        r = baselines.envpool_steps_per_s(cfg.envpool_python, cfg.task, n, threads, steps)
        if "error" in r:
            envpool = r
            return 0.0
        if "steps_per_s" not in envpool or r["steps_per_s"] > envpool["steps_per_s"]:
            envpool = r
        return r["steps_per_s"]

    contenders = {"simrl": lambda: batched(env_n), "simrl_1thread": batched_1thread,
                  "bare_rollout": bare, "envpool": envpool_rate}
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(cfg.rounds):
        for name, fn in contenders.items():
            best[name] = max(best[name], fn())
    # The Gymnasium baselines one after the other, each for all rounds: 256 single go1 envs take
    # 11.5 GB per copy, so both copies next to simrl's worlds do not fit in 24 GB.
    for name, make, shape in (("sync_vector_env", sync_env, (n, -1)),
                              ("async_vector_env", lambda: baselines.make_async(cfg.task, n, workers, 0, cfg.dr),
                               (workers, n // workers, -1))):
        vec = make()
        best[name] = max(vector_rate(vec, shape) for _ in range(cfg.rounds))
        vec.close()
        del vec  # free the envs before the next baseline is built
        _release_memory()
    one.close()
    env_n.close()

    rows = {
        "simrl": {"steps_per_s": best["simrl"], "threads": threads, "what": "simrl batched env"},
        "simrl_1thread": {"steps_per_s": best["simrl_1thread"], "threads": 1, "what": "simrl batched env"},
        "bare_rollout": {"steps_per_s": best["bare_rollout"], "threads": threads,
                         "what": "bare mujoco.rollout, same models, states and controls (physics limit)"},
        "envpool": ({"steps_per_s": envpool["steps_per_s"], "threads": threads,
                     "what": f"EnvPool {envpool['envpool_version']} {envpool['env_id']}"}
                    if "steps_per_s" in envpool else {"steps_per_s": None, "threads": threads,
                                                       "skipped": envpool["error"]}),
        "async_vector_env": {"steps_per_s": best["async_vector_env"], "workers": workers,
                             "what": f"Gymnasium AsyncVectorEnv, {workers} processes x {n // workers} {base}"},
        "sync_vector_env": {"steps_per_s": best["sync_vector_env"], "threads": 1,
                            "what": f"Gymnasium SyncVectorEnv over {base}"},
    }
    simrl = best["simrl"]
    ratios = {"simrl_vs_envpool": simrl / envpool["steps_per_s"] if "steps_per_s" in envpool else None,
              "simrl_vs_async_vector_env": simrl / best["async_vector_env"],
              "simrl_1thread_vs_sync_vector_env": best["simrl_1thread"] / best["sync_vector_env"],
              "fraction_of_physics_limit": simrl / best["bare_rollout"]}
    return {"task": cfg.task, "num_envs": n, "dr": cfg.dr, "substeps": env_n.task.substeps,
            "steps": steps, "baseline_steps": len(baseline_actions), "rounds": cfg.rounds,
            "unit": "control steps/s", "rows": rows, "ratios": ratios,
            "physics_steps_per_s_bare": best["bare_rollout"] * env_n.task.substeps,
            "config": asdict(cfg), "machine": finish(info)}


def run(args: Config) -> int:
    if args.backend != "cpu":
        from simrl.cli.bench.gpu import run_envs
        return run_envs(args.task, args.num_envs, args.steps, args.rounds, args.dr, args.json)
    r = measure(args)
    m, rows, x = r["machine"], r["rows"], r["ratios"]
    print(f"task {r['task']}, {r['num_envs']} envs, dr={r['dr']}, {r['substeps']} physics steps per control "
          f"step, {m['threads']} thread(s) for every multi-threaded contender, {m['cores']} cores "
          f"({m['cpu']}), load average {m['load_avg_start'][0]:.1f} -> {m['load_avg_end'][0]:.1f}")
    for name, row in rows.items():
        res = f"{row['threads']} thread(s)" if "threads" in row else f"{row['workers']} processes"
        if row["steps_per_s"] is None:
            print(f"  {name:18s} skipped: {row['skipped']}")
        else:
            print(f"  {name:18s} {row['steps_per_s']:>10,.0f} control steps/s  {res:13s} {row['what']}")
    if x["simrl_vs_envpool"] is not None:
        print(f"  simrl / EnvPool                  {x['simrl_vs_envpool']:6.2f}x")
    print(f"  simrl / AsyncVectorEnv           {x['simrl_vs_async_vector_env']:6.2f}x")
    print(f"  simrl / SyncVectorEnv (1 thread) {x['simrl_1thread_vs_sync_vector_env']:6.2f}x")
    print(f"  simrl / physics limit            {100 * x['fraction_of_physics_limit']:6.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0
