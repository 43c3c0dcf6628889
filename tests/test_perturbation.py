"""The reality proxy has one definition (``envs.perturbation.Perturbation``): as batched worlds
it runs the same robot as deploy's MuJoCo robot, its sensor noise acts on the robot-state record
through the shared wrapper base, and bad files or fields are refused with the field's name."""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pytest
import torch

from deploy.robots.base import RUN, Command
from deploy.robots.mujoco import MujocoSim, SimConfig
from envs.perturbation import Perturbation, SensorNoise


def test_batched_proxy_steps_like_the_deployed_mujoco_robot():
    """Same perturbation, same start, same commands: the same trajectory (latency included)."""
    pert = Perturbation(params={"mass:torso": 1.35, "friction": 0.55, "gain": 0.8}, latency=0.008)
    env = pert.make_env("hopper", 1, seed=0)
    env.reset_numpy(0)
    assert dict(zip(env.param_names, env.params[0])) == pytest.approx({**pert.params, "latency": 1})
    sim = MujocoSim(SimConfig("hopper", perturbation=pert.to_dict()))
    rs = env.robot_state
    sim.data.qpos[:], sim.data.qvel[:] = rs.joint_pos[0], rs.joint_vel[0]
    mujoco.mj_forward(sim.model, sim.data)
    sim.target[:] = sim.applied[:] = env.env.ctrl_history[0, 0]
    rng, nu = np.random.default_rng(0), sim.model.nu
    moved = 0.0
    for _ in range(30):
        action = rng.uniform(-1, 1, (1, 3))
        ctrl = env.task.action_to_ctrl(action, env.robot_state, {})[0]
        env.step_numpy(action)
        sim.submit(Command(ctrl, np.zeros(nu), np.zeros(nu), RUN))
        sim.step(env.task.substeps)
        np.testing.assert_allclose(sim.data.qpos, env.robot_state.joint_pos[0], atol=1e-9)
        moved = max(moved, np.abs(sim.data.qpos - rs.joint_pos[0]).max())
    assert moved > 0.01


def test_batched_sensor_noise_acts_on_the_record():
    pert = Perturbation(params={"mass:torso": 1.2}, noise={"joint_pos": 0.01, "joint_vel": 0.1})
    env = pert.make_env("hopper", 3, seed=0)
    assert isinstance(env, SensorNoise)
    obs = env.reset_numpy(5)
    true, noisy = env.env.robot_state, env.robot_state
    np.testing.assert_array_equal(obs, env.task.observation(noisy))  # observed from the noisy record
    pos, vel = noisy.joint_pos - true.joint_pos, noisy.joint_vel - true.joint_vel
    assert 0 < np.abs(pos).max() < 0.1 and vel.std() > 3 * pos.std()
    np.testing.assert_array_equal(noisy.last_action, true.last_action)
    np.testing.assert_array_equal(env.reset_numpy(5), obs)  # reset(seed) repeats the noise
    obs, reward, *_ = env.step_numpy(np.zeros((3, 3)))
    clean = Perturbation(params=pert.params).make_env("hopper", 3, seed=0)
    clean.reset_numpy(5)
    clean_obs, clean_reward, *_ = clean.step_numpy(np.zeros((3, 3)))
    np.testing.assert_array_equal(reward, clean_reward)  # rewards see the true state
    assert 0 < np.abs(obs - clean_obs).max() < 1.0


def test_bad_perturbations_are_refused_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="latency: 0.005 s is not a whole number"):
        Perturbation(latency=0.005).make_env("hopper", 1)
    with pytest.raises(ValueError, match="motor_lag"):
        Perturbation(motor_lag=0.02).make_env("hopper", 1)
    with pytest.raises(ValueError, match=r"noise: task hopper reports no fields \['lidar'\]"):
        Perturbation(noise={"lidar": 1.0}).make_env("hopper", 1)
    with pytest.raises(ValueError, match="no body named"):
        Perturbation(params={"mass:nope": 1.2}).make_env("hopper", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {friction: 0.5}\nlatancy: 0.01\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown keys \['latancy'\]"):
        Perturbation.load(bad)
    motor = Perturbation(noise={"motor_pos": 0.01}).make_env("hopper", 1)  # a reading off the record
    motor.reset_numpy(0)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_files_round_trip_and_old_files_load(tmp_path, suffix):
    pert = Perturbation(params={"mass:trunk": 1.2, "kp": 1.1}, latency=0.01, motor_lag=0.02,
                        noise={"joint_pos": 0.005})
    assert Perturbation.load(pert.save(tmp_path / f"p{suffix}")) == pert
    old = tmp_path / "old.json"   # a file with some keys only (the quickstart's before)
    old.write_text(json.dumps({"params": {"friction": 0.75}, "latency": 0.008}))
    assert Perturbation.load(old) == Perturbation(params={"friction": 0.75}, latency=0.008)


def test_env_api_through_the_wrapper_base():
    env = Perturbation(noise={"joint_vel": 0.1}).make_env("hopper", 2, seed=0, max_episode_steps=4)
    assert (env.observation_size, env.action_size, env.num_envs) == (11, 3, 2)
    assert env.param_names == env.env.param_names and env.distribution is env.env.distribution
    env.reset()
    obs, reward, terminated, truncated, info = env.step(np.zeros((2, 3)))
    assert obs.dtype == reward.dtype == torch.float32 and terminated.dtype == torch.bool
    for _ in range(3):
        *_, info = env.step_numpy(np.zeros((2, 3)))
    assert "episodes" in info and info["final_obs"].shape == (2, 11)
    env.close()
