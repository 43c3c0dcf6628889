"""Actor-critic MLPs and the running observation normalizer.

:class:`Policy` is what a checkpoint deploys: observation normalizer, actor MLP and the
state-independent log-std of its Gaussian. :class:`ActorCritic` adds the critic for training.
Actions live in [-1, 1] (the envs clip); the deterministic action is the clipped mean, or
``tanh`` of the mean for squashed (SAC) actors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass
class NetworkConfig:
    """Architecture of the actor and critic."""

    actor_hidden: tuple[int, ...] = (64, 64)    # actor MLP hidden layer sizes
    critic_hidden: tuple[int, ...] = (64, 64)   # critic MLP hidden layer sizes
    activation: str = "tanh"             # elu | tanh | relu
    init_log_std: float = 0.0            # initial log of the action noise std
    squash: bool = False                 # tanh on the actor mean (SAC-style actors)
    normalize_obs: bool = True           # running mean/std observation normalization
    obs_clip: float = 10.0               # normalized observations are clipped to +-obs_clip

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; use one of {', '.join(ACTIVATIONS)}")
        self.actor_hidden = tuple(int(h) for h in self.actor_hidden)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        if any(h < 1 for h in self.actor_hidden + self.critic_hidden):
            raise ValueError("hidden layer sizes must be positive")


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str,
        out_gain: float = 1.0) -> nn.Sequential:
    """Linear layers with ``activation`` between them, orthogonally initialized (zero biases;
    gain sqrt(2) on hidden layers, ``out_gain`` on the output layer)."""
    dims = (in_dim, *hidden, out_dim)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(a, b)
        last = i == len(dims) - 2
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2.0))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class RunningNorm(nn.Module):
    """Running mean and variance of observations (float64, Chan's parallel update) and the
    normalization ``clip((x - mean) / sqrt(var + eps), -clip, clip)``, as SB3's VecNormalize."""

    def __init__(self, size: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = float(clip), float(eps)
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merges the statistics of a batch ``x`` (n, size) into the running ones."""
        x = x.detach().to(torch.float64).reshape(-1, self.mean.shape[0])
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(torch.float64) - self.mean) / torch.sqrt(self.var + self.eps)
        return z.clamp(-self.clip, self.clip).to(torch.float32)


class Policy(nn.Module):
    """The deployable part: normalizer (optional), actor MLP, log-std of the action noise."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: NetworkConfig):
        super().__init__()
        self.obs_dim, self.act_dim, self.cfg = obs_dim, act_dim, cfg
        self.normalizer = RunningNorm(obs_dim, cfg.obs_clip) if cfg.normalize_obs else None
        self.actor = mlp(obs_dim, cfg.actor_hidden, act_dim, cfg.activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.init_log_std)))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.normalizer(obs) if self.normalizer is not None else obs.to(torch.float32)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """Mean action for normalized observations ``z`` (squashed when configured)."""
        mu = self.actor(z)
        return torch.tanh(mu) if self.cfg.squash else mu

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action in [-1, 1] for raw observations."""
        return self.mean(self.normalize(obs)).clamp(-1.0, 1.0)


class ActorCritic(nn.Module):
    """A :class:`Policy` plus a value MLP on the same normalized observations."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: NetworkConfig):
        super().__init__()
        self.policy = Policy(obs_dim, act_dim, cfg)
        self.critic = mlp(obs_dim, cfg.critic_hidden, 1, cfg.activation, out_gain=1.0)

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self.critic(z).squeeze(-1)
