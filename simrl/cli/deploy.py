"""``simrl deploy`` and ``simrl robot-server``: from a checkpoint to a robot, on the robot
computer (no torch: this module imports only the ``deploy`` side).

``deploy`` runs a checkpoint on a robot (a registered back-end: the MuJoCo proxy or a UDP robot)
with the safety layer and writes a real log (never over an existing file); a checkpoint without
policy.onnx is exported first (that needs torch). ``--link-*`` options inject loss and delay into
the robot link, to soak a setup before it meets hardware. ``robot-server`` puts the MuJoCo proxy
behind UDP, like a robot on the network. ``--video FILE`` renders the run from its log after the
run has ended (never in the control loop), like ``simrl logs video``.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import deploy
from deploy.commands import CommandScale, make_command_source
from deploy.robots.base import RobotLost
from deploy.robots.udp import Faults, load_key
from simrl.cli import command, parse
from simrl.core.logs import LogExistsError
from simrl.core.onnx_contract import ONNX_FILE
from simrl.core.spec import load_spec

SAFETY_STOP_EXIT = 3
ESTOP_EXIT = 130
ROBOT_LOST_EXIT = 4


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')}: must be a finite number > 0, got {value}")


@dataclass
class DeployArgs:
    """Where and how to run the checkpoint."""

    checkpoint: str                      # checkpoint directory (exported first if it has no policy.onnx)
    robot: str = "mujoco"                # mujoco | mujoco:MODEL.xml | udp://HOST:PORT | unitree://IFACE (any registered back-end)
    perturb: str | None = None           # perturbation file (JSON/YAML) for the mujoco robot
    duration: float = 10.0               # seconds
    log: str | None = None               # real log to write, never over an existing file (default: CHECKPOINT/real_logs/deploy-TIME.mcap)
    lockstep: bool = False               # mujoco robot only: step in lockstep, faster than real time
    command: tuple[float, ...] | None = None  # task command, e.g. Go1: vx vy yaw_rate (default: drawn with --seed; with --command-source keyboard: the start)
    command_source: Literal["fixed", "remote", "keyboard"] = "fixed"  # fixed: --command; remote: the robot's wireless remote (unitree://, vx = ly, vy = -lx, yaw = -rx; select: e-stop); keyboard: w/s a/d q/e, space stops
    command_scale: tuple[float, float, float] = (1.0, 0.5, 1.0)  # remote/keyboard: the largest vx (m/s), vy (m/s), yaw rate (rad/s)
    command_step: float = 0.1            # keyboard: command change per key press
    seed: int = 0                        # random seed (commands, the mujoco robot)
    zero_torque: float = 0.0             # seconds of zero torque before the soft start (unitree_rl_gym's deploy_real start-up)
    soft_start: float = 1.0              # seconds to the default pose
    stale_periods: int = 3               # robots without usable timestamps: control periods without a fresh state before a safe stop
    stale_timeout: float = 0.2           # seconds (monotonic clock) without a new state (timestamp advanced) before a safe stop
    connect_timeout: float = 20.0        # seconds to wait for the robot to accept and send its first state
    key_file: str | None = None          # udp robots: shared key file; every packet carries an HMAC-SHA256 tag (the robot must use the same key)
    link_loss: float = 0.0               # soak: drop this share of state and command packets, both ways
    link_delay: float = 0.0              # soak: hold this share of incoming states back, so they arrive late and out of order
    link_delay_packets: int = 3          # soak: a held state arrives after this many newer ones
    link_latency: float = 0.0            # soak: hold every incoming state this many seconds (a fixed one-way delay, e.g. 0.05)
    link_seed: int = 0                   # soak: seed of the injected faults
    end_on_termination: bool = True      # end the run when the task terminates (a fall)
    rt_priority: int | None = None       # SCHED_FIFO priority of the control loop (and of the mujoco robot process)
    camera: str | None = None            # object poses from an ArUco marker seen by this camera: index (0), URL or video file (replaces franka's ?object=)
    camera_calib: str | None = None      # with --camera: calibration file (JSON/YAML: K, dist, camera_to_base, marker)
    max_pose_age: float = 0.2            # with --camera: seconds a camera pose may age before a safe stop (stale_pose)
    json: str | None = None              # also write the report to this JSON file
    video: str | None = None             # after the run, render its log to this MP4 (command, return, safety events drawn)
    video_fps: float = 30.0              # frames per second wanted (--video)

    def validate(self) -> None:
        _check_positive(duration=self.duration, stale_timeout=self.stale_timeout,
                        connect_timeout=self.connect_timeout, video_fps=self.video_fps)
        if self.video and Path(self.video).exists():
            raise FileExistsError(f"--video {self.video}: file exists; choose another name")
        if not (math.isfinite(self.soft_start) and self.soft_start >= 0):
            raise ValueError(f"--soft-start: must be a finite number >= 0, got {self.soft_start}")
        if not (math.isfinite(self.zero_torque) and self.zero_torque >= 0):
            raise ValueError(f"--zero-torque: must be a finite number >= 0, got {self.zero_torque}")
        if self.stale_periods < 1:
            raise ValueError(f"--stale-periods: must be >= 1, got {self.stale_periods}")
        if (self.camera is None) != (self.camera_calib is None):
            raise ValueError("--camera and --camera-calib go together")
        _check_positive(max_pose_age=self.max_pose_age)


@dataclass
class RobotServerArgs:
    """The simulated robot to serve."""

    backend: Literal["mujoco"] = "mujoco"  # robot back-end
    protocol: Literal["udp", "unitree"] = "udp"  # udp: simrl's link protocol; unitree: Unitree SDK 2 DDS topics rt/lowstate, rt/lowcmd (like unitree_mujoco)
    interface: str = "lo"                # unitree: network interface to serve DDS on
    domain: int = 0                      # unitree: DDS domain id
    robot: Literal["go", "hg"] | None = None  # unitree: message family (default: from the model's joint names)
    checkpoint: str | None = None        # simulate the task (and its config) of this checkpoint
    task: str | None = None              # simulate this task with its default config (default: go1-velocity; not with --checkpoint)
    model: str | None = None             # MJCF replacing the task's robot model
    perturb: str | None = None           # perturbation file (JSON/YAML)
    host: str = "127.0.0.1"              # address of this machine to serve on
    port: int = 9870                     # UDP port (0: any free one)
    key_file: str | None = None          # shared key file: accept only packets with its HMAC-SHA256 tag, sign ours
    seed: int = 0                        # random seed
    command_timeout: float = 0.25        # the robot damps itself after this long without commands (s)
    rt_priority: int | None = None       # SCHED_FIFO priority of the physics loop
    remote_schedule: str | None = None   # unitree: scripted wireless-remote input (JSON/YAML list of {t, lx, ly, rx, ry, keys}; t in s from the first command)

    def validate(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"--port: must be a port in 0-65535, got {self.port}")
        _check_positive(command_timeout=self.command_timeout)
        if not 0 <= self.domain <= 232:
            raise ValueError(f"--domain: must be a DDS domain id in 0-232, got {self.domain}")
        if self.protocol == "unitree" and self.key_file:
            raise ValueError("--key-file: applies to --protocol udp (DDS has no link key)")
        if self.remote_schedule and self.protocol != "unitree":
            raise ValueError("--remote-schedule: applies to --protocol unitree")


def _log_path(args: DeployArgs, ckpt: Path) -> Path:
    """``--log`` (refused if it exists: a log is never overwritten) or a new default name."""
    if args.log:
        if Path(args.log).exists():
            raise LogExistsError(f"--log {args.log}: file exists; simrl never overwrites a log")
        return Path(args.log)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    log, n = ckpt / "real_logs" / f"deploy-{stamp}.mcap", 1
    while log.exists():  # two runs in the same second: a new name
        log, n = log.with_name(f"deploy-{stamp}-{n}.mcap"), n + 1
    return log


@command("deploy", help="run a checkpoint on a robot with the safety layer")
def run_deploy(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until the runtime's e-stop takes over
    args = parse(DeployArgs, argv, "simrl deploy", __doc__)
    ckpt = Path(args.checkpoint)
    log = _log_path(args, ckpt)  # before any work
    if (ckpt / "spec.json").exists() and not (ckpt / ONNX_FILE).exists():
        from policies.export import export   # needs torch: only for a checkpoint not exported yet
        export(ckpt, "onnx")
    safety = deploy.SafetyConfig(zero_torque_s=args.zero_torque, soft_start_s=args.soft_start, stale_periods=args.stale_periods,
                                 stale_timeout_s=args.stale_timeout, max_pose_age_s=args.max_pose_age)
    config = deploy.RuntimeConfig(realtime=not args.lockstep, seed=args.seed,
                                  command=tuple(args.command) if args.command else None,
                                  end_on_termination=args.end_on_termination,
                                  rt_priority=args.rt_priority, safety=safety)
    commands = make_command_source(args.command_source, CommandScale(*args.command_scale),
                                   args.command_step, args.command)
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
                            connect_timeout=args.connect_timeout,
                            camera=(args.camera, args.camera_calib) if args.camera else None,
                            commands=commands)
    except RobotLost as exc:  # never connected, or the link died before the loop ran
        print(f"simrl deploy: error: {exc}", file=sys.stderr)
        return ROBOT_LOST_EXIT
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    if args.video:  # from the closed log, after the control loop has ended
        from simrl.cli.logs import render_video
        render_video(str(log), args.video, fps=args.video_fps)
    if report.stop_reason == "estop":
        return ESTOP_EXIT
    return SAFETY_STOP_EXIT if report.stop_reason not in (None, "terminated") else 0


@command("robot-server", help="serve a MuJoCo robot over UDP or Unitree SDK 2 DDS (loopback by default)")
def run_robot_server(argv: list[str]) -> int:
    from deploy.robots.mujoco import SimConfig
    from deploy.robots.udp_server import bind_server, serve_udp
    from envs.perturbation import Perturbation

    args = parse(RobotServerArgs, argv, "simrl robot-server",
                 "Runs the MuJoCo robot in real time behind the UDP protocol of deploy.robots.udp "
                 "(--protocol udp) or Unitree SDK 2's DDS topics (--protocol unitree, "
                 "deploy.robots.unitree_server) until Ctrl-C.")
    if args.checkpoint and args.task:
        raise ValueError("give --checkpoint or --task, not both")
    spec = (load_spec(args.checkpoint) if args.checkpoint
            else {"task": args.task or "go1-velocity", "task_config": {}})
    perturbation = Perturbation.load(args.perturb) if args.perturb else None
    cfg = SimConfig.from_spec(spec, args.model, perturbation, args.seed)
    if args.protocol == "unitree":
        return _serve_unitree(args, cfg)
    key = load_key(args.key_file) if args.key_file else None
    sock = bind_server(args.host, args.port)  # a port in use or a foreign address: one line
    _stop_on_signals()
    port = sock.getsockname()[1]
    auth = "HMAC-SHA256 with " + args.key_file if key else "no link key"
    print(f"robot server: {cfg.name} on udp://{args.host}:{port}, {auth} (Ctrl-C to stop)", flush=True)
    serve_udp(cfg, command_timeout=args.command_timeout, rt_priority=args.rt_priority, key=key, sock=sock)
    return 0


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop the server cleanly, also when it was started in the
    background by a shell script, whose background jobs inherit SIGINT ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def _serve_unitree(args: RobotServerArgs, cfg) -> int:
    """``--protocol unitree``: the MuJoCo twin on DDS until Ctrl-C / SIGTERM."""
    from deploy.robots.unitree import MotorMap, dds_config
    from deploy.robots.unitree_server import RemoteSchedule, serve_unitree
    from envs.tasks import task_from_spec

    dds_config(args.interface)  # a bad interface name: one line
    family = MotorMap.from_model(task_from_spec({"task": cfg.task, "task_config": cfg.task_config},
                                                cfg.model).model, args.robot).family.name
    _stop_on_signals()
    print(f"robot server: {cfg.name} as a Unitree SDK 2 robot ({family}) on "
          f"unitree://{args.interface}?domain={args.domain} (rt/lowstate, rt/lowcmd; Ctrl-C to stop)",
          flush=True)
    schedule = RemoteSchedule.load(args.remote_schedule) if args.remote_schedule else None
    stats = serve_unitree(cfg, args.interface, args.domain, args.robot,
                          command_timeout=args.command_timeout, rt_priority=args.rt_priority,
                          remote_schedule=schedule)
    print(f"robot server: {stats.summary()}", flush=True)
    return 0
