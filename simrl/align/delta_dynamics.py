"""Delta dynamics (``simrl align --method delta-dynamics``): ASAP's supervised baseline.

An MLP ``(observation, action) -> (dqpos, dqvel)`` (the observation with its command zeroed,
:func:`model_input`) regresses, on every fitted logged step, the
logged next physics state minus the simulator's one-step prediction from the logged state
(teacher forcing). The simulator is then corrected by it after every control step
(:attr:`envs.batched.BatchedEnv.state_correction`, before rewards and terminations): held-out
windows are replayed open loop through the corrected simulator, and the checkpoint is
fine-tuned in it and saved without it.

Writes delta_dynamics.pt, the fine-tuned checkpoint ``final/``, report.json, replay.png,
curves.png and report.html into ``--out``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from envs.batched import BatchedEnv
from envs.perturbation import Perturbation
from envs.wrappers import Wrapper
from policies.networks import mlp
from simrl.align.base import AlignConfig, DeltaDynamicsConfig, register_method
from simrl.align.data import LogWindows, StateMap
from simrl.align.replay import batches
from simrl.align.run import align_and_finetune
from simrl.core.robot_state import RobotState


def model_input(task: Any, rs: RobotState, action: np.ndarray) -> np.ndarray:
    """``[observation, action]`` (n, o + a) of the record ``rs`` with its command zeroed: the
    correction models physics, and a command (a task input that short logs hold only a few
    values of, go1-velocity's) made the model extrapolate on held-out logs."""
    return np.concatenate([task.observation(replace(rs, command=np.zeros_like(rs.command))), action], axis=1)


def one_step_data(task: Any, w: LogWindows) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (:func:`model_input`, (N, o + a)) and targets ``[dqpos, dqvel]`` (N, nq + nv):
    every step of every window started from its logged state in the nominal simulator
    (:data:`~simrl.align.replay.MAX_WORLDS` steps at a time)."""
    W, H = len(w), w.steps
    qpos = np.concatenate([w.qpos[:, None], w.next_qpos[:, :-1]], axis=1).reshape(W * H, -1)
    qvel = np.concatenate([w.qvel[:, None], w.next_qvel[:, :-1]], axis=1).reshape(W * H, -1)
    actions = w.actions.reshape(W * H, -1)
    last = np.concatenate([w.last_action[:, None], w.actions[:, :-1]], axis=1).reshape(W * H, -1)
    window = np.repeat(np.arange(W), H)   # the window of each step
    chunks = batches(W * H)
    env = BatchedEnv(task, len(chunks[0][0]), dr="none", autoreset=False)
    params = env.distribution.sample(env.num_envs, env.rng)
    x = np.zeros((W * H, task.observation_size + task.action_size))
    sim_q, sim_v = np.zeros_like(qpos), np.zeros_like(qvel)
    for idx, real in chunks:
        win = window[idx]
        env.start_from(params, qpos[idx], qvel[idx], w.past_ctrl[win], {k: v[win] for k, v in w.task_state.items()},
                       last[idx])
        x[idx[real]] = model_input(task, env.robot_state, actions[idx])[real]
        env.step_numpy(actions[idx])
        sim_q[idx[real]], sim_v[idx[real]] = env.state[real][:, env._qpos], env.state[real][:, env._qvel]
    env.close()
    target = np.concatenate([w.next_qpos.reshape(W * H, -1) - sim_q, w.next_qvel.reshape(W * H, -1) - sim_v], axis=1)
    return x, target


class DeltaDynamics(torch.nn.Module):
    """The correction MLP with its input and output standardization."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(in_dim, hidden, out_dim, "elu", out_gain=0.01)
        for name, dim in (("x_mean", in_dim), ("x_std", in_dim), ("y_mean", out_dim), ("y_std", out_dim)):
            self.register_buffer(name, torch.zeros(dim) if "mean" in name else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_std) * self.y_std + self.y_mean

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64)


def fit_delta_dynamics(x: np.ndarray, y: np.ndarray, cfg: DeltaDynamicsConfig, seed: int = 0
                       ) -> tuple[DeltaDynamics, list[dict[str, float]]]:
    """Full-batch Adam on the mean squared standardized error; returns the model and its curve."""
    torch.manual_seed(seed)
    model = DeltaDynamics(x.shape[1], y.shape[1], cfg.hidden)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    model.x_mean.copy_(xt.mean(0))
    model.x_std.copy_(xt.std(0).clamp_min(1e-6))
    model.y_mean.copy_(yt.mean(0))
    model.y_std.copy_(yt.std(0).clamp_min(1e-9))
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    target = (yt - model.y_mean) / model.y_std
    curve = []
    for epoch in range(cfg.epochs):
        loss = (model.net((xt - model.x_mean) / model.x_std) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 10 == 0 or epoch == cfg.epochs - 1:
            curve.append({"step": epoch, "loss": float(loss.detach())})
    return model.eval(), curve


class Correction:
    """``BatchedEnv.state_correction`` of a fitted model: the next state plus the predicted
    correction (a floating base's quaternion renormalized)."""

    def __init__(self, task: Any, model: DeltaDynamics):
        self.task, self.model, self.nq = task, model, task.model.nq
        self.free = StateMap.probe(task).free_qpos

    def __call__(self, prev: RobotState, action: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        d = self.model.predict(model_input(self.task, prev, action))
        qpos, qvel = qpos + d[:, :self.nq], qvel + d[:, self.nq:]
        if self.free is not None:
            q = qpos[:, self.free + 3:self.free + 7]
            q /= np.linalg.norm(q, axis=1, keepdims=True)
        return qpos, qvel


class DeltaDynamicsWrapper(Wrapper):
    """The simulator corrected by the delta-dynamics model after every control step."""

    def __init__(self, env: Any, correction: Correction):
        super().__init__(env)
        inner = env
        while not isinstance(inner, BatchedEnv):
            inner = inner.env
        inner.state_correction = correction


@register_method("delta-dynamics", help="ASAP's baseline: a supervised residual next-state model corrects the simulator; the checkpoint is fine-tuned in it")
def run(task: Any, logs: str | Path, cfg: AlignConfig, out: Path, log: Callable[[str], None] = print,
        truth: Perturbation | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """Fits the delta-dynamics model on the fitted windows' steps, reports the held-out replay
    error with and without it, fine-tunes ``checkpoint`` in the corrected simulator."""
    dc = cfg.delta_dynamics

    def fit(split: Any, scale: dict[str, np.ndarray]) -> tuple[Any, Any, dict[str, Any]]:
        t0 = time.perf_counter()
        x, y = one_step_data(task, split.fit)
        model, curve = fit_delta_dynamics(x, y, dc, cfg.seed)
        torch.save({"state": model.state_dict(), "in_dim": x.shape[1], "out_dim": y.shape[1],
                    "config": asdict(dc)}, out / "delta_dynamics.pt")
        correction = Correction(task, model)
        log(f"delta-dynamics: {len(x)} one-step samples, final loss {curve[-1]['loss']:.4g}")
        extra = {"model_curve": curve, "model_seconds": time.perf_counter() - t0, "samples": len(x),
                 "delta_dynamics": asdict(dc)}
        return {"correct": correction}, lambda env: DeltaDynamicsWrapper(env, correction), extra

    return align_and_finetune("delta-dynamics", task, logs, cfg, out, fit, log, truth, checkpoint,
                              files=["delta_dynamics.pt"])
