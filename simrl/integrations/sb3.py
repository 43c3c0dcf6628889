"""Stable-Baselines3 on simrl's batched envs, with an asymmetric SAC.

:class:`SB3VecEnv` wraps any simrl ``VecEnv`` (``envs.make(...)``, with or without wrappers) as
an SB3 ``VecEnv``. With ``critic_dynamics=True`` its observation is a dict:

* ``"policy"``: the wrapped env's observation (what the actor and the robot see);
* ``"critic"``: the current task observation (``state_part`` of the policy observation) and the
  world's DR parameters standardized to [-1, 1] over the parameter space
  (:meth:`policies.io.Privileged.standardized`), as in the DORAEMON paper's SAC, whose critic
  sees the current state and the dynamics (``critic_dyn_only``), not the history.

:class:`AsymmetricSACPolicy` is SB3's ``SACPolicy`` whose actor reads only ``"policy"`` and
whose critics read only ``"critic"`` (a :class:`KeyExtractor` each), so the exported actor needs
nothing a robot lacks. Every step's finished episodes (an :class:`~envs.batched.EpisodeBatch`,
with the parameters they ran with) are in ``last_episodes`` for the trainer's hooks (DORAEMON).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv as SB3BaseVecEnv
from stable_baselines3.sac.policies import ContinuousCritic, SACPolicy

from policies.io import Privileged
from policies.wrappers import privileged_spec

POLICY_KEY, CRITIC_KEY = "policy", "critic"


class SB3VecEnv(SB3BaseVecEnv):
    """A simrl batched env seen by Stable-Baselines3 (auto-reset, ``terminal_observation`` and
    ``TimeLimit.truncated`` in the infos, ``episode`` / ``is_success`` of finished episodes).

    ``state_part``: where the current task observation sits in the env's observation (the last
    slot of a :class:`~policies.wrappers.HistoryEnv`'s history); the whole observation when None.
    """

    def __init__(self, env: Any, critic_dynamics: bool = False, state_part: slice | None = None):
        self.env = env
        n, obs_size = int(env.num_envs), int(env.observation_size)
        box = spaces.Box(-np.inf, np.inf, (obs_size,), np.float32)
        action_space = spaces.Box(-1.0, 1.0, (int(env.action_size),), np.float32)
        self.critic: Privileged | None = None
        self.state_part = state_part if state_part is not None else slice(0, obs_size)
        space: spaces.Space = box
        if critic_dynamics:
            if env.space.dim == 0:
                raise ValueError("critic_dynamics needs randomized parameters; the env has none")
            self.critic = Privileged(privileged_spec(env, base_lin_vel=False), env.space.names)
            state = len(range(obs_size)[self.state_part])
            space = spaces.Dict({POLICY_KEY: box, CRITIC_KEY: spaces.Box(
                -np.inf, np.inf, (state + env.space.dim,), np.float32)})
        super().__init__(n, space, action_space)
        self.last_episodes: Any = None
        self._actions: np.ndarray | None = None
        self._features: np.ndarray | None = None   # the critic's dynamics features of each world

    def _observation(self, obs: np.ndarray) -> Any:
        if self.critic is None:
            return obs.astype(np.float32)
        self._features = self.critic.standardized(self.env.params)
        return self._pack(obs, self._features)

    def _pack(self, obs: np.ndarray, features: np.ndarray) -> dict[str, np.ndarray]:
        return {POLICY_KEY: obs.astype(np.float32),
                CRITIC_KEY: np.concatenate([obs[:, self.state_part], features], axis=1).astype(np.float32)}

    def reset(self) -> Any:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        self._reset_seeds()
        return self._observation(self.env.reset_numpy(seed))

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float64)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        features = self._features
        obs, reward, terminated, truncated, info = self.env.step_numpy(self._actions)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            final = info["final_obs"]
            # Finished worlds were reset: their dynamics features are those of the last step.
            packed = final.astype(np.float32) if self.critic is None else self._pack(final, features)
            for i in np.flatnonzero(done):
                infos[i]["terminal_observation"] = (packed[i] if self.critic is None else
                                                    {k: v[i] for k, v in packed.items()})
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        self.last_episodes = batch = info.get("episodes")
        if batch is not None:
            for i, r, length, s in zip(batch.env_ids, batch.returns, batch.lengths, batch.success):
                infos[i]["episode"] = {"r": float(r), "l": int(length)}
                infos[i]["is_success"] = bool(s)
        return (self._observation(obs), reward.astype(np.float32), done, infos)

    def close(self) -> None:
        self.env.close()

    # SB3's per-env accessors: one env holds all worlds, so they have nothing to reach.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        value = None if attr_name == "render_mode" else getattr(self.env, attr_name)
        return [value] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"SB3VecEnv: cannot set {attr_name} per world")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise AttributeError(f"SB3VecEnv: no per-world method {method_name}")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)


class KeyExtractor(BaseFeaturesExtractor):
    """Features = one entry of a dict observation, as is."""

    def __init__(self, observation_space: spaces.Dict, key: str = POLICY_KEY):
        if not isinstance(observation_space, spaces.Dict) or key not in observation_space.spaces:
            raise ValueError(f"KeyExtractor: the observation space has no key {key!r}")
        super().__init__(observation_space, int(np.prod(observation_space[key].shape)))
        self.key = key

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return observations[self.key].flatten(1)


class AsymmetricSACPolicy(SACPolicy):
    """SAC whose actor sees ``obs["policy"]`` and whose critics see ``obs["critic"]``."""

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Box, lr_schedule: Any,
                 **kwargs: Any):
        kwargs.update(features_extractor_class=KeyExtractor,
                      features_extractor_kwargs={"key": POLICY_KEY}, share_features_extractor=False)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        extractor = KeyExtractor(self.observation_space, CRITIC_KEY)
        kwargs = self._update_features_extractor(self.critic_kwargs, extractor)
        return ContinuousCritic(**kwargs).to(self.device)
