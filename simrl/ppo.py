"""Batched PPO on torch (CUDA when present), in the style of rsl_rl.

One iteration collects ``num_steps`` control steps of every world into a :class:`RolloutStorage`
on the training device, computes GAE (episodes cut by the time limit are bootstrapped: their
last reward gets ``gamma * V(final_obs)`` added), then runs ``num_epochs`` passes of
``num_minibatches`` minibatches of the clipped surrogate, clipped value loss and entropy bonus,
with gradient clipping and the KL-adaptive learning rate of rsl_rl.

Observations are normalized (running statistics, updated while collecting) before they are
stored, so the stored log-probabilities stay consistent with the stored inputs. Rewards are
optionally divided by the running standard deviation of the discounted return (as Gymnasium's
``NormalizeReward`` and SB3's ``VecNormalize`` do), which keeps value targets near unit scale
whatever the task's reward scale.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from policies.networks import ActorCritic, RunningNorm
from simrl.core.config import require

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class PPOConfig:
    """PPO hyperparameters (an iteration is ``num_steps`` x ``num_envs`` env steps)."""

    num_steps: int = 32                  # rollout length per world and iteration
    num_epochs: int = 5                  # passes over each rollout
    num_minibatches: int = 4             # minibatches per epoch
    learning_rate: float = 3e-4          # Adam learning rate (start value with the adaptive schedule)
    schedule: str = "adaptive"           # adaptive (KL-driven, rsl_rl) | fixed
    desired_kl: float = 0.01             # KL target of the adaptive schedule
    min_lr: float = 1e-5                 # adaptive schedule's lower bound
    max_lr: float = 1e-2                 # adaptive schedule's upper bound
    gamma: float = 0.99                  # discount factor
    lam: float = 0.95                    # GAE lambda
    clip_param: float = 0.2              # PPO ratio clip (and value clip)
    clip_value: bool = True              # clip the value update like the policy's
    value_loss_coef: float = 1.0         # weight of the value loss
    entropy_coef: float = 0.002          # entropy bonus weight; 0 lets the hopper's action std collapse on some seeds
    max_grad_norm: float = 1.0           # gradient norm clip
    normalize_advantages: bool = True    # standardize advantages per minibatch
    normalize_rewards: bool = True       # divide rewards by the std of the discounted return

    def validate(self) -> None:
        for name in ("num_steps", "num_epochs", "num_minibatches"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "min_lr", "max_lr", "clip_param"):
            require(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        require(self.min_lr <= self.max_lr, "min_lr", f"{self.min_lr} exceeds max_lr {self.max_lr}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        require(0 <= self.lam <= 1, "lam", f"must be in [0, 1], got {self.lam}")
        require(self.schedule in ("adaptive", "fixed"), "schedule",
                f"use adaptive or fixed, got {self.schedule!r}")
        for name in ("desired_kl", "value_loss_coef", "entropy_coef", "max_grad_norm"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")

    def __post_init__(self) -> None:
        if self.schedule not in ("adaptive", "fixed"):
            raise ValueError(f"ppo.schedule must be 'adaptive' or 'fixed', got {self.schedule!r}")
        for name in ("num_steps", "num_epochs", "num_minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"ppo.{name} must be >= 1")
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError("ppo.learning_rate must be in (0, 1]")


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                last_values: torch.Tensor, gamma: float, lam: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns, all (T, N) but ``last_values`` (N,).

    ``dones[t]`` ends the episode after step t (terminated or truncated); truncated steps must
    already carry their bootstrap ``gamma * V(final_obs)`` in ``rewards``.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    next_values = last_values
    for t in range(rewards.shape[0] - 1, -1, -1):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values * not_done - values[t]
        running = delta + gamma * lam * not_done * running
        advantages[t] = running
        next_values = values[t]
    return advantages, advantages + values


def surrogate_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                   clip_param: float) -> torch.Tensor:
    """PPO's clipped surrogate objective, as a loss to minimize."""
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = ratio.clamp(1.0 - clip_param, 1.0 + clip_param)
    return -torch.min(ratio * advantages, clipped * advantages).mean()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_param: float | None) -> torch.Tensor:
    """Squared error to the returns; with ``clip_param`` the pessimistic clipped variant."""
    loss = (values - returns).square()
    if clip_param is not None:
        clipped = old_values + (values - old_values).clamp(-clip_param, clip_param)
        loss = torch.max(loss, (clipped - returns).square())
    return loss.mean()


# |mean action| counted as saturated: at the env's [-1, 1] clip (which hides an unbounded mean
# from the reward) or where a tanh-squashed mean has lost its gradient. Near 1 in
# ``action_saturation``, the policy is bang-bang.
SATURATED = 0.99


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log-density of diagonal Gaussians at ``x``, summed over the action dimension."""
    return (-0.5 * ((x - mean) / log_std.exp()).square() - log_std).sum(-1) - 0.5 * x.shape[-1] * LOG_2PI


def gaussian_kl(mu_old: torch.Tensor, std_old: torch.Tensor, mu: torch.Tensor,
                std: torch.Tensor) -> torch.Tensor:
    """KL(old || new) of diagonal Gaussians, summed over the action dimension."""
    return (torch.log(std / std_old) + (std_old.square() + (mu_old - mu).square())
            / (2.0 * std.square()) - 0.5).sum(-1)


def adapt_learning_rate(lr: float, kl: float, cfg: PPOConfig) -> float:
    """rsl_rl's schedule: divide by 1.5 when the KL exceeds twice the target, multiply by 1.5
    when it is below half of it, within [min_lr, max_lr]."""
    if kl > 2.0 * cfg.desired_kl:
        return max(cfg.min_lr, lr / 1.5)
    if 0.0 < kl < 0.5 * cfg.desired_kl:
        return min(cfg.max_lr, lr * 1.5)
    return lr


class RewardScaler:
    """Divides rewards by the running std of each world's discounted return."""

    def __init__(self, num_envs: int, gamma: float, device: torch.device):
        self.gamma = gamma
        self.returns = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.stats = RunningNorm(1).to(device)

    def __call__(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.returns.mul_(self.gamma).add_(reward)
        self.stats.update(self.returns[:, None])
        self.returns.mul_(~done)
        return (reward / torch.sqrt(self.stats.var + self.stats.eps)).to(reward.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns, **{f"stats.{k}": v for k, v in self.stats.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns.copy_(state["returns"])
        self.stats.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("stats.")})


class RolloutStorage:
    """One iteration of transitions, (T, N, ...) tensors on the training device."""

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, act_dim: int,
                 device: torch.device):
        shape = (num_steps, num_envs)
        self.obs = torch.zeros(*shape, obs_dim, device=device)       # normalized
        self.actions = torch.zeros(*shape, act_dim, device=device)
        self.means = torch.zeros(*shape, act_dim, device=device)
        self.log_probs = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.dones = torch.zeros(shape, device=device)
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)
        self.std = torch.ones(act_dim, device=device)                # action std while collecting
        self.num_steps, self.num_envs = num_steps, num_envs

    def minibatches(self, num_minibatches: int):
        """Yields index tensors of a random partition of the T*N transitions."""
        n = self.num_steps * self.num_envs
        size = n // num_minibatches
        perm = torch.randperm(n, device=self.obs.device)
        for i in range(num_minibatches):
            yield perm[i * size:(i + 1) * size]


class PPO:
    """PPO on an :class:`ActorCritic`; :meth:`collect` then :meth:`update`, per iteration."""

    def __init__(self, model: ActorCritic, cfg: PPOConfig, num_envs: int, device: torch.device):
        self.model, self.cfg, self.device = model.to(device), cfg, device
        self.learning_rate = cfg.learning_rate
        # Fused Adam: one kernel over all parameters (on CPU since torch 2.4), a quarter of
        # the update time for small MLPs.
        fused = torch.device(device).type == "cuda" or torch.__version__ >= (2, 4)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=fused)
        p = model.policy
        self.storage = RolloutStorage(cfg.num_steps, num_envs, p.obs_dim, p.act_dim, device)
        self.reward_scaler = RewardScaler(num_envs, cfg.gamma, device) if cfg.normalize_rewards else None
        self._t = 0                      # next storage slot of act()/record()

    @torch.inference_mode()
    def collect(self, env: Any, obs: torch.Tensor,
                on_step: Callable[[dict[str, Any]], None] | None = None) -> torch.Tensor:
        """Steps ``env`` ``num_steps`` times from ``obs``, fills the storage and computes the
        advantages; ``on_step(info)`` sees each step's info (finished episodes). Returns the
        observation to continue from."""
        for _ in range(self.cfg.num_steps):
            actions = self.act(obs)
            obs, reward, terminated, truncated, info = env.step(actions)
            self.record(reward, terminated, truncated, info.get("final_obs"))
            obs = obs.to(self.device)
            if on_step is not None:
                on_step(info)
        self.finish(obs)
        return obs

    # One transition at a time, for agents stepped inside someone else's loop (the disturber).
    @torch.inference_mode()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Samples actions for ``obs`` and stores the first half of transition ``t``."""
        s, policy, t = self.storage, self.model.policy, self._t
        if t >= self.cfg.num_steps:
            raise RuntimeError("rollout storage is full: call finish() and update()")
        if t == 0:
            s.std.copy_(policy.log_std.exp())
        # Gaussian log-density of mean + std * noise: -|noise|^2 / 2 - sum(log std) - d/2 log(2 pi)
        log_prob_offset = -(policy.log_std.sum() + 0.5 * policy.act_dim * LOG_2PI)
        obs = obs.to(self.device)
        if policy.normalizer is not None:
            policy.normalizer.update(obs)
        z = policy.normalize(obs)
        mean = policy.mean(z)
        noise = torch.randn_like(mean)
        actions = mean + s.std * noise
        s.obs[t], s.actions[t], s.means[t] = z, actions, mean
        s.log_probs[t] = log_prob_offset - 0.5 * noise.square().sum(-1)
        s.values[t] = self.model.value(z)
        return actions

    @torch.inference_mode()
    def record(self, reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
               final_obs: torch.Tensor | None = None) -> None:
        """Stores the reward and episode ends of transition ``t`` (bootstrapping truncations)."""
        s, cfg, policy, t = self.storage, self.cfg, self.model.policy, self._t
        reward, truncated = reward.to(self.device), truncated.to(self.device)
        done = terminated.to(self.device) | truncated
        if self.reward_scaler is not None:
            reward = self.reward_scaler(reward, done)
        if final_obs is not None:  # bootstrap episodes cut by the time limit
            final_value = self.model.value(policy.normalize(final_obs.to(self.device)))
            reward = reward + cfg.gamma * final_value * truncated
        s.rewards[t] = reward
        s.dones[t] = done
        self._t = t + 1

    @torch.inference_mode()
    def finish(self, obs: torch.Tensor) -> None:
        """Computes advantages and returns of the full storage, bootstrapping from ``obs``."""
        s, cfg = self.storage, self.cfg
        if self._t != cfg.num_steps:
            raise RuntimeError(f"finish() after {self._t} of {cfg.num_steps} steps")
        last_values = self.model.value(self.model.policy.normalize(obs.to(self.device)))
        s.advantages[...], s.returns[...] = compute_gae(s.rewards, s.values, s.dones, last_values,
                                                        cfg.gamma, cfg.lam)
        self._t = 0

    def update(self) -> dict[str, float]:
        """Epochs of minibatch gradient steps on the collected rollout; returns mean losses."""
        s, cfg, policy = self.storage, self.cfg, self.model.policy
        obs, actions, means, old_log_probs, old_values, returns, advantages = (
            x.flatten(0, 1) for x in (s.obs, s.actions, s.means, s.log_probs, s.values, s.returns,
                                      s.advantages))
        if cfg.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        totals = torch.zeros(5, device=self.device)
        count = 0
        for _ in range(cfg.num_epochs):
            for idx in s.minibatches(cfg.num_minibatches):
                mean, log_std = policy.mean(obs[idx]), policy.log_std
                log_prob = gaussian_log_prob(actions[idx], mean, log_std)
                entropy = log_std.sum() + 0.5 * policy.act_dim * (1.0 + LOG_2PI)  # same for all states
                kl = gaussian_kl(means[idx], s.std, mean.detach(), log_std.detach().exp()).mean()
                if cfg.schedule == "adaptive":
                    self.learning_rate = adapt_learning_rate(self.learning_rate, kl.item(), cfg)
                    for group in self.optimizer.param_groups:
                        group["lr"] = self.learning_rate
                surrogate = surrogate_loss(log_prob, old_log_probs[idx], advantages[idx], cfg.clip_param)
                v_loss = value_loss(self.model.value(obs[idx]), old_values[idx], returns[idx],
                                    cfg.clip_param if cfg.clip_value else None)
                loss = surrogate + cfg.value_loss_coef * v_loss - cfg.entropy_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    clip_frac = ((torch.exp(log_prob - old_log_probs[idx]) - 1.0).abs()
                                 > cfg.clip_param).float().mean()
                    totals += torch.stack([surrogate.detach(), v_loss.detach(), entropy.detach(),
                                           kl, clip_frac])
                count += 1
        avg = (totals / count).tolist()
        return {"surrogate_loss": avg[0], "value_loss": avg[1], "entropy": avg[2], "kl": avg[3],
                "clip_fraction": avg[4], "learning_rate": self.learning_rate,
                "action_std": float(self.model.policy.log_std.detach().exp().mean()),
                "action_saturation": float((means.abs() >= SATURATED).float().mean())}

    def learn(self, env: Any, obs: torch.Tensor,
              on_step: Callable[[dict[str, Any]], None] | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
        """One iteration (collect + update); returns the next obs and statistics with timings."""
        t0 = time.perf_counter()
        obs = self.collect(env, obs, on_step)
        t1 = time.perf_counter()
        stats = self.update()
        stats.update(collect_time=t1 - t0, learn_time=time.perf_counter() - t1)
        return obs, stats

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "learning_rate": self.learning_rate}
        if self.reward_scaler is not None:
            state["reward_scaler"] = self.reward_scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.learning_rate = float(state["learning_rate"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate
