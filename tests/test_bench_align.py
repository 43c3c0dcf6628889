"""``simrl bench align --task go1-velocity --checkpoint C``: every method runs on the go1
tracker at a tiny budget and is scored by tracking error on the default proxy (weaker motors,
heavier trunk, more servo damping, a slipperier floor, two control steps of latency); a checkpoint of
another task than ``--task`` is one line naming the field."""

from __future__ import annotations

import json
import math

import pytest

from simrl.cli import main
from simrl.cli.bench.align import METHODS, SETUPS
from test_bench_protocols import ray_local  # noqa: F401  (the module's in-process Ray)


@pytest.fixture(scope="module")
def go1_checkpoint(tmp_path_factory):
    """One PPO iteration on go1-velocity (4 worlds, 40-step episodes): a checkpoint with the
    training state fine-tuning continues."""
    run = tmp_path_factory.mktemp("go1") / "run"
    assert main(["train", "--task", "go1-velocity", "--steps", "32", "--num-envs", "4", "--ppo.num-steps", "8",
                 "--task.max-episode-steps", "40", "--out", str(run), "--progress", "false",
                 "--checkpoint-every", "0"]) == 0
    return run / "final"


def test_a_checkpoint_of_another_task_is_one_line_naming_the_field(go1_checkpoint, tmp_path, capsys):
    assert main(["bench", "align", "--task", "hopper", "--checkpoint", str(go1_checkpoint),
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field task is 'go1-velocity'" in err[0] and "--task is 'hopper'" in err[0]


@pytest.mark.slow
def test_every_method_is_scored_by_tracking_error_on_the_go1_proxy(go1_checkpoint, tmp_path, ray_local):  # noqa: F811
    out = tmp_path / "bench"
    assert main(["bench", "align", "--task", "go1-velocity", "--checkpoint", str(go1_checkpoint), "--no-small",
                 "--seeds", "1", "--log-seconds", "3", "--finetune-steps", "32", "--delta-steps", "1",
                 "--sysid-budget", "8", "--windows", "8", "--episodes", "2", "--vgdf-updates", "0.01",
                 "--out", str(out)]) == 0
    report = json.loads((out / "align_bench.json").read_text())
    assert report["task"] == "go1-velocity" and report["checkpoint"] == str(go1_checkpoint)
    assert report["proxy"] == {**SETUPS["go1-velocity"].proxy, "motor_lag": 0.0, "noise": {}}
    assert report["score"]["key"] == "lin_vel_error" and report["score"]["better"] == "lower"
    assert [q["key"] for q in report["quantities"]] == ["lin_vel_error", "yaw_rate_error", "fall_rate"]
    assert report["table"] == report["tables"]["lin_vel_error"] and not report["missing_trials"]
    for key, table in report["tables"].items():
        assert set(table) == set(METHODS)
        for method, row in table.items():
            cell = row["3"]
            assert cell["n"] == 1 and math.isfinite(cell["mean"]) and cell["mean"] >= 0, (key, method, cell)
            assert key != "fall_rate" or cell["mean"] <= 1
    (sysid,) = report["runs"]["sysid"]["3"]
    assert set(sysid["estimate"]) == {"gain", "mass:trunk", "kd", "friction:floor", "latency"}
    for method in ("sysid", "delta-action", "delta-dynamics"):
        (run,) = report["runs"][method]["3"]
        assert run["heldout_error_before"] > 0 and run["heldout_error_after"] > 0
    assert (out / "align_bench.png").stat().st_size > 1000


def test_methods_picks_the_rows_and_an_unknown_one_is_named(go1_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench"
    common = ["bench", "align", "--checkpoint", str(go1_checkpoint), "--no-small", "--seeds", "1",
              "--log-seconds", "1", "--episodes", "1", "--out", str(out)]
    assert main([*common, "--methods", "dr", "sysdi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--methods dr,sysdi: unknown ['sysdi']" in err[0]
    assert main([*common, "--methods", "dr", "delta-dynamics", "--report-only"]) == 0
    report = json.loads((out / "align_bench.json").read_text())
    assert set(report["table"]) == {"original", "dr", "delta-dynamics"}
    assert report["table"]["original"]["1"]["n"] == 1 and report["table"]["dr"]["1"]["n"] == 0
    assert [m.split(":")[0] for m in report["missing_trials"]] == [
        "method=dr,log_seconds=0,seed=0", "method=delta-dynamics,log_seconds=1,seed=0"]
