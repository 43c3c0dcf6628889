"""Dropout world models: explicit masks reproduce, the dream env honours the batched env's API,
fitting learns, disagreement flags off-distribution inputs, logs become transitions, CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import envs
from simrl.cli import main
from simrl.dream import (MODES, DreamConfig, DreamEnv, DropoutMasks, FitConfig, MaskedDynamics,
                         Transitions, WorldModel, WorldModelConfig, collect, fit, from_logs)
from simrl.dream.env import task_termination

SMALL = WorldModelConfig(hidden=(32, 32), dropout=0.2)


@pytest.fixture(scope="module")
def data() -> Transitions:
    return collect("hopper", 2400, "random", num_envs=8, seed=0)


@pytest.fixture(scope="module")
def model(data) -> WorldModel:
    torch.set_num_threads(1)
    return fit(data, SMALL, FitConfig(epochs=8, batch_size=64, learning_rate=3e-3, patience=8))


def rollout(env, actions: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    obs, rewards = [env.reset(seed)], []
    for a in actions:
        o, r, *_ = env.step(a)
        obs.append(o)
        rewards.append(r)
    return torch.stack(obs), torch.stack(rewards)


def test_masks_are_reproducible_and_storable():
    a = DropoutMasks.from_seed(3, 64, (32, 16), 0.25)
    b = DropoutMasks.from_seed(3, 64, (32, 16), 0.25)
    c = DropoutMasks.from_seed(4, 64, (32, 16), 0.25)
    assert a.equal(b) and not a.equal(c)
    assert [m.shape for m in a.layers] == [(64, 32), (64, 16)]
    assert 0.65 < float(a.layers[0].mean()) < 0.85                     # keep probability 0.75
    assert DropoutMasks.from_state_dict(a.state_dict()).equal(a)
    assert torch.allclose(a.scaled()[0], a.layers[0] / 0.75)
    replaced = a.replace(torch.tensor([0, 5]), c.select([1, 2]))
    assert torch.equal(replaced.layers[1][5], c.layers[1][2]) and torch.equal(replaced.layers[0][1], a.layers[0][1])
    with pytest.raises(ValueError, match="dropout probability"):
        DropoutMasks.from_seed(0, 1, (4,), 1.0)


def test_same_masks_and_seed_give_identical_transitions(model):
    actions = torch.rand(20, 6, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = [rollout(DreamEnv(model, 6, cfg=DreamConfig(mode="episode"), seed=s), actions)
            for s in (7, 7, 8)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])
    env = DreamEnv(model, 6, seed=7)
    first = rollout(env, actions)
    assert not torch.equal(rollout(env, actions)[0], first[0])
    assert torch.equal(rollout(env, actions, seed=7)[0], first[0])   # reseeding replays the dreams


def test_different_masks_give_different_transitions(model, data):
    obs = torch.as_tensor(data.obs[:1]).repeat(16, 1)
    action = torch.as_tensor(data.action[:1]).repeat(16, 1)
    masks = DropoutMasks.from_seed(0, 16, model.hidden_sizes, model.cfg.dropout)
    pred = model.predict(obs, action, masks).next_obs
    assert len(torch.unique(pred, dim=0)) == 16            # 16 masks, 16 simulators
    again = MaskedDynamics(model, 16, "fixed", masks=masks)(obs, action).next_obs
    assert torch.equal(pred, again)
    step = MaskedDynamics(model, 16, "step", seed=0)
    assert not torch.equal(step(obs, action).next_obs, step(obs, action).next_obs)


def test_no_dropout_and_mask_mean_are_deterministic(model, data):
    obs, action = torch.as_tensor(data.obs[:32]), torch.as_tensor(data.action[:32])
    for mode in ("none", "mean"):
        a = MaskedDynamics(model, 32, mode, seed=0)(obs, action)
        b = MaskedDynamics(model, 32, mode, seed=0)(obs, action)
        assert torch.equal(a.next_obs, b.next_obs) and torch.equal(a.reward, b.reward)
    none = [MaskedDynamics(model, 32, "none", seed=s)(obs, action).next_obs for s in (0, 1)]
    assert torch.equal(none[0], none[1])
    ones = DropoutMasks.ones(32, model.hidden_sizes, model.cfg.dropout)
    scaled = model(obs, action, tuple(torch.full_like(m, 1.0) for m in ones.layers))
    assert torch.allclose(scaled, model(obs, action))        # no mask = every unit kept, unscaled


@pytest.mark.parametrize("mode", MODES)
def test_dream_env_api_matches_the_batched_env(model, mode):
    real = envs.make("hopper", 4)
    env = DreamEnv(model, 4, cfg=DreamConfig(mode=mode, max_episode_steps=5), seed=0)
    assert (env.observation_size, env.action_size, env.num_envs) == (real.observation_size,
                                                                      real.action_size, 4)
    assert env.param_names == () and env.task.name == "hopper" and env.device == torch.device("cpu")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(4, 3))
    obs = env.reset()
    assert obs.shape == (4, 11) and obs.dtype == torch.float32
    ret, length = torch.zeros(4), torch.zeros(4, dtype=torch.long)
    finished = 0
    for _ in range(12):
        prev = obs
        obs, reward, terminated, truncated, info = env.step(torch.rand(4, 3) * 2 - 1)
        assert reward.shape == (4,) and reward.dtype == torch.float32
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert not (terminated & truncated).any()
        ret, length = ret + reward, length + 1
        done = terminated | truncated
        if done.any():
            ep = info["episodes"]
            assert np.array_equal(ep.env_ids, torch.nonzero(done).squeeze(1).numpy())
            assert np.allclose(ep.returns, ret[done].numpy(), atol=1e-5)
            assert np.array_equal(ep.lengths, length[done].numpy())
            assert np.array_equal(ep.terminated, terminated[done].numpy())
            assert ep.params.shape == (int(done.sum()), 0) and ep.success.dtype == bool
            assert info["final_obs"].shape == (4, 11)
            assert not torch.equal(info["final_obs"][done], obs[done])
            starts = model.starts
            assert all((starts == o).all(1).any() for o in obs[done])   # restarted from a data start
            assert (length[done] <= 5).all()
            ret, length = ret * ~done, length * ~done
            finished += int(done.sum())
        else:
            assert "final_obs" not in info and "episodes" not in info
        assert not torch.equal(obs, prev)
    assert finished >= 4
    o, r, te, tr, info = env.step_numpy(np.zeros((4, 3)))
    assert o.dtype == np.float64 and r.shape == (4,) and te.dtype == bool
    assert env.robot_state.joint_pos.shape == (4, 6)
    with pytest.raises(ValueError, match=re.escape("actions must have shape (4, 3)")):
        env.step(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(torch.tensor([[0.0, float("nan"), 0.0]] * 4))


def test_task_termination_matches_the_real_env(data):
    rule = task_termination(envs.make_task("hopper"))
    predicted = rule(torch.as_tensor(data.next_obs)).numpy()
    assert data.terminated.any() and np.array_equal(predicted, data.terminated)
    assert not task_termination(envs.make_task("halfcheetah"))(torch.ones(3, 17) * 50).any()
    go1 = envs.make_task("go1-velocity")
    assert task_termination(go1) is None
    with pytest.raises(ValueError, match="not a function of the observation"):
        DreamEnv(WorldModel(go1.name, go1.observation_names, go1.action_names, SMALL), 2,
                 cfg=DreamConfig(termination="task"))


def test_fit_reduces_validation_loss_and_saves(model, data, tmp_path):
    history = model.fit_stats["history"]
    assert sum(history["val"][-1]) < 0.5 * sum(history["val_initial"])
    path = model.save(tmp_path / "m.pt", model.fit_stats)
    loaded = WorldModel.load(path)
    obs, action = torch.as_tensor(data.obs[:8]), torch.as_tensor(data.action[:8])
    masks = DropoutMasks.from_seed(1, 8, model.hidden_sizes, model.cfg.dropout)
    assert torch.equal(loaded.predict(obs, action, masks).next_obs, model.predict(obs, action, masks).next_obs)
    assert torch.equal(loaded.starts, model.starts) and loaded.fit_stats["epochs"] == model.fit_stats["epochs"]


def test_disagreement_is_higher_off_distribution(model, data):
    rng = np.random.default_rng(0)
    rows = rng.choice(len(data), 256, replace=False)
    inside = model.disagreement(data.obs[rows], data.action[rows])
    far = data.obs[rows] + 3.0 * data.obs.std(0) * rng.choice([-1, 1], data.obs[rows].shape)
    outside = model.disagreement(far, data.action[rows])
    assert inside.shape == (256,) and inside.dtype == np.float64
    assert 0.3 < inside.mean() < 3.0                       # normalized: about 1 in distribution
    assert np.median(outside) > 3 * np.median(inside)
    with pytest.raises(ValueError, match="expected obs"):
        model.disagreement(data.obs[:4, :5], data.action[:4])
    from simrl.validate.detectors import WorldModelDisagreement
    detector = WorldModelDisagreement(model, model.obs_dim)         # the validator's OOD score
    assert detector.score(np.concatenate([far, data.action[rows]], 1)).shape == (256,)


def test_real_logs_become_transitions_with_recomputed_rewards(tmp_path):
    from simrl.core.logs import LogMeta, LogWriter

    env = envs.make("hopper", 1, seed=0)
    task = env.task
    meta = LogMeta("hopper", "hopper", task.cfg.control_dt, task.observation_names,
                   task.action_names, "random", "sim")
    rng = np.random.default_rng(0)
    obs = env.reset_numpy()
    rows = []
    with LogWriter(tmp_path / "run.mcap", meta) as log:
        for t in range(15):
            rs = env.robot_state
            action = rng.uniform(-1, 1, (1, 3))
            log.write(t * task.cfg.control_dt, t, {k: v[0] for k, v in rs.to_dict().items()},
                      obs[0], action[0])
            rows.append((rs.joint_pos[0].copy(), action[0]))
            obs, _, terminated, _, _ = env.step_numpy(action)
            assert not terminated.any()
    data = from_logs(tmp_path / "run.mcap")
    assert len(data) == 14 and data.starts.shape == (1, 11) and data.source == "sim"
    assert np.allclose(data.next_obs[:-1], data.obs[1:])
    x = np.array([r[0][0] for r in rows])
    ctrl_cost = 1e-3 * np.array([np.sum(r[1] ** 2) for r in rows])
    expected = np.diff(x) / task.cfg.control_dt + 1.0 - ctrl_cost[:-1]   # hopper v5 reward
    assert np.allclose(data.reward, expected, atol=1e-4)


def test_cli_collect_fit_train_eval(tmp_path, capsys):
    d, m, run = tmp_path / "d.npz", tmp_path / "m.pt", tmp_path / "run"
    assert main(["dream", "collect", "--task", "hopper", "--steps", "400", "--num-envs", "4",
                 "--out", str(d)]) == 0
    assert main(["dream", "fit", "--data", str(d), "--out", str(m), "--fit.epochs", "1",
                 "--model.hidden", "16", "16"]) == 0
    assert main(["dream", "train", "--model", str(m), "--out", str(run), "--steps", "256",
                 "--num-envs", "8", "--ppo.num-steps", "32", "--progress", "false", "--device", "cpu",
                 "--network.actor-hidden", "16", "--mode", "mean", "--num-masks", "4"]) == 0
    assert main(["dream", "eval", "--checkpoint", str(run / "final"), "--episodes", "2"]) == 0
    assert main(["dream", "collect", "--task", "hopper", "--steps", "64", "--num-envs", "4",
                 "--policy", str(run / "final"), "--action-noise", "0.1", "--out", str(d)]) == 0
    assert Transitions.load(d).behaviour == f"{run / 'final'}+noise0.1"
    out = capsys.readouterr().out
    assert "validation loss" in out and "dream steps (mean masks)" in out
    assert "trained in a dream" in out and '"mode": "mean"' in out
    assert main(["dream", "train", "--model", str(m), "--out", str(run)]) == 2
    assert main(["dream", "fit", "--data", str(tmp_path / "none.txt"), "--out", str(m)]) == 2


def test_bench_dream_reports_every_mode(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "dream", "--task", "hopper", "--data-steps", "320", "--heldout-steps", "160",
                 "--fit-epochs", "1", "--hidden", "16", "--steps", "256", "--num-envs", "8",
                 "--seeds", "1", "--episodes", "1", "--horizons", "1", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "open-loop prediction error" in text and "dream-to-real on hopper" in text
    result = json.loads((out / "results.json").read_text())
    assert set(result["runs"]) == {"episode", "none", "mean"}
    assert result["machine"]["versions"]["torch"] and result["machine"]["threads"] == 1
    assert set(result["prediction_errors"]) == {"none", "mean", "episode", "step"}
    assert (out / "dream.png").stat().st_size > 0
