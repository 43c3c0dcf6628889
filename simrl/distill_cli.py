"""``simrl distill``: teacher-student distillation with DAgger.

Two steps:

    simrl distill teacher --task hopper --steps 2000000 --out runs/hopper-teacher
    simrl distill --teacher runs/hopper-teacher/final --out runs/hopper-student

``simrl distill teacher`` trains a privileged teacher with PPO: its observation is the task's
plus the true base velocity (where the task has one) and the world's DR parameters standardized
to [-1, 1]. It takes ``simrl train``'s PPO options; the DR defaults to ``uniform``.

``simrl distill`` runs DAgger into a student that sees the last H task observations (what a
robot has), saves it as ``DIR/student`` (a standard checkpoint: ``simrl eval`` runs it) and
prints the returns of the teacher and the student under the same randomization and seeds, also
written to ``DIR/distill.json``. TensorBoard scalars go to ``DIR/tb``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simrl.robust.distill import DISTILL_FILE, DistillConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    from envs.tasks import TASKS
    from policies.networks import NetworkConfig
    from simrl.config import add_arguments
    from simrl.ppo import PPOConfig
    from simrl.train import TrainConfig

    p = sub.add_parser("distill", help="distill a privileged teacher into a history student (DAgger)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None, metavar="CKPT",
                   help="privileged teacher checkpoint (from `simrl distill teacher`)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: runs/distill-TASK-sSEED)")
    p.add_argument("--progress", default="true", choices=("true", "false"),
                   help="print one line per DAgger iteration (default: true)")
    add_arguments(p, DistillConfig, "distill", "DAgger options", flat=True, helps={
        "dr": "teacher (the DR in the teacher's checkpoint), none, uniform or a JSON file "
              "(default: teacher)"})
    p.set_defaults(func=run)

    sub_commands = p.add_subparsers(dest="distill_command", metavar="teacher")
    t = sub_commands.add_parser("teacher", help="train a privileged teacher with PPO",
                                description="Trains a PPO teacher whose observation includes the "
                                            "true base velocity and the standardized DR parameters.")
    add_arguments(t, TrainConfig, "train", "run", flat=True, helps={
        "dr": "none, uniform or a JSON file (default: uniform)",
        "out": "run directory (default: runs/TASK-teacher-sSEED)",
        "algo": "ppo only", "robust": "none only", "residual": "empty only"})
    add_arguments(t, NetworkConfig, "network")
    add_arguments(t, PPOConfig, "ppo")
    add_arguments(t, [t.config_class for t in TASKS.values()], "task", "task config options")
    t.set_defaults(func=run_teacher)


def run_teacher(args: argparse.Namespace) -> int:
    from simrl.robust.distill import train_teacher
    from simrl.train import CONFIG_FILE, resolve_config

    overrides = {k: v for k, v in vars(args).items() if k.split(".")[0] in ("train", "network", "ppo", "task")}
    overrides.setdefault("train.dr", "uniform")
    cfg = resolve_config(overrides)
    t = cfg.train
    run_dir = Path(t.out or f"runs/{t.task}-teacher-s{t.seed}")
    if (run_dir / CONFIG_FILE).exists():
        raise ValueError(f"run directory {run_dir} already holds a run; use another --out")
    t.out = str(run_dir)
    trainer = train_teacher(cfg, run_dir)
    final = trainer.train()
    print(f"teacher {trainer.summary_line()}; checkpoint: {final}")
    return 0


def run(args: argparse.Namespace) -> int:
    from policies import load_spec
    from simrl.core.config import apply_overrides
    from simrl.evaluate import format_summary
    from simrl.robust.distill import distill

    if not args.teacher:
        raise ValueError("give --teacher CKPT (train one with `simrl distill teacher`)")
    start = "distill."
    cfg = apply_overrides(DistillConfig(), {k[len(start):]: v for k, v in vars(args).items()
                                            if k.startswith(start)}, "distill")
    task = load_spec(args.teacher)["task"]
    out = Path(args.out or f"runs/distill-{task}-s{cfg.seed}")

    def progress(k: int, stats: dict[str, float]) -> None:
        ret = f", return {stats['mean_return']:.1f}" if "mean_return" in stats else ""
        print(f"iteration {k + 1}/{cfg.iterations}: beta {stats['beta']:.3f}, student-teacher "
              f"action MAE {stats['action_mae']:.4f}, loss {stats['loss']:.5f}{ret}", flush=True)

    result = distill(args.teacher, out, cfg, progress if args.progress == "true" else None)
    print(f"distilled {task}: {cfg.iterations} DAgger iterations, {result.steps:,} env steps, "
          f"{result.wall_time_s:.0f} s; student-teacher action MAE on the student's own states "
          f"{result.action_mae:.4f}")
    for name, summary in (("teacher", result.teacher_eval), ("student", result.student_eval)):
        print(format_summary({"checkpoint": name, "task": task, "dr": cfg.dr, **summary}))
    print(f"student: {result.student}; report: {out / DISTILL_FILE}")
    return 0
