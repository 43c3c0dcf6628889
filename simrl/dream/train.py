"""PPO in a dream: :class:`simrl.algos.ppo.PPOTrainer` with a :class:`DreamEnv` as its env.

The run directory, TensorBoard scalars, progress bar and checkpoints are the trainer's, so the
result is a standard checkpoint of the world model's task (``simrl eval`` runs it in MuJoCo);
its training statistics record the dream (world model file, mode, termination).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from policies.networks import ActorCritic
from simrl.dream.env import DreamConfig, DreamEnv
from simrl.dream.model import WorldModel
from simrl.ppo import PPO
from simrl.algos.ppo import PPOTrainer
from simrl.train import RunConfig, Trainer, resolve_device, set_threads
from simrl.algos import resolve_config


class DreamTrainer(PPOTrainer):
    """PPO on ``cfg.train.num_envs`` dream worlds of ``world_model``.

    ``PPOTrainer`` builds its MuJoCo env in ``__init__``; this subclass builds the rest of its
    state the same way around a dream env instead.
    """

    def __init__(self, cfg: RunConfig, out: str | Path, world_model: WorldModel,
                 dream: DreamConfig | None = None, model_path: str = ""):
        Trainer.__init__(self, cfg, out)
        t = cfg.train
        if t.task != world_model.task:
            raise ValueError(f"run task {t.task!r} differs from the world model's {world_model.task!r}")
        set_threads(t.threads)
        self.device = resolve_device(t.device)
        torch.manual_seed(t.seed)
        self.dream, self.model_path = dream or DreamConfig(), model_path
        self.env = DreamEnv(world_model, t.num_envs, self.device, self.dream, seed=t.seed)
        self.task = self.env.task
        self.model = ActorCritic(self.env.observation_size, self.env.action_size, cfg.network)
        self.ppo = PPO(self.model, cfg.ppo, t.num_envs, self.device)
        self.obs: torch.Tensor | None = None

    def training_stats(self) -> dict[str, Any]:
        return {**super().training_stats(),
                "dream": {"world_model": self.model_path, **asdict(self.dream),
                          "termination_source": self.env.termination,
                          "max_episode_steps": self.env.max_episode_steps}}

    def algorithm_state(self, directory: Path) -> dict[str, Any]:
        return {"ppo": self.ppo.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "dream": self.env.generator.get_state(),
                        "masks": self.env.dynamics.generator.get_state()}}


def train_in_dream(model_path: str | Path, out: str | Path, dream: DreamConfig | None = None,
                   overrides: dict[str, Any] | None = None, device: str = "auto") -> DreamTrainer:
    """Trains PPO in the dream of the world model file ``model_path``; ``overrides`` are dotted
    run-config options (``{"train.steps": 500_000, "ppo.learning_rate": 1e-3}``). Returns the
    finished trainer (its ``out / "final"`` is the checkpoint)."""
    world_model = WorldModel.load(model_path, resolve_device(device))
    overrides = {"train.task": world_model.task, "train.device": device, **(overrides or {})}
    cfg = resolve_config(overrides)
    cfg.train.out = str(out)
    trainer = DreamTrainer(cfg, out, world_model, dream, str(model_path))
    trainer.train()
    return trainer
