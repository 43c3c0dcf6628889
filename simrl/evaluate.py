"""``simrl eval``: mean return and success rate of a checkpoint, with 95% confidence intervals
(Student t for means, Wilson score for the success rate), as text and JSON.

Each world runs exactly one episode per round (no bias towards short episodes), under the
task config the checkpoint was trained with unless ``--task.FIELD`` options change it; per-step
task metrics (e.g. go1-velocity's ``lin_vel_error``) are averaged per episode and reported too.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np


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

    from envs.batched import BatchedEnv

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


def add_parser(sub: argparse._SubParsersAction) -> None:
    from envs.tasks import TASKS
    from simrl.config import add_arguments

    p = sub.add_parser("eval", help="evaluate a checkpoint with confidence intervals",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="checkpoint directory or SB3 .zip (several: each is evaluated; the push "
                        "test draws their curves in one plot)")
    p.add_argument("--task", default=None, help="task (default: the checkpoint's; required for .zip)")
    p.add_argument("--dr", default="none",
                   help="none, uniform, checkpoint (its DR at save time) or a JSON file (default: none)")
    p.add_argument("--episodes", type=int, default=100, help="episodes (default: 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="policy device (default: cpu)")
    p.add_argument("--vec-normalize", default=None, help="SB3 VecNormalize pickle for a .zip")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--grid", default=None, metavar="A,B",
                   help="success over a 2-D grid of two parameters, e.g. mass:torso,friction or "
                        "mass:torso=0.3:2,friction=0.2:2 (ranges default to the task's)")
    p.add_argument("--points", type=int, default=10, help="grid points per axis (default: 10)")
    p.add_argument("--grid-episodes", type=int, default=4, help="episodes per grid point (default: 4)")
    p.add_argument("--push-test", action="store_true",
                   help="success rate under pushes of growing magnitude from 8 directions")
    p.add_argument("--push-repeats", type=int, default=4,
                   help="pushes per direction and magnitude (default: 4; 8 directions)")
    p.add_argument("--out", default=None,
                   help="directory for the grid heatmap / push-test curve (PNG + JSON)")
    add_arguments(p, [t.config_class for t in TASKS.values()], "task", "task config options")
    p.set_defaults(func=run)


def load_for_eval(checkpoint: str, args: argparse.Namespace) -> tuple[Any, dict, Any, Any]:
    """(policy, spec, task, env wrapper or None) of one checkpoint."""
    import policies
    from envs.tasks import make_config, make_task
    from envs.tasks import config_from_spec
    from simrl.config import overrides_from_args
    from simrl.core.config import apply_overrides

    options = {"vec_normalize": args.vec_normalize} if args.vec_normalize else {}
    policy = policies.load(checkpoint, task=args.task, device=args.device, **options)
    spec = policy.spec
    base = (config_from_spec(spec) if Path(checkpoint).suffix != ".zip" else make_config(spec["task"]))
    cfg = apply_overrides(base, overrides_from_args(args, "task"), "task")
    task = make_task(spec["task"], config=cfg)
    wrap = None
    if spec.get("residual"):
        from simrl.robust.residual import ResidualEnv
        wrap = lambda env: ResidualEnv.from_spec(env, spec["residual"])  # noqa: E731
    elif spec.get("privileged") or spec.get("history"):
        from simrl.robust.distill import wrapper_from_spec
        wrap = wrapper_from_spec(spec)
    return policy, spec, task, wrap


def run(args: argparse.Namespace) -> int:
    from envs.distributions import distribution_from_dict
    from simrl.core.config import to_jsonable
    from simrl.train import resolve_dr

    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    if args.push_test:
        return run_push_test(args)
    results = []
    for checkpoint in args.checkpoint:
        policy, spec, task, wrap = load_for_eval(checkpoint, args)
        if args.grid:
            results.append(run_grid(checkpoint, policy, spec, task, wrap, args))
            continue
        if args.dr == "checkpoint":
            if spec.get("dr") is None:
                raise ValueError(f"{checkpoint} records no DR distribution")
            dr = distribution_from_dict(spec["dr"])
        else:
            dr = resolve_dr(args.dr)
        episodes = run_episodes(policy, task, args.episodes, dr=dr, seed=args.seed, wrap=wrap)
        result = {"checkpoint": str(checkpoint), "task": task.name, "dr": args.dr,
                  "seed": args.seed, "training_steps": spec.get("training", {}).get("steps"),
                  **summarize(episodes)}
        print(format_summary(result))
        results.append(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        data = results[0] if len(results) == 1 else results
        Path(args.json).write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False))
    return 0


def run_grid(checkpoint: str, policy: Any, spec: dict, task: Any, wrap: Any,
             args: argparse.Namespace) -> dict[str, Any]:
    """``--grid``: success heatmap over two parameters and the solved fraction."""
    from dataclasses import asdict

    from simrl.dr.grid import grid_eval, parse_grid, write_grid

    if wrap is not None:
        raise ValueError(f"{checkpoint}: --grid does not support checkpoints trained in an env wrapper "
                         "(residual, privileged teacher, history student)")
    grid = parse_grid(args.grid, dict(task.cfg.randomization))
    result = grid_eval(policy, task, grid, args.points, args.grid_episodes, seed=args.seed)
    out = Path(args.out or Path(checkpoint) / "grid")
    out.mkdir(parents=True, exist_ok=True)
    write_grid(result, out / "grid.json", out / "grid.png", title=Path(checkpoint).name)
    print(f"{checkpoint}: {result.params[0]} x {result.params[1]}, {args.points}x{args.points} points, "
          f"{args.grid_episodes} episodes each: solved fraction {result.solved_fraction:.0%} "
          f"(success >= {result.solved_threshold:.0%}); heatmap {out / 'grid.png'}")
    return {"checkpoint": str(checkpoint), **asdict(result)}


def run_push_test(args: argparse.Namespace) -> int:
    """``--push-test``: success rate against push magnitude, one curve per checkpoint."""
    from simrl.robust.push_test import PushTestConfig, format_results, push_test, write_results

    results = {}
    for checkpoint in args.checkpoint:
        policy, spec, task, wrap = load_for_eval(checkpoint, args)
        if wrap is not None:
            raise ValueError(f"{checkpoint}: --push-test does not support checkpoints trained in an env "
                             "wrapper (residual, privileged teacher, history student)")
        if task.root_body is None:
            raise ValueError(f"task {task.name} has no base to push")
        cfg = PushTestConfig(seed=args.seed, repeats=args.push_repeats)
        name = f"{Path(checkpoint).parent.name}/{Path(checkpoint).name}"
        results[name] = push_test(policy, task.name, cfg, **_config_fields(task.cfg))
    print(format_results(results))
    out = Path(args.out or "push_test")
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / "push_test.json", out / "push_test.png")
    print(f"curves: {out / 'push_test.png'}")
    return 0


def _config_fields(cfg: Any) -> dict[str, Any]:
    """A task config as keyword overrides (the push test rebuilds the task with its command)."""
    from dataclasses import fields
    skip = {"command_vx", "command_vy", "command_yaw_rate", "zero_command_prob", "max_episode_steps"}
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in skip}
