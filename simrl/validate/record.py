"""Records rollouts of any batched env and policy as real logs (``simrl.core.logs`` MCAP files):
simulated data for tests, reference sets and the sim-to-sim benchmark until ``deploy``'s
recorder writes logs from the robot (or from its MuJoCo reality proxy).

One file per episode (a real run ends when the robot falls or time is up): ``t`` and ``step``
restart at 0; the metadata extras say which world and episode it was, whether it finished and,
if so, its return.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from simrl.core.logs import LogMeta, LogWriter
from simrl.validate.rollout import PolicyFn, Rollout, collect


def log_meta(task: Any, policy_id: str, source: str, extra: dict[str, str] | None = None) -> LogMeta:
    """Metadata of a log recorded on ``task`` (an :class:`envs.Task`)."""
    return LogMeta(robot=task.cfg.model or task.name, task=task.name, control_period=task.cfg.control_dt,
                   observation_names=task.observation_names, action_names=task.action_names,
                   policy_id=policy_id, source=source, extra=extra or {})


def write_rollout(rollout: Rollout, task: Any, out_dir: str | os.PathLike, policy_id: str = "",
                  source: str = "sim", prefix: str = "run") -> list[Path]:
    """Writes every episode of ``rollout`` (collected with ``keep_states=True``) to
    ``out_dir/{prefix}_w{world}_e{episode}.mcap``; returns the paths."""
    out, paths = Path(out_dir), []
    finished = {(int(w), int(e)): (r, s) for w, e, r, s in zip(rollout.episode_world, rollout.episode_end,
                                                             rollout.episode_return, rollout.episode_success)}
    steps, worlds = rollout.starts.shape
    dt = task.cfg.control_dt
    for w in range(worlds):
        bounds = list(np.flatnonzero(rollout.starts[:, w])) + [steps]
        for e, (t0, t1) in enumerate(zip(bounds[:-1], bounds[1:])):
            end = finished.get((w, t1 - 1))
            extra = {"world": str(w), "episode": str(e), "complete": str(end is not None).lower()}
            if end is not None:
                extra.update({"return": repr(float(end[0])), "success": str(bool(end[1])).lower()})
            path = out / f"{prefix}_w{w:03d}_e{e:03d}.mcap"
            with LogWriter(path, log_meta(task, policy_id, source, extra), fsync=False) as writer:
                for k, t in enumerate(range(t0, t1)):
                    writer.write(k * dt, k, {name: v[t, w] for name, v in rollout.states.items()},
                                 rollout.obs[t, w], rollout.action[t, w])
            paths.append(path)
    return paths


def record(env: Any, policy: PolicyFn, steps: int, out_dir: str | os.PathLike, *, policy_id: str = "",
           source: str = "sim", seed: int | None = None, prefix: str = "run") -> list[Path]:
    """Runs ``policy`` for ``steps`` control steps in every world of ``env`` and writes the
    episodes as real logs with the given ``source`` (``"sim"`` or ``"sim2sim"``)."""
    if source not in ("sim", "sim2sim"):
        raise ValueError(f"recorded rollouts have source 'sim' or 'sim2sim', got {source!r}")
    rollout = collect(env, policy, steps, seed=seed, keep_states=True)
    return write_rollout(rollout, env.task, out_dir, policy_id, source, prefix)
