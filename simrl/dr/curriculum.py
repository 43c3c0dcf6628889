"""DORAEMON during training: collects finished episodes, updates the distribution between PPO
iterations and hands it to the env.

Only episodes that *started* under the current distribution enter an update (importance
weights divide by its density): each world remembers the distribution version its running
episode began with, and episodes of older versions are dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simrl.core.config import require
from simrl.dr.beta import BetaDistribution
from simrl.dr.doraemon import Doraemon, DoraemonConfig, plot_history


@dataclass
class DoraemonTrainConfig:
    """DORAEMON settings of a training run (``--doraemon.*`` on the command line)."""

    alpha: float = 0.5                 # success-rate target of the performance constraint
    kl_bound: float = 0.1              # trust region per update
    episodes_per_update: int = 256     # update once this many on-distribution episodes finished
    start_concentration: float = 100.0  # a + b of the narrow starting Betas (std ~5% of range)
    min_step: int = 0                  # no updates before this many env steps (warm-up)
    ranges: str = ""                   # JSON file {param: [low, high]} the distribution adapts within (default: the task's randomization ranges)
    steps_per_update: int = 0          # update every this many env steps instead (0: by episodes_per_update); the paper: 100k
    min_samples: int = 16              # fewer on-distribution episodes than this: no update yet
    buffer_size: int = 1000            # at most this many (the most recent) episodes enter one update
    param_low: float = 0.8             # lower bound of every Beta a and b
    param_high: float = 1e4            # upper bound of every Beta a and b (the paper: start value + 10)
    wait_for_success: bool = False     # no update until the buffer's success rate first reaches alpha (the paper's train_until_lb)

    def validate(self) -> None:
        require(0 <= self.alpha <= 1, "alpha", f"must be in [0, 1], got {self.alpha}")
        require(self.kl_bound > 0, "kl_bound", f"must be > 0, got {self.kl_bound}")
        require(self.episodes_per_update >= 1, "episodes_per_update",
                f"must be >= 1, got {self.episodes_per_update}")
        require(self.start_concentration > 0, "start_concentration",
                f"must be > 0, got {self.start_concentration}")
        require(self.steps_per_update >= 0, "steps_per_update", f"must be >= 0, got {self.steps_per_update}")
        require(1 <= self.min_samples <= self.buffer_size, "min_samples",
                f"must be in [1, buffer_size={self.buffer_size}], got {self.min_samples}")
        require(0 < self.param_low < self.param_high, "param_low",
                f"need 0 < param_low < param_high, got {self.param_low}, {self.param_high}")


class DoraemonCurriculum:
    """Trainer hooks (``on_episodes``, ``on_iteration``) that run DORAEMON on the env."""

    def __init__(self, env: Any, cfg: DoraemonTrainConfig, plot_path: str | Path | None = None):
        space = env.space
        if space.dim == 0:
            raise ValueError("--dr doraemon needs randomized parameters; the task has none")
        self.env, self.cfg = env, cfg
        start = BetaDistribution.narrow_around(space.names, space.low, space.high, space.nominal,
                                               concentration=cfg.start_concentration)
        buffer = cfg.buffer_size if cfg.steps_per_update else max(cfg.buffer_size, cfg.episodes_per_update)
        self.doraemon = Doraemon(start, DoraemonConfig(
            alpha=cfg.alpha, kl_bound=cfg.kl_bound, buffer_size=buffer, min_samples=cfg.min_samples,
            param_bounds=(cfg.param_low, cfg.param_high)))
        self.started = not cfg.wait_for_success   # updates run (the success target was reached once)
        self.last_update_step = 0
        env.set_distribution(start)
        self.version = 0
        # Episodes already running were sampled from the previous distribution.
        running = getattr(env, "_rs", None) is not None
        self.world_version = np.full(env.num_envs, -1 if running else 0, dtype=np.int64)
        self._params: list[np.ndarray] = []
        self._success: list[np.ndarray] = []
        self.plot_path = Path(plot_path) if plot_path else None
        self.last_result: Any = None

    @property
    def buffered(self) -> int:
        return int(sum(len(s) for s in self._success))

    def attach(self, trainer: Any) -> None:
        trainer.on_episodes.append(self.on_episodes)
        trainer.on_iteration.append(self.on_iteration)
        trainer.stateful["doraemon"] = self

    def on_episodes(self, trainer: Any, batch: Any) -> None:
        current = self.world_version[batch.env_ids] == self.version
        if current.any():
            self._params.append(batch.params[current])
            self._success.append(np.asarray(batch.success)[current])
        self.world_version[batch.env_ids] = self.version   # their next episodes start now

    def due(self, step: int) -> bool:
        """Whether an update is due at env step ``step``: past ``min_step``, and
        ``steps_per_update`` steps since the last one (else ``episodes_per_update`` episodes)."""
        if step < self.cfg.min_step:
            return False
        if self.cfg.steps_per_update:
            return step - self.last_update_step >= self.cfg.steps_per_update
        return self.buffered >= self.cfg.episodes_per_update

    def on_iteration(self, trainer: Any, stats: dict[str, float]) -> None:
        if not self.due(trainer.step):
            return
        self.last_update_step = trainer.step
        if self.buffered < self.cfg.min_samples:
            return   # too few episodes: keep collecting under the same distribution
        params, success = np.concatenate(self._params), np.concatenate(self._success)
        if not self.started:
            rate = float(np.mean(success[-self.cfg.buffer_size:]))
            trainer.log_scalars({"dr/success_buffer": rate, "dr/waiting": 1.0})
            if rate < self.cfg.alpha:   # the paper trains on phi_0 until alpha is first reached
                self._params, self._success = [], []
                return
            self.started = True
        result = self.update(params, success)
        trainer.log_scalars({**self.scalars(result), "dr/waiting": 0.0})

    def update(self, params: np.ndarray, success: np.ndarray) -> Any:
        """One DORAEMON step on a buffer; installs the new distribution in the env."""
        result = self.doraemon.update(params, success)
        self.env.set_distribution(result.distribution)
        self.version += 1
        self._params, self._success = [], []
        self.last_result = result
        if self.plot_path is not None:
            plot_history(self.doraemon.history, list(self.env.space.names), str(self.plot_path))
            self.plot_path.with_suffix(".json").write_text(json.dumps(
                {"alpha": self.cfg.alpha, "kl_bound": self.cfg.kl_bound, "history": self.doraemon.history},
                default=float))
        return result

    @staticmethod
    def scalars(result: Any) -> dict[str, float]:
        """TensorBoard scalars of one DORAEMON step: entropy, success, KL and every parameter's
        Beta shape and standard deviation."""
        dist = result.distribution
        out = {"dr/entropy": result.entropy_after, "dr/success_buffer": result.success_before,
               "dr/success_estimated": result.success_after, "dr/kl": result.kl,
               "dr/feasible": float(result.feasible)}
        for i, name in enumerate(dist.names):
            out.update({f"dr_a/{name}": float(dist.a[i]), f"dr_b/{name}": float(dist.b[i]),
                        f"dr_std/{name}": float(dist.std()[i])})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"doraemon": self.doraemon.state_dict(), "version": self.version,
                "started": self.started, "last_update_step": self.last_update_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.doraemon.load_state_dict(state["doraemon"])
        self.version = int(state["version"])
        self.started = bool(state.get("started", True))
        self.last_update_step = int(state.get("last_update_step", 0))
        self.world_version[:] = self.version - 1   # episodes in flight predate the resume
        self.env.set_distribution(self.doraemon.distribution)
