"""Teacher-student distillation with DAgger.

A *teacher* is trained with privileged information (:class:`PrivilegedEnv`: the task
observation plus the true base velocity and the standardized DR parameters); the *student* sees
only what a robot has (:class:`HistoryEnv`: the last ``H`` task observations, oldest first, zeros
before the episode start). Both wrappers live in :mod:`policies.wrappers`.

:func:`distill` runs DAgger (Ross et al. 2011): each iteration rolls out a mixture (per world and
step, the teacher's action with probability ``beta_k = beta * beta_decay**k``, the student's
otherwise), labels every visited state with the teacher's deterministic action (the teacher sees
the privileged observation of the same worlds at the same time), adds the pairs to a capped FIFO
dataset and trains the student MLP by MSE regression for a few epochs. The student's action error
on each iteration's fresh states, measured before it trains on them, is the held-out imitation
error. At the end the teacher and the student are evaluated under the same randomization and
seeds. A teacher is trained with :func:`train_teacher` (``simrl distill teacher``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import policies
from envs.batched import BatchedEnv
from envs.distributions import distribution_from_dict
from envs.tasks import config_from_spec, make_task
from policies.networks import NetworkConfig, Policy
from policies.wrappers import HistoryEnv, PrivilegedEnv, wrapper_from_spec
from simrl.algos.ppo import PPOTrainer
from simrl.core.config import to_jsonable
from simrl.evaluate import run_episodes, summarize
from simrl.train import resolve_device, resolve_dr, set_threads

DISTILL_FILE = "distill.json"
STUDENT_DIR = "student"


@dataclass
class DistillConfig:
    """DAgger from a privileged teacher checkpoint into a history student."""

    history: int = 5                     # task observations the student sees (H)
    iterations: int = 20                 # DAgger iterations
    steps_per_iteration: int = 100       # control steps of every world per iteration
    num_envs: int = 64
    beta: float = 1.0                    # probability of executing the teacher's action at iteration 0 ...
    beta_decay: float = 0.5              # ... times beta_decay per iteration
    dataset_size: int = 500_000          # (observation, teacher action) pairs kept, oldest dropped first
    epochs: int = 5                      # passes over the dataset per iteration
    batch_size: int = 2048
    learning_rate: float = 1e-3
    hidden: tuple[int, ...] = (256, 256)  # student MLP
    activation: str = "elu"
    dr: str = "teacher"                  # teacher (its checkpoint's DR) | none | uniform | JSON file
    eval_episodes: int = 50              # episodes of teacher and student in the final comparison
    seed: int = 0
    device: str = "auto"
    threads: int = 0                     # torch CPU threads; 0 = half the cores


# -- DAgger ---------------------------------------------------------------------------------------
class Dataset:
    """(observation, target action) pairs, at most ``capacity``; the oldest are dropped first."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        if capacity < 1:
            raise ValueError(f"dataset size must be >= 1, got {capacity}")
        self.obs = torch.zeros(capacity, obs_dim)
        self.actions = torch.zeros(capacity, act_dim)
        self.capacity, self.size, self._next = capacity, 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray) -> None:
        obs, actions = obs[-self.capacity:], actions[-self.capacity:]
        idx = (self._next + np.arange(len(obs))) % self.capacity
        self.obs[idx] = torch.as_tensor(obs, dtype=torch.float32)
        self.actions[idx] = torch.as_tensor(actions, dtype=torch.float32)
        self._next = int((self._next + len(obs)) % self.capacity)
        self.size = min(self.capacity, self.size + len(obs))


@dataclass
class Rollout:
    """States visited in one DAgger rollout with both policies' actions on them."""

    student_obs: np.ndarray       # (T * N, H * obs)
    teacher_actions: np.ndarray   # (T * N, act) deterministic, in [-1, 1]
    student_actions: np.ndarray
    returns: np.ndarray           # episodes that finished during the rollout

    @property
    def action_mae(self) -> float:
        return float(np.abs(self.student_actions - self.teacher_actions).mean())


class DAgger:
    """One env stepped by a teacher/student mixture, watched through both wrappers."""

    def __init__(self, teacher: Any, task: Any, dr: Any, cfg: DistillConfig, device: torch.device):
        self.teacher, self.cfg, self.device = teacher, cfg, device
        env = BatchedEnv(task, cfg.num_envs, dr=dr, seed=cfg.seed)
        self.env = env
        self.teacher_view = PrivilegedEnv(env, teacher.spec["privileged"])
        self.student_view = HistoryEnv(env, cfg.history)
        network = NetworkConfig(actor_hidden=cfg.hidden, critic_hidden=cfg.hidden,
                                activation=cfg.activation)
        self.student = Policy(self.student_view.observation_size, env.action_size, network).to(device)
        self.optimizer = torch.optim.Adam(self.student.actor.parameters(), lr=cfg.learning_rate)
        self.data = Dataset(cfg.dataset_size, self.student_view.observation_size, env.action_size)
        self.rng = np.random.default_rng(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        obs = env.reset_numpy()
        self._teacher_obs = self.teacher_view.on_reset(obs)
        self._student_obs = self.student_view.on_reset(obs)

    def student_action(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.student(torch.as_tensor(obs, dtype=torch.float32, device=self.device)
                                ).cpu().numpy().astype(np.float64)

    def collect(self, steps: int, beta: float) -> Rollout:
        """``steps`` control steps of every world; each world executes the teacher's action with
        probability ``beta`` and the student's otherwise, every step."""
        obs, labels, own, returns = [], [], [], []
        for _ in range(steps):
            teacher = np.asarray(self.teacher(self._teacher_obs.astype(np.float32)), dtype=np.float64)
            student = self.student_action(self._student_obs)
            obs.append(self._student_obs)
            labels.append(teacher)
            own.append(student)
            use_teacher = self.rng.random(self.env.num_envs) < beta
            env_obs, _, terminated, truncated, info = self.env.step_numpy(
                np.where(use_teacher[:, None], teacher, student))
            done = terminated | truncated
            self._teacher_obs = self.teacher_view.on_step(env_obs, done)
            self._student_obs = self.student_view.on_step(env_obs, done)
            if "episodes" in info:
                returns.append(info["episodes"].returns)
        return Rollout(np.concatenate(obs), np.concatenate(labels), np.concatenate(own),
                       np.concatenate(returns) if returns else np.zeros(0))

    def fit(self) -> float:
        """``epochs`` passes of MSE regression over the dataset; returns the last epoch's loss."""
        cfg, n = self.cfg, len(self.data)
        loss_sum = 0.0
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator)
            loss_sum = 0.0
            for start in range(0, n, cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                obs, target = self.data.obs[idx].to(self.device), self.data.actions[idx].to(self.device)
                loss = torch.nn.functional.mse_loss(self.student.mean(self.student.normalize(obs)), target)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.item() * len(idx)
        return loss_sum / n

    def iteration(self, k: int) -> dict[str, float]:
        """Collect with ``beta_k``, aggregate, retrain; the statistics of the iteration."""
        beta = self.cfg.beta * self.cfg.beta_decay ** k
        rollout = self.collect(self.cfg.steps_per_iteration, beta)
        self.data.add(rollout.student_obs, rollout.teacher_actions)
        if self.student.normalizer is not None:
            self.student.normalizer.update(torch.as_tensor(rollout.student_obs, device=self.device))
        loss = self.fit()
        stats = {"beta": beta, "action_mae": rollout.action_mae, "loss": loss,
                 "dataset_size": float(len(self.data))}
        if len(rollout.returns):
            stats["mean_return"] = float(rollout.returns.mean())
        return stats

    def close(self) -> None:
        self.env.close()


@dataclass
class DistillResult:
    student: Path                 # the student checkpoint
    steps: int                    # env steps of the DAgger rollouts
    wall_time_s: float            # DAgger, without the final evaluation
    action_mae: float             # student vs teacher on states the final student visits
    teacher_eval: dict[str, Any]  # evaluation summaries (simrl.evaluate.summarize)
    student_eval: dict[str, Any]


def load_teacher(path: str | Path, device: Any = "cpu") -> Any:
    """A privileged teacher checkpoint as a deterministic policy."""
    teacher = policies.load(path, device=device)
    if not teacher.spec.get("privileged"):
        raise ValueError(f"{path} is not a privileged teacher (no spec['privileged']); train one "
                         "with `simrl distill teacher`")
    return teacher


def resolve_distill_dr(text: str, teacher_spec: dict[str, Any]) -> Any:
    """``--dr``: ``teacher`` is the DR the teacher checkpoint was saved with; else as ``simrl train``."""
    if text != "teacher":
        return resolve_dr(text)
    if teacher_spec.get("dr") is None:
        return "none"
    return distribution_from_dict(teacher_spec["dr"])


def evaluate_pair(teacher: Any, student: Any, task: Any, episodes: int, dr: Any, seed: int
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Teacher (privileged) and student (history) summaries under the same DR and seeds."""
    def evaluate(policy: Any) -> dict[str, Any]:
        return summarize(run_episodes(policy, task, episodes, dr=dr, seed=seed,
                                      wrap=wrapper_from_spec(policy.spec)))
    return evaluate(teacher), evaluate(student)


def distill(teacher_path: str | Path, out: str | Path, cfg: DistillConfig,
            progress: Callable[[int, dict[str, float]], None] | None = None) -> DistillResult:
    """DAgger from the teacher checkpoint into ``out/student``; TensorBoard in ``out/tb``, the
    teacher/student comparison in ``out/distill.json``. ``progress(k, stats)`` after each iteration."""
    from torch.utils.tensorboard import SummaryWriter

    if cfg.iterations < 1 or cfg.steps_per_iteration < 1 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError("iterations, steps_per_iteration, epochs and batch_size must be >= 1")
    if not 0.0 <= cfg.beta <= 1.0 or not 0.0 <= cfg.beta_decay <= 1.0:
        raise ValueError("beta and beta_decay must lie in [0, 1]")
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(teacher_path, device)
    spec = teacher.spec
    task = make_task(spec["task"], config=config_from_spec(spec))
    dr = resolve_distill_dr(cfg.dr, spec)
    dagger = DAgger(teacher, task, dr, cfg, device)
    writer = SummaryWriter(str(out / "tb"))
    history, t0 = [], time.perf_counter()
    per_iteration = cfg.num_envs * cfg.steps_per_iteration
    try:
        for k in range(cfg.iterations):
            stats = dagger.iteration(k)
            stats["time_s"] = time.perf_counter() - t0
            for key, value in stats.items():
                writer.add_scalar(f"dagger/{key}", value, (k + 1) * per_iteration)
            history.append(stats)
            if progress is not None:
                progress(k, stats)
        final = dagger.collect(cfg.steps_per_iteration, beta=0.0)   # states the student reaches
        steps = (cfg.iterations + 1) * per_iteration
        wall = time.perf_counter() - t0
        writer.add_scalar("dagger/final_action_mae", final.action_mae, steps)
        student_dir = policies.save(
            out / STUDENT_DIR, dagger.student, dagger.student_view.task, distribution=dagger.env.distribution,
            training={"algo": "dagger", "teacher": str(teacher_path), "steps": steps,
                      "iterations": cfg.iterations, "seed": cfg.seed, "wall_time_s": round(wall, 3),
                      "action_mae": final.action_mae, "config": to_jsonable(cfg)})
    finally:
        writer.close()
        dagger.close()
    student = policies.load(student_dir, device=device)
    teacher_eval, student_eval = evaluate_pair(teacher, student, task, cfg.eval_episodes, dr, cfg.seed)
    result = DistillResult(student_dir, steps, wall, final.action_mae, teacher_eval, student_eval)
    report = {"task": task.name, "teacher": str(teacher_path), "student": str(student_dir),
              "dr": cfg.dr, "seed": cfg.seed, "steps": steps, "wall_time_s": wall,
              "final_action_mae": final.action_mae, "iterations": history,
              "evaluation": {"episodes": cfg.eval_episodes, "teacher": teacher_eval,
                             "student": student_eval},
              "config": cfg}
    (out / DISTILL_FILE).write_text(json.dumps(to_jsonable(report), indent=2, allow_nan=False))
    return result


# -- teacher training -------------------------------------------------------------------------------
def train_teacher(cfg: Any, out: str | Path) -> Any:
    """A PPO trainer (``simrl.algos.ppo.PPOTrainer``) whose policy sees the privileged observation
    of :class:`PrivilegedEnv`; ``cfg`` is a ``simrl.train.RunConfig`` (plain PPO: no DORAEMON,
    residual or disturber). Call ``.train()`` on it."""
    t = cfg.train
    if t.algo != "ppo" or t.dr == "doraemon" or t.robust != "none" or t.residual:
        raise ValueError("a privileged teacher is trained with plain PPO (--algo ppo, --dr none, "
                         "uniform or a JSON file; no --robust or --residual)")
    task = make_task(t.task, config=cfg.task)
    env = BatchedEnv(task, t.num_envs, resolve_device(t.device), dr=resolve_dr(t.dr), seed=t.seed)
    # --init TEACHER: the privileged features stay the teacher's (parameters it was not shown,
    # e.g. a newly randomized latency, are not added), so its network fits the observation
    privileged = policies.load_spec(t.init).get("privileged") if t.init else None
    if t.init and not privileged:
        raise ValueError(f"--init {t.init}: not a privileged teacher (no spec['privileged']); "
                         "a teacher starts from a teacher's checkpoint")
    return PPOTrainer(cfg, out, env=PrivilegedEnv(env, privileged))
