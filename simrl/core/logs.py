"""Real-log writer and reader: one MCAP file per run (DESIGN.md, Formats -> Real log).

Layout: a metadata record named ``"simrl"`` (robot, task, control period, observation and
action names, policy id, source, format version, free extras; all values strings, lists
JSON-encoded), then one JSON message per control step on channel ``/simrl/step`` in
zstd-compressed chunks. Chunks are flushed to disk as they fill, so a crash loses at most
the last chunk. After every chunk the writer ends the file with a DataEnd record, a footer
without summary and the closing magic (overwritten by the next chunk), so a file cut by
``kill -9`` between chunks is a valid MCAP for every reader (``mcap.reader.make_reader``,
Foxglove); simrl's reader reports it as truncated (no summary: the writer never closed it).
A file cut in the middle of a chunk write reads with simrl up to its last whole chunk, with a
warning, and :func:`recover_log` rewrites those chunks into a
complete file for the other readers. A writer never replaces an existing file.

Reading is bounded: a chunk may decompress to at most ``max_chunk_bytes`` (64 MiB by default;
simrl writes 64 KiB chunks), whatever its header claims, so a small hostile file cannot take
the reader's memory or minutes of CPU.

Non-finite floats are stored as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` so
each message stays standard JSON (Foxglove). No torch here: the robot computer uses this.
"""
from __future__ import annotations

import json
import math
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from mcap.data_stream import RecordBuilder
from mcap.records import Channel, Chunk, DataEnd, Footer, Message, Metadata
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import CompressionType, Writer

FORMAT_VERSION = 1
META_NAME = "simrl"
END_NAME = "simrl.end"  # closing metadata record: how the run ended (stop reason, detail)
TOPIC = "/simrl/step"
SOURCES = ("robot", "sim2sim", "sim")
DEFAULT_CHUNK_SIZE = 64 * 1024  # bytes of uncompressed messages per chunk
MAX_CHUNK_BYTES = 64 << 20  # what one chunk may decompress to when read
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


class LogExistsError(FileExistsError, ValueError):
    """A log file is already there: simrl never overwrites a log."""


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


def _seal_bytes() -> bytes:
    builder = RecordBuilder()
    DataEnd(data_section_crc=0).write(builder)
    Footer(summary_start=0, summary_offset_start=0, summary_crc=0).write(builder)
    return builder.end() + _MAGIC


_SEAL = _seal_bytes()


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
    An existing ``path`` is never replaced (:class:`LogExistsError`).
    """

    def __init__(self, path: str | os.PathLike, meta: LogMeta, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 chunk_steps: int | None = None, fsync: bool = True) -> None:
        self.path, self.meta = Path(path), meta
        self.chunk_steps, self.fsync, self.steps = chunk_steps, fsync, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = open(self.path, "xb")
        except FileExistsError:
            raise LogExistsError(f"file {self.path}: a log already exists there; simrl never "
                                 "overwrites a log (choose another name)") from None
        self._mcap = Writer(self._file, chunk_size=chunk_size, compression=CompressionType.ZSTD)
        self._mcap.start(profile="", library="simrl")
        self._mcap.add_metadata(META_NAME, meta.to_record())
        schema = self._mcap.register_schema("simrl.Step", "jsonschema", json.dumps(STEP_SCHEMA).encode())
        self._channel = self._mcap.register_channel(TOPIC, "json", schema)
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._closed, self._in_chunk = False, 0
        self._seal()  # header + metadata on disk before the first step, a valid empty MCAP

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
            self._seal()

    def flush(self) -> None:
        """Close the chunk in progress and put it on disk."""
        self._mcap.flush()
        self._in_chunk = 0
        self._seal()

    def _seal(self) -> None:
        """Ends the file with DataEnd, a footer without summary and the magic, puts it on disk
        and moves back before them: the next chunk (or the real summary) overwrites them, and
        until then the file is a complete MCAP."""
        pos = self._file.tell()
        self._file.write(_SEAL)
        self._sync()
        self._file.seek(pos)

    def _sync(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self, end: Mapping[str, str] | None = None) -> None:
        """Write the last chunk, the closing record ``end`` (how the run ended, strings;
        read back as :attr:`RealLog.end`), summary and footer; idempotent."""
        if not self._closed:
            self._closed = True
            if end:
                self._mcap.flush()
                self._mcap.add_metadata(END_NAME, {str(k): str(v) for k, v in end.items()})
            self._mcap.finish()
            self._file.truncate()  # nothing of an older seal may stay behind the footer
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
    end: dict[str, str] = field(default_factory=dict)  # the closing record (stop reason, detail)

    def __len__(self) -> int:
        return len(self.t)


def _decompress(path: str, chunk: Chunk, limit: int) -> bytes:
    """A chunk's records, never more than ``limit`` bytes of them (LogError otherwise)."""
    size = chunk.uncompressed_size
    if size > limit:
        raise LogError(f"file {path}: field chunk.uncompressed_size is {size:,} bytes, over the "
                       f"limit of {limit:,} (corrupt or hostile file; read_log(max_chunk_bytes=...) "
                       "raises it)")
    if chunk.compression == "zstd":
        import zstandard
        reader, parts, got = zstandard.ZstdDecompressor().stream_reader(chunk.data), [], 0
        while got <= size and (part := reader.read(min(1 << 20, size + 1 - got))):
            parts.append(part)
            got += len(part)
        data = b"".join(parts)
    elif chunk.compression == "lz4":
        import lz4.frame
        data = lz4.frame.LZ4FrameDecompressor().decompress(chunk.data, max_length=size + 1)
    elif chunk.compression == "":
        data = chunk.data
    else:
        raise LogError(f"file {path}: field chunk.compression {chunk.compression!r} is not supported")
    if len(data) != size:
        raise ValueError(f"chunk decompresses to {'more' if len(data) > size else len(data)} bytes, "
                         f"its header says {size}")
    if chunk.uncompressed_crc and zlib.crc32(data) != chunk.uncompressed_crc:
        raise ValueError("chunk CRC mismatch")
    return data


def _records(path: str, f: Any, limit: int) -> Iterable[Any]:
    """The records of an MCAP stream, chunks opened with bounded decompression."""
    for rec in StreamReader(f, skip_magic=True, emit_chunks=True, record_size_limit=1 << 31).records:
        if isinstance(rec, Chunk):
            data = _decompress(path, rec, limit)
            yield from breakup_chunk(Chunk(compression="", data=data, message_start_time=0,
                                           message_end_time=0, uncompressed_crc=0,
                                           uncompressed_size=len(data)))
        else:
            yield rec


def _scan(path: str, limit: int = MAX_CHUNK_BYTES, end: dict[str, str] | None = None
          ) -> tuple[dict[str, str] | None, list[Message], bool, str]:
    """Stream records: (simrl metadata, step messages, complete?, reason if not); the
    closing record goes into ``end``."""
    meta, messages, channels = None, [], set()
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise LogError(f"file {path}: field magic: not an MCAP file")
        try:
            for rec in _records(path, f, limit):
                if isinstance(rec, Metadata) and rec.name == META_NAME and meta is None:
                    meta = dict(rec.metadata)
                elif isinstance(rec, Metadata) and rec.name == END_NAME and end is not None:
                    end.update(rec.metadata)
                elif isinstance(rec, Channel) and rec.topic == TOPIC:
                    channels.add(rec.id)
                elif isinstance(rec, Message) and rec.channel_id in channels:
                    messages.append(rec)
                elif isinstance(rec, Footer):
                    if rec.summary_start == 0:  # the writer's seal: it never closed the file
                        return meta, messages, False, "not closed by its writer"
                    return meta, messages, True, ""
        except LogError:
            raise
        except Exception as e:  # truncation or corruption: keep what was read whole
            return meta, messages, False, f"{type(e).__name__}: {e}"
    return meta, messages, False, "no footer"


def recover_log(src: str | os.PathLike, dst: str | os.PathLike,
                max_chunk_bytes: int = MAX_CHUNK_BYTES) -> int:
    """Rewrites every whole chunk of the (truncated) log ``src`` into a complete, closed log
    ``dst`` (never replaced if it exists) that every MCAP reader opens; returns the steps kept."""
    src, dst = str(src), Path(dst)
    rec, messages, complete, reason = _scan(src, max_chunk_bytes)
    if rec is None:
        raise LogError(f"file {src}: field metadata: no {META_NAME!r} metadata record")
    meta = LogMeta.from_record(rec, src)
    writer = LogWriter(dst, meta)
    try:
        for m in messages:
            writer._mcap.add_message(writer._channel, log_time=m.log_time, publish_time=m.publish_time,
                                     sequence=m.sequence, data=m.data)
        writer.steps = len(messages)
    finally:
        writer.close()
    return len(messages)


def _floats(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)  # numpy parses "NaN"/"Infinity"/"-Infinity"


def read_log(path: str | os.PathLike, allow_nan: bool = False,
             max_chunk_bytes: int = MAX_CHUNK_BYTES) -> RealLog:
    """Read one real log; a truncated file yields its whole chunks and a TruncatedLogWarning.
    ``max_chunk_bytes`` bounds what one chunk may decompress to (LogError beyond)."""
    path = str(path)
    end: dict[str, str] = {}
    rec, messages, complete, reason = _scan(path, max_chunk_bytes, end)
    payloads = [m.data for m in messages]
    if rec is None:
        raise LogError(f"file {path}: field metadata: no {META_NAME!r} metadata record")
    meta = LogMeta.from_record(rec, path)
    if not complete:
        warnings.warn(f"file {path}: truncated log ({reason}); recovered {len(payloads)} messages "
                      f"from whole chunks (simrl.core.logs.recover_log('{path}', OUT) writes them to a "
                      "complete file)", TruncatedLogWarning, stacklevel=2)
    if not payloads:
        raise LogError(f"file {path}: field step: empty log (zero steps)")
    try:
        log = _decode(path, meta, [json.loads(p) for p in payloads], allow_nan, complete)
        log.end = end
        return log
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
