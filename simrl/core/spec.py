"""The checkpoint spec, read without torch (the robot computer reads it this way).

A checkpoint is a directory with ``policy.pt`` (torch weights, read by
:mod:`policies.checkpoint`) and ``spec.json`` (everything else: task, observation and action
names, normalizer, network, DR, training record). This module reads and checks the spec and
names the weights by their hash; :func:`envs.tasks.task_from_spec` rebuilds the task it names.
"""

from __future__ import annotations

import hashlib
import json
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
    return spec


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
           "file_sha256", "policy_id"]
