"""``simrl distill``: teacher-student distillation with DAgger.

Two steps:

    simrl distill teacher --task hopper --steps 2000000 --out runs/hopper-teacher
    simrl distill --teacher runs/hopper-teacher/final --out runs/hopper-student

simrl distill teacher trains a privileged teacher with PPO: its observation is the task's plus
the true base velocity (where the task has one) and the world's DR parameters standardized to
[-1, 1]. It takes simrl train's options, --resume DIR included; --dr defaults to uniform.

simrl distill runs DAgger into a student that sees the last H task observations (what a robot
has), saves it as DIR/student (a standard checkpoint: simrl eval runs it) and prints the
returns of the teacher and the student under the same randomization and seeds, also written to
DIR/distill.json. TensorBoard scalars go to DIR/tb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from policies import load_spec
from simrl.cli import command, parse
from simrl.cli.train import open_run, start
from simrl.core.config import validate
from simrl.evaluate import format_summary
from simrl.distill import DISTILL_FILE, DistillConfig, distill, train_teacher


@dataclass
class DistillArgs:
    """The teacher, the output and the DAgger options."""

    teacher: str | None = None           # privileged teacher checkpoint (from simrl distill teacher)
    out: str | None = None               # output directory (default: runs/distill-TASK-sSEED)
    progress: bool = True                # print one line per DAgger iteration
    distill: Annotated[DistillConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=DistillConfig)


@command("distill", help="distill a privileged teacher into a history student (DAgger)")
def run(argv: list[str]) -> int:
    if argv[:1] == ["teacher"]:
        return run_teacher(argv[1:])
    args = parse(DistillArgs, argv, "simrl distill", __doc__, flags=False)
    if not args.teacher:
        raise ValueError("give --teacher CKPT (train one with `simrl distill teacher`)")
    cfg = validate(args.distill, "distill")
    task = load_spec(args.teacher)["task"]
    out = Path(args.out or f"runs/distill-{task}-s{cfg.seed}")

    def progress(k: int, stats: dict[str, float]) -> None:
        ret = f", return {stats['mean_return']:.1f}" if "mean_return" in stats else ""
        print(f"iteration {k + 1}/{cfg.iterations}: beta {stats['beta']:.3f}, student-teacher "
              f"action MAE {stats['action_mae']:.4f}, loss {stats['loss']:.5f}{ret}", flush=True)

    result = distill(args.teacher, out, cfg, progress if args.progress else None)
    print(f"distilled {task}: {cfg.iterations} DAgger iterations, {result.steps:,} env steps, "
          f"{result.wall_time_s:.0f} s; student-teacher action MAE on the student's own states "
          f"{result.action_mae:.4f}")
    for name, summary in (("teacher", result.teacher_eval), ("student", result.student_eval)):
        print(format_summary({"checkpoint": name, "task": task, "dr": cfg.dr, **summary}))
    print(f"student: {result.student}; report: {out / DISTILL_FILE}")
    return 0


def run_teacher(argv: list[str]) -> int:
    """``simrl distill teacher``: a privileged PPO teacher (simrl train's options, ``--resume``)."""
    cfg, run_dir, checkpoint, lock = open_run(argv, "simrl distill teacher", "{task}-teacher-s{seed}",
                                              dr="uniform")
    with lock:
        trainer = train_teacher(cfg, run_dir)
        start(trainer, run_dir, checkpoint)
        final = trainer.train()
    print(f"teacher {trainer.summary_line()}; checkpoint: {final}")
    return 0
