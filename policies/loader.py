"""``policies.load``: any trained controller file as a deterministic callable policy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from policies.checkpoint import LoadedPolicy, load_checkpoint
from policies.sb3 import load_sb3


def load(path: str | os.PathLike, task: Any = None, device: str | torch.device = "cpu",
         **sb3_options: Any) -> LoadedPolicy:
    """Loads a simrl checkpoint directory, or a Stable-Baselines3 ``.zip`` (which needs ``task``;
    ``sb3_options`` go to :func:`policies.sb3.load_sb3`, e.g. ``trust_pickle``).

    ``task`` (a name or a task object), when given, must be the checkpoint's task.
    """
    if Path(path).suffix == ".zip":
        return load_sb3(Path(path), task, device=device, **sb3_options)
    return load_checkpoint(path, task, device)
