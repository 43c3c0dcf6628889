"""How good a dream is: the world model's prediction errors on held-out real transitions, and the
real-env return of a dream-trained policy (dream-to-real)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

import policies
from envs.tasks import config_from_spec, make_task
from simrl.dream.data import Transitions
from simrl.dream.dynamics import MaskedDynamics
from simrl.dream.model import WorldModel
from simrl.evaluate import run_episodes, summarize


@torch.no_grad()
def open_loop_error(model: WorldModel, data: Transitions, horizon: int, mode: str = "none",
                    num_masks: int = 8, seed: int = 0, max_segments: int = 512) -> float:
    """RMSE (in units of the data's observation std, averaged over dimensions) of the predicted
    observation after ``horizon`` steps, rolling the model open loop on the logged actions from
    the logged first observation of held-out segments. Horizon 1 is the one-step error. In the
    ``episode`` mode each segment runs under its own mask for its whole length."""
    rows = data.segments(horizon)
    if not len(rows):
        raise ValueError(f"no {horizon}-step segments in the data (episodes are too short)")
    rows = rows[np.random.default_rng(seed).permutation(len(rows))[:max_segments]]
    dev = model.device
    actions = torch.as_tensor(data.action[rows], device=dev)
    obs = torch.as_tensor(data.obs[rows[:, 0]], device=dev)
    target = torch.as_tensor(data.next_obs[rows[:, -1]], device=dev)
    dynamics = MaskedDynamics(model, len(rows), mode, num_masks, seed)
    for t in range(horizon):
        obs = dynamics(obs, actions[:, t]).next_obs
    scale = torch.as_tensor(np.maximum(data.obs.std(0), 1e-6), device=dev)
    return float(((obs - target) / scale).square().mean().sqrt())


def prediction_errors(model: WorldModel, data: Transitions, horizons: Sequence[int] = (1, 10, 50),
                      modes: Sequence[str] = ("none", "mean", "episode"), num_masks: int = 8,
                      seed: int = 0, max_segments: int = 512) -> dict[str, dict[int, float]]:
    """``{mode: {horizon: error}}`` of :func:`open_loop_error`."""
    return {mode: {h: open_loop_error(model, data, h, mode, num_masks, seed, max_segments)
                   for h in horizons} for mode in modes}


def real_return(checkpoint: str, task: str | None = None, episodes: int = 10, seed: int = 0,
                dr: Any = "none") -> dict[str, Any]:
    """The checkpoint's return in the real (MuJoCo) task: ``simrl eval``'s episodes and summary."""
    policy = policies.load(checkpoint, task=task)
    spec = policy.spec
    episodes_out = run_episodes(policy, make_task(spec["task"], config=config_from_spec(spec)), episodes,
                                dr=dr, seed=seed)
    return {"checkpoint": str(checkpoint), "task": spec["task"], "dr": str(dr), "seed": seed,
            "dream": spec.get("training", {}).get("dream"), **summarize(episodes_out)}
