"""Env steps per second of whole training (collection + updates), simrl PPO against
Stable-Baselines3 PPO measured in the same run:

* simrl PPO on the batched env (``mujoco.rollout`` worlds, torch rollout storage), and
* SB3 PPO on ``DummyVecEnv`` over the single-env Gymnasium adapter with ``VecNormalize``
  (simrl normalizes observations and rewards too),

with the same task, env count, rollout length, epochs, minibatches, network and torch threads.
Each is measured ``--rounds`` times, interleaved, after a warm-up iteration; the best round is
kept, which damps noise from other processes.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
import time

from simrl.cli.bench.machine import cpu_name as _cpu_name


@dataclass
class Config:
    """Options of ``simrl bench train``."""

    task: str = "hopper"                      # task name
    num_envs: int = 64                        # parallel envs for both
    num_steps: int = 32                       # rollout length per env
    hidden: tuple[int, ...] = (64, 64)        # actor and critic hidden sizes
    iterations: int = 8                       # PPO iterations per measurement
    rounds: int = 2                           # interleaved rounds; best kept
    threads: int = 1                          # torch threads for both
    device: str = "auto"                      # simrl PPO device (SB3 runs on cpu)
    json: str | None = None                   # also write the results to this JSON file
    backend: str = "cpu"                      # cpu | warp (simrl PPO on the MuJoCo Warp env vs the env alone; no SB3)


def measure(task: str, num_envs: int, num_steps: int, hidden: tuple[int, ...], iterations: int,
            rounds: int, threads: int, device: str = "auto") -> dict:
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    import envs
    from envs.gym import SimrlEnv
    from policies.networks import ActorCritic, NetworkConfig
    from simrl.ppo import PPO, PPOConfig
    from simrl.train import resolve_device

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    net = NetworkConfig(actor_hidden=hidden, critic_hidden=hidden)
    cfg = PPOConfig(num_steps=num_steps)
    per_iteration = num_envs * num_steps

    torch.manual_seed(0)
    env = envs.make(task, num_envs, dev, seed=0)
    ppo = PPO(ActorCritic(env.observation_size, env.action_size, net), cfg, num_envs, dev)
    state = {"obs": env.reset()}

    def simrl_ppo() -> float:
        t = time.perf_counter()
        for _ in range(iterations):
            state["obs"], _ = ppo.learn(env, state["obs"])
        return iterations * per_iteration / (time.perf_counter() - t)

    venv = VecNormalize(make_vec_env(SimrlEnv, n_envs=num_envs, seed=0, env_kwargs={"task": task}))
    model = SB3PPO("MlpPolicy", venv, n_steps=num_steps, batch_size=per_iteration // cfg.num_minibatches,
                   n_epochs=cfg.num_epochs, learning_rate=cfg.learning_rate, gamma=cfg.gamma,
                   gae_lambda=cfg.lam, clip_range=cfg.clip_param, clip_range_vf=cfg.clip_param,
                   ent_coef=cfg.entropy_coef, max_grad_norm=cfg.max_grad_norm, seed=0,
                   device="cpu", verbose=0,
                   policy_kwargs={"net_arch": {"pi": list(hidden), "vf": list(hidden)},
                                  "activation_fn": torch.nn.Tanh})

    def sb3_ppo() -> float:
        t = time.perf_counter()
        model.learn(iterations * per_iteration, reset_num_timesteps=False)
        return iterations * per_iteration / (time.perf_counter() - t)

    ppo.learn(env, state["obs"])  # warm-up: allocations, first-call overheads
    model.learn(per_iteration, reset_num_timesteps=False)
    best = {"simrl_ppo": 0.0, "sb3_ppo": 0.0}
    for _ in range(rounds):
        best["simrl_ppo"] = max(best["simrl_ppo"], simrl_ppo())
        best["sb3_ppo"] = max(best["sb3_ppo"], sb3_ppo())
    env.close()
    venv.close()
    return {"task": task, "num_envs": num_envs, "num_steps": num_steps, "hidden": list(hidden),
            "epochs": cfg.num_epochs, "minibatches": cfg.num_minibatches, "torch_threads": threads,
            "device": str(dev), "cores": len(os.sched_getaffinity(0)), "cpu": _cpu_name(),
            "steps_per_s": best, "ratio": best["simrl_ppo"] / best["sb3_ppo"]}


def run(args: Config) -> int:
    if args.backend != "cpu":
        from simrl.cli.bench.gpu import run_train
        return run_train(args.task, args.num_envs, args.num_steps, tuple(args.hidden), args.iterations,
                         args.rounds, args.device, args.json)
    r = measure(args.task, args.num_envs, args.num_steps, tuple(args.hidden), args.iterations,
                args.rounds, args.threads, args.device)
    s = r["steps_per_s"]
    print(f"task {r['task']}, {r['num_envs']} envs x {r['num_steps']} steps per iteration, "
          f"{r['epochs']} epochs x {r['minibatches']} minibatches, MLP {r['hidden']} tanh, "
          f"{r['torch_threads']} torch thread(s), {r['cores']} cores ({r['cpu']}), simrl on {r['device']}")
    print(f"  simrl PPO (batched env)          {s['simrl_ppo']:>10,.0f} env steps/s")
    print(f"  SB3 PPO (DummyVecEnv + gym env)  {s['sb3_ppo']:>10,.0f} env steps/s")
    print(f"  simrl / SB3                      {r['ratio']:10.1f}x   (target >= 3x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0
