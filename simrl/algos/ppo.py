"""``--algo ppo``: simrl's batched PPO on :func:`envs.make`'s env (device tensors end to end),
with the options that change its env or add hooks: ``--dr doraemon`` (the distribution adapts
between iterations), ``--residual BASE`` (the policy corrects a frozen base controller) and
``--robust hinf`` (a learning disturber pushes the robot).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import envs
from envs.tasks import make_task
from policies.networks import ActorCritic, Policy
from simrl.algos import env_dr, register_algorithm
from simrl.dr.curriculum import DoraemonCurriculum, DoraemonTrainConfig
from simrl.ppo import PPO, PPOConfig
from simrl.robust.hinf import DisturbedEnv, HinfConfig
from simrl.robust.residual import ResidualEnv, make_base
from simrl.train import RunConfig, Trainer, resolve_device, resolve_dr, set_threads

# Initial action-noise log std of a residual (``--residual``): it starts near the base controller.
RESIDUAL_INIT_LOG_STD = -1.0


class PPOTrainer(Trainer):
    """simrl's batched PPO on :func:`envs.make`'s env (device tensors end to end). ``env``
    replaces that env with another of the same API (a wrapper: residual, adversary)."""

    def __init__(self, cfg: RunConfig, out: str | Path, env: Any = None):

        super().__init__(cfg, out)
        t = cfg.train
        set_threads(t.threads)
        self.device = resolve_device(t.device)
        torch.manual_seed(t.seed)
        self.env = env if env is not None else envs.make(
            t.task, t.num_envs, self.device, dr=resolve_dr(t.dr), seed=t.seed, config=cfg.task,
            backend=t.backend)
        self.task = self.env.task
        self.model = ActorCritic(self.env.observation_size, self.env.action_size, cfg.network)
        self.ppo = PPO(self.model, cfg.ppo, t.num_envs, self.device)
        self.obs: torch.Tensor | None = None

    def policy(self) -> Policy:
        return self.model.policy

    def init_from(self, path: str | Path) -> None:
        """Starts this run from the checkpoint ``path`` (``--init``): its actor, critic,
        observation normalizer and reward scaler; the optimizer, step counter and action std
        (``network.init_log_std``) are this run's. ValueError naming the field when the
        checkpoint is not a simrl PPO run's or its network does not fit this run's."""
        from simrl.train import read_training_state

        path = Path(path)
        state = read_training_state(path)
        if state["algo"] != "ppo":
            raise ValueError(f"--init {path}: field algo of its training state is {state['algo']!r}; "
                             "--init takes a checkpoint of simrl's PPO (--algo ppo)")
        saved = state["algorithm"]["ppo"]
        own = self.model.state_dict()
        for name, tensor in saved["model"].items():
            if name not in own or own[name].shape != tensor.shape:
                raise ValueError(
                    f"--init {path}: network entry {name} has shape {tuple(tensor.shape)}, this run's "
                    f"{tuple(own[name].shape) if name in own else 'none'} (observation size "
                    f"{self.env.observation_size}, action size {self.env.action_size}, "
                    "--network.actor-hidden / --network.critic-hidden must match the checkpoint's)")
        self.model.load_state_dict(saved["model"])
        with torch.no_grad():
            self.model.policy.log_std.fill_(self.cfg.network.init_log_std)
        if self.ppo.reward_scaler is not None and "reward_scaler" in saved:
            self.ppo.reward_scaler.load_state_dict(saved["reward_scaler"])

    def _on_step(self, info: dict[str, Any]) -> None:
        batch = info.get("episodes")
        if batch is not None:
            self.record_episodes(batch.returns, batch.lengths, batch.success, batch)

    def train(self) -> Path:
        self.begin()
        if self.obs is None:
            self.obs = self.env.reset()
        per_iteration = self.cfg.train.num_envs * self.cfg.ppo.num_steps
        while self.step < self.cfg.train.steps:
            self.obs, stats = self.ppo.learn(self.env, self.obs, self._on_step)
            previous = self.step
            self.step += per_iteration
            self.iteration += 1
            self.after_iteration(stats, previous)
        return self.finish()

    def algorithm_state(self, directory: Path) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(),
               "env": json.dumps(self.env.rng.bit_generator.state)}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"ppo": self.ppo.state_dict(), "rng": rng}

    def load_algorithm_state(self, state: dict[str, Any], directory: Path) -> None:
        self.ppo.load_state_dict(state["ppo"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.env.rng.bit_generator.state = json.loads(rng["env"])
        # Episodes in flight at save time are not restored: the envs start fresh episodes.
        self.obs = self.env.reset()



def ppo_run_defaults(cfg: RunConfig) -> dict[str, Any]:
    """Defaults that follow from the run's options: a residual explores less (its noise adds
    to a working base controller); the disturber collects its rollout alongside the actor's."""
    out: dict[str, Any] = {}
    if cfg.train.residual:
        out["network.init_log_std"] = min(cfg.network.init_log_std, RESIDUAL_INIT_LOG_STD)
    if cfg.train.robust == "hinf":
        out["hinf.ppo.num_steps"] = cfg.ppo.num_steps
    return out


@register_algorithm("ppo", sections={"ppo": PPOConfig, "doraemon": DoraemonTrainConfig,
                                     "hinf": HinfConfig},
                    run_defaults=ppo_run_defaults, wrappers=True,
                    help="simrl's batched PPO (CUDA when present); --dr doraemon, --robust hinf, --residual")
def make_ppo_trainer(cfg: RunConfig, out: str | Path) -> PPOTrainer:
    """The PPO trainer of ``cfg``, its env wrapped for ``--residual`` / ``--robust hinf`` and
    DORAEMON attached for ``--dr doraemon``."""
    t = cfg.train
    if t.residual and t.robust == "hinf":
        raise ValueError("--residual and --robust hinf cannot be combined")
    if t.robust == "hinf" and cfg.hinf.ppo.num_steps != cfg.ppo.num_steps:
        raise ValueError(f"hinf.ppo.num_steps ({cfg.hinf.ppo.num_steps}) must equal ppo.num_steps "
                         f"({cfg.ppo.num_steps}): the disturber collects alongside the actor")
    torch.manual_seed(t.seed)   # the disturber's network is built before the actor's
    task = make_task(t.task, config=cfg.task)
    env: Any = envs.make(task, t.num_envs, resolve_device(t.device), dr=env_dr(cfg), seed=t.seed,
                         backend=t.backend, external_forces=t.robust == "hinf",
                         episode_interval=cfg.ppo.num_steps)   # warp: episodes once per rollout
    curriculum = (DoraemonCurriculum(env, cfg.doraemon, Path(out) / "dr_history.png")
                  if t.dr == "doraemon" else None)
    if t.residual:
        env = ResidualEnv(env, make_base(t.residual, task, trust_pickle=t.trust_pickle), t.residual_scale)
    if t.robust == "hinf":
        env = DisturbedEnv(env, cfg.hinf)
    trainer = PPOTrainer(cfg, out, env=env)
    if curriculum is not None:
        curriculum.attach(trainer)
    if t.residual:  # the residual starts at exactly zero: training starts at the base controller
        last = trainer.model.policy.actor[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    if t.robust == "hinf":
        def disturber_update(tr: Trainer, stats: dict[str, float]) -> None:
            tr.log_scalars({f"hinf/{key}": value for key, value in env.end_iteration().items()})
        trainer.on_iteration.insert(0, disturber_update)
        trainer.stateful["hinf"] = env
    return trainer
