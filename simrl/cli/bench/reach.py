"""panda-reach on a Franka arm through libfranka: ``simrl bench reach --checkpoint C``.

Runs ``simrl deploy``'s runtime once per goal (``--goals``, drawn from the task's own goal
distribution with ``--seed``) against ``--robot franka://HOST`` (default: a franky-sim started
here on a loopback address): the soft start brings the arm to the task's start pose, then the
policy runs for ``--seconds``. Each run is logged as MCAP under ``--logs``. Measured on the
robot: the end-effector position error at the last step (forward kinematics of the measured
joint positions, the task model's ``gripper`` site: the FR3 shares the Panda's kinematics),
success (error below the task's ``success_distance``), the time to first get within it, and
the 1 kHz loop's statistics (libfranka's period per cycle, cycles per wall second, robot time
per wall second). ``--rank-out DIR`` then runs ``simrl rank`` on the logs (they must be
accepted). ``--json FILE`` writes everything with the machine's load average.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simrl.core.machine import finish, machine_info


@dataclass
class Config:
    """Options of ``simrl bench reach``."""

    checkpoint: str                           # a panda-reach checkpoint (with policy.onnx: simrl export)
    robot: str | None = None                  # franka://HOST[?...]; default: franky-sim started on a loopback address
    goals: int = 20                           # goals, one deploy run each
    seconds: float = 6.0                      # policy seconds (wall) per goal: the task's 4 s episode, plus room for a simulator slower than real time
    soft_start: float = 3.0                   # seconds of soft start to the task's start pose before each goal
    seed: int = 0                             # goal draw
    logs: str = "runs/bench_reach/logs"       # MCAP logs, one per goal (must not exist yet)
    rank_out: str | None = None               # run simrl rank on the logs into this directory
    json: str | None = None                   # also write the results to this JSON file

    def validate(self) -> None:
        from simrl.core.config import require
        require(self.goals >= 1, "goals", f"must be >= 1, got {self.goals}")
        require(self.seconds > 0, "seconds", f"must be > 0, got {self.seconds}")
        require(self.soft_start >= 0, "soft_start", f"must be >= 0, got {self.soft_start}")


def _ee(task, q: np.ndarray) -> np.ndarray:
    import mujoco
    data = mujoco.MjData(task.model)
    data.qpos[task.arm_qpos] = q
    mujoco.mj_kinematics(task.model, data)
    return data.site("gripper").xpos.copy()


def _goal_run(args: Config, uri: str, spec: dict, task, goal: np.ndarray, k: int, log: Path) -> dict:
    import deploy
    from deploy.robots import RobotOptions, make_robot
    from simrl.core.logs import read_log
    config = deploy.RuntimeConfig(command=tuple(float(x) for x in goal), seed=args.seed * 1000 + k,
                                  end_on_termination=False,
                                  safety=deploy.SafetyConfig(soft_start_s=args.soft_start))
    robot = make_robot(uri, spec, RobotOptions(realtime=True))
    report = deploy.run(args.checkpoint, robot, args.soft_start + args.seconds, log, config=config,
                        connect_timeout=30)
    real = read_log(log)
    q = real.state["joint_pos"]
    err = np.array([np.linalg.norm(_ee(task, qi) - goal) for qi in q])
    policy = np.flatnonzero(~real.safety["soft_start"].astype(bool))
    within = policy[err[policy] < task.cfg.success_distance]
    t = real.t
    rate = robot.rate_stats()
    return {"goal": goal.tolist(), "final_error_m": float(err[-1]), "success": bool(err[-1] < task.cfg.success_distance),
            "start_error_m": float(err[policy[0]]) if len(policy) else None,
            "time_to_reach_s": float(t[within[0]] - t[policy[0]]) if len(within) else None,
            "ee_pos_logged_vs_fk_m": float(np.abs(real.state["ee_pos"][-1] - _ee(task, q[-1])).max()),
            "steps": report.steps, "policy_steps": report.policy_steps, "stop_reason": report.stop_reason,
            "safety_events": {k: v for k, v in report.safety_events.items() if v},
            "jitter_ms": report.jitter_ms, "inference_ms": report.inference_ms, "link": report.link,
            "rate": rate, "durations": robot.durations[1:], "log": str(log)}


def run(args: Config) -> int:
    from contextlib import nullcontext

    from deploy.robots.franka_sim import FrankySim, free_loopback
    from envs.tasks import task_from_spec
    from simrl.core.spec import load_spec
    spec = load_spec(args.checkpoint)
    if spec["task"] != "panda-reach":
        raise ValueError(f"{args.checkpoint}: a panda-reach checkpoint is needed, this one is {spec['task']}")
    task = task_from_spec(spec)
    goals = task.sample_goals(np.random.default_rng(args.seed), args.goals)
    logs = Path(args.logs)
    if logs.exists() and any(logs.iterdir()):
        raise ValueError(f"--logs {logs}: exists and is not empty (logs are never overwritten)")
    logs.mkdir(parents=True, exist_ok=True)
    machine = machine_info(threads=1, packages=("simrl", "pylibfranka", "franky-sim", "mujoco", "onnxruntime", "numpy"))
    t0 = time.perf_counter()
    with (nullcontext() if args.robot else FrankySim(free_loopback())) as sim:
        uri = args.robot or f"franka://{sim.host}"
        rows = []
        for k, goal in enumerate(goals):
            row = _goal_run(args, uri, spec, task, goal, k, logs / f"goal_{k:02d}.mcap")
            rows.append(row)
            reach = "-" if row["time_to_reach_s"] is None else f"{row['time_to_reach_s']:.2f} s"
            print(f"goal {k:2d} {np.round(goal, 3)}: final error {row['final_error_m'] * 100:.1f} cm "
                  f"({'success' if row['success'] else 'miss'}), reached in {reach}, 1 kHz loop "
                  f"{row['rate'].get('wall_rate_hz', float('nan')):.0f} Hz, stop {row['stop_reason'] or 'none'}",
                  flush=True)
    wall = time.perf_counter() - t0
    err = np.array([r["final_error_m"] for r in rows])
    durations = np.concatenate([np.asarray(r.pop("durations")) for r in rows]) * 1e3
    reached = [r["time_to_reach_s"] for r in rows if r["time_to_reach_s"] is not None]
    summary = {
        "goals": len(rows), "success_rate": float(np.mean(err < task.cfg.success_distance)),
        "success_distance_m": task.cfg.success_distance,
        "final_error_cm": {"mean": float(err.mean() * 100), "median": float(np.median(err) * 100),
                           "max": float(err.max() * 100)},
        # runs the safety layer ended early (a stalled link: stale_data, robot_lost) count as misses
        # above; here the policy's own record over the runs that ran to the end
        "completed_runs": int(sum(r["stop_reason"] is None for r in rows)),
        "success_rate_completed": float(np.mean([r["success"] for r in rows if r["stop_reason"] is None]))
        if any(r["stop_reason"] is None for r in rows) else None,
        "final_error_cm_completed_mean": float(np.mean([r["final_error_m"] for r in rows if r["stop_reason"] is None]) * 100)
        if any(r["stop_reason"] is None for r in rows) else None,
        "time_to_reach_s": {"median": float(np.median(reached)), "max": float(np.max(reached))} if reached else None,
        "libfranka_period_ms": {"p50": float(np.percentile(durations, 50)), "p99": float(np.percentile(durations, 99)),
                                "max": float(durations.max()), "share_above_1ms": float(np.mean(durations > 1.0 + 1e-6))},
        "cycles": int(len(durations)),
        "wall_rate_hz_mean": float(np.mean([r["rate"]["wall_rate_hz"] for r in rows if r["rate"]])),
        "robot_time_per_wall_s_mean": float(np.mean([r["rate"]["robot_time_per_wall_s"] for r in rows if r["rate"]])),
        "runtime_jitter_p99_ms_max": float(max(r["jitter_ms"]["p99"] for r in rows)),
        "inference_p99_ms_max": float(max(r["inference_ms"]["p99"] for r in rows)),
        "stops": sorted({r["stop_reason"] for r in rows if r["stop_reason"]}),
        "wall_s": wall,
    }
    print(f"{summary['goals']} goals: success {summary['success_rate'] * 100:.0f} % (final error < "
          f"{task.cfg.success_distance * 100:g} cm), final error mean {summary['final_error_cm']['mean']:.2f} cm, "
          f"median {summary['final_error_cm']['median']:.2f} cm, max {summary['final_error_cm']['max']:.2f} cm")
    if summary["completed_runs"] < len(rows):
        print(f"  {len(rows) - summary['completed_runs']} run(s) ended by a safety stop ({', '.join(summary['stops'])}); "
              f"over the {summary['completed_runs']} others: success {(summary['success_rate_completed'] or 0) * 100:.0f} %")
    p = summary["libfranka_period_ms"]
    print(f"1 kHz loop: {summary['cycles']} cycles, {summary['wall_rate_hz_mean']:.0f} Hz of wall time, "
          f"{summary['robot_time_per_wall_s_mean']:.2f} s robot time per wall s, libfranka period p50 "
          f"{p['p50']:.1f} ms p99 {p['p99']:.1f} ms, {p['share_above_1ms'] * 100:.1f} % above 1 ms")
    rank = None
    if args.rank_out:
        from simrl.cli import main
        rc = main(["rank", "--checkpoints", args.checkpoint, "--real-logs", str(logs), "--out", args.rank_out])
        rank = {"returncode": rc, "out": args.rank_out}
        if rc != 0:
            raise RuntimeError(f"simrl rank refused the logs in {logs} (exit {rc})")
    if args.json:
        result = {"what": "simrl bench reach: panda-reach goals through pylibfranka "
                          + ("against franky-sim (mujoco) on loopback" if not args.robot else f"on {args.robot}"),
                  "command": "simrl bench reach " + " ".join(
                      f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
                  "checkpoint": str(Path(args.checkpoint).resolve()),
                  "training": spec.get("training"),
                  "machine": finish(machine), "summary": summary, "rank": rank, "goals": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
