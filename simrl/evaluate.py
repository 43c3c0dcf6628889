"""Evaluation of a policy: episode returns, lengths, success flags and per-step task metrics
(:func:`run_episodes`), with 95% confidence intervals (Student t for means, Wilson score for
the success rate: :func:`summarize`). ``simrl eval`` (:mod:`simrl.cli.eval`) is the command.

Each world runs exactly one episode per round (no bias towards short episodes); per-step task
metrics (e.g. go1-velocity's ``lin_vel_error``) are averaged per episode.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import envs
from envs.wrappers import to_numpy, unwrap
from envs.batched import BatchedEnv
from envs.render import FrameRenderer, Mp4Writer, VideoConfig, draw_overlay, fmt, visual_model


def t_interval(values: Any, confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample std and the Student-t confidence interval of the mean."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
        ci = [mean - half, mean + half]
    else:
        ci = [math.nan, math.nan]
    return {"mean": mean, "std": std, "ci95": ci, "n": n}


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> dict[str, Any]:
    """Success rate and its Wilson score interval."""
    from scipy import stats

    if n == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "n": 0}
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return {"mean": p, "ci95": [max(0.0, centre - half), min(1.0, centre + half)], "n": n}


class CommandSweep:
    """Tracking error against the commanded value, per command axis, from evaluation steps.

    For tasks with ``command_axes`` (go1-velocity: vx, vy, yaw_rate) and per-step metrics
    ``AXIS_error`` (|command - measured| on that axis): every step of every running episode adds
    the command in force during the step and the step's errors. :meth:`result` bins each axis's
    commanded values and averages that axis's error per bin (the command-sweep curve).
    """

    def __init__(self, axes: tuple[str, ...]):
        self.axes = tuple(axes)
        self.commands: list[np.ndarray] = []
        self.errors: list[np.ndarray] = []

    def add(self, command: np.ndarray, metrics: dict[str, np.ndarray], live: np.ndarray) -> None:
        """One step: ``command`` (n, axes) before the step, the step's metrics, ``live`` (n,)
        the worlds whose episode is still counted."""
        self.commands.append(to_numpy(command)[live])
        self.errors.append(np.stack([to_numpy(metrics[f"{a}_error"])[live] for a in self.axes], axis=1))

    def result(self, bins: int = 9) -> dict[str, Any]:
        """Per axis: the mean error over all steps, and per bin of commanded value its centre,
        step count and mean error (NaN in empty bins)."""
        cmd, err = np.concatenate(self.commands), np.concatenate(self.errors)
        out: dict[str, Any] = {"steps": int(len(cmd)), "axes": {}}
        for i, axis in enumerate(self.axes):
            low, high = float(cmd[:, i].min()), float(cmd[:, i].max())
            edges = np.linspace(low, high, bins + 1) if high > low else np.array([low - 0.5, high + 0.5])
            which = np.clip(np.searchsorted(edges, cmd[:, i], side="right") - 1, 0, len(edges) - 2)
            count = np.bincount(which, minlength=len(edges) - 1)
            total = np.bincount(which, weights=err[:, i], minlength=len(edges) - 1)
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            out["axes"][axis] = {"mean_error": float(err[:, i].mean()),
                                 "command": (0.5 * (edges[:-1] + edges[1:])).tolist(),
                                 "steps": count.tolist(), "error": mean.tolist()}
        return out

    @staticmethod
    def plot(result: dict[str, Any], path: str | Any, title: str = "") -> None:
        """One panel per axis: mean tracking error against the commanded value (PNG)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        axes = result["axes"]
        fig = Figure(figsize=(4.0 * len(axes), 3.4), constrained_layout=True)
        FigureCanvasAgg(fig)
        for ax, (axis, r) in zip(np.atleast_1d(fig.subplots(1, len(axes))), axes.items()):
            ax.plot(r["command"], r["error"], "o-")
            ax.set_xlabel(f"commanded {axis}")
            ax.set_ylabel(f"|{axis} error| (mean per bin)")
            ax.set_title(f"{axis}: mean {r['mean_error']:.3f}")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{title} tracking error, {result['steps']} steps".strip())
        fig.savefig(str(path), dpi=110)


def run_episodes(policy: Callable[[Any], Any], task: Any, episodes: int, dr: Any = "none",
                 seed: int = 0, max_envs: int = 256,
                 wrap: Callable[[Any], Any] | None = None,
                 sweep: CommandSweep | None = None, backend: str = "cpu",
                 device: Any = "cpu") -> dict[str, np.ndarray]:
    """Runs ``episodes`` episodes of ``policy`` (observation tensor -> action tensor) in
    ``task``, one per world per round; returns per-episode returns, lengths, success flags,
    ``terminated`` flags (ended by the task, e.g. a fall, not by the time limit) and per-step
    metric means. ``wrap`` wraps each env (residual checkpoints run in their
    :class:`~simrl.robust.residual.ResidualEnv`); ``sweep`` collects every step's commands and
    tracking errors; ``backend``/``device``: the physics (:func:`envs.make`)."""
    import torch

    out: dict[str, list] = {"returns": [], "lengths": [], "success": [], "terminated": []}
    metrics: dict[str, list] = {}
    done_rounds = 0
    while len(out["returns"]) < episodes:
        n = min(max_envs, episodes - len(out["returns"]))
        env = envs.make(task, n, device, dr=dr, seed=seed + done_rounds, autoreset=False,
                        backend=backend)
        if wrap is not None:
            env = wrap(env)
        obs = env.reset()
        base = unwrap(env)
        finished = np.zeros(n, dtype=bool)
        with torch.inference_mode():
            while not finished.all():
                command = to_numpy(base.task_state["command"]).copy() if sweep is not None else None
                obs, _, _, _, info = env.step(policy(obs))
                if sweep is not None:
                    sweep.add(command, info["metrics"], ~finished)
                batch = info.get("episodes")
                if batch is None:
                    continue
                new = ~finished[batch.env_ids]
                ids = batch.env_ids[new]
                out["returns"] += batch.returns[new].tolist()
                out["lengths"] += batch.lengths[new].tolist()
                out["success"] += batch.success[new].tolist()
                out["terminated"] += batch.terminated[new].tolist()
                for key, means in batch.metrics.items():
                    metrics.setdefault(key, []).extend(means[new].tolist())
                finished[ids] = True
        env.close()
        done_rounds += 1
    result = {k: np.asarray(v) for k, v in out.items()}
    result.update({k: np.asarray(v) for k, v in metrics.items()})
    return result


def record_videos(policy: Callable[[Any], Any], task: Any, out_dir: Any, episodes: int = 3,
                  seconds: float = 5.0, dr: Any = "none", seed: int = 0,
                  wrap: Callable[[Any], Any] | None = None, config: VideoConfig | None = None,
                  prefix: str = "episode") -> list[dict[str, Any]]:
    """Records ``episodes`` episodes of ``policy`` in ``task`` to ``out_dir/PREFIX-I.mp4``, each
    up to ``seconds`` of simulated time (the episode's end stops it sooner): the visual model,
    with the command, the running return, success (once the episode ends) and the step/time
    drawn on the frames. Returns per video: path, frames, fps, steps, return, success."""
    import torch
    from pathlib import Path

    config = config or VideoConfig()
    config.validate()
    if episodes < 1 or not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"video: need episodes >= 1 and seconds > 0, got {episodes} and {seconds}")
    dt = task.cfg.control_dt
    stride = config.stride(dt)
    fps = 1.0 / (stride * dt)
    max_steps = max(1, int(round(seconds / dt)))
    out: list[dict[str, Any]] = []
    with FrameRenderer(visual_model(task), task.root_body, config) as renderer:
        for e in range(episodes):
            env = BatchedEnv(task, 1, dr=dr, seed=seed + e, autoreset=False, physics="serial")
            if wrap is not None:
                env = wrap(env)
            base = unwrap(env)
            path = Path(out_dir) / f"{prefix}-{e}.mp4"
            success: bool | None = None
            steps = 0

            def draw(k: int) -> None:
                rs = base.robot_state
                lines = [f"{task.name}  episode {e}",
                         f"step {k}  t {k * dt:.2f} s"]
                if rs.command.shape[1]:
                    lines.append(f"command {fmt(rs.command[0])}")
                lines.append(f"return {float(base.ep_return[0]):.2f}")
                lines.append("success " + ("-" if success is None else ("yes" if success else "no")))
                marker = getattr(task, "goal_marker", None)  # a task's goal drawn in the scene
                markers = () if marker is None else marker(rs)[:1]
                writer.write(draw_overlay(renderer.frame(base.state[0, base._qpos], markers), lines))

            with Mp4Writer(path, fps, config.width, config.height) as writer, torch.inference_mode():
                obs = env.reset()
                draw(0)
                while steps < max_steps:
                    obs, _, _, _, info = env.step(policy(obs))
                    steps += 1
                    batch = info.get("episodes")
                    if batch is not None:
                        success = bool(batch.success[0])
                    if batch is not None or steps % stride == 0:
                        draw(steps)
                    if batch is not None:
                        break
            out.append({"path": str(path), "frames": writer.frames, "fps": fps, "steps": steps,
                        "return": float(base.ep_return[0]), "success": success})
            env.close()
    return out


def summarize(episodes: dict[str, np.ndarray]) -> dict[str, Any]:
    success, terminated = episodes["success"], episodes["terminated"]
    return {"episodes": int(len(episodes["returns"])),
            "return": t_interval(episodes["returns"]),
            "success_rate": wilson_interval(int(success.sum()), len(success)),
            "terminated_rate": wilson_interval(int(terminated.sum()), len(terminated)),
            "length": t_interval(episodes["lengths"]),
            "metrics": {k: t_interval(v) for k, v in episodes.items()
                        if k not in ("returns", "lengths", "success", "terminated")}}


def format_summary(result: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any], pct: bool = False) -> str:
        f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.4g}")
        lo, hi = s["ci95"]
        return f"  {name:16s} {f(s['mean']):>10s}   95% CI [{f(lo)}, {f(hi)}]"

    lines = [f"{result['checkpoint']}: task {result['task']}, {result['episodes']} episodes, "
             f"dr {result['dr']}",
             row("return", result["return"]),
             row("success rate", result["success_rate"], pct=True),
             row("episode length", result["length"])]
    lines += [row(k, v) for k, v in result["metrics"].items()]
    return "\n".join(lines)
