"""Env steps per second of whole training (collection + updates) against the PPO
implementations users pick, with matched resources, all measured in the same run:

* simrl PPO on the batched env with ``--threads N`` physics and torch threads, and with 1;
* rsl_rl PPO (``rsl-rl-lib``) on the same batched env through
  :class:`simrl.integrations.rsl_rl.RslRlVecEnv`, N threads;
* Stable-Baselines3 PPO with ``VecNormalize`` over N worker processes
  (:class:`~simrl.cli.bench.baselines.ProcessVecEnv`) with N torch threads, and over
  ``DummyVecEnv`` with 1 torch thread, on Gymnasium's native env where one exists (``Hopper-v5``,
  the same model and reward), else simrl's single-world Gymnasium env,

with the same task, env count, rollout length, epochs, minibatches, network, learning rate,
clipping and device (``--device``, for all three). Each is measured ``--rounds`` times,
interleaved, after a warm-up iteration; the best round is kept. Then simrl PPO and rsl_rl PPO
each train ``--curve-iterations`` iterations from scratch and the mean return of the episodes
finished in each iteration gives a learning curve (return vs env steps), written as a PNG next
to the JSON. simrl divides rewards by the running return std (as SB3's ``VecNormalize``);
rsl_rl has no reward normalization. One-line re-run on an idle machine:
``simrl bench train --task hopper --json docs/results/bench_train_hopper.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import os
import time



@dataclass
class Config:
    """Options of ``simrl bench train``."""

    task: str = "hopper"                      # task name
    num_envs: int = 64                        # parallel envs for every contender
    num_steps: int = 32                       # rollout length per env
    hidden: tuple[int, ...] = (64, 64)        # actor and critic hidden sizes
    iterations: int = 8                       # PPO iterations per speed measurement
    rounds: int = 2                           # interleaved rounds; best kept
    threads: int | None = None                # physics threads, torch threads, SB3 worker processes; default: all cores
    device: str = "cpu"                       # training device of all three PPOs
    curve_iterations: int = 100               # iterations of the simrl / rsl_rl learning curves (0: none)
    json: str | None = None                   # also write the results to this JSON file (and the curve PNG beside it)
    backend: str = "cpu"                      # cpu | warp (simrl PPO on the MuJoCo Warp env vs the env alone; no baselines)


def _curve(episodes: list[tuple[int, float]], per_iteration: int) -> list[list[float]]:
    """Mean return of the episodes finished in each iteration: ``[[env steps, return], ...]``."""
    bins: dict[int, list[float]] = {}
    for steps, ret in episodes:
        bins.setdefault((steps - 1) // per_iteration, []).append(ret)
    return [[(i + 1) * per_iteration, sum(v) / len(v)] for i, v in sorted(bins.items())]


def measure(c: Config) -> dict:
    import torch
    from rsl_rl.runners import OnPolicyRunner
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.vec_env import VecNormalize

    import envs
    from policies.networks import ActorCritic, NetworkConfig
    from simrl.cli.bench import baselines
    from simrl.core.machine import finish, machine_info
    from simrl.integrations.rsl_rl import RslRlVecEnv, train_cfg
    from simrl.ppo import PPO, PPOConfig
    from simrl.train import resolve_device

    threads = c.threads or len(os.sched_getaffinity(0))
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    info = machine_info(threads)
    dev = resolve_device(c.device)
    hidden = tuple(c.hidden)
    net = NetworkConfig(actor_hidden=hidden, critic_hidden=hidden)
    cfg = PPOConfig(num_steps=c.num_steps)
    per_iteration = c.num_envs * c.num_steps
    rsl_cfg = train_cfg(hidden=hidden, num_steps=c.num_steps, num_epochs=cfg.num_epochs,
                        num_minibatches=cfg.num_minibatches, learning_rate=cfg.learning_rate,
                        gamma=cfg.gamma, lam=cfg.lam, clip_param=cfg.clip_param,
                        entropy_coef=cfg.entropy_coef, value_loss_coef=cfg.value_loss_coef,
                        max_grad_norm=cfg.max_grad_norm, desired_kl=cfg.desired_kl)

    def simrl_run(nthread: int):
        torch.manual_seed(0)
        env = envs.make(c.task, c.num_envs, dev, seed=0, nthread=nthread)
        ppo = PPO(ActorCritic(env.observation_size, env.action_size, net), cfg, c.num_envs, dev)
        return env, ppo, {"obs": env.reset()}

    def rsl_run():
        torch.manual_seed(0)
        env = RslRlVecEnv(envs.make(c.task, c.num_envs, dev, seed=0, nthread=threads))
        return env, OnPolicyRunner(env, json.loads(json.dumps(rsl_cfg)), log_dir=None, device=str(dev))

    def sb3_run(workers: int):
        venv = VecNormalize(baselines.make_sb3_vec(c.task, c.num_envs, workers, seed=0))
        model = SB3PPO("MlpPolicy", venv, n_steps=c.num_steps, batch_size=per_iteration // cfg.num_minibatches,
                       n_epochs=cfg.num_epochs, learning_rate=cfg.learning_rate, gamma=cfg.gamma,
                       gae_lambda=cfg.lam, clip_range=cfg.clip_param, clip_range_vf=cfg.clip_param,
                       ent_coef=cfg.entropy_coef, max_grad_norm=cfg.max_grad_norm, seed=0,
                       device=dev, verbose=0,
                       policy_kwargs={"net_arch": {"pi": list(hidden), "vf": list(hidden)},
                                      "activation_fn": torch.nn.Tanh})
        return venv, model

    simrl_n, simrl_1 = simrl_run(threads), simrl_run(1)
    rsl_env, rsl = rsl_run()
    sb3_n, sb3_1 = sb3_run(min(threads, c.num_envs)), sb3_run(1)

    def timed(fn, torch_threads: int) -> float:
        torch.set_num_threads(torch_threads)
        t = time.perf_counter()
        fn()
        return c.iterations * per_iteration / (time.perf_counter() - t)

    def simrl_iters(run, n):
        env, ppo, state = run
        for _ in range(n):
            state["obs"], _ = ppo.learn(env, state["obs"])

    contenders = {
        "simrl_ppo": (lambda n: simrl_iters(simrl_n, n), threads),
        "rsl_rl_ppo": (lambda n: rsl.learn(n), threads),
        "sb3_ppo_processes": (lambda n: sb3_n[1].learn(n * per_iteration, reset_num_timesteps=False), threads),
        "simrl_ppo_1thread": (lambda n: simrl_iters(simrl_1, n), 1),
        "sb3_ppo_dummy": (lambda n: sb3_1[1].learn(n * per_iteration, reset_num_timesteps=False), 1),
    }
    for fn, t in contenders.values():  # warm-up: allocations, first-call overheads
        torch.set_num_threads(t)
        fn(1)
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(c.rounds):
        for name, (fn, t) in contenders.items():
            best[name] = max(best[name], timed(lambda fn=fn: fn(c.iterations), t))
    for e in (simrl_n[0], simrl_1[0], rsl_env, sb3_n[0], sb3_1[0]):
        e.close()

    curves: dict[str, list] = {}
    if c.curve_iterations > 0:
        torch.set_num_threads(threads)
        env, ppo, state = simrl_run(threads)
        episodes: list[tuple[int, float]] = []
        steps = 0
        for _ in range(c.curve_iterations):
            def on_step(step_info):
                nonlocal steps
                steps += c.num_envs
                if "episodes" in step_info:
                    episodes.extend((steps, float(r)) for r in step_info["episodes"].returns)
            state["obs"], _ = ppo.learn(env, state["obs"], on_step)
        env.close()
        curves["simrl_ppo"] = _curve(episodes, per_iteration)
        rsl_env, rsl = rsl_run()
        rsl.learn(c.curve_iterations)
        rsl_env.close()
        curves["rsl_rl_ppo"] = _curve(rsl_env.episodes, per_iteration)

    base = baselines.baseline_name(c.task)
    rows = {
        "simrl_ppo": {"steps_per_s": best["simrl_ppo"], "threads": threads, "what": "simrl PPO, batched env"},
        "rsl_rl_ppo": {"steps_per_s": best["rsl_rl_ppo"], "threads": threads,
                       "what": "rsl_rl PPO (OnPolicyRunner), same batched env"},
        "sb3_ppo_processes": {"steps_per_s": best["sb3_ppo_processes"], "threads": threads,
                              "workers": min(threads, c.num_envs),
                              "what": (f"SB3 PPO + VecNormalize, {min(threads, c.num_envs)} worker processes over {base}"
                                       if min(threads, c.num_envs) > 1
                                       else f"SB3 PPO + VecNormalize, DummyVecEnv over {base}")},
        "simrl_ppo_1thread": {"steps_per_s": best["simrl_ppo_1thread"], "threads": 1,
                              "what": "simrl PPO, batched env"},
        "sb3_ppo_dummy": {"steps_per_s": best["sb3_ppo_dummy"], "threads": 1,
                          "what": f"SB3 PPO + VecNormalize, DummyVecEnv over {base}"},
    }
    ratios = {"simrl_vs_rsl_rl": best["simrl_ppo"] / best["rsl_rl_ppo"],
              "simrl_vs_sb3_processes": best["simrl_ppo"] / best["sb3_ppo_processes"],
              "simrl_1thread_vs_sb3_dummy": best["simrl_ppo_1thread"] / best["sb3_ppo_dummy"]}
    return {"task": c.task, "num_envs": c.num_envs, "num_steps": c.num_steps, "hidden": list(hidden),
            "epochs": cfg.num_epochs, "minibatches": cfg.num_minibatches, "device": str(dev),
            "iterations": c.iterations, "rounds": c.rounds, "unit": "env steps/s", "rows": rows,
            "ratios": ratios, "curves": curves, "curve_iterations": c.curve_iterations,
            "config": asdict(c), "machine": finish(info)}


def plot_curves(result: dict, path: str) -> None:
    """Return vs env steps of simrl PPO and rsl_rl PPO."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, label in (("simrl_ppo", "simrl PPO"), ("rsl_rl_ppo", "rsl_rl PPO")):
        pts = result["curves"].get(name) or []
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean episode return")
    ax.set_title(f"{result['task']}: {result['num_envs']} envs, MLP {result['hidden']}, "
                 f"{result['machine']['threads']} thread(s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: Config) -> int:
    if args.backend != "cpu":
        from simrl.cli.bench.gpu import run_train
        return run_train(args.task, args.num_envs, args.num_steps, tuple(args.hidden), args.iterations,
                         args.rounds, args.device, args.json)
    r = measure(args)
    m, x = r["machine"], r["ratios"]
    print(f"task {r['task']}, {r['num_envs']} envs x {r['num_steps']} steps per iteration, "
          f"{r['epochs']} epochs x {r['minibatches']} minibatches, MLP {r['hidden']} tanh, on {r['device']}, "
          f"{m['cores']} cores ({m['cpu']}), load average {m['load_avg_start'][0]:.1f} -> {m['load_avg_end'][0]:.1f}")
    for name, row in r["rows"].items():
        print(f"  {name:18s} {row['steps_per_s']:>10,.0f} env steps/s  {row['threads']} thread(s)  {row['what']}")
    print(f"  simrl / rsl_rl                     {x['simrl_vs_rsl_rl']:6.2f}x")
    print(f"  simrl / SB3 (worker processes)     {x['simrl_vs_sb3_processes']:6.2f}x")
    print(f"  simrl / SB3 DummyVecEnv (1 thread) {x['simrl_1thread_vs_sb3_dummy']:6.2f}x")
    for name, pts in r["curves"].items():
        if pts:
            print(f"  {name} learning curve: return {pts[0][1]:.1f} -> {pts[-1][1]:.1f} over {pts[-1][0]:,} env steps")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
        if r["curves"]:
            plot_curves(r, os.path.splitext(args.json)[0] + ".png")
    return 0
