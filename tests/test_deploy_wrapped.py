"""Deploying checkpoints trained inside an env wrapper: a distilled history student sees on the
robot the same stacked observations it saw in simulation, a residual runs on its scripted base
(a zero residual reproduces the base), and a privileged teacher is refused. The runtime's
inputs come from the training wrappers' own transforms (``policies.io``), run with one world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deploy
import envs
import policies
from deploy.policy import OnnxPolicy
from deploy.policy_io import PolicyIO
from deploy.robots.base import compose_state
from envs.batched import BatchedEnv
from policies.base import make_scripted
from policies.export import export
from policies.networks import NetworkConfig, Policy
from simrl.core.spec import load_spec
from simrl.core.logs import read_log
from simrl.distill import HistoryEnv, PrivilegedEnv
from simrl.robust.residual import ResidualEnv, ResidualTask, make_base

LOCKSTEP = deploy.RuntimeConfig(realtime=False, end_on_termination=False,
                                safety=deploy.SafetyConfig(soft_start_s=0.1))


def save_untrained(path, task, distribution=None) -> str:
    torch.manual_seed(0)
    policy = Policy(task.observation_size, task.action_size,
                    NetworkConfig(actor_hidden=(32, 32), normalize_obs=False))
    return str(policies.save(path, policy, task, distribution=distribution))


def test_student_on_the_robot_sees_the_history_it_was_trained_on(tmp_path):
    env = HistoryEnv(BatchedEnv(envs.make_task("go1-velocity"), 1, dr="none"), length=3)
    ckpt = save_untrained(tmp_path / "student", env.task)
    export(ckpt)
    onnx, inputs = OnnxPolicy(ckpt, load_spec(ckpt)), []

    def policy(x: np.ndarray) -> np.ndarray:
        inputs.append(x.copy())
        return onnx(x)
    report = deploy.run(ckpt, "mujoco", 0.4, tmp_path / "s.mcap", config=LOCKSTEP, policy=policy)
    assert report.policy_steps == len(inputs) > 0 and report.stop_reason is None
    log = read_log(tmp_path / "s.mcap")
    task = envs.make_task("go1-velocity")
    obs_size = task.observation_size
    assert log.meta.observation_names == task.observation_names  # logs hold task observations
    padded = np.concatenate([np.zeros((2, obs_size)), log.obs])
    first = report.steps - report.policy_steps  # soft-start steps fill the history too
    for i, x in enumerate(inputs):
        k = first + i
        np.testing.assert_allclose(x, padded[k:k + 3].reshape(-1), atol=1e-12)
    assert np.abs(inputs[0][:obs_size]).sum() > 0  # soft start left a real history behind
    # the runtime's stacking is HistoryEnv's over a whole episode (one world, same transform)
    io = PolicyIO(load_spec(ckpt), task)
    assert type(io.history) is type(env.io)
    sim_obs = env.reset_numpy(seed=0)
    rng = np.random.default_rng(0)
    for step in range(6):
        io.observe(sim_obs[0, -obs_size:])
        np.testing.assert_array_equal(io.network_input(None), sim_obs[0])
        assert step < 2 or np.abs(sim_obs[0, :obs_size]).sum() > 0  # the window is full
        sim_obs, _, terminated, truncated, _ = env.step_numpy(rng.uniform(-0.3, 0.3, (1, 12)))
        assert not (terminated | truncated).any()


def test_zero_residual_on_the_robot_runs_the_scripted_base(tmp_path):
    task = envs.make_task("panda-push")
    ckpt = save_untrained(tmp_path / "residual", ResidualTask(task, "pusher", 0.2))
    export(ckpt)
    act_size = task.action_size
    report = deploy.run(ckpt, "mujoco", 0.6, tmp_path / "r.mcap", config=LOCKSTEP,
                        policy=lambda x: np.zeros(act_size))
    assert report.policy_steps > 0
    log = read_log(tmp_path / "r.mcap")
    base = make_scripted("pusher", task)
    first = report.steps - report.policy_steps
    names = [n for n in log.state if n not in ("motor_pos", "motor_vel", "ctrl", "robot_time", "reward",
                                                "command", "last_action")]
    moved = 0.0
    for k in range(first, report.steps):
        fields = {n: log.state[n][k] for n in names}
        rs = compose_state(fields, {"command": log.state["command"][k:k + 1]}, log.state["last_action"][k])
        np.testing.assert_allclose(log.action[k], np.clip(base(rs)[0], -1, 1), atol=1e-9)
        moved += np.abs(log.action[k]).sum()
    assert moved > 0  # the pusher moved the arm


def test_residual_output_is_scaled_on_top_of_the_base():
    env = BatchedEnv(envs.make_task("go1-velocity"), 1, dr="none")
    obs = env.reset_numpy(seed=0)
    io = PolicyIO({"task": "go1-velocity", "residual": {"base": "trot", "scale": 0.2}}, env.task)
    gait = make_scripted("trot", env.task)  # a twin of the runtime's gait
    io.observe(obs[0])
    x = io.network_input(env.robot_state)
    base = np.clip(gait(env.robot_state)[0], -1, 1)
    assert np.abs(base).max() > 0.05
    np.testing.assert_allclose(x, np.concatenate([obs[0], base]))
    residual = np.linspace(-3.0, 3.0, env.action_size)  # clipped to [-1, 1], then scaled
    np.testing.assert_allclose(io.action(residual), np.clip(base + 0.2 * np.clip(residual, -1, 1), -1, 1))


def test_runtime_residual_io_is_the_training_wrappers():
    """Step by step, the runtime's residual input and action equal ResidualEnv's (one world)."""
    task = envs.make_task("go1-velocity")
    env = ResidualEnv(BatchedEnv(task, 1, dr="none"), make_base("trot", task), 0.2)
    io = PolicyIO({"task": "go1-velocity", "residual": {"base": "trot", "scale": 0.2}}, task)
    assert type(io.residual) is type(env.io)
    obs, rng = env.reset_numpy(seed=0), np.random.default_rng(1)
    size = task.observation_size
    for _ in range(8):
        io.observe(obs[0, :size])
        np.testing.assert_array_equal(io.network_input(env.env.robot_state), obs[0])
        residual = rng.uniform(-2, 2, (1, env.action_size))
        np.testing.assert_array_equal(io.action(residual[0]), env.io.action(residual)[0])
        obs = env.step_numpy(residual)[0]


def test_unsupported_checkpoints_are_refused_with_the_reason(tmp_path):
    teacher_env = PrivilegedEnv(BatchedEnv(envs.make_task("hopper"), 1, dr="uniform"))
    teacher = save_untrained(tmp_path / "teacher", teacher_env.task, teacher_env.distribution)
    with pytest.raises(ValueError, match="privileged teacher"):
        PolicyIO(load_spec(teacher), envs.make_task("hopper"))
    spec = {"task": "panda-push", "residual": {"base": "runs/base/final", "scale": 0.2}}
    with pytest.raises(ValueError, match="scripted bases only"):
        PolicyIO(spec, envs.make_task("panda-push"))
