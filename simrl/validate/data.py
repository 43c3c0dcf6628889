"""The held-out real data a ranking scores every checkpoint on: real logs read with
:mod:`simrl.core.logs`, checked against the checkpoints, and stacked into step arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from simrl.core.logs import LogError, check_compatible, read_logs


@dataclass
class RealData:
    """All steps of a set of real logs: ``obs`` (n, obs_dim) raw observations and ``action``
    (n, act_dim) the actions that were applied; ``lengths`` steps per log, in ``paths`` order."""

    obs: np.ndarray
    action: np.ndarray
    lengths: np.ndarray
    paths: list[str]
    truncated: list[str]  # logs read only up to their last whole chunk

    def __len__(self) -> int:
        return len(self.obs)


def check_specs(specs: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """All checkpoints of a ranking must act in the same task with the same observation and
    action names; returns the first spec."""
    items = list(specs.items())
    if not items:
        raise ValueError("no checkpoints to rank")
    first_path, first = items[0]
    for path, spec in items[1:]:
        for key in ("task", "observation", "action"):
            a, b = first[key], spec[key]
            if key != "task":
                a, b = a["names"], b["names"]
            if a != b:
                raise ValueError(f"checkpoint {path}: field {key} differs from checkpoint {first_path}; "
                                 "all ranked checkpoints must share task, observation and action names")
    return first


def load_real_data(source: str | os.PathLike | Iterable[str | os.PathLike],
                   spec: Mapping[str, Any]) -> RealData:
    """Reads real logs (a directory of ``*.mcap``, a file or a list) and checks each against the
    checkpoint ``spec``: robot, task, observation and action names; NaN/inf are errors naming
    the file, the field and the step. Truncated files are used up to their last whole chunk
    (a warning names them)."""
    logs = read_logs(source)
    for log in logs:
        check_compatible(log, robot=spec["robot"]["model"] or spec["task"], task=spec["task"],
                         observation_names=spec["observation"]["names"],
                         action_names=spec["action"]["names"])
    if not logs:
        raise LogError(f"file {source}: field step: no real logs given")
    return RealData(np.concatenate([log.obs for log in logs]), np.concatenate([log.action for log in logs]),
                    np.array([len(log) for log in logs]), [log.path for log in logs],
                    [log.path for log in logs if log.truncated])
