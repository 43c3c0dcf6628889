"""simrl train --dr doraemon / --residual / --robust hinf, and simrl eval --grid / --push-test,
end to end on tiny runs."""

from __future__ import annotations

import json

import numpy as np
import torch

import policies
from simrl.cli import main


def train(tmp_path, name, *options):
    out = tmp_path / name
    assert main(["train", "--progress", "false", "--out", str(out), *options]) == 0
    return out


def test_doraemon_run_saves_beta_distribution_and_plot(tmp_path):
    out = train(tmp_path, "dor", "--task", "hopper", "--dr", "doraemon", "--num-envs", "8",
                "--steps", "1024", "--ppo.num-steps", "32", "--task.max-episode-steps", "20",
                "--task.success-return", "5", "--doraemon.episodes-per-update", "8",
                "--dr-alpha", "0.3", "--dr-kl", "0.05")
    spec = json.loads((out / "final" / "spec.json").read_text())
    assert spec["dr"]["type"] == "beta" and len(spec["dr"]["names"]) == 5
    config = json.loads((out / "config.json").read_text())
    assert config["doraemon"]["alpha"] == 0.3 and config["doraemon"]["kl_bound"] == 0.05
    assert (out / "dr_history.png").stat().st_size > 1000   # updates ran (short episodes succeed)
    start = 50.0   # a = b = concentration / 2 at the start (nominal mid-range)
    assert np.asarray(spec["dr"]["a"]).max() < start      # the Betas widened


def test_doraemon_adapts_within_its_ranges_file(tmp_path):
    """``--doraemon.ranges FILE``: exactly those dimensions and supports, not the task's."""
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps({"mass:torso": [0.25, 2.5], "friction": [0.1, 2.0]}))
    out = train(tmp_path, "dor2", "--task", "hopper", "--dr", "doraemon", "--num-envs", "8",
                "--steps", "256", "--ppo.num-steps", "32", "--doraemon.ranges", str(ranges))
    dist = json.loads((out / "final" / "spec.json").read_text())["dr"]
    assert dist["names"] == ["mass:torso", "friction"]
    assert dist["low"] == [0.25, 0.1] and dist["high"] == [2.5, 2.0]


def test_residual_checkpoint_starts_at_the_base_and_evaluates(tmp_path, capsys):
    out = train(tmp_path, "res", "--task", "panda-push", "--residual", "pusher", "--num-envs", "4",
                "--steps", "128", "--ppo.num-steps", "32", "--ppo.learning-rate", "1e-12",
                "--ppo.max-lr", "1e-12", "--ppo.min-lr", "1e-12")
    spec = json.loads((out / "final" / "spec.json").read_text())
    assert spec["residual"] == {"base": "pusher", "scale": 0.2}
    assert spec["observation"]["names"][-7:] == [f"base_joint{i}_target_delta" for i in range(1, 8)]
    policy = policies.load(out / "final")
    with torch.no_grad():
        assert torch.all(policy.module.actor[-1].weight.abs() < 1e-9)   # residual still ~zero
    json_path = tmp_path / "res.json"
    assert main(["eval", "--checkpoint", str(out / "final"), "--episodes", "4",
                 "--json", str(json_path)]) == 0
    assert json.loads(json_path.read_text())["episodes"] == 4


def test_hinf_run_logs_the_disturber(tmp_path):
    out = train(tmp_path, "hinf", "--task", "go1-velocity", "--robust", "hinf", "--num-envs", "4",
                "--steps", "128", "--ppo.num-steps", "16", "--hinf.force-start", "30")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "hinf/hinf_lambda" in tags and "hinf/hinf_force_bound" in tags


def test_incompatible_options_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--task", "go1-velocity", "--robust", "hinf", "--residual", "trot",
                 "--steps", "64", "--out", str(tmp_path / "x"), "--progress", "false"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert main(["train", "--task", "hopper", "--residual", "pusher", "--steps", "64",
                 "--out", str(tmp_path / "y"), "--progress", "false"]) == 2
    assert "does not drive task hopper" in capsys.readouterr().err


def test_eval_grid_and_push_test(tmp_path, capsys):
    out = train(tmp_path, "go1", "--task", "go1-velocity", "--num-envs", "4", "--steps", "96",
                "--ppo.num-steps", "24")
    assert main(["eval", "--checkpoint", str(out / "final"), "--push-test",
                 "--out", str(tmp_path / "push")]) == 0
    curves = json.loads((tmp_path / "push" / "push_test.json").read_text())
    (curve,) = curves.values()
    assert len(curve["success_rate"]) == len(curve["magnitudes"]) and curve["success_rate"][-1] == 0.0
    assert (tmp_path / "push" / "push_test.png").exists()
    hop = train(tmp_path, "hop", "--task", "hopper", "--num-envs", "4", "--steps", "64",
                "--ppo.num-steps", "16")
    assert main(["eval", "--checkpoint", str(hop / "final"), "--grid", "mass:torso,friction=0:2",
                 "--points", "3", "--grid-episodes", "2", "--out", str(tmp_path / "grid")]) == 0
    grid = json.loads((tmp_path / "grid" / "grid.json").read_text())
    assert grid["values_b"] == [0.0, 1.0, 2.0] and len(grid["success"]) == 3
    assert "solved fraction" in capsys.readouterr().out
