"""Residual RL on a deliberately imperfect base: panda-push with the scripted IK pusher.

Measures the pusher's success rate alone (a zero residual), trains a residual policy on top of
it with PPO for ``--steps`` env steps per seed, and evaluates every saved checkpoint, so the
curve shows success against training steps. The runs are the trials of a sweep
(:mod:`simrl.sweep`, on a local Ray or ``--address``'s cluster) in ``--out``: a finished run is
never retrained and an interrupted one resumes from its last checkpoint. Writes
``residual_bench.json`` and ``residual_bench.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import time
from pathlib import Path

import numpy as np

from simrl.core.machine import finish, machine_info


@dataclass
class Config:
    """Options of ``simrl bench residual``."""

    task: str = "panda-push"                  # task
    base: str = "pusher"                      # base controller
    steps: int = 300_000                      # env steps per seed
    seeds: int = 2                            # seeds
    num_envs: int = 32                        # worlds
    scale: float = 0.2                        # residual scale
    sparse: bool = False                      # sparse reward: 1 at the goal, else 0
    episodes: int = 128                       # evaluation episodes
    evals: int = 5                            # checkpoints evaluated per run
    out: str = "runs/bench_residual"          # run cache (a sweep directory: trials/, results.csv) and results
    cpus_per_trial: float = 1.0               # CPUs (torch threads) each training run reserves on Ray
    address: str = ""                         # an existing Ray cluster (HOST:PORT); empty: a local Ray in this process


def _success(checkpoint: Path | None, args: Config, seed: int) -> float:
    """Success rate of a residual checkpoint, or of the base alone when ``checkpoint`` is None."""
    import torch

    import policies
    from envs.tasks import make_task
    from simrl.evaluate import run_episodes
    from simrl.robust.residual import ResidualEnv, make_base

    task = make_task(args.task, sparse_reward=args.sparse)
    base = make_base(args.base, task)
    if checkpoint is None:
        policy = lambda obs: torch.zeros(obs.shape[0], task.action_size)  # noqa: E731
    else:
        policy = policies.load(checkpoint)
    wrap = lambda env: ResidualEnv(env, base, args.scale)  # noqa: E731
    episodes = run_episodes(policy, task, args.episodes, seed=10_000 + seed, wrap=wrap)
    return float(np.mean(episodes["success"]))


def trial_options(args: Config, seed: int) -> dict:
    """The ``simrl train`` options of one seed's residual run."""
    options = {"task": args.task, "residual": args.base, "residual-scale": args.scale,
               "steps": args.steps, "num-envs": args.num_envs, "seed": seed,
               "checkpoint-every": max(1, args.steps // args.evals)}
    if args.sparse:
        options["task.sparse-reward"] = True
    return options


def run(args: Config) -> int:
    from simrl.cli.sweep import sweep_trials
    from simrl.sweep import Resources

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {**machine_info(threads=int(args.cpus_per_trial)), "cpus_per_trial": args.cpus_per_trial}
    t0 = time.perf_counter()
    base_by_seed = [_success(None, args, seed) for seed in range(args.seeds)]
    base_success = float(np.mean(base_by_seed))
    print(f"base controller {args.base!r} alone: success {base_success:.1%} "
          f"({args.episodes} episodes on each seed's evaluation episodes)", flush=True)
    trials, rows = sweep_trials([trial_options(args, s) for s in range(args.seeds)], ["seed"], out,
                                Resources(args.cpus_per_trial, 0.0, args.address or None))
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"{len(failed)} training runs failed, e.g. {failed[0]['directory']}: "
                           f"{failed[0]['error']}")
    runs = []
    for seed, (trial, row) in enumerate(zip(trials, rows)):
        run_dir = trial.directory
        train_s = float(row["wall_time_s"] or 0.0)
        checkpoints = sorted((run_dir / "checkpoints").glob("step_*")) + [run_dir / "final"]
        curve = [(0, base_by_seed[seed])]  # the base on the episodes the residual meets
        for ckpt in checkpoints:
            steps = json.loads((ckpt / "spec.json").read_text())["training"]["steps"]
            curve.append((int(steps), _success(ckpt, args, seed)))
        runs.append({"seed": seed, "curve": curve, "final_success": curve[-1][1],
                     "train_seconds": round(train_s, 1)})
        print(f"seed {seed}: success {curve[0][1]:.1%} -> {curve[-1][1]:.1%} after "
              f"{curve[-1][0]:,} steps ({train_s:.0f} s training)", flush=True)
    finals = [r["final_success"] for r in runs]
    report = {"task": args.task, "base": args.base, "scale": args.scale, "sparse": args.sparse,
              "steps": args.steps, "num_envs": args.num_envs, "episodes": args.episodes,
              "base_success": base_success, "final_success_mean": float(np.mean(finals)),
              "final_success_std": float(np.std(finals)), "runs": runs, "machine": finish(machine),
              "wall_time_s": round(time.perf_counter() - t0, 1)}
    (out / "residual_bench.json").write_text(json.dumps(report, indent=2))
    _plot(report, out / "residual_bench.png")
    print(f"\n{args.task}: base {args.base} {base_success:.1%} -> residual "
          f"{report['final_success_mean']:.1%} +- {report['final_success_std']:.1%} "
          f"({args.seeds} seeds, {args.steps:,} steps each)")
    print(f"results: {out / 'residual_bench.json'}, {out / 'residual_bench.png'}")
    return 0


def _plot(report: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for r in report["runs"]:
        steps, success = zip(*r["curve"])
        ax.plot(steps, success, marker="o", label=f"residual, seed {r['seed']}")
    ax.axhline(report["base_success"], color="gray", linestyle="--", label=f"base {report['base']} alone")
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax.set_title(f"{report['task']}: residual RL on a scripted base")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(str(path), dpi=120)
