"""``simrl export``, ``simrl deploy`` and ``simrl robot-server``: from a checkpoint to a robot.

``export`` writes ``policy.onnx`` (or TorchScript) into the checkpoint, after a parity check.
``deploy`` runs it on a robot (the MuJoCo proxy or a UDP robot) with the safety layer and writes
a real log. ``robot-server`` puts the MuJoCo proxy behind UDP, like a robot on the network.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

SAFETY_STOP_EXIT = 3
ESTOP_EXIT = 130
ROBOT_LOST_EXIT = 4


def _positive(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def _port(text: str) -> int:
    """argparse type: a UDP port (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port in 0-65535, got {text}")
    return value


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
    p.add_argument("--duration", type=_positive, default=10.0, help="seconds (default: 10)")
    p.add_argument("--log", default=None,
                   help="real log to write (default: CHECKPOINT/real_logs/deploy-TIME.mcap)")
    p.add_argument("--lockstep", action="store_true",
                   help="mujoco robot only: step in lockstep, faster than real time")
    p.add_argument("--command", dest="task_command", type=float, nargs="+", default=None,
                   help="task command, e.g. Go1: vx vy yaw_rate (default: drawn with --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--soft-start", type=float, default=1.0, help="seconds to the default pose (default: 1)")
    p.add_argument("--stale-periods", type=int, default=3,
                   help="control periods of robot time whose states may be lost before a safe stop "
                        "(robots without timestamps: periods without fresh state) (default: 3)")
    p.add_argument("--stale-timeout", type=_positive, default=0.2,
                   help="seconds without any state before a safe stop (default: 0.2)")
    p.add_argument("--connect-timeout", type=_positive, default=20.0,
                   help="seconds to wait for the robot to accept and send its first state (default: 20)")
    p.add_argument("--key-file", default=None,
                   help="udp robots: shared key file; every packet carries an HMAC-SHA256 tag "
                        "(the robot must use the same key)")
    soak = p.add_argument_group("link fault injection (soak tests of your setup)")
    soak.add_argument("--link-loss", type=_probability, default=0.0,
                      help="drop this share of state and command packets, both ways (default: 0)")
    soak.add_argument("--link-delay", type=_probability, default=0.0,
                      help="hold this share of incoming states back, so they arrive late (default: 0)")
    soak.add_argument("--link-delay-packets", type=int, default=3,
                      help="a held state arrives after this many newer ones (default: 3)")
    soak.add_argument("--link-latency", type=float, default=0.0, metavar="SECONDS",
                      help="hold every incoming state this long (a fixed one-way delay, e.g. 0.05; "
                           "default: 0)")
    soak.add_argument("--link-seed", type=int, default=0, help="seed of the injected faults")
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
    p.add_argument("--host", default="127.0.0.1",
                   help="address of this machine to serve on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=9870, help="UDP port (default: 9870)")
    p.add_argument("--key-file", default=None,
                   help="shared key file: accept only packets with its HMAC-SHA256 tag, sign ours")
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
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until the runtime's e-stop takes over
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
    from deploy.robots.base import RobotLost
    from deploy.robots.udp import Faults, load_key
    safety = deploy.SafetyConfig(soft_start_s=args.soft_start, stale_periods=args.stale_periods,
                                 stale_timeout_s=args.stale_timeout)
    config = deploy.RuntimeConfig(realtime=not args.lockstep, seed=args.seed,
                                  command=tuple(args.task_command) if args.task_command else None,
                                  end_on_termination=args.end_on_termination,
                                  rt_priority=args.rt_priority, safety=safety)
    faults = Faults(args.link_loss, args.link_delay, args.link_delay_packets, args.link_seed,
                    args.link_latency)
    key = load_key(args.key_file) if args.key_file else None
    injected = (f", injecting {args.link_loss:.0%} loss, {args.link_delay:.0%} reordering delay and "
                f"{args.link_latency * 1000:g} ms latency" if faults.active else "")
    print(f"deploying {ckpt} on {args.robot} for {args.duration:g} s{injected} (Ctrl-C: e-stop)",
          flush=True)
    try:
        report = deploy.run(ckpt, args.robot, args.duration, log, perturb=args.perturb, config=config,
                            faults=faults if faults.active else None, key=key,
                            connect_timeout=args.connect_timeout)
    except RobotLost as exc:  # never connected, or the link died before the loop ran
        print(f"simrl deploy: error: {exc}", file=sys.stderr)
        return ROBOT_LOST_EXIT
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    if report.stop_reason == "estop":
        return ESTOP_EXIT
    return SAFETY_STOP_EXIT if report.stop_reason not in (None, "terminated") else 0


def run_robot_server(args: argparse.Namespace) -> int:
    from deploy.robots.mujoco import SimConfig
    from envs.perturbation import Perturbation
    from deploy.robots.udp import load_key
    from deploy.robots.udp_server import bind_server, serve_udp
    from simrl.core.spec import load_spec
    spec = load_spec(args.checkpoint) if args.checkpoint else {"task": args.task, "task_config": {}}
    perturbation = Perturbation.load(args.perturb) if args.perturb else None
    cfg = SimConfig.from_spec(spec, args.model, perturbation, args.seed)
    key = load_key(args.key_file) if args.key_file else None
    sock = bind_server(args.host, args.port)  # a port in use or a foreign address: one line
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = sock.getsockname()[1]
    auth = "HMAC-SHA256 with " + args.key_file if key else "no link key"
    print(f"robot server: {cfg.name} on udp://{args.host}:{port}, {auth} (Ctrl-C to stop)", flush=True)
    serve_udp(cfg, command_timeout=args.command_timeout, rt_priority=args.rt_priority, key=key, sock=sock)
    return 0
