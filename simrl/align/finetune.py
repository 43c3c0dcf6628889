"""What the methods that retrain share: checking that the logs came from the checkpoint,
fine-tuning the checkpoint's PPO run in an aligned simulator, and its return on a proxy.

Fine-tuning continues the checkpoint's own run (``training_state.pt``: actor, critic,
optimizer, observation and reward normalizers) for ``FinetuneConfig.steps`` more env steps in
worlds built as the run built them, wrapped by the method (the delta-action model in the loop,
the delta-dynamics correction). The result is saved like any checkpoint of the run, from the
unwrapped task: the same spec, so ``simrl eval``, ``rank`` and ``deploy`` take it and the
robot runs it without the alignment model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import policies
from envs.perturbation import Perturbation, SensorNoise
from simrl.align.base import FinetuneConfig
from simrl.core.logs import LogError, read_logs
from simrl.core.spec import load_spec
from simrl.train import TRAINING_STATE, read_training_state, resolve_device, resolve_dr

ACTION_TOL = 1e-3                        # |checkpoint(obs) - logged action| allowed (float32, clipping)
MISMATCH_FRACTION = 0.05                 # steps that may differ (safety-layer interventions)


def check_actions(checkpoint: str | Path, logs: str | Path) -> None:
    """LogError naming the file and field unless the checkpoint, re-run on each log's logged
    observations, gives the logged actions (up to :data:`MISMATCH_FRACTION` of the steps the
    policy chose, :func:`by_policy`)."""
    policy = policies.load(checkpoint)
    for log in read_logs(logs):
        if log.obs.shape[1] != policy.module.obs_dim:
            raise LogError(f"file {log.path}: field obs has {log.obs.shape[1]} entries per step, "
                           f"checkpoint {checkpoint} takes {policy.module.obs_dim}")
        pred = np.asarray(policy(log.obs.astype(np.float32)), dtype=np.float64)
        gap = np.abs(pred - np.clip(log.action, -1, 1)).max(axis=1)
        bad = (gap > ACTION_TOL) & by_policy(log)
        if bad.mean() > MISMATCH_FRACTION:
            first = int(np.flatnonzero(bad)[0])
            raise LogError(f"file {log.path}: field action: the checkpoint {checkpoint} did not produce "
                           f"these actions ({bad.mean():.0%} of steps differ by more than {ACTION_TOL}; "
                           f"step {int(log.step[first])}: logged {np.round(log.action[first], 3).tolist()}, "
                           f"checkpoint {np.round(pred[first], 3).tolist()})")


def by_policy(log: Any) -> np.ndarray:
    """(T,) steps whose action the policy chose: before the runtime's stop (the closing record's
    ``policy_steps``) and without a safety intervention flagged."""
    mask = np.ones(len(log), dtype=bool)
    if "policy_steps" in log.end:
        mask[int(log.end["policy_steps"]):] = False
    for flags in log.safety.values():
        if flags.dtype == np.bool_:
            mask &= ~flags
    return mask


def run_config(checkpoint: str | Path) -> Any:
    """The run config a PPO checkpoint was trained with (its ``spec.json``); ValueError naming
    the field when it cannot be fine-tuned."""
    from simrl.algos import config_from_dict

    path = Path(checkpoint)
    training = load_spec(path).get("training") or {}
    if training.get("algo") != "ppo" or "config" not in training:
        raise ValueError(f"--checkpoint {path}: field training.algo is {training.get('algo')!r}; "
                         "fine-tuning continues a run of simrl's PPO (--algo ppo)")
    if not (path / TRAINING_STATE).is_file():
        raise ValueError(f"--checkpoint {path}: {TRAINING_STATE} is missing; fine-tuning needs the "
                         "training state a `simrl train` checkpoint has")
    cfg = config_from_dict(training["config"])
    t = cfg.train
    if t.residual or t.robust != "none":
        raise ValueError(f"--checkpoint {path}: field training.config.train "
                         f"{'residual' if t.residual else 'robust'} is set; fine-tuning supports "
                         "plain PPO runs")
    return cfg


def finetune(checkpoint: str | Path, out: Path, fc: FinetuneConfig,
             wrap: Callable[[Any], Any] = lambda env: env, dr: str | None = None,
             log: Callable[[str], None] = print) -> tuple[Path, list[dict[str, float]]]:
    """Continues the checkpoint's PPO run for ``fc.steps`` env steps in its worlds (``dr``, a
    ``simrl train --dr`` value, instead of the run's when given) wrapped by ``wrap``; returns the fine-tuned checkpoint
    (``out/final``) and the curve (step, mean return of recent episodes)."""
    from envs.batched import BatchedEnv
    from envs.tasks import make_task
    from simrl.algos.ppo import PPOTrainer

    path = Path(checkpoint)
    cfg = run_config(path)
    state = read_training_state(path)
    t = cfg.train
    num_envs = fc.num_envs or t.num_envs
    if num_envs != t.num_envs:
        raise ValueError(f"--finetune.num-envs {num_envs}: the run's reward normalizer has "
                         f"{t.num_envs} worlds; use 0 (the run's)")
    start = int(state["step"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        t, steps=start + fc.steps, out=str(out), checkpoint_every=0, progress=False, seed=fc.seed,
        dr=t.dr if dr is None else dr))
    task = make_task(t.task, config=cfg.task)
    spec = load_spec(path)
    if dr is None and t.dr == "doraemon" and spec.get("dr") is not None:
        from envs.distributions import distribution_from_dict
        dist: Any = distribution_from_dict(spec["dr"])   # where DORAEMON's distribution ended
    else:
        dist = resolve_dr(cfg.train.dr)
    base = BatchedEnv(task, num_envs, resolve_device(t.device), dr=dist, seed=fc.seed)
    trainer = PPOTrainer(cfg, out, env=wrap(base))
    trainer.step, trainer.iteration = start, int(state["iteration"])
    trainer.ppo.load_state_dict(state["algorithm"]["ppo"])
    torch.manual_seed(fc.seed)
    curve: list[dict[str, float]] = []

    def record(tr: Any, stats: dict[str, float]) -> None:
        s = tr.episodes.summary()
        if s:
            curve.append({"step": tr.step - start, "mean_return": s["mean_return"]})
    trainer.on_iteration.append(record)
    final = trainer.train()
    log(f"fine-tuned {fc.steps:,} steps: {trainer.summary_line()}")
    return final, curve


def proxy_return(checkpoint: str | Path, truth: Perturbation, episodes: int, seed: int = 0) -> dict[str, Any]:
    """The checkpoint on the proxy ``truth``: mean return (and 95% interval), the share of
    episodes the task ended (``terminated_rate``: falls) and the episode means of the task's
    per-step metrics (``metrics``: go1-velocity's ``lin_vel_error``, ``yaw_rate_error`` ...)."""
    from envs.tasks import task_from_spec
    from simrl.evaluate import run_episodes, t_interval

    policy = policies.load(checkpoint)
    task = task_from_spec(load_spec(checkpoint))
    res = run_episodes(policy, task, episodes, dr=truth.dr(task.cfg.control_dt), seed=seed,
                       wrap=lambda env: SensorNoise(env, truth, seed))
    metrics = {k: float(np.mean(v)) for k, v in res.items()
               if k not in ("returns", "lengths", "success", "terminated")}
    return {"mean_return": float(np.mean(res["returns"])),
            **{k: v for k, v in t_interval(res["returns"]).items() if k != "mean"},
            "terminated_rate": float(np.mean(res["terminated"])), "metrics": metrics}


__all__ = ["check_actions", "run_config", "finetune", "proxy_return"]
