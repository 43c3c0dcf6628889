"""ASAP's delta-action model (``simrl align --method delta-action``; He et al. 2025, "ASAP:
Aligning Simulation and Real-World Physics").

1. A policy ``da = f(s, a)`` (input: the simulator's observation and the logged real action)
   is trained with PPO in :class:`DeltaActionEnv`: every world starts at a fitted log window's
   logged state and replays its logged actions, the simulator receiving
   ``clip(a + scale * clip(da, -1, 1), -1, 1)``; the reward after each step is the tracking of
   the logged next state, ``exp(-e / sigma)`` with ``e`` the normalized squared error of the
   measured fields (the error system identification minimizes) and ``sigma`` a multiple of the
   unaligned simulator's mean ``e``, minus ``action_penalty * mean(da^2)``. Episodes are one window long (reference-state initialization from the logs).
2. The checkpoint is fine-tuned with PPO in the simulator with the frozen model in the loop
   (:class:`DeltaActionWrapper` adds ``da`` to the policy's action) and saved without it.

Writes delta_action.pt (the model), the fine-tuned checkpoint ``final/``, report.json,
replay.png, curves.png and report.html into ``--out``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from envs.perturbation import Perturbation
from envs.wrappers import Wrapper, to_numpy
from policies.networks import ActorCritic, NetworkConfig
from simrl.align.base import AlignConfig, DeltaActionConfig, register_method
from simrl.align.data import LogWindows
from simrl.align.replay import WindowEnv, field_weights
from simrl.align.run import align_and_finetune
from simrl.ppo import PPO, PPOConfig
from simrl.train import set_threads


class DeltaModel:
    """The frozen delta-action model: ``(observation, action) -> da`` in [-1, 1] (deterministic
    mean of the PPO policy), or exactly zero when ``policy`` is None."""

    def __init__(self, policy: Any, act_dim: int, scale: float):
        self.policy, self.act_dim, self.scale = policy, act_dim, float(scale)

    def delta(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        if self.policy is None:
            return np.zeros_like(action)
        x = torch.as_tensor(np.concatenate([obs, action], axis=1), dtype=torch.float32)
        with torch.inference_mode():
            return self.policy(x).numpy().astype(np.float64)

    def __call__(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The action the simulator gets for the policy's (or the log's) ``action``."""
        a = np.clip(action, -1.0, 1.0)
        return np.clip(a + self.scale * self.delta(obs, a), -1.0, 1.0)

    def save(self, path: Path, network: NetworkConfig) -> Path:
        torch.save({"policy": self.policy.state_dict(), "network": asdict(network),
                    "obs_dim": self.policy.obs_dim, "act_dim": self.act_dim, "scale": self.scale}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DeltaModel":
        data = torch.load(path, map_location="cpu", weights_only=True)
        net = ActorCritic(data["obs_dim"], data["act_dim"], NetworkConfig(**data["network"]))
        net.policy.load_state_dict(data["policy"])
        return cls(net.policy.eval(), data["act_dim"], data["scale"])


class DeltaActionEnv(Wrapper):
    """Worlds replaying fitted log windows where the agent's action is the delta ``da``:
    observation ``[sim observation, logged action]``, reward: tracking of the logged next
    state minus the penalty on ``da``; every world's episode is one window."""

    def __init__(self, task: Any, windows: LogWindows, fields: tuple[str, ...],
                 scale: dict[str, np.ndarray], cfg: DeltaActionConfig, seed: int = 0, threads: int = 0):
        self.replay = WindowEnv(task, windows, cfg.num_envs, seed=seed, threads=threads)
        super().__init__(self.replay.env)
        self.cfg, self.fields, self.weight = cfg, fields, field_weights({f: scale[f] for f in fields})
        self._obs = np.zeros((cfg.num_envs, task.observation_size))
        # The tracking reward's scale: the unaligned simulator's mean per-step error (da = 0).
        self.sigma = 1.0
        self.reset_numpy()
        errors = [self.step_numpy(np.zeros((self.num_envs, self.action_size)))[4]["tracking_error"]
                  for _ in range(windows.steps)]
        self.unaligned_error = float(np.mean(errors))
        self.sigma = cfg.tracking_sigma * max(self.unaligned_error, 1e-12)

    @property
    def observation_size(self) -> int:
        return self.task.observation_size + self.task.action_size

    def _observe(self) -> np.ndarray:
        return np.concatenate([self._obs, self.replay.logged_action], axis=1)

    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        self._obs = self.replay.start()
        return self._observe()

    def tracking_error(self) -> np.ndarray:
        """(n,) normalized squared error of the record after the last step, fields averaged."""
        got, w, k = self.replay.measured(self.fields), self.replay.w, self.replay.t - 1
        errs = []
        for f in self.fields:
            e = (got[f] - w.targets[f][self.replay.idx, k]) * self.weight[f]
            used = max(1, int((self.weight[f] > 0).sum()))
            errs.append(np.nan_to_num((e ** 2).sum(axis=1) / used, nan=1e6, posinf=1e6))
        return np.mean(errs, axis=0)

    def step_numpy(self, action: Any) -> tuple:
        da = np.clip(to_numpy(action), -1.0, 1.0)
        a = self.replay.logged_action
        self._obs = self.replay.step(np.clip(a + self.cfg.scale * da, -1.0, 1.0))
        err = self.tracking_error()
        reward = np.exp(-np.minimum(err / self.sigma, 50.0)) - self.cfg.action_penalty * (da ** 2).mean(axis=1)
        n = self.num_envs
        info: dict[str, Any] = {"tracking_error": err}
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        if self.replay.t >= self.replay.w.steps:
            truncated[:] = True
            info["final_obs"] = np.concatenate([self._obs, np.zeros((n, self.action_size))], axis=1)
            self._obs = self.replay.start()
        return self._observe(), reward, terminated, truncated, info


def train_delta_model(task: Any, windows: LogWindows, fields: tuple[str, ...], scale: dict[str, np.ndarray],
                      cfg: DeltaActionConfig, seed: int = 0, threads: int = 0,
                      log: Callable[[str], None] = print) -> tuple[DeltaModel, list[dict[str, float]]]:
    """PPO on :class:`DeltaActionEnv`; returns the frozen model and its curve (step, mean
    reward per step, mean tracking error)."""
    set_threads(threads)
    torch.manual_seed(seed)
    env = DeltaActionEnv(task, windows, fields, scale, cfg, seed, threads)
    net_cfg = NetworkConfig(init_log_std=cfg.init_log_std)
    model = ActorCritic(env.observation_size, task.action_size, net_cfg)
    last = model.policy.actor[-1]
    torch.nn.init.zeros_(last.weight)   # da = 0 at the start: the unaligned simulator
    torch.nn.init.zeros_(last.bias)
    ppo_cfg = PPOConfig(num_steps=windows.steps * max(1, 32 // windows.steps), learning_rate=cfg.learning_rate)
    ppo = PPO(model, ppo_cfg, cfg.num_envs, torch.device("cpu"))
    obs = env.reset()
    curve: list[dict[str, float]] = []
    done_steps = 0
    errors: list[np.ndarray] = []
    rewards: list[float] = []

    def watch(info: dict[str, Any]) -> None:
        errors.append(info["tracking_error"])

    while done_steps < cfg.steps:
        obs, stats = ppo.learn(env, obs, watch)
        done_steps += ppo_cfg.num_steps * cfg.num_envs
        rewards.append(float(ppo.storage.rewards.mean()))
        curve.append({"step": done_steps, "tracking_error": float(np.mean(errors)) / env.unaligned_error,
                      "action_std": stats["action_std"]})
        errors.clear()
        if len(curve) % 20 == 0:
            log(f"delta-action: {done_steps:,} steps, tracking error {curve[-1]['tracking_error']:.4g}")
    env.close()
    return DeltaModel(model.policy.eval(), task.action_size, cfg.scale), curve


class DeltaActionWrapper(Wrapper):
    """The simulator with the frozen delta-action model in the loop: the policy's action ``a``
    becomes ``clip(a + scale * da(obs, a), -1, 1)``. Observations are the env's."""

    def __init__(self, env: Any, model: DeltaModel):
        super().__init__(env)
        self.model = model
        self._obs: np.ndarray | None = None

    def action(self, action: Any) -> np.ndarray:
        if self._obs is None:
            raise RuntimeError("reset the env before stepping it")
        return self.model(self._obs, to_numpy(action))

    def on_reset(self, obs: np.ndarray) -> np.ndarray:
        self._obs = obs
        return obs

    def on_step(self, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        self._obs = obs
        return obs


@register_method("delta-action", help="ASAP: a PPO delta-action model reproduces the logs; the checkpoint is fine-tuned with it in the loop")
def run(task: Any, logs: str | Path, cfg: AlignConfig, out: Path, log: Callable[[str], None] = print,
        truth: Perturbation | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """Trains the delta-action model on the fitted windows, reports the held-out replay error
    with and without it, fine-tunes ``checkpoint`` with it in the loop."""
    dc = cfg.delta_action

    def fit(split: Any, scale: dict[str, np.ndarray]) -> tuple[Any, Any, dict[str, Any]]:
        t0 = time.perf_counter()
        model, curve = train_delta_model(task, split.fit, split.fields, scale, dc, cfg.seed, cfg.threads, log)
        model.save(out / "delta_action.pt", NetworkConfig(init_log_std=dc.init_log_std))
        extra = {"model_curve": curve, "model_seconds": time.perf_counter() - t0,
                 "delta_action": asdict(dc)}
        return ({"act": model}, lambda env: DeltaActionWrapper(env, model), extra)

    return align_and_finetune("delta-action", task, logs, cfg, out, fit, log, truth, checkpoint,
                              files=["delta_action.pt"])
