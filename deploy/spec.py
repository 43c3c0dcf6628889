"""Reading a checkpoint on the robot computer: its ``spec.json`` and the task it names, no torch.

(:mod:`policies.checkpoint` does the same with torch loaded; this module keeps the runtime free
of it.)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "policy.pt"
SPEC_FORMAT = "simrl-checkpoint"
SUPPORTED_VERSION = 1


def read_spec(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``spec.json``; ValueError when it is missing, unreadable or too new."""
    file = Path(checkpoint) / SPEC_FILE
    try:
        spec = json.loads(file.read_text())
    except FileNotFoundError:
        raise ValueError(f"checkpoint {checkpoint}: no {SPEC_FILE} (is it a simrl checkpoint "
                         "directory?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{file}: not a simrl checkpoint spec")
    version = spec.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= SUPPORTED_VERSION:
        raise ValueError(f"{file}: checkpoint format version {version!r} is not supported "
                         f"(this runtime reads version {SUPPORTED_VERSION})")
    return spec


def build_task(spec: dict[str, Any], model: str | None = None):
    """The task the checkpoint was trained on, with its saved config; ``model`` replaces the
    robot model (an MJCF path) when given. Tasks are cached per process (compiling a robot
    model can take seconds; a task's functions and model are not changed by their users)."""
    return _task(spec["task"], json.dumps(spec.get("task_config", {}), sort_keys=True), model)


@functools.lru_cache(maxsize=8)
def _task(name: str, config_json: str, model: str | None):
    from envs.tasks import make_config, make_task
    from simrl.config import from_dict
    config = from_dict(make_config(name), json.loads(config_json), f"{name} config")
    if model is not None:
        config.model = model
    return make_task(name, config=config)


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
    return f"{root.name}@{file_sha256(root / WEIGHTS_FILE)[:12]}"
