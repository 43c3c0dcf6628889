"""The robot link protocol: state packets robot -> runtime, command packets runtime -> robot.

One datagram per message (UDP, or a local datagram socket pair for the MuJoCo robot process).
Every packet starts with a 36-byte little-endian header (``struct`` format ``<4sBBHQIdII``):

======  ====  ==========  ======  =========================================================
offset  size  field       type    meaning
======  ====  ==========  ======  =========================================================
0       4     magic       bytes   ``b"SIMR"``
4       1     version     u8      protocol version, 2
5       1     type        u8      1 STATE, 2 COMMAND, 3 HELLO, 4 BYE, 5 ACCEPT
6       2     flags       u16     bit 0: an HMAC-SHA256 tag (32 bytes) follows the payload
8       8     session     u64     the session id the robot chose at ACCEPT (0 in HELLO)
16      4     sequence    u32     per session, sender and type, +1 per packet (wraps at 2^32)
20      8     timestamp   f64     sender's clock in seconds (the robot: its physics time)
28      4     length      u32     payload bytes that follow the header (without the tag)
32      4     crc32       u32     zlib CRC-32 of the header (this field zeroed) + payload
======  ====  ==========  ======  =========================================================

Payloads:

* STATE (robot -> runtime): ``u16 field count``, then per field ``u8 name length``, the
  name (ASCII), ``u16 value count`` and that many ``f64`` values. Fields are the measured part
  of the robot-state record (``joint_pos``, ``joint_vel``, ``base_quat``, ``base_ang_vel``,
  task extras ...) plus ``motor_pos`` / ``motor_vel`` in actuator units.
* COMMAND (runtime -> robot): ``u8 mode`` (0 RUN, 1 DAMP), ``u8`` 0, ``u16 n``, then ``f64``
  ``ctrl[n]``, ``kp[n]``, ``kd[n]`` (see :class:`deploy.robots.base.Command`).
* HELLO (runtime -> robot): a 16-byte random nonce, fresh per connection (retransmissions of
  one connection attempt repeat it).
* ACCEPT (robot -> runtime): the nonce of the HELLO it answers; its header carries the new
  session id (64 random bits).
* BYE (runtime -> robot, empty): ends the session; the robot stops damped.

Sessions. A runtime sends HELLO (every 0.5 s until answered) and takes only the ACCEPT that
echoes its nonce; from then on both ends take STATE, COMMAND and BYE only with that session id
and, on UDP, only from that peer's address (the runtime's socket is connected to the robot's
address, so its kernel drops datagrams from anyone else). The robot starts a session (and, for
the MuJoCo robot server, a fresh simulated episode) once per nonce: a repeated HELLO is answered
with the same ACCEPT. While a session is live (a packet of it within ``session_timeout``), a
HELLO from another address or with another nonce is refused (counted ``rejected``); after BYE
or silence the next runtime is accepted at once. HELLO and ACCEPT carry no sequence state, so
nothing one runtime sent can lock out the next.

Authentication (optional). With a shared key (a key file, see :func:`load_key`) every packet
carries an HMAC-SHA256 tag over its header and payload (flag bit 0), and a receiver drops every
packet whose tag is missing or wrong; both ends must use the same key. Without a key the link
trusts any process that can send from the connected peer's address: keep it on loopback or a
dedicated network.

A receiver drops a packet that is shorter than its header or its stated length, has a wrong
magic, version, type, CRC or tag, belongs to another session or peer, or carries a payload that
does not parse (counted as ``rejected``); it uses only the newest packet of each type in the
session (serial-number order): an older one arriving late is counted ``late`` and dropped,
sequence numbers that never arrived are counted ``lost``. The robot damps itself when commands
stop for ``command_timeout``; the runtime stops when states stop (its stale-data watchdog), and
the robot server clamps every command to the model's joint and control ranges and its gains to
``[0, max_gain_scale x`` the model's ``]`` on its own side.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import random
import secrets
import socket
import stat
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploy.robots.base import (Command, LinkStats, RobotLost, RobotOptions, StateSample,
                                 register_robot)

MAGIC = b"SIMR"
VERSION = 2
STATE, COMMAND, HELLO, BYE, ACCEPT = 1, 2, 3, 4, 5
TYPES = (STATE, COMMAND, HELLO, BYE, ACCEPT)
HEADER = struct.Struct("<4sBBHQIdII")
FLAG_MAC = 1
MAC_SIZE = 32
NONCE_SIZE = 16
MIN_KEY_BYTES = 16
MAX_DATAGRAM = 65507
LOOPBACK = "127.0.0.1"
HELLO_INTERVAL = 0.5


class ProtocolError(ValueError):
    """A packet that breaks the protocol."""


@dataclass
class Packet:
    type: int
    seq: int
    stamp: float
    payload: bytes
    session: int = 0


def load_key(path: str | os.PathLike) -> bytes:
    """The shared link key in the file ``path``: its bytes (at least 16; e.g. ``head -c 32
    /dev/urandom > link.key; chmod 600 link.key``). Refuses files others may read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        key = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"key file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"key file {path}: readable by others (mode {stat.S_IMODE(mode):o}); "
                         f"chmod 600 {path}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key file {path}: {len(key)} bytes, a key needs at least {MIN_KEY_BYTES}")
    return key


# -- codec ------------------------------------------------------------------------------------
def encode(kind: int, seq: int, stamp: float, payload: bytes = b"", session: int = 0,
           key: bytes | None = None) -> bytes:
    flags = FLAG_MAC if key is not None else 0
    header = HEADER.pack(MAGIC, VERSION, kind, flags, session, seq & 0xFFFFFFFF, stamp,
                         len(payload), 0)
    crc = zlib.crc32(payload, zlib.crc32(header))
    data = header[:-4] + struct.pack("<I", crc) + payload
    if key is not None:
        data += hmac.new(key, data, hashlib.sha256).digest()
    return data


def decode(data: bytes, key: bytes | None = None) -> Packet:
    """The packet in ``data``; :class:`ProtocolError` if it is not a valid one (with ``key``:
    also if its HMAC tag is missing or wrong; without: if it carries one)."""
    if len(data) < HEADER.size:
        raise ProtocolError(f"short packet ({len(data)} bytes)")
    magic, version, kind, flags, session, seq, stamp, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("bad magic")
    if version != VERSION:
        raise ProtocolError(f"unsupported version {version}")
    if kind not in TYPES:
        raise ProtocolError(f"unknown type {kind}")
    if flags & ~FLAG_MAC:
        raise ProtocolError(f"unknown flags {flags:#x}")
    tag = MAC_SIZE if flags & FLAG_MAC else 0
    if length != len(data) - HEADER.size - tag:
        raise ProtocolError(f"payload length {length}, packet carries {len(data) - HEADER.size - tag}")
    if key is None and tag:
        raise ProtocolError("packet carries an HMAC tag and this end has no key")
    if key is not None:
        if not tag:
            raise ProtocolError("packet without the HMAC tag this link requires")
        want = hmac.new(key, data[:-MAC_SIZE], hashlib.sha256).digest()
        if not hmac.compare_digest(want, data[-MAC_SIZE:]):
            raise ProtocolError("bad HMAC tag")
    body = data[HEADER.size:len(data) - tag]
    zeroed = data[:HEADER.size - 4] + b"\0\0\0\0"
    if zlib.crc32(body, zlib.crc32(zeroed)) != crc:
        raise ProtocolError("bad CRC")
    return Packet(kind, seq, stamp, bytes(body), session)


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
def _newer(seq: int, newest: int) -> int:
    """How many sequence numbers ``seq`` is past ``newest`` (serial-number arithmetic on u32);
    0 or less: not newer."""
    diff = (seq - newest) & 0xFFFFFFFF
    return diff if diff < 1 << 31 else diff - (1 << 32)


class Link:
    """One end of a datagram conversation: sends numbered packets of its session, drains and
    validates incoming ones and counts what happened. ``peer``: the address to send to (None
    for a connected socket); ``key``: the shared HMAC key, if any.

    ``receive`` returns HELLO packets to the caller (the robot decides about sessions), takes
    the ACCEPT that answers this end's own HELLO (:meth:`hello`) itself, and passes STATE,
    COMMAND and BYE only when they carry the current session id and come from ``peer``."""

    def __init__(self, sock: Any, peer: tuple | None = None, key: bytes | None = None):
        sock.setblocking(False)
        self.sock, self.peer, self.key = sock, peer, key
        self.stats = LinkStats()
        self.session = 0
        self.nonce: bytes | None = None
        self._out_seq: dict[int, int] = {}
        self._newest: dict[int, int] = {}

    def start_session(self, session: int, peer: tuple | None = None) -> None:
        """Starts talking in ``session`` (with ``peer`` when given): sequence numbers and
        windows begin afresh."""
        self.session = session
        if peer is not None:
            self.peer = peer
        self._out_seq.clear()
        self._newest.clear()

    def end_session(self) -> None:
        self.session, self.nonce = 0, None
        self._newest.clear()

    def hello(self) -> None:
        """Sends HELLO with this connection's nonce (drawn on the first call)."""
        if self.nonce is None:
            self.nonce = secrets.token_bytes(NONCE_SIZE)
        self.send(HELLO, self.nonce, session=0)

    def send(self, kind: int, payload: bytes = b"", stamp: float | None = None,
             session: int | None = None) -> None:
        seq = self._out_seq.get(kind, 0)
        self._out_seq[kind] = seq + 1
        data = encode(kind, seq, time.monotonic() if stamp is None else stamp, payload,
                      self.session if session is None else session, self.key)
        try:
            if self.peer is None:
                self.sock.send(data)
            else:
                self.sock.sendto(data, self.peer)
            self.stats.sent += 1
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            self.stats.send_dropped += 1  # buffer full, or (UDP) nobody listens there yet

    def forget(self, kind: int) -> None:
        """Restarts sequence tracking of incoming ``kind`` packets (a new sender)."""
        self._newest.pop(kind, None)

    def receive(self) -> list[tuple[Packet, Any]]:
        """Every valid packet waiting on the socket that is a HELLO or belongs to the session
        and is newer than before, with its address."""
        out = []
        while True:
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return out
            except ConnectionRefusedError:  # an ICMP error for an earlier send: nobody there
                continue
            try:
                packet = decode(data, self.key)
            except ProtocolError:
                self.stats.rejected += 1
                continue
            if packet.type == HELLO:
                self.stats.received += 1
                out.append((packet, addr))
                continue
            if packet.type == ACCEPT:
                if (self.nonce is not None and packet.payload == self.nonce and packet.session
                        and self.session in (0, packet.session)):
                    self.stats.received += 1
                    if self.session == 0:
                        self.start_session(packet.session)
                else:
                    self.stats.rejected += 1
                continue
            if (not self.session or packet.session != self.session
                    or (self.peer is not None and addr != self.peer)):
                self.stats.rejected += 1  # another session, another sender, or none yet
                continue
            self.stats.received += 1
            newest = self._newest.get(packet.type)
            ahead = 1 if newest is None else _newer(packet.seq, newest)
            if ahead <= 0:
                self.stats.late += 1
                if ahead < 0:
                    self.stats.lost = max(0, self.stats.lost - 1)
                continue
            self.stats.lost += ahead - 1
            self._newest[packet.type] = packet.seq
            out.append((packet, addr))


class SessionGate:
    """The robot's side of the handshake: one session at a time. A HELLO starts a session
    (answered by ACCEPT) when none is live; a live session is one that sent a packet within
    ``timeout`` seconds (:meth:`seen`). Retransmitted HELLOs of the current session get the same
    ACCEPT again; HELLOs of anyone else while it is live are refused."""

    def __init__(self, link: Link, timeout: float = 1.0):
        self.link, self.timeout = link, timeout
        self.nonce: bytes | None = None
        self.addr: Any = None
        self.last_seen = -np.inf

    def hello(self, packet: Packet, addr: Any, now: float) -> bool:
        """Handles a HELLO received at ``now`` (seconds, any monotonic clock); True when it
        started a new session."""
        link = self.link
        if len(packet.payload) != NONCE_SIZE:
            link.stats.rejected += 1
            return False
        if link.session and packet.payload == self.nonce and addr == self.addr:
            link.send(ACCEPT, self.nonce)  # our ACCEPT was lost: say it again
            return False
        if link.session and now - self.last_seen < self.timeout:
            link.stats.rejected += 1  # busy with a live runtime
            return False
        link.start_session(secrets.randbits(64) or 1, addr if addr else None)
        self.nonce, self.addr, self.last_seen = packet.payload, addr, now
        link.send(ACCEPT, self.nonce)
        return True

    def seen(self, now: float) -> None:
        self.last_seen = now

    def end(self) -> None:
        self.link.end_session()
        self.nonce, self.addr = None, None


@dataclass
class Faults:
    """Link faults for soak tests and ``simrl deploy --link-loss/--link-delay``: each incoming
    STATE or COMMAND packet is dropped with probability ``loss`` or held back with probability
    ``delay`` until ``delay_packets`` newer ones went through (so it arrives late, out of
    order); every incoming one that passes is also held ``latency_s`` seconds of wall time (a
    fixed one-way delay, in order, like ``netem delay``); each outgoing one is dropped with
    probability ``loss``. The handshake (HELLO, ACCEPT, BYE) passes untouched. Seeded: the same
    packets fare the same way."""

    loss: float = 0.0
    delay: float = 0.0
    delay_packets: int = 3
    seed: int = 0
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "delay"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"link {name} must be a probability in [0, 1], got {value}")
        if self.loss + self.delay > 1.0:
            raise ValueError(f"link loss + delay must be at most 1, got {self.loss + self.delay}")
        if self.delay_packets < 1:
            raise ValueError(f"link delay packets must be >= 1, got {self.delay_packets}")
        if not 0.0 <= self.latency_s <= 10.0:
            raise ValueError(f"link latency must be in [0, 10] s, got {self.latency_s}")

    @property
    def active(self) -> bool:
        return self.loss > 0 or self.delay > 0 or self.latency_s > 0


def _faultable(data: bytes) -> bool:
    return len(data) > 5 and data[5] in (STATE, COMMAND)


class FaultLine:
    """:class:`Faults` applied to any message stream (UDP datagrams, DDS samples): incoming
    messages go in with :meth:`arrive` and come out with :meth:`next` (lost, held back past
    newer ones, delayed), :meth:`drop_outgoing` decides each outgoing one. Seeded."""

    def __init__(self, faults: Faults):
        self.faults = faults
        self._rng_in, self._rng_out = random.Random(faults.seed), random.Random(faults.seed + 1)
        self._held: list[list] = []  # [messages still to pass, message]
        self._line: collections.deque = collections.deque()  # (due time, message)
        self.lost = 0  # incoming messages dropped

    def arrive(self, message: Any) -> None:
        """An incoming message: lost, held back until ``delay_packets`` newer ones passed, or on
        its way (``latency_s`` from now)."""
        r = self._rng_in.random()
        if r < self.faults.loss:
            self.lost += 1
            return
        for h in self._held:
            h[0] -= 1
        released = [h[1] for h in self._held if h[0] <= 0]
        self._held = [h for h in self._held if h[0] > 0]
        if r < self.faults.loss + self.faults.delay:
            self._held.append([self.faults.delay_packets, message])
        else:
            released.insert(0, message)
        due = time.monotonic() + self.faults.latency_s
        self._line.extend((due, m) for m in released)

    def next(self) -> Any | None:
        """The next incoming message that is due, or None."""
        if self._line and self._line[0][0] <= time.monotonic():
            return self._line.popleft()[1]
        return None

    def drop_outgoing(self) -> bool:
        return self._rng_out.random() < self.faults.loss


class FaultySocket:
    """A datagram socket that injects :class:`Faults` into STATE and COMMAND packets (the
    handshake passes); everything else is the wrapped socket's."""

    def __init__(self, sock: socket.socket, faults: Faults):
        self._sock, self.faults = sock, faults
        self.line = FaultLine(faults)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        while True:  # everything waiting enters the fault line; packets leave it when due
            try:
                data, addr = self._sock.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                break
            if not _faultable(data):
                return data, addr
            self.line.arrive((data, addr))
        packet = self.line.next()
        if packet is None:
            raise BlockingIOError("no packet due")
        return packet

    def _drop(self, data: bytes) -> bool:
        return _faultable(data) and self.line.drop_outgoing()

    def send(self, data: bytes) -> int:
        return len(data) if self._drop(data) else self._sock.send(data)

    def sendto(self, data: bytes, addr: Any) -> int:
        return len(data) if self._drop(data) else self._sock.sendto(data, addr)


class ConnectCancelled(RobotLost):
    """Connecting was cancelled (an e-stop while waiting for the robot)."""


# -- the runtime's side ----------------------------------------------------------------------
class DatagramRobot:
    """A robot reached over a datagram socket that speaks this protocol (client side)."""

    lockstep = False

    def __init__(self, sock: Any, peer: tuple | None, name: str, source: str = "robot",
                 key: bytes | None = None):
        self.link = Link(sock, peer, key)
        self.name, self.source = name, source
        self.hellos = 0
        self._closed = False

    def connect(self, timeout: float = 60.0, cancel: Callable[[], bool] | None = None) -> StateSample:
        """HELLO until the robot accepts (every 0.5 s, one nonce), then its first state.
        ``cancel``: polled while waiting; when it returns True, :class:`ConnectCancelled`."""
        deadline = time.monotonic() + timeout
        next_hello = 0.0
        while (now := time.monotonic()) < deadline:
            if cancel is not None and cancel():
                raise ConnectCancelled(f"{self.name}: connecting cancelled")
            if not self.link.session and now >= next_hello:
                try:
                    self.link.hello()
                except OSError as exc:
                    raise RobotLost(f"{self.name}: {exc}") from None
                self.hellos += 1
                next_hello = now + HELLO_INTERVAL
            sample = self.read_state()
            if sample is not None:
                return sample
            time.sleep(0.005)
        what = ("accepted us but sent no state" if self.link.session else
                "did not accept: no robot there, it serves another runtime, or its link key differs")
        raise RobotLost(f"{self.name}: within {timeout:g} s the robot {what}")

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
                if self.link.session:
                    self.link.send(BYE)
            except OSError:
                pass
            self.link.sock.close()


class UdpRobot(DatagramRobot):
    """``udp://HOST:PORT``: a robot (or ``simrl robot-server``) on the network. The socket is
    connected to the robot's address: the OS binds it to the interface that routes to the
    robot (never the wildcard address) and drops datagrams from any other sender."""

    def __init__(self, host: str, port: int, faults: Faults | None = None, key: bytes | None = None):
        try:
            addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
        except (socket.gaierror, UnicodeError) as exc:
            raise ValueError(f"robot address udp://{host}:{port}: {exc}") from None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            raise ValueError(f"robot address udp://{host}:{port}: no route ({exc.strerror})") from None
        if faults is not None and faults.active:
            sock = FaultySocket(sock, faults)
        super().__init__(sock, None, f"udp://{host}:{port}", key=key)

    @property
    def address(self) -> tuple[str, int]:
        """This end's (host, port)."""
        return self.link.sock.getsockname()


def parse_uri(uri: str) -> tuple[str, int]:
    """``udp://HOST:PORT`` -> (host, port)."""
    rest = uri[len("udp://"):] if uri.startswith("udp://") else None
    host, _, port = (rest or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad robot address {uri!r}; expected udp://HOST:PORT")
    return host, int(port)


@register_robot("udp", "udp://HOST:PORT: a robot (or `simrl robot-server`) speaking this protocol")
def make_udp_robot(uri: str, spec: dict[str, Any], options: RobotOptions) -> UdpRobot:
    """The ``udp://HOST:PORT`` back-end."""
    options.refuse("udp", perturbation="the robot server (simrl robot-server --perturb FILE)", link=True)
    return UdpRobot(*parse_uri(uri), faults=options.faults, key=options.key)
