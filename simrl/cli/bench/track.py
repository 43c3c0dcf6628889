"""Steps and training time to a go1-velocity tracker (issue 14's benchmark).

Trains ``go1-velocity`` with its default settings and uniform randomization (``simrl train
--task go1-velocity --dr uniform --steps S --checkpoint-every C --out OUT``, the training
command itself; a run already in OUT is continued with ``--resume``, a finished one only
scored), or takes an existing run (``--run DIR``, no training: e.g. a privileged teacher of
``simrl distill teacher``), and scores EVERY complete checkpoint in step order (rows of an
earlier result JSON with the same scoring options are kept, so scoring a run again while it
trains costs only its new checkpoints) with ``simrl eval``'s episodes (:func:`simrl.evaluate.run_episodes`):
``--episodes`` episodes of the full length (1000 steps, 20 s) under the task's default
randomization (``--dr uniform``), commands drawn again during the episode as in training. Per
checkpoint: the mean linear-velocity error (|v_xy - command|, m/s) and yaw-rate error (rad/s),
each a per-episode mean averaged over episodes, and the fall fraction (episodes the task
terminated before the time limit). A checkpoint passes when lin-vel error < ``--lin-vel-error``,
yaw-rate error < ``--yaw-rate-error`` and fall fraction < ``--falls`` (issue 14: 0.2 m/s,
0.3 rad/s, 5%). The first passing checkpoint and the final one are also scored on
``--full-model`` (Menagerie's full Go1: mesh collisions, its own time step; ``simrl eval
--task.model go1-menagerie``); ``--full-every`` scores every checkpoint there.

Reported: steps and training wall time (the checkpoint's ``spec.json`` ``training.wall_time_s``,
the trainer's clock, carried over resumes) to the first passing checkpoint on each scene, or
"not reached"; a JSON (machine, the training command and whether its config is the task's
defaults, thresholds, a row per checkpoint and scene), a PNG (errors and fall % against env
steps, threshold lines) and a table.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TASK = "go1-velocity"
TRAIN_SCENE = "training scene"
# train options that may differ from the defaults without changing what is trained
NOT_SETTINGS = ("steps", "out", "checkpoint_every", "progress", "threads", "device", "seed")


@dataclass
class Config:
    """Options of ``simrl bench track``."""

    run: str | None = None           # score this existing run directory's checkpoints (no training)
    out: str = "runs/bench_track"    # the training run's directory (without --run); results go to OUT/track.json, .png
    steps: int = 20_000_000          # env steps of training
    checkpoint_every: int = 1_000_000  # env steps between checkpoints
    seed: int = 0                    # training seed
    train_args: str = ""             # more simrl train options: --train-args="--num-envs 64" (the config then is not the defaults)
    episodes: int = 64               # scoring episodes per checkpoint (one world each)
    episode_steps: int = 0           # control steps per scoring episode (0: the task's, 1000 = 20 s)
    eval_seed: int = 10_000          # seed of the scoring episodes (worlds, commands, randomization)
    dr: str = "uniform"              # randomization of the scoring episodes (uniform: the task's default ranges)
    lin_vel_error: float = 0.2       # m/s: mean linear-velocity error must be below this
    yaw_rate_error: float = 0.3      # rad/s: mean yaw-rate error must be below this
    falls: float = 0.05              # fall fraction (terminated before the time limit) must be below this
    full_model: str = "go1-menagerie"  # the robot's full model the first passing and final checkpoints are also scored on ("" skips)
    full_every: bool = False         # score every checkpoint on --full-model too
    json: str | None = None          # results JSON (default: OUT/track.json, or RUN/track.json)

    def validate(self) -> None:
        for name in ("steps", "checkpoint_every", "episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if self.episode_steps < 0:
            raise ValueError(f"--episode-steps: must be >= 0, got {self.episode_steps}")
        for name in ("lin_vel_error", "yaw_rate_error", "falls"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"--{name.replace('_', '-')}: must be a number > 0, got {getattr(self, name)}")


def train_argv(config: Config) -> list[str]:
    """The ``simrl train`` options of the benchmark's run."""
    return ["--task", TASK, "--dr", "uniform", "--steps", str(config.steps),
            "--checkpoint-every", str(config.checkpoint_every), "--seed", str(config.seed),
            "--out", config.out, "--progress", "false", *shlex.split(config.train_args)]


def train(config: Config) -> Path:
    """Trains the benchmark's run in ``config.out`` through ``simrl train`` (continued with
    ``--resume`` when OUT holds an unfinished run; a finished one is kept); returns OUT."""
    from simrl.cli.train import run as simrl_train
    from simrl.train import CONFIG_FILE

    out = Path(config.out)
    if (out / "final" / "spec.json").exists():
        print(f"{out} holds a finished run: scoring it")
    elif (out / CONFIG_FILE).exists():
        print(f"{out} holds an unfinished run: continuing it")
        simrl_train(["--resume", str(out), "--progress", "false"])
    else:
        simrl_train(train_argv(config))
    return out


def checkpoints(run: Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """The run's complete checkpoints as (env steps, directory) in step order (``final`` only
    when it is not also a ``step_*`` checkpoint), and notes on the incomplete ones skipped
    (a checkpoint being written by a running training)."""
    from simrl.train import check_complete

    found, skipped = {}, []
    for path in sorted((run / "checkpoints").glob("step_*")) + [run / "final"]:
        if not path.is_dir():
            continue
        try:
            steps = check_complete(path)
        except (ValueError, FileNotFoundError) as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        found.setdefault(steps, path)
    if not found:
        raise FileNotFoundError(f"{run}: no complete checkpoint (checkpoints/step_* or final)"
                                + (f"; skipped {'; '.join(skipped)}" if skipped else ""))
    return sorted(found.items()), skipped


def settings(run: Path) -> dict[str, Any]:
    """The run's training command and config, and how its config differs from the defaults of
    ``simrl train --task go1-velocity --dr uniform`` (dotted names; empty: default settings)."""
    from simrl.algos import default_config
    from simrl.train import CONFIG_FILE, config_to_dict

    file = run / CONFIG_FILE
    if not file.exists():
        raise FileNotFoundError(f"--run {run}: not a run directory (no {CONFIG_FILE})")
    stored = json.loads(file.read_text())
    t = stored["train"]
    if t["task"] != TASK:
        raise ValueError(f"{file}: train.task is {t['task']!r}; simrl bench track scores {TASK} runs")
    default = config_to_dict(default_config(t["task"], t["algo"], dr="uniform"))
    differs = [name for name in _dotted(stored) if name.split(".", 1)[0] != "train"
               or name.split(".", 1)[1] not in NOT_SETTINGS]
    differs = [n for n in differs if _get(stored, n) != _get(default, n)]
    teacher = is_teacher_run(run)
    trainer = (f"simrl distill teacher --task {t['task']}" if teacher
               else f"simrl train --task {t['task']} --algo {t['algo']}")
    command = (f"{trainer} --dr {t['dr']} --steps {t['steps']} "
               f"--checkpoint-every {t['checkpoint_every']} --seed {t['seed']} --out {t['out']}")
    return {"train_command": command, "train_config": stored, "privileged_teacher": teacher,
            "default_settings": not differs, "differs_from_defaults": differs}


def is_teacher_run(run: Path) -> bool:
    """Whether the run is a privileged teacher's (``simrl distill teacher``: its checkpoints'
    specs carry ``privileged``)."""
    from policies import load_spec

    spec = next(iter(sorted(run.glob("checkpoints/*/spec.json")) + sorted(run.glob("final/spec.json"))), None)
    return spec is not None and bool(load_spec(spec.parent).get("privileged"))


def _dotted(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += _dotted(v, f"{prefix}{k}.") if isinstance(v, dict) and v and k != "rewards" else [prefix + k]
    return out


def _get(d: dict, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def score(path: Path, steps: int, config: Config, model: str | None) -> dict[str, Any]:
    """One checkpoint's row: tracking errors, falls and whether it passes, on the training scene
    (``model`` None) or on ``model`` (``--task.model``)."""
    from simrl.cli.eval import EvalArgs, load_for_eval
    from simrl.evaluate import run_episodes, summarize, t_interval, wilson_interval
    from simrl.train import resolve_dr

    options: dict[str, Any] = {}
    if model:
        options["model"] = model
    if config.episode_steps:
        options["max_episode_steps"] = config.episode_steps
    policy, spec, task, wrap = load_for_eval(str(path), EvalArgs(checkpoint=(str(path),)), options)
    t0 = time.perf_counter()
    episodes = run_episodes(policy, task, config.episodes, dr=resolve_dr(config.dr), seed=config.eval_seed,
                            wrap=wrap)
    summary = summarize(episodes)
    lin, yaw = t_interval(episodes["lin_vel_error"]), t_interval(episodes["yaw_rate_error"])
    falls = wilson_interval(int(episodes["terminated"].sum()), len(episodes["terminated"]))
    row = {"checkpoint": str(path), "scene": model or TRAIN_SCENE, "model": task.cfg.model,
           "steps": steps, "train_wall_time_s": spec["training"].get("wall_time_s"),
           "episodes": summary["episodes"], "episode_steps": task.cfg.max_episode_steps,
           "lin_vel_error": lin, "yaw_rate_error": yaw,
           "vx_error": t_interval(episodes["vx_error"]), "vy_error": t_interval(episodes["vy_error"]),
           "fall_fraction": falls, "falls": int(episodes["terminated"].sum()),
           "return": summary["return"], "length": summary["length"],
           "score_s": round(time.perf_counter() - t0, 1)}
    row["passes"] = passes(row, config)
    return row


def earlier_rows(path: Path, config: Config) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows of an earlier ``track.json`` at ``path`` scored with the same options (episodes,
    episode length, seed, randomization), by (checkpoint, scene): scoring a run again while it
    trains scores only its new checkpoints. A checkpoint rewritten since (``final``) is scored
    again."""
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
        same = all(old["options"][k] == getattr(config, k) for k in ("episodes", "episode_steps", "eval_seed", "dr"))
        rows = old["checkpoints"] + old["full_model_checkpoints"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a simrl bench track result ({exc}); move it or pass --json") from None
    if not same:
        return {}
    return {(r["checkpoint"], r["scene"]): {**r, "passes": passes(r, config)} for r in rows
            if Path(r["checkpoint"]).is_dir() and r["train_wall_time_s"] == _wall_time(Path(r["checkpoint"]))}


def _wall_time(path: Path) -> float | None:
    from policies import load_spec
    return load_spec(path)["training"].get("wall_time_s")


def passes(row: dict[str, Any], config: Config) -> bool:
    """Issue 14's criterion on one row's means."""
    return bool(row["lin_vel_error"]["mean"] < config.lin_vel_error
                and row["yaw_rate_error"]["mean"] < config.yaw_rate_error
                and row["fall_fraction"]["mean"] < config.falls)


def first_passing(rows: list[dict[str, Any]]) -> dict[str, Any] | str:
    """Steps, training wall time and checkpoint of the first passing row, or "not reached"."""
    for r in rows:
        if r["passes"]:
            return {"steps": r["steps"], "train_wall_time_s": r["train_wall_time_s"], "checkpoint": r["checkpoint"]}
    return "not reached"


def run(config: Config) -> int:
    from simrl.core.machine import finish, machine_info
    from simrl.core.config import to_jsonable

    config.validate()
    info = machine_info(len(os.sched_getaffinity(0)))
    t0 = time.perf_counter()
    run_dir = Path(config.run) if config.run else train(config)
    train_s = None if config.run else round(time.perf_counter() - t0, 1)
    how = settings(run_dir)
    json_path = Path(config.json or run_dir / "track.json")
    scored = earlier_rows(json_path, config)
    found, skipped = checkpoints(run_dir)
    for note in skipped:
        print(f"skipped incomplete checkpoint {note}")

    def row(steps: int, path: Path, model: str | None) -> dict[str, Any]:
        r = scored.get((str(path), model or TRAIN_SCENE)) or score(path, steps, config, model)
        print(_line(r), flush=True)
        return r

    rows = [row(steps, path, None) for steps, path in found]
    full: list[dict[str, Any]] = []
    if config.full_model:
        first = next((i for i, r in enumerate(rows) if r["passes"]), None)
        chosen = range(len(found)) if config.full_every else sorted({len(found) - 1, *([first] if first is not None else [])})
        full = [row(found[i][0], found[i][1], config.full_model) for i in chosen]
    result = {
        "what": "issue 14's tracking benchmark: steps and training time of go1-velocity (simrl train "
                "--task go1-velocity --dr uniform) to a policy with mean lin-vel error, yaw-rate error "
                "and fall fraction under the thresholds, every checkpoint scored in step order",
        "machine": finish(info), "run": str(run_dir), "run_finished": (run_dir / "final").is_dir(),
        **how,
        "bench_train_wall_s": train_s,
        "thresholds": {"lin_vel_error_m_s": config.lin_vel_error, "yaw_rate_error_rad_s": config.yaw_rate_error,
                       "fall_fraction": config.falls},
        "scoring": {"episodes": config.episodes, "episode_steps": rows[0]["episode_steps"], "dr": config.dr,
                    "seed": config.eval_seed, "commands": "drawn again during the episode as in training",
                    "errors": "per-episode means of the per-step errors, averaged over episodes"},
        "skipped": skipped, "checkpoints": rows, "full_model_checkpoints": full,
        "first_passing": {TRAIN_SCENE: first_passing(rows),
                          **({config.full_model: first_passing(full)} if config.full_model else {})},
        "options": asdict(config),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(to_jsonable(result), indent=2, allow_nan=False))
    png = json_path.with_suffix(".png")
    plot(result, png)
    print(table(result))
    print(f"results: {json_path}, {png}")
    return 0


def _line(r: dict[str, Any]) -> str:
    wall = r["train_wall_time_s"]
    return (f"{r['scene']:15s} {r['steps']:>12,} {'' if wall is None else f'{wall:8.0f} s':>10s} "
            f"{r['lin_vel_error']['mean']:8.3f} {r['yaw_rate_error']['mean']:8.3f} "
            f"{100 * r['fall_fraction']['mean']:6.1f}%  {'PASS' if r['passes'] else 'fail'}")


def table(result: dict[str, Any]) -> str:
    """The rows and the first passing checkpoint per scene, as text."""
    th = result["thresholds"]
    head = (f"{'scene':15s} {'env steps':>12s} {'train time':>10s} {'lin err':>8s} {'yaw err':>8s} "
            f"{'falls':>7s}  (pass: < {th['lin_vel_error_m_s']} m/s, < {th['yaw_rate_error_rad_s']} rad/s, "
            f"< {100 * th['fall_fraction']:g}%)")
    lines = [head] + [_line(r) for r in result["checkpoints"] + result["full_model_checkpoints"]]
    for scene, first in result["first_passing"].items():
        text = first if isinstance(first, str) else (
            f"{first['steps']:,} env steps, {first['train_wall_time_s']:.0f} s of training ({first['checkpoint']})")
        lines.append(f"first passing checkpoint on the {scene}: {text}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Errors (left) and fall % (right) against env steps, training scene lines, full-model
    markers, threshold lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    err, fall = fig.subplots(1, 2)
    th = result["thresholds"]
    for rows, style, scene in ((result["checkpoints"], "o-", TRAIN_SCENE),
                               (result["full_model_checkpoints"], "s", "full model")):
        if not rows:
            continue
        x = np.array([r["steps"] for r in rows], dtype=float)
        err.plot(x, [r["lin_vel_error"]["mean"] for r in rows], style, color="C0", label=f"lin vel (m/s), {scene}")
        err.plot(x, [r["yaw_rate_error"]["mean"] for r in rows], style, color="C1", label=f"yaw rate (rad/s), {scene}")
        fall.plot(x, [100 * r["fall_fraction"]["mean"] for r in rows], style, color="C3", label=scene)
    err.axhline(th["lin_vel_error_m_s"], color="C0", ls="--", lw=1, label="lin vel threshold")
    err.axhline(th["yaw_rate_error_rad_s"], color="C1", ls="--", lw=1, label="yaw rate threshold")
    fall.axhline(100 * th["fall_fraction"], color="C3", ls="--", lw=1, label="threshold")
    err.set_ylabel("mean tracking error")
    fall.set_ylabel("falls (% of episodes)")
    for ax in (err, fall):
        ax.set_xlabel("env steps")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    first = result["first_passing"][TRAIN_SCENE]
    fig.suptitle(f"go1-velocity tracking vs training steps; first passing on the training scene: "
                 f"{first if isinstance(first, str) else format(first['steps'], ',') + ' steps'}")
    fig.savefig(str(path), dpi=110)
