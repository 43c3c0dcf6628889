"""Every GPU check of the MuJoCo Warp backend in one call (issue 17), written to one JSON:

* bare ``mujoco_warp`` physics (``step`` x the task's substeps on nominal worlds, captured as a
  CUDA graph on CUDA): the physics limit, in physics and control steps/s;
* simrl's warp env (``envs.make(..., backend="warp")``: observations, rewards, terminations,
  randomization, auto-reset, episode statistics read back once per PPO rollout) under random
  actions, as a fraction of that limit;
* simrl PPO on the warp env (collection + update), env steps/s, as a fraction of the env alone;
* mjlab's Go1 flat velocity task on the same GPU when ``mjlab`` is importable.

Each at ``--sizes`` worlds (default 4,096 / 8,192 / 16,384). ``--smoke`` runs tiny sizes on
whatever device there is (CPU without a GPU), to check the script end to end; its figures are
not GPU figures. ``simrl bench envs --backend warp`` and ``simrl bench train --backend warp``
run the env and PPO parts alone.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


from simrl.core.machine import command, cpu_name, versions


@dataclass
class Config:
    """Options of ``simrl bench gpu``."""

    task: str = "go1-velocity"                # task name (an array-generic task)
    sizes: tuple[int, ...] = (4096, 8192, 16384)   # worlds per measurement
    steps: int = 100                          # control steps per env / physics measurement
    rounds: int = 2                           # rounds per measurement; best kept
    dr: str = "uniform"                       # randomization of the env: none or uniform
    device: str = "auto"                      # cuda when present, else cpu
    num_steps: int = 24                       # PPO rollout length per world
    iterations: int = 3                       # PPO iterations per training measurement
    hidden: tuple[int, ...] = (128, 128, 128)  # actor and critic hidden sizes
    mjlab: bool = True                        # also measure mjlab's Go1 velocity env if importable
    smoke: bool = False                       # tiny sizes and steps: checks the script (CPU is fine)
    json: str | None = None                   # output file; default docs/results/gpu_checks_{device}.json


def _sync(device: Any) -> None:
    import torch
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _best(fn: Callable[[], float], rounds: int) -> float:
    return max(fn() for _ in range(rounds))


def bare_physics(task: Any, num_envs: int, steps: int, rounds: int, device: Any) -> dict:
    """Physics steps/s of ``mujoco_warp.step`` alone on ``num_envs`` nominal worlds."""
    import mujoco

    from envs.warp_env import import_warp
    wp, mjw = import_warp()
    import torch
    dev = torch.device(device)
    wp_device = "cpu" if dev.type == "cpu" else f"cuda:{dev.index or 0}"
    m = task.model
    with wp.ScopedDevice(wp_device):
        wm = mjw.put_model(m)
        wm.opt.warn_overflow = 0
        data = mujoco.MjData(m)
        mujoco.mj_forward(m, data)
        wd = mjw.put_data(m, data, nworld=num_envs)
        mjw.step(wm, wd)                      # compile

        def substeps() -> None:
            for _ in range(task.substeps):
                mjw.step(wm, wd)
        launch = substeps
        if dev.type == "cuda":
            with wp.ScopedCapture() as capture:
                substeps()
            launch = lambda: wp.capture_launch(capture.graph)  # noqa: E731

        def once() -> float:
            wp.synchronize()
            t = time.perf_counter()
            for _ in range(steps):
                launch()
            wp.synchronize()
            return num_envs * steps / (time.perf_counter() - t)
        control = _best(once, rounds)
    return {"control_steps_per_s": control, "physics_steps_per_s": control * task.substeps}


def warp_env(task: Any, num_envs: int, steps: int, rounds: int, device: Any, dr: str,
             episode_interval: int = 24) -> dict:
    """Control steps/s of simrl's warp env under random actions (episodes read back every
    ``episode_interval`` steps, as PPO training with that rollout length would)."""
    import torch

    from envs.warp_env import WarpEnv
    env = WarpEnv(task, num_envs, device=device, dr=dr, seed=0, episode_interval=episode_interval)
    gen = torch.Generator(device).manual_seed(0)
    actions = torch.rand((steps, num_envs, env.action_size), generator=gen, device=device) * 2 - 1
    env.reset()
    env.step(actions[0])                      # graph capture, first-call costs

    def once() -> float:
        env.reset(seed=0)
        _sync(device)
        t = time.perf_counter()
        for a in actions:
            env.step(a)
        _sync(device)
        return num_envs * steps / (time.perf_counter() - t)
    sps = _best(once, rounds)
    env.close()
    return {"control_steps_per_s": sps}


def warp_train(task: Any, num_envs: int, num_steps: int, iterations: int, rounds: int,
               device: Any, dr: str, hidden: tuple[int, ...]) -> dict:
    """Env steps/s of simrl PPO (collection + update) on the warp env."""
    import torch

    from envs.warp_env import WarpEnv
    from policies.networks import ActorCritic, NetworkConfig
    from simrl.ppo import PPO, PPOConfig
    torch.manual_seed(0)
    env = WarpEnv(task, num_envs, device=device, dr=dr, seed=0, episode_interval=num_steps)
    net = NetworkConfig(actor_hidden=hidden, critic_hidden=hidden, activation="elu")
    ppo = PPO(ActorCritic(env.observation_size, env.action_size, net), PPOConfig(num_steps=num_steps),
              num_envs, torch.device(device))
    state = {"obs": env.reset()}
    state["obs"], _ = ppo.learn(env, state["obs"])   # warm-up

    def once() -> float:
        _sync(device)
        t = time.perf_counter()
        for _ in range(iterations):
            state["obs"], _ = ppo.learn(env, state["obs"])
        _sync(device)
        return iterations * num_envs * num_steps / (time.perf_counter() - t)
    sps = _best(once, rounds)
    env.close()
    return {"env_steps_per_s": sps, "num_steps": num_steps, "hidden": list(hidden)}


def mjlab_env(num_envs: int, steps: int, device: Any) -> dict:
    """Control steps/s of mjlab's Go1 flat velocity env, or why it was not measured."""
    try:
        import gymnasium
        import mjlab
        import mjlab.tasks  # noqa: F401  (registers the task ids)
        import torch
        from mjlab.envs import ManagerBasedRlEnv

        ids = [k for k in gymnasium.registry if "Velocity-Flat-Unitree-Go1" in k and "Play" not in k]
        if not ids:
            return {"measured": False, "why": "no Go1 flat velocity task registered by mjlab"}
        entry = gymnasium.registry[ids[0]].kwargs["env_cfg_entry_point"]
        if isinstance(entry, str):
            import importlib
            module, _, name = entry.partition(":")
            entry = getattr(importlib.import_module(module), name)
        cfg = entry() if callable(entry) else entry
        cfg.scene.num_envs = num_envs
        env = ManagerBasedRlEnv(cfg=cfg, device=str(device))
        action = torch.zeros((num_envs, env.action_manager.total_action_dim), device=device)
        env.reset()
        env.step(action)
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            env.step(action)
        _sync(device)
        sps = num_envs * steps / (time.perf_counter() - t)
        env.close()
        return {"measured": True, "task": ids[0], "version": getattr(mjlab, "__version__", "?"),
                "control_steps_per_s": sps, "actions": "zeros"}
    except Exception as exc:  # optional: record why, never fail the GPU run on it
        return {"measured": False, "why": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _versions() -> dict[str, str | None]:
    return {"python": platform.python_version(),
            **versions(("mujoco", "mujoco-warp", "warp-lang", "torch", "mjlab"))}


def _machine(device: Any) -> dict:
    import torch
    gpu = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None
    return {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "gpu": gpu,
            "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg())}


def run(args: Config) -> int:
    from envs.tasks import make_task
    from simrl.train import check_backend, resolve_device
    check_backend("warp", args.task)
    device = resolve_device(args.device)
    sizes, steps, iterations = args.sizes, args.steps, args.iterations
    if args.smoke:
        sizes, steps, iterations = (8, 16), 4, 1
    task = make_task(args.task)
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"num_envs": n}
        row["bare_physics"] = bare_physics(task, n, steps, args.rounds, device)
        row["env"] = warp_env(task, n, steps, args.rounds, device, args.dr, args.num_steps)
        row["train"] = warp_train(task, n, args.num_steps, iterations, args.rounds, device, args.dr,
                                  tuple(args.hidden))
        limit = row["bare_physics"]["control_steps_per_s"]
        row["env_fraction_of_physics_limit"] = row["env"]["control_steps_per_s"] / limit
        row["train_fraction_of_env"] = row["train"]["env_steps_per_s"] / row["env"]["control_steps_per_s"]
        if args.mjlab and task.name == "go1-velocity":
            row["mjlab"] = mjlab_env(n, steps, device)
        rows.append(row)
        print(f"{n:>6} worlds: physics {row['bare_physics']['physics_steps_per_s']:,.0f} steps/s "
              f"({limit:,.0f} control steps/s); env {row['env']['control_steps_per_s']:,.0f} "
              f"({100 * row['env_fraction_of_physics_limit']:.0f}% of the limit); PPO "
              f"{row['train']['env_steps_per_s']:,.0f} ({100 * row['train_fraction_of_env']:.0f}% of the env)"
              + (f"; mjlab {row['mjlab']['control_steps_per_s']:,.0f}"
                 if row.get("mjlab", {}).get("measured") else ""), flush=True)
    result = {"task": task.name, "substeps": task.substeps, "dr": args.dr, "device": str(device),
              "smoke": args.smoke, "steps": steps, "rounds": args.rounds,
              "machine": _machine(device), "versions": _versions(),
              "command": command(),
              "note": ("timings on a shared machine are noisy; see load_average" if device.type == "cpu"
                       else "one GPU, CUDA graphs for the substep loop"),
              "results": rows}
    out = Path(args.json or f"docs/results/gpu_checks_{device.type}{'_smoke' if args.smoke else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def run_envs(task_name: str, num_envs: int, steps: int, rounds: int, dr: str, json_path: str | None) -> int:
    """``simrl bench envs --backend warp``: the warp env against bare MuJoCo Warp physics."""
    from envs.tasks import make_task
    from simrl.train import check_backend, resolve_device
    check_backend("warp", task_name)
    device, task = resolve_device("auto"), make_task(task_name)
    limit = bare_physics(task, num_envs, steps, rounds, device)
    env = warp_env(task, num_envs, steps, rounds, device, dr)
    r = {"task": task.name, "num_envs": num_envs, "dr": dr, "substeps": task.substeps, "backend": "warp",
         "device": str(device), "bare_physics": limit, "env": env, "machine": _machine(device),
         "versions": _versions(), "command": command(),
         "fraction_of_physics_limit": env["control_steps_per_s"] / limit["control_steps_per_s"]}
    print(f"task {task.name}, {num_envs} worlds on {device} (MuJoCo Warp), dr={dr}, {task.substeps} "
          f"physics steps per control step")
    print(f"  warp env               {env['control_steps_per_s']:>10,.0f} control steps/s")
    print(f"  bare mujoco_warp       {limit['control_steps_per_s']:>10,.0f} control steps/s "
          f"({limit['physics_steps_per_s']:,.0f} physics steps/s)")
    print(f"  env / physics limit    {100 * r['fraction_of_physics_limit']:6.1f}%")
    if json_path:
        Path(json_path).write_text(json.dumps(r, indent=2))
    return 0


def run_train(task_name: str, num_envs: int, num_steps: int, hidden: tuple[int, ...], iterations: int,
              rounds: int, device_name: str, json_path: str | None) -> int:
    """``simrl bench train --backend warp``: simrl PPO on the warp env against the env alone."""
    from envs.tasks import make_task
    from simrl.train import check_backend, resolve_device
    check_backend("warp", task_name)
    device, task = resolve_device(device_name), make_task(task_name)
    env = warp_env(task, num_envs, num_steps * iterations, rounds, device, "none", num_steps)
    train = warp_train(task, num_envs, num_steps, iterations, rounds, device, "none", hidden)
    r = {"task": task.name, "num_envs": num_envs, "backend": "warp", "device": str(device), "env": env,
         "train": train, "machine": _machine(device), "versions": _versions(), "command": command(),
         "train_fraction_of_env": train["env_steps_per_s"] / env["control_steps_per_s"]}
    print(f"task {task.name}, {num_envs} worlds x {num_steps} steps per iteration on {device} (MuJoCo Warp)")
    print(f"  simrl PPO              {train['env_steps_per_s']:>10,.0f} env steps/s")
    print(f"  warp env alone         {env['control_steps_per_s']:>10,.0f} control steps/s")
    print(f"  PPO / env              {100 * r['train_fraction_of_env']:6.1f}%")
    if json_path:
        Path(json_path).write_text(json.dumps(r, indent=2))
    return 0
