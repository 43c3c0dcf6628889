"""panda-reach: the task's observation, goals, start poses, targets and success criterion, and
its scripted reacher (differential IK) in the batched env. The deploy on franky-sim is in
tests/test_franka.py."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from deploy.robots.franka import FR3, ArmModel, check_limits
from envs.batched import BatchedEnv
from policies.base import make_scripted
from simrl.core.robot_state import RobotState


@pytest.fixture(scope="module")
def task():
    return envs.make_task("panda-reach")


def test_observation_and_action_sizes(task):
    assert task.observation_size == 37 and task.action_size == 7
    assert task.observation_names[21:30] == ["ee_x", "ee_y", "ee_z", "goal_x", "goal_y", "goal_z",
                                             "goal_minus_ee_x", "goal_minus_ee_y", "goal_minus_ee_z"]
    env = BatchedEnv(task, 4, dr="none", seed=0)
    obs = env.reset_numpy(seed=0)
    assert obs.shape == (4, 37)
    np.testing.assert_allclose(obs, task.observation(env.robot_state))  # from the record only


def test_reset_goals_in_the_box_and_start_poses_in_range(task):
    r = task.reset(np.random.default_rng(3), 500)
    goal = r.task_state["command"]
    assert np.all(goal >= task.cfg.goal_low) and np.all(goal <= task.cfg.goal_high)
    assert np.ptp(goal, axis=0).min() > 0.2  # spread over the box
    q = r.qpos[:, task.arm_qpos]
    assert np.all(q >= task.target_low) and np.all(q <= task.target_high)
    assert np.abs(q - task.home).max() <= task.cfg.start_noise + 1e-12
    np.testing.assert_array_equal(r.task_state["joint_target"], q)
    assert np.all(r.qpos[:, 7:] == 0)  # fingers closed


def test_targets_stay_in_the_fr3_range_and_near_the_joints(task):
    rng = np.random.default_rng(0)
    q = np.tile(task.home, (64, 1))
    q[:, 3] = task.target_high[3] - 0.01  # joint 4 near the top of its range
    state = {"joint_target": q.copy(), "command": np.zeros((64, 3))}
    rs = RobotState(joint_pos=q, joint_vel=np.zeros_like(q), command=state["command"],
                    last_action=np.zeros((64, 7)), extras={"ee_pos": np.zeros((64, 3)), "joint_target": q})
    for _ in range(20):
        ctrl = task.action_to_ctrl(rng.uniform(-1, 1, (64, 7)), rs, state)
        t = ctrl[:, :7]
        assert np.all(t >= task.target_low) and np.all(t <= task.target_high)
        assert np.all(np.abs(t - q) <= task.max_lead + 1e-12)
    assert np.all(ctrl[:, 7:] == 0)
    # the whole commandable range lies inside the FR3's: the franka back-end need not clamp
    low, high, msg = check_limits(ArmModel.from_task(task), FR3, "refuse", 0.02)
    assert msg == "" and np.all(task.target_low >= np.array(FR3.q_min)) and np.all(task.target_high <= np.array(FR3.q_max))


def test_success_is_the_final_distance_below_the_threshold(task):
    goal = np.array([[0.5, 0.0, 0.3]] * 3)
    ee = goal + np.array([[0.0, 0.0, 0.029], [0.0, 0.031, 0.0], [0.2, 0.0, 0.0]])
    rs = RobotState(joint_pos=np.zeros((3, 7)), joint_vel=np.zeros((3, 7)), command=goal,
                    last_action=np.zeros((3, 7)), extras={"ee_pos": ee, "joint_target": np.zeros((3, 7))})
    ok = task.success(rs, np.zeros(3), np.full(3, 100), {}, np.zeros(3, dtype=bool))
    assert ok.tolist() == [True, False, False]
    r, terminated, metrics = task.reward(rs, rs, np.zeros((3, 7)), None)
    assert r[0] > r[1] > r[2] and not terminated.any()
    np.testing.assert_allclose(metrics["goal_distance"], [0.029, 0.031, 0.2])


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="target_low"):
        envs.make_task("panda-reach", target_low=(0.0,) * 6)
    with pytest.raises(ValueError, match="success_distance"):
        envs.make_task("panda-reach", success_distance=0.0)


def test_scripted_reacher_reaches_the_goals(task):
    env = BatchedEnv(task, 8, dr="none", seed=1)
    ctl = make_scripted("reacher", task)
    env.reset_numpy(seed=1)
    for _ in range(task.cfg.max_episode_steps):
        _, _, _, _, info = env.step_numpy(ctl(env.robot_state))
    assert info["episodes"].success.mean() >= 0.9
