"""``simrl eval``: mean return and success rate of a checkpoint, with 95% confidence intervals
(Student t for means, Wilson score for the success rate), as text and JSON; or the solved
fraction over a grid of two parameters (--grid), or push-recovery curves (--push-test).
--video DIR also records MP4s of a few episodes (MuJoCo offscreen rendering of the full-visual
model, headless through EGL unless MUJOCO_GL says otherwise) with the command, the running
return, success and the step/time drawn on the frames.

Each world runs exactly one episode per round, under the task config the checkpoint was trained
with unless --task.FIELD VALUE options change it (any field of the checkpoint's task config:
--task.max-episode-steps 500; see simrl train --task TASK --help); per-step task metrics
(e.g. go1-velocity's lin_vel_error) are averaged per episode and reported too. For tasks with
commands (go1-velocity) every evaluated step also enters a command sweep: the tracking error per
command axis (vx, vy, yaw rate) against the commanded value, as a plot and JSON (--out, default
CHECKPOINT/command_sweep).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import policies
from envs.distributions import distribution_from_dict
from envs.tasks import config_from_spec, make_config, make_task
from simrl.cli import command, parse
from simrl.core.config import apply_overrides, to_jsonable
from simrl.dr.grid import grid_eval, parse_grid, write_grid
from envs.render import VideoConfig
from simrl.evaluate import CommandSweep, format_summary, record_videos, run_episodes, summarize
from policies.wrappers import wrapper_from_spec
from simrl.robust.push_test import PushTestConfig, format_results, push_test, write_results
from simrl.robust.residual import ResidualEnv
from simrl.train import check_backend, resolve_dr


@dataclass
class EvalArgs:
    """What to evaluate and how."""

    checkpoint: tuple[str, ...]          # checkpoint directories or SB3 .zip files (several: each is evaluated; the push test draws their curves in one plot)
    task: str | None = None              # task (default: the checkpoint's; required for .zip)
    dr: str = "none"                     # none | uniform | checkpoint (its DR at save time) | JSON file
    episodes: int = 100                  # episodes per checkpoint
    seed: int = 0                        # random seed
    device: str = "cpu"                  # policy device (and the warp backend's)
    backend: str = "cpu"                 # physics of the episodes: cpu | warp (MuJoCo Warp on --device)
    vec_normalize: str | None = None     # SB3 VecNormalize pickle for a .zip (a pickle: needs --trust-pickle)
    trust_pickle: bool = False           # WARNING: runs any code in the file. Allow unpickling SB3 files (--vec-normalize, zips simrl cannot read from their JSON); only for files you made yourself
    json: str | None = None              # also write the results to this JSON file
    grid: str | None = None              # success over a 2-D grid of two parameters: mass:torso,friction or mass:torso=0.3:2,friction=0.2:2 (ranges default to the task's)
    points: int = 10                     # grid points per axis
    grid_episodes: int = 4               # episodes per grid point
    push_test: bool = False              # success rate under pushes of growing magnitude from 8 directions
    push_repeats: int = 4                # pushes per direction and magnitude (8 directions)
    out: str | None = None               # directory for the grid heatmap / push-test curves / command sweep (PNG + JSON; the sweep's default: CHECKPOINT/command_sweep)
    sweep_bins: int = 9                  # tasks with commands (go1-velocity): bins per command axis of the tracking-error sweep
    video: str | None = None             # also record MP4s of a few episodes into this directory
    video_episodes: int = 3              # episodes recorded per checkpoint (--video)
    video_seconds: float = 5.0           # simulated seconds per video at most (the episode's end stops it sooner)
    video_fps: float = 30.0              # frames per second wanted (a whole number of control steps per frame)
    video_width: int = 320               # pixels
    video_height: int = 240              # pixels

    def validate(self) -> None:
        check_backend(self.backend, self.task or "")


def split_task_options(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """(``argv`` without its ``--task.FIELD VALUE...`` options, those options as dotted task
    overrides: ``{"max_episode_steps": "30", "command_vx": ["0.5", "0.5"]}``)."""
    rest: list[str] = []
    options: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("--task."):
            rest.append(word)
            i += 1
            continue
        name, eq, value = word[len("--task."):].partition("=")
        values = [value] if eq else []
        i += 1
        while not eq and i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        if not values:
            raise ValueError(f"--task.{name} needs a value")
        options[name.replace("-", "_")] = values[0] if len(values) == 1 else values
    return rest, options


def load_for_eval(checkpoint: str, args: EvalArgs, task_options: dict[str, Any]
                  ) -> tuple[Any, dict, Any, Any]:
    """(policy, spec, task, env wrapper or None) of one checkpoint; ``task_options``: dotted
    task-config overrides (``--task.FIELD``)."""
    options: dict[str, Any] = {"vec_normalize": args.vec_normalize} if args.vec_normalize else {}
    if Path(checkpoint).suffix == ".zip":
        options["trust_pickle"] = args.trust_pickle
    policy = policies.load(checkpoint, task=args.task, device=args.device, **options)
    spec = policy.spec
    base = (config_from_spec(spec) if Path(checkpoint).suffix != ".zip" else make_config(spec["task"]))
    cfg = apply_overrides(base, task_options, "task")
    task = make_task(spec["task"], config=cfg)
    wrap = None
    if spec.get("residual"):
        wrap = lambda env: ResidualEnv.from_spec(env, spec["residual"])  # noqa: E731
    elif spec.get("privileged") or spec.get("history"):
        wrap = wrapper_from_spec(spec)
    return policy, spec, task, wrap


@command("eval", help="evaluate a checkpoint with confidence intervals")
def run(argv: list[str]) -> int:
    argv, task_options = split_task_options(argv)
    args = parse(EvalArgs, argv, "simrl eval", __doc__)
    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    if args.sweep_bins < 1:
        raise ValueError(f"--sweep-bins must be >= 1, got {args.sweep_bins}")
    video = VideoConfig(args.video_width, args.video_height, args.video_fps)
    if args.video:
        video.validate()
        if args.video_episodes < 1:
            raise ValueError(f"--video-episodes must be >= 1, got {args.video_episodes}")
    if args.push_test:
        return run_push_test(args, task_options)
    results = []
    for checkpoint in args.checkpoint:
        policy, spec, task, wrap = load_for_eval(checkpoint, args, task_options)
        if args.grid:
            results.append(run_grid(checkpoint, policy, spec, task, wrap, args))
            continue
        if args.dr == "checkpoint":
            if spec.get("dr") is None:
                raise ValueError(f"{checkpoint} records no DR distribution")
            dr = distribution_from_dict(spec["dr"])
        else:
            dr = resolve_dr(args.dr)
        axes = getattr(task, "command_axes", ())
        sweep = CommandSweep(axes) if axes else None
        episodes = run_episodes(policy, task, args.episodes, dr=dr, seed=args.seed, wrap=wrap, sweep=sweep,
                                backend=args.backend, device=args.device)
        result = {"checkpoint": str(checkpoint), "task": task.name, "dr": args.dr,
                  "seed": args.seed, "training_steps": spec.get("training", {}).get("steps"),
                  **summarize(episodes)}
        print(format_summary(result))
        if sweep is not None:
            result["command_sweep"] = write_command_sweep(sweep, checkpoint, args, len(results))
        if args.video:
            prefix = Path(checkpoint).stem if len(args.checkpoint) == 1 else f"{len(results)}-{Path(checkpoint).stem}"
            videos = record_videos(policy, task, args.video, args.video_episodes, args.video_seconds,
                                   dr=dr, seed=args.seed, wrap=wrap, config=video, prefix=prefix)
            for v in videos:
                print(f"  video {v['path']}: {v['frames']} frames at {v['fps']:.3g} fps, "
                      f"{v['steps']} steps, return {v['return']:.2f}")
            result["videos"] = videos
        results.append(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        data = results[0] if len(results) == 1 else results
        Path(args.json).write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False))
    return 0


def write_command_sweep(sweep: CommandSweep, checkpoint: str, args: EvalArgs, index: int) -> dict[str, Any]:
    """The tracking error per command axis, printed, and the command-sweep plot (error against
    the commanded value) with its JSON in ``--out`` (default CHECKPOINT/command_sweep)."""
    result = sweep.result(args.sweep_bins)
    name = Path(checkpoint).stem if len(args.checkpoint) == 1 else f"{index}-{Path(checkpoint).stem}"
    out = Path(args.out or Path(checkpoint) / "command_sweep")
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"command_sweep-{name}.png"
    CommandSweep.plot(result, png, title=name)
    result["plot"] = str(png)
    (out / f"command_sweep-{name}.json").write_text(json.dumps(to_jsonable(result), indent=2))
    errors = ", ".join(f"{a} {r['mean_error']:.3f}" for a, r in result["axes"].items())
    print(f"  tracking error per command axis over {result['steps']} steps: {errors}; sweep plot {png}")
    return result


def run_grid(checkpoint: str, policy: Any, spec: dict, task: Any, wrap: Any,
             args: EvalArgs) -> dict[str, Any]:
    """``--grid``: success heatmap over two parameters and the solved fraction."""
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


def run_push_test(args: EvalArgs, task_options: dict[str, Any]) -> int:
    """``--push-test``: success rate against push magnitude, one curve per checkpoint."""
    results = {}
    for checkpoint in args.checkpoint:
        policy, spec, task, wrap = load_for_eval(checkpoint, args, task_options)
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
    skip = {"command_vx", "command_vy", "command_yaw_rate", "zero_command_prob", "max_episode_steps"}
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in skip}
