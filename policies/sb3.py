"""Stable-Baselines3 policies as simrl policies.

:func:`policy_from_sb3` copies the MLP weights of an SB3 ``ActorCriticPolicy`` (PPO, A2C) or
``SACPolicy`` and a ``VecNormalize``'s observation statistics into a
:class:`~policies.networks.Policy`, which then gives the same deterministic actions (checked by
:func:`check_conversion`). :func:`load_sb3` does that for a saved ``.zip``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from policies.checkpoint import CheckpointError, LoadedPolicy, build_spec
from policies.networks import ACTIVATIONS, NetworkConfig, Policy


def _linear_layers(seq: nn.Sequential) -> list[nn.Linear]:
    return [m for m in seq if isinstance(m, nn.Linear)]


def _activation_name(cls: type) -> str:
    for name, act in ACTIVATIONS.items():
        if cls is act:
            return name
    raise CheckpointError(f"SB3 activation {cls.__name__} is not supported "
                          f"(supported: {', '.join(a.__name__ for a in ACTIVATIONS.values())})")


def _check_unit_box(space: Any) -> None:
    if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
        raise CheckpointError("SB3 policy's action space is not [-1, 1]; simrl policies act in [-1, 1]")


def policy_from_sb3(sb3_policy: Any, vec_normalize: Any = None) -> Policy:
    """A :class:`Policy` with the weights of ``sb3_policy`` and the observation statistics of
    ``vec_normalize`` (a ``VecNormalize``, when the model was trained with one)."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import SACPolicy

    _check_unit_box(sb3_policy.action_space)
    obs_dim = int(np.prod(sb3_policy.observation_space.shape))
    act_dim = int(np.prod(sb3_policy.action_space.shape))
    if isinstance(sb3_policy, ActorCriticPolicy):
        if sb3_policy.use_sde or sb3_policy.squash_output:
            raise CheckpointError("SB3 policies with gSDE or squashed outputs are not supported")
        hidden = _linear_layers(sb3_policy.mlp_extractor.policy_net)
        layers, squash = hidden + [sb3_policy.action_net], False
        log_std, activation = sb3_policy.log_std.detach(), sb3_policy.activation_fn
        critic = tuple(l.out_features for l in _linear_layers(sb3_policy.mlp_extractor.value_net))
    elif isinstance(sb3_policy, SACPolicy):
        actor = sb3_policy.actor
        if actor.use_sde:
            raise CheckpointError("SB3 SAC with gSDE is not supported")
        hidden = _linear_layers(actor.latent_pi)
        layers, squash = hidden + [actor.mu], True
        # SAC's std depends on the state; a deployed policy is deterministic.
        log_std, activation = torch.zeros(act_dim), actor.activation_fn
        critic = tuple(l.out_features for l in hidden)
    else:
        raise CheckpointError(f"SB3 policy class {type(sb3_policy).__name__} is not supported "
                              "(use PPO, A2C or SAC with MlpPolicy)")
    norm_obs = vec_normalize is not None and vec_normalize.norm_obs
    cfg = NetworkConfig(actor_hidden=tuple(l.out_features for l in hidden), critic_hidden=critic,
                        activation=_activation_name(activation),
                        squash=squash, normalize_obs=norm_obs,
                        obs_clip=float(vec_normalize.clip_obs) if norm_obs else 10.0)
    policy = Policy(obs_dim, act_dim, cfg)
    with torch.no_grad():
        for ours, theirs in zip(_linear_layers(policy.actor), layers):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
        policy.log_std.copy_(log_std)
        if norm_obs:
            rms = vec_normalize.obs_rms
            policy.normalizer.mean.copy_(torch.as_tensor(rms.mean, dtype=torch.float64))
            policy.normalizer.var.copy_(torch.as_tensor(rms.var, dtype=torch.float64))
            policy.normalizer.count.fill_(float(rms.count))
            policy.normalizer.eps = float(vec_normalize.epsilon)
    return policy


def check_conversion(sb3_policy: Any, policy: Policy, obs: np.ndarray, vec_normalize: Any = None,
                     atol: float = 1e-5) -> float:
    """Raises if ``policy`` and ``sb3_policy`` give different deterministic actions on raw
    observations ``obs`` (n, obs_dim); returns the largest difference."""
    raw = np.asarray(obs, dtype=np.float32)
    seen = vec_normalize.normalize_obs(raw) if vec_normalize is not None and vec_normalize.norm_obs else raw
    theirs, _ = sb3_policy.predict(seen, deterministic=True)
    with torch.inference_mode():
        ours = policy.to("cpu")(torch.as_tensor(raw)).numpy()
    diff = float(np.max(np.abs(ours - theirs))) if len(raw) else 0.0
    if not diff <= atol:
        raise RuntimeError(f"converted SB3 policy differs from the original by {diff:.3g} > {atol}")
    return diff


def read_sb3_policy(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """The SB3 policy saved in a model ``.zip``, rebuilt without its algorithm or env."""
    from stable_baselines3.common.save_util import load_from_zip_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"SB3 model {path} does not exist")
    try:
        data, params, _ = load_from_zip_file(path, device=device)
    except Exception as exc:  # zipfile, pickle and torch errors of a damaged file
        raise CheckpointError(f"{path}: cannot be read as an SB3 model ({type(exc).__name__}: {exc})") from None
    if not data or "policy_class" not in data or "policy" not in params:
        raise CheckpointError(f"{path}: not an SB3 model zip (no policy)")
    kwargs = dict(data.get("policy_kwargs") or {})
    if "use_sde" in data:
        kwargs.setdefault("use_sde", data["use_sde"])
    sb3_policy = data["policy_class"](data["observation_space"], data["action_space"],
                                      lambda _: 0.0, **kwargs)
    sb3_policy.load_state_dict(params["policy"])
    return sb3_policy.to(device).eval()


def load_sb3(path: str | Path, task: Any, device: str | torch.device = "cpu",
             vec_normalize: str | Path | None = None) -> LoadedPolicy:
    """An SB3 model ``.zip`` (plus, optionally, the pickled ``VecNormalize`` it was trained
    with) as a :class:`LoadedPolicy` for ``task`` (a name or a task object)."""
    from envs.tasks import make_task

    if task is None:
        raise CheckpointError(f"{path}: an SB3 model does not name its task; give it (task=..., or --task)")
    task_obj = make_task(task) if isinstance(task, str) else task
    sb3_policy = read_sb3_policy(path, "cpu")
    norm = None
    if vec_normalize is not None:
        try:
            with open(vec_normalize, "rb") as f:
                norm = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise CheckpointError(f"{vec_normalize}: cannot read VecNormalize statistics ({exc})") from None
    policy = policy_from_sb3(sb3_policy, norm)
    if policy.obs_dim != task_obj.observation_size or policy.act_dim != task_obj.action_size:
        raise CheckpointError(f"{path}: SB3 policy has {policy.obs_dim} observations and "
                              f"{policy.act_dim} actions; task {task_obj.name} has "
                              f"{task_obj.observation_size} and {task_obj.action_size}")
    spec = build_spec(policy, task_obj, training={"algo": "sb3", "source": str(path)})
    return LoadedPolicy(policy, spec, device)
