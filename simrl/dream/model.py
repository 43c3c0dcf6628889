"""The world model: an MLP from (observation, action) to the next observation (as a normalized
delta), the reward and a termination logit, with dropout through explicit masks.

Every hidden activation is multiplied by a per-row factor ``mask / (1 - p)`` given by the caller
(:class:`~simrl.dream.masks.DropoutMasks`); without masks the network is the usual "no dropout
at inference" (weight-scaled) network. One row = one dream world, so N worlds with N masks are
N different simulators evaluated in one batched forward pass.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from policies.networks import ACTIVATIONS
from simrl.dream.masks import DropoutMasks

FORMAT = "simrl-world-model"
FORMAT_VERSION = 1


@dataclass
class WorldModelConfig:
    """Architecture of the world model."""

    hidden: tuple[int, ...] = (200, 200, 200)
    activation: str = "elu"              # elu | tanh | relu
    dropout: float = 0.1                 # probability of dropping a hidden unit
    margin: float = 0.25                 # predicted observations and rewards are clamped to the
                                         # data's range widened by this fraction of it on each side

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("world model: hidden must be one or more positive layer sizes")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"world model: unknown activation {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"world model: dropout must be in [0, 1), got {self.dropout}")


@dataclass
class Prediction:
    """One predicted step, denormalized."""

    next_obs: torch.Tensor               # (..., obs_dim)
    reward: torch.Tensor                 # (...)
    done_prob: torch.Tensor              # (...) probability that the episode terminates

    def mean(self) -> "Prediction":
        """The average over the leading (mask) dimension: Monte-Carlo dropout."""
        return Prediction(self.next_obs.mean(0), self.reward.mean(0), self.done_prob.mean(0))


class WorldModel(nn.Module):
    """MLP world model of one task; normalization statistics and the dream start states
    travel with it (``save``/``load``)."""

    def __init__(self, task: str, observation_names: Sequence[str], action_names: Sequence[str],
                 cfg: WorldModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or WorldModelConfig()
        self.task = task
        self.observation_names, self.action_names = list(observation_names), list(action_names)
        o, a = len(self.observation_names), len(self.action_names)
        self.obs_dim, self.act_dim = o, a
        dims = (o + a, *self.cfg.hidden)
        self.layers = nn.ModuleList(nn.Linear(i, j) for i, j in zip(dims[:-1], dims[1:]))
        self.activation = ACTIVATIONS[self.cfg.activation]()
        self.head = nn.Linear(dims[-1], o + 2)
        for name, size in (("in_mean", o + a), ("in_std", o + a), ("delta_mean", o), ("delta_std", o),
                           ("obs_low", o), ("obs_high", o), ("reward_stats", 4)):  # reward mean, std, low, high
            self.register_buffer(name, torch.zeros(size) if "mean" in name or "low" in name
                                 else torch.ones(size))
        self.register_buffer("disagreement_ref", torch.ones(()))
        self.register_buffer("starts", torch.zeros(1, o))
        self.fit_stats: dict[str, Any] = {}      # what fitting recorded (losses, data, epochs)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.cfg.hidden

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def set_statistics(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray,
                       reward: np.ndarray, starts: np.ndarray) -> None:
        """Normalization from data (float64 statistics, std floored at 1e-6) and the start states."""
        def stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            x = np.asarray(x, dtype=np.float64)
            return (torch.as_tensor(x.mean(0), dtype=torch.float32),
                    torch.as_tensor(np.maximum(x.std(0), 1e-6), dtype=torch.float32))
        in_mean, in_std = stats(np.concatenate([obs, action], axis=1))
        delta_mean, delta_std = stats(next_obs - obs)
        r_mean, r_std = stats(reward[:, None])
        r_range = torch.tensor([float(np.min(reward)), float(np.max(reward))])
        both = np.concatenate([obs, next_obs])
        values = {"in_mean": in_mean, "in_std": in_std, "delta_mean": delta_mean,
                  "delta_std": delta_std, "reward_stats": torch.cat([r_mean, r_std, r_range]),
                  "obs_low": torch.as_tensor(both.min(0)), "obs_high": torch.as_tensor(both.max(0))}
        for name, value in values.items():
            getattr(self, name).copy_(value)
        self.starts = torch.as_tensor(starts, dtype=torch.float32, device=self.device)

    def forward(self, obs: torch.Tensor, action: torch.Tensor,
                scales: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Raw output (..., obs_dim + 2): normalized delta, normalized reward, termination logit.
        ``scales[i]`` multiplies hidden layer i's activations (broadcast against (..., h_i))."""
        x = (torch.cat([obs, action], dim=-1) - self.in_mean) / self.in_std
        for i, layer in enumerate(self.layers):
            x = self.activation(layer(x))
            if scales is not None:
                x = x * scales[i]
        return self.head(x)

    def normalized_delta(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return (next_obs - obs - self.delta_mean) / self.delta_std

    def normalized_reward(self, reward: torch.Tensor) -> torch.Tensor:
        return (reward - self.reward_stats[0]) / self.reward_stats[1]

    def predict(self, obs: torch.Tensor, action: torch.Tensor, masks: DropoutMasks | None = None,
                per_mask: bool = False) -> Prediction:
        """The next step of each row under its own mask (``masks`` has one per row), with no
        dropout (``masks=None``), or, with ``per_mask``, of every row under every mask
        (outputs (K, N, ...))."""
        scales = None if masks is None else masks.scaled()
        if per_mask and scales is not None:
            obs, action = obs.unsqueeze(0), action.unsqueeze(0)
            scales = tuple(s.unsqueeze(1) for s in scales)
        out = self(obs, action, scales)
        o = self.obs_dim
        next_obs = obs + out[..., :o] * self.delta_std + self.delta_mean
        margin = self.cfg.margin * (self.obs_high - self.obs_low)
        next_obs = torch.maximum(torch.minimum(next_obs, self.obs_high + margin), self.obs_low - margin)
        mean, std, low, high = self.reward_stats
        r_margin = self.cfg.margin * (high - low)
        reward = (out[..., o] * std + mean).clamp(low - r_margin, high + r_margin)
        return Prediction(next_obs, reward, torch.sigmoid(out[..., o + 1]))

    @torch.no_grad()
    def raw_disagreement(self, obs: torch.Tensor, action: torch.Tensor, masks: DropoutMasks
                         ) -> torch.Tensor:
        """Variance over ``masks`` of the normalized next-state delta, averaged over dimensions."""
        scales = tuple(s.unsqueeze(1) for s in masks.scaled())
        out = self(obs.unsqueeze(0), action.unsqueeze(0), scales)[..., :self.obs_dim]
        return out.var(0).mean(-1)

    def disagreement(self, obs: Any, action: Any, num_masks: int = 16, seed: int = 0,
                     batch_size: int = 4096) -> np.ndarray:
        """Per-step out-of-distribution score: the disagreement of ``num_masks`` fixed masks
        (drawn from ``seed``) on the next state, divided by its mean over the training data (so
        about 1 in distribution, larger off it). ``obs`` (T, obs_dim), ``action`` (T, act_dim)."""
        dev = self.device
        masks = DropoutMasks.from_seed(seed, num_masks, self.hidden_sizes, self.cfg.dropout, dev)
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=dev)
        action = torch.as_tensor(np.asarray(action), dtype=torch.float32, device=dev).clamp(-1, 1)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim or action.shape != (len(obs), self.act_dim):
            raise ValueError(f"disagreement: expected obs (T, {self.obs_dim}) and action "
                             f"(T, {self.act_dim}), got {tuple(obs.shape)} and {tuple(action.shape)}")
        parts = [self.raw_disagreement(obs[i:i + batch_size], action[i:i + batch_size], masks)
                 for i in range(0, len(obs), batch_size)]
        return (torch.cat(parts) / self.disagreement_ref).cpu().numpy().astype(np.float64)

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, fit: dict[str, Any] | None = None) -> Path:
        """One ``.pt`` file (plain tensors and JSON-like values; ``weights_only`` loadable)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "task": self.task,
                    "observation_names": self.observation_names, "action_names": self.action_names,
                    "config": {**asdict(self.cfg), "hidden": list(self.cfg.hidden)},
                    "fit": dict(fit or {}),
                    "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "WorldModel":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"world model {path} does not exist")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError (pickled code, refused, never run), damage
            raise ValueError(f"{path}: not a readable simrl world model; refused without running "
                             f"anything ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a simrl world model")
        if data["format_version"] > FORMAT_VERSION:
            raise ValueError(f"{path}: world model format {data['format_version']} is newer than "
                             f"this simrl supports ({FORMAT_VERSION})")
        model = cls(data["task"], data["observation_names"], data["action_names"],
                    WorldModelConfig(**data["config"]))
        model.starts = data["state_dict"]["starts"].clone()
        model.load_state_dict(data["state_dict"])
        model.fit_stats = dict(data["fit"])
        return model.to(device).eval()
