"""The robot link protocol: state packets robot -> runtime, command packets runtime -> robot.

One datagram per message (UDP, or a local datagram socket pair for the MuJoCo robot process).
Every packet starts with a 28-byte little-endian header (``struct`` format ``<4sBBHIdII``):

======  ====  ==========  ======  =========================================================
offset  size  field       type    meaning
======  ====  ==========  ======  =========================================================
0       4     magic       bytes   ``b"SIMR"``
4       1     version     u8      protocol version, 1
5       1     type        u8      1 STATE, 2 COMMAND, 3 HELLO, 4 BYE
6       2     flags       u16     reserved, 0
8       4     sequence    u32     per sender and type, +1 per packet (wraps at 2^32)
12      8     timestamp   f64     sender's clock in seconds (the robot: its physics time)
20      4     length      u32     payload bytes that follow the header
24      4     crc32       u32     zlib CRC-32 of the header (this field zeroed) + payload
======  ====  ==========  ======  =========================================================

Payloads:

* STATE (robot -> runtime): ``u16 field count``, then per field ``u8 name length``, the
  name (ASCII), ``u16 value count`` and that many ``f64`` values. Fields are the measured part
  of the robot-state record (``joint_pos``, ``joint_vel``, ``base_quat``, ``base_ang_vel``,
  task extras ...) plus ``motor_pos`` / ``motor_vel`` in actuator units.
* COMMAND (runtime -> robot): ``u8 mode`` (0 RUN, 1 DAMP), ``u8`` 0, ``u16 n``, then ``f64``
  ``ctrl[n]``, ``kp[n]``, ``kd[n]`` (see :class:`deploy.robots.base.Command`).
* HELLO (runtime -> robot, empty): subscribe to state packets at the sender's address; from
  then on the robot takes COMMAND and BYE only from that address. The MuJoCo robot server also
  resets its simulation (a fresh episode per connection).
* BYE (runtime -> robot, empty): unsubscribe; the robot stops damped.

A receiver drops a packet that is shorter than its header or its stated length, has a wrong
magic, version, type or CRC, or a payload that does not parse (counted as ``rejected``); it uses
only the newest packet of each type: an older one arriving late is counted ``late`` and dropped,
sequence numbers that never arrived are counted ``lost``. The robot damps itself when commands
stop for ``command_timeout``; the runtime stops when states stop (its stale-data watchdog).
"""

from __future__ import annotations

import multiprocessing as mp
import random
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy.robots.base import Command, LinkStats, RobotLost, StateSample

MAGIC = b"SIMR"
VERSION = 1
STATE, COMMAND, HELLO, BYE = 1, 2, 3, 4
TYPES = (STATE, COMMAND, HELLO, BYE)
HEADER = struct.Struct("<4sBBHIdII")
MAX_DATAGRAM = 65507
LOOPBACK = "127.0.0.1"


class ProtocolError(ValueError):
    """A packet that breaks the protocol."""


@dataclass
class Packet:
    type: int
    seq: int
    stamp: float
    payload: bytes


# -- codec ------------------------------------------------------------------------------------
def encode(kind: int, seq: int, stamp: float, payload: bytes = b"") -> bytes:
    header = HEADER.pack(MAGIC, VERSION, kind, 0, seq & 0xFFFFFFFF, stamp, len(payload), 0)
    crc = zlib.crc32(payload, zlib.crc32(header))
    return header[:-4] + struct.pack("<I", crc) + payload


def decode(data: bytes) -> Packet:
    """The packet in ``data``; :class:`ProtocolError` if it is not a valid one."""
    if len(data) < HEADER.size:
        raise ProtocolError(f"short packet ({len(data)} bytes)")
    magic, version, kind, _, seq, stamp, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("bad magic")
    if version != VERSION:
        raise ProtocolError(f"unsupported version {version}")
    if kind not in TYPES:
        raise ProtocolError(f"unknown type {kind}")
    if length != len(data) - HEADER.size:
        raise ProtocolError(f"payload length {length}, packet carries {len(data) - HEADER.size}")
    zeroed = data[:HEADER.size - 4] + b"\0\0\0\0"
    if zlib.crc32(data[HEADER.size:], zlib.crc32(zeroed)) != crc:
        raise ProtocolError("bad CRC")
    return Packet(kind, seq, stamp, bytes(data[HEADER.size:]))


def encode_state(fields: dict[str, np.ndarray]) -> bytes:
    parts = [struct.pack("<H", len(fields))]
    for name, value in fields.items():
        raw = name.encode("ascii")
        values = np.ascontiguousarray(value, dtype="<f8").ravel()
        parts += [struct.pack("<B", len(raw)), raw, struct.pack("<H", len(values)), values.tobytes()]
    return b"".join(parts)


def decode_state(payload: bytes) -> dict[str, np.ndarray]:
    try:
        (count,), pos, fields = struct.unpack_from("<H", payload), 2, {}
        for _ in range(count):
            (n,) = struct.unpack_from("<B", payload, pos)
            name = payload[pos + 1:pos + 1 + n].decode("ascii")
            (k,) = struct.unpack_from("<H", payload, pos + 1 + n)
            pos += 3 + n
            if not name or len(name) != n or pos + 8 * k > len(payload) or name in fields:
                raise ProtocolError("bad state field")
            fields[name] = np.frombuffer(payload, "<f8", k, pos).astype(np.float64)
            pos += 8 * k
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad state payload: {exc}") from None
    if pos != len(payload):
        raise ProtocolError("trailing bytes in state payload")
    return fields


def encode_command(cmd: Command) -> bytes:
    n = len(cmd.ctrl)
    values = np.concatenate([cmd.ctrl, cmd.kp, cmd.kd]).astype("<f8")
    return struct.pack("<BBH", cmd.mode, 0, n) + values.tobytes()


def decode_command(payload: bytes) -> Command:
    if len(payload) < 4:
        raise ProtocolError("short command payload")
    mode, _, n = struct.unpack_from("<BBH", payload)
    if mode not in (0, 1) or len(payload) != 4 + 24 * n:
        raise ProtocolError("bad command payload")
    values = np.frombuffer(payload, "<f8", 3 * n, 4).astype(np.float64).reshape(3, n)
    return Command(values[0], values[1], values[2], mode)


# -- links ------------------------------------------------------------------------------------
class Link:
    """One end of a datagram conversation: sends numbered packets, drains and validates
    incoming ones and counts what happened. ``peer``: the address to send to (None for a
    connected socket)."""

    def __init__(self, sock: Any, peer: tuple | None = None):
        sock.setblocking(False)
        self.sock, self.peer = sock, peer
        self.stats = LinkStats()
        self._out_seq: dict[int, int] = {}
        self._newest: dict[int, int] = {}

    def send(self, kind: int, payload: bytes = b"", stamp: float | None = None) -> None:
        seq = self._out_seq.get(kind, 0)
        self._out_seq[kind] = seq + 1
        data = encode(kind, seq, time.monotonic() if stamp is None else stamp, payload)
        try:
            if self.peer is None:
                self.sock.send(data)
            else:
                self.sock.sendto(data, self.peer)
            self.stats.sent += 1
        except (BlockingIOError, InterruptedError):
            self.stats.send_dropped += 1

    def forget(self, kind: int) -> None:
        """Restarts sequence tracking of incoming ``kind`` packets (a new sender)."""
        self._newest.pop(kind, None)

    def receive(self) -> list[tuple[Packet, Any]]:
        """Every valid, newer-than-before packet waiting on the socket, with its address."""
        out = []
        while True:
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return out
            try:
                packet = decode(data)
            except ProtocolError:
                self.stats.rejected += 1
                continue
            self.stats.received += 1
            newest = self._newest.get(packet.type)
            if newest is not None and packet.seq <= newest:
                self.stats.late += 1
                if packet.seq < newest:
                    self.stats.lost = max(0, self.stats.lost - 1)
                continue
            if newest is not None:
                self.stats.lost += packet.seq - newest - 1
            self._newest[packet.type] = packet.seq
            out.append((packet, addr))


@dataclass
class Faults:
    """Deterministic link faults for tests: each incoming packet is dropped with probability
    ``loss`` or held back with probability ``delay`` until ``delay_packets`` newer ones went
    through (so it arrives late, out of order); each outgoing packet is dropped with
    probability ``loss``."""

    loss: float = 0.0
    delay: float = 0.0
    delay_packets: int = 3
    seed: int = 0


class FaultySocket:
    """A datagram socket that injects :class:`Faults`; everything else is the wrapped socket's."""

    def __init__(self, sock: socket.socket, faults: Faults):
        self._sock, self.faults = sock, faults
        self._rng_in, self._rng_out = random.Random(faults.seed), random.Random(faults.seed + 1)
        self._held: list[list] = []  # [packets still to pass, data, addr]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        while True:
            due = next((h for h in self._held if h[0] <= 0), None)
            if due is not None:
                self._held.remove(due)
                return due[1], due[2]
            data, addr = self._sock.recvfrom(size)  # BlockingIOError when empty
            r = self._rng_in.random()
            if r < self.faults.loss:
                continue
            for h in self._held:
                h[0] -= 1
            if r < self.faults.loss + self.faults.delay:
                self._held.append([self.faults.delay_packets, data, addr])
                continue
            return data, addr

    def _drop(self) -> bool:
        return self._rng_out.random() < self.faults.loss

    def send(self, data: bytes) -> int:
        return len(data) if self._drop() else self._sock.send(data)

    def sendto(self, data: bytes, addr: Any) -> int:
        return len(data) if self._drop() else self._sock.sendto(data, addr)


# -- the runtime's side ----------------------------------------------------------------------
class DatagramRobot:
    """A robot reached over a datagram socket that speaks this protocol (client side)."""

    lockstep = False

    def __init__(self, sock: Any, peer: tuple | None, name: str, source: str = "robot"):
        self.link = Link(sock, peer)
        self.name, self.source = name, source
        self._closed = False

    def connect(self, timeout: float = 60.0) -> StateSample:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.link.send(HELLO)
            except OSError as exc:
                raise RobotLost(f"{self.name}: {exc}") from None
            wait = time.monotonic() + 0.5
            while time.monotonic() < wait:
                sample = self.read_state()
                if sample is not None:
                    return sample
                time.sleep(0.005)
        raise RobotLost(f"{self.name}: no state within {timeout:g} s")

    def read_state(self) -> StateSample | None:
        newest = None
        for packet, _ in self.link.receive():
            if packet.type == STATE:
                newest = packet
        if newest is None:
            return None
        try:
            fields = decode_state(newest.payload)
        except ProtocolError:
            self.link.stats.rejected += 1
            return None
        return StateSample(newest.seq, newest.stamp, fields)

    def send_command(self, command: Command) -> None:
        try:
            self.link.send(COMMAND, encode_command(command))
        except OSError as exc:  # e.g. the robot process's socket is gone
            raise RobotLost(f"{self.name}: {exc}") from None

    def link_stats(self) -> LinkStats:
        return self.link.stats

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.link.send(BYE)
            except OSError:
                pass
            self.link.sock.close()


class UdpRobot(DatagramRobot):
    """``udp://HOST:PORT``: a robot (or ``simrl robot-server``) on the network."""

    def __init__(self, host: str, port: int, faults: Faults | None = None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK if host in (LOOPBACK, "localhost") else "", 0))
        super().__init__(FaultySocket(sock, faults) if faults else sock, (host, port),
                         f"udp://{host}:{port}")

    @property
    def address(self) -> tuple[str, int]:
        """This end's (host, port)."""
        return self.link.sock.getsockname()


def parse_uri(uri: str) -> tuple[str, int]:
    """``udp://HOST:PORT`` -> (host, port)."""
    rest = uri[len("udp://"):] if uri.startswith("udp://") else None
    host, _, port = (rest or "").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad robot address {uri!r}; expected udp://HOST:PORT")
    return host, int(port)


# -- the robot's side -------------------------------------------------------------------------
def serve_udp(sim_config: Any, host: str = LOOPBACK, port: int = 0, ready: Any = None,
              command_timeout: float = 0.25, rt_priority: int | None = None) -> None:
    """Runs a MuJoCo robot (:class:`deploy.robots.mujoco.SimConfig`) behind a UDP socket until
    interrupted. ``ready``: a connection that receives the bound port once it is listening;
    ``rt_priority``: SCHED_FIFO priority of the physics loop."""
    from deploy.robots.mujoco import MujocoSim, serve
    sim = MujocoSim(sim_config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    if ready is not None:
        ready.send(sock.getsockname()[1])
    try:
        serve(sim, Link(sock), stop=lambda: False, exit_on_bye=False, command_timeout=command_timeout,
              rt_priority=rt_priority)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


class ServerProcess:
    """A UDP robot server in its own (spawned) process on 127.0.0.1; a context manager."""

    def __init__(self, sim_config: Any, port: int = 0, timeout: float = 60.0,
                 rt_priority: int | None = None):
        ctx = mp.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=serve_udp, daemon=True,
                                   args=(sim_config, LOOPBACK, port, sender, 0.25, rt_priority))
        self.process.start()
        sender.close()
        if not receiver.poll(timeout):
            self.close()
            raise RuntimeError(f"robot server did not start within {timeout:g} s")
        self.port: int = receiver.recv()
        self.uri = f"udp://{LOOPBACK}:{self.port}"

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
