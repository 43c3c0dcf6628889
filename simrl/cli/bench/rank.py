"""How well checkpoint rankings predict performance on a reality proxy (sim-to-sim), and how
fast scoring is.

1. **Pool**: PPO checkpoints trained with different randomization (none, uniform of several
   widths, extra families, other seeds and lengths): the trials of a sweep
   (:mod:`simrl.sweep`, on a local Ray or ``--address``'s cluster) in ``CACHE/sweep``, so a
   finished run is never retrained and an interrupted one resumes from its last checkpoint.
2. **Reality proxy**: the task's robot with a fixed, held-out perturbation that no training
   distribution equals: heavier/lighter links, low friction, weak motors, one step of control
   latency and sensor noise (:data:`PROXY`, an :class:`envs.perturbation.Perturbation` run as
   batched worlds; ``deploy.run`` on its MuJoCo robot with the same perturbation saved to a
   file can replace it). Cached logs and truth are dropped when the proxy or the log sizes
   change.
3. **Real logs**: a separately trained logging policy deployed on the proxy, recorded as MCAP
   real logs (``source=sim2sim``).
4. **Truth**: each checkpoint's mean return over ``--truth-episodes`` episodes on the proxy.
5. ``simrl rank``'s pipeline, then Spearman's rho (and Kendall, regret@1, top-3) of VSDR,
   sim-only and each OOD-only score against the truth, for each OOD aggregate.

``--protocol many`` runs the many-pools, many-proxies protocol instead
(:mod:`simrl.cli.bench.rank_many`).

``--speed`` instead times scoring ``--speed-checkpoints`` checkpoints (pool checkpoints
reused) on ``--speed-steps`` real steps (the recorded proxy steps, tiled); the simulation
rollouts (reference data, simulation score) are timed separately.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from envs.perturbation import Perturbation
from simrl.cli.bench.pool import proxy_returns, train_pool
from simrl.core.machine import finish, machine_info
from simrl.sweep import Resources

# The pool: name -> (training randomization, steps as a multiple of --steps, seed).
WIDE = (0.25, 2.0)
POOL: dict[str, tuple[Any, float, int]] = {
    "none": ("none", 1.0, 0),
    "none-short": ("none", 0.5, 1),
    "narrow": ({"mass": (0.9, 1.1), "friction": (0.9, 1.1)}, 1.0, 0),
    "uniform": ("uniform", 1.0, 0),
    "uniform-s1": ("uniform", 1.0, 1),
    "uniform-short": ("uniform", 0.5, 2),
    "wide": ({"mass": WIDE, "friction": WIDE}, 1.0, 0),
    "gain": ({"mass": (0.5, 1.5), "friction": (0.5, 1.5), "gain": (0.6, 1.2)}, 1.0, 0),
    "latency": ({"mass": (0.5, 1.5), "friction": (0.5, 1.5), "latency": (0, 2)}, 1.0, 0),
    "damping": ({"mass": (0.5, 1.5), "friction": (0.5, 1.5), "damping": (0.5, 2.0)}, 1.0, 0),
}
LOGGER = ("uniform", 1.0, 100)  # the policy that records the real logs (not in the pool)


# The reality proxy (hopper and walker2d body names): heavier/lighter links, low friction, weak
# motors, one control step (8 ms) of command latency and sensor noise; no training distribution
# equals it. The same definition runs on deploy's MuJoCo robot (``PROXY.save(file)``, then
# ``deploy.run(..., perturb=file)``).
PROXY = Perturbation(params={"mass:torso": 1.35, "mass:thigh": 0.8, "mass:leg": 1.2, "mass:foot": 1.4,
                             "friction": 0.55, "gain": 0.8},
                     latency=0.008, noise={"joint_pos": 0.01, "joint_vel": 0.1})


@dataclass
class Config:
    """Options of ``simrl bench rank``."""

    task: str = "hopper"                      # task; the pool's DR names fit the planar tasks
    cache: str | None = None                  # pool, logs and truth cache; default: runs/bench-rank-TASK
    out: str | None = None                    # report directory; default: CACHE/report
    steps: int = 300_000                      # PPO steps of a full-length pool member
    num_envs: int = 64                        # worlds of each pool run
    real_worlds: int = 16                     # proxy worlds recording real logs
    real_steps: int = 1000                    # control steps per world
    truth_episodes: int = 32                  # proxy episodes per checkpoint
    speed: bool = False                       # time scoring instead (see above)
    speed_checkpoints: int = 20               # --speed: checkpoints scored
    speed_steps: int = 100_000                # --speed: real-log steps scored
    json: str | None = None                   # also write the results to this JSON file
    cpus_per_trial: float = 1.0               # CPUs (torch threads) each pool run reserves on Ray
    address: str = ""                         # an existing Ray cluster (HOST:PORT); empty: a local Ray in this process
    protocol: str = "one"                     # one (one pool, one proxy: above) | many (simrl.cli.bench.rank_many: several tasks, >= 20-checkpoint pools, several proxies)
    tasks: str = "hopper,walker2d,go1-velocity"  # --protocol many: tasks
    proxies: int = 0                          # --protocol many: proxies per task (0: the spec's 5)


def build_pool(task: str, root: Path, steps: int, resources: Resources,
               num_envs: int = 64) -> tuple[list[Path], Path]:
    """(pool checkpoints, logging checkpoint), training what is not done."""
    members = {name: (dr, int(mult * steps), seed) for name, (dr, mult, seed) in POOL.items()}
    dr, mult, seed = LOGGER
    members["logger"] = (dr, int(mult * steps), seed)
    finals = train_pool(task, members, root / "sweep", resources, num_envs)
    return [finals[n] for n in POOL], finals["logger"]


def record_real_logs(task: str, logger: Path, out: Path, worlds: int, steps: int) -> Path:
    """Deploys the logging policy on the proxy and writes the episodes as real logs."""
    import policies
    from simrl.validate.record import record

    if out.is_dir() and any(out.glob("*.mcap")):
        return out
    t = time.perf_counter()
    paths = record(PROXY.make_env(task, worlds, seed=1), policies.load(logger), steps, out,
                   policy_id="logger", source="sim2sim", seed=1)
    print(f"recorded {len(paths)} real logs ({worlds * steps:,} steps) in {time.perf_counter() - t:.0f} s")
    return out


def quality(args: Config, root: Path) -> dict:
    from simrl.validate.ranking import RankConfig, finish, rank_checkpoints
    from simrl.validate.report import write_report

    pool, logger = build_pool(args.task, root, args.steps, resources(args), args.num_envs)
    logs = record_real_logs(args.task, logger, root / "real_logs", args.real_worlds, args.real_steps)
    truth = proxy_returns(args.task, PROXY, pool, args.truth_episodes, root / "truth.json")
    cfg = RankConfig()
    ranking = rank_checkpoints(pool, logs, cfg, log=print)
    results = {}
    for agg in ("mean", "q95", "frac"):
        vsdr = replace(cfg.vsdr, aggregate=agg)
        r = finish(ranking.checkpoints, ranking.sim, ranking.ood, ranking.real, vsdr, ranking.timings)
        results[agg] = r.evaluate(truth)
    metrics = results[cfg.vsdr.aggregate]
    files = write_report(ranking, cfg, Path(args.out or root / "report"), metrics)
    print(f"\n{'checkpoint':16s} {'true return':>11s} {'sim':>8s} {'VSDR':>6s} {'rank':>4s}")
    for i in np.argsort(-truth):
        print(f"{list(POOL)[i]:16s} {truth[i]:11.1f} {ranking.sim[i]:8.1f} "
              f"{ranking.scores['vsdr'][i]:6.2f} {ranking.rank[i]:4d}")
    print(f"\nSpearman's rho against true proxy return (OOD aggregate: default {cfg.vsdr.aggregate!r})")
    methods = list(metrics)
    print(f"{'method':22s} " + " ".join(f"{a:>7s}" for a in results))
    for m in methods:
        print(f"{m:22s} " + " ".join(f"{results[a][m]['spearman']:7.3f}" for a in results))
    from simrl.validate.report import print_metrics
    print(f"\nall metrics, aggregate {cfg.vsdr.aggregate!r}:")
    print_metrics(metrics)
    print(f"report: {files['html']}")
    return {"truth": dict(zip(POOL, truth.tolist())), "metrics": results,
            "timings_s": ranking.timings, "real_steps": len(ranking.real)}


def speed(args: Config, root: Path) -> dict:
    """Times scoring N checkpoints on M real steps; simulation timed separately."""
    import policies
    from simrl.validate.data import RealData, load_real_data
    from simrl.validate.ood import OODConfig, ood_scores, reference_rollouts
    from simrl.validate.rollout import torch_threads
    from simrl.validate.simeval import SimEvalConfig, sim_score

    pool, logger = build_pool(args.task, root, args.steps, resources(args), args.num_envs)
    logs = record_real_logs(args.task, logger, root / "real_logs", args.real_worlds, args.real_steps)
    t = time.perf_counter()
    recorded = load_real_data(logs, policies.load_spec(pool[0]))
    read_s = time.perf_counter() - t
    reps = -(-args.speed_steps // len(recorded))
    real = RealData(np.tile(recorded.obs, (reps, 1))[:args.speed_steps],
                    np.tile(recorded.action, (reps, 1))[:args.speed_steps],
                    np.array([args.speed_steps]), ["tiled"], [])
    checkpoints = [pool[i % len(pool)] for i in range(args.speed_checkpoints)]
    cfg = OODConfig()
    sim_s = score_s = score_cpu_s = 0.0
    with torch_threads(1):
        for path in checkpoints:
            policy = policies.load(path)
            t0 = time.perf_counter()
            sim_score(policy, SimEvalConfig())
            reference = reference_rollouts(policy, cfg)
            t1, c1 = time.perf_counter(), time.process_time()
            ood_scores(policy, reference, real, cfg)
            sim_s += t1 - t0
            score_s += time.perf_counter() - t1
            score_cpu_s += time.process_time() - c1
    out = {"checkpoints": len(checkpoints), "real_steps": len(real), "scoring_s": score_s,
           "scoring_cpu_s": score_cpu_s, "simulation_s": sim_s,
           "read_logs_steps_per_s": len(recorded) / read_s,
           "cores": len(os.sched_getaffinity(0)), "load_avg_1min": os.getloadavg()[0]}
    print(f"scoring {out['checkpoints']} checkpoints on {out['real_steps']:,} real steps: {score_s:.1f} s "
          f"wall, {score_cpu_s:.1f} s CPU (one torch thread; target < 60 s; "
          f"{score_s / len(checkpoints):.2f} s per checkpoint, 3 detectors)")
    print(f"simulation (reference rollouts + simulation score), reported separately: {sim_s:.1f} s")
    print(f"reading MCAP real logs: {out['read_logs_steps_per_s']:,.0f} steps/s "
          f"({args.speed_steps / out['read_logs_steps_per_s']:.1f} s for {args.speed_steps:,} steps, "
          f"once per ranking); {out['cores']} cores, load average {out['load_avg_1min']:.1f}")
    return out


def check_cache(root: Path, args: Config) -> None:
    """Drops cached real logs and truth recorded under another proxy or log size."""
    settings = {"task": args.task, "proxy": PROXY.to_dict(), "real_worlds": args.real_worlds,
                "real_steps": args.real_steps, "truth_episodes": args.truth_episodes}
    file = root / "proxy.json"
    if file.exists() and json.loads(file.read_text()) != settings:
        shutil.rmtree(root / "real_logs", ignore_errors=True)
        (root / "truth.json").unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(settings, indent=2))


def resources(args: Config) -> Resources:
    return Resources(args.cpus_per_trial, 0.0, args.address or None)


def run(args: Config) -> int:
    if args.protocol == "many":
        from simrl.cli.bench.rank_many import run_many
        return run_many(args)
    if args.protocol != "one":
        raise ValueError(f"--protocol: one or many, got {args.protocol!r}")
    root = Path(args.cache or f"runs/bench-rank-{args.task}")
    check_cache(root, args)
    machine = {**machine_info(threads=int(args.cpus_per_trial)), "cpus_per_trial": args.cpus_per_trial}
    result = speed(args, root) if args.speed else quality(args, root)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "machine": finish(machine)}, indent=2))
    return 0
