"""Real-log writer and reader: one MCAP file per run (DESIGN.md, Formats -> Real log).

Layout: a metadata record named ``"simrl"`` (robot, task, control period, observation and
action names, policy id, source, format version, free extras; all values strings, lists
JSON-encoded), then one JSON message per control step on channel ``/simrl/step`` in
zstd-compressed chunks. Chunks are flushed to disk as they fill, so a crash loses at most
the last chunk; the reader recovers every whole chunk of a truncated file, with a warning.

Non-finite floats are stored as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` so
each message stays standard JSON (Foxglove). No torch here: the robot computer uses this.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from mcap.records import Channel, Footer, Message, Metadata
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

FORMAT_VERSION = 1
META_NAME = "simrl"
TOPIC = "/simrl/step"
SOURCES = ("robot", "sim2sim", "sim")
DEFAULT_CHUNK_SIZE = 64 * 1024  # bytes of uncompressed messages per chunk
_MAGIC = b"\x89MCAP0\r\n"
_RESERVED = ("robot", "task", "control_period", "observation_names", "action_names",
             "policy_id", "source", "format_version")
_FLOATS = {"type": "array", "items": {"type": ["number", "string"]}}
STEP_SCHEMA = {
    "title": "simrl.Step", "type": "object",
    "properties": {
        "t": {"type": "number", "description": "time since start of run (s)"},
        "step": {"type": "integer"},
        "state": {"type": "object", "additionalProperties": {"type": "array"}},
        "obs": _FLOATS,
        "action": _FLOATS,
        "safety": {"type": "object", "additionalProperties": {"type": ["boolean", "integer"]}},
    },
    "required": ["t", "step", "state", "obs", "action", "safety"],
}


class LogError(ValueError):
    """A real log that cannot be used; the message names the file and the field."""


class TruncatedLogWarning(UserWarning):
    """A log without footer (writer killed mid-run): read up to its last whole chunk."""


@dataclass
class LogMeta:
    """Run metadata, stored as the MCAP metadata record ``"simrl"``."""

    robot: str
    task: str
    control_period: float  # seconds per control step
    observation_names: list[str]
    action_names: list[str]
    policy_id: str
    source: str  # one of SOURCES
    format_version: int = FORMAT_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.observation_names, self.action_names = list(self.observation_names), list(self.action_names)
        if self.source not in SOURCES:
            raise ValueError(f"LogMeta.source must be one of {SOURCES}, got {self.source!r}")
        if not (float(self.control_period) > 0):
            raise ValueError(f"LogMeta.control_period must be > 0, got {self.control_period!r}")
        for key, names in (("observation_names", self.observation_names), ("action_names", self.action_names)):
            if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"LogMeta.{key} must be a non-empty list of distinct strings")
        for k, v in self.extra.items():
            if k in _RESERVED or not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"LogMeta.extra[{k!r}]: keys must be new strings, values strings")

    def to_record(self) -> dict[str, str]:
        """The MCAP metadata key/values (all strings)."""
        return {"robot": self.robot, "task": self.task, "control_period": repr(float(self.control_period)),
                "observation_names": json.dumps(self.observation_names),
                "action_names": json.dumps(self.action_names), "policy_id": self.policy_id,
                "source": self.source, "format_version": str(self.format_version), **self.extra}

    @classmethod
    def from_record(cls, rec: Mapping[str, str], path: str = "?") -> "LogMeta":
        """Parse a metadata record; LogError names the file and the bad field."""
        missing = [k for k in _RESERVED if k not in rec]
        if missing:
            raise LogError(f"file {path}: field metadata.{missing[0]} is missing")
        try:
            version = int(rec["format_version"])
            if version > FORMAT_VERSION:
                raise LogError(f"file {path}: field metadata.format_version {version} is newer than "
                               f"supported {FORMAT_VERSION}")
            extra = {k: v for k, v in rec.items() if k not in _RESERVED}
            return cls(rec["robot"], rec["task"], float(rec["control_period"]),
                       json.loads(rec["observation_names"]), json.loads(rec["action_names"]),
                       rec["policy_id"], rec["source"], version, extra)
        except LogError:
            raise
        except (ValueError, TypeError) as e:
            raise LogError(f"file {path}: field metadata is invalid: {e}") from e


def _encode(a: Any) -> Any:
    """float64 array-like -> (nested) JSON list, non-finite values as strings."""
    arr = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(arr)
    if finite.all():
        return arr.tolist()
    obj = arr.astype(object)
    obj[np.isnan(arr)], obj[arr == np.inf], obj[arr == -np.inf] = "NaN", "Infinity", "-Infinity"
    return obj.tolist()


class LogWriter:
    """Write one run to an MCAP file; use as a context manager (``close()`` writes the footer).

    ``chunk_size`` is the uncompressed size (bytes) at which a chunk is closed, compressed and
    flushed (and fsynced if ``fsync``); ``chunk_steps`` also closes a chunk every N steps.
    """

    def __init__(self, path: str | os.PathLike, meta: LogMeta, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 chunk_steps: int | None = None, fsync: bool = True) -> None:
        self.path, self.meta = Path(path), meta
        self.chunk_steps, self.fsync, self.steps = chunk_steps, fsync, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._mcap = Writer(self._file, chunk_size=chunk_size, compression=CompressionType.ZSTD)
        self._mcap.start(profile="", library="simrl")
        self._mcap.add_metadata(META_NAME, meta.to_record())
        schema = self._mcap.register_schema("simrl.Step", "jsonschema", json.dumps(STEP_SCHEMA).encode())
        self._channel = self._mcap.register_channel(TOPIC, "json", schema)
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._closed, self._in_chunk = False, 0
        self._sync()  # header + metadata on disk before the first step

    def write(self, t: float, step: int, state: Mapping[str, np.ndarray | Sequence[float]],
              obs: np.ndarray | Sequence[float], action: np.ndarray | Sequence[float],
              safety: Mapping[str, bool | int] | None = None) -> None:
        """Append one control step. NaN/inf are allowed (the reader can reject them)."""
        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        t = float(t)
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"field t must be finite and >= 0, got {t}")
        obs, action = np.asarray(obs, dtype=np.float64), np.asarray(action, dtype=np.float64)
        for key, arr, names in (("obs", obs, self.meta.observation_names), ("action", action, self.meta.action_names)):
            if arr.shape != (len(names),):
                raise ValueError(f"field {key} has shape {arr.shape}, expected ({len(names)},) from meta")
        enc_state = {}
        for name, value in state.items():
            arr = np.asarray(value, dtype=np.float64)
            if self._shapes.setdefault(name, arr.shape) != arr.shape:
                raise ValueError(f"field state.{name} has shape {arr.shape}, was {self._shapes[name]}")
            enc_state[str(name)] = _encode(arr)
        enc_safety = {}
        for name, flag in (safety or {}).items():
            if not isinstance(flag, (bool, int, np.bool_, np.integer)):
                raise ValueError(f"field safety.{name} must be bool or int, got {type(flag).__name__}")
            enc_safety[str(name)] = bool(flag) if isinstance(flag, (bool, np.bool_)) else int(flag)
        msg = {"t": t, "step": int(step), "state": enc_state, "obs": _encode(obs),
               "action": _encode(action), "safety": enc_safety}
        ns = int(round(t * 1e9))
        before = self._file.tell()
        self._mcap.add_message(self._channel, log_time=ns, publish_time=ns, sequence=self.steps,
                               data=json.dumps(msg, allow_nan=False).encode())
        self.steps += 1
        self._in_chunk += 1
        if self.chunk_steps and self._in_chunk >= self.chunk_steps:
            self.flush()
        elif self._file.tell() != before:  # the mcap writer closed a chunk
            self._in_chunk = 0
            self._sync()

    def flush(self) -> None:
        """Close the chunk in progress and put it on disk."""
        self._mcap.flush()
        self._in_chunk = 0
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Write the last chunk, summary and footer; idempotent."""
        if not self._closed:
            self._closed = True
            self._mcap.finish()
            self._sync()
            self._file.close()

    def __enter__(self) -> "LogWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class RealLog:
    """One run read back: per-step arrays, T = number of steps."""

    path: str
    meta: LogMeta
    t: np.ndarray  # (T,) float64 seconds
    step: np.ndarray  # (T,) int64
    obs: np.ndarray  # (T, obs_dim) float64
    action: np.ndarray  # (T, act_dim) float64
    state: dict[str, np.ndarray]  # name -> (T, ...) float64
    safety: dict[str, np.ndarray]  # flag -> (T,) bool or int (missing in a step: False/0)
    truncated: bool = False  # True if read from a file without footer

    def __len__(self) -> int:
        return len(self.t)


def _scan(path: str) -> tuple[dict[str, str] | None, list[bytes], bool, str]:
    """Stream records: (simrl metadata, step payloads, complete?, reason if not)."""
    meta, payloads, channels = None, [], set()
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise LogError(f"file {path}: field magic: not an MCAP file")
        f.seek(0)
        try:
            for rec in StreamReader(f, validate_crcs=True, record_size_limit=1 << 31).records:
                if isinstance(rec, Metadata) and rec.name == META_NAME and meta is None:
                    meta = dict(rec.metadata)
                elif isinstance(rec, Channel) and rec.topic == TOPIC:
                    channels.add(rec.id)
                elif isinstance(rec, Message) and rec.channel_id in channels:
                    payloads.append(rec.data)
                elif isinstance(rec, Footer):
                    return meta, payloads, True, ""
        except Exception as e:  # truncation or corruption: keep what was read whole
            return meta, payloads, False, f"{type(e).__name__}: {e}"
    return meta, payloads, False, "no footer"


def _floats(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)  # numpy parses "NaN"/"Infinity"/"-Infinity"


def read_log(path: str | os.PathLike, allow_nan: bool = False) -> RealLog:
    """Read one real log; a truncated file yields its whole chunks and a TruncatedLogWarning."""
    path = str(path)
    rec, payloads, complete, reason = _scan(path)
    if rec is None:
        raise LogError(f"file {path}: field metadata: no {META_NAME!r} metadata record")
    meta = LogMeta.from_record(rec, path)
    if not complete:
        warnings.warn(f"file {path}: truncated log ({reason}); recovered {len(payloads)} messages "
                      f"from whole chunks", TruncatedLogWarning, stacklevel=2)
    if not payloads:
        raise LogError(f"file {path}: field step: empty log (zero steps)")
    try:
        return _decode(path, meta, [json.loads(p) for p in payloads], allow_nan, complete)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, LogError):
            raise
        raise LogError(f"file {path}: field {e} is missing or malformed in a step message") from e


def _decode(path: str, meta: LogMeta, msgs: list[dict], allow_nan: bool, complete: bool) -> RealLog:
    """Stack decoded step messages into a RealLog, checking lengths and finiteness."""
    step = np.array([m["step"] for m in msgs], dtype=np.int64)
    cols: dict[str, np.ndarray] = {}
    for key, names in (("obs", meta.observation_names), ("action", meta.action_names)):
        for i, m in enumerate(msgs):
            if len(m[key]) != len(names):
                what = "observation_names" if key == "obs" else "action_names"
                raise LogError(f"file {path}: field {key} has length {len(m[key])} at step {step[i]}, "
                               f"but {what} has {len(names)} names")
        cols[key] = _floats([m[key] for m in msgs]).reshape(len(msgs), len(names))
        bad = ~np.isfinite(cols[key])
        if not allow_nan and bad.any():
            i, j = np.argwhere(bad)[0]
            kind = "NaN" if np.isnan(cols[key][i, j]) else "inf"
            raise LogError(f"file {path}: field {key} has {kind} at step {step[i]} ({names[j]})")
    state: dict[str, np.ndarray] = {}
    for name in msgs[0]["state"]:
        try:
            state[name] = _floats([m["state"][name] for m in msgs])
        except (KeyError, ValueError) as e:
            raise LogError(f"file {path}: field state.{name} is missing or changes shape: {e}") from e
    flags = sorted({k for m in msgs for k in m["safety"]})
    safety = {k: np.array([m["safety"].get(k, False) for m in msgs]) for k in flags}
    return RealLog(path, meta, _floats([m["t"] for m in msgs]), step, cols["obs"], cols["action"],
                   state, safety, truncated=not complete)


def read_logs(paths_or_dir: str | os.PathLike | Iterable[str | os.PathLike],
              allow_nan: bool = False) -> list[RealLog]:
    """Read a directory (all ``*.mcap``, sorted), one file, or a list of files."""
    if isinstance(paths_or_dir, (str, os.PathLike)):
        p = Path(paths_or_dir)
        paths = sorted(p.glob("*.mcap")) if p.is_dir() else [p]
        if p.is_dir() and not paths:
            raise LogError(f"file {p}: field path: directory has no *.mcap logs")
    else:
        paths = list(paths_or_dir)
    return [read_log(p, allow_nan=allow_nan) for p in paths]


def check_compatible(log: RealLog, robot: str | None = None, task: str | None = None,
                     observation_names: Sequence[str] | None = None,
                     action_names: Sequence[str] | None = None) -> None:
    """Raise LogError naming the file and field if the log does not match what is expected."""
    m = log.meta
    for key, want, have in (("robot", robot, m.robot), ("task", task, m.task),
                            ("observation_names", observation_names, m.observation_names),
                            ("action_names", action_names, m.action_names)):
        if want is None:
            continue
        if isinstance(have, list) and list(want) != have:
            diff = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
            raise LogError(f"file {log.path}: field {key} does not match: expected {len(want)} names, "
                           f"log has {len(have)}; first difference at index {diff}")
        if not isinstance(have, list) and want != have:
            raise LogError(f"file {log.path}: field {key} is {have!r}, expected {want!r}")
