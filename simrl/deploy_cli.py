"""``simrl export``, ``simrl deploy`` and ``simrl robot-server``: from a checkpoint to a robot.

``export`` writes ``policy.onnx`` (or TorchScript) into the checkpoint, after a parity check.
``deploy`` runs it on a robot (the MuJoCo proxy or a UDP robot) with the safety layer and writes
a real log. ``robot-server`` puts the MuJoCo proxy behind UDP, like a robot on the network.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

SAFETY_STOP_EXIT = 3
ESTOP_EXIT = 130


def add_parser(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("export", help="export a checkpoint's policy to ONNX or TorchScript",
                       description="Writes policy.onnx (or policy.torchscript.pt) into the checkpoint "
                                   "with normalization and action scaling folded in, after checking it "
                                   "against the torch policy.", formatter_class=fmt)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", default=None, help="output file (default: inside the checkpoint)")
    p.add_argument("--tolerance", type=float, default=1e-5, help="parity bound on max |diff| (default: 1e-5)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("deploy", help="run a checkpoint on a robot with the safety layer",
                       description=__doc__, formatter_class=fmt)
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint directory (exported first if it has no policy.onnx)")
    p.add_argument("--robot", default="mujoco",
                   help="mujoco, mujoco:MODEL.xml or udp://HOST:PORT (default: mujoco)")
    p.add_argument("--perturb", default=None, help="perturbation file (JSON/YAML) for the mujoco robot")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default: 10)")
    p.add_argument("--log", default=None,
                   help="real log to write (default: CHECKPOINT/real_logs/deploy-TIME.mcap)")
    p.add_argument("--lockstep", action="store_true",
                   help="mujoco robot only: step in lockstep, faster than real time")
    p.add_argument("--command", type=float, nargs="+", default=None,
                   help="task command, e.g. Go1: vx vy yaw_rate (default: drawn with --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--soft-start", type=float, default=1.0, help="seconds to the default pose (default: 1)")
    p.add_argument("--stale-periods", type=int, default=3,
                   help="periods without fresh state before a safe stop (default: 3)")
    p.add_argument("--end-on-termination", action=argparse.BooleanOptionalAction, default=True,
                   help="end the run when the task terminates (a fall) (default: yes)")
    p.add_argument("--rt-priority", type=int, default=None,
                   help="SCHED_FIFO priority of the control loop (and of the mujoco robot process)")
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.set_defaults(func=run_deploy)

    p = sub.add_parser("robot-server", help="serve a MuJoCo robot over UDP (loopback by default)",
                       description="Runs the MuJoCo robot in real time behind the UDP protocol of "
                                   "deploy.robots.udp until Ctrl-C.", formatter_class=fmt)
    p.add_argument("--backend", choices=("mujoco",), default="mujoco")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--checkpoint", help="simulate the task (and its config) of this checkpoint")
    what.add_argument("--task", default="go1-velocity",
                      help="simulate this task with its default config (default: go1-velocity)")
    p.add_argument("--model", default=None, help="MJCF replacing the task's robot model")
    p.add_argument("--perturb", default=None, help="perturbation file (JSON/YAML)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=9870, help="UDP port (default: 9870)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--command-timeout", type=float, default=0.25,
                   help="the robot damps itself after this long without commands (default: 0.25 s)")
    p.add_argument("--rt-priority", type=int, default=None, help="SCHED_FIFO priority of the physics loop")
    p.set_defaults(func=run_robot_server)


def run_export(args: argparse.Namespace) -> int:
    from policies.export import export
    result = export(args.checkpoint, args.format, args.out, args.tolerance)
    print(f"wrote {result.path} (parity: max |diff| {result.max_abs_diff:.2e} over {result.samples} "
          f"observations)")
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    import deploy
    from simrl.core.onnx_contract import ONNX_FILE
    from simrl.core.logs import LogExistsError
    ckpt = Path(args.checkpoint)
    if args.log and Path(args.log).exists():  # before any work: a log is never overwritten
        raise LogExistsError(f"--log {args.log}: file exists; simrl never overwrites a log")
    log = Path(args.log) if args.log else ckpt / "real_logs" / f"deploy-{time.strftime('%Y%m%d-%H%M%S')}.mcap"
    n = 1
    while not args.log and log.exists():  # two runs in the same second: a new name
        log, n = log.with_name(f"deploy-{time.strftime('%Y%m%d-%H%M%S')}-{n}.mcap"), n + 1
    if (ckpt / "spec.json").exists() and not (ckpt / ONNX_FILE).exists():
        run_export(argparse.Namespace(checkpoint=ckpt, format="onnx", out=None, tolerance=1e-5))
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


def run_robot_server(args: argparse.Namespace) -> int:
    from deploy.robots.mujoco import SimConfig
    from envs.perturbation import Perturbation
    from deploy.robots.udp import serve_udp
    from simrl.core.spec import load_spec
    spec = load_spec(args.checkpoint) if args.checkpoint else {"task": args.task, "task_config": {}}
    perturbation = Perturbation.load(args.perturb) if args.perturb else None
    cfg = SimConfig.from_spec(spec, args.model, perturbation, args.seed)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"robot server: {cfg.name} on udp://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    serve_udp(cfg, args.host, args.port, command_timeout=args.command_timeout, rt_priority=args.rt_priority)
    return 0
