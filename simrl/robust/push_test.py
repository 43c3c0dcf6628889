"""Push test: how hard can the robot be shoved, and from where, before it falls?

For each force magnitude, one world per (direction, repeat) walks for ``settle_s`` under the
policy, is pushed at the base for ``push_s`` with a horizontal force from its direction
(evenly spaced around the robot, in the world frame), then has ``recover_s`` to stay up.
Success = no fall (task termination) in the whole window. All worlds of a magnitude run as
one batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from envs.batched import BatchedEnv
from envs.tasks import TASKS, make_task
from simrl.evaluate import wilson_interval


@dataclass
class PushTestConfig:
    magnitudes: tuple[float, ...] = (0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 200.0)  # N
    directions: int = 8
    repeats: int = 4
    settle_s: float = 1.0
    push_s: float = 0.2
    recover_s: float = 2.0
    command: tuple[float, float, float] = (0.5, 0.0, 0.0)  # go1-velocity: walk forward
    seed: int = 0


@dataclass
class PushTestResult:
    magnitudes: list[float]
    success_rate: list[float]                  # per magnitude
    success_by_direction: list[list[float]]    # per magnitude, per direction
    directions_deg: list[float]
    trials: int = 0                            # pushes per magnitude (directions x repeats)
    ci95: list[list[float]] = field(default_factory=list)  # Wilson interval per magnitude
    config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def push_test(policy: Callable[[np.ndarray], np.ndarray], task_name: str, cfg: PushTestConfig,
              **task_overrides: Any) -> PushTestResult:
    """Runs the push test of one policy (numpy observations in, actions out)."""
    if cfg.directions < 1 or cfg.repeats < 1:
        raise ValueError(f"push test needs >= 1 direction and repeat, got {cfg.directions} and {cfg.repeats}")
    steps = lambda seconds, dt: int(round(seconds / dt))  # noqa: E731
    overrides = dict(task_overrides)
    overrides.update(TASKS.get(task_name).command_overrides(tuple(cfg.command)))
    task = make_task(task_name, **overrides)
    dt = task.cfg.control_dt
    settle, push, recover = steps(cfg.settle_s, dt), steps(cfg.push_s, dt), steps(cfg.recover_s, dt)
    if settle + push + recover >= task.cfg.max_episode_steps:
        task = make_task(task_name, **overrides, max_episode_steps=settle + push + recover + 1)
    n = cfg.directions * cfg.repeats
    angles = np.repeat(np.arange(cfg.directions) * 2 * np.pi / cfg.directions, cfg.repeats)
    unit = np.stack([np.cos(angles), np.sin(angles), np.zeros(n)], axis=1)
    env = BatchedEnv(task, n, seed=cfg.seed, external_forces=True)
    rates, by_dir = [], []
    for magnitude in cfg.magnitudes:
        obs = env.reset_numpy(seed=cfg.seed)
        fell = np.zeros(n, dtype=bool)
        for t in range(settle + push + recover):
            pushing = settle <= t < settle + push
            env.external_force = magnitude * unit if pushing else None
            obs, _, terminated, _, _ = env.step_numpy(np.asarray(policy(obs.astype(np.float32))))
            fell |= terminated
        ok = ~fell
        rates.append(float(ok.mean()))
        by_dir.append(ok.reshape(cfg.directions, cfg.repeats).mean(axis=1).tolist())
    env.close()
    ci = [wilson_interval(int(round(r * n)), n)["ci95"] for r in rates]
    return PushTestResult(list(map(float, cfg.magnitudes)), rates, by_dir,
                          list(np.degrees(np.arange(cfg.directions) * 2 * np.pi / cfg.directions)),
                          n, ci, asdict(cfg))


def plot_push_curves(results: dict[str, PushTestResult], path: str | Path) -> None:
    """Left: success rate against push magnitude with its 95% Wilson band, one curve per
    policy. Right: success by push direction (mean over magnitudes), where it is weakest."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 4.2), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    polar = fig.add_subplot(1, 2, 2, projection="polar")
    for name, r in results.items():
        line, = ax.plot(r.magnitudes, r.success_rate, marker="o", label=name)
        if r.ci95:
            low, high = np.asarray(r.ci95).T
            ax.fill_between(r.magnitudes, low, high, color=line.get_color(), alpha=0.15)
        theta = np.radians(r.directions_deg + r.directions_deg[:1])
        by_dir = np.mean(r.success_by_direction, axis=0)
        polar.plot(theta, np.append(by_dir, by_dir[0]), marker="o", color=line.get_color())
    first = next(iter(results.values()))
    push_s, n = first.config.get("push_s", 0.2), first.trials
    ax.set_xlabel(f"push force (N) for {push_s:g} s, {len(first.directions_deg)} directions")
    ax.set_ylabel("success rate (no fall)" + (f", {n} pushes per point" if n else ""))
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    polar.set_ylim(0, 1)
    polar.set_title("success by push direction (0 deg = +x, forward)", fontsize=10)
    fig.savefig(str(path), dpi=120)


def write_results(results: dict[str, PushTestResult], out_json: str | Path,
                  out_png: str | Path | None = None) -> None:
    Path(out_json).write_text(json.dumps({k: v.to_json() for k, v in results.items()}, indent=2))
    if out_png is not None:
        plot_push_curves(results, out_png)


def format_results(results: dict[str, PushTestResult]) -> str:
    names: Sequence[str] = list(results)
    mags = results[names[0]].magnitudes
    lines = ["push (N)  " + "  ".join(f"{n[:18]:>18s}" for n in names)]
    for i, m in enumerate(mags):
        lines.append(f"{m:8.0f}  " + "  ".join(f"{results[n].success_rate[i]:18.0%}" for n in names))
    return "\n".join(lines)
