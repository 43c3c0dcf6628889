"""rsl_rl (``pip install rsl-rl-lib``, ETH Zurich / NVIDIA) on simrl's batched envs.

:class:`RslRlVecEnv` wraps any simrl ``VecEnv`` (``envs.make(...)``, with or without wrappers)
as ``rsl_rl.env.VecEnv``: observations as a ``TensorDict`` with one group ``"policy"`` (actor
and critic both read it unless ``obs_groups`` says otherwise), done flags, and
``extras["time_outs"]`` for the time-limit bootstrap. simrl auto-resets worlds itself, so the
rsl_rl option ``init_at_random_ep_len`` has no effect (the env keeps its own episode clock).

>>> import envs
>>> from rsl_rl.runners import OnPolicyRunner
>>> from simrl.integrations.rsl_rl import RslRlVecEnv, train_cfg
>>> env = RslRlVecEnv(envs.make("hopper", num_envs=64))
>>> OnPolicyRunner(env, train_cfg(hidden=(64, 64)), log_dir=None, device="cpu").learn(100)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict


class RslRlVecEnv(VecEnv):
    """A simrl batched env seen by rsl_rl. ``episodes`` lists ``(env steps so far, return)`` of
    every finished episode (for learning curves); ``total_steps`` counts env steps."""

    def __init__(self, env: Any):
        self.env = env
        self.num_envs = int(env.num_envs)
        self.num_actions = int(env.action_size)
        self.max_episode_length = int(env.task.cfg.max_episode_steps)
        self.device = torch.device(env.device)
        self.cfg = {"task": env.task.name, "num_envs": self.num_envs}
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.total_steps = 0
        self.episodes: list[tuple[int, float]] = []
        self._obs = self._group(env.reset())

    def _group(self, obs: torch.Tensor) -> TensorDict:
        return TensorDict({"policy": obs}, batch_size=[self.num_envs], device=self.device)

    def get_observations(self) -> TensorDict:
        return self._obs

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        dones = terminated | truncated
        self.total_steps += self.num_envs
        self.episode_length_buf += 1
        self.episode_length_buf[dones] = 0
        extras: dict[str, Any] = {"time_outs": truncated}
        if "episodes" in info:
            ep = info["episodes"]
            self.episodes.extend((self.total_steps, float(r)) for r in ep.returns)
            extras["log"] = {"/episode_return": float(np.mean(ep.returns)),
                             "/episode_length": float(np.mean(ep.lengths)),
                             "/success": float(np.mean(ep.success))}
        self._obs = self._group(obs)
        return self._obs, reward, dones, extras

    def close(self) -> None:
        self.env.close()


def train_cfg(hidden: tuple[int, ...] = (64, 64), activation: str = "tanh", num_steps: int = 32,
              num_epochs: int = 5, num_minibatches: int = 4, learning_rate: float = 3e-4,
              gamma: float = 0.99, lam: float = 0.95, clip_param: float = 0.2,
              entropy_coef: float = 0.002, value_loss_coef: float = 1.0, max_grad_norm: float = 1.0,
              desired_kl: float = 0.01, init_std: float = 1.0) -> dict:
    """An ``OnPolicyRunner`` config with simrl PPO's defaults (``simrl.ppo.PPOConfig``, MLP
    actor and critic with observation normalization, KL-adaptive learning rate)."""
    model = {"class_name": "MLPModel", "hidden_dims": list(hidden), "activation": activation,
             "obs_normalization": True}
    return {
        "num_steps_per_env": num_steps, "save_interval": 10**9,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "algorithm": {"class_name": "PPO", "num_learning_epochs": num_epochs,
                      "num_mini_batches": num_minibatches, "learning_rate": learning_rate,
                      "gamma": gamma, "lam": lam, "clip_param": clip_param,
                      "entropy_coef": entropy_coef, "value_loss_coef": value_loss_coef,
                      "max_grad_norm": max_grad_norm, "schedule": "adaptive", "desired_kl": desired_kl,
                      "use_clipped_value_loss": True},
        "actor": {**model, "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": init_std}},
        "critic": dict(model),
    }
