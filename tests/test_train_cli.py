"""``simrl train`` / ``simrl eval`` end to end on tiny runs, resume, and SB3 interop."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

import policies
from simrl.cli import main

TINY = ["--task", "hopper", "--num-envs", "8", "--ppo.num-steps", "16", "--seed", "1",
        "--network.actor-hidden", "16", "--network.critic-hidden", "16", "--progress", "false",
        "--task.max-episode-steps", "100"]


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path / "policy.pt", weights_only=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two PPO iterations (256 steps) with a checkpoint after the first."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", *TINY, "--steps", "256", "--checkpoint-every", "128", "--out", str(out)]) == 0
    return out


def test_train_writes_checkpoints_config_and_tensorboard(run):
    assert (run / "checkpoints" / "step_000000128" / "policy.pt").exists()
    for name in ("policy.pt", "spec.json", "training_state.pt"):
        assert (run / "final" / name).exists()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    config = json.loads((run / "config.json").read_text())
    assert config["ppo"]["num_steps"] == 16 and config["network"]["actor_hidden"] == [16]
    assert config["task"]["max_episode_steps"] == 100 and config["train"]["steps"] == 256
    assert set(config) == {"train", "network", "ppo", "sac", "doraemon", "hinf", "task"}
    spec = policies.load_spec(run / "final")
    assert spec["training"]["steps"] == 256 and spec["task_config"]["max_episode_steps"] == 100
    policy = policies.load(run / "final", task="hopper")
    assert policy(np.zeros(11, np.float32)).shape == (3,)


def test_tensorboard_has_training_scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"episode/mean_return", "episode/success_rate", "train/value_loss",
            "train/learning_rate", "perf/steps_per_s"} <= tags


def test_resume_continues_the_run_reproducibly(run, tmp_path):
    """Resuming restores optimizer, normalizers, RNGs and the step counter: two resumes from the
    same checkpoint give identical parameters. (Episodes in flight at the checkpoint restart, so
    a resumed run is not bit-identical to an uninterrupted one.)"""
    finals = []
    for name in ("a", "b"):
        copy = tmp_path / name
        shutil.copytree(run, copy)
        assert main(["train", "--resume", str(copy / "checkpoints" / "step_000000128"),
                     "--steps", "384", "--progress", "false"]) == 0
        finals.append(copy / "final")
    for key, value in _weights(finals[0]).items():
        assert torch.equal(value, _weights(finals[1])[key]), key
    assert policies.load_spec(finals[0])["training"]["steps"] == 384
    state = torch.load(finals[0] / "training_state.pt", weights_only=True)
    # 3 iterations x 5 epochs x 4 minibatches of Adam steps: the optimizer state carried over.
    adam = state["algorithm"]["ppo"]["optimizer"]["state"][0]
    assert state["step"] == 384 and state["iteration"] == 3 and int(adam["step"]) == 60
    # The normalizer kept its statistics: three iterations of observations.
    assert _weights(finals[0])["normalizer.count"].item() == 3 * 16 * 8


def test_resume_of_a_run_directory_uses_its_latest_checkpoint(run, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(run, copy)
    assert main(["train", "--resume", str(copy), "--steps", "384", "--progress", "false"]) == 0
    assert policies.load_spec(copy / "final")["training"]["steps"] == 384


def test_resume_refuses_changed_settings(run, capsys):
    assert main(["train", "--resume", str(run), "--ppo.learning-rate", "0.1"]) == 2
    assert "only train.steps" in capsys.readouterr().err


def test_existing_run_directory_is_not_overwritten(run, capsys):
    assert main(["train", *TINY, "--steps", "128", "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_unknown_algorithm_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--algo", "dqn", "--out", str(tmp_path / "x")]) == 2
    assert "unknown algorithm 'dqn'; known: ppo, sb3-ppo, sb3-sac" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--steps", "-5"], "train.steps: must be >= 1, got -5"),
    (["--ppo.gamma", "nan"], "ppo.gamma: must be a number, got nan"),
    (["--task", "go1-velocity", "--task.command-vx", "1", "-1"], "task.command_vx: low 1.0 exceeds high -1.0"),
    (["--task.control-dt", "nan"], "task.control_dt: must be a number, got nan"),
    (["--dr", "doraemon", "--dr-alpha", "2"], "doraemon.alpha: must be in [0, 1], got 2.0"),
    (["--algo", "sb3-sac", "--sac.gamma", "0"], "sac.gamma: must be in (0, 1], got 0.0"),
    (["--steps", "many"], "--steps"),
    (["--no-such-option", "1"], "--no-such-option"),
])
def test_bad_options_fail_in_one_line_before_the_run_directory(tmp_path, capsys, options, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simrl train: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_help_shows_the_defaults_of_task_and_algorithm(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--task", "go1-velocity", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "parallel worlds (default: 256)" in text            # go1's train_defaults
    assert "--task.command-vx FLOAT FLOAT" in text              # go1's task config
    assert "discount factor (default: 0.99)" in text            # field comments are the help
    with pytest.raises(SystemExit):
        main(["train", "--task", "panda-push", "--residual", "pusher", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "initial log of the action noise std (default: -1.0)" in text   # residual default


def test_run_defaults_follow_the_options_given():
    from simrl.cli.train import resolve

    cfg = resolve(["--task", "go1-velocity", "--robust", "hinf", "--ppo.num-steps", "16"])
    assert cfg.hinf.ppo.num_steps == 16      # the disturber's rollout follows the actor's
    cfg = resolve(["--task", "panda-push", "--residual", "pusher", "--network.init-log-std", "0.5"])
    assert cfg.network.init_log_std == 0.5   # an explicit value wins over the residual default
    with pytest.raises(ValueError, match="hinf.ppo.num_steps"):
        from simrl.algos import make_trainer
        cfg = resolve(["--task", "go1-velocity", "--robust", "hinf", "--hinf.ppo.num-steps", "8"])
        make_trainer(cfg, "unused")


def test_eval_prints_intervals_and_writes_json(run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run / "final"), "--episodes", "6",
                 "--task.max-episode-steps", "30", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "return" in text and "success rate" in text and "95% CI" in text
    result = json.loads(out.read_text())
    assert result["episodes"] == 6 and result["task"] == "hopper"
    lo, hi = result["return"]["ci95"]
    assert lo <= result["return"]["mean"] <= hi
    assert 0.0 <= result["success_rate"]["ci95"][0] <= result["success_rate"]["ci95"][1] <= 1.0
    assert result["length"]["mean"] <= 30
    assert "x_velocity" in result["metrics"]


def test_eval_refuses_a_checkpoint_of_another_task(run, capsys):
    assert main(["eval", "--checkpoint", str(run / "final"), "--task", "walker2d",
                 "--episodes", "1"]) == 2
    assert "trained on task 'hopper', not 'walker2d'" in capsys.readouterr().err


def test_interval_helpers():
    from simrl.evaluate import t_interval, wilson_interval
    s = t_interval([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["ci95"][0] == pytest.approx(2.0 - 4.302653 / np.sqrt(3), rel=1e-5)
    w = wilson_interval(0, 10)
    assert w["ci95"][0] == 0.0 and w["ci95"][1] == pytest.approx(0.2775, abs=1e-4)


def test_sb3_ppo_run_saves_a_matching_checkpoint(tmp_path):
    from stable_baselines3 import PPO

    out = tmp_path / "sb3"
    assert main(["train", "--algo", "sb3-ppo", *TINY, "--num-envs", "2", "--ppo.num-steps", "64",
                 "--steps", "128", "--out", str(out)]) == 0
    final = out / "final"
    ours = policies.load(final, task="hopper")
    assert ours.spec["training"]["algo"] == "sb3-ppo"
    assert ours.spec["observation"]["normalizer"] is not None
    obs = np.random.default_rng(0).normal(0.0, 2.0, (64, 11)).astype(np.float32)
    model = PPO.load(final / "sb3_model.zip", device="cpu")
    with open(final / "vecnormalize.pkl", "rb") as f:
        stats = pickle.load(f)  # VecNormalize without its venv
    expected, _ = model.predict(stats.normalize_obs(obs), deterministic=True)
    np.testing.assert_allclose(ours(obs), expected, atol=1e-6)
    # The SB3 zip itself loads as a policy too, with the same actions.
    with pytest.raises(policies.CheckpointError, match="pickle"):  # runs code: refused by default
        policies.load(final / "sb3_model.zip", task="hopper", vec_normalize=final / "vecnormalize.pkl")
    with pytest.warns(UserWarning, match="unpickling"):
        from_zip = policies.load(final / "sb3_model.zip", task="hopper",
                                 vec_normalize=final / "vecnormalize.pkl", trust_pickle=True)
    np.testing.assert_array_equal(from_zip(obs), ours(obs))


def test_sb3_sac_policy_converts_and_its_zip_loads(tmp_path):
    import gymnasium
    from stable_baselines3 import SAC

    import envs.gym  # noqa: F401  (registers simrl/Hopper-v0)

    model = SAC("MlpPolicy", gymnasium.make("simrl/Hopper-v0"), buffer_size=100,
                policy_kwargs={"net_arch": [32, 32]}, seed=0, device="cpu")
    model.save(tmp_path / "sac.zip")
    policy = policies.load(tmp_path / "sac.zip", task="hopper")
    assert policy.spec["network"]["squash"] and policy.spec["network"]["actor_hidden"] == [32, 32]
    obs = np.random.default_rng(1).normal(0.0, 1.0, (32, 11)).astype(np.float32)
    np.testing.assert_allclose(policy(obs), model.predict(obs, deterministic=True)[0], atol=1e-6)
    with pytest.raises(policies.CheckpointError, match="task walker2d has 17 and 6"):
        policies.load(tmp_path / "sac.zip", task="walker2d")
    with pytest.raises(policies.CheckpointError, match="does not name its task"):
        policies.load(tmp_path / "sac.zip")


def test_init_starts_a_new_run_from_a_checkpoints_weights(run, tmp_path, capsys):
    """--init: the new run's deterministic policy is the checkpoint's before any update, its
    action std is the config's, its step counter and optimizer are new; a checkpoint whose
    network does not fit is one error naming the entry."""
    from simrl.algos import default_config, make_trainer

    cfg = default_config("hopper", "ppo")
    cfg.train.num_envs, cfg.network.actor_hidden, cfg.network.critic_hidden = 8, (16,), (16,)
    cfg.network.init_log_std, cfg.train.init = -1.5, str(run / "final")
    trainer = make_trainer(cfg, tmp_path / "a")
    trainer.init_from(cfg.train.init)
    obs = torch.randn(32, 11)
    source = policies.load(run / "final")
    with torch.no_grad():
        assert np.allclose(np.asarray(source(obs.numpy())), trainer.model.policy(obs).numpy(), atol=1e-6)
    assert torch.allclose(trainer.model.policy.log_std, torch.full((3,), -1.5))
    assert trainer.step == 0
    assert main(["train", *TINY, "--steps", "128", "--init", str(run / "final"), "--out", str(tmp_path / "b")]) == 0
    assert "starting from the weights of" in capsys.readouterr().out
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["init"] == str(run / "final")
    assert policies.load_spec(tmp_path / "b" / "final")["training"]["steps"] == 128
    bad = [*TINY, "--steps", "128", "--init", str(run / "final"), "--out", str(tmp_path / "c")]
    bad[bad.index("hopper")] = "walker2d"
    assert main(["train", *bad]) == 2
    assert "network entry" in capsys.readouterr().err
