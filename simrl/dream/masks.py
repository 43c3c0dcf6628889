"""Explicit dropout masks: one Bernoulli keep-mask per hidden layer and per row.

``nn.Dropout`` draws a new mask on every call, so a network using it is a different function
each step. Here a mask is data: it is drawn from a seeded ``torch.Generator``, can be kept for
as long as wanted (one dream world for one episode), stored, reloaded and replayed. The world
model multiplies hidden activations by ``mask / (1 - p)`` (inverted dropout), so the all-ones
mask is the usual "no dropout at inference" network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator


@dataclass
class DropoutMasks:
    """``n`` masks: ``layers[i]`` is an (n, hidden_i) float tensor of 0s and 1s."""

    layers: tuple[torch.Tensor, ...]
    p: float

    @classmethod
    def sample(cls, n: int, sizes: Sequence[int], p: float, generator: torch.Generator
               ) -> "DropoutMasks":
        """``n`` independent masks keeping each unit with probability ``1 - p``, drawn on the
        generator's device."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        device = generator.device
        layers = tuple(torch.bernoulli(torch.full((n, h), 1.0 - p, device=device), generator=generator)
                       for h in sizes)
        return cls(layers, float(p))

    @classmethod
    def from_seed(cls, seed: int, n: int, sizes: Sequence[int], p: float,
                  device: torch.device | str = "cpu") -> "DropoutMasks":
        """The same ``n`` masks for the same seed, sizes, p and device."""
        return cls.sample(n, sizes, p, make_generator(seed, device))

    @classmethod
    def ones(cls, n: int, sizes: Sequence[int], p: float, device: torch.device | str = "cpu"
             ) -> "DropoutMasks":
        """Masks keeping every unit (with the ``1 / (1 - p)`` scaling this is the network
        without dropout)."""
        return cls(tuple(torch.ones(n, h, device=device) for h in sizes), float(p))

    def __len__(self) -> int:
        return self.layers[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.layers[0].device

    def scaled(self) -> tuple[torch.Tensor, ...]:
        """The factors the hidden activations are multiplied by: ``mask / (1 - p)``."""
        return tuple(m / (1.0 - self.p) for m in self.layers)

    def select(self, idx: torch.Tensor | Sequence[int]) -> "DropoutMasks":
        """The masks of rows ``idx``."""
        return DropoutMasks(tuple(m[idx] for m in self.layers), self.p)

    def replace(self, idx: torch.Tensor, other: "DropoutMasks") -> "DropoutMasks":
        """A copy with rows ``idx`` replaced by ``other``'s masks (out of place, so it is safe
        inside and outside ``torch.inference_mode``)."""
        return DropoutMasks(tuple(mine.index_put((idx,), theirs)
                                  for mine, theirs in zip(self.layers, other.layers)), self.p)

    def to(self, device: torch.device | str) -> "DropoutMasks":
        return DropoutMasks(tuple(m.to(device) for m in self.layers), self.p)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and floats (``torch.save``/``torch.load(weights_only=True)`` safe)."""
        return {"p": self.p, "layers": [m.to(torch.bool).cpu() for m in self.layers]}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device | str = "cpu"
                        ) -> "DropoutMasks":
        return cls(tuple(m.to(device=device, dtype=torch.float32) for m in state["layers"]),
                   float(state["p"]))

    def equal(self, other: "DropoutMasks") -> bool:
        return self.p == other.p and all(torch.equal(a, b) for a, b in zip(self.layers, other.layers))
