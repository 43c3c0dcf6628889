"""Stable-Baselines3 policies as simrl policies.

:func:`policy_from_sb3` copies the MLP weights of an SB3 ``ActorCriticPolicy`` (PPO, A2C) or
``SACPolicy`` and a ``VecNormalize``'s observation statistics into a
:class:`~policies.networks.Policy`, which then gives the same deterministic actions (checked by
:func:`check_conversion`). :func:`load_sb3` does that for a saved ``.zip`` without unpickling
anything: the network comes from the zip's readable JSON and its ``policy.pth`` state dict
(``weights_only``); pickles (``VecNormalize`` files, exotic zips) need ``trust_pickle``.
"""

from __future__ import annotations

import pickle
import warnings
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
    obs_dim = int(np.prod(_actor_space(sb3_policy).shape))
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


def _actor_key(sb3_policy: Any) -> str | None:
    """The dict-observation entry an asymmetric policy's actor reads (its features extractor's
    ``key``); None for a flat observation."""
    from gymnasium import spaces

    if not isinstance(sb3_policy.observation_space, spaces.Dict):
        return None
    key = getattr(getattr(getattr(sb3_policy, "actor", None), "features_extractor", None), "key", None)
    if key not in sb3_policy.observation_space.spaces:
        raise CheckpointError("SB3 policy with a dict observation: only an actor that reads one "
                              "entry of it (a features extractor with a 'key') converts")
    return key


def _actor_space(sb3_policy: Any) -> Any:
    key = _actor_key(sb3_policy)
    return sb3_policy.observation_space if key is None else sb3_policy.observation_space[key]


def check_conversion(sb3_policy: Any, policy: Policy, obs: np.ndarray, vec_normalize: Any = None,
                     atol: float = 1e-5) -> float:
    """Raises if ``policy`` and ``sb3_policy`` give different deterministic actions on raw
    observations ``obs`` (n, obs_dim; for an asymmetric policy the dict observation, of which
    ``policy`` sees the actor's entry); returns the largest difference."""
    key = _actor_key(sb3_policy)
    if key is not None:
        theirs, _ = sb3_policy.predict({k: np.asarray(v, dtype=np.float32) for k, v in obs.items()},
                                       deterministic=True)
        obs = obs[key]
    raw = np.asarray(obs, dtype=np.float32)
    if key is None:
        seen = vec_normalize.normalize_obs(raw) if vec_normalize is not None and vec_normalize.norm_obs else raw
        theirs, _ = sb3_policy.predict(seen, deterministic=True)
    with torch.inference_mode():
        ours = policy.to("cpu")(torch.as_tensor(raw)).numpy()
    diff = float(np.max(np.abs(ours - theirs))) if len(raw) else 0.0
    if not diff <= atol:
        raise RuntimeError(f"converted SB3 policy differs from the original by {diff:.3g} > {atol}")
    return diff


def read_sb3_policy(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """The SB3 policy saved in a model ``.zip``, rebuilt by SB3 itself. This UNPICKLES the
    zip's ``data`` (code can run): only for files you trust (``--trust-pickle``)."""
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


# -- reading an SB3 zip without unpickling ------------------------------------------------------
# An SB3 model zip holds ``data`` (JSON; objects that are not JSON are cloudpickled into
# ``:serialized:`` base64 strings, next to a readable copy of their first-level attributes) and
# ``policy.pth`` (a torch state dict). Everything an MLP policy needs is readable: the network
# from the state dict's shapes, the activation and options from the readable ``policy_kwargs``,
# the spaces' shapes and bounds from their readable attributes. No ``:serialized:`` blob is ever
# decoded here.

MAX_ZIP_MEMBER = 256 << 20  # bytes: a larger ``data`` or ``policy.pth`` is refused (zip bombs)
_ACTOR_CRITIC, _SAC = "ActorCriticPolicy", "SACPolicy"
_POLICY_MODULES = {_ACTOR_CRITIC: "stable_baselines3.common.policies",
                   _SAC: "stable_baselines3.sac.policies"}
_DEFAULT_ACTIVATION = {_ACTOR_CRITIC: "tanh", _SAC: "relu"}
# policy_kwargs that do not change the deterministic actor of an MLP policy
_HARMLESS_KWARGS = {"log_std_init", "ortho_init", "optimizer_class", "optimizer_kwargs",
                    "share_features_extractor", "normalize_images", "n_critics", "full_std",
                    "use_expln", "clip_mean"}
TRUST_PICKLE_HINT = ("pass --trust-pickle (trust_pickle=True) to let Stable-Baselines3 unpickle it, "
                     "which runs any code the file holds: only for files you made yourself")


class NeedsPickleError(CheckpointError):
    """Part of an SB3 file can only be read by unpickling it (which can run code)."""


def _class_repr(cls: type) -> str:
    return f"<class '{cls.__module__}.{cls.__qualname__}'>"


def _readable(data: dict[str, Any], key: str, path: Path) -> Any:
    """``data[key]`` as stored in JSON (a plain value, or the readable attributes of an object)."""
    if key not in data:
        raise CheckpointError(f"{path}: data.{key} is missing (not an SB3 model zip?)")
    return data[key]


def _numbers(text: Any, where: str) -> np.ndarray:
    """A numpy array printed by ``str()`` (``'[-1. -1.  1.]'``) back as floats."""
    if isinstance(text, list):
        return np.asarray(text, dtype=np.float64).ravel()
    if not isinstance(text, str) or "..." in text:
        raise NeedsPickleError(f"{where} is not readable without unpickling ({str(text)[:40]!r})")
    try:
        return np.array([float(t) for t in text.replace("[", " ").replace("]", " ").split()])
    except ValueError:
        raise NeedsPickleError(f"{where} is not readable without unpickling ({text[:40]!r})") from None


def _box(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    space = _readable(data, key, path)
    if not isinstance(space, dict) or "spaces.box.Box" not in str(space.get(":type:", "")):
        raise CheckpointError(f"{path}: data.{key} is not a gymnasium Box "
                              f"({space.get(':type:') if isinstance(space, dict) else type(space).__name__}); "
                              "simrl policies take and give flat vectors")
    shape = space.get("_shape", space.get("shape"))
    if not isinstance(shape, list) or not all(isinstance(n, int) for n in shape):
        raise NeedsPickleError(f"{path}: data.{key}: the shape is not readable without unpickling")
    return space


def _policy_kind(data: dict[str, Any], path: Path) -> str:
    cls = _readable(data, "policy_class", path)
    if not isinstance(cls, dict):
        raise CheckpointError(f"{path}: data.policy_class is not an SB3 policy class record")
    names = {str(v).split()[1].split(".")[0] for k, v in cls.items()
             if not k.startswith(":") and str(v).startswith("<function ") and len(str(v).split()) > 1}
    kind = next((n for n in (_ACTOR_CRITIC, _SAC) if n in names), None)
    module = cls.get("__module__")
    if kind is None or module != _POLICY_MODULES[kind]:
        raise CheckpointError(f"{path}: data.policy_class {module}.{'/'.join(sorted(names)) or '?'} "
                              "is not supported (use PPO, A2C or SAC with MlpPolicy)")
    return kind


def _activation(kind: str, kwargs: dict[str, Any], path: Path) -> str:
    if "activation_fn" not in kwargs:
        return _DEFAULT_ACTIVATION[kind]
    value = kwargs["activation_fn"]
    for name, cls in ACTIVATIONS.items():
        if value == _class_repr(cls):
            return name
    raise NeedsPickleError(f"{path}: data.policy_kwargs.activation_fn {value!r} is not one simrl "
                           f"reads ({', '.join(_class_repr(c) for c in ACTIVATIONS.values())})")


def _check_kwargs(kind: str, data: dict[str, Any], kwargs: dict[str, Any], path: Path) -> None:
    if data.get("use_sde") or kwargs.get("use_sde"):
        raise CheckpointError(f"{path}: SB3 policies with gSDE are not supported")
    if kwargs.get("squash_output"):
        raise CheckpointError(f"{path}: SB3 policies with squashed outputs are not supported")
    extractor = kwargs.get("features_extractor_class")
    if extractor not in (None, "<class 'stable_baselines3.common.torch_layers.FlattenExtractor'>"):
        raise CheckpointError(f"{path}: data.policy_kwargs.features_extractor_class {extractor} is "
                              "not supported (MlpPolicy's FlattenExtractor only)")
    if kwargs.get("features_extractor_kwargs") not in (None, {}, "{}", "None"):
        raise CheckpointError(f"{path}: data.policy_kwargs.features_extractor_kwargs is not supported")
    known = _HARMLESS_KWARGS | {"net_arch", "activation_fn", "use_sde", "squash_output",
                                "features_extractor_class", "features_extractor_kwargs"}
    unknown = sorted(k for k in kwargs if not k.startswith(":") and k not in known)
    if unknown:
        raise NeedsPickleError(f"{path}: data.policy_kwargs.{unknown[0]} is not understood by simrl's "
                               "pickle-free reader")
    if ":serialized:" in kwargs and not any(not k.startswith(":") for k in kwargs):
        raise NeedsPickleError(f"{path}: data.policy_kwargs holds no readable keys")


def _chain(state: dict[str, torch.Tensor], prefix: str, path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of ``prefix.0``, ``prefix.2``, ... (Linear layers with activations between)."""
    idx = sorted({int(k[len(prefix) + 1:].split(".")[0]) for k in state if k.startswith(prefix + ".")})
    if idx != list(range(0, 2 * len(idx), 2)):
        raise CheckpointError(f"{path}: policy.pth layers {prefix}.{idx} are not an MLP")
    return [(state[f"{prefix}.{i}.weight"], state[f"{prefix}.{i}.bias"]) for i in idx]


def read_sb3_zip(path: str | Path, max_member: int = MAX_ZIP_MEMBER) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The readable ``data`` JSON and the ``policy.pth`` state dict of an SB3 model zip, read
    without unpickling anything (``policy.pth`` with ``torch.load(weights_only=True)``)."""
    import io
    import json
    import zipfile

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"SB3 model {path} does not exist")
    try:
        with zipfile.ZipFile(path) as z:
            members = {i.filename: i for i in z.infolist()}
            for name in ("data", "policy.pth"):
                if name not in members:
                    raise CheckpointError(f"{path}: not an SB3 model zip (no {name})")
                if members[name].file_size > max_member:
                    raise CheckpointError(f"{path}: {name} would decompress to "
                                          f"{members[name].file_size:,} bytes (limit {max_member:,})")
            raw_data, raw_policy = z.read("data"), z.read("policy.pth")
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointError(f"{path}: not a readable zip ({type(exc).__name__}: {exc})") from None
    try:
        data = json.loads(raw_data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: data is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: data is not a JSON object")
    try:
        state = torch.load(io.BytesIO(raw_policy), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for pickled code, RuntimeError for damage
        raise CheckpointError(f"{path}: policy.pth is not a plain torch state dict; refused "
                              f"without running it ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: policy.pth is not a state dict of tensors")
    return data, state


def policy_from_sb3_zip(path: str | Path) -> Policy:
    """A :class:`Policy` with the actor of the SB3 model zip ``path`` (PPO, A2C or SAC with
    MlpPolicy), rebuilt from its readable JSON and weights; nothing is unpickled. Raises
    :class:`NeedsPickleError` where something can only be read from a pickle."""
    path = Path(path)
    data, state = read_sb3_zip(path)
    kind = _policy_kind(data, path)
    kwargs = data.get("policy_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: data.policy_kwargs is not a mapping")
    _check_kwargs(kind, data, kwargs, path)
    activation = _activation(kind, kwargs, path)
    obs_space, act_space = _box(data, "observation_space", path), _box(data, "action_space", path)
    obs_dim, act_dim = int(np.prod(obs_space["_shape"])), int(np.prod(act_space["_shape"]))
    low = _numbers(act_space.get("low"), f"{path}: data.action_space.low")
    high = _numbers(act_space.get("high"), f"{path}: data.action_space.high")
    if not (len(low) == len(high) == act_dim and np.all(low == -1.0) and np.all(high == 1.0)):
        raise CheckpointError(f"{path}: data.action_space is not [-1, 1]^{act_dim}; simrl policies "
                              "act in [-1, 1]")
    try:
        if kind == _ACTOR_CRITIC:
            prefix, head = "mlp_extractor.policy_net", "action_net"
            used = {"log_std"} | {k for k in state if k.startswith(("mlp_extractor.", "value_net."))}
            log_std = state["log_std"]
        else:
            prefix, head = "actor.latent_pi", "actor.mu"
            used = {k for k in state if k.startswith(("actor.log_std.", "critic.", "critic_target."))}
            log_std = torch.zeros(act_dim)  # SAC's std depends on the state; deployment is deterministic
        hidden = _chain(state, prefix, path)
        out = (state[f"{head}.weight"], state[f"{head}.bias"])
    except KeyError as exc:
        raise CheckpointError(f"{path}: policy.pth has no {exc.args[0]} (not a {kind} MLP)") from None
    used |= {k for k in state if k.startswith(prefix + ".")} | {f"{head}.weight", f"{head}.bias"}
    extra = sorted(set(state) - used)
    if extra:
        raise CheckpointError(f"{path}: policy.pth has layers simrl does not rebuild ({extra[0]}, ...): "
                              "only MlpPolicy networks are supported")
    layers = hidden + [out]
    dims = [obs_dim] + [w.shape[0] for w, _ in layers]
    for i, (w, b) in enumerate(layers):
        if tuple(w.shape) != (dims[i + 1], dims[i]) or tuple(b.shape) != (dims[i + 1],):
            raise CheckpointError(f"{path}: policy.pth layer {i} has shape {tuple(w.shape)}, expected "
                                  f"({dims[i + 1]}, {dims[i]}) from the spaces and previous layers")
    if dims[-1] != act_dim or tuple(log_std.shape) != (act_dim,):
        raise CheckpointError(f"{path}: policy.pth gives {dims[-1]} actions; data.action_space has {act_dim}")
    arch = kwargs.get("net_arch")
    pi = arch.get("pi") if isinstance(arch, dict) else arch
    if isinstance(pi, list) and [int(n) for n in pi] != dims[1:-1]:
        raise CheckpointError(f"{path}: data.policy_kwargs.net_arch {pi} does not match policy.pth "
                              f"(hidden layers {dims[1:-1]})")
    critic = (tuple(w.shape[0] for w, _ in _chain(state, "mlp_extractor.value_net", path))
              if kind == _ACTOR_CRITIC else tuple(dims[1:-1]))
    cfg = NetworkConfig(actor_hidden=tuple(dims[1:-1]), critic_hidden=critic,
                        activation=activation, squash=kind == _SAC, normalize_obs=False)
    policy = Policy(obs_dim, act_dim, cfg)
    with torch.no_grad():
        for ours, (w, b) in zip(_linear_layers(policy.actor), layers):
            ours.weight.copy_(w)
            ours.bias.copy_(b)
        policy.log_std.copy_(log_std)
    return policy


def _read_vec_normalize(path: str | Path, trust_pickle: bool) -> Any:
    """The pickled ``VecNormalize`` at ``path``: only with ``trust_pickle`` (a pickle runs code)."""
    if not trust_pickle:
        raise NeedsPickleError(f"{path}: a VecNormalize file is a pickle, which runs any code it holds "
                               f"when loaded; refused. {TRUST_PICKLE_HINT} (checkpoints of `simrl "
                               "train --algo sb3-ppo` carry these statistics without pickle)")
    warnings.warn(f"unpickling {path} (--trust-pickle): any code in it runs now", stacklevel=3)
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read VecNormalize statistics ({exc})") from None


def _apply_vec_normalize(policy: Policy, norm: Any, path: Any) -> Policy:
    """``policy`` with the observation statistics of the VecNormalize ``norm`` folded in."""
    if not all(hasattr(norm, a) for a in ("norm_obs", "obs_rms", "clip_obs", "epsilon")):
        raise CheckpointError(f"{path}: not a VecNormalize ({type(norm).__name__})")
    if not norm.norm_obs:
        return policy
    cfg = NetworkConfig(**{**policy.cfg.__dict__, "normalize_obs": True,
                           "obs_clip": float(norm.clip_obs)})
    out = Policy(policy.obs_dim, policy.act_dim, cfg)
    state = {k: v for k, v in policy.state_dict().items() if not k.startswith("normalizer.")}
    out.load_state_dict(state, strict=False)
    rms = norm.obs_rms
    if np.shape(rms.mean) != (policy.obs_dim,):
        raise CheckpointError(f"{path}: VecNormalize statistics have shape {np.shape(rms.mean)}, the "
                              f"policy takes {policy.obs_dim} observations")
    with torch.no_grad():
        out.normalizer.mean.copy_(torch.as_tensor(rms.mean, dtype=torch.float64))
        out.normalizer.var.copy_(torch.as_tensor(rms.var, dtype=torch.float64))
        out.normalizer.count.fill_(float(rms.count))
    out.normalizer.eps = float(norm.epsilon)
    return out


def load_sb3(path: str | Path, task: Any, device: str | torch.device = "cpu",
             vec_normalize: str | Path | None = None, trust_pickle: bool = False) -> LoadedPolicy:
    """An SB3 model ``.zip`` (plus, optionally, the pickled ``VecNormalize`` it was trained
    with) as a :class:`LoadedPolicy` for ``task`` (a name or a task object).

    The zip is read without unpickling (:func:`policy_from_sb3_zip`). ``trust_pickle`` allows
    SB3's own loader where the zip needs it, and is required for ``vec_normalize`` (a pickle);
    both warn, since unpickling runs whatever code the file holds."""
    from envs.tasks import make_task

    if task is None:
        raise CheckpointError(f"{path}: an SB3 model does not name its task; give it (task=..., or --task)")
    task_obj = make_task(task) if isinstance(task, str) else task
    norm = None if vec_normalize is None else _read_vec_normalize(vec_normalize, trust_pickle)
    try:
        policy = policy_from_sb3_zip(path)
    except NeedsPickleError as exc:
        if not trust_pickle:
            raise NeedsPickleError(f"{exc}; {TRUST_PICKLE_HINT}") from None
        warnings.warn(f"unpickling {path} (--trust-pickle): any code in it runs now", stacklevel=2)
        policy = policy_from_sb3(read_sb3_policy(path, "cpu"))
    if norm is not None:
        policy = _apply_vec_normalize(policy, norm, vec_normalize)
    if policy.obs_dim != task_obj.observation_size or policy.act_dim != task_obj.action_size:
        raise CheckpointError(f"{path}: SB3 policy has {policy.obs_dim} observations and "
                              f"{policy.act_dim} actions; task {task_obj.name} has "
                              f"{task_obj.observation_size} and {task_obj.action_size}")
    spec = build_spec(policy, task_obj, training={"algo": "sb3", "source": str(path)})
    return LoadedPolicy(policy, spec, device)
