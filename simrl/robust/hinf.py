"""Adversarial disturber under an H-infinity constraint ("Learning H-Infinity Locomotion Control",
Long et al. 2024).

A disturber policy, trained with PPO alongside the actor, pushes the robot's base with a bounded
force each control step (through MjData's ``xfrc_applied``). The actor maximizes the task reward.
The disturber maximizes the *cost*, the gap between an oracle reward and the reward achieved:

    cost_t = max(0, r_oracle - r_t)

**Oracle.** The reward an undisturbed, perfect controller would collect. Tasks that know it
provide ``reward_ceiling()`` (Go1: perfect velocity tracking with every penalty at zero,
``(w_lin + w_yaw) * dt``). Otherwise it is a running estimate: an exponential moving average of
the 90th percentile of per-step rewards of the batch.

**H-infinity constraint.** The disturber may only be as effective as the force it spends:

    E[cost] <= eta * E[|f / f_ref|^2]

enforced with a Lagrange multiplier. The disturber maximizes the Lagrangian
``E[cost] - lambda (E[cost] - eta E[|f/f_ref|^2])``, so its per-step reward is
``(1 - lambda) cost + lambda eta |f/f_ref|^2``, and lambda follows dual ascent after each
iteration: ``lambda <- clip(lambda + lr (mean cost - eta mean intensity), 0, lambda_max)``. It
rises while the constraint is violated (the disturber hurts more than its force budget allows)
and falls otherwise. This keeps the adversary from overwhelming the actor, which is what makes
the joint optimization stable.

**Curriculum.** The force bound grows linearly from ``force_start`` to ``force_final`` newtons
over ``curriculum_steps`` env steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from envs.wrappers import Step, Wrapper, to_torch
from policies.networks import ActorCritic, NetworkConfig
from simrl.core.config import require
from simrl.ppo import PPO, PPOConfig


@dataclass
class HinfConfig:
    force_start: float = 10.0          # N: force bound at the start of training
    force_final: float = 80.0          # N: force bound after the curriculum
    curriculum_steps: int = 2_000_000  # env steps over which the bound grows
    force_ref: float = 50.0            # N: force intensity is |f / force_ref|^2
    eta: float = 0.1                   # H-infinity bound on cost per unit intensity (reward units)
    lambda_init: float = 0.5           # initial Lagrange multiplier
    lambda_lr: float = 0.05            # dual-ascent step of the multiplier
    lambda_max: float = 5.0            # multiplier upper bound
    horizontal_only: bool = True       # push in the ground plane (x, y) only
    oracle_quantile: float = 0.9       # running oracle when the task has no reward ceiling
    oracle_ema: float = 0.99           # EMA factor of the running oracle
    network: NetworkConfig = field(default_factory=lambda: NetworkConfig(
        actor_hidden=(64, 64), critic_hidden=(64, 64), init_log_std=-0.5))  # disturber networks
    # Disturber PPO; num_steps must equal the actor's ppo.num_steps (its default follows it).
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(entropy_coef=0.001))

    def validate(self) -> None:
        require(0 <= self.force_start, "force_start", f"must be >= 0, got {self.force_start}")
        require(self.force_start <= self.force_final, "force_start",
                f"{self.force_start} exceeds force_final {self.force_final}")
        require(self.force_ref > 0, "force_ref", f"must be > 0, got {self.force_ref}")
        require(self.curriculum_steps >= 0, "curriculum_steps", f"must be >= 0, got {self.curriculum_steps}")
        require(0 <= self.lambda_init <= self.lambda_max, "lambda_init",
                f"must be in [0, lambda_max], got {self.lambda_init}")


class LagrangeMultiplier:
    """lambda >= 0 updated by dual ascent on a constraint ``g <= 0``."""

    def __init__(self, init: float, lr: float, max_value: float):
        if init < 0 or lr <= 0 or max_value <= 0:
            raise ValueError("Lagrange multiplier needs init >= 0, lr > 0, max > 0")
        self.value, self.lr, self.max_value = float(init), float(lr), float(max_value)

    def update(self, violation: float) -> float:
        """One dual-ascent step; ``violation`` > 0 means the constraint is violated."""
        self.value = float(np.clip(self.value + self.lr * violation, 0.0, self.max_value))
        return self.value


class Oracle:
    """Per-step oracle reward: the task's ceiling when it has one, else a running estimate."""

    def __init__(self, task: Any, quantile: float, ema: float):
        ceiling = getattr(task, "reward_ceiling", None)
        self.fixed = float(ceiling()) if callable(ceiling) else None
        self.quantile, self.ema = quantile, ema
        self.estimate: float | None = self.fixed

    def __call__(self, reward: torch.Tensor) -> float:
        if self.fixed is not None:
            return self.fixed
        q = float(torch.quantile(reward.float(), self.quantile))
        self.estimate = q if self.estimate is None else self.ema * self.estimate + (1 - self.ema) * q
        return self.estimate


class Disturber:
    """The adversary: a PPO agent whose action is the force on the robot's base."""

    def __init__(self, obs_dim: int, num_envs: int, cfg: HinfConfig, device: torch.device):
        self.cfg = cfg
        self.force_dims = 2 if cfg.horizontal_only else 3
        self.model = ActorCritic(obs_dim, self.force_dims, cfg.network)
        self.ppo = PPO(self.model, cfg.ppo, num_envs, device)


class DisturbedEnv(Wrapper):
    """A batched env (built with ``external_forces=True``) with a learning disturber inside.

    The actor sees the usual API. Each step lets the disturber pick a force from the actor's
    observation, applies it, and records the disturber's transition; :meth:`end_iteration`
    updates the disturber and the multiplier after the actor's rollout.
    """

    def __init__(self, env: Any, cfg: HinfConfig):
        if getattr(env, "use_xfrc", False) is False or env.root_body < 0:
            raise ValueError("the H-infinity disturber needs an env built with external_forces=True "
                             "and a task with a root body")
        super().__init__(env)
        self.cfg = cfg
        self.disturber = Disturber(env.observation_size, env.num_envs, cfg, torch.device(env.device))
        self.multiplier = LagrangeMultiplier(cfg.lambda_init, cfg.lambda_lr, cfg.lambda_max)
        self.oracle = Oracle(env.task, cfg.oracle_quantile, cfg.oracle_ema)
        self.env_steps = 0
        self._obs: np.ndarray | None = None
        self._sums = np.zeros(3)   # cost, intensity, count

    @property
    def force_bound(self) -> float:
        c = self.cfg
        frac = min(1.0, self.env_steps / max(1, c.curriculum_steps))
        return c.force_start + frac * (c.force_final - c.force_start)

    def on_reset(self, obs: np.ndarray) -> np.ndarray:
        self._obs = obs
        return obs

    def forces(self, actions: torch.Tensor) -> np.ndarray:
        """World-frame forces (N, 3) from disturber actions in [-1, 1]; never above the bound."""
        a = actions.clamp(-1.0, 1.0).detach().cpu().numpy().astype(np.float64)
        force = np.zeros((a.shape[0], 3))
        force[:, :a.shape[1]] = a
        norm = np.linalg.norm(force, axis=1, keepdims=True)
        force = force / np.maximum(norm, 1.0)          # inside the unit ball
        return self.force_bound * force

    def step_numpy(self, actions: Any) -> Step:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        ppo, device = self.disturber.ppo, self.device
        force = self.forces(ppo.act(to_torch(self._obs, device)))
        self.env.external_force = force
        obs, reward, terminated, truncated, info = self.env.step_numpy(actions)
        # The disturber learns from the step in torch, like the actor.
        reward_t = to_torch(reward, device)
        oracle = self.oracle(reward_t)
        cost = (oracle - reward_t).clamp(min=0.0)
        intensity = torch.as_tensor(np.sum((force / self.cfg.force_ref) ** 2, axis=1),
                                    dtype=torch.float32, device=reward_t.device)
        lam, eta = self.multiplier.value, self.cfg.eta
        final = to_torch(info["final_obs"], device) if "final_obs" in info else None
        ppo.record((1.0 - lam) * cost + lam * eta * intensity, to_torch(terminated, device),
                   to_torch(truncated, device), final)
        self._sums += (float(cost.sum()), float(intensity.sum()), cost.numel())
        self.env_steps += self.num_envs
        info["disturber_force"] = force
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def end_iteration(self) -> dict[str, float]:
        """Disturber PPO update and dual ascent on lambda; returns their statistics."""
        ppo = self.disturber.ppo
        ppo.finish(to_torch(self._obs, self.device))
        stats = {f"disturber_{k}": v for k, v in ppo.update().items()}
        cost, intensity, _ = (float(v) for v in self._sums / max(self._sums[2], 1.0))
        violation = cost - self.cfg.eta * intensity
        stats.update(hinf_cost=cost, hinf_intensity=intensity, hinf_violation=violation,
                     hinf_lambda=self.multiplier.update(violation), hinf_force_bound=self.force_bound)
        self._sums[:] = 0.0
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"ppo": self.disturber.ppo.state_dict(), "lambda": self.multiplier.value,
                "env_steps": self.env_steps, "oracle": self.oracle.estimate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.disturber.ppo.load_state_dict(state["ppo"])
        self.multiplier.value = float(state["lambda"])
        self.env_steps = int(state["env_steps"])
        if self.oracle.fixed is None:
            self.oracle.estimate = state["oracle"]
