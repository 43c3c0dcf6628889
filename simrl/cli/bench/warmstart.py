"""Does carrying the solver's warm start (``mjSTATE_WARMSTART``, ``qacc_warmstart``) between
control steps change speed or fidelity?

simrl's batched env steps every world with one ``mujoco.rollout`` call per control step, which
starts from the full physics state and a zero warm start. A persistent ``mj_step`` loop (one
MjData per world, as Gymnasium and EnvPool step) keeps the warm start across steps. For each
task, over the same models, initial states and open-loop controls (random actions), this
compares:

* trajectories: the rollout calls, a persistent ``mj_step`` loop (the reference), the same loop
  with the warm start cleared every control step (must equal the rollout calls exactly), and
  ``mujoco.batch.Batch`` (MuJoCo 4.0's batch, which keeps ``mjSTATE_INTEGRATION`` rows, so it
  carries the warm start; must equal the reference exactly);
* solver iterations per physics step with and without the carried warm start;
* steps/s of the rollout calls against ``Batch`` with the warm start carried and cleared.

One-line re-run: ``simrl bench warmstart --json docs/results/warmstart.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import os
import time

import numpy as np


@dataclass
class Config:
    """Options of ``simrl bench warmstart``."""

    tasks: tuple[str, ...] = ("hopper", "go1-velocity")  # tasks to measure
    num_envs: int = 64                        # worlds
    steps: int = 200                          # control steps per trajectory
    rounds: int = 3                           # timing rounds; best kept
    threads: int | None = None                # rollout / batch threads; default: all cores
    json: str | None = None                   # also write the results to this JSON file


def _setup(task: str, n: int, steps: int, threads: int):
    import envs
    env = envs.make(task, n, dr="none", seed=0, nthread=threads)
    env.reset_numpy(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n, env.action_size))
    ctrls = np.stack([env.task.action_to_ctrl(a, env.robot_state,
                                              {k: v.copy() for k, v in env.task_state.items()})
                      for a in actions])
    return env, env.state.copy(), ctrls


def serial(env, state0: np.ndarray, ctrls: np.ndarray, carry: bool) -> tuple[np.ndarray, float]:
    """Persistent ``mj_step`` per world; ``carry=False`` clears the warm start every control step.
    Returns qpos (n, T, nq) and mean solver iterations per physics step."""
    import mujoco
    full = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
    n, T, nq, sub = env.num_envs, len(ctrls), env.model.nq, env.task.substeps
    qpos, iters = np.zeros((n, T, nq)), 0
    for i, m in enumerate(env.models):
        d = mujoco.MjData(m)
        mujoco.mj_setState(m, d, state0[i], full)
        for t in range(T):
            if not carry:
                d.qacc_warmstart[:] = 0.0
            d.ctrl[:] = ctrls[t, i]
            for _ in range(sub):
                mujoco.mj_step(m, d)
                iters += int(d.solver_niter[0])
            qpos[i, t] = d.qpos
    return qpos, iters / (n * T * sub)


def one_step_error(env, state0: np.ndarray, ctrls: np.ndarray, tol: float = 1e-10,
                   iterations: int = 200) -> dict:
    """Local fidelity, free of the chaos that makes long trajectories part: from every state of
    the persistent-loop trajectory, one control step with the warm start carried and with it
    cleared, each against the same step solved to convergence (``iterations`` Newton/CG
    iterations, tolerance ``tol``). Returns the mean and max over steps of max |qvel - converged
    qvel| over the dofs, and the mean of max |qvel| (their scale)."""
    import copy
    import mujoco
    full = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
    sub = env.task.substeps
    errs: dict[str, list[float]] = {"carried": [], "cleared": []}
    scale: list[float] = []
    for i, m in enumerate(env.models):
        exact = copy.copy(m)
        exact.opt.iterations, exact.opt.tolerance = max(iterations, m.opt.iterations), tol
        d = mujoco.MjData(m)
        mujoco.mj_setState(m, d, state0[i], full)
        for t in range(len(ctrls)):
            d.ctrl[:] = ctrls[t, i]
            branches = {}
            for name, model, clear in (("carried", m, False), ("cleared", m, True), ("exact", exact, False)):
                b = copy.copy(d)
                if clear:
                    b.qacc_warmstart[:] = 0.0
                for _ in range(sub):
                    mujoco.mj_step(model, b)
                branches[name] = b.qvel.copy()
            scale.append(float(np.abs(branches["exact"]).max()))
            for name in errs:
                errs[name].append(float(np.abs(branches[name] - branches["exact"]).max()))
            for _ in range(sub):
                mujoco.mj_step(m, d)
    out: dict = {name: {"mean_abs_qvel_err": float(np.mean(v)), "max_abs_qvel_err": float(np.max(v))}
                 for name, v in errs.items()}
    out["mean_max_abs_qvel"] = float(np.mean(scale))  # the scale of the velocities themselves
    return out


def rollout_calls(env, state0: np.ndarray, ctrls: np.ndarray) -> tuple[np.ndarray, float]:
    """simrl's physics: one ``mujoco.rollout`` call per control step. qpos and seconds."""
    state, control = state0.copy(), env.control.copy()
    qpos = np.zeros((env.num_envs, len(ctrls), env.model.nq))
    t0 = time.perf_counter()
    for t, c in enumerate(ctrls):
        control[:, :env.model.nu] = c
        state = env.physics.step(state, control)[0].copy()
        qpos[:, t] = state[:, env._qpos]
    return qpos, time.perf_counter() - t0


def batch_calls(env, state0: np.ndarray, ctrls: np.ndarray, threads: int, carry: bool
                ) -> tuple[np.ndarray, float]:
    """``mujoco.batch.Batch`` on the same per-world models, one ``step`` call per control step
    (``carry=False`` zeroes the warm start before each). qpos and seconds."""
    from mujoco.batch import Batch
    b = Batch(env.model, env.num_envs, nthread=threads)
    b.set_models(env.models)
    qpos_b, qvel_b, ctrl_b, ws = b.bind("qpos"), b.bind("qvel"), b.bind("ctrl"), b.bind("qacc_warmstart")
    qpos_b[:] = state0[:, env._qpos]
    qvel_b[:] = state0[:, env._qvel]
    ws[:] = 0.0
    qpos = np.zeros((env.num_envs, len(ctrls), env.model.nq))
    t0 = time.perf_counter()
    for t, c in enumerate(ctrls):
        if not carry:
            ws[:] = 0.0
        ctrl_b[:] = c
        b.step(nstep=env.task.substeps)
        qpos[:, t] = qpos_b
    return qpos, time.perf_counter() - t0


def _diff(a: np.ndarray, ref: np.ndarray, tol: float = 1e-6) -> dict:
    """Largest |qpos - reference| at the end and over the trajectory, and the first control step
    where any world differs by more than ``tol``."""
    err = np.abs(a - ref).max(axis=(0, 2))  # (T,)
    over = np.flatnonzero(err > tol)
    return {"max_abs_qpos_diff": float(err.max()), "final_max_abs_qpos_diff": float(err[-1]),
            "median_world_final_diff": float(np.median(np.abs(a[:, -1] - ref[:, -1]).max(axis=1))),
            "first_step_over_1e-6": int(over[0]) + 1 if over.size else None}


def measure_task(task: str, n: int, steps: int, rounds: int, threads: int) -> dict:
    env, state0, ctrls = _setup(task, n, steps, threads)
    ref, iters_warm = serial(env, state0, ctrls, carry=True)
    local = one_step_error(env, state0, ctrls)
    # chaos scale: the reference itself from an initial state perturbed by 1e-9 in qvel
    nudged = state0.copy()
    nudged[:, env._qvel] += 1e-9
    chaos = _diff(serial(env, nudged, ctrls, carry=True)[0], ref)
    cold, iters_cold = serial(env, state0, ctrls, carry=False)
    roll, _ = rollout_calls(env, state0, ctrls)
    batch_warm, _ = batch_calls(env, state0, ctrls, threads, carry=True)
    batch_cold, _ = batch_calls(env, state0, ctrls, threads, carry=False)
    best = {"rollout_cold": np.inf, "batch_warm": np.inf, "batch_cold": np.inf}
    for _ in range(rounds):
        best["rollout_cold"] = min(best["rollout_cold"], rollout_calls(env, state0, ctrls)[1])
        best["batch_warm"] = min(best["batch_warm"], batch_calls(env, state0, ctrls, threads, True)[1])
        best["batch_cold"] = min(best["batch_cold"], batch_calls(env, state0, ctrls, threads, False)[1])
    env.close()
    return {
        "task": task, "num_envs": n, "control_steps": steps, "substeps": env.task.substeps,
        "solver": int(env.model.opt.solver), "integrator": int(env.model.opt.integrator),
        "solver_iterations_per_physics_step": {"warm_start_carried": iters_warm,
                                               "warm_start_cleared_each_control_step": iters_cold},
        "rollout_equals_cleared_loop": bool(np.array_equal(roll, cold)),
        "batch_warm_equals_persistent_mj_step": bool(np.array_equal(batch_warm, ref)),
        "batch_cold_equals_rollout": bool(np.array_equal(batch_cold, roll)),
        "rollout_vs_persistent_mj_step": _diff(roll, ref),
        "persistent_mj_step_nudged_1e-9_vs_itself": chaos,
        "one_control_step_error_vs_converged_solve": local,
        "model_solver_iterations": int(env.model.opt.iterations),
        "control_steps_per_s": {k: n * steps / v for k, v in best.items()},
    }


def run(args: Config) -> int:
    from simrl.core.machine import finish, machine_info
    threads = args.threads or len(os.sched_getaffinity(0))
    info = machine_info(threads)
    results = [measure_task(t, args.num_envs, args.steps, args.rounds, threads) for t in args.tasks]
    out = {"results": results, "config": asdict(args), "machine": finish(info)}
    for r in results:
        it, d, s = r["solver_iterations_per_physics_step"], r["rollout_vs_persistent_mj_step"], r["control_steps_per_s"]
        print(f"{r['task']}: {r['num_envs']} worlds x {r['control_steps']} control steps x {r['substeps']} substeps, "
              f"{threads} thread(s)")
        print(f"  solver iterations / physics step: {it['warm_start_carried']:.2f} carried, "
              f"{it['warm_start_cleared_each_control_step']:.2f} cleared each control step (rollout)")
        print(f"  rollout calls vs persistent mj_step: max |qpos diff| {d['max_abs_qpos_diff']:.2e} "
              f"(first > 1e-6 at control step {d['first_step_over_1e-6']}; median world at the end "
              f"{d['median_world_final_diff']:.2e})")
        c, loc = r["persistent_mj_step_nudged_1e-9_vs_itself"], r["one_control_step_error_vs_converged_solve"]
        print(f"  chaos scale (reference from a 1e-9 nudged start): max |qpos diff| {c['max_abs_qpos_diff']:.2e}")
        print(f"  one control step vs a converged solve (model: {r['model_solver_iterations']} solver iterations): "
              f"mean |qvel err| {loc['carried']['mean_abs_qvel_err']:.2e} carried, "
              f"{loc['cleared']['mean_abs_qvel_err']:.2e} cleared (|qvel| ~ {loc['mean_max_abs_qvel']:.1f})")
        print(f"  exact: rollout == cleared loop {r['rollout_equals_cleared_loop']}, "
              f"Batch (carried) == persistent mj_step {r['batch_warm_equals_persistent_mj_step']}")
        print(f"  control steps/s: rollout {s['rollout_cold']:,.0f}, Batch carried {s['batch_warm']:,.0f}, "
              f"Batch cleared {s['batch_cold']:,.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0
