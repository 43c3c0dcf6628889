"""DORAEMON in the training loop: only on-distribution episodes count, updates widen the
distribution and reach the env."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import envs
from envs.batched import EpisodeBatch
from simrl.dr import BetaDistribution
from simrl.dr.curriculum import DoraemonCurriculum, DoraemonTrainConfig


def batch(env_ids, params, success):
    n = len(env_ids)
    return EpisodeBatch(np.asarray(env_ids), np.zeros(n), np.ones(n, dtype=int),
                        np.asarray(success, dtype=bool), np.zeros(n, dtype=bool), params)


def test_updates_widen_the_distribution_and_skip_stale_episodes(tmp_path):
    env = envs.make("hopper", 8, dr="uniform", seed=0)
    cur = DoraemonCurriculum(env, DoraemonTrainConfig(episodes_per_update=64),
                             plot_path=tmp_path / "dr.png")
    logged: dict[str, float] = {}
    trainer = SimpleNamespace(step=10_000, on_episodes=[], on_iteration=[], stateful={},
                              log_scalars=logged.update)
    cur.attach(trainer)
    assert isinstance(env.distribution, BetaDistribution)
    h0 = env.distribution.entropy()
    rng = np.random.default_rng(0)
    # every world finishes 8 successful episodes drawn from the current distribution
    for _ in range(8):
        cur.on_episodes(trainer, batch(range(8), env.distribution.sample(8, rng), np.ones(8)))
    assert cur.buffered == 64
    cur.on_iteration(trainer, {})
    assert cur.version == 1 and env.distribution.entropy() > h0
    assert logged["dr/entropy"] == env.distribution.entropy() and f"dr_std/{env.space.names[0]}" in logged
    assert (tmp_path / "dr.png").stat().st_size > 1000
    # episodes that started under version 0 and finish now are not used for version 1
    cur.on_episodes(trainer, batch(range(4), env.distribution.sample(4, rng), np.ones(4)))
    assert cur.buffered == 0
    state = cur.state_dict()
    other = DoraemonCurriculum(envs.make("hopper", 8, dr="uniform"), DoraemonTrainConfig())
    other.load_state_dict(state)
    assert np.allclose(other.env.distribution.a, env.distribution.a)


def test_episodes_running_before_install_are_dropped():
    env = envs.make("hopper", 4, dr="uniform", seed=0)
    env.reset_numpy()
    cur = DoraemonCurriculum(env, DoraemonTrainConfig())
    trainer = SimpleNamespace(step=0)
    cur.on_episodes(trainer, batch(range(4), np.ones((4, 5)), np.ones(4)))
    assert cur.buffered == 0
    cur.on_episodes(trainer, batch(range(4), env.distribution.sample(4, np.random.default_rng(0)), np.ones(4)))
    assert cur.buffered == 4


def test_failures_do_not_widen():
    env = envs.make("hopper", 4, dr="uniform", seed=0)
    cur = DoraemonCurriculum(env, DoraemonTrainConfig(episodes_per_update=32))
    h0 = env.distribution.entropy()
    rng = np.random.default_rng(1)
    cur.update(env.distribution.sample(64, rng), np.zeros(64, dtype=bool))
    assert env.distribution.entropy() <= h0 + 1e-9
