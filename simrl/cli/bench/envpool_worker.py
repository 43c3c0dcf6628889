"""Steps/s of one EnvPool task with random actions; run by the Python of a venv with envpool.

Imports nothing from simrl (EnvPool needs older MuJoCo assets than simrl, so it lives in its own
venv). Prints one JSON line: ``{"steps_per_s", "env_id", "num_envs", "threads", "steps",
"envpool_version", "mujoco_version"}``. Set-up (one line)::

    python -m venv /work/venvs/envpool && /work/venvs/envpool/bin/pip install envpool==1.2.5 'envpool-assets-mujoco-large<0.4'
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env-id", required=True)
    p.add_argument("--num-envs", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import envpool
    import numpy as np

    env = envpool.make(args.env_id, env_type="gymnasium", num_envs=args.num_envs,
                       batch_size=args.num_envs, num_threads=args.threads, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    shape = (args.steps, args.num_envs) + env.action_space.shape
    actions = rng.uniform(-1, 1, shape).astype(env.action_space.dtype)
    env.reset()
    env.step(actions[0])  # first-call overheads
    t = time.perf_counter()
    for a in actions:
        env.step(a)
    rate = args.num_envs * args.steps / (time.perf_counter() - t)
    try:
        import mujoco
        mujoco_version = mujoco.__version__
    except ImportError:
        mujoco_version = None  # EnvPool links its own MuJoCo
    print(json.dumps({"steps_per_s": rate, "env_id": args.env_id, "num_envs": args.num_envs,
                      "threads": args.threads, "steps": args.steps,
                      "envpool_version": envpool.__version__, "mujoco_version": mujoco_version}))


if __name__ == "__main__":
    main()
