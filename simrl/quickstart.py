"""``simrl quickstart``: the whole loop on a small scale, in minutes on a laptop.

Stage 1 (environments): the Go1 stands under randomized physics and random pushes, and a
random policy drives the hopper; the run prints what the randomization did and what it cost.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="run the whole simrl loop on a small scale",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/quickstart", help="output directory (default: runs/quickstart)")
    p.add_argument("--num-envs", type=int, default=64, help="worlds per env (default: 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _rollout(env, controller, steps: int) -> dict:
    """Runs ``controller`` on the robot-state record for ``steps`` control steps."""
    env.reset_numpy()
    returns, lengths, success, params = [], [], [], []
    t = time.perf_counter()
    for _ in range(steps):
        _, _, _, _, info = env.step_numpy(controller(env.robot_state))
        if "episodes" in info:
            ep = info["episodes"]
            returns += list(ep.returns)
            lengths += list(ep.lengths)
            success += list(ep.success)
            params.append(ep.params)
    elapsed = time.perf_counter() - t
    return {"episodes": len(returns), "mean_return": float(np.mean(returns)) if returns else float("nan"),
            "mean_length": float(np.mean(lengths)) if lengths else float("nan"),
            "success_rate": float(np.mean(success)) if success else float("nan"),
            "params": np.concatenate(params) if params else np.zeros((0, env.space.dim)),
            "steps_per_s": env.num_envs * steps / elapsed}


def stage_environments(args: argparse.Namespace) -> None:
    import envs
    from policies.base import RandomController, StandController

    print("== 1. Environments: randomized physics ==")
    dr = {"mass:trunk": (0.7, 1.5), "friction:floor": (0.3, 1.6), "kp": (0.7, 1.3),
          "latency": (0, 2), "push": (0, 120)}
    go1 = envs.make("go1-velocity", args.num_envs, dr=dr, seed=args.seed, max_episode_steps=250,
                    push_interval_steps=100)
    stand = _rollout(go1, StandController(go1.action_size), 500)
    p = stand["params"]
    print(f"go1-velocity, stand controller, {args.num_envs} worlds x 500 steps "
          f"({stand['steps_per_s']:,.0f} control steps/s)")
    for j, name in enumerate(go1.param_names):
        print(f"  {name:16s} sampled {p[:, j].min():7.2f} .. {p[:, j].max():7.2f}")
    print(f"  {stand['episodes']} episodes, mean length {stand['mean_length']:.0f} of 250 steps "
          f"(a standing robot tracks no velocity command: success {stand['success_rate']:.0%})")
    go1.close()

    hop = envs.make("hopper", args.num_envs, dr="uniform", seed=args.seed)
    rnd = _rollout(hop, RandomController(hop.action_size, args.seed), 400)
    print(f"hopper, random actions, uniform DR over {', '.join(hop.param_names)}: "
          f"{rnd['episodes']} episodes, mean return {rnd['mean_return']:.1f}, "
          f"mean length {rnd['mean_length']:.0f} ({rnd['steps_per_s']:,.0f} control steps/s)")
    hop.close()


def run(args: argparse.Namespace) -> int:
    t = time.perf_counter()
    stage_environments(args)
    print(f"quickstart finished in {time.perf_counter() - t:.0f} s")
    return 0
