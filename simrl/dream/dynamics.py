"""The world model under one inference mode, for N rows (dream worlds or open-loop rollouts).

Modes:

* ``episode``: each row holds its own mask, drawn when the row is reset (Dropout's Dream
  Land: every dream episode is a different simulator);
* ``step``: a fresh mask for every row at every step (ablation);
* ``fixed``: each row keeps the mask it was given (or drew at construction) across resets;
* ``none``: no dropout at inference (the weight-scaled "mean network");
* ``mean``: the average prediction of ``num_masks`` fixed masks (Monte-Carlo dropout).
"""

from __future__ import annotations

import torch

from simrl.dream.masks import DropoutMasks, make_generator
from simrl.dream.model import Prediction, WorldModel

MODES = ("episode", "step", "fixed", "none", "mean")


class MaskedDynamics:
    """``dynamics(obs, action) -> Prediction`` for ``n`` rows; ``reset(idx)`` draws new masks
    for rows ``idx`` in ``episode`` mode. Masks come from a generator seeded with ``seed``."""

    def __init__(self, model: WorldModel, n: int, mode: str = "episode", num_masks: int = 8,
                 seed: int = 0, masks: DropoutMasks | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown dream mode {mode!r}; use one of: {', '.join(MODES)}")
        if num_masks < 1:
            raise ValueError("num_masks must be >= 1")
        self.model, self.mode = model, mode
        self.generator = make_generator(seed, model.device)
        if masks is not None:
            if mode != "fixed" or len(masks) != n:
                raise ValueError(f"given masks need mode 'fixed' and one mask per row "
                                 f"({n}), got mode {mode!r} and {len(masks)} masks")
            self.masks: DropoutMasks | None = masks.to(model.device)
        elif mode in ("episode", "fixed"):
            self.masks = self.draw(n)
        elif mode == "mean":
            self.masks = self.draw(num_masks)
        else:
            self.masks = None

    def draw(self, k: int) -> DropoutMasks:
        """``k`` new masks from this dynamics' generator."""
        return DropoutMasks.sample(k, self.model.hidden_sizes, self.model.cfg.dropout, self.generator)

    def reset(self, idx: torch.Tensor) -> None:
        if self.mode == "episode" and len(idx):
            self.masks = self.masks.replace(idx, self.draw(len(idx)))

    def __call__(self, obs: torch.Tensor, action: torch.Tensor) -> Prediction:
        model = self.model
        if self.mode == "mean":
            return model.predict(obs, action, self.masks, per_mask=True).mean()
        if self.mode == "step":
            return model.predict(obs, action, self.draw(len(obs)))
        return model.predict(obs, action, self.masks)
