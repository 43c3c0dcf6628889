"""``--algo sb3-ppo | sb3-sac``: Stable-Baselines3 on the Gymnasium env, saving the same
checkpoints as simrl PPO (the SB3 policy's MLP and ``VecNormalize`` statistics converted into a
:class:`~policies.networks.Policy`, checked to give the same actions). The SB3 model zip and
``vecnormalize.pkl`` sit beside each checkpoint as its training state; SAC resumes with an
empty replay buffer.

SAC as in the DORAEMON paper (Tiboni et al., ICLR 2024; its code's ``adaptive+`` setting) runs
on simrl's batched env instead (:class:`simrl.integrations.sb3.SB3VecEnv`), which it needs for
any of: ``--dr doraemon`` (the distribution is updated from SAC's episodes by the same
:class:`~simrl.dr.curriculum.DoraemonCurriculum` PPO uses, and resets draw from it),
``--sac.history K`` (the actor sees the current observation, the ``K`` previous ones and the
``K`` previous actions: :class:`~policies.wrappers.HistoryEnv`; the paper's ``stack_history``
is 5) and ``--sac.critic-dynamics`` (the critics also see the episode's DR parameters,
standardized to [-1, 1]: :class:`~simrl.integrations.sb3.AsymmetricSACPolicy`). The exported
actor takes only the history, which the robot runtime builds itself (``spec["history"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import envs.gym
from envs.batched import resolve_distribution
from envs.tasks import make_config, make_task
from policies.checkpoint import atomic_write, atomic_write_path
from policies.networks import ACTIVATIONS, Policy
from policies.sb3 import NeedsPickleError, check_conversion, policy_from_sb3
from policies.wrappers import HistoryEnv
from simrl.algos import env_dr, register_algorithm
from simrl.core.config import require
from simrl.dr.curriculum import DoraemonCurriculum, DoraemonTrainConfig
from simrl.ppo import PPOConfig
from simrl.train import RunConfig, Trainer, resolve_device, resolve_dr, set_threads

MODEL_FILE = "sb3_model.zip"
VECNORM_FILE = "vecnormalize.pkl"


@dataclass
class SACConfig:
    """Stable-Baselines3 SAC hyperparameters (``--algo sb3-sac``)."""

    learning_rate: float = 3e-4          # Adam learning rate
    buffer_size: int = 1_000_000         # replay buffer transitions
    batch_size: int = 256                # minibatch size
    learning_starts: int = 10_000        # env steps before the first update
    tau: float = 0.005                   # target network soft-update rate
    gamma: float = 0.99                  # discount factor
    train_freq: int = 1                  # env steps between updates
    gradient_steps: int = 1              # gradient steps per update
    history: int = 0                     # actor input: the observation plus the last `history` observations and actions (the DORAEMON paper: 5); 0: the observation alone
    critic_dynamics: bool = False        # critics also see the episode's DR parameters standardized to [-1, 1] (asymmetric; the DORAEMON paper's SAC)

    def validate(self) -> None:
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        require(0 < self.tau <= 1, "tau", f"must be in (0, 1], got {self.tau}")
        for name in ("buffer_size", "batch_size", "train_freq", "gradient_steps"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.history >= 0, "history", f"must be >= 0, got {self.history}")


def _task_overrides(cfg: RunConfig) -> dict[str, Any]:
    """Task config fields that differ from the task's defaults (what the Gymnasium env takes)."""
    default = make_config(cfg.train.task)
    out = {f.name: getattr(cfg.task, f.name) for f in dataclasses.fields(cfg.task)
           if getattr(cfg.task, f.name) != getattr(default, f.name)}
    unset = [k for k, v in out.items() if v is None and k != "sim_dt"]
    if unset:
        raise ValueError(f"SB3 training cannot set task fields {unset} to None")
    return out


class SB3Trainer(Trainer):
    """SB3 PPO or SAC (``cfg.train.algo``) with simrl's logging, checkpoints and resume."""

    def __init__(self, cfg: RunConfig, out: str | Path):
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import (
            DummyVecEnv,
            SubprocVecEnv,
            VecNormalize,
        )


        super().__init__(cfg, out)
        t = cfg.train
        set_threads(t.threads)
        self.device = resolve_device(t.device)
        self.task = make_task(t.task, config=cfg.task)
        self.vec_normalize = None
        if uses_batched_env(cfg):
            self.raw_venv = self._batched_venv()
        else:
            dr = resolve_dr(t.dr)
            env_kwargs = {"task": t.task, "dr": dr, **_task_overrides(cfg)}
            self.raw_venv = make_vec_env(envs.gym.SimrlEnv, n_envs=t.num_envs, seed=t.seed,
                                         env_kwargs=env_kwargs,
                                         vec_env_cls=DummyVecEnv if t.vec_env == "dummy" else SubprocVecEnv)
            self._distribution = resolve_distribution(dr, self.task)[1]
        self.venv = self.raw_venv
        if cfg.network.normalize_obs:
            gamma = cfg.ppo.gamma if t.algo == "sb3-ppo" else cfg.sac.gamma
            self.venv = self.vec_normalize = VecNormalize(
                self.raw_venv, norm_obs=True, norm_reward=t.algo == "sb3-ppo",
                clip_obs=cfg.network.obs_clip, gamma=gamma)
        self.model = self._build_model()

    def _batched_venv(self) -> Any:
        """simrl's batched env (DORAEMON attached, history inputs) as an SB3 VecEnv."""
        from simrl.integrations.sb3 import SB3VecEnv

        cfg, t = self.cfg, self.cfg.train
        if cfg.network.normalize_obs:
            raise ValueError("network.normalize_obs: not available with --dr doraemon, --sac.history "
                             "or --sac.critic-dynamics (SAC on the batched env); set it to false")
        env: Any = envs.make(self.task, t.num_envs, "cpu", dr=env_dr(cfg), seed=t.seed)
        if t.dr == "doraemon":
            DoraemonCurriculum(env, cfg.doraemon, self.out / "dr_history.png").attach(self)
        state_part = None
        if cfg.sac.history:
            env = HistoryEnv(env, cfg.sac.history + 1, actions=cfg.sac.history)
            state_part = env.observation_part
            self.task = env.task   # the checkpoint records the history (spec["history"])
        self.env = env
        return SB3VecEnv(env, critic_dynamics=cfg.sac.critic_dynamics, state_part=state_part)

    def _build_model(self) -> Any:
        from stable_baselines3 import PPO, SAC

        cfg, t, net = self.cfg, self.cfg.train, self.cfg.network
        common = {"seed": t.seed, "device": self.device, "verbose": 0}
        activation = ACTIVATIONS[net.activation]
        if t.algo == "sb3-ppo":
            p = cfg.ppo
            batch = t.num_envs * p.num_steps
            return PPO("MlpPolicy", self.venv, learning_rate=p.learning_rate, n_steps=p.num_steps,
                       batch_size=max(1, batch // p.num_minibatches), n_epochs=p.num_epochs,
                       gamma=p.gamma, gae_lambda=p.lam, clip_range=p.clip_param,
                       clip_range_vf=p.clip_param if p.clip_value else None,
                       normalize_advantage=p.normalize_advantages, ent_coef=p.entropy_coef,
                       vf_coef=p.value_loss_coef, max_grad_norm=p.max_grad_norm,
                       policy_kwargs={"net_arch": {"pi": list(net.actor_hidden), "vf": list(net.critic_hidden)},
                                      "activation_fn": activation, "log_std_init": net.init_log_std},
                       **common)
        s = cfg.sac
        policy: Any = "MlpPolicy"
        if s.critic_dynamics:
            from simrl.integrations.sb3 import AsymmetricSACPolicy
            policy = AsymmetricSACPolicy
        return SAC(policy, self.venv, learning_rate=s.learning_rate, buffer_size=s.buffer_size,
                   learning_starts=s.learning_starts, batch_size=s.batch_size, tau=s.tau,
                   gamma=s.gamma, train_freq=s.train_freq, gradient_steps=s.gradient_steps,
                   policy_kwargs={"net_arch": {"pi": list(net.actor_hidden), "qf": list(net.critic_hidden)},
                                  "activation_fn": activation},
                   **common)

    @property
    def distribution(self) -> Any:
        return self._distribution if self.env is None else self.env.distribution

    def set_distribution(self, dist: Any) -> None:
        if self.env is not None:
            self.env.set_distribution(dist)
            return
        if self.cfg.train.vec_env != "dummy":
            raise ValueError("changing the DR distribution of SB3 envs needs --vec-env dummy")
        for env in self.raw_venv.envs:
            env.unwrapped.core.set_distribution(dist)
        self._distribution = dist

    def policy(self) -> Policy:
        policy = policy_from_sb3(self.model.policy, self.vec_normalize)
        raw = (self.vec_normalize.get_original_obs() if self.vec_normalize is not None
               else self.model._last_obs)
        if raw is not None:
            rng = np.random.default_rng(0)

            def probe(x: np.ndarray) -> np.ndarray:
                return np.concatenate([x, x + rng.normal(0.0, 1.0, x.shape)]).astype(np.float32)
            obs = {k: probe(v) for k, v in raw.items()} if isinstance(raw, dict) else probe(raw)
            check_conversion(self.model.policy, policy, obs, self.vec_normalize)
        return policy

    def train(self) -> Path:
        from stable_baselines3.common.callbacks import BaseCallback

        trainer = self

        class Callback(BaseCallback):
            last = self.step

            def _on_step(self) -> bool:
                if trainer.env is not None:   # the batched env: its episodes, parameters included
                    batch = trainer.raw_venv.last_episodes
                    if batch is not None:
                        trainer.record_episodes(batch.returns, batch.lengths, batch.success, batch)
                    return True
                for info in self.locals["infos"]:
                    if "episode" in info:
                        ep = info["episode"]
                        trainer.record_episodes([ep["r"]], [ep["l"]], [info.get("is_success", False)])
                return True

            def _on_rollout_end(self) -> None:
                trainer.step = self.num_timesteps
                # SAC's rollouts are single steps: log about every thousand steps.
                if trainer.step - self.last >= 1000:
                    trainer.iteration += 1
                    stats = {k.split("/", 1)[1]: float(v) for k, v in self.logger.name_to_value.items()
                             if k.startswith("train/")}
                    trainer.after_iteration(stats, self.last)
                    self.last = trainer.step

        self.begin()
        remaining = self.cfg.train.steps - self.step
        if remaining > 0:
            self.model.learn(total_timesteps=remaining, callback=Callback(), reset_num_timesteps=False,
                             progress_bar=False)
        self.step = self.model.num_timesteps
        return self.finish()

    def algorithm_state(self, directory: Path) -> dict[str, Any]:
        atomic_write(directory / MODEL_FILE, self.model.save)
        if self.vec_normalize is not None:
            atomic_write_path(directory / VECNORM_FILE, self.vec_normalize.save)
        return {"num_timesteps": int(self.model.num_timesteps)}

    def load_algorithm_state(self, state: dict[str, Any], directory: Path) -> None:
        from stable_baselines3 import PPO, SAC
        from stable_baselines3.common.vec_env import VecNormalize

        if not self.cfg.train.trust_pickle:
            raise NeedsPickleError(f"{directory}: resuming an SB3 run unpickles its {MODEL_FILE} and "
                                   f"{VECNORM_FILE}, which runs any code they hold; add --trust-pickle "
                                   "true if you made this run yourself")
        if self.vec_normalize is not None:
            self.venv = self.vec_normalize = VecNormalize.load(str(directory / VECNORM_FILE), self.raw_venv)
        cls = PPO if self.cfg.train.algo == "sb3-ppo" else SAC
        self.model = cls.load(directory / MODEL_FILE, env=self.venv, device=self.device)
        self.model.num_timesteps = int(state["num_timesteps"])


@register_algorithm("sb3-ppo", sections={"ppo": PPOConfig},
                    help="Stable-Baselines3 PPO on the Gymnasium env (--ppo.* options)")
def make_sb3_ppo_trainer(cfg: RunConfig, out: str | Path) -> SB3Trainer:
    return SB3Trainer(cfg, out)


def uses_batched_env(cfg: RunConfig) -> bool:
    """Whether the run trains on simrl's batched env (SAC with DORAEMON or the paper's inputs)."""
    if cfg.train.algo != "sb3-sac":
        return False
    return cfg.train.dr == "doraemon" or cfg.sac.history > 0 or cfg.sac.critic_dynamics


@register_algorithm("sb3-sac", sections={"sac": SACConfig, "doraemon": DoraemonTrainConfig},
                    doraemon=True,
                    defaults={"train.num_envs": 1, "network.actor_hidden": (256, 256),
                              "network.critic_hidden": (256, 256), "network.activation": "relu",
                              "network.normalize_obs": False},
                    help="Stable-Baselines3 SAC on the Gymnasium env (--sac.* options); --dr doraemon, "
                         "--sac.history and --sac.critic-dynamics run it on the batched env")
def make_sb3_sac_trainer(cfg: RunConfig, out: str | Path) -> SB3Trainer:
    return SB3Trainer(cfg, out)
