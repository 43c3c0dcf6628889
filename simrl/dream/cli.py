"""``simrl dream``: learn a simulator from data, train in its dreams, measure dream-to-real.

  simrl dream collect --task hopper --policy random --steps 50000 --out data.npz
  simrl dream fit --data data.npz [logs/ run.mcap ...] --out model.pt
  simrl dream train --model model.pt --out runs/dream --mode episode --steps 500000
  simrl dream eval --checkpoint runs/dream/final --task hopper

``fit`` reads transitions collected here (``.npz``) and real logs (``.mcap`` files or
directories). ``train`` is PPO (``simrl train``'s trainer and options) in the dream env;
``--mode`` picks how dropout is used in the dream: ``episode`` (one mask per world per
episode, Dropout's Dream Land), ``step`` (a new mask each step), ``none`` (no dropout) or
``mean`` (average of ``--num-masks`` masks). ``eval`` runs the checkpoint in the real MuJoCo task.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from policies.networks import NetworkConfig
    from simrl.config import add_arguments
    from simrl.dream.dynamics import MODES
    from simrl.dream.env import TERMINATIONS, DreamConfig
    from simrl.dream.fit import FitConfig
    from simrl.dream.model import WorldModelConfig
    from simrl.ppo import PPOConfig

    parser = sub.add_parser("dream", help="dropout world models: fit, train in dreams, dream-to-real",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = parser.add_subparsers(dest="dream_command", metavar="STEP")
    cmds.required = True

    p = cmds.add_parser("collect", help="collect transitions in the MuJoCo task")
    p.add_argument("--task", required=True)
    p.add_argument("--policy", default="random", help="random, stand or a checkpoint (default: random)")
    p.add_argument("--steps", type=int, default=50_000, help="transitions (default: 50,000)")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--action-noise", type=float, default=0.0, help="Gaussian action noise std")
    p.add_argument("--dr", default="none", help="none or uniform (default: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=run_collect)

    p = cmds.add_parser("fit", help="fit a dropout world model to transitions or real logs")
    p.add_argument("--data", nargs="+", required=True, help=".npz transitions, .mcap logs or log directories")
    p.add_argument("--task", default=None, help="task of the logs (default: the logs' own)")
    p.add_argument("--out", required=True, help="output world model file (.pt)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    add_arguments(p, WorldModelConfig, "model")
    add_arguments(p, FitConfig, "fit")
    p.set_defaults(func=run_fit)

    p = cmds.add_parser("train", help="PPO in the dream of a world model")
    p.add_argument("--model", required=True, help="world model file from `simrl dream fit`")
    p.add_argument("--out", dest="train.out", metavar="DIR", required=True, help="run directory")
    add_arguments(p, DreamConfig, "dream", "dream", flat=True, helps={
        "mode": f"how dropout dreams: {', '.join(MODES)} (default: episode)",
        "num_masks": "masks averaged in mode mean (default: 8)",
        "termination": f"{', '.join(TERMINATIONS)} (default: auto: the task's rule if the "
                       "observation determines it, else the model's head)",
        "max_episode_steps": "dream episode length limit, 0 = the task's (default: 0)"})
    for name, kind, text in (("steps", int, "total dream steps"), ("num_envs", int, "dream worlds"),
                             ("seed", int, "random seed"), ("device", str, "auto, cpu or cuda"),
                             ("threads", int, "torch CPU threads"),
                             ("checkpoint_every", int, "steps between checkpoints"),
                             ("progress", str, "live progress bar: true or false")):
        p.add_argument("--" + name.replace("_", "-"), dest=f"train.{name}", type=kind, metavar="V",
                       default=argparse.SUPPRESS, help=text)
    add_arguments(p, NetworkConfig, "network")
    add_arguments(p, PPOConfig, "ppo")
    p.set_defaults(func=run_train)

    p = cmds.add_parser("eval", help="run a dream-trained checkpoint in the real MuJoCo task")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", default=None, help="the real task (default: the checkpoint's)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    p.set_defaults(func=run_eval)


def run_collect(args: argparse.Namespace) -> int:
    from simrl.dream.data import collect

    data = collect(args.task, args.steps, args.policy, args.num_envs, args.seed, args.dr,
                   args.action_noise)
    data.save(args.out)
    ep_return = float(data.reward.sum() / max(1, len(data.starts)))
    print(f"{len(data):,} transitions of {data.task} ({len(data.starts)} episodes, "
          f"{ep_return:.1f} reward per episode) -> {args.out}")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from simrl.config import overrides_from_args
    from simrl.core.config import apply_overrides
    from simrl.dream.data import load_data
    from simrl.dream.fit import FitConfig, fit
    from simrl.dream.model import WorldModelConfig

    data = load_data(args.data, args.task)
    model_cfg = apply_overrides(WorldModelConfig(), overrides_from_args(args, "model"), "model")
    fit_cfg = apply_overrides(FitConfig(), overrides_from_args(args, "fit"), "fit")
    model = fit(data, model_cfg, fit_cfg, progress=args.progress)
    model.save(args.out, model.fit_stats)
    s = model.fit_stats
    before, after = sum(s["history"]["val_initial"]), s["best_val_loss"]
    print(f"fitted {data.task} world model on {s['train_rows']:,} transitions ({s['val_rows']:,} "
          f"held out) in {s['epochs']} epochs, {s['seconds']:.0f} s: validation loss "
          f"{before:.4f} -> {after:.4f}; saved {args.out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from simrl.config import overrides_from_args
    from simrl.core.config import apply_overrides
    from simrl.dream.env import DreamConfig
    from simrl.dream.train import train_in_dream

    dream = apply_overrides(DreamConfig(), overrides_from_args(args, "dream"), "dream")
    overrides = {k: v for k, v in vars(args).items() if k.split(".")[0] in ("train", "network", "ppo")}
    out = Path(overrides["train.out"])
    if (out / "config.json").exists():
        raise ValueError(f"run directory {out} already holds a run; use another --out")
    device = overrides.pop("train.device", "auto")
    trainer = train_in_dream(args.model, out, dream, overrides, device)
    print(f"{trainer.summary_line(f'dream steps ({dream.mode} masks)', 'dream return')}; "
          f"final checkpoint: {out / 'final'}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from simrl.core.config import to_jsonable
    from simrl.dream.evaluate import real_return
    from simrl.evaluate import format_summary

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
