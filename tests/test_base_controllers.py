"""Scripted base controllers run on the robot-state record and do what they claim."""

from __future__ import annotations

import numpy as np

import envs
from policies.base import Go1TrotGait, PandaPushController, RandomController, StandController


def run(env, controller, steps):
    env.reset_numpy(seed=0)
    episodes, terminated_any = [], False
    for _ in range(steps):
        action = controller(env.robot_state)
        assert action.shape == (env.num_envs, env.action_size)
        assert np.all(np.abs(action) <= 1.0)
        _, _, terminated, _, info = env.step_numpy(action)
        terminated_any |= bool(terminated.any())
        if "episodes" in info:
            episodes.append(info["episodes"])
    return episodes, terminated_any


def test_stand_holds_the_go1_up():
    env = envs.make("go1-velocity", 4, seed=0, max_episode_steps=100)
    _, fell = run(env, StandController(env.action_size), 99)
    assert not fell
    assert np.all(env.robot_state.base_pos[:, 2] > 0.2)


def test_trot_moves_forward_when_commanded():
    env = envs.make("go1-velocity", 8, seed=0, command_vx=(0.5, 0.5), command_vy=(0.0, 0.0),
                    command_yaw_rate=(0.0, 0.0), zero_command_prob=0.0, max_episode_steps=200)
    gait = Go1TrotGait(env.task.cfg.action_scale)
    env.reset_numpy(seed=0)
    vx = []
    for _ in range(150):
        env.step_numpy(gait(env.robot_state))
        vx.append(env.robot_state.base_lin_vel[:, 0].mean())
    assert np.mean(vx[50:]) > 0.1


def test_pusher_moves_the_cube_towards_the_goal():
    env = envs.make("panda-push", 8, seed=0)
    pusher = PandaPushController(env.model)
    env.reset_numpy(seed=0)
    start = env.task.goal_distance(env.robot_state)
    for _ in range(env.task.cfg.max_episode_steps - 1):
        env.step_numpy(pusher(env.robot_state))
    end = env.task.goal_distance(env.robot_state)
    assert np.mean(end) < 0.8 * np.mean(start)


def test_random_controller_is_seeded():
    env = envs.make("hopper", 2)
    env.reset_numpy()
    a = RandomController(3, seed=1)(env.robot_state)
    b = RandomController(3, seed=1)(env.robot_state)
    assert np.array_equal(a, b)
