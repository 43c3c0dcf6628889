"""Batched environments: randomization changes physics, worlds are independent, seeds reproduce,
auto-reset is correct, spaces and dtypes hold, bad input gets a clear error."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from envs.assets import AssetError, asset_path
from envs.randomization import ParameterSpace, make_ranges
from envs.distributions import RandomizationError, Uniform


def rollout(env, actions):
    """Steps ``env`` through ``actions`` (T, N, A); returns stacked obs and rewards (numpy)."""
    obs, rew = [env.reset_numpy()], []
    for a in actions:
        o, r, *_ = env.step_numpy(a)
        obs.append(o)
        rew.append(r)
    return np.stack(obs), np.stack(rew)


def fixed(**values):
    """A degenerate uniform range {name: (v, v)} for each given value."""
    return {k.replace("__", ":"): (v, v) for k, v in values.items()}


@pytest.mark.parametrize("task", envs.task_names())
def test_every_task_steps_with_tensors(task):
    env = envs.make(task, 4, dr="uniform", seed=0)
    obs = env.reset()
    assert obs.shape == (4, env.observation_size) and obs.dtype == torch.float32
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(4, env.action_size))
    assert reward.shape == (4,) and reward.dtype == torch.float32
    assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all()
    assert len(env.task.observation_names) == env.observation_size
    assert len(env.task.action_names) == env.action_size


def test_heavier_trunk_changes_the_trajectory():
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 2, 12))
    light = envs.make("go1-velocity", 2, dr=fixed(mass__trunk=1.0), seed=3)
    heavy = envs.make("go1-velocity", 2, dr=fixed(mass__trunk=1.6), seed=3)
    obs_l, _ = rollout(light, actions)
    obs_h, _ = rollout(heavy, actions)
    assert np.array_equal(obs_l[0], obs_h[0])          # same start
    assert np.abs(obs_l[-1] - obs_h[-1]).max() > 1e-2   # different physics
    m = heavy.models[0]
    assert m.body("trunk").mass[0] == pytest.approx(1.6 * light.model.body("trunk").mass[0])


def test_zero_friction_changes_the_trajectory():
    actions = np.random.default_rng(1).uniform(-1, 1, (60, 1, 3))
    normal = envs.make("hopper", 1, dr=fixed(friction=1.0), seed=0)
    ice = envs.make("hopper", 1, dr=fixed(friction=0.0), seed=0)
    obs_n, _ = rollout(normal, actions)
    obs_i, _ = rollout(ice, actions)
    assert np.all(ice.models[0].geom_friction[:, 0] == 0)
    assert np.abs(obs_n[-1] - obs_i[-1]).max() > 1e-2


def test_worlds_are_independent():
    """Changing world 1's model changes world 1 only; world 0 is bit-identical."""
    actions = np.random.default_rng(2).uniform(-1, 1, (40, 2, 3))
    a = envs.make("hopper", 2, seed=5)
    b = envs.make("hopper", 2, seed=5)
    obs_a, obs_b = [a.reset_numpy()], [b.reset_numpy()]
    b.models[1].body("torso").mass[0] *= 2.0
    assert a.models[0] is not a.models[1]
    assert b.models[0].body("torso").mass[0] == a.model.body("torso").mass[0]
    for act in actions:
        obs_a.append(a.step_numpy(act)[0])
        obs_b.append(b.step_numpy(act)[0])
    obs_a, obs_b = np.stack(obs_a), np.stack(obs_b)
    assert np.array_equal(obs_a[:, 0], obs_b[:, 0])
    assert np.abs(obs_a[:, 1] - obs_b[:, 1]).max() > 1e-3


def test_apply_starts_from_nominal_each_time():
    env = envs.make("hopper", 1, dr={"mass:torso": (0.5, 2.0)})
    nominal = env.model.body("torso").mass[0]
    m = copy.copy(env.model)
    env.space.apply(m, np.array([2.0]))
    env.space.apply(m, np.array([2.0]))
    assert m.body("torso").mass[0] == pytest.approx(2.0 * nominal)


def test_seed_determinism():
    actions = np.random.default_rng(3).uniform(-1, 1, (80, 8, 12))
    runs = [rollout(envs.make("go1-velocity", 8, dr="uniform", seed=s), actions) for s in (7, 7, 8)]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_autoreset_reports_finished_episodes():
    env = envs.make("hopper", 8, dr="uniform", seed=0)
    obs = env.reset_numpy()
    rng = np.random.default_rng(0)
    ret, length, finished = np.zeros(8), np.zeros(8, dtype=int), 0
    for _ in range(300):
        new_obs, reward, terminated, truncated, info = env.step_numpy(rng.uniform(-1, 1, (8, 3)))
        ret += reward
        length += 1
        done = terminated | truncated
        if done.any():
            ep = info["episodes"]
            assert np.array_equal(ep.env_ids, np.flatnonzero(done))
            assert np.allclose(ep.returns, ret[done])
            assert np.array_equal(ep.lengths, length[done])
            assert np.array_equal(ep.terminated, terminated[done])
            assert ep.params.shape == (done.sum(), len(env.param_names))
            assert np.array_equal(ep.success, ep.returns >= env.task.cfg.success_return)
            # the returned obs is a fresh episode: hopper starts upright at z = 1.25 +- 0.005
            assert np.all(np.abs(new_obs[done, 0] - 1.25) <= 0.005 + 1e-9)
            assert not np.allclose(info["final_obs"][done], new_obs[done])
            assert np.all(env.ep_length[done] == 0)
            ret[done], length[done] = 0.0, 0
            finished += int(done.sum())
    assert finished > 10


def test_time_limit_truncates():
    env = envs.make("halfcheetah", 3, max_episode_steps=20)
    env.reset_numpy()
    for t in range(20):
        _, _, terminated, truncated, info = env.step_numpy(np.zeros((3, 6)))
    assert truncated.all() and not terminated.any()
    assert np.array_equal(info["episodes"].lengths, [20, 20, 20])


def test_episode_params_are_the_sampled_ones():
    env = envs.make("hopper", 16, dr={"mass:torso": (0.5, 1.5), "friction": (0.2, 1.8)}, seed=0)
    env.reset_numpy()
    before = env.params.copy()
    assert np.all((before[:, 0] >= 0.5) & (before[:, 0] <= 1.5)) and len(np.unique(before[:, 0])) == 16
    torso = env.model.body("torso").id
    for i in range(16):
        assert env.models[i].body_mass[torso] == pytest.approx(before[i, 0] * env.model.body_mass[torso])
    rng = np.random.default_rng(0)
    while True:
        *_, info = env.step_numpy(rng.uniform(-1, 1, (16, 3)))
        if "episodes" in info:
            ep = info["episodes"]
            assert np.array_equal(ep.params, before[ep.env_ids])
            break


def test_latency_delays_actions_by_whole_steps():
    """With one step of latency, actions a0, a1, ... act like a0 = 0 then a0, a1, ... without."""
    rng = np.random.default_rng(4)
    actions = rng.uniform(-1, 1, (30, 1, 3))
    delayed = envs.make("hopper", 1, dr=fixed(latency=1), seed=0)
    prompt = envs.make("hopper", 1, dr=fixed(latency=0), seed=0)
    shifted = np.concatenate([np.zeros((1, 1, 3)), actions[:-1]])
    obs_d, _ = rollout(delayed, actions)
    obs_p, _ = rollout(prompt, shifted)
    assert np.allclose(obs_d, obs_p)
    obs_no_shift, _ = rollout(prompt, actions)
    assert not np.allclose(obs_d, obs_no_shift)


def test_pushes_and_external_forces_move_the_robot():
    zero = np.zeros((40, 2, 12))
    calm = envs.make("go1-velocity", 2, dr=fixed(push=0.0), seed=0)
    pushed = envs.make("go1-velocity", 2, dr=fixed(push=80.0), seed=0, push_interval_steps=10)
    obs_c, _ = rollout(calm, zero)
    obs_p, _ = rollout(pushed, zero)
    assert np.abs(obs_c - obs_p).max() > 0.1
    from envs.batched import BatchedEnv
    env = BatchedEnv(envs.make_task("go1-velocity"), 2, seed=0, external_forces=True)
    env.reset_numpy()
    env.external_force = np.array([[0.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
    for _ in range(10):
        env.step_numpy(np.zeros((2, 12)))
    x = env.robot_state.base_pos[:, 0]
    assert x[1] - x[0] > 0.02


def test_observation_noise_changes_obs_not_physics():
    zero = np.zeros((10, 2, 12))
    clean = envs.make("go1-velocity", 2, dr=fixed(obs_noise=0.0), seed=0)
    noisy = envs.make("go1-velocity", 2, dr=fixed(obs_noise=1.0), seed=0)
    obs_c, _ = rollout(clean, zero)
    obs_n, _ = rollout(noisy, zero)
    assert np.abs(obs_c - obs_n).max() > 1e-3
    assert np.allclose(clean.state, noisy.state)


def test_go1_observation_comes_from_robot_state():
    env = envs.make("go1-velocity", 3, seed=0)
    obs = env.reset_numpy()
    rs = env.robot_state
    assert np.array_equal(obs, env.task.observation(rs))
    assert np.allclose(obs[:, 3:6], [0, 0, -1], atol=1e-6)   # upright: gravity straight down
    assert np.allclose(obs[:, 6:9], rs.command)


def test_uniform_distribution_density_and_entropy():
    d = Uniform(["a", "b", "c"], [0.0, 1.0, 2.0], [2.0, 1.0, 2.5])
    x = d.sample(1000, np.random.default_rng(0))
    assert np.all(x[:, 1] == 1.0) and x[:, 0].min() >= 0 and x[:, 0].max() <= 2
    assert d.entropy() == pytest.approx(np.log(2.0) + np.log(0.5))
    assert np.allclose(d.log_prob(x), -d.entropy())
    assert d.log_prob(np.array([[3.0, 1.0, 2.2]]))[0] == -np.inf


@pytest.mark.parametrize("spec, message", [
    ({"mass:nonexistent_body": (0.8, 1.2)}, "no body named 'nonexistent_body'"),
    ({"wobble": (0.0, 1.0)}, "unknown randomization parameter kind 'wobble'"),
    ({"mass:torso": (1.5, 0.5)}, "low 1.5 > high 0.5"),
    ({"mass:torso": (0.0, 1.0)}, "non-positive mass"),
    ({"mass:torso": (-1.0, 1.0)}, "non-positive mass"),
    ({"friction": (-0.5, 1.0)}, "must be >= 0"),
    ({"damping:no_such_joint": (0.5, 1.0)}, "no joint named 'no_such_joint'"),
])
def test_bad_randomization_names_the_problem(spec, message):
    with pytest.raises(RandomizationError, match=re.escape(message)):
        envs.make("hopper", 1, dr=spec)


def test_bad_task_model_and_actions():
    with pytest.raises(ValueError, match="unknown task 'spot-dance'"):
        envs.make("spot-dance")
    with pytest.raises(AssetError, match="model file not found"):
        envs.make("hopper", model="/nonexistent/robot.xml")
    with pytest.raises(ValueError, match="unknown config fields"):
        envs.make("hopper", control_hz=50)
    env = envs.make("hopper", 2)
    env.reset()
    with pytest.raises(ValueError, match=re.escape("actions must have shape (2, 3)")):
        env.step(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]]))


def test_user_mjcf_path_is_used(tmp_path: Path):
    text = asset_path("hopper").read_text()
    heavy = tmp_path / "heavy_hopper.xml"
    heavy.write_text(text.replace('name="torso" pos', 'name="torso" pos').replace(
        'name="torso_geom"', 'name="torso_geom" density="5000"'))
    env = envs.make("hopper", 1, model=str(heavy))
    default = envs.make("hopper", 1)
    assert env.model.body("torso").mass[0] > default.model.body("torso").mass[0]
    with pytest.raises(ValueError, match="Go1 layout"):
        envs.make("go1-velocity", 1, model=str(heavy))


def test_ranges_default_to_model_nominal():
    env = envs.make("go1-velocity", 1)
    ranges = {r.name: r for r in make_ranges({"gravity": (-10.5, -9.0), "latency": (0, 2)}, env.model)}
    assert ranges["gravity"].nominal == pytest.approx(-9.81)
    assert ranges["latency"].nominal == 0.0
    space = ParameterSpace(list(ranges.values()), env.model)
    m = copy.copy(env.model)
    space.apply(m, np.array([-9.0, 1.0]))
    assert m.opt.gravity[2] == -9.0


def test_hopper_reward_matches_gymnasium_v5():
    """Forward reward, healthy bonus and control cost as Gymnasium's Hopper-v5 computes them."""
    import gymnasium
    env = envs.make("hopper", 1, seed=0)
    ref = gymnasium.make("Hopper-v5").unwrapped
    env.reset_numpy()
    qpos, qvel = env.state[0, env._qpos].copy(), env.state[0, env._qvel].copy()
    ref.reset(seed=0)
    ref.set_state(qpos, qvel)
    rng = np.random.default_rng(0)
    rewards, ref_rewards, velocities = [], [], []
    for _ in range(20):
        a = rng.uniform(-1, 1, (1, 3))
        _, r, terminated, _, info = env.step_numpy(a)
        _, r_ref, term_ref, _, info_ref = ref.step(a[0])
        rewards.append(r[0])
        ref_rewards.append(r_ref)
        velocities.append(info_ref["x_velocity"])
        if terminated[0] or term_ref:
            break
    assert np.abs(np.asarray(velocities)).max() > 0.05          # the hopper did move
    assert np.allclose(rewards, ref_rewards, atol=0.05)


@pytest.mark.parametrize("dr, message", [
    ({"latency": (0, 1e9)}, "latency: high 1e+09 control steps is longer than an episode"),
    ({"mass:torso": "wide"}, "mass:torso: expected [low, high]"),
    ({"mass:torso": ["a", 2]}, "mass:torso: expected numbers"),
    ([["mass:torso", 0.5, 1.5]], "a mapping {param: [low, high]} or a distribution object, got list"),
])
def test_bad_dr_ranges_name_the_parameter(dr, message):
    """Ranges from a user's ``--dr`` file: one clear error, no huge allocation."""
    with pytest.raises(RandomizationError, match=re.escape(message)):
        envs.make("hopper", 2, dr=dr)
