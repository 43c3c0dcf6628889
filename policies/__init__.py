"""What a trained controller is, independent of how it was trained.

>>> import policies
>>> policy = policies.load("runs/hopper/final")          # or an SB3 zip: load("m.zip", task="hopper")
>>> action = policy(obs)                                  # numpy or torch, deterministic, in [-1, 1]
"""

from policies.checkpoint import (FORMAT_VERSION, CheckpointError, LoadedPolicy, load, load_spec,
                                 save)
from policies.networks import ActorCritic, NetworkConfig, Policy, RunningNorm

__all__ = ["load", "save", "load_spec", "CheckpointError", "LoadedPolicy", "FORMAT_VERSION",
           "ActorCritic", "NetworkConfig", "Policy", "RunningNorm"]
