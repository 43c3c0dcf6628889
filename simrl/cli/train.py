"""``simrl train``: train a policy with a registered algorithm (PPO on the batched env, SB3 PPO or
SAC on the Gymnasium env, or any algorithm registered with ``simrl.algos.register_algorithm``),
with a live progress bar, TensorBoard scalars, periodic self-describing checkpoints and resume.

Every config field is an option: ``--ppo.learning-rate 1e-3``, ``--network.actor-hidden 256
256``, ``--task.max-episode-steps 500``. Defaults depend on the task and the algorithm (the
task's ``train_defaults``, the algorithm's defaults): ``simrl train --task go1-velocity --algo
ppo --help`` shows that run's defaults. ``--resume DIR`` continues the run in DIR (or from the
checkpoint directory DIR); only --steps, --device, --checkpoint-every, --progress and
--threads may change then. ``--dr-alpha`` / ``--dr-kl`` are ``--doraemon.alpha`` /
``--doraemon.kl-bound``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

from envs.tasks import TASKS
from simrl.algos import ALGORITHMS
from simrl.cli import command, config_fields, parse
from simrl.core.config import apply_overrides
from simrl.train import CONFIG_FILE, RESUMABLE, RunLock, TrainConfig, find_resume_checkpoint
from simrl.algos import check_config, config_from_dict, default_config, make_trainer

ALIASES = {"--dr-alpha": "--doraemon.alpha", "--dr-kl": "--doraemon.kl-bound"}
# Train options that select the run's defaults (read before the full parse).
SELECTORS = ("task", "algo", "dr", "robust", "residual")


def option_value(argv: list[str], name: str) -> str | None:
    """The value of the last ``--name VALUE`` / ``--name=VALUE`` in ``argv``."""
    value = None
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith(name + "="):
            value = word[len(name) + 1:]
    return value


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``--name VALUE`` / ``--name=VALUE``."""
    out, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word == name:
            skip = True
        elif not word.startswith(name + "="):
            out.append(word)
    return out


def with_aliases(argv: list[str]) -> list[str]:
    """``argv`` with the ALIASES spelled out."""
    out = []
    for word in argv:
        name, eq, value = word.partition("=")
        out.append(ALIASES[name] + eq + value if name in ALIASES else word)
    return out


def options_class(run_config: type) -> type:
    """The dataclass ``tyro`` parses: ``run_config``'s sections, the ``train`` section's
    options without prefix (``--steps``, ``--task``)."""
    import tyro

    hints = typing.get_type_hints(run_config)
    fields = [(f.name, Annotated[hints[f.name], tyro.conf.OmitArgPrefixes] if f.name == "train"
               else hints[f.name], dataclasses.field(default_factory=f.default_factory))
              for f in dataclasses.fields(run_config)]
    cls = dataclasses.make_dataclass("TrainOptions", fields)
    cls.__doc__ = run_config.__doc__
    return cls


def parse_run_config(argv: list[str], default: Any, prog: str = "simrl train") -> Any:
    """``argv`` parsed into a run config whose defaults are the run config ``default``."""
    cls = options_class(type(default))
    values = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)}
    parsed = parse(cls, argv, prog, _description(), default=cls(**values), flags=False)
    return type(default)(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)})


def _description() -> str:
    algos = "\n".join(f"  {name:10s} {algo.help}" for name, algo in ALGORITHMS.items())
    return f"{__doc__}\n\ntasks: {', '.join(TASKS)}\n\nalgorithms:\n{algos}"


def resolve(argv: list[str], prog: str = "simrl train", **train: Any) -> Any:
    """A new run's config from the command line: the defaults of its task, algorithm and
    options (``train``: defaults of train fields, e.g. ``dr="uniform"``), then the options;
    defaults that follow other options (``run_defaults``) are recomputed from what was given."""
    chosen = {**train, **{k: v for k in SELECTORS if (v := option_value(argv, f"--{k}")) is not None}}
    task, algo = chosen.pop("task", TrainConfig.task), chosen.pop("algo", TrainConfig.algo)
    default = default_config(task, algo, **chosen)
    cfg = parse_run_config(argv, default, prog)
    run_defaults = ALGORITHMS.get(algo).run_defaults
    if run_defaults is not None:
        followed = apply_overrides(default, dict(run_defaults(cfg)), "defaults")
        if followed != default:
            cfg = parse_run_config(argv, followed, prog)
    return check_config(cfg)


def resume_config(run_dir: Path, argv: list[str]) -> Any:
    """The stored config of ``run_dir`` with the options in ``argv``, which may change only
    the RESUMABLE fields."""
    stored = config_from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    cfg = parse_run_config(argv, stored)
    before, after = config_fields(stored), config_fields(cfg)
    fixed = sorted(k for k, v in after.items() if v != before[k] and k not in RESUMABLE)
    if fixed:
        raise ValueError(f"--resume continues the run as configured; only {', '.join(RESUMABLE)} "
                         f"may change (got {', '.join(fixed)})")
    return check_config(cfg)


def open_run(argv: list[str], prog: str = "simrl train", run_name: str = "{task}-{algo}-s{seed}",
             **train: Any) -> tuple[Any, Path, Path | None, RunLock]:
    """(config, run directory, checkpoint to resume from or None, the held run lock) for a
    new run or, with ``--resume DIR`` in ``argv``, for continuing the run in DIR. ``run_name``
    names the default ``runs/`` directory; ``train`` are defaults of train fields."""
    argv = with_aliases(argv)
    resume = option_value(argv, "--resume")
    argv = without_option(argv, "--resume")
    if resume:
        run_dir, checkpoint, notice = find_resume_checkpoint(Path(resume))
        lock = RunLock(run_dir)
        if notice:
            print(notice, file=sys.stderr)
        try:
            cfg = resume_config(run_dir, argv)
        except BaseException:
            lock.release()
            raise
        cfg.train.out = str(run_dir)
        return cfg, run_dir, checkpoint, lock
    cfg = resolve(argv, prog, **train)
    t = cfg.train
    run_dir = Path(t.out or "runs/" + run_name.format(task=t.task, algo=t.algo, seed=t.seed))
    lock = RunLock(run_dir)  # before the check below: two runs cannot both pass it
    if (run_dir / CONFIG_FILE).exists():
        lock.release()
        raise ValueError(f"run directory {run_dir} already holds a run; use --resume {run_dir} "
                         "or another --out")
    cfg.train.out = str(run_dir)
    return cfg, run_dir, None, lock


def start(trainer: Any, run_dir: Path, checkpoint: Path | None) -> None:
    """Resumes ``trainer`` from ``checkpoint``, or starts a new run from ``--init`` when given."""
    if checkpoint is not None:
        trainer.resume(checkpoint)
        print(f"resuming {run_dir} from {checkpoint} at step {trainer.step:,}")
    elif trainer.cfg.train.init:
        trainer.init_from(trainer.cfg.train.init)
        print(f"{run_dir}: starting from the weights of {trainer.cfg.train.init}")


@command("train", help="train a policy (PPO, SB3 PPO or SAC, or a registered algorithm)")
def run(argv: list[str]) -> int:
    cfg, run_dir, checkpoint, lock = open_run(argv)
    with lock:
        trainer = make_trainer(cfg, run_dir)
        start(trainer, run_dir, checkpoint)
        final = trainer.train()
    print(f"{trainer.summary_line()}; final checkpoint: {final}")
    return 0
