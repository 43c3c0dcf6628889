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


def test_bench_envs_reports_both_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "envs", "--task", "hopper", "--num-envs", "8", "--steps", "10",
                 "--sync-steps", "5", "--rounds", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "batched / SyncVectorEnv" in text and "batched / physics limit" in text
    result = json.loads(out.read_text())
    steps = result["control_steps_per_s"]
    assert steps["batched"] > 0 and steps["sync_vector_env"] > 0 and steps["bare_rollout"] > 0
    assert result["ratio_vs_sync_vector_env"] == pytest.approx(steps["batched"] / steps["sync_vector_env"])


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
