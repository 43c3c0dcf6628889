"""SAC as in the DORAEMON paper: DORAEMON updated from SAC's episodes, the actor on an
observation-action history, the critics also on the episode's dynamics parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

import envs
from deploy.policy_io import PolicyIO
from envs.wrappers import unwrap
from policies.wrappers import HistoryEnv
from simrl.cli import main
from simrl.cli.bench.dr_paper import PaperProtocol, target_curve

H = 5   # the paper's stack_history


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    """One tiny `simrl train --algo sb3-sac --dr doraemon` run with the paper's inputs: 2000
    steps on 4 worlds of 40-step hopper episodes, so DORAEMON updates twice (its hooks run about
    every 1000 steps); alpha 0 makes every update an entropy step up to the KL bound."""
    out = tmp_path_factory.mktemp("sac") / "run"
    assert main(["train", "--task", "hopper", "--algo", "sb3-sac", "--dr", "doraemon",
                 "--steps", "2000", "--num-envs", "4", "--task.max-episode-steps", "40",
                 "--sac.history", str(H), "--sac.critic-dynamics", "true",
                 "--sac.learning-starts", "1900", "--sac.batch-size", "32",
                 "--network.actor-hidden", "16", "16", "--network.critic-hidden", "16", "16",
                 "--doraemon.alpha", "0", "--doraemon.kl-bound", "0.05",
                 "--doraemon.episodes-per-update", "16", "--doraemon.min-samples", "8",
                 "--checkpoint-every", "0", "--progress", "false", "--threads", "1",
                 "--out", str(out)]) == 0
    return out


def test_doraemon_kl_bound_holds_on_updates_from_sac_episodes(sac_run):
    history = json.loads((sac_run / "dr_history.json").read_text())["history"]
    updates = history[1:]
    assert len(updates) >= 2
    for before, after in zip(history, updates):
        assert after["n_samples"] >= 8                    # SAC's finished episodes fed it
        assert 0 < after["kl"] <= 0.05 * (1 + 1e-9)       # moved, inside the trust region
        assert after["entropy"] > before["entropy"]       # alpha 0: an entropy step each time
    # the run's final distribution is DORAEMON's last, and resets draw from it
    spec = json.loads((sac_run / "final" / "spec.json").read_text())
    assert np.allclose(spec["dr"]["a"], updates[-1]["a"]) and np.allclose(spec["dr"]["b"], updates[-1]["b"])


def test_sac_doraemon_checkpoint_runs_in_simrl_eval(sac_run, tmp_path):
    spec = json.loads((sac_run / "final" / "spec.json").read_text())
    obs_size, act_size = 11, 3
    assert spec["history"]["length"] == H + 1 and spec["history"]["actions"] == H
    # the deployable actor takes the history only: no dynamics parameters
    assert len(spec["observation"]["names"]) == (H + 1) * obs_size + H * act_size
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(sac_run / "final"), "--episodes", "3",
                 "--dr", "checkpoint", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 3 and result["training_steps"] == 2000
    # the bench's target evaluation runs it in its history wrapper too
    protocol = PaperProtocol()
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps(protocol.target_ranges()))
    ((steps, success, _),) = target_curve(sac_run, ranges, protocol, episodes=2, seed=0)
    assert steps == 2000 and 0.0 <= success <= 1.0


def _standardized(env, params):
    space = unwrap(env).space
    return 2.0 * (params - space.low) / (space.high - space.low) - 1.0


def test_critic_sees_the_sampled_dynamics_and_the_actor_does_not():
    from stable_baselines3 import SAC

    from simrl.integrations.sb3 import AsymmetricSACPolicy, SB3VecEnv

    base = envs.make("hopper", 3, dr="uniform", seed=1, max_episode_steps=6)
    history = HistoryEnv(base, H + 1, actions=H)
    venv = SB3VecEnv(history, critic_dynamics=True, state_part=history.observation_part)
    obs_size, dim = base.observation_size, base.space.dim
    obs = venv.reset()
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(14):
        params = base.params.copy()                    # this step's episodes' dynamics
        assert np.allclose(obs["critic"][:, obs_size:], _standardized(base, params), atol=1e-6)
        assert np.allclose(obs["critic"][:, :obs_size], obs["policy"][:, H * obs_size:(H + 1) * obs_size])
        obs, _, done, infos = venv.step(rng.uniform(-1, 1, (3, base.action_size)).astype(np.float32))
        for i in np.flatnonzero(done):                 # the finished episode's own dynamics
            final = infos[i]["terminal_observation"]["critic"]
            assert np.allclose(final[obs_size:], _standardized(base, params[i]), atol=1e-6)
            finished += 1
    assert finished >= 3
    assert obs["critic"].shape == (3, obs_size + dim)

    model = SAC(AsymmetricSACPolicy, venv, learning_starts=10, batch_size=8, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16, 16]})
    model.learn(30)
    actor_in = (H + 1) * obs_size + H * base.action_size
    assert model.policy.actor.features_dim == actor_in == history.observation_size
    assert model.policy.actor.latent_pi[0].in_features == actor_in
    assert model.policy.critic.q_networks[0][0].in_features == obs_size + dim + base.action_size
    # the actor ignores the dynamics: another critic entry, the same action
    probe = {k: v.copy() for k, v in obs.items()}
    other = {"policy": probe["policy"], "critic": probe["critic"] + 5.0}
    assert np.array_equal(model.predict(probe, deterministic=True)[0],
                          model.predict(other, deterministic=True)[0])


def test_action_history_is_the_same_in_training_and_on_the_robot():
    env = HistoryEnv(envs.make("hopper", 1, dr="none", seed=0, max_episode_steps=1000), 3, actions=2)
    spec = {"task": "hopper", "history": env.task.history_spec}
    io = PolicyIO(spec, base_task := unwrap(env).task)
    assert io.input_size == env.observation_size == 3 * base_task.observation_size + 2 * base_task.action_size
    obs = env.reset_numpy()
    rng = np.random.default_rng(0)
    for _ in range(6):
        task_obs = obs[0, 2 * base_task.observation_size:3 * base_task.observation_size]
        io.observe(task_obs)
        assert np.allclose(io.network_input(None), obs[0])
        action = rng.uniform(-1.5, 1.5, base_task.action_size)   # clipped into the history
        io.action(action)
        obs, *_ = env.step_numpy(action[None])
    assert np.allclose(obs[0, -base_task.action_size:], np.clip(action, -1, 1))
