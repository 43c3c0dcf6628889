"""rsl_rl on simrl's batched envs: the VecEnv adapter and a short OnPolicyRunner run."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rsl_rl")

import envs  # noqa: E402
from rsl_rl.env import VecEnv  # noqa: E402
from rsl_rl.runners import OnPolicyRunner  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from simrl.integrations.rsl_rl import RslRlVecEnv, train_cfg  # noqa: E402


def test_adapter_satisfies_rsl_rl_vec_env():
    env = RslRlVecEnv(envs.make("hopper", num_envs=4, seed=0, nthread=1))
    assert isinstance(env, VecEnv)
    assert (env.num_envs, env.num_actions, env.max_episode_length) == (4, 3, 1000)
    obs = env.get_observations()
    assert isinstance(obs, TensorDict) and obs["policy"].shape == (4, 11)
    assert env.episode_length_buf.shape == (4,)
    ended = 0
    for _ in range(60):  # full-throttle actions topple the hopper within a few dozen steps
        obs, reward, dones, extras = env.step(torch.ones(4, 3))
        assert obs["policy"].shape == (4, 11) and reward.shape == (4,) and dones.dtype == torch.bool
        assert extras["time_outs"].shape == (4,)
        assert torch.equal(env.episode_length_buf[dones], torch.zeros(int(dones.sum()), dtype=torch.long))
        ended += int(dones.sum())
        if dones.any():
            assert "/episode_return" in extras["log"]
    assert ended > 0 and len(env.episodes) == ended and env.total_steps == 240
    env.close()


def test_on_policy_runner_learns_on_hopper():
    torch.manual_seed(0)
    env = RslRlVecEnv(envs.make("hopper", num_envs=8, seed=0, nthread=1))
    runner = OnPolicyRunner(env, train_cfg(hidden=(16, 16), num_steps=16), log_dir=None, device="cpu")
    before = [p.detach().clone() for p in runner.alg.actor.parameters()]
    runner.learn(2)
    assert runner.current_learning_iteration == 1 and env.total_steps == 2 * 16 * 8
    after = list(runner.alg.actor.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    env.close()
