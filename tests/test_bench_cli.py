"""The command line: help texts, bad input, and the env and residual benchmarks' reports."""

from __future__ import annotations

import json

import pytest

from simrl.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "quickstart" in out and "bench" in out


def test_bench_envs_rows_with_matched_threads(tmp_path, capsys):
    """Every contender runs end to end; the multi-threaded ones get --threads (AsyncVectorEnv:
    that many worker processes); EnvPool is skipped with a reason when no venv is given."""
    out = tmp_path / "bench.json"
    assert main(["bench", "envs", "--task", "hopper", "--num-envs", "4", "--steps", "5",
                 "--baseline-steps", "3", "--rounds", "1", "--threads", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "simrl / AsyncVectorEnv" in text and "envpool            skipped: no --envpool-python" in text
    r = json.loads(out.read_text())
    rows = r["rows"]
    assert set(rows) == {"simrl", "simrl_1thread", "bare_rollout", "envpool", "async_vector_env",
                         "sync_vector_env"}
    assert rows["simrl"]["threads"] == 2 and rows["bare_rollout"]["threads"] == 2
    assert rows["async_vector_env"]["workers"] == 2 and "2 processes x 2 Gymnasium Hopper-v5" in \
        rows["async_vector_env"]["what"]
    assert rows["simrl_1thread"]["threads"] == rows["sync_vector_env"]["threads"] == 1
    assert rows["envpool"]["steps_per_s"] is None and r["ratios"]["simrl_vs_envpool"] is None
    assert r["ratios"]["simrl_vs_async_vector_env"] == pytest.approx(
        rows["simrl"]["steps_per_s"] / rows["async_vector_env"]["steps_per_s"])
    assert r["ratios"]["simrl_1thread_vs_sync_vector_env"] == pytest.approx(
        rows["simrl_1thread"]["steps_per_s"] / rows["sync_vector_env"]["steps_per_s"])
    m = r["machine"]
    assert m["threads"] == 2 and len(m["load_avg_start"]) == 3 and m["versions"]["mujoco"]
    assert m["command"].startswith("simrl bench envs") or "pytest" in m["command"]


def test_bench_envs_envpool_failure_is_reported_not_faked(tmp_path):
    from simrl.cli.bench.baselines import envpool_steps_per_s
    assert "no such file" in envpool_steps_per_s(str(tmp_path / "python"), "hopper", 2, 1, 2)["error"]
    assert "no counterpart" in envpool_steps_per_s("/usr/bin/python3", "panda-push", 2, 1, 2)["error"]
    # a Python without envpool: the worker's failure comes back as the row's reason
    import sys
    assert "EnvPool worker failed" in envpool_steps_per_s(sys.executable, "hopper", 2, 1, 2)["error"]


def test_bench_train_rows_and_curves(tmp_path, capsys):
    pytest.importorskip("rsl_rl")
    out = tmp_path / "train.json"
    assert main(["bench", "train", "--num-envs", "4", "--num-steps", "4", "--hidden", "8", "8",
                 "--iterations", "1", "--rounds", "1", "--threads", "2", "--curve-iterations", "2",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    rows = r["rows"]
    assert set(rows) == {"simrl_ppo", "rsl_rl_ppo", "sb3_ppo_processes", "simrl_ppo_1thread", "sb3_ppo_dummy"}
    assert all(row["steps_per_s"] > 0 for row in rows.values())
    assert rows["sb3_ppo_processes"]["workers"] == 2 and rows["rsl_rl_ppo"]["threads"] == 2
    assert rows["simrl_ppo_1thread"]["threads"] == rows["sb3_ppo_dummy"]["threads"] == 1
    assert r["device"] == "cpu" and "Hopper-v5" in rows["sb3_ppo_dummy"]["what"]
    assert r["ratios"]["simrl_vs_rsl_rl"] == pytest.approx(
        rows["simrl_ppo"]["steps_per_s"] / rows["rsl_rl_ppo"]["steps_per_s"])
    for curve in r["curves"].values():  # [env steps, mean return] per iteration with finished episodes
        assert all(0 < s <= 2 * 16 for s, _ in curve)
    assert (tmp_path / "train.png").stat().st_size > 1000
    assert "simrl / rsl_rl" in capsys.readouterr().out


def test_bad_input_is_one_line_error(capsys):
    assert main(["bench", "envs", "--task", "nope", "--num-envs", "2", "--rounds", "1"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_deploy_command_works_without_torch():
    """A robot computer has numpy, mujoco and onnxruntime but no torch: simrl deploy must start."""
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import sys
        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, BlockTorch())
        from simrl.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    done = subprocess.run([sys.executable, "-c", code, "deploy", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--checkpoint" in done.stdout
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "unavailable here: " in done.stdout
    assert "train (needs torch)" in done.stdout and "deploy (needs" not in done.stdout


def test_bench_residual_reports_base_and_residual_success(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["bench", "residual", "--steps", "256", "--seeds", "1", "--num-envs", "4",
                 "--episodes", "4", "--evals", "1", "--out", str(out)]) == 0
    report = json.loads((out / "residual_bench.json").read_text())
    (curve,) = [r["curve"] for r in report["runs"]]
    assert curve[0] == [0, report["base_success"]] and curve[-1][0] >= 256
    assert all(0.0 <= s <= 1.0 for _, s in curve) and (out / "residual_bench.png").stat().st_size > 1000
    assert "panda-push: base pusher" in capsys.readouterr().out
    assert report["machine"]["threads"] == 1 and len(report["machine"]["load_avg_end"]) == 3


def test_bench_warmstart_exactness_claims(tmp_path):
    """What the README says of the warm start: rollout calls equal an mj_step loop whose warm
    start is cleared every control step, and mujoco.batch (carried) equals a persistent loop."""
    out = tmp_path / "ws.json"
    assert main(["bench", "warmstart", "--tasks", "hopper", "go1-velocity", "--num-envs", "2",
                 "--steps", "3", "--rounds", "1", "--threads", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["task"] for r in results] == ["hopper", "go1-velocity"]
    for r in results:
        assert r["rollout_equals_cleared_loop"] and r["batch_warm_equals_persistent_mj_step"]
        assert r["batch_cold_equals_rollout"]
        its = r["solver_iterations_per_physics_step"]
        assert 0 < its["warm_start_carried"] <= r["model_solver_iterations"]
        assert set(r["one_control_step_error_vs_converged_solve"]) == {"carried", "cleared", "mean_max_abs_qvel"}
