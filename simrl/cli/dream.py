"""``simrl dream``: learn a simulator from data, train in its dreams, measure dream-to-real.

  simrl dream collect --task hopper --policy random --steps 50000 --out data.npz
  simrl dream fit --data data.npz [logs/ run.mcap ...] --out model.pt
  simrl dream train --model model.pt --out runs/dream --mode episode --steps 500000
  simrl dream eval --checkpoint runs/dream/final --task hopper

fit reads transitions collected here (.npz) and real logs (.mcap files or directories). train is
PPO (simrl train's trainer and options) in the dream env; --mode picks how dropout is used in the
dream: episode (one mask per world per episode, Dropout's Dream Land), step (a new mask each
step), none (no dropout) or mean (average of --num-masks masks). eval runs the checkpoint in the
real MuJoCo task.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Callable

import tyro

from policies.networks import NetworkConfig
from simrl.cli import command, config_fields, parse
from simrl.cli.train import option_value
from simrl.core.config import to_jsonable, validate
from simrl.dream.data import collect, load_data
from simrl.dream.env import DreamConfig
from simrl.dream.evaluate import real_return
from simrl.dream.fit import FitConfig, fit
from simrl.dream.model import WorldModel, WorldModelConfig
from simrl.dream.train import train_in_dream
from simrl.evaluate import format_summary
from simrl.ppo import PPOConfig
from simrl.train import TrainConfig
from simrl.algos import default_config


@dataclass
class CollectArgs:
    """Transitions of a behaviour policy in the MuJoCo task."""

    task: str                            # task name
    out: str                             # output .npz
    policy: str = "random"               # random | stand | checkpoint directory
    steps: int = 50_000                  # transitions
    num_envs: int = 16                   # parallel worlds
    action_noise: float = 0.0            # Gaussian action noise std
    dr: str = "none"                     # none | uniform
    seed: int = 0                        # random seed


@dataclass
class FitArgs:
    """A dropout world model fitted to transitions or real logs."""

    data: tuple[str, ...]                # .npz transitions, .mcap logs or log directories
    out: str                             # output world model file (.pt)
    task: str | None = None              # task of the logs (default: the logs' own)
    progress: bool = False               # show a progress bar
    model: WorldModelConfig = field(default_factory=WorldModelConfig)  # world model architecture
    fit: FitConfig = field(default_factory=FitConfig)  # training of the world model


@dataclass
class DreamRunOptions:
    """The training run in the dream."""

    steps: int = TrainConfig.steps       # total dream steps
    num_envs: int = TrainConfig.num_envs  # dream worlds
    seed: int = 0                        # random seed
    device: str = "auto"                 # auto | cpu | cuda[:i]
    threads: int = 0                     # torch CPU threads; 0 = half the cores
    checkpoint_every: int = TrainConfig.checkpoint_every  # dream steps between checkpoints
    progress: bool = True                # live progress bar


@dataclass
class DreamTrainArgs:
    """PPO in the dream of a world model."""

    model: str                           # world model file from simrl dream fit
    out: str                             # run directory
    dream: Annotated[DreamConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=DreamConfig)
    run: Annotated[DreamRunOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=DreamRunOptions)
    network: NetworkConfig = field(default_factory=NetworkConfig)  # actor and critic
    ppo: PPOConfig = field(default_factory=PPOConfig)              # PPO hyperparameters


@dataclass
class DreamEvalArgs:
    """A dream-trained checkpoint in the real MuJoCo task."""

    checkpoint: str                      # checkpoint directory
    task: str | None = None              # the real task (default: the checkpoint's)
    episodes: int = 20                   # episodes
    seed: int = 0                        # random seed
    json: str | None = None              # also write the result to this JSON file


def run_collect(argv: list[str]) -> int:
    args = parse(CollectArgs, argv, "simrl dream collect", "Collects transitions in the MuJoCo task.")
    data = collect(args.task, args.steps, args.policy, args.num_envs, args.seed, args.dr,
                   args.action_noise)
    data.save(args.out)
    ep_return = float(data.reward.sum() / max(1, len(data.starts)))
    print(f"{len(data):,} transitions of {data.task} ({len(data.starts)} episodes, "
          f"{ep_return:.1f} reward per episode) -> {args.out}")
    return 0


def run_fit(argv: list[str]) -> int:
    args = parse(FitArgs, argv, "simrl dream fit", "Fits a dropout world model to transitions or real logs.")
    data = load_data(list(args.data), args.task)
    model = fit(data, validate(args.model, "model"), validate(args.fit, "fit"), progress=args.progress)
    model.save(args.out, model.fit_stats)
    s = model.fit_stats
    before, after = sum(s["history"]["val_initial"]), s["best_val_loss"]
    print(f"fitted {data.task} world model on {s['train_rows']:,} transitions ({s['val_rows']:,} "
          f"held out) in {s['epochs']} epochs, {s['seconds']:.0f} s: validation loss "
          f"{before:.4f} -> {after:.4f}; saved {args.out}")
    return 0


def run_train(argv: list[str]) -> int:
    # Defaults are those of `simrl train` for the world model's task.
    path = option_value(argv, "--model")
    task = WorldModel.load(path).task if path and Path(path).is_file() else TrainConfig.task
    base = default_config(task, "ppo")
    runs = DreamRunOptions(**{k: getattr(base.train, k) for k in asdict(DreamRunOptions())})
    default = DreamTrainArgs(model=tyro.MISSING, out=tyro.MISSING, run=runs,
                             network=base.network, ppo=base.ppo)
    args = parse(DreamTrainArgs, argv, "simrl dream train", "PPO in the dream of a world model.",
                 default=default, flags=False)
    out = Path(args.out)
    if (out / "config.json").exists():
        raise ValueError(f"run directory {out} already holds a run; use another --out")
    overrides = {"train.out": str(out), **config_fields(args.run, "train."),
                 **config_fields(args.network, "network."), **config_fields(args.ppo, "ppo.")}
    device = overrides.pop("train.device")
    dream = validate(args.dream, "dream")
    trainer = train_in_dream(args.model, out, dream, overrides, device)
    print(f"{trainer.summary_line(f'dream steps ({dream.mode} masks)', 'dream return')}; "
          f"final checkpoint: {out / 'final'}")
    return 0


def run_eval(argv: list[str]) -> int:
    args = parse(DreamEvalArgs, argv, "simrl dream eval",
                 "Runs a dream-trained checkpoint in the real MuJoCo task.")
    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    result = real_return(args.checkpoint, args.task, args.episodes, args.seed)
    print(format_summary(result))
    if result["dream"]:
        print(f"  trained in a dream: {json.dumps(result['dream'])}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(to_jsonable(result), indent=2, allow_nan=False))
    return 0


STEPS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "collect": (run_collect, "collect transitions in the MuJoCo task"),
    "fit": (run_fit, "fit a dropout world model to transitions or real logs"),
    "train": (run_train, "PPO in the dream of a world model"),
    "eval": (run_eval, "run a dream-trained checkpoint in the real MuJoCo task"),
}


@command("dream", help="dropout world models: fit, train in dreams, dream-to-real")
def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ + "\nsteps:\n" + "\n".join(f"  {k:8s} {h}" for k, (_, h) in STEPS.items()))
        if not argv:
            raise ValueError(f"give a step: {', '.join(STEPS)}")
        return 0
    if argv[0] not in STEPS:
        raise ValueError(f"unknown step {argv[0]!r}; use one of: {', '.join(STEPS)}")
    return STEPS[argv[0]][0](argv[1:])
