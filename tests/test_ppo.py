"""simrl PPO: GAE, truncation bootstrap, clipping, adaptive learning rate, reproducibility and a
short run that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from envs.batched import EpisodeBatch
from policies.networks import ActorCritic, NetworkConfig
from simrl.ppo import (PPO, PPOConfig, adapt_learning_rate, compute_gae, surrogate_loss,
                       value_loss)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small MLPs run fastest on one thread; two threads next to the simulator's can be 30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    # World 0 terminates after step 1. World 1 was truncated after step 0: its reward already
    # holds the bootstrap 1 + gamma * V(final_obs) = 1 + 0.9 * 4.
    rewards = torch.tensor([[1.0, 1.0 + 0.9 * 4.0], [2.0, 0.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 1.0], [1.5, 1.0]])
    dones = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    last = torch.tensor([2.0, 0.0])
    adv, ret = compute_gae(rewards, values, dones, last, gamma, lam)
    # World 0: A2 = 3 + .9*2 - 1.5; A1 = 2 - 1 (terminal); A0 = 1 + .9*1 - .5 + .9*.8*A1.
    # World 1: A2 = 1 - 1; A1 = .9*1 - 1 + .72*A2; A0 = 4.6 - 1 (episode ended).
    expected = torch.tensor([[1.4 + 0.72 * 1.0, 3.6], [1.0, -0.1], [3.3, 0.0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


class _ScriptedEnv:
    """Two worlds, reward 1 per step; world 0 is truncated and world 1 terminates at step 1."""

    num_envs, observation_size, action_size = 2, 3, 1

    def __init__(self):
        self.t = 0

    def step(self, actions):
        self.t += 1
        obs = torch.full((2, 3), float(self.t))
        end = self.t == 2
        terminated = torch.tensor([False, end])
        truncated = torch.tensor([end, False])
        info = {}
        if end:
            info["final_obs"] = torch.ones(2, 3)
            info["episodes"] = EpisodeBatch(np.array([0, 1]), np.ones(2), np.full(2, 2), np.zeros(2, bool),
                                            np.array([False, True]), np.zeros((2, 0)))
        return obs, torch.ones(2), terminated, truncated, info


def test_collect_bootstraps_truncated_but_not_terminated_episodes():
    torch.manual_seed(0)
    model = ActorCritic(3, 1, NetworkConfig(normalize_obs=False))
    with torch.no_grad():  # a critic that always says 5
        model.critic[-1].weight.zero_()
        model.critic[-1].bias.fill_(5.0)
    cfg = PPOConfig(num_steps=3, gamma=0.9, lam=1.0, normalize_rewards=False)
    ppo = PPO(model, cfg, 2, torch.device("cpu"))
    seen = []
    ppo.collect(_ScriptedEnv(), torch.zeros(2, 3), on_step=seen.append)
    s = ppo.storage
    torch.testing.assert_close(s.rewards[:, 0], torch.tensor([1.0, 1.0 + 0.9 * 5.0, 1.0]))
    torch.testing.assert_close(s.rewards[:, 1], torch.ones(3))
    torch.testing.assert_close(s.dones, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    # Step 1 of world 1 is terminal: its return is its reward alone.
    assert s.returns[1, 1].item() == pytest.approx(1.0)
    assert s.returns[1, 0].item() == pytest.approx(1.0 + 0.9 * 5.0)
    assert len(seen) == 3 and "episodes" in seen[1]


@pytest.mark.parametrize("squash", [False, True])
def test_action_saturation_is_the_share_of_means_at_the_clip(squash):
    torch.manual_seed(0)
    model = ActorCritic(3, 4, NetworkConfig(normalize_obs=False, squash=squash))
    with torch.no_grad():  # actor outputs (4, -5, 0.5, 0) whatever the observation
        model.policy.actor[-1].weight.zero_()
        model.policy.actor[-1].bias.copy_(torch.tensor([4.0, -5.0, 0.5, 0.0]))
    ppo = PPO(model, PPOConfig(num_steps=3, num_minibatches=1, num_epochs=1), 2, torch.device("cpu"))
    ppo.collect(_ScriptedEnv(), torch.zeros(2, 3))
    assert ppo.update()["action_saturation"] == pytest.approx(0.5)


@pytest.mark.parametrize("advantage, ratio, zero_grad", [
    (1.0, 1.5, True),     # better action already made more likely beyond 1 + eps: clipped
    (1.0, 0.5, False),    # ... less likely: the unclipped term still pushes it up
    (-1.0, 0.5, True),    # worse action already made less likely beyond 1 - eps: clipped
    (-1.0, 1.5, False),   # ... more likely: still pushed down
    (1.0, 1.1, False),    # inside the clip region
])
def test_surrogate_gradient_vanishes_only_outside_the_clip_region(advantage, ratio, zero_grad):
    log_prob = torch.tensor([np.log(ratio)], requires_grad=True)
    loss = surrogate_loss(log_prob, torch.zeros(1), torch.tensor([advantage]), clip_param=0.2)
    loss.backward()
    grad = log_prob.grad.item()
    if zero_grad:
        assert grad == 0.0
    else:  # descending the loss moves the ratio in the advantage's direction
        assert -grad * advantage > 0


def test_clipped_value_loss_is_pessimistic():
    old, ret = torch.tensor([0.0]), torch.tensor([1.0])
    # A value that jumped past the return: clipped to 0.2, whose error (0.64) is larger.
    assert value_loss(torch.tensor([1.5]), old, ret, 0.2).item() == pytest.approx(0.64)
    assert value_loss(torch.tensor([1.5]), old, ret, None).item() == pytest.approx(0.25)


def test_adaptive_learning_rate_moves_against_the_kl():
    cfg = PPOConfig(desired_kl=0.01, min_lr=1e-5, max_lr=1e-2)
    assert adapt_learning_rate(1e-3, 0.05, cfg) == pytest.approx(1e-3 / 1.5)
    assert adapt_learning_rate(1e-3, 0.001, cfg) == pytest.approx(1e-3 * 1.5)
    assert adapt_learning_rate(1e-3, 0.01, cfg) == 1e-3
    assert adapt_learning_rate(1.1e-5, 1.0, cfg) == 1e-5
    assert adapt_learning_rate(9e-3, 0.0001, cfg) == 1e-2


def _run_ppo(seed: int, iterations: int, **ppo_options) -> PPO:
    torch.manual_seed(seed)
    env = envs.make("hopper", 8, seed=seed)
    ppo = PPO(ActorCritic(env.observation_size, env.action_size, NetworkConfig(actor_hidden=(32,),
                                                                              critic_hidden=(32,))),
              PPOConfig(num_steps=16, **ppo_options), 8, torch.device("cpu"))
    obs = env.reset()
    for _ in range(iterations):
        obs, _ = ppo.learn(env, obs)
    return ppo


@pytest.mark.parametrize("desired_kl, direction", [(1e-7, -1), (10.0, 1)])
def test_update_adapts_learning_rate(desired_kl, direction):
    ppo = _run_ppo(0, 1, desired_kl=desired_kl, learning_rate=1e-3)
    assert np.sign(ppo.learning_rate - 1e-3) == direction
    assert ppo.optimizer.param_groups[0]["lr"] == ppo.learning_rate


def test_same_seed_gives_same_parameters():
    a, b, c = _run_ppo(3, 2), _run_ppo(3, 2), _run_ppo(4, 2)
    for (name, pa), pb, pc in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                                  c.model.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.model.state_dict().values(),
                                                         c.model.state_dict().values()))


@pytest.mark.slow
def test_short_hopper_run_beats_the_untrained_policy():
    """40k steps (16 worlds, about 10 s on two cores): the episodes of the last fifth of the run
    return far more than those of the untrained policy (its first iteration)."""
    torch.manual_seed(0)
    env = envs.make("hopper", 16, seed=0)
    ppo = PPO(ActorCritic(env.observation_size, env.action_size, NetworkConfig()),
              PPOConfig(num_steps=32), 16, torch.device("cpu"))
    per_iteration: list[list[float]] = []

    def record(info):
        if "episodes" in info:
            per_iteration[-1].extend(info["episodes"].returns.tolist())

    obs = env.reset()
    iterations = 40_000 // (16 * 32)
    for _ in range(iterations):
        per_iteration.append([])
        obs, _ = ppo.learn(env, obs, record)
    untrained = np.mean(per_iteration[0])
    trained = np.mean([r for it in per_iteration[-iterations // 5:] for r in it])
    assert trained > 3 * untrained and trained > untrained + 100, (untrained, trained)
