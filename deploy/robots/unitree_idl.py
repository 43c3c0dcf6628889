"""Unitree SDK 2 low-level messages (DDS types) and their CRC.

The types are the ones Unitree's robots publish and take on ``rt/lowstate`` / ``rt/lowcmd``,
with the exact DDS type names, field names, order and types of Unitree's IDL (unitree_sdk2,
``unitree_go`` for quadrupeds: Go2, B2; ``unitree_hg`` for humanoids: G1, H1-2). All are
``@final`` structs: on the wire they are plain XCDR1, byte for byte the same as the ones
``unitree_sdk2py`` generates (``tests/test_unitree.py`` checks names, fields and both
serialization directions against it when it is installed).

We define them here instead of depending on ``unitree_sdk2py``: its package ``__init__``
imports a subpackage its wheel lacks, it pins a cyclonedds without Python 3.11 wheels, and its
CRC helper loads a shared library the wheel does not ship.

The CRC (:func:`crc`) is Unitree's ``crc32_core``: the message's C struct (natural alignment,
little endian) read as 32-bit words, all but the last one (the ``crc`` field itself), through a
non-reflected CRC-32 (polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no final xor) fed each
word most significant bit first. Robots drop commands whose CRC is wrong.
"""

# no `from __future__ import annotations`: cyclonedds reads the field annotations as objects

import struct
import typing
import zlib
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl import annotations as annotate
from cyclonedds.idl import types

u8, u16, u32, i16, i32, f32 = (types.uint8, types.uint16, types.uint32, types.int16, types.int32,
                               types.float32)
array = types.array


# -- unitree_go: quadrupeds (Go2, B2) ---------------------------------------------------------
@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoIMUState_(IdlStruct, typename="unitree_go.msg.dds_.IMUState_"):
    quaternion: array[f32, 4]        # w, x, y, z
    gyroscope: array[f32, 3]         # rad/s, body frame
    accelerometer: array[f32, 3]     # m/s^2, body frame
    rpy: array[f32, 3]               # rad
    temperature: u8


@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoMotorState_(IdlStruct, typename="unitree_go.msg.dds_.MotorState_"):
    mode: u8
    q: f32
    dq: f32
    ddq: f32
    tau_est: f32
    q_raw: f32
    dq_raw: f32
    ddq_raw: f32
    temperature: u8
    lost: u32
    reserve: array[u32, 2]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoBmsState_(IdlStruct, typename="unitree_go.msg.dds_.BmsState_"):
    version_high: u8
    version_low: u8
    status: u8
    soc: u8
    current: i32
    cycle: u16
    bq_ntc: array[u8, 2]
    mcu_ntc: array[u8, 2]
    cell_vol: array[u16, 15]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoLowState_(IdlStruct, typename="unitree_go.msg.dds_.LowState_"):
    head: array[u8, 2]
    level_flag: u8
    frame_reserve: u8
    sn: array[u32, 2]
    version: array[u32, 2]
    bandwidth: u16
    imu_state: GoIMUState_
    motor_state: array[GoMotorState_, 20]
    bms_state: GoBmsState_
    foot_force: array[i16, 4]
    foot_force_est: array[i16, 4]
    tick: u32                        # ms
    wireless_remote: array[u8, 40]
    bit_flag: u8
    adc_reel: f32
    temperature_ntc1: u8
    temperature_ntc2: u8
    power_v: f32
    power_a: f32
    fan_frequency: array[u16, 4]
    reserve: u32
    crc: u32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoMotorCmd_(IdlStruct, typename="unitree_go.msg.dds_.MotorCmd_"):
    mode: u8                         # 0x01: servo (PMSM) mode, 0x00: off
    q: f32
    dq: f32
    tau: f32
    kp: f32
    kd: f32
    reserve: array[u32, 3]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoBmsCmd_(IdlStruct, typename="unitree_go.msg.dds_.BmsCmd_"):
    off: u8
    reserve: array[u8, 3]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoLowCmd_(IdlStruct, typename="unitree_go.msg.dds_.LowCmd_"):
    head: array[u8, 2]               # 0xFE, 0xEF
    level_flag: u8                   # 0xFF: low level
    frame_reserve: u8
    sn: array[u32, 2]
    version: array[u32, 2]
    bandwidth: u16
    motor_cmd: array[GoMotorCmd_, 20]
    bms_cmd: GoBmsCmd_
    wireless_remote: array[u8, 40]
    led: array[u8, 12]
    fan: array[u8, 2]
    gpio: u8
    reserve: u32
    crc: u32


# -- unitree_hg: humanoids (G1, H1-2) ---------------------------------------------------------
@dataclass
@annotate.final
@annotate.autoid("sequential")
class HgIMUState_(IdlStruct, typename="unitree_hg.msg.dds_.IMUState_"):
    quaternion: array[f32, 4]        # w, x, y, z
    gyroscope: array[f32, 3]
    accelerometer: array[f32, 3]
    rpy: array[f32, 3]
    temperature: i16


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HgMotorState_(IdlStruct, typename="unitree_hg.msg.dds_.MotorState_"):
    mode: u8
    q: f32
    dq: f32
    ddq: f32
    tau_est: f32
    temperature: array[i16, 2]
    vol: f32
    sensor: array[u32, 2]
    motorstate: u32
    reserve: array[u32, 4]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HgLowState_(IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    version: array[u32, 2]
    mode_pr: u8
    mode_machine: u8                 # robot type; a command must echo it
    tick: u32
    imu_state: HgIMUState_
    motor_state: array[HgMotorState_, 35]
    wireless_remote: array[u8, 40]
    reserve: array[u32, 4]
    crc: u32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HgMotorCmd_(IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    mode: u8                         # 1: enabled, 0: off
    q: f32
    dq: f32
    tau: f32
    kp: f32
    kd: f32
    reserve: u32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HgLowCmd_(IdlStruct, typename="unitree_hg.msg.dds_.LowCmd_"):
    mode_pr: u8                      # 0: pitch/roll ankle mode
    mode_machine: u8
    motor_cmd: array[HgMotorCmd_, 35]
    reserve: array[u32, 4]
    crc: u32


# -- zero-filled messages ---------------------------------------------------------------------
def _scalar_kind(hint: Any) -> str | None:
    """'uint8', 'float32', ... for a primitive annotation, else None."""
    args = typing.get_args(hint)
    return args[1] if len(args) == 2 and isinstance(args[1], str) else None


def zero(cls: type) -> Any:
    """A message of type ``cls`` with every field zero."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return cls(**{f.name: _zero_value(hints[f.name]) for f in fields(cls)})


def _zero_value(hint: Any) -> Any:
    kind = _scalar_kind(hint)
    if kind is not None:
        return 0.0 if kind.startswith("float") else 0
    if isinstance(hint, type) and issubclass(hint, IdlStruct):
        return zero(hint)
    arr = typing.get_args(hint)[1]  # types.array[...]
    return [_zero_value(arr.subtype) for _ in range(arr.length)]


# -- C layout and CRC -------------------------------------------------------------------------
_C = {"uint8": ("B", 1), "int8": ("b", 1), "uint16": ("H", 2), "int16": ("h", 2),
      "uint32": ("I", 4), "int32": ("i", 4), "float32": ("f", 4), "uint64": ("Q", 8),
      "int64": ("q", 8), "float64": ("d", 8)}


def _layout(hint: Any, offset: int) -> tuple[list[str], int, int]:
    """The struct format pieces of ``hint`` placed at ``offset``: (pieces, new offset,
    alignment). C rules: each member at a multiple of its alignment, a struct padded to a
    multiple of its largest member's alignment."""
    kind = _scalar_kind(hint)
    if kind is not None:
        code, size = _C[kind]
        pad = -offset % size
        return ([f"{pad}x"] if pad else []) + [code], offset + pad + size, size
    if isinstance(hint, type) and issubclass(hint, IdlStruct):
        start_pad, pieces, align = 0, [], 1
        hints = typing.get_type_hints(hint, include_extras=True)
        inner_align = max(_alignment(hints[f.name]) for f in fields(hint))
        start_pad = -offset % inner_align
        pos = offset + start_pad
        for f in fields(hint):
            p, pos, a = _layout(hints[f.name], pos)
            pieces += p
            align = max(align, a)
        end_pad = -pos % align
        out = ([f"{start_pad}x"] if start_pad else []) + pieces + ([f"{end_pad}x"] if end_pad else [])
        return out, pos + end_pad, align
    arr = typing.get_args(hint)[1]
    pieces, pos, align = [], offset, 1
    for _ in range(arr.length):
        p, pos, align = _layout(arr.subtype, pos)
        pieces += p
    return pieces, pos, align


def _alignment(hint: Any) -> int:
    kind = _scalar_kind(hint)
    if kind is not None:
        return _C[kind][1]
    if isinstance(hint, type) and issubclass(hint, IdlStruct):
        h = typing.get_type_hints(hint, include_extras=True)
        return max(_alignment(h[f.name]) for f in fields(hint))
    return _alignment(typing.get_args(hint)[1].subtype)


@lru_cache(maxsize=None)
def c_struct(cls: type) -> struct.Struct:
    """The little-endian C layout of message type ``cls`` (Unitree's structs in memory)."""
    pieces, _, _ = _layout(cls, 0)
    return struct.Struct("<" + "".join(pieces))


def _flatten(value: Any, out: list) -> None:
    if isinstance(value, IdlStruct):
        for f in fields(value):
            _flatten(getattr(value, f.name), out)
    elif isinstance(value, (bytes, bytearray)):  # uint8 arrays come back from DDS as bytes
        out.extend(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _flatten(v, out)
    else:
        out.append(value)


def pack_c(msg: IdlStruct) -> bytes:
    """``msg`` as the bytes of Unitree's C struct."""
    values: list = []
    _flatten(msg, values)
    try:
        return c_struct(type(msg)).pack(*values)
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__}: a field value does not fit its type ({exc})") from None


_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc32_core(words: np.ndarray | bytes) -> int:
    """Unitree's ``crc32_core`` over 32-bit words (a uint32 array, or little-endian bytes whose
    length is a multiple of 4). Bit by bit it is ``crc = (crc << 1) ^ (poly if crc's top bit)
    ^ (poly if the data bit)``, MSB first from 0xFFFFFFFF: a non-reflected CRC-32 over each
    word's big-endian bytes, computed here through zlib's reflected one on bit-reversed bytes."""
    if isinstance(words, (bytes, bytearray, memoryview)):
        if len(words) % 4:
            raise ValueError(f"crc32_core: {len(words)} bytes is not a whole number of 32-bit words")
        data = np.frombuffer(words, dtype="<u4")
    else:
        data = np.asarray(words, dtype=np.uint32)
    reflected = zlib.crc32(data.astype(">u4").tobytes().translate(_REVERSE)) ^ 0xFFFFFFFF
    return _reverse32(reflected)


def _reverse32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def crc(msg: IdlStruct) -> int:
    """The CRC of a LowCmd_ / LowState_ message: :func:`crc32_core` over its C struct's words
    except the last (its ``crc`` field)."""
    raw = pack_c(msg)
    return crc32_core(raw[:len(raw) - 4])


def with_crc(msg: IdlStruct) -> IdlStruct:
    """``msg`` with its ``crc`` field set (in place); returns it."""
    msg.crc = crc(msg)
    return msg
