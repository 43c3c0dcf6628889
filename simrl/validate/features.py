"""Features of a checkpoint on a set of observations: what its OOD detectors look at.

Parts (concatenated in this order when selected): ``obs``, the normalized (and clipped)
observation the actor sees; ``hidden``, the activations of the actor's last hidden layer;
``action``, the deterministic action in [-1, 1]. The actor's ``nn.Sequential`` is run layer by
layer here, so :mod:`policies` needs no hooks or changes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from policies.networks import Policy

PARTS = ("obs", "hidden", "action")


def check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    """Validates a feature selection; returns it in canonical order."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"feature parts must be a non-empty subset of {PARTS}, got {list(parts)}")
    return tuple(p for p in PARTS if p in parts)


@torch.inference_mode()
def policy_features(policy: Policy, obs: np.ndarray | torch.Tensor, parts: Sequence[str] = PARTS,
                    batch: int = 65536) -> torch.Tensor:
    """(n, d) float32 features of ``policy`` (a :class:`~policies.networks.Policy`, e.g.
    ``policies.load(path).module``) on raw observations ``obs`` (n, obs_dim)."""
    parts = check_parts(parts)
    x = torch.as_tensor(obs)
    if x.ndim != 2 or x.shape[1] != policy.obs_dim:
        raise ValueError(f"observations must have shape (n, {policy.obs_dim}), got {tuple(x.shape)}")
    layers = list(policy.actor)
    out = []
    for q in x.split(batch):
        z = policy.normalize(q)
        h = z
        for layer in layers[:-1]:
            h = layer(h)
        mean = layers[-1](h)
        action = (torch.tanh(mean) if policy.cfg.squash else mean).clamp(-1.0, 1.0)
        chosen = {"obs": z, "hidden": h, "action": action}
        out.append(torch.cat([chosen[p] for p in parts], 1))
    return torch.cat(out)
