"""Unitree SDK 2 robots over DDS (``unitree://IFACE``): ``rt/lowstate`` in, ``rt/lowcmd`` out.

Serves the robots that speak SDK 2's low-level DDS topics: quadrupeds with the ``unitree_go``
messages (Go2, B2: 12 leg motors) and humanoids with the ``unitree_hg`` messages (G1 29-DoF).
The real Go1's firmware speaks Unitree's older UDP SDK (``unitree_legged_sdk``), not this.

URI: ``unitree://IFACE[?robot=go|hg&domain=N&crc=check|ignore]``. ``IFACE`` is the network
interface the robot is on (``eth0``; ``lo`` for the twin, ``simrl robot-server --protocol
unitree``). ``robot``: the message family, by default derived from the model's joint names;
``domain``: the DDS domain id (default 0, as on the robots); ``crc``: states whose CRC is wrong
are dropped and counted ``rejected`` (default ``check``; ``ignore`` for a source that does not
sign its states). On ``lo`` discovery runs over unicast to 127.0.0.1
(loopback is often not multicast-capable); on other interfaces it uses multicast as the robots
do.

Mapping. Each model joint ``NAME_joint`` drives the robot motor named ``NAME``
(:data:`GO_MOTORS`, :data:`G1_MOTORS`: the motor indices of Unitree's SDK). Readings: motor
``q``/``dq`` become ``joint_pos``/``joint_vel`` (model joint order) and ``motor_pos``/
``motor_vel`` (actuator order), the IMU quaternion (w, x, y, z) and gyroscope become
``base_quat``/``base_ang_vel``, the remote's ``wireless_remote`` bytes ``remote`` (sticks lx, rx,
ry, ly and the key bits: :func:`parse_remote`, read by ``simrl deploy --command-source
remote``); the stamp is the state's ``tick`` (ms). Commands: a RUN command
sends ``q = ctrl`` with the command's ``kp``/``kd`` (the checkpoint spec's ``pd_gains``), a
DAMP command ``kp = 0`` and ``kd > 0`` (damping mode), ``dq = tau = 0``; every command carries
its CRC. Motors the model does not drive are sent disabled (mode 0, zero gains).

Link checks and faults. Each read takes the newest state by ``tick``: states whose tick is not after
the last accepted one's are counted ``late`` and dropped (the robot clock never runs backwards,
and only a state whose tick advanced is new to the stale-data watchdog); one with a wrong CRC is ``rejected`` and the next older one tried.
``simrl deploy --link-loss/--link-delay/--link-latency`` inject faults as on a UDP link
(:class:`~deploy.robots.udp.FaultLine`): states are dropped (counted ``lost``), held back past
newer ones, or delayed; commands are dropped.

The start-up sequence of unitree_rl_gym's deploy_real is the runtime's: ``connect`` waits for
the first state; ``simrl deploy --zero-torque S`` sends zero torque for S seconds, the soft
start moves to the default pose over ``--soft-start`` seconds, then the policy runs; every stop
(e-stop, Ctrl-C, stale state, NaN, tilt) sends damping commands (:mod:`deploy.safety`).
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import mujoco
import numpy as np

from deploy.robots.base import (DAMP, Command, LinkStats, RobotLost, RobotOptions, StateSample,
                                register_robot)
from deploy.robots import unitree_idl as idl
from deploy.robots.udp import ConnectCancelled, FaultLine, Faults

LOWSTATE, LOWCMD = "rt/lowstate", "rt/lowcmd"
GO_MOTORS = tuple(f"{leg}_{j}" for leg in ("FR", "FL", "RR", "RL") for j in ("hip", "thigh", "calf"))
G1_MOTORS = tuple(
    [f"{s}_{j}" for s in ("left", "right")
     for j in ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch", "ankle_roll")]
    + ["waist_yaw", "waist_roll", "waist_pitch"]
    + [f"{s}_{j}" for s in ("left", "right")
       for j in ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow", "wrist_roll",
                 "wrist_pitch", "wrist_yaw")])


@dataclass(frozen=True)
class Family:
    """One message family: its types and its motors (name -> SDK motor index)."""

    name: str                  # "go" or "hg"
    state_type: type
    cmd_type: type
    slots: int                 # motor entries in a message
    motors: tuple[str, ...]    # by motor index

    @property
    def index(self) -> dict[str, int]:
        return {m: i for i, m in enumerate(self.motors)}


FAMILIES = {
    "go": Family("go", idl.GoLowState_, idl.GoLowCmd_, 20, GO_MOTORS),
    "hg": Family("hg", idl.HgLowState_, idl.HgLowCmd_, 35, G1_MOTORS),
}


# -- configuration ----------------------------------------------------------------------------
def dds_config(iface: str) -> str:
    """A CycloneDDS configuration that uses only the network interface ``iface``. Loopback:
    unicast discovery to 127.0.0.1 (no multicast needed)."""
    if not iface or any(c in iface for c in "<>&\"' "):
        raise ValueError(f"bad network interface name {iface!r}")
    if iface == "lo":
        return ('<CycloneDDS><Domain Id="any"><General><Interfaces>'
                '<NetworkInterface name="lo" priority="default" multicast="false"/></Interfaces>'
                '<AllowMulticast>false</AllowMulticast></General><Discovery>'
                '<ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>30'
                '</MaxAutoParticipantIndex><Peers><Peer address="127.0.0.1"/></Peers>'
                '</Discovery></Domain></CycloneDDS>')
    return ('<CycloneDDS><Domain Id="any"><General><Interfaces>'
            f'<NetworkInterface name="{iface}" priority="default" multicast="default"/>'
            '</Interfaces></General></Domain></CycloneDDS>')


@dataclass(frozen=True)
class UnitreeAddress:
    iface: str
    robot: str | None = None   # "go" | "hg" | None: from the model
    domain: int = 0
    check_crc: bool = True     # drop states whose CRC is wrong


def parse_uri(uri: str) -> UnitreeAddress:
    """``unitree://IFACE[?robot=go|hg&domain=N&crc=check|ignore]`` -> :class:`UnitreeAddress`."""
    usage = "expected unitree://IFACE[?robot=go|hg&domain=N&crc=check|ignore], e.g. unitree://eth0"
    if not uri.startswith("unitree://"):
        raise ValueError(f"bad robot address {uri!r}; {usage}")
    parts = urlsplit(uri)
    if not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"bad robot address {uri!r}: no network interface; {usage}")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - {"robot", "domain", "crc"}
    if unknown:
        raise ValueError(f"robot address {uri!r}: unknown option {sorted(unknown)[0]!r}; {usage}")
    robot = query.get("robot")
    if robot is not None and robot not in FAMILIES:
        raise ValueError(f"robot address {uri!r}: robot={robot!r}, expected go or hg")
    domain = query.get("domain", "0")
    if not domain.isdigit() or int(domain) > 232:
        raise ValueError(f"robot address {uri!r}: domain={domain!r}, expected a DDS domain id 0-232")
    crc = query.get("crc", "check")
    if crc not in ("check", "ignore"):
        raise ValueError(f"robot address {uri!r}: crc={crc!r}, expected check or ignore")
    return UnitreeAddress(parts.netloc, robot, int(domain), crc == "check")


_DOMAINS: dict[int, tuple[str, Any, Any]] = {}
_DOMAINS_LOCK = threading.Lock()


def participant(domain: int, iface: str) -> Any:
    """This process's DDS participant on ``domain`` bound to ``iface`` (one per domain: a
    second interface for the same domain is refused)."""
    from cyclonedds.domain import Domain, DomainParticipant
    with _DOMAINS_LOCK:
        if domain in _DOMAINS:
            used, _, dp = _DOMAINS[domain]
            if used != iface:
                raise ValueError(f"DDS domain {domain} is already in use on {used} in this process")
            return dp
        dom = Domain(domain, dds_config(iface))
        dp = DomainParticipant(domain)
        _DOMAINS[domain] = (iface, dom, dp)
        return dp


# -- joint mapping ----------------------------------------------------------------------------
def family_for_model(model: mujoco.MjModel, robot: str | None = None) -> Family:
    """The message family of ``model`` (``robot`` forces one): the one whose motor names cover
    every actuated joint."""
    names = _actuated_joint_names(model)
    if robot is not None:
        return FAMILIES[robot]
    for fam in FAMILIES.values():
        if set(names) <= set(fam.motors):
            return fam
    raise ValueError(f"model joints {names} match no Unitree SDK 2 robot (go: {GO_MOTORS[0]}..., "
                     f"hg: {G1_MOTORS[0]}...); joints must be named MOTOR_joint")


def _joint_motor_name(model: mujoco.MjModel, joint: int) -> str:
    name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint) or f"joint {joint}"
    return name[:-len("_joint")] if name.endswith("_joint") else name


def _actuated_joint_names(model: mujoco.MjModel) -> list[str]:
    out = []
    for i in range(model.nu):
        if int(model.actuator_trntype[i]) != int(mujoco.mjtTrn.mjTRN_JOINT):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i)
            raise ValueError(f"actuator {name or i} does not drive a joint; a Unitree robot's "
                             f"actuators are joint motors")
        out.append(_joint_motor_name(model, model.actuator_trnid[i, 0]))
    return out


@dataclass
class MotorMap:
    """Where each model quantity sits among the robot's motors."""

    family: Family
    actuator: np.ndarray       # (nu,) motor index of each actuator
    gear: np.ndarray           # (nu,) actuator length = gear x joint position
    joint: np.ndarray          # (nj,) motor index of each hinge joint, model order

    @classmethod
    def from_model(cls, model: mujoco.MjModel, robot: str | None = None) -> "MotorMap":
        fam = family_for_model(model, robot)
        index = fam.index
        names = _actuated_joint_names(model)
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(f"robot {fam.name}: no motor named {missing[0]!r} (model joint "
                             f"{missing[0]}_joint); its motors are {', '.join(fam.motors)}")
        actuator = np.array([index[n] for n in names], dtype=int)
        if len(set(actuator.tolist())) != len(actuator):
            raise ValueError("two actuators drive the same Unitree motor")
        hinges = [j for j in range(model.njnt) if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE),
                                                                              int(mujoco.mjtJoint.mjJNT_SLIDE))]
        joint_names = [_joint_motor_name(model, j) for j in hinges]
        unknown = [n for n in joint_names if n not in index]
        if unknown:
            raise ValueError(f"robot {fam.name}: model joint {unknown[0]}_joint has no motor")
        return cls(fam, actuator, model.actuator_gear[:, 0].copy(),
                   np.array([index[n] for n in joint_names], dtype=int))


# -- the remote's bytes ------------------------------------------------------------------------
# The 16 key bits of ``wireless_remote`` (bytes 2-3, little endian), bit i = REMOTE_KEYS[i]:
# unitree_rl_gym deploy_real's KeyMap (unitree_sdk2py's Joystick reads the same bits).
REMOTE_KEYS = ("R1", "L1", "start", "select", "R2", "L2", "F1", "F2", "A", "B", "X", "Y",
               "up", "right", "down", "left")
_STICKS = {"lx": 4, "rx": 8, "ry": 12, "ly": 20}   # little-endian float32 at these byte offsets
REMOTE_FIELDS = ("lx", "rx", "ry", "ly", "keys")   # the ``remote`` state field, in this order


def encode_remote(lx: float = 0.0, rx: float = 0.0, ry: float = 0.0, ly: float = 0.0,
                  keys: tuple[str, ...] = ()) -> list[int]:
    """The 40 ``wireless_remote`` bytes of a remote with these stick positions (-1..1) and keys
    pressed (names of :data:`REMOTE_KEYS`)."""
    unknown = [k for k in keys if k not in REMOTE_KEYS]
    if unknown:
        raise ValueError(f"unknown remote key {unknown[0]!r}; keys: {', '.join(REMOTE_KEYS)}")
    data = bytearray(40)
    struct.pack_into("<H", data, 2, sum(1 << REMOTE_KEYS.index(k) for k in keys))
    for name, value in (("lx", lx), ("rx", rx), ("ry", ry), ("ly", ly)):
        struct.pack_into("<f", data, _STICKS[name], float(value))
    return list(data)


def parse_remote(data: Any) -> np.ndarray:
    """``wireless_remote`` bytes as (lx, rx, ry, ly, key bits) (:data:`REMOTE_FIELDS`)."""
    raw = bytes(data)
    if len(raw) != 40:
        raise ValueError(f"wireless_remote: expected 40 bytes, got {len(raw)}")
    sticks = [struct.unpack_from("<f", raw, _STICKS[n])[0] for n in ("lx", "rx", "ry", "ly")]
    return np.array([*sticks, struct.unpack_from("<H", raw, 2)[0]], dtype=np.float64)


# -- message conversions ----------------------------------------------------------------------
def state_fields(msg: Any, mm: MotorMap) -> dict[str, np.ndarray]:
    """A LowState_ as robot-state fields (see the module doc)."""
    q = np.array([m.q for m in msg.motor_state], dtype=np.float64)
    dq = np.array([m.dq for m in msg.motor_state], dtype=np.float64)
    imu = msg.imu_state
    return {"joint_pos": q[mm.joint], "joint_vel": dq[mm.joint],
            "base_quat": np.array(imu.quaternion, dtype=np.float64),
            "base_ang_vel": np.array(imu.gyroscope, dtype=np.float64),
            "motor_pos": q[mm.actuator] * mm.gear, "motor_vel": dq[mm.actuator] * mm.gear,
            "remote": parse_remote(msg.wireless_remote)}


def low_cmd(command: Command, mm: MotorMap, mode_machine: int = 0) -> Any:
    """A LowCmd_ (with CRC) for a command in actuator order: RUN -> position targets with the
    command's gains, DAMP -> damping mode (kp = 0, kd > 0)."""
    fam = mm.family
    msg = idl.zero(fam.cmd_type)
    if fam.name == "go":
        msg.head, msg.level_flag = [0xFE, 0xEF], 0xFF
    else:
        msg.mode_pr, msg.mode_machine = 0, int(mode_machine)
    damp = command.mode == DAMP
    for i, motor in enumerate(mm.actuator):
        m = msg.motor_cmd[motor]
        m.mode = 1
        m.q = float(command.ctrl[i] / mm.gear[i])
        m.kp = 0.0 if damp else float(command.kp[i] * mm.gear[i] ** 2)
        m.kd = float(command.kd[i] * mm.gear[i] ** 2)
    return idl.with_crc(msg)


def command_from(msg: Any, mm: MotorMap) -> Command:
    """A LowCmd_ as a command in actuator order (the twin's side; ``dq`` and ``tau`` are not
    modelled and must be 0). ValueError for a wrong CRC or unsupported values."""
    if msg.crc != idl.crc(msg):
        raise ValueError("bad CRC")
    motors = [msg.motor_cmd[i] for i in mm.actuator]
    if any(m.dq != 0 or m.tau != 0 for m in motors):
        raise ValueError("dq and tau feed-forward are not supported by the twin")
    off = np.array([m.mode == 0 for m in motors])
    g = mm.gear
    ctrl = np.array([m.q for m in motors], dtype=np.float64) * g
    kp = np.where(off, 0.0, np.array([m.kp for m in motors], dtype=np.float64) / g ** 2)
    kd = np.where(off, 0.0, np.array([m.kd for m in motors], dtype=np.float64) / g ** 2)
    return Command(ctrl, kp, kd)


def quat_to_rpy(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)),
                     np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0)),
                     np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))])


def low_state(fields: dict[str, np.ndarray], mm: MotorMap, tick_ms: int,
              accelerometer: np.ndarray | None = None, remote: list[int] | None = None) -> Any:
    """A LowState_ (with CRC) from robot-state fields (the twin's side); ``remote``: the
    ``wireless_remote`` bytes (:func:`encode_remote`)."""
    fam = mm.family
    msg = idl.zero(fam.state_type)
    if remote is not None:
        msg.wireless_remote = list(remote)
    if fam.name == "go":
        msg.head, msg.level_flag = [0xFE, 0xEF], 0xFF
    quat = fields["base_quat"]
    imu = msg.imu_state
    imu.quaternion = [float(v) for v in quat]
    imu.gyroscope = [float(v) for v in fields["base_ang_vel"]]
    imu.rpy = [float(v) for v in quat_to_rpy(quat)]
    if accelerometer is not None:
        imu.accelerometer = [float(v) for v in accelerometer]
    for j, motor in enumerate(mm.joint):
        m = msg.motor_state[motor]
        m.mode, m.q, m.dq = 1, float(fields["joint_pos"][j]), float(fields["joint_vel"][j])
    msg.tick = int(tick_ms) & 0xFFFFFFFF
    return idl.with_crc(msg)


# -- the runtime's side -----------------------------------------------------------------------
class UnitreeRobot:
    """A Unitree SDK 2 robot (or the twin) on DDS."""

    lockstep = False
    source = "robot"

    def __init__(self, addr: UnitreeAddress, model: mujoco.MjModel, faults: Faults | None = None):
        self.addr = addr
        self.map = MotorMap.from_model(model, addr.robot)
        self.name = f"unitree://{addr.iface} ({self.map.family.name}, domain {addr.domain})"
        self.stats = LinkStats()
        self.faults = FaultLine(faults) if faults is not None and faults.active else None
        self._reader = self._writer = None
        self._seq = 0
        self._mode_machine = 0
        self._last_tick: int | None = None
        self._wraps = 0

    def _open(self) -> None:
        from cyclonedds.pub import DataWriter
        from cyclonedds.qos import Policy, Qos
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic
        dp = participant(self.addr.domain, self.addr.iface)
        fam = self.map.family
        self._reader = DataReader(dp, Topic(dp, LOWSTATE, fam.state_type),
                                  Qos(Policy.History.KeepLast(8)))
        self._writer = DataWriter(dp, Topic(dp, LOWCMD, fam.cmd_type))

    def connect(self, timeout: float = 60.0, cancel: Callable[[], bool] | None = None) -> StateSample:
        """Waits for the first state (and for the robot's command subscriber)."""
        if self._reader is None:
            self._open()
        deadline = time.monotonic() + timeout
        sample = None
        while time.monotonic() < deadline:
            if cancel is not None and cancel():
                raise ConnectCancelled(f"{self.name}: connecting cancelled")
            sample = sample or self.read_state()
            if sample is not None and self._writer.get_matched_subscriptions():
                return sample
            time.sleep(0.005)
        what = ("sent state but nobody subscribes to rt/lowcmd" if sample is not None else
                f"sent no {LOWSTATE} with a valid CRC (add ?crc=ignore for a source that does not "
                "sign its states)" if self.stats.rejected else
                f"sent no {LOWSTATE} (wrong interface, domain or message family?)")
        self.close()
        raise RobotLost(f"{self.name}: within {timeout:g} s the robot {what}")

    def _incoming(self) -> list[Any]:
        """The states taken since the last call, in arrival order (through the fault line when
        faults are injected)."""
        from cyclonedds.internal import InvalidSample
        msgs = [m for m in self._reader.take(N=64) if not isinstance(m, InvalidSample)]
        if self.faults is None:
            return msgs
        for m in msgs:
            self.faults.arrive(m)
        self.stats.lost = self.faults.lost
        return list(iter(self.faults.next, None))

    def _newer(self, tick: int) -> bool:
        """Whether ``tick`` comes after the last accepted state's (u32 milliseconds that wrap
        after 49 days)."""
        last = self._last_tick
        return last is None or 0 < (tick - last) % (1 << 32) < 1 << 31

    def read_state(self) -> StateSample | None:
        """The newest state taken since the last call, by tick: states not after the last
        accepted one are late; the others are tried newest first (a wrong CRC is rejected); the
        older ones the chosen state supersedes are counted, not checked."""
        msgs = self._incoming()
        fresh = [m for m in msgs if self._newer(int(m.tick))]
        self.stats.late += len(msgs) - len(fresh)
        last = self._last_tick or 0
        fresh.sort(key=lambda m: (int(m.tick) - last) % (1 << 32))
        newest = None
        while fresh:
            msg = fresh.pop()
            if self.addr.check_crc and msg.crc != idl.crc(msg):
                self.stats.rejected += 1
            else:
                newest = msg
                break
        if newest is None:
            return None
        self.stats.received += 1 + len(fresh)
        tick = int(newest.tick)
        if self._last_tick is not None and tick < self._last_tick:
            self._wraps += 1
        self._last_tick = tick
        if self.map.family.name == "hg":
            self._mode_machine = newest.mode_machine
        self._seq += 1
        return StateSample(self._seq, (tick + self._wraps * 2.0 ** 32) * 1e-3,
                           state_fields(newest, self.map))

    def send_command(self, command: Command) -> None:
        if self._writer is None:
            raise RobotLost(f"{self.name}: not connected")
        self.stats.sent += 1
        if self.faults is not None and self.faults.drop_outgoing():
            return
        try:
            self._writer.write(low_cmd(command, self.map, self._mode_machine))
        except Exception as exc:  # noqa: BLE001  (cyclonedds raises DDSException)
            raise RobotLost(f"{self.name}: {exc}") from None

    def link_stats(self) -> LinkStats:
        return self.stats

    def close(self) -> None:
        """Releases the DDS reader and writer (the runtime already sent the damped stop)."""
        self._reader = self._writer = None


@register_robot("unitree", "unitree://IFACE[?robot=go|hg&domain=N&crc=check|ignore]: a Unitree "
                           "SDK 2 robot (Go2, B2, G1) on DDS, or `simrl robot-server --protocol unitree`")
def make_unitree_robot(uri: str, spec: dict[str, Any], options: RobotOptions) -> UnitreeRobot:
    """The ``unitree://IFACE`` back-end for a checkpoint ``spec`` (link faults injected when
    ``options.faults`` is set)."""
    from envs.tasks import task_from_spec
    options.refuse("unitree", perturbation="the twin (simrl robot-server --protocol unitree --perturb FILE)",
                   link=True)
    if options.key is not None:
        raise ValueError("link keys apply to udp robots; Unitree's DDS topics carry no key")
    addr = parse_uri(uri)
    return UnitreeRobot(addr, task_from_spec(spec).model, options.faults)
