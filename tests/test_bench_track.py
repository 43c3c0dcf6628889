"""``simrl bench track``: a tiny end-to-end run (train 2 checkpoints, score each on the training
scene and the final one on the full Menagerie Go1) and its pass/fail logic."""

from __future__ import annotations

import json

import pytest

from simrl.cli import main
from simrl.cli.bench.track import Config, first_passing, passes

TINY = ["--episodes", "2", "--episode-steps", "10"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Trains 2 checkpoints of go1-velocity on 4 worlds; every threshold met (fall fraction <= 1)."""
    out = tmp_path_factory.mktemp("track") / "run"
    code = main(["bench", "track", "--out", str(out), "--steps", "64", "--checkpoint-every", "32",
                 "--train-args=--num-envs 4 --ppo.num-steps 8", *TINY,
                 "--lin-vel-error", "100", "--yaw-rate-error", "100", "--falls", "1.01"])
    assert code == 0
    return out, json.loads((out / "track.json").read_text())


def test_trains_scores_every_checkpoint_and_finds_the_first_passing(tiny_run):
    out, result = tiny_run
    rows = result["checkpoints"]
    assert [r["steps"] for r in rows] == [32, 64] and rows[-1]["checkpoint"].endswith("final")
    assert all(r["passes"] and r["episodes"] == 2 and r["episode_steps"] == 10 for r in rows)
    spec = json.loads((out / "checkpoints" / "step_000000032" / "spec.json").read_text())
    assert result["first_passing"]["training scene"] == {
        "steps": 32, "train_wall_time_s": spec["training"]["wall_time_s"], "checkpoint": rows[0]["checkpoint"]}
    full = result["full_model_checkpoints"]  # the first passing one and the final one
    assert [(r["steps"], r["model"]) for r in full] == [(32, "go1-menagerie"), (64, "go1-menagerie")]
    assert result["train_command"].startswith("simrl train --task go1-velocity --algo ppo --dr uniform --steps 64")
    assert result["privileged_teacher"] is False
    assert not result["default_settings"]
    assert set(result["differs_from_defaults"]) == {"train.num_envs", "ppo.num_steps"}
    assert result["machine"]["cores"] >= 1 and "load_avg_end" in result["machine"]
    assert (out / "track.png").stat().st_size > 10_000


def test_pass_fail_follows_the_numbers(tiny_run, tmp_path):
    out, first = tiny_run
    # --run scores the existing run (no training); thresholds nothing meets
    assert main(["bench", "track", "--run", str(out), *TINY, "--lin-vel-error", "1e-9",
                 "--json", str(tmp_path / "t.json")]) == 0
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["bench_train_wall_s"] is None
    assert not any(r["passes"] for r in result["checkpoints"] + result["full_model_checkpoints"])
    assert result["first_passing"] == {"training scene": "not reached", "go1-menagerie": "not reached"}
    assert [r["steps"] for r in result["full_model_checkpoints"]] == [64]  # only the final one
    # each criterion on its own, between the rows' own numbers
    rows = first["checkpoints"]
    for key, option in (("lin_vel_error", "lin_vel_error"), ("yaw_rate_error", "yaw_rate_error"),
                        ("fall_fraction", "falls")):
        values = sorted(r[key]["mean"] for r in rows)
        for threshold in (values[0], values[-1] + 1e-6):
            cfg = Config(**{option: max(threshold, 1e-9)})
            marked = [dict(r, passes=passes(r, cfg)) for r in rows]
            expected = [r["lin_vel_error"]["mean"] < cfg.lin_vel_error and r["yaw_rate_error"]["mean"] < cfg.yaw_rate_error
                        and r["fall_fraction"]["mean"] < cfg.falls for r in rows]
            assert [m["passes"] for m in marked] == expected
            hit = next((m for m in marked if m["passes"]), None)
            assert first_passing(marked) == ("not reached" if hit is None else {
                "steps": hit["steps"], "train_wall_time_s": hit["train_wall_time_s"], "checkpoint": hit["checkpoint"]})


def test_scoring_again_keeps_the_rows_scored_with_the_same_options(tiny_run, monkeypatch):
    """A run scored again (e.g. while it trains) costs only checkpoints not scored before with
    the same episodes, length, seed and randomization."""
    import simrl.cli.bench.track as track

    out, first = tiny_run
    def no_scoring(*args, **kwargs):
        raise RuntimeError("scored again")
    monkeypatch.setattr(track, "score", no_scoring)
    same = ["bench", "track", "--run", str(out), *TINY, "--lin-vel-error", "100", "--yaw-rate-error", "100",
            "--falls", "1.01"]
    assert main(same) == 0
    again = json.loads((out / "track.json").read_text())
    assert again["checkpoints"] == first["checkpoints"] and again["full_model_checkpoints"] == first["full_model_checkpoints"]
    with pytest.raises(RuntimeError, match="scored again"):
        main([*same, "--eval-seed", "1"])


def test_a_run_of_another_task_or_no_run_is_refused(tmp_path):
    (tmp_path / "hop").mkdir()
    (tmp_path / "hop" / "config.json").write_text(json.dumps({"train": {"task": "hopper"}}))
    assert main(["bench", "track", "--run", str(tmp_path / "hop")]) == 2
    assert main(["bench", "track", "--run", str(tmp_path / "nothing")]) == 2


def test_a_privileged_teacher_run_is_scored_and_named_as_one(tmp_path):
    run = tmp_path / "teacher"
    assert main(["distill", "teacher", "--task", "go1-velocity", "--num-envs", "4", "--steps", "32",
                 "--ppo.num-steps", "8", "--checkpoint-every", "32", "--progress", "false", "--out", str(run)]) == 0
    assert main(["bench", "track", "--run", str(run), *TINY, "--full-model", ""]) == 0
    result = json.loads((run / "track.json").read_text())
    assert result["privileged_teacher"] is True
    assert result["train_command"].startswith("simrl distill teacher --task go1-velocity --dr uniform --steps 32")
    assert result["checkpoints"][-1]["steps"] == 32
