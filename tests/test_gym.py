"""The single-env Gymnasium adapter: both env checkers, registration, seeding, SB3 training."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.gym import SimrlEnv


@pytest.mark.parametrize("task", envs.task_names())
def test_env_checkers_pass(task):
    env = SimrlEnv(task, dr="uniform")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum).*")
        check_env(env, skip_render_check=True)
        sb3_check_env(env)


def test_import_envs_registers_every_task_id():
    """``import envs`` alone registers the ids (no ``import envs.gym``), in a fresh process."""
    import subprocess
    import sys
    code = ("import envs, gymnasium; "
            "print(sorted(t.gym_id for t in envs.TASKS.values() if t.gym_id in gymnasium.registry))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(["simrl/Go1Velocity-v0", "simrl/G1Stand-v0", "simrl/PandaPush-v0", "simrl/PandaReach-v0",
                                             "simrl/Hopper-v0", "simrl/HalfCheetah-v0",
                                             "simrl/Walker2d-v0"]))


def test_registered_and_seeded():
    env = gymnasium.make("simrl/Go1Velocity-v0", dr="uniform")
    obs1, info1 = env.reset(seed=42)
    obs2, info2 = env.reset(seed=42)
    obs3, _ = env.reset(seed=43)
    assert np.array_equal(obs1, obs2) and np.array_equal(info1["params"], info2["params"])
    assert not np.array_equal(obs1, obs3)
    assert obs1.dtype == np.float32 and env.observation_space.contains(obs1)


def test_episode_end_reports_return_success_and_params():
    env = SimrlEnv("hopper", dr="uniform", max_episode_steps=50)
    env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        done = terminated or truncated
    assert info["episode"]["r"] == pytest.approx(total)
    assert info["params"].shape == (len(env.param_names),)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())


def test_sb3_ppo_runs_a_few_thousand_steps():
    from stable_baselines3 import PPO
    env = SimrlEnv("hopper", dr="uniform", seed=0)
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]})
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert action.shape == (3,)
