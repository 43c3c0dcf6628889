"""The checkpoint spec, read without torch (the robot computer reads it this way).

A checkpoint is a directory with ``policy.pt`` (torch weights, read by
:mod:`policies.checkpoint`) and ``spec.json`` (everything else: task, observation and action
names, normalizer, network, DR, training record). This module reads and checks the spec and
names the weights by their hash; :func:`envs.tasks.task_from_spec` rebuilds the task it names.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

FORMAT = "simrl-checkpoint"
FORMAT_VERSION = 1
POLICY_FILE = "policy.pt"
SPEC_FILE = "spec.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of a newer format or does not fit the task."""


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks ``spec.json`` of the checkpoint directory ``path``."""
    root = Path(path)
    if not root.exists():
        raise CheckpointError(f"checkpoint {root} does not exist")
    if not root.is_dir():
        raise CheckpointError(f"checkpoint {root} is not a directory (a simrl checkpoint is a "
                              f"directory with {POLICY_FILE} and {SPEC_FILE}; SB3 models end in .zip)")
    file = root / SPEC_FILE
    if not file.exists():
        raise CheckpointError(f"checkpoint {root}: missing {SPEC_FILE} (is it a simrl checkpoint "
                              "directory?)")
    try:
        spec = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a simrl checkpoint spec (format {spec.get('format')!r})"
                              if isinstance(spec, dict) else f"{file}: not a simrl checkpoint spec")
    version = spec.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{file}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{file}: checkpoint format version {version} is newer than this simrl "
                              f"supports ({FORMAT_VERSION}); upgrade simrl to load it")
    missing = [k for k in ("task", "observation", "action", "network") if k not in spec]
    if missing:
        raise CheckpointError(f"{file}: missing fields {missing}")
    check_spec_values(spec, str(file))
    return spec


def _vector(spec: Mapping[str, Any], where: str, keys: tuple[str, ...], n: int | None,
            low: float | None = None, positive: bool = False) -> list[float] | None:
    """``spec[keys...]`` as a list of n finite numbers (>= low, or > 0 with ``positive``)."""
    value: Any = spec
    for k in keys:
        if not isinstance(value, Mapping) or k not in value:
            return None
        value = value[k]
    field = ".".join(keys)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise CheckpointError(f"{where}: field {field} must hold numbers")
    if n is not None and isinstance(value, list) and len(values) != n:
        raise CheckpointError(f"{where}: field {field} has {len(values)} values, expected {n}")
    for i, v in enumerate(values):
        name = f"{field}[{i}]" if isinstance(value, list) else field
        if not math.isfinite(v):
            raise CheckpointError(f"{where}: field {name} is {v}, must be finite")
        if positive and not v > 0:
            raise CheckpointError(f"{where}: field {name} is {v}, must be > 0")
        if low is not None and v < low:
            raise CheckpointError(f"{where}: field {name} is {v}, must be >= {low}")
    return [float(v) for v in values]


def check_spec_values(spec: Mapping[str, Any], where: str = "spec.json") -> None:
    """Raises :class:`CheckpointError` naming the field unless the numbers a robot acts on are
    sane: control period finite and in (0, 1] s; action scale finite and >= 0, offset finite,
    policy range within [-1, 1] with low <= high, actuator range finite with low <= high; PD
    gains kp > 0 and kd >= 0; default pose finite; normalizer mean finite, var >= 0, clip and
    eps > 0."""
    action = spec.get("action")
    names = action.get("names") if isinstance(action, Mapping) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{where}: field action.names must be a list of names")
    n = len(names)
    if "control_dt" in spec:
        dt = _vector(spec, where, ("control_dt",), None, positive=True)
        if dt is None or dt[0] > 1.0:
            raise CheckpointError(f"{where}: field control_dt is {spec['control_dt']}, must be in (0, 1] s")
    _vector(spec, where, ("action", "scale"), n, low=0.0)
    _vector(spec, where, ("action", "offset"), n)
    for lo_key, hi_key, bound in (("low", "high", 1.0), ("ctrl_low", "ctrl_high", None)):
        lo = _vector(spec, where, ("action", lo_key), n, low=None if bound is None else -bound)
        hi = _vector(spec, where, ("action", hi_key), n)
        if hi is not None and bound is not None and max(hi) > bound:
            raise CheckpointError(f"{where}: field action.{hi_key} exceeds {bound}")
        if lo is not None and hi is not None:
            bad = [i for i, (a, b) in enumerate(zip(lo, hi)) if a > b]
            if bad:
                raise CheckpointError(f"{where}: field action.{lo_key}[{bad[0]}] = {lo[bad[0]]} is above "
                                      f"action.{hi_key}[{bad[0]}] = {hi[bad[0]]}")
    _vector(spec, where, ("pd_gains", "kp"), n, positive=True)
    _vector(spec, where, ("pd_gains", "kd"), n, low=0.0)
    _vector(spec, where, ("default_joint_pos",), None)
    obs = spec.get("observation")
    obs_n = len(obs["names"]) if isinstance(obs, Mapping) and isinstance(obs.get("names"), list) else None
    _vector(spec, where, ("observation", "normalizer", "mean"), obs_n)
    _vector(spec, where, ("observation", "normalizer", "var"), obs_n, low=0.0)
    _vector(spec, where, ("observation", "normalizer", "count"), None, low=0.0)
    _vector(spec, where, ("observation", "normalizer", "clip"), None, positive=True)
    _vector(spec, where, ("observation", "normalizer", "eps"), None, positive=True)
    _vector(spec, where, ("residual", "scale"), None, low=0.0)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def policy_id(checkpoint: str | os.PathLike) -> str:
    """``<directory name>@<first 12 hex digits of sha256(policy.pt)>``: names a checkpoint
    uniquely in logs."""
    root = Path(checkpoint).resolve()
    return f"{root.name}@{file_sha256(root / POLICY_FILE)[:12]}"


__all__ = ["FORMAT", "FORMAT_VERSION", "POLICY_FILE", "SPEC_FILE", "CheckpointError", "load_spec",
           "check_spec_values", "file_sha256", "policy_id"]
