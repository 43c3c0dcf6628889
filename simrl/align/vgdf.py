"""VGDF (``simrl align --method vgdf``; Xu et al., NeurIPS 2023, "Cross-Domain Policy Adaptation
via Value-Guided Data Filtering"): SAC trained on the robot's transitions plus the simulator's
transitions whose value targets the robot's dynamics make plausible.

* The robot is online but scarce: one robot step per ``ratio`` simulator steps. Here the robot
  is the sim-to-sim proxy (``--vgdf.robot FILE`` or ``--truth``), batched worlds of
  :meth:`envs.perturbation.Perturbation.make_env`.
* A dynamics ensemble ``(obs, action) -> next obs`` (``ensemble`` MLPs, different inits and
  bootstrap resamples) is fitted on the robot's transitions (the logs' consecutive
  observations, then every online robot step).
* Value-guided filter (:func:`value_filter`): for a simulator transition ``(s, a, s')`` each
  member predicts ``s'_i``; the soft values ``V(s'_i)`` give a Gaussian (their mean and std)
  and the simulator's own ``V(s')`` its log-likelihood under it. In every batch the top
  ``keep`` fraction by that likelihood is used by the critic, with all robot transitions.
  The actor learns on the states of both.

Compact SAC (twin critics, target networks, learned temperature, tanh-squashed Gaussian) from
scratch: the actor is a :class:`policies.networks.Policy` (``squash``), saved as an ordinary
checkpoint (``final/``). Writes report.json, report.html and curves.png too.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import policies
from envs.batched import BatchedEnv
from envs.perturbation import Perturbation
from policies.networks import NetworkConfig, Policy, mlp
from simrl.align.base import AlignConfig, VgdfConfig, register_method
from simrl.align.finetune import check_actions, proxy_return
from simrl.align.report import plot_curves, write_html
from simrl.core.logs import read_logs
from simrl.train import set_threads


class Buffer:
    """A ring buffer of transitions (obs, action, reward, next obs, terminated)."""

    def __init__(self, size: int, obs_dim: int, act_dim: int):
        self.data = {k: np.zeros((size, d), dtype=np.float32) for k, d in
                     (("obs", obs_dim), ("act", act_dim), ("rew", 1), ("next", obs_dim), ("done", 1))}
        self.size, self.n, self.i = size, 0, 0

    def add(self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, nxt: np.ndarray, done: np.ndarray) -> None:
        for k, v in (("obs", obs), ("act", act), ("rew", rew[:, None]), ("next", nxt), ("done", done[:, None])):
            idx = (self.i + np.arange(len(v))) % self.size
            self.data[k][idx] = v
        self.i = (self.i + len(obs)) % self.size
        self.n = min(self.size, self.n + len(obs))

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.n, batch)
        return {k: torch.from_numpy(v[idx]) for k, v in self.data.items()}


class Ensemble(nn.Module):
    """``E`` MLPs predicting the next observation (as a standardized change) from (obs, action)."""

    def __init__(self, obs_dim: int, act_dim: int, members: int, hidden: tuple[int, ...]):
        super().__init__()
        self.members = nn.ModuleList(mlp(obs_dim + act_dim, hidden, obs_dim, "relu") for _ in range(members))
        for name, dim in (("x_mean", obs_dim + act_dim), ("x_std", obs_dim + act_dim),
                          ("y_mean", obs_dim), ("y_std", obs_dim)):
            self.register_buffer(name, torch.zeros(dim) if "mean" in name else torch.ones(dim))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """(E, B, obs_dim) predicted next observations."""
        x = (torch.cat([obs, act], -1) - self.x_mean) / self.x_std
        return torch.stack([obs + m(x) * self.y_std + self.y_mean for m in self.members])

    def fit(self, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray, epochs: int = 50, lr: float = 1e-3,
            seed: int = 0) -> float:
        """Minibatch Adam, each member on its own bootstrap resample; returns the last loss."""
        rng = np.random.default_rng(seed)
        x = torch.as_tensor(np.concatenate([obs, act], 1), dtype=torch.float32)
        y = torch.as_tensor(nxt - obs, dtype=torch.float32)
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp_min(1e-6))
        self.y_mean.copy_(y.mean(0))
        self.y_std.copy_(y.std(0).clamp_min(1e-6))
        xs, ys = (x - self.x_mean) / self.x_std, (y - self.y_mean) / self.y_std
        opt = torch.optim.Adam(self.members.parameters(), lr=lr)
        boots = [torch.as_tensor(rng.integers(0, len(x), len(x))) for _ in self.members]
        loss = torch.zeros(())
        for _ in range(epochs):
            perm = torch.as_tensor(rng.permutation(len(x)))
            for start in range(0, len(x), 256):
                rows = perm[start:start + 256]
                loss = sum((m(xs[b[rows]]) - ys[b[rows]]).square().mean() for m, b in zip(self.members, boots))
                opt.zero_grad()
                loss.backward()
                opt.step()
        return float(loss.detach()) / len(self.members)


def value_filter(value: Callable[[torch.Tensor], torch.Tensor], ensemble: Ensemble, obs: torch.Tensor,
                 act: torch.Tensor, nxt: torch.Tensor, keep: float) -> tuple[torch.Tensor, torch.Tensor]:
    """VGDF's filter: the mask of the top ``keep`` fraction of transitions by the log-likelihood
    of ``V(next)`` under the Gaussian of ``V`` over the ensemble's predicted next states, and
    the log-likelihoods."""
    with torch.no_grad():
        pred = ensemble(obs, act)
        e, b, d = pred.shape
        v = value(pred.reshape(e * b, d)).reshape(e, b)
        mu, std = v.mean(0), v.std(0) + 1e-6
        loglik = -0.5 * ((value(nxt) - mu) / std).square() - std.log()
        k = max(1, int(math.ceil(keep * b)))
        mask = torch.zeros(b, dtype=torch.bool)
        mask[torch.topk(loglik, k).indices] = True
    return mask, loglik


class SAC:
    """Soft actor-critic with a :class:`Policy` actor (tanh-squashed mean) and a state-dependent
    log-std head used in training only."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: VgdfConfig):
        self.cfg = cfg
        self.policy = Policy(obs_dim, act_dim, NetworkConfig(actor_hidden=cfg.hidden, activation="relu",
                                                             squash=True, normalize_obs=False))
        self.log_std = mlp(obs_dim, cfg.hidden, act_dim, "relu", out_gain=0.01)
        self.q = nn.ModuleList(mlp(obs_dim + act_dim, cfg.hidden, 1, "relu") for _ in range(2))
        self.q_target = copy.deepcopy(self.q)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.target_entropy = -float(act_dim)
        lr = cfg.learning_rate
        self.opt_pi = torch.optim.Adam([*self.policy.actor.parameters(), *self.log_std.parameters()], lr=lr)
        self.opt_q = torch.optim.Adam(self.q.parameters(), lr=lr)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=lr)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A squashed Gaussian action and its log-probability."""
        mu = self.policy.actor(obs)
        std = self.log_std(obs).clamp(-5.0, 2.0).exp()
        u = mu + std * torch.randn_like(mu)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mu) / std).square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        return a, logp - torch.log(1 - a.square() + 1e-6).sum(-1)

    def q_min(self, nets: nn.ModuleList, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], -1)
        return torch.min(nets[0](x), nets[1](x)).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The soft state value under the target critics."""
        with torch.no_grad():
            a, logp = self.sample(obs)
            return self.q_min(self.q_target, obs, a) - self.log_alpha.exp() * logp

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.sample(torch.as_tensor(obs, dtype=torch.float32))[0].numpy()

    def update(self, b: dict[str, torch.Tensor], actor_obs: torch.Tensor) -> dict[str, float]:
        """One critic step on ``b`` and one actor / temperature step on ``actor_obs``."""
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            target = b["rew"][:, 0] + self.cfg.gamma * (1 - b["done"][:, 0]) * self.value(b["next"])
        x = torch.cat([b["obs"], b["act"]], -1)
        q_loss = sum((q(x).squeeze(-1) - target).square().mean() for q in self.q)
        self.opt_q.zero_grad()
        q_loss.backward()
        self.opt_q.step()
        a, logp = self.sample(actor_obs)
        pi_loss = (alpha * logp - self.q_min(self.q, actor_obs, a)).mean()
        self.opt_pi.zero_grad()
        pi_loss.backward()
        self.opt_pi.step()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.opt_alpha.zero_grad()
        alpha_loss.backward()
        self.opt_alpha.step()
        with torch.no_grad():
            for p, t in zip(self.q.parameters(), self.q_target.parameters()):
                t.mul_(1 - self.cfg.tau).add_(self.cfg.tau * p)
        return {"q_loss": float(q_loss.detach()), "pi_loss": float(pi_loss.detach()), "alpha": float(alpha)}


def log_transitions(logs: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(obs, action, next obs) of consecutive steps of every log."""
    parts = [(log.obs[:-1], log.action[:-1], log.obs[1:]) for log in read_logs(logs) if len(log) > 1]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def train_vgdf(task: Any, robot: Perturbation, cfg: VgdfConfig, seed: int = 0,
               prior: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
               log: Callable[[str], None] = print) -> tuple[SAC, list[dict[str, float]], int]:
    """The VGDF loop; returns the agent, its curve and the robot steps taken."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = cfg.num_envs
    robot_worlds = max(1, n // cfg.ratio)
    every = max(1, cfg.ratio // n)         # simulator vector steps per robot vector step
    sim = BatchedEnv(task, n, dr="none", seed=seed)
    real = robot.make_env(task, robot_worlds, seed=seed + 1)
    od, ad = task.observation_size, task.action_size
    agent = SAC(od, ad, cfg)
    ens = Ensemble(od, ad, cfg.ensemble, cfg.hidden)
    sim_buf = Buffer(cfg.sim_steps, od, ad)
    real_buf = Buffer(cfg.sim_steps // cfg.ratio + robot_worlds * 2, od, ad)
    prior_obs, prior_act, prior_next = prior if prior is not None else (np.zeros((0, od)),) * 3
    o_sim, o_real = sim.reset_numpy(seed), real.reset_numpy(seed + 1)
    curve: list[dict[str, float]] = []
    ret_real = np.zeros(robot_worlds)
    real_returns: list[float] = []
    kept: list[float] = []
    stats: dict[str, float] = {}
    steps, robot_steps, k, fitted, credit = 0, 0, 0, False, 0.0
    while steps < cfg.sim_steps:
        random = steps < cfg.start_steps
        a = rng.uniform(-1, 1, (n, ad)) if random else agent.act(o_sim)
        o2, r, term, trunc, info = sim.step_numpy(a)
        nxt = o2.copy()
        if "final_obs" in info:
            done = term | trunc
            nxt[done] = info["final_obs"][done]
        sim_buf.add(o_sim, a, r, nxt, term.astype(np.float32))
        o_sim, steps, k = o2, steps + n, k + 1
        if k % every == 0:
            ar = rng.uniform(-1, 1, (robot_worlds, ad)) if random else agent.act(o_real)
            o2r, rr, tr, trr, inf = real.step_numpy(ar)
            nxt = o2r.copy()
            ret_real += rr
            if "final_obs" in inf:
                done = tr | trr
                nxt[done] = inf["final_obs"][done]
                real_returns += ret_real[done].tolist()
                ret_real[done] = 0.0
            real_buf.add(o_real, ar, rr, nxt, tr.astype(np.float32))
            o_real, robot_steps = o2r, robot_steps + robot_worlds
        if steps >= cfg.start_steps and (not fitted or steps % cfg.ensemble_every < n):
            d = real_buf.data
            ens.fit(np.concatenate([prior_obs, d["obs"][:real_buf.n]]), np.concatenate([prior_act, d["act"][:real_buf.n]]),
                    np.concatenate([prior_next, d["next"][:real_buf.n]]), epochs=20 if fitted else 50, seed=seed + steps)
            fitted = True
        if steps < cfg.start_steps:
            continue
        credit += cfg.updates_per_step * n
        while credit >= 1:
            credit -= 1
            bs, br = sim_buf.sample(cfg.batch, rng), real_buf.sample(cfg.batch, rng)
            mask, _ = value_filter(agent.value, ens, bs["obs"], bs["act"], bs["next"], cfg.keep)
            kept.append(float(mask.float().mean()))
            batch = {key: torch.cat([br[key], bs[key][mask]]) for key in br}
            stats = agent.update(batch, torch.cat([br["obs"], bs["obs"]]))
        if stats and k % max(1, 2000 // n) == 0:
            point = {"step": steps, "robot_steps": robot_steps, **stats,
                     "kept": float(np.mean(kept[-100:])) if kept else float("nan"),
                     "robot_return": float(np.mean(real_returns[-10:])) if real_returns else float("nan")}
            curve.append(point)
            if len(curve) % 10 == 0:
                log(f"vgdf: {steps:,} sim steps, {robot_steps:,} robot steps, recent robot return "
                    f"{point['robot_return']:.1f}")
    sim.close()
    real.close()
    return agent, curve, robot_steps


@register_method("vgdf", help="VGDF: SAC on online robot (proxy) steps plus value-filtered simulator transitions")
def run(task: Any, logs: str | Path, cfg: AlignConfig, out: Path, log: Callable[[str], None] = print,
        truth: Perturbation | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """Trains a SAC policy with VGDF against the proxy robot; writes ``final/`` and the report."""
    vc = cfg.vgdf
    if vc.robot:
        robot = Perturbation.load(vc.robot)
    elif truth is not None:
        robot = truth
    else:
        raise ValueError("--vgdf.robot: VGDF interacts with the robot online; give the proxy's "
                         "perturbation file (--vgdf.robot FILE or --truth FILE)")
    set_threads(0)
    prior = log_transitions(logs)
    from simrl.align.data import check_logs
    check_logs(read_logs(logs), task)
    if checkpoint is not None:
        check_actions(checkpoint, logs)
    t0 = time.perf_counter()
    agent, curve, robot_steps = train_vgdf(task, robot, vc, cfg.seed, prior, log)
    final = policies.save(out / "final", agent.policy, task,
                          training={"algo": "vgdf", "steps": vc.sim_steps, "robot_steps": robot_steps,
                                    "seed": cfg.seed})
    report: dict[str, Any] = {
        "method": "vgdf", "task": task.name, "logs": [str(logs)], "log_transitions": len(prior[0]),
        "sim_steps": vc.sim_steps, "robot_steps": robot_steps,
        "robot_seconds": robot_steps * task.cfg.control_dt, "seconds": time.perf_counter() - t0,
        "vgdf": asdict(vc), "curve": curve, "finetuned": str(final),
        "kept_fraction": vc.keep,
    }
    if vc.eval_episodes:
        report["proxy_return"] = {"vgdf": proxy_return(final, robot, vc.eval_episodes, seed=10_000 + cfg.seed)}
        if checkpoint is not None:
            report["proxy_return"]["original"] = proxy_return(checkpoint, robot, vc.eval_episodes, seed=10_000 + cfg.seed)
        log(f"vgdf: return on the proxy {report['proxy_return']['vgdf']['mean_return']:.1f}")
    plot_curves(out / "curves.png", {"robot return": (curve, "step", "robot_return"),
                                     "critic loss": (curve, "step", "q_loss")})
    report["files"] = ["final/", "report.json", "report.html", "curves.png"]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_html(out / "report.html", report, ["curves.png"])
    return report


__all__ = ["SAC", "Ensemble", "value_filter", "train_vgdf"]
