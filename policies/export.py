"""Export a checkpoint's policy for deployment, normalization and action scaling folded in.

* ONNX (``policy.onnx``, opset 17): the graph is written directly from the weights (no tracing):
  ``obs -> clip((obs - mean) / std)`` (in float64, as the torch normalizer) ``-> MLP -> [tanh]
  -> clip(-1, 1) = action`` and
  ``scaled_action = offset + scale * action``. Inputs, outputs and metadata are the contract of
  :mod:`deploy.policy`.
* TorchScript (``policy.torchscript.pt``): the same two outputs from a traced module.

Both are checked at export against the checkpoint's torch policy on random observations around
the normalizer statistics (far beyond its clip range included) and on realistic observations
from task resets: every output must agree within ``tolerance`` (1e-4) times ``max(1, |value|)``
(float32 against the float64 reference: joint targets of a few radians carry ~1e-6 of rounding
per layer), else :class:`ExportParityError` is raised and nothing is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
import torch
from torch import nn

from envs.tasks import task_from_spec
from policies.checkpoint import LoadedPolicy, atomic_write_path
from policies.loader import load
from simrl.core.onnx_contract import INPUT, META_ACT, META_OBS, META_SHA, META_TASK, ONNX_FILE, OUTPUTS
from simrl.core.spec import POLICY_FILE, SPEC_FILE, file_sha256

OPSET = 17
TORCHSCRIPT_FILE = "policy.torchscript.pt"
FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # float32 export against the float64 reference: wide inputs (history students) reach 1e-5


class ExportTargetError(FileExistsError, ValueError):
    """An export would replace a file it must not (a checkpoint file, a non-export file)."""


class ExportParityError(RuntimeError):
    """The exported policy disagrees with the torch policy."""


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float     # over both outputs and every parity observation
    samples: int            # observations checked


def action_affine(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """The spec's action ``scale`` and ``offset`` (``scaled_action = offset + scale * action``)."""
    return (np.asarray(spec["action"]["scale"], dtype=np.float64),
            np.asarray(spec["action"]["offset"], dtype=np.float64))


def onnx_model(policy: LoadedPolicy, policy_sha256: str):
    """The ONNX model of ``policy`` (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    module, spec = policy.module, policy.spec
    nodes, inits = [], []

    def const(name: str, value: np.ndarray, dtype: type = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    x = INPUT
    norm = module.normalizer
    if norm is not None:  # in float64, as RunningNorm does it
        f64 = np.float64
        std = np.sqrt(norm.var.numpy() + norm.eps)
        nodes += [helper.make_node("Cast", [x], ["obs64"], to=TensorProto.DOUBLE),
                  helper.make_node("Sub", ["obs64", const("obs_mean", norm.mean.numpy(), f64)], ["centered"]),
                  helper.make_node("Div", ["centered", const("obs_std", std, f64)], ["scaled"]),
                  helper.make_node("Clip", ["scaled", const("obs_low", np.array(-norm.clip), f64),
                                            const("obs_high", np.array(norm.clip), f64)], ["z64"]),
                  helper.make_node("Cast", ["z64"], ["z"], to=TensorProto.FLOAT)]
        x = "z"
    ops = {nn.Tanh: ("Tanh", {}), nn.ReLU: ("Relu", {}), nn.ELU: ("Elu", {"alpha": 1.0})}
    for i, layer in enumerate(module.actor):
        out = f"h{i}"
        if isinstance(layer, nn.Linear):
            w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
            nodes.append(helper.make_node("Gemm", [x, const(f"w{i}", w), const(f"b{i}", b)], [out],
                                          transB=1))
        elif type(layer) in ops:
            op, attrs = ops[type(layer)]
            if isinstance(layer, nn.ELU) and layer.alpha != 1.0:
                attrs = {"alpha": float(layer.alpha)}
            nodes.append(helper.make_node(op, [x], [out], **attrs))
        else:
            raise TypeError(f"cannot export actor layer {layer!r} to ONNX")
        x = out
    if module.cfg.squash:
        nodes.append(helper.make_node("Tanh", [x], ["squashed"]))
        x = "squashed"
    action, scaled = OUTPUTS
    scale, offset = action_affine(spec)
    nodes += [helper.make_node("Clip", [x, const("act_low", np.array(-1.0)),
                                        const("act_high", np.array(1.0))], [action]),
              helper.make_node("Mul", [action, const("act_scale", scale)], ["act_scaled"]),
              helper.make_node("Add", ["act_scaled", const("act_offset", offset)], [scaled])]
    obs_dim, act_dim = module.obs_dim, module.act_dim
    graph = helper.make_graph(
        nodes, "simrl_policy",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", act_dim]) for name in OUTPUTS],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="simrl")
    model.ir_version = 8  # onnxruntime >= 1.14 reads it
    helper.set_model_props(model, {
        META_SHA: policy_sha256, META_TASK: spec["task"],
        META_OBS: json.dumps(spec["observation"]["names"]),
        META_ACT: json.dumps(spec["action"]["names"])})
    onnx.checker.check_model(model)
    return model


class _ExportModule(nn.Module):
    """The torch policy with both outputs, for TorchScript."""

    def __init__(self, policy: LoadedPolicy):
        super().__init__()
        self.policy = policy.module
        scale, offset = action_affine(policy.spec)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action = self.policy(obs)
        return action, self.offset + self.scale * action


def parity_observations(policy: LoadedPolicy, n_random: int = 512, n_resets: int = 64,
                        seed: int = 0) -> np.ndarray:
    """Random observations around the normalizer statistics (3 standard deviations, so beyond
    the clip range too) and realistic ones: the task's observations at ``n_resets`` resets."""
    rng = np.random.default_rng(seed)
    dim = policy.module.obs_dim
    norm = policy.module.normalizer
    mean = np.zeros(dim) if norm is None else norm.mean.numpy()
    std = np.ones(dim) if norm is None else np.sqrt(norm.var.numpy())
    random = mean + 3.0 * std * rng.standard_normal((n_random, dim))
    task = task_from_spec(policy.spec)
    init = task.reset(rng, n_resets)
    data = mujoco.MjData(task.model)
    sensordata = np.zeros((n_resets, task.model.nsensordata))
    for i in range(n_resets):
        data.qpos[:], data.qvel[:] = init.qpos[i], init.qvel[i]
        mujoco.mj_forward(task.model, data)
        sensordata[i] = data.sensordata
    rs = task.robot_state(init.qpos, init.qvel, sensordata, init.task_state,
                          rng.uniform(-1, 1, (n_resets, task.action_size)))
    realistic = task.observation(rs)
    if policy.spec.get("history"):  # a student sees a stack of task observations
        realistic = np.tile(realistic, (1, int(policy.spec["history"]["length"])))
    extra = dim - realistic.shape[1]  # a residual's base action, a teacher's privileged features
    realistic = np.concatenate([realistic, rng.uniform(-1.0, 1.0, (n_resets, extra))], axis=1)
    return np.concatenate([random, realistic]).astype(np.float32)


def _reference(policy: LoadedPolicy, obs: np.ndarray) -> np.ndarray:
    action = policy(obs.astype(np.float64))
    scale, offset = action_affine(policy.spec)
    return np.concatenate([action, offset + scale * action], axis=1)


def _check(name: str, got: np.ndarray, want: np.ndarray, tolerance: float) -> float:
    """The largest absolute difference; raises unless every output is within ``tolerance``
    relative to its magnitude (absolute below 1)."""
    error = np.abs(got - want)
    diff = float(np.max(error))
    if not np.isfinite(got).all() or not (error < tolerance * np.maximum(1.0, np.abs(want))).all():
        raise ExportParityError(f"{name} export differs from the torch policy: max |diff| = {diff:.3g} "
                                f"(tolerance {tolerance:g} x max(1, |output|)); nothing written")
    return diff


# Files of a checkpoint or run that an export must never replace.
PROTECTED_FILES = (POLICY_FILE, SPEC_FILE, "training_state.pt", "sb3_model.zip", "vecnormalize.pkl",
                   "config.json")
_EXPORT_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


def export_target(checkpoint: str | os.PathLike, out: str | os.PathLike | None, format: str) -> Path:
    """Where an export of ``checkpoint`` goes; raises :class:`FileExistsError` (before any work)
    rather than replace a checkpoint's files or any other file that is not an export of this
    format (``*.onnx``, ``*.torchscript.pt``)."""
    root = Path(checkpoint)
    path = Path(out) if out else root / (ONNX_FILE if format == "onnx" else TORCHSCRIPT_FILE)
    if path.is_dir():
        raise ExportTargetError(f"export --out {path} is a directory; give a file name")
    if path.name in PROTECTED_FILES and (path.exists() or path.parent.resolve() == root.resolve()):
        raise ExportTargetError(f"export --out {path}: refusing to overwrite a checkpoint file "
                              f"({path.name}); choose another --out")
    if path.exists() and not path.name.endswith(_EXPORT_SUFFIX[format]):
        raise ExportTargetError(f"export --out {path}: file exists and is not a {format} export "
                              f"(*{_EXPORT_SUFFIX[format]}); refusing to overwrite it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"export --out {path}: directory {path.parent} does not exist")
    return path


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None,
                tolerance: float = TOLERANCE) -> ExportResult:
    """Writes ``policy.onnx`` (or ``out``) after the onnxruntime parity check."""
    import onnxruntime as ort
    root = Path(checkpoint)
    path = export_target(root, out, "onnx")
    policy = load(root)
    model = onnx_model(policy, file_sha256(root / POLICY_FILE))
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    obs = parity_observations(policy)
    got = np.concatenate(session.run(list(OUTPUTS), {INPUT: obs}), axis=1)
    diff = _check("ONNX", got, _reference(policy, obs), tolerance)
    atomic_write_path(path, lambda tmp: Path(tmp).write_bytes(data))
    return ExportResult(path, diff, len(obs))


def export_torchscript(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None,
                       tolerance: float = TOLERANCE) -> ExportResult:
    """Writes ``policy.torchscript.pt`` (or ``out``) after the parity check."""
    root = Path(checkpoint)
    path = export_target(root, out, "torchscript")
    policy = load(root)
    obs = parity_observations(policy)
    module = _ExportModule(policy).eval().requires_grad_(False)
    with torch.inference_mode():
        traced = torch.jit.trace(module, torch.from_numpy(obs[:1]))
        got = torch.cat(traced(torch.from_numpy(obs)), dim=1).numpy()
    diff = _check("TorchScript", got, _reference(policy, obs), tolerance)
    atomic_write_path(path, traced.save)
    return ExportResult(path, diff, len(obs))


def export(checkpoint: str | os.PathLike, format: str = "onnx", out: str | os.PathLike | None = None,
           tolerance: float = TOLERANCE) -> ExportResult:
    """Exports ``checkpoint`` in ``format`` (``onnx`` or ``torchscript``)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    fn = export_onnx if format == "onnx" else export_torchscript
    return fn(checkpoint, out, tolerance)


__all__ = ["export", "export_onnx", "export_torchscript", "onnx_model", "ExportParityError",
           "ExportResult", "FORMATS", "OPSET", "export_target", "PROTECTED_FILES"]
