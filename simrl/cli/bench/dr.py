"""No randomization vs uniform vs DORAEMON: which policy solves the widest range of dynamics?

Trains PPO with ``--dr none``, ``uniform`` and ``doraemon`` for the same number of env steps,
``--seeds`` seeds each, over two randomized dimensions (default: hopper torso mass scale and
friction scale, wider than the task's defaults so that the range is hard), then evaluates every
policy on a 2-D grid of those two parameters (``simrl eval --grid``) and prints each method's
solved fraction (mean and spread over seeds). The runs are the trials of a sweep
(:mod:`simrl.sweep`, on a local Ray or ``--address``'s cluster) in ``--out``: a finished run is
never retrained (a rerun only evaluates) and an interrupted one resumes from its last checkpoint. Writes ``dr_bench.json`` and ``dr_bench.png`` (solved fraction per method, and the
grid heatmap of each method's first seed).

``--protocol paper`` runs the DORAEMON paper's Hopper protocol instead
(:mod:`simrl.cli.bench.dr_paper`: 8 parameters, success = return >= 1600 on 500-step
episodes, target success over training); ``--budget``, ``--update-steps`` and
``--target-episodes`` reduce its budget (0: the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import time
from pathlib import Path

import numpy as np

from simrl.core.machine import finish, machine_info
from simrl.cli.sweep import sweep_trials
from simrl.sweep import Resources

METHODS = ("none", "uniform", "doraemon")


@dataclass
class Config:
    """Options of ``simrl bench dr``."""

    task: str = "hopper"                      # task
    params: str = "mass:torso=0.25:2.5,friction=0.1:2.0"  # the two randomized parameters and their ranges
    steps: int = 1_000_000                    # env steps per run
    seeds: int = 3                            # seeds per method
    num_envs: int = 64                        # worlds per run
    points: int = 8                           # grid points per axis
    grid_episodes: int = 4                    # episodes per grid point
    alpha: float = 0.5                        # DORAEMON success target
    kl: float = 0.1                           # DORAEMON KL bound
    out: str = "runs/bench_dr"                # run cache (a sweep directory: trials/, results.csv) and results
    cpus_per_trial: float = 1.0               # CPUs (torch threads) each training run reserves on Ray
    address: str = ""                         # an existing Ray cluster (HOST:PORT); empty: a local Ray in this process
    protocol: str = "grid"                    # grid (the 2-D solved-fraction bench above) | paper (the DORAEMON paper's Hopper protocol)
    algo: str = "ppo"                         # --protocol paper: ppo | sb3-sac, the algorithm of the none, uniform and doraemon arms
    arms: str = ""                            # --protocol paper: comma-separated arms of none, uniform, doraemon, sac-doraemon (the paper's SAC agent); empty: all
    budget: int = 0                           # --protocol paper: env steps per run (0: the paper's 15M)
    update_steps: int = 0                     # --protocol paper: env steps between DORAEMON updates and target evaluations (0: the paper's 100k)
    target_episodes: int = 0                  # --protocol paper: target-distribution episodes per evaluation (0: the paper's 100)
    json: str = ""                            # --protocol paper: also write the results JSON here
    first_seed: int = 0                       # --protocol paper: the runs' seeds are first_seed .. first_seed + seeds - 1 (split the seeds over machines or sessions)
    merge: str = ""                           # --protocol paper: comma-separated dr_paper.json files of one protocol and budget to combine into one report in --out (no training)


def _trial_options(method: str, seed: int, ranges_file: Path, args: Config) -> dict:
    """The ``simrl train`` options of one method and seed."""
    dr = {"none": "none", "uniform": str(ranges_file), "doraemon": "doraemon"}[method]
    options = {"task": args.task, "dr": dr, "steps": args.steps, "num-envs": args.num_envs,
               "seed": seed, "checkpoint-every": max(args.steps // 5, 1)}
    if method == "doraemon":  # DORAEMON adapts within exactly the ranges uniform samples from
        options.update({"doraemon.ranges": str(ranges_file), "doraemon.alpha": args.alpha,
                        "doraemon.kl-bound": args.kl})
    return options


def run(args: Config) -> int:
    if args.protocol == "paper":
        from simrl.cli.bench.dr_paper import run_paper
        return run_paper(args)
    if args.protocol != "grid":
        raise ValueError(f"--protocol: grid or paper, got {args.protocol!r}")
    import policies
    from envs.tasks import make_task
    from simrl.dr.grid import grid_eval, parse_grid, plot_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = parse_grid(args.params, {})
    ranges = {name: [lo, hi] for name, lo, hi in grid}
    ranges_file = out / "ranges.json"
    ranges_file.write_text(json.dumps(ranges))
    task = make_task(args.task)
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    machine = {**machine_info(threads=int(args.cpus_per_trial)), "cpus_per_trial": args.cpus_per_trial}
    t0 = time.perf_counter()
    # Every run is a sweep trial (out/trials/...): run on Ray, never retrained once finished,
    # resumed from its last checkpoint after an interruption.
    pairs = [(m, s) for m in METHODS for s in range(args.seeds)]
    trials, rows = sweep_trials([_trial_options(m, s, ranges_file, args) for m, s in pairs],
                                ["dr", "seed"], out, Resources(args.cpus_per_trial, 0.0, args.address or None))
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"{len(failed)} training runs failed, e.g. {failed[0]['directory']}: "
                           f"{failed[0]['error']}")
    for (method, seed), trial, row in zip(pairs, trials, rows):
        run_dir = trial.directory
        final = run_dir / "final"
        train_s = row["wall_time_s"]
        policy = policies.load(final)
        g = grid_eval(policy, task, grid, args.points, args.grid_episodes, seed=1000 + seed)
        plot_grid(g, run_dir / "grid.png", title=f"{method} seed {seed}")
        spec = json.loads((final / "spec.json").read_text())
        results[method].append({"seed": seed, "solved_fraction": g.solved_fraction,
                                "mean_success": float(np.mean(g.success)),
                                "train_return": spec["training"].get("mean_return"),
                                "train_seconds": round(train_s, 1), "grid": g.success})
        print(f"{method:9s} seed {seed}: solved {g.solved_fraction:5.1%}, mean grid success "
              f"{np.mean(g.success):5.1%}", flush=True)
    summary = {m: {"solved_mean": float(np.mean([r["solved_fraction"] for r in rs])),
                   "solved_std": float(np.std([r["solved_fraction"] for r in rs])),
                   "runs": rs} for m, rs in results.items()}
    report = {"task": args.task, "params": ranges, "steps": args.steps, "seeds": args.seeds,
              "num_envs": args.num_envs, "points": args.points, "grid_episodes": args.grid_episodes,
              "doraemon": {"alpha": args.alpha, "kl_bound": args.kl}, "machine": finish(machine),
              "wall_time_s": round(time.perf_counter() - t0, 1), "methods": summary}
    (out / "dr_bench.json").write_text(json.dumps(report, indent=2))
    _plot(report, grid, out / "dr_bench.png")
    print(f"\n{args.task}, {args.steps:,} steps x {args.seeds} seeds per method, grid "
          f"{' x '.join(f'{n} [{lo}, {hi}]' for n, lo, hi in grid)} ({args.points}x{args.points}, "
          f"{args.grid_episodes} episodes/point, solved = success >= 50%)")
    for m in METHODS:
        s = summary[m]
        print(f"  {m:9s} solved fraction {s['solved_mean']:6.1%} +- {s['solved_std']:.1%}")
    print(f"results: {out / 'dr_bench.json'}, {out / 'dr_bench.png'}")
    return 0


def _plot(report: dict, grid: list, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 3.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    methods = report["methods"]
    means = [methods[m]["solved_mean"] for m in METHODS]
    stds = [methods[m]["solved_std"] for m in METHODS]
    axes[0].bar(METHODS, means, yerr=stds, capsize=6, color=["#999999", "#4477aa", "#ee6677"])
    axes[0].set_ylabel("solved fraction of the grid")
    axes[0].set_ylim(0, 1)
    (na, lo_a, hi_a), (nb, lo_b, hi_b) = grid
    for ax, m in zip(axes[1:], METHODS):
        success = np.asarray(methods[m]["runs"][0]["grid"]).T
        im = ax.imshow(success, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis",
                       extent=(lo_a, hi_a, lo_b, hi_b))
        ax.set_title(f"{m} (seed 0)")
        ax.set_xlabel(na)
        ax.set_ylabel(nb)
    fig.colorbar(im, ax=axes[1:], label="success rate")
    fig.savefig(str(path), dpi=110)
