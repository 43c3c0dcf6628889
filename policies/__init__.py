"""What a trained controller is, independent of how it was trained.

>>> import policies
>>> policy = policies.load("runs/hopper/final")          # or an SB3 zip: load("m.zip", task="hopper")
>>> action = policy(obs)                                  # numpy or torch, deterministic, in [-1, 1]

Names are imported on first use, so ``import simrl.core.spec`` (checkpoint specs, no torch) stays
light enough for the robot computer.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load": "policies.loader", "save": "policies.checkpoint",
    "LoadedPolicy": "policies.checkpoint",
    "load_spec": "simrl.core.spec", "CheckpointError": "simrl.core.spec",
    "FORMAT_VERSION": "simrl.core.spec",
    "ActorCritic": "policies.networks", "NetworkConfig": "policies.networks",
    "Policy": "policies.networks", "RunningNorm": "policies.networks",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'policies' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
