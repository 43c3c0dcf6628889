"""Dream-to-real: real-env return of policies trained in dreams of one dropout world model.

One world model is fitted to transitions of a behaviour policy in the real (MuJoCo) task. PPO
then trains in its dreams under each ``--modes`` (default: ``episode``, one dropout mask per
world per episode, Dropout's Dream Land; ``none``, no dropout at inference; ``mean``, the
average of ``--num-masks`` masks), ``--seeds`` seeds each, and every final checkpoint runs
``--episodes`` episodes in the real task. The model's one-step and open-loop (10, 50 steps)
prediction errors on held-out real episodes are reported per mode. Prints a table; writes
``results.json`` and ``dream.png`` into ``--out``.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from simrl.core.machine import finish, machine_info


@dataclass
class Config:
    """Options of ``simrl bench dream``."""

    task: str = "halfcheetah"                 # classic task
    policy: str = "random"                    # behaviour policy of the data
    data_steps: int = 50_000                  # training transitions
    heldout_steps: int = 10_000               # held-out transitions
    hidden: tuple[int, ...] = (200, 200, 200)  # world model layers
    dropout: float = 0.1                      # dropout probability
    fit_epochs: int = 30                      # world model epochs
    modes: tuple[str, ...] = ("episode", "none", "mean")  # dream modes to compare
    num_masks: int = 8                        # masks averaged in mode mean
    seeds: int = 3                            # PPO seeds per mode
    steps: int = 500_000                      # dream steps per policy
    num_envs: int = 256                       # dream worlds
    dream_episode_steps: int = 200            # dream episode length limit, 0 = the task's
    episodes: int = 10                        # real episodes per policy
    horizons: tuple[int, ...] = (1, 10, 50)   # open-loop horizons
    threads: int = 1                          # torch CPU threads
    device: str = "cpu"                       # dream and PPO device
    out: str = "runs/bench-dream"             # output directory


def _random_return(task: str, episodes: int, seed: int) -> float:
    """Mean real return of uniform random actions (the floor)."""
    import torch

    from envs.tasks import make_task
    from simrl.evaluate import run_episodes

    g = torch.Generator().manual_seed(seed)
    t = make_task(task)
    policy = lambda obs: torch.rand(obs.shape[0], t.action_size, generator=g) * 2 - 1
    return float(run_episodes(policy, t, episodes, seed=seed)["returns"].mean())


def measure(args: Config, log=print) -> dict[str, Any]:
    import torch

    from simrl.dream.data import collect
    from simrl.dream.env import DreamConfig
    from simrl.dream.evaluate import prediction_errors, real_return
    from simrl.dream.fit import FitConfig, fit
    from simrl.dream.model import WorldModelConfig
    from simrl.dream.train import train_in_dream

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(threads=args.threads)
    t0 = time.perf_counter()
    data = collect(args.task, args.data_steps, args.policy, seed=0)
    held = collect(args.task, args.heldout_steps, args.policy, seed=10_000)
    data.save(out / "data.npz"), held.save(out / "heldout.npz")
    model = fit(data, WorldModelConfig(hidden=tuple(args.hidden), dropout=args.dropout),
                FitConfig(epochs=args.fit_epochs, patience=args.fit_epochs, device=args.device))
    model.save(out / "model.pt", model.fit_stats)
    log(f"world model: {len(data):,} transitions of {args.task} ({data.behaviour}), "
        f"{model.fit_stats['epochs']} epochs in {model.fit_stats['seconds']:.0f} s")
    error_modes = list(dict.fromkeys(["none", "mean", "episode", "step", *args.modes]))
    errors = prediction_errors(model, held, args.horizons, error_modes, args.num_masks)
    runs: dict[str, list[dict[str, Any]]] = {}
    for mode in args.modes:
        dream = DreamConfig(mode=mode, num_masks=args.num_masks,
                            max_episode_steps=args.dream_episode_steps)
        for seed in range(args.seeds):
            trainer = train_in_dream(out / "model.pt", out / "runs" / f"{mode}-s{seed}", dream, {
                "train.steps": args.steps, "train.num_envs": args.num_envs, "train.seed": seed,
                "train.progress": False, "train.checkpoint_every": 0, "train.threads": args.threads},
                device=args.device)
            real = real_return(str(trainer.out / "final"), episodes=args.episodes, seed=100 + seed)
            dream_return = trainer.episodes.summary().get("mean_return", float("nan"))
            runs.setdefault(mode, []).append({"seed": seed, "real_return": real["return"]["mean"],
                                              "real_return_std": real["return"]["std"],
                                              "dream_return": dream_return,
                                              "train_seconds": trainer.wall_time})
            log(f"  {mode:8s} seed {seed}: real {real['return']['mean']:8.1f}   "
                f"dream {dream_return:8.1f}   ({trainer.wall_time:.0f} s)")
    return {"task": args.task, "behaviour": data.behaviour, "data_steps": len(data),
            "heldout_steps": len(held), "fit": {k: v for k, v in model.fit_stats.items() if k != "history"},
            "steps": args.steps, "num_envs": args.num_envs, "dream_episode_steps": args.dream_episode_steps,
            "episodes": args.episodes, "random_return": _random_return(args.task, args.episodes, 0),
            "prediction_errors": errors, "runs": runs, "seconds": time.perf_counter() - t0,
            "machine": finish(machine)}


def _table(r: dict[str, Any]) -> str:
    horizons = list(next(iter(r["prediction_errors"].values())))
    lines = [f"open-loop prediction error on {r['heldout_steps']:,} held-out real transitions "
             "(RMSE in observation std units)",
             "  mode      " + "".join(f"{h:>6d} step{'s' if h > 1 else ' '}" for h in horizons)]
    for mode, errs in r["prediction_errors"].items():
        lines.append(f"  {mode:9s} " + "".join(f"{errs[h]:12.3f}" for h in horizons))
    lines += ["", f"dream-to-real on {r['task']}: {r['steps']:,} dream steps per policy, "
                  f"{r['episodes']} real episodes each (random policy: {r['random_return']:.1f})",
              "  mode      real return (mean ± std over seeds)   per seed                 dream return"]
    for mode, runs in r["runs"].items():
        real = np.array([x["real_return"] for x in runs])
        dream = np.mean([x["dream_return"] for x in runs])
        seeds = " ".join(f"{v:7.1f}" for v in real)
        lines.append(f"  {mode:9s} {real.mean():9.1f} ± {real.std(ddof=1) if len(real) > 1 else 0:7.1f}"
                     f"                    {seeds:24s} {dream:8.1f}")
    return "\n".join(lines)


def _plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    modes = list(r["runs"])
    for i, mode in enumerate(modes):
        real = [x["real_return"] for x in r["runs"][mode]]
        dream = [x["dream_return"] for x in r["runs"][mode]]
        ax1.bar(i, np.mean(real), color=f"C{i}", alpha=0.6)
        ax1.scatter([i - 0.1] * len(real), real, color="k", zorder=3, label="real (per seed)" if i == 0 else None)
        ax1.scatter([i + 0.1] * len(dream), dream, marker="x", color="grey", zorder=3,
                    label="in the dream" if i == 0 else None)
    ax1.axhline(r["random_return"], ls="--", color="grey", lw=1, label="random policy")
    ax1.set_xticks(range(len(modes)), modes)
    ax1.set_ylabel("return")
    ax1.set_title(f"{r['task']}: policies trained in dreams, run in MuJoCo")
    ax1.legend(fontsize=8)
    for mode, errs in r["prediction_errors"].items():
        ax2.plot(list(errs), list(errs.values()), marker="o", label=mode)
    ax2.set_xscale("log")
    ax2.set_ylim(bottom=0)
    ax2.minorticks_off()
    horizons = list(next(iter(r["prediction_errors"].values())))
    ax2.set_xticks(horizons, [str(h) for h in horizons])
    ax2.set_xlabel("open-loop horizon (steps)")
    ax2.set_ylabel("RMSE (obs std units)")
    ax2.set_title("world-model error on held-out real data")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: Config) -> int:
    from simrl.core.config import to_jsonable

    r = measure(args)
    print(_table(r))
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(to_jsonable(r), indent=2, allow_nan=False))
    _plot(r, out / "dream.png")
    print(f"wrote {out / 'results.json'} and {out / 'dream.png'} ({r['seconds'] / 60:.1f} min)")
    return 0
