"""Teacher-student distillation: privileged and history observations, DAgger imitation, the
student checkpoint through ``simrl eval``, and ``simrl distill`` / ``simrl distill teacher``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import policies
from envs.batched import BatchedEnv
from envs.tasks import make_task
from policies.networks import NetworkConfig, Policy
from simrl.cli import main
from simrl.distill import DistillConfig, HistoryEnv, PrivilegedEnv, distill

HOPPER_OBS = 11
# DAgger's defining property: on states the student itself visits (and was not trained on), its
# actions match the teacher's within this mean absolute difference (actions live in [-1, 1]).
TOLERANCE = 0.03


def hopper_env(num_envs: int, dr: str = "uniform", seed: int = 0, **config) -> BatchedEnv:
    return BatchedEnv(make_task("hopper", **config), num_envs, dr=dr, seed=seed)


@pytest.fixture(scope="module")
def random_teacher(tmp_path_factory):
    """A fixed, untrained privileged teacher: a random MLP on hopper's observation plus its
    standardized DR parameters (output layer at gain 1 so its actions are far from zero)."""
    torch.manual_seed(0)
    env = PrivilegedEnv(hopper_env(1))
    policy = Policy(env.observation_size, env.action_size,
                    NetworkConfig(actor_hidden=(32, 32), normalize_obs=False))
    torch.nn.init.orthogonal_(policy.actor[-1].weight, 1.0)
    return policies.save(tmp_path_factory.mktemp("teacher") / "ckpt", policy, env.task,
                         distribution=env.distribution)


def test_privileged_features_are_the_worlds_standardized_params():
    env = PrivilegedEnv(hopper_env(8, max_episode_steps=3))
    low, high = env.space.low, env.space.high
    obs = env.reset_numpy()
    assert env.task.observation_names[HOPPER_OBS:] == [f"priv_{p}" for p in env.space.names]
    for step in range(7):   # episodes end every 3 steps: the worlds draw new parameters
        expected = 2.0 * (env.env.params - low) / (high - low) - 1.0
        np.testing.assert_allclose(obs[:, HOPPER_OBS:], expected, atol=1e-12)
        assert np.all(np.abs(expected) <= 1.0)
        features = obs[:, HOPPER_OBS:]
        obs, _, terminated, truncated, info = env.step_numpy(np.zeros((8, 3)))
        if "final_obs" in info:   # finished worlds keep the parameters their episode ran with
            done = terminated | truncated
            np.testing.assert_allclose(info["final_obs"][done, HOPPER_OBS:], features[done])
            np.testing.assert_allclose(info["final_obs"][done, HOPPER_OBS:],
                                       2.0 * (info["episodes"].params - low) / (high - low) - 1.0)
    assert len(np.unique(obs[:, HOPPER_OBS])) == 8
    # A recorded parameter the env does not randomize reads its standardized nominal value.
    spec = {"params": ["friction", "gravity"], "low": [0.5, 5.0], "high": [1.5, 15.0],
            "nominal": [1.0, 12.5], "base_lin_vel": False}
    partial = PrivilegedEnv(hopper_env(4), spec)
    obs = partial.reset_numpy()
    np.testing.assert_allclose(obs[:, -1], 0.5)
    np.testing.assert_allclose(obs[:, -2], 2.0 * (partial.params[:, 4] - 0.5) - 1.0)


def test_go1_teacher_sees_the_true_body_frame_velocity():
    env = PrivilegedEnv(BatchedEnv(make_task("go1-velocity"), 2, dr="uniform"))
    env.reset_numpy()
    obs, *_ = env.step_numpy(np.zeros((2, 12)))
    names = env.task.observation_names
    i = names.index("priv_base_lin_vel_x")
    assert i == 45 and names[i + 3:] == [f"priv_{p}" for p in env.space.names]
    np.testing.assert_allclose(obs[:, i:i + 3], env.env.robot_state.base_lin_vel)
    assert np.abs(obs[:, i:i + 3]).max() > 0


def test_history_stacks_observations_and_restarts_at_episode_boundaries():
    length, n = 4, 6
    plain, env = hopper_env(n, max_episode_steps=5), HistoryEnv(hopper_env(n, max_episode_steps=5), length)
    assert env.observation_size == length * HOPPER_OBS
    assert env.task.observation_names[:2] == ["qpos_rootz@t-3", "qpos_rooty@t-3"]
    assert env.task.history_spec == {"length": length, "names": plain.task.observation_names}
    rng = np.random.default_rng(0)
    expected = np.zeros((n, length, HOPPER_OBS))
    expected[:, -1] = plain.reset_numpy()
    np.testing.assert_allclose(env.reset_numpy(), expected.reshape(n, -1))
    ended = 0
    for _ in range(12):
        action = rng.uniform(-1, 1, (n, 3))
        base, _, terminated, truncated, base_info = plain.step_numpy(action)
        obs, _, _, _, info = env.step_numpy(action)
        done = terminated | truncated
        if done.any():   # the final observation ends the old history; the new one starts from zeros
            final = np.concatenate([expected[:, 1:], base_info["final_obs"][:, None]], axis=1)
            np.testing.assert_allclose(info["final_obs"][done], final[done].reshape(done.sum(), -1))
            ended += done.sum()
        expected = np.concatenate([expected[:, 1:], base[:, None]], axis=1)
        expected[done, :-1] = 0.0
        np.testing.assert_allclose(obs, expected.reshape(n, -1))
    assert ended >= n


def test_dagger_student_matches_its_teacher_and_evaluates(random_teacher, tmp_path, capsys):
    cfg = DistillConfig(iterations=5, steps_per_iteration=50, num_envs=16, epochs=10,
                        batch_size=256, hidden=(64, 64), dr="none", eval_episodes=8, threads=1)
    errors = []
    result = distill(random_teacher, tmp_path / "run", cfg, lambda k, s: errors.append(s["action_mae"]))
    # errors[0]: the untrained student on the teacher's states; result.action_mae: the final
    # student on fresh states of its own rollout (not in its training data)
    assert errors[0] > 0.2 and result.action_mae < TOLERANCE
    spec = policies.load_spec(result.student)
    assert spec["history"] == {"length": 5, "names": make_task("hopper").observation_names}
    assert spec["training"]["algo"] == "dagger" and spec["privileged"] is None
    report = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert len(report["iterations"]) == 5 and report["final_action_mae"] == result.action_mae
    teacher, student = report["evaluation"]["teacher"], report["evaluation"]["student"]
    assert teacher["episodes"] == student["episodes"] == 8
    assert abs(student["return"]["mean"] - teacher["return"]["mean"]) < 0.05 * abs(teacher["return"]["mean"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert {"dagger/action_mae", "dagger/loss", "dagger/beta"} <= set(events.Tags()["scalars"])
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(result.student), str(random_teacher), "--episodes", "4",
                 "--dr", "uniform", "--json", str(out)]) == 0
    assert [r["episodes"] for r in json.loads(out.read_text())] == [4, 4]


def test_distill_cli_trains_a_teacher_and_distills_it(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert main(["distill", "teacher", "--task", "hopper", "--num-envs", "4", "--steps", "64",
                 "--ppo.num-steps", "16", "--network.actor-hidden", "16", "--progress", "false",
                 "--out", str(teacher)]) == 0
    spec = policies.load_spec(teacher / "final")
    assert spec["dr"]["type"] == "uniform" and spec["privileged"]["params"][-1] == "friction"
    # --resume continues the teacher on its privileged observation; settings stay as they were
    assert main(["distill", "teacher", "--resume", str(teacher), "--steps", "128", "--progress", "false"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert policies.load_spec(teacher / "final")["training"]["steps"] == 128
    assert main(["distill", "teacher", "--resume", str(teacher), "--steps", "192",
                 "--ppo.learning-rate", "0.1"]) == 2
    assert "only" in capsys.readouterr().err
    # --init: a new teacher under a wider DR (one more parameter) keeps the old teacher's
    # privileged features, so the old network fits
    dr = tmp_path / "dr.json"
    dr.write_text(json.dumps({**{p: [lo, hi] for p, lo, hi in zip(spec["privileged"]["params"],
                                                                   spec["privileged"]["low"], spec["privileged"]["high"])},
                              "gain": [0.8, 1.2]}))
    assert main(["distill", "teacher", "--task", "hopper", "--num-envs", "4", "--steps", "64",
                 "--ppo.num-steps", "16", "--network.actor-hidden", "16", "--progress", "false",
                 "--dr", str(dr), "--init", str(teacher / "final"), "--out", str(tmp_path / "t2")]) == 0
    new = policies.load_spec(tmp_path / "t2" / "final")
    assert new["privileged"] == spec["privileged"] and "gain" in new["dr"]["names"]
    assert main(["distill", "teacher", "--task", "hopper", "--steps", "64", "--init", str(tmp_path / "x"),
                 "--out", str(tmp_path / "t3")]) == 2
    assert main(["distill", "--teacher", str(teacher / "final"), "--out", str(tmp_path / "d"),
                 "--iterations", "1", "--steps-per-iteration", "8", "--num-envs", "4",
                 "--hidden", "16", "--eval-episodes", "2", "--history", "3"]) == 0
    text = capsys.readouterr().out
    assert "iteration 1/1" in text and "teacher: task hopper" in text and "student: task hopper" in text
    assert policies.load_spec(tmp_path / "d" / "student")["history"]["length"] == 3
    # a checkpoint without privileged features cannot teach
    assert main(["distill", "--teacher", str(tmp_path / "d" / "student"), "--out", str(tmp_path / "x")]) == 2
    assert "not a privileged teacher" in capsys.readouterr().err
