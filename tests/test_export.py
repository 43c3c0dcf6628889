"""ONNX / TorchScript export: parity with the torch policy, the ONNX contract, stale exports."""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

import envs
import policies
from deploy.policy import OnnxPolicy
from simrl.core.onnx_contract import META_ACT, META_OBS, META_SHA, ONNX_FILE
from simrl.core.spec import file_sha256, load_spec
from policies.checkpoint import save
from policies.export import ExportParityError, TORCHSCRIPT_FILE, export, parity_observations
from policies.networks import NetworkConfig, Policy
from simrl.cli import main


def trained_like_checkpoint(path, task_name: str = "hopper", seed: int = 0, out_gain: float = 3.0,
                            **net) -> str:
    """A checkpoint whose normalizer and weights look trained: shifted, scaled statistics and
    (by default) an output layer big enough that actions hit the [-1, 1] clip."""
    task = envs.make_task(task_name)
    torch.manual_seed(seed)
    policy = Policy(task.observation_size, task.action_size, NetworkConfig(**net))
    with torch.no_grad():
        if policy.normalizer is not None:
            policy.normalizer.update(3.0 * torch.randn(4096, task.observation_size) + 1.0)
        torch.nn.init.orthogonal_(policy.actor[-1].weight, gain=out_gain)
    save(path, policy, task)
    return str(path)


@pytest.mark.parametrize("net", [{}, {"activation": "elu"}, {"activation": "relu", "squash": True},
                                 {"normalize_obs": False, "actor_hidden": (32,)}])
def test_onnx_matches_torch_on_random_and_realistic_observations(tmp_path, net):
    ckpt = trained_like_checkpoint(tmp_path / "c", **net)
    result = export(ckpt, "onnx")
    assert result.path == tmp_path / "c" / ONNX_FILE and result.max_abs_diff < 1e-5

    loaded = policies.load(ckpt)
    obs = parity_observations(loaded, seed=7)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    action, scaled = session.run(["action", "scaled_action"], {"obs": obs})
    want = loaded(obs.astype(np.float64))
    assert np.max(np.abs(action - want)) < 1e-5
    assert np.abs(action).max() == pytest.approx(1.0)  # clipped outputs are exercised
    spec = load_spec(ckpt)
    np.testing.assert_allclose(scaled, np.asarray(spec["action"]["offset"])
                               + np.asarray(spec["action"]["scale"]) * action, atol=1e-6)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta[META_SHA] == file_sha256(tmp_path / "c" / "policy.pt")
    assert json.loads(meta[META_OBS]) == spec["observation"]["names"]
    assert json.loads(meta[META_ACT]) == spec["action"]["names"]
    # the runtime's wrapper gives the same action for one observation
    runtime_policy = OnnxPolicy(ckpt, spec)
    np.testing.assert_allclose(runtime_policy(obs[3].astype(np.float64)), want[3], atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_export_matches(tmp_path):
    ckpt = trained_like_checkpoint(tmp_path / "c")
    result = export(ckpt, "torchscript")
    assert result.path.name == TORCHSCRIPT_FILE and result.max_abs_diff < 1e-5
    module = torch.jit.load(str(result.path))
    obs = torch.randn(5, len(load_spec(ckpt)["observation"]["names"])) * 5
    action, _ = module(obs)
    np.testing.assert_allclose(action.numpy(), policies.load(ckpt)(obs.double().numpy()), atol=1e-5)


def test_parity_failure_is_loud_and_writes_nothing(tmp_path):
    ckpt = trained_like_checkpoint(tmp_path / "c")
    with pytest.raises(ExportParityError, match="max \\|diff\\|"):
        export(ckpt, "onnx", tolerance=0.0)
    assert not (tmp_path / "c" / ONNX_FILE).exists()
    assert not list((tmp_path / "c").glob(".policy.onnx*"))


def test_stale_export_is_refused(tmp_path):
    ckpt = trained_like_checkpoint(tmp_path / "c")
    export(ckpt)
    trained_like_checkpoint(tmp_path / "c", seed=1)  # new weights, old policy.onnx
    with pytest.raises(ValueError, match="stale"):
        OnnxPolicy(ckpt, load_spec(ckpt))


def test_cli_export(tmp_path, capsys):
    ckpt = trained_like_checkpoint(tmp_path / "c")
    assert main(["export", "--checkpoint", ckpt, "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "policy.onnx" in out and "parity" in out
    diff = float(out.split("max |diff| ")[1].split()[0])
    assert math.isfinite(diff) and diff < 1e-5
