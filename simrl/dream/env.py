"""A batched dream environment: the world model as a simulator, with the batched MuJoCo env's API.

``reset() -> obs`` and ``step(actions) -> (obs, reward, terminated, truncated, info)`` with
auto-reset, ``info["final_obs"]`` and ``info["episodes"]`` (an
:class:`~envs.batched.EpisodeBatch`) exactly as :class:`envs.batched.BatchedEnv`; every tensor
stays on ``device``. Episodes start from observations sampled from the data's episode starts.

Termination (``termination``): ``task`` uses the task's own termination computed from the
predicted observation, where the observation determines it (the planar tasks: hopper's and
walker2d's healthy check on height, pitch and state bounds; halfcheetah never terminates);
``model`` uses the world model's termination head (probability > 0.5); ``auto`` picks
``task`` where available, else ``model``. Episodes are truncated at the task's
``max_episode_steps`` unless ``max_episode_steps`` is given. Success is the task's
``success_return`` threshold on the dream return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from envs.batched import EpisodeBatch
from simrl.core.robot_state import RobotState
from envs.tasks import Task, make_task
from envs.tasks.classic import PlanarLocomotion
from envs.wrappers import Step, VecEnv, step_to_numpy, to_numpy
from simrl.dream.dynamics import MaskedDynamics
from simrl.dream.masks import DropoutMasks, make_generator
from simrl.dream.model import WorldModel

TERMINATIONS = ("auto", "task", "model")


@dataclass
class DreamConfig:
    """How the world model is dreamed in."""

    mode: str = "episode"                # episode | step | fixed | none | mean (simrl.dream.dynamics)
    num_masks: int = 8                   # masks averaged in ``mean`` mode
    termination: str = "auto"            # auto | task | model
    max_episode_steps: int = 0           # 0: the task's

    def __post_init__(self) -> None:
        if self.termination not in TERMINATIONS:
            raise ValueError(f"unknown termination {self.termination!r}; use one of "
                             f"{', '.join(TERMINATIONS)}")
        if self.max_episode_steps < 0:
            raise ValueError("max_episode_steps must be >= 0")


def task_termination(task: Task) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The task's termination as a function of the observation (torch, on any device), or None
    where the observation does not determine it. Planar tasks: ``PlanarLocomotion.healthy`` on
    ``obs = [qpos[1:], qvel]`` (z = qpos[1], pitch = qpos[2]; the state bounds see the clipped
    qvel, which matters only past the clip value)."""
    if not isinstance(task, PlanarLocomotion):
        return None
    c = task.cfg
    if not c.terminate_when_unhealthy:
        return lambda obs: torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)

    def terminated(obs: torch.Tensor) -> torch.Tensor:
        z, angle, state = obs[:, 0], obs[:, 1], obs[:, 1:]
        ok = (c.healthy_z_range[0] < z) & (z < c.healthy_z_range[1])
        ok &= (c.healthy_angle_range[0] < angle) & (angle < c.healthy_angle_range[1])
        ok &= ((c.healthy_state_range[0] < state) & (state < c.healthy_state_range[1])).all(1)
        return ~ok
    return terminated


class DreamEnv(VecEnv):
    """``num_envs`` dream worlds of a :class:`WorldModel` with auto-reset. Its core is torch
    (``reset`` / ``step``, on ``device``); ``reset_numpy`` / ``step_numpy`` adapt it to numpy."""

    def __init__(self, model: WorldModel, num_envs: int, device: Any = "cpu",
                 cfg: DreamConfig | None = None, seed: int = 0, masks: DropoutMasks | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.cfg = cfg or DreamConfig()
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.task = make_task(model.task)
        if list(self.task.observation_names) != model.observation_names:
            raise ValueError(f"world model observations differ from task {model.task}'s")
        if model.act_dim != self.task.action_size:
            raise ValueError(f"world model takes {model.act_dim} actions, task {model.task} has "
                             f"{self.task.action_size}")
        self.num_envs, self.seed = num_envs, seed
        self.max_episode_steps = self.cfg.max_episode_steps or self.task.cfg.max_episode_steps
        rule = task_termination(self.task) if self.cfg.termination != "model" else None
        if self.cfg.termination == "task" and rule is None:
            raise ValueError(f"task {self.task.name}: termination is not a function of the "
                             "observation; use termination 'model'")
        self.termination = "task" if rule is not None else "model"
        self._rule = rule
        self._fixed_masks = masks
        self._obs: torch.Tensor | None = None
        self._seed_all(seed)

    def _seed_all(self, seed: int) -> None:
        self.seed = seed
        self.generator = make_generator(seed, self.device)
        self.dynamics = MaskedDynamics(self.model, self.num_envs, self.cfg.mode, self.cfg.num_masks,
                                       seed + 1, self._fixed_masks)
        zeros = torch.zeros(self.num_envs, device=self.device)
        self.ep_return, self.ep_length = zeros, zeros.long()

    # -- properties ----------------------------------------------------------------------------
    @property
    def masks(self) -> DropoutMasks | None:
        """The masks the worlds run with now (None without dropout; K masks in ``mean`` mode)."""
        return self.dynamics.masks

    @property
    def robot_state(self) -> RobotState:
        """The robot-state record the current observations imply (planar tasks only: the root
        x position is unknown to the dream and reported as 0)."""
        if self._obs is None:
            raise RuntimeError("call reset() first")
        if not isinstance(self.task, PlanarLocomotion):
            raise NotImplementedError(f"task {self.task.name}: no robot state from observations")
        obs = self._obs.double().cpu().numpy()
        nq = self.task.model.nq
        qpos = np.concatenate([np.zeros((len(obs), 1)), obs[:, :nq - 1]], axis=1)
        return self.task.robot_state(qpos, obs[:, nq - 1:], np.zeros((len(obs), 0)), {},
                                     np.zeros((len(obs), self.action_size)))

    # -- reset ---------------------------------------------------------------------------------
    def _starts(self, k: int) -> torch.Tensor:
        starts = self.model.starts
        idx = torch.randint(len(starts), (k,), generator=self.generator, device=self.device)
        return starts[idx]

    @torch.no_grad()
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Resets every world (new start states, and new masks in ``episode`` mode)."""
        if seed is not None:
            self._seed_all(seed)
        idx = torch.arange(self.num_envs, device=self.device)
        self.dynamics.reset(idx)
        self.ep_return = torch.zeros_like(self.ep_return)
        self.ep_length = torch.zeros_like(self.ep_length)
        self._obs = self._starts(self.num_envs)
        return self._obs

    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        return to_numpy(self.reset(seed))

    # -- step ----------------------------------------------------------------------------------
    def _check_action(self, action: Any) -> torch.Tensor:
        a = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        if a.shape != (self.num_envs, self.action_size):
            raise ValueError(f"{self.task.name} dream: actions must have shape "
                             f"({self.num_envs}, {self.action_size}), got {tuple(a.shape)}")
        finite = torch.isfinite(a)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite)[0].tolist()
            raise ValueError(f"{self.task.name} dream: action is NaN or inf (world {bad[0]}, "
                             f"{self.task.action_names[bad[1]]})")
        return a.clamp(-1.0, 1.0)

    @torch.no_grad()
    def step(self, action: Any):
        """One dream step of every world; tensors in and out, on ``device``."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        a = self._check_action(action)
        pred = self.dynamics(self._obs, a)
        obs, reward = pred.next_obs, pred.reward
        terminated = self._rule(obs) if self._rule is not None else pred.done_prob > 0.5
        self.ep_return = self.ep_return + reward
        self.ep_length = self.ep_length + 1
        truncated = (self.ep_length >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        info: dict[str, Any] = {}
        idx = torch.nonzero(done).squeeze(1)
        if len(idx):
            returns = self.ep_return[idx].double().cpu().numpy()
            threshold = self.task.cfg.success_return
            success = returns >= threshold if threshold is not None else np.zeros(len(idx), bool)
            info["episodes"] = EpisodeBatch(idx.cpu().numpy(), returns,
                                            self.ep_length[idx].cpu().numpy(), success,
                                            terminated[idx].cpu().numpy(), np.zeros((len(idx), 0)))
            info["final_obs"] = torch.zeros_like(obs).index_put((idx,), obs[idx])
            obs = obs.index_put((idx,), self._starts(len(idx)))
            self.dynamics.reset(idx)
            self.ep_return = self.ep_return.index_put((idx,), torch.zeros_like(idx, dtype=reward.dtype))
            self.ep_length = self.ep_length.index_put((idx,), torch.zeros_like(idx))
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def step_numpy(self, action: Any) -> Step:
        return step_to_numpy(self.step(action))
