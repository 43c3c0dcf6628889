"""Self-describing checkpoints: a directory with ``policy.pt`` and ``spec.json``.

``policy.pt`` is the plain state_dict of a :class:`~policies.networks.Policy` (observation
normalizer, actor MLP, action log-std), loaded with ``torch.load(..., weights_only=True)``.
``spec.json`` says everything else a deployment needs: the task and its config, the robot
model, observation names and normalizer statistics, action names with their scale, offset and
limits, the control period, default joint pose and PD gains where the task has them, the
network architecture, the DR distribution at save time, training statistics and package
versions. :func:`load` rebuilds a callable policy from the two files and nothing else.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np
import torch

from policies.networks import NetworkConfig, Policy
from simrl.core.spec import (FORMAT, FORMAT_VERSION, POLICY_FILE, SPEC_FILE, CheckpointError,
                           load_spec)

# -- describing a task --------------------------------------------------------------------------
def action_spec(task: Any) -> dict[str, Any]:
    """How policy actions in [-1, 1] become actuator commands: ``ctrl = offset + scale * a``
    (``type`` ``joint_position``: targets around the default pose; ``actuator``: the actuator
    control range), or ``joint_position_delta``: ``target += scale * a`` each step."""
    m, cfg, n = task.model, task.cfg, task.action_size
    lo, hi = m.actuator_ctrlrange[:n].T
    default = getattr(task, "default_pose", None)
    if default is not None and hasattr(cfg, "action_scale"):
        kind, scale, offset = "joint_position", np.full(n, cfg.action_scale), np.asarray(default)
    elif hasattr(cfg, "target_delta"):
        kind, scale, offset = "joint_position_delta", np.full(n, cfg.target_delta), np.zeros(n)
    else:
        kind, scale, offset = "actuator", (hi - lo) / 2.0, (hi + lo) / 2.0
    return {"names": list(task.action_names), "type": kind, "scale": scale.tolist(),
            "offset": offset.tolist(), "low": [-1.0] * n, "high": [1.0] * n,
            "ctrl_low": lo.tolist(), "ctrl_high": hi.tolist()}


def pd_gains(task: Any) -> dict[str, list[float]] | None:
    """Stiffness and damping of position actuators (MuJoCo ``<position kp kv>``), or None when
    the task's actuators are not all position servos."""
    from envs.assets import position_servos
    m, n = task.model, task.action_size
    kp = m.actuator_gainprm[:n, 0]
    if not position_servos(m)[:n].all():
        return None
    return {"kp": kp.tolist(), "kd": (0.0 - m.actuator_biasprm[:n, 2]).tolist()}


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("simrl", "torch", "numpy", "mujoco", "gymnasium", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_spec(policy: Policy, task: Any, distribution: Any = None,
               training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``spec.json`` content for ``policy`` trained on ``task``."""
    from simrl.core.config import to_jsonable
    if policy.obs_dim != task.observation_size or policy.act_dim != task.action_size:
        raise CheckpointError(f"policy shape ({policy.obs_dim} obs, {policy.act_dim} actions) does not "
                              f"fit task {task.name} ({task.observation_size}, {task.action_size})")
    norm = policy.normalizer
    normalizer = None if norm is None else {
        "mean": norm.mean.tolist(), "var": norm.var.tolist(), "count": float(norm.count),
        "clip": norm.clip, "eps": norm.eps}
    default = getattr(task, "default_pose", None)
    spec = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "task_config": to_jsonable(task.cfg),
        "robot": {"model": task.cfg.model, "nq": int(task.model.nq), "nu": int(task.model.nu)},
        "control_dt": float(task.cfg.control_dt),
        "observation": {"names": list(task.observation_names), "normalizer": normalizer},
        "action": action_spec(task),
        "default_joint_pos": None if default is None else np.asarray(default).tolist(),
        "pd_gains": pd_gains(task),
        "network": {"type": "gaussian_mlp", "obs_dim": policy.obs_dim, "act_dim": policy.act_dim,
                    **to_jsonable(policy.cfg)},
        "dr": None if distribution is None else to_jsonable(distribution.to_dict()),
        # residual RL: the frozen base and scale (the observation ends with the base action)
        "residual": getattr(task, "residual_spec", None),
        # distillation: a teacher's privileged features, a student's observation history
        "privileged": getattr(task, "privileged_spec", None),
        "history": getattr(task, "history_spec", None),
        "training": to_jsonable(dict(training or {})),
        "versions": package_versions(),
    }
    return spec


# -- save -------------------------------------------------------------------------------------
def fsync_dir(directory: str | os.PathLike) -> None:
    """Puts a directory's entries (a rename, a new or removed file) on disk."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_path(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Writes ``path`` all at once or not at all: ``write(tmp)`` fills a temporary file in the
    same directory, which is fsynced and renamed over ``path``, then the directory is fsynced.
    A process killed at any moment leaves either the old file or the new one (and at most a
    stray ``.NAME.*`` temporary file), never part of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """:func:`atomic_write_path` for a writer of a binary file object."""
    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
    return atomic_write_path(path, fill)


_atomic_write = atomic_write  # the name used before


def save(path: str | os.PathLike, policy: Policy, task: Any, *, distribution: Any = None,
         training: Mapping[str, Any] | None = None) -> Path:
    """Writes the checkpoint directory ``path`` (created if needed; files replaced atomically).
    ``task``: the :class:`envs.Task` the policy acts in; ``distribution``: the DR distribution
    (``env.distribution``); ``training``: steps, seed, returns and whatever else to record."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    spec = build_spec(policy, task, distribution, training)
    state = {k: v.detach().to("cpu").clone() for k, v in policy.state_dict().items()}
    _atomic_write(out / POLICY_FILE, lambda f: torch.save(state, f))
    text = json.dumps(spec, indent=2, allow_nan=False).encode()
    _atomic_write(out / SPEC_FILE, lambda f: f.write(text))
    return out


# -- load -------------------------------------------------------------------------------------
def network_config(spec: Mapping[str, Any]) -> NetworkConfig:
    """The :class:`NetworkConfig` recorded in a spec."""
    from simrl.core.config import from_dict
    net = {k: v for k, v in spec["network"].items() if k not in ("type", "obs_dim", "act_dim")}
    try:
        return from_dict(NetworkConfig(), net, "spec network")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def check_task(spec: Mapping[str, Any], task: Any, where: str) -> None:
    """Raises :class:`CheckpointError` unless the checkpoint was trained on ``task`` (a name, or
    a task object whose observation and action names must match too)."""
    name = task if isinstance(task, str) else task.name
    if spec["task"] != name:
        raise CheckpointError(f"{where} was trained on task {spec['task']!r}, not {name!r}")
    if isinstance(task, str):
        return
    for kind, names in (("observation", task.observation_names), ("action", task.action_names)):
        saved = spec[kind]["names"]
        if list(saved) != list(names):
            raise CheckpointError(f"{where}: {kind} names differ from task {name}'s "
                                  f"({len(saved)} saved, {len(names)} in the task)")


class LoadedPolicy:
    """A deterministic policy from a checkpoint: ``action = policy(obs)``.

    Accepts numpy arrays or tensors, one observation (obs_dim,) or a batch (n, obs_dim), and
    returns the same kind and rank. ``spec`` is the checkpoint's spec; ``module`` the torch
    :class:`~policies.networks.Policy`.
    """

    def __init__(self, module: Policy, spec: dict[str, Any], device: str | torch.device = "cpu"):
        self.module = module.to(device).eval()
        self.spec = spec
        self.device = torch.device(device)

    @property
    def task(self) -> str:
        return self.spec["task"]

    @property
    def observation_names(self) -> list[str]:
        return list(self.spec["observation"]["names"])

    @property
    def action_names(self) -> list[str]:
        return list(self.spec["action"]["names"])

    def __call__(self, obs: Any) -> Any:
        is_numpy = not isinstance(obs, torch.Tensor)
        x = torch.as_tensor(np.asarray(obs) if is_numpy else obs, device=self.device)
        single = x.ndim == 1
        if x.shape[-1] != self.module.obs_dim or x.ndim not in (1, 2):
            raise ValueError(f"policy for {self.task} expects observations of shape "
                             f"(n, {self.module.obs_dim}), got {tuple(x.shape)}")
        with torch.inference_mode():
            action = self.module(x[None] if single else x)
        action = action[0] if single else action
        return action.cpu().numpy() if is_numpy else action.to(obs.device)

    def __repr__(self) -> str:
        net = self.spec["network"]
        return (f"LoadedPolicy(task={self.task!r}, obs={net['obs_dim']}, act={net['act_dim']}, "
                f"hidden={net['actor_hidden']}, steps={self.spec.get('training', {}).get('steps')})")


def _read_state_dict(file: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    if not file.exists():
        raise CheckpointError(f"checkpoint {file.parent}: missing {file.name}")
    try:
        state = torch.load(file, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... here
        raise CheckpointError(f"{file}: cannot be read, the file is corrupted or truncated "
                              f"({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{file}: not a state_dict of tensors")
    return state


def load_checkpoint(path: str | os.PathLike, task: Any = None,
                    device: str | torch.device = "cpu") -> LoadedPolicy:
    """Loads a simrl checkpoint directory as a deterministic callable policy (``policies.load``
    also takes Stable-Baselines3 zips). ``task`` (a name or a task object), when given, must be
    the checkpoint's task."""
    path = Path(path)
    spec = load_spec(path)
    if task is not None:
        check_task(spec, task, f"checkpoint {path}")
    net = spec["network"]
    obs_names, act_names = spec["observation"]["names"], spec["action"]["names"]
    if net.get("obs_dim") != len(obs_names) or net.get("act_dim") != len(act_names):
        raise CheckpointError(f"{path / SPEC_FILE}: network shape ({net.get('obs_dim')}, "
                              f"{net.get('act_dim')}) does not match {len(obs_names)} observation "
                              f"and {len(act_names)} action names")
    module = Policy(len(obs_names), len(act_names), network_config(spec))
    state = _read_state_dict(path / POLICY_FILE, "cpu")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path / POLICY_FILE}: weights do not match the architecture in "
                              f"{SPEC_FILE} ({str(exc).splitlines()[-1].strip()})") from None
    _check_normalizer(module, spec, path)
    return LoadedPolicy(module, spec, device)


def _check_normalizer(module: Policy, spec: Mapping[str, Any], path: Path) -> None:
    """The normalizer in ``policy.pt`` must be the one ``spec.json`` describes (catches files
    of two different checkpoints copied together)."""
    saved = spec["observation"].get("normalizer")
    norm = module.normalizer
    if (saved is None) != (norm is None):
        raise CheckpointError(f"checkpoint {path}: {SPEC_FILE} and {POLICY_FILE} disagree on "
                              "observation normalization")
    if norm is None:
        return
    norm.eps = float(saved.get("eps", norm.eps))
    if not (
            np.array_equal(np.asarray(saved["mean"], dtype=np.float64), norm.mean.numpy())
            and np.array_equal(np.asarray(saved["var"], dtype=np.float64), norm.var.numpy())
            and math.isclose(saved["count"], float(norm.count))):
        raise CheckpointError(f"checkpoint {path}: normalizer statistics in {SPEC_FILE} differ from "
                              f"those in {POLICY_FILE} (files of different checkpoints?)")


__all__ = ["CheckpointError", "LoadedPolicy", "save", "load_checkpoint", "load_spec", "build_spec",
           "atomic_write", "atomic_write_path", "fsync_dir",
           "action_spec", "pd_gains", "check_task", "network_config", "FORMAT_VERSION"]
