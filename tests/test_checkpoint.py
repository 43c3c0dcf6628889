"""Self-describing checkpoints: round trip, weights-only loading and clear errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import envs
import policies
from policies import CheckpointError, NetworkConfig, Policy


@pytest.fixture(scope="module")
def go1():
    env = envs.make("go1-velocity", 4, dr="uniform", seed=0)
    yield env
    env.close()


@pytest.fixture()
def saved(go1, tmp_path):
    """A go1 checkpoint with a non-trivial normalizer and weights."""
    torch.manual_seed(0)
    policy = Policy(go1.observation_size, go1.action_size,
                    NetworkConfig(actor_hidden=(32, 16), activation="elu"))
    obs = go1.reset()
    policy.normalizer.update(obs * 3.0 + 1.0)
    policies.save(tmp_path / "ckpt", policy, go1.task, distribution=go1.distribution,
                  training={"steps": 1234, "seed": 7, "mean_return": 1.5})
    return tmp_path / "ckpt", policy, obs


def test_round_trip_gives_bit_identical_actions(saved):
    path, policy, obs = saved
    loaded = policies.load(path, task="go1-velocity")
    with torch.no_grad():
        expected = policy(obs)
    assert torch.equal(loaded(obs), expected)
    assert np.array_equal(loaded(obs.numpy()), expected.numpy())
    with torch.no_grad():  # one observation: compared with a batch of one (same kernels)
        single = policy(obs[:1])[0].numpy()
    assert np.array_equal(loaded(obs.numpy()[0]), single)
    assert loaded.observation_names == envs.make_task("go1-velocity").observation_names


def test_spec_describes_the_policy(saved, go1):
    path, policy, _ = saved
    spec = json.loads((path / "spec.json").read_text())
    assert spec["format_version"] == policies.FORMAT_VERSION and spec["task"] == "go1-velocity"
    assert spec["control_dt"] == pytest.approx(0.02)
    assert spec["observation"]["names"] == go1.task.observation_names
    assert spec["observation"]["normalizer"]["mean"] == policy.normalizer.mean.tolist()
    action = spec["action"]
    assert action["names"] == go1.task.action_names and action["type"] == "joint_position"
    assert action["offset"] == pytest.approx(go1.task.default_pose.tolist())
    assert action["scale"] == pytest.approx([go1.task.cfg.action_scale] * 12)
    assert spec["default_joint_pos"] == pytest.approx(go1.task.default_pose.tolist())
    assert spec["pd_gains"]["kp"] == pytest.approx([35.0] * 12)
    assert spec["network"]["actor_hidden"] == [32, 16] and spec["network"]["activation"] == "elu"
    assert spec["dr"] == go1.distribution.to_dict()
    assert spec["training"] == {"steps": 1234, "seed": 7, "mean_return": 1.5}
    assert {"torch", "mujoco", "numpy", "python"} <= set(spec["versions"])


def test_classic_task_spec_has_actuator_scaling(tmp_path):
    task = envs.make_task("hopper")
    policies.save(tmp_path / "h", Policy(11, 3, NetworkConfig()), task)
    spec = policies.load_spec(tmp_path / "h")
    assert spec["action"]["type"] == "actuator" and spec["default_joint_pos"] is None
    assert spec["task_config"]["healthy_z_range"] == [0.7, "inf"]  # strict JSON, no Infinity
    from envs.tasks import config_from_spec
    assert config_from_spec(spec) == task.cfg


def test_policy_pt_is_a_plain_weights_only_state_dict(saved):
    path, policy, _ = saved
    state = torch.load(path / "policy.pt", weights_only=True)
    assert set(state) == set(policy.state_dict())
    assert state["normalizer.mean"].dtype == torch.float64


def test_pickled_code_in_policy_pt_is_refused(saved):
    path, _, _ = saved

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    with open(path / "policy.pt", "wb") as f:
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="policy.pt"):
        policies.load(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_policy_pt_is_a_clear_error(saved, damage):
    path, _, _ = saved
    file = path / "policy.pt"
    data = file.read_bytes()
    file.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\x13" * 500,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=r"policy\.pt.*corrupted or truncated"):
        policies.load(path)


def test_newer_format_version_is_refused(saved):
    path, _, _ = saved
    spec = json.loads((path / "spec.json").read_text())
    spec["format_version"] = policies.FORMAT_VERSION + 1
    (path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="newer than this simrl supports"):
        policies.load(path)


def test_checkpoint_of_another_task_is_refused(saved):
    path, _, _ = saved
    with pytest.raises(CheckpointError, match="trained on task 'go1-velocity', not 'hopper'"):
        policies.load(path, task="hopper")
    with pytest.raises(CheckpointError, match="not 'walker2d'"):
        policies.load(path, task=envs.make_task("walker2d"))


@pytest.mark.parametrize("missing", ["spec.json", "policy.pt"])
def test_missing_files_are_named(saved, missing):
    path, _, _ = saved
    (path / missing).unlink()
    with pytest.raises(CheckpointError, match=f"missing {missing}"):
        policies.load(path)


def test_missing_directory_and_bad_json(saved, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        policies.load(tmp_path / "nope")
    path, _, _ = saved
    (path / "spec.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        policies.load(path)


def test_architecture_mismatch_is_a_clear_error(saved):
    path, _, _ = saved
    spec = json.loads((path / "spec.json").read_text())
    spec["network"]["actor_hidden"] = [64, 16]
    (path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="do not match the architecture"):
        policies.load(path)


def test_policy_rejects_wrong_observation_shape(saved):
    path, _, _ = saved
    with pytest.raises(ValueError, match="expects observations of shape"):
        policies.load(path)(np.zeros((2, 44), np.float32))


def test_files_of_two_checkpoints_are_detected(saved, go1, tmp_path):
    path, _, obs = saved
    other = Policy(go1.observation_size, go1.action_size, NetworkConfig(actor_hidden=(32, 16),
                                                                        activation="elu"))
    other.normalizer.update(obs)
    policies.save(tmp_path / "other", other, go1.task)
    (path / "policy.pt").write_bytes((tmp_path / "other" / "policy.pt").read_bytes())
    with pytest.raises(CheckpointError, match="different checkpoints"):
        policies.load(path)
