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

from envs.batched import BatchedEnv


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


def run_episodes(policy: Callable[[Any], Any], task: Any, episodes: int, dr: Any = "none",
                 seed: int = 0, max_envs: int = 256,
                 wrap: Callable[[Any], Any] | None = None) -> dict[str, np.ndarray]:
    """Runs ``episodes`` episodes of ``policy`` (observation tensor -> action tensor) in
    ``task``, one per world per round; returns per-episode returns, lengths, success flags and
    per-step metric means. ``wrap`` wraps each env (residual checkpoints run in their
    :class:`~simrl.robust.residual.ResidualEnv`)."""
    import torch


    out: dict[str, list] = {"returns": [], "lengths": [], "success": []}
    metrics: dict[str, list] = {}
    done_rounds = 0
    while len(out["returns"]) < episodes:
        n = min(max_envs, episodes - len(out["returns"]))
        env = BatchedEnv(task, n, dr=dr, seed=seed + done_rounds, autoreset=False)
        if wrap is not None:
            env = wrap(env)
        obs = env.reset()
        finished = np.zeros(n, dtype=bool)
        with torch.inference_mode():
            while not finished.all():
                obs, _, _, _, info = env.step(policy(obs))
                batch = info.get("episodes")
                if batch is None:
                    continue
                new = ~finished[batch.env_ids]
                ids = batch.env_ids[new]
                out["returns"] += batch.returns[new].tolist()
                out["lengths"] += batch.lengths[new].tolist()
                out["success"] += batch.success[new].tolist()
                for key, sums in env.metric_sums.items():
                    metrics.setdefault(key, []).extend((sums[ids] / batch.lengths[new]).tolist())
                finished[ids] = True
        env.close()
        done_rounds += 1
    result = {k: np.asarray(v) for k, v in out.items()}
    result.update({k: np.asarray(v) for k, v in metrics.items()})
    return result


def summarize(episodes: dict[str, np.ndarray]) -> dict[str, Any]:
    success = episodes["success"]
    return {"episodes": int(len(episodes["returns"])),
            "return": t_interval(episodes["returns"]),
            "success_rate": wilson_interval(int(success.sum()), len(success)),
            "length": t_interval(episodes["lengths"]),
            "metrics": {k: t_interval(v) for k, v in episodes.items()
                        if k not in ("returns", "lengths", "success")}}


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
