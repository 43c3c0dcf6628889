"""Fitting a world model to transitions: standard dropout training (a fresh mask per sample
and minibatch, drawn explicitly), early stopping on held-out episodes evaluated without dropout.

Loss = MSE of the normalized next-state delta + ``reward_weight`` x MSE of the normalized
reward + ``termination_weight`` x binary cross-entropy of the termination logit.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from simrl.core.progress import progress as make_progress
from simrl.dream.data import Transitions
from simrl.dream.masks import DropoutMasks, make_generator
from simrl.dream.model import WorldModel, WorldModelConfig

DISAGREEMENT_MASKS = 16                  # masks behind the reference disagreement (the default)


@dataclass
class FitConfig:
    """Training of the world model."""

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    val_fraction: float = 0.1            # episodes held out for early stopping
    patience: int = 10                   # epochs without validation improvement before stopping
    reward_weight: float = 1.0
    termination_weight: float = 1.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("fit: epochs, batch_size and patience must be >= 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError("fit: val_fraction must be in (0, 1)")


def _tensors(data: Transitions, device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: torch.as_tensor(getattr(data, k), device=device)
           for k in ("obs", "action", "next_obs", "reward")}
    out["terminated"] = torch.as_tensor(data.terminated, dtype=torch.float32, device=device)
    return out


def loss_terms(model: WorldModel, batch: dict[str, torch.Tensor],
               masks: DropoutMasks | None) -> torch.Tensor:
    """(state, reward, termination) losses of ``batch`` under per-row ``masks`` (None: no dropout)."""
    out = model(batch["obs"], batch["action"], None if masks is None else masks.scaled())
    o = model.obs_dim
    state = (out[:, :o] - model.normalized_delta(batch["obs"], batch["next_obs"])).square().mean()
    reward = (out[:, o] - model.normalized_reward(batch["reward"])).square().mean()
    term = F.binary_cross_entropy_with_logits(out[:, o + 1], batch["terminated"])
    return torch.stack([state, reward, term])


@torch.no_grad()
def evaluate_loss(model: WorldModel, data: dict[str, torch.Tensor], batch_size: int = 8192
                  ) -> np.ndarray:
    """Mean (state, reward, termination) losses without dropout."""
    n = len(data["obs"])
    total = torch.zeros(3, device=model.device)
    for i in range(0, n, batch_size):
        part = {k: v[i:i + batch_size] for k, v in data.items()}
        total += loss_terms(model, part, None) * len(part["obs"])
    return (total / n).cpu().numpy()


def fit(data: Transitions, model_cfg: WorldModelConfig | None = None, cfg: FitConfig | None = None,
        progress: bool = False) -> WorldModel:
    """A world model fitted to ``data``; ``model.fit_stats`` records the loss curves."""
    cfg = cfg or FitConfig()
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    train, val = data.split(cfg.val_fraction, cfg.seed)
    model = WorldModel(data.task, data.observation_names, data.action_names, model_cfg).to(device)
    model.set_statistics(train.obs, train.action, train.next_obs, train.reward, data.starts)
    weights = torch.tensor([1.0, cfg.reward_weight, cfg.termination_weight], device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    generator = make_generator(cfg.seed, device)
    tr, va = _tensors(train, device), _tensors(val, device)
    n, sizes, p = len(train), model.hidden_sizes, model.cfg.dropout
    history = {"train": [], "val": [], "val_initial": evaluate_loss(model, va).tolist()}
    best, best_loss, since_best = copy.deepcopy(model.state_dict()), float("inf"), 0
    t0 = time.perf_counter()
    bar = make_progress(cfg.epochs, "fit world model", unit="epoch", disable=not progress)
    for _ in range(cfg.epochs):
        bar.update(1)
        model.train()
        perm = torch.randperm(n, device=device, generator=generator)
        total = torch.zeros(3, device=device)
        for i in range(0, n - cfg.batch_size + 1, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            batch = {k: v[idx] for k, v in tr.items()}
            terms = loss_terms(model, batch, DropoutMasks.sample(len(idx), sizes, p, generator))
            optimizer.zero_grad(set_to_none=True)
            (terms * weights).sum().backward()
            optimizer.step()
            total += terms.detach()
        model.eval()
        batches = max(1, n // cfg.batch_size)
        history["train"].append((total / batches).tolist())
        val_terms = evaluate_loss(model, va)
        history["val"].append(val_terms.tolist())
        val_loss = float((val_terms * weights.cpu().numpy()).sum())
        bar.set_postfix(val=f"{val_loss:.4f}", refresh=False)
        if val_loss < best_loss - 1e-6:
            best, best_loss, since_best = copy.deepcopy(model.state_dict()), val_loss, 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    bar.close()
    model.load_state_dict(best)
    rows = np.random.default_rng(cfg.seed).choice(n, min(n, 4096), replace=False)
    masks = DropoutMasks.from_seed(0, DISAGREEMENT_MASKS, sizes, p, device)
    ref = model.raw_disagreement(tr["obs"][rows], tr["action"][rows], masks).mean()
    model.disagreement_ref.copy_(ref.clamp_min(1e-12))
    model.fit_stats = {"config": asdict(cfg), "epochs": len(history["val"]), "rows": len(data),
                       "train_rows": n, "val_rows": len(val), "best_val_loss": best_loss,
                       "history": history, "seconds": round(time.perf_counter() - t0, 2),
                       "task": data.task, "source": data.source, "behaviour": data.behaviour}
    return model
