"""``simrl deploy`` and ``simrl robot-server``: from a checkpoint to a robot, on the robot
computer (no torch: this module imports only the ``deploy`` side).

``deploy`` runs a checkpoint on a robot (the MuJoCo proxy or a UDP robot) with the safety layer
and writes a real log; a checkpoint without policy.onnx is exported first (that needs torch).
``robot-server`` puts the MuJoCo proxy behind UDP, like a robot on the network.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import deploy
from simrl.cli import command, parse
from simrl.core.onnx_contract import ONNX_FILE
from simrl.core.spec import load_spec

SAFETY_STOP_EXIT = 3
ESTOP_EXIT = 130


@dataclass
class DeployArgs:
    """Where and how to run the checkpoint."""

    checkpoint: str                      # checkpoint directory (exported first if it has no policy.onnx)
    robot: str = "mujoco"                # mujoco | mujoco:MODEL.xml | udp://HOST:PORT
    perturb: str | None = None           # perturbation file (JSON/YAML) for the mujoco robot
    duration: float = 10.0               # seconds
    log: str | None = None               # real log to write (default: CHECKPOINT/real_logs/deploy-TIME.mcap)
    lockstep: bool = False               # mujoco robot only: step in lockstep, faster than real time
    command: tuple[float, ...] | None = None  # task command, e.g. Go1: vx vy yaw_rate (default: drawn with --seed)
    seed: int = 0                        # random seed (commands, the mujoco robot)
    soft_start: float = 1.0              # seconds to the default pose
    stale_periods: int = 3               # periods without fresh state before a safe stop
    end_on_termination: bool = True      # end the run when the task terminates (a fall)
    rt_priority: int | None = None       # SCHED_FIFO priority of the control loop (and of the mujoco robot process)
    json: str | None = None              # also write the report to this JSON file


@dataclass
class RobotServerArgs:
    """The simulated robot to serve."""

    backend: Literal["mujoco"] = "mujoco"  # robot back-end
    checkpoint: str | None = None        # simulate the task (and its config) of this checkpoint
    task: str | None = None              # simulate this task with its default config (default: go1-velocity; not with --checkpoint)
    model: str | None = None             # MJCF replacing the task's robot model
    perturb: str | None = None           # perturbation file (JSON/YAML)
    host: str = "127.0.0.1"              # address to bind
    port: int = 9870                     # UDP port
    seed: int = 0                        # random seed
    command_timeout: float = 0.25        # the robot damps itself after this long without commands (s)
    rt_priority: int | None = None       # SCHED_FIFO priority of the physics loop


@command("deploy", help="run a checkpoint on a robot with the safety layer")
def run_deploy(argv: list[str]) -> int:
    args = parse(DeployArgs, argv, "simrl deploy", __doc__)
    ckpt = Path(args.checkpoint)
    if (ckpt / "spec.json").exists() and not (ckpt / ONNX_FILE).exists():
        from policies.export import export   # needs torch: only for a checkpoint not exported yet
        export(ckpt, "onnx")
    log = args.log or ckpt / "real_logs" / f"deploy-{time.strftime('%Y%m%d-%H%M%S')}.mcap"
    safety = deploy.SafetyConfig(soft_start_s=args.soft_start, stale_periods=args.stale_periods)
    config = deploy.RuntimeConfig(realtime=not args.lockstep, seed=args.seed,
                                  command=tuple(args.command) if args.command else None,
                                  end_on_termination=args.end_on_termination,
                                  rt_priority=args.rt_priority, safety=safety)
    print(f"deploying {ckpt} on {args.robot} for {args.duration:g} s (Ctrl-C: e-stop)", flush=True)
    report = deploy.run(ckpt, args.robot, args.duration, log, perturb=args.perturb, config=config)
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    if report.stop_reason == "estop":
        return ESTOP_EXIT
    return SAFETY_STOP_EXIT if report.stop_reason not in (None, "terminated") else 0


@command("robot-server", help="serve a MuJoCo robot over UDP (loopback by default)")
def run_robot_server(argv: list[str]) -> int:
    from deploy.robots.mujoco import SimConfig
    from deploy.robots.perturbation import Perturbation
    from deploy.robots.udp import serve_udp

    args = parse(RobotServerArgs, argv, "simrl robot-server",
                 "Runs the MuJoCo robot in real time behind the UDP protocol of deploy.robots.udp "
                 "until Ctrl-C.")
    if args.checkpoint and args.task:
        raise ValueError("give --checkpoint or --task, not both")
    spec = (load_spec(args.checkpoint) if args.checkpoint
            else {"task": args.task or "go1-velocity", "task_config": {}})
    perturbation = Perturbation.load(args.perturb) if args.perturb else None
    cfg = SimConfig.from_spec(spec, args.model, perturbation, args.seed)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"robot server: {cfg.name} on udp://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    serve_udp(cfg, args.host, args.port, command_timeout=args.command_timeout, rt_priority=args.rt_priority)
    return 0
