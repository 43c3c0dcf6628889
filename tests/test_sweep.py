"""``simrl sweep``: spec expansion, trial identity, resume, the result table, and real sweeps on
an in-process Ray and on a two-node Ray cluster started here."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simrl.cli import main
from simrl.cli.sweep import resolved_config
from simrl.sweep import SweepSpec, Trial, expand, identity, make_trials, varied, write_table

TINY = ["--set", "task=hopper", "--set", "steps=512", "--set", "num-envs=8",
        "--set", "ppo.num-steps=32", "--set", "checkpoint-every=256"]
RAY = ["--object-store-mb", "80", "--no-progress"]


def test_grid_is_the_product_and_fixed_options_are_in_every_trial():
    spec = SweepSpec({"task": "hopper", "dr": ["none", "uniform"], "seed": [0, 1, 2],
                      "network.actor-hidden": {"value": [64, 64]}})
    trials = expand(spec)
    assert len(trials) == 6
    assert {(t["dr"], t["seed"]) for t in trials} == {(d, s) for d in ("none", "uniform") for s in (0, 1, 2)}
    assert all(t["task"] == "hopper" and t["network.actor-hidden"] == [64, 64] for t in trials)
    assert varied(spec) == ["dr", "seed"]


def test_random_draws_are_seeded_in_range_and_shared_across_the_grid():
    options = {"dr": ["none", "uniform"], "ppo.learning-rate": {"loguniform": ["1e-4", 1e-3]},
               "ppo.clip": {"uniform": [0.1, 0.3]}, "ppo.epochs": {"randint": [2, 4]},
               "network.activation": {"choice": ["tanh", "elu"]}}
    a = expand(SweepSpec(options, samples=5, seed=3))
    assert a == expand(SweepSpec(options, samples=5, seed=3))
    assert a != expand(SweepSpec(options, samples=5, seed=4))
    assert len(a) == 10
    for t in a:
        assert 1e-4 <= t["ppo.learning-rate"] <= 1e-3 and 0.1 <= t["ppo.clip"] <= 0.3
        assert t["ppo.epochs"] in (2, 3, 4) and t["network.activation"] in ("tanh", "elu")
    for i in range(0, 10, 2):  # one draw, both grid values
        assert {k: v for k, v in a[i].items() if k != "dr"} == {k: v for k, v in a[i + 1].items() if k != "dr"}
    assert len({t["ppo.learning-rate"] for t in a}) == 5


@pytest.mark.parametrize("options, samples, message", [
    ({"lr": {"gaussian": [0, 1]}}, 1, "options.lr"),
    ({"lr": {"loguniform": [0, 1]}}, 1, "low > 0"),
    ({"lr": {"uniform": [2, 1]}}, 1, "low <= high"),
    ({"seed": []}, 1, "empty grid axis"),
    ({"seed": [0, 1]}, 3, "samples"),
])
def test_bad_specs_name_the_field(options, samples, message):
    with pytest.raises(ValueError, match=message):
        expand(SweepSpec(options, samples=samples))


def test_identity_is_the_resolved_config_not_its_spelling():
    base = resolved_config({"task": "hopper", "steps": 512, "dr": "none"})
    assert identity(base) == identity(resolved_config({"dr": "none", "steps": 512, "task": "hopper"}))
    # where and how a trial runs is not what it trains
    assert identity(base) == identity(resolved_config({"task": "hopper", "steps": 512, "threads": 3,
                                                       "progress": False}))
    # an option equal to its default is the same trial
    assert identity(base) == identity(resolved_config({"task": "hopper", "steps": 512, "seed": 0}))
    assert identity(base) != identity(resolved_config({"task": "hopper", "steps": 512, "seed": 1}))
    assert identity(base) != identity(resolved_config({"task": "hopper", "steps": 512,
                                                       "ppo.learning-rate": 1e-3}))


def test_bad_trial_options_fail_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", *TINY, "--set", "ppo.learning-rate=[1e-3, -1]", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "trial 1 (ppo.learning-rate=-1)" in err and "learning_rate" in err
    assert main(["sweep", *TINY, "--set", "dr=[none, nofile.json]", "--out", str(out)]) == 2
    assert "nofile.json" in capsys.readouterr().err
    assert main(["sweep", *TINY, "--set", "out=elsewhere", "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err
    assert not out.exists()


def test_result_table_gathers_options_training_and_eval(tmp_path):
    trials = make_trials([{"task": "hopper", "seed": s} for s in (0, 1)], ["seed"], tmp_path,
                         resolved_config)
    assert [t.directory.name for t in trials] == [f"seed={s}-{t.trial_id}" for s, t in zip((0, 1), trials)]
    final = trials[0].directory / "final"
    final.mkdir(parents=True)
    (final / "spec.json").write_text(json.dumps({"training": {
        "mean_return": 812.5, "success_rate": 0.75, "steps": 4096, "wall_time_s": 3.5}}))
    (trials[0].directory / "eval.json").write_text(json.dumps(
        {"return": {"mean": 790.0}, "success_rate": {"mean": 0.7}}))
    (trials[0].directory / "trial.json").write_text(json.dumps({"status": "done", "node": "n1"}))
    (trials[1].directory).mkdir(parents=True)
    (trials[1].directory / "trial.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    rows = write_table(trials, tmp_path)
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0]["seed"] == "0" and table[0]["status"] == "done"
    assert float(table[0]["final_return"]) == 812.5 and float(table[0]["eval_success"]) == 0.7
    assert table[0]["steps"] == "4096" and table[0]["node"] == "n1"
    assert table[1]["status"] == "failed" and table[1]["error"] == "boom" and table[1]["final_return"] == ""
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(rows))


@pytest.fixture
def ray_tmp():
    """A short directory for Ray's session files (its socket paths must stay under 108 bytes)."""
    import shutil
    import tempfile
    path = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def _runs(trial_dir: Path) -> list[str]:
    """The simrl train invocations a trial's log records."""
    return [l for l in (trial_dir / "train.log").read_text().splitlines() if l.startswith("simrl train")]


@pytest.mark.slow
def test_sweep_on_local_ray_runs_each_trial_once_and_resumes_the_unfinished(tmp_path, capsys, ray_tmp):
    out = tmp_path / "sweep"
    argv = ["sweep", *TINY, "--set", "dr=[none, uniform]", "--eval-episodes", "4", "--out", str(out),
            "--ray-tmp", str(ray_tmp), *RAY]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["dr"] for r in rows] == ["none", "uniform"] and all(r["status"] == "done" for r in rows)
    assert all(r["steps"] == 512 and r["eval_return"] is not None for r in rows)
    dirs = [Path(r["directory"]) for r in rows]
    assert all((d / "tb").is_dir() and d.parent.parent == out for d in dirs)
    assert all(len(_runs(d)) == 1 for d in dirs)
    assert all("ppo hopper: 512/512 step" in (d / "train.log").read_text() for d in dirs)  # progress lines
    # the second trial is interrupted after its checkpoint at step 256: only it runs again,
    # resuming from that checkpoint
    import shutil
    shutil.rmtree(dirs[1] / "final")
    (dirs[1] / "eval.json").unlink()
    (dirs[1] / "trial.json").write_text(json.dumps({"status": "running"}))
    capsys.readouterr()
    assert main(argv) == 0
    assert "2 trials (1 done)" in capsys.readouterr().out
    assert len(_runs(dirs[0])) == 1
    runs = _runs(dirs[1])
    assert len(runs) == 2 and "--resume" in runs[1]
    rows = json.loads((out / "results.json").read_text())
    assert all(r["status"] == "done" and r["steps"] == 512 for r in rows)
    state = json.loads((dirs[1] / "trial.json").read_text())
    assert state["resumed_from"].endswith("step_000000256")
    # nothing left to run: Ray is not even started
    assert main(argv) == 0 and all(len(_runs(d)) == n for d, n in zip(dirs, (1, 2)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stops the ray processes this test started (each `ray start --block` and what it spawned,
    in its own process group)."""
    for p in procs:
        with _suppress():
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        with _suppress():
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, *rest) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sweep_on_a_two_node_ray_cluster_uses_both_nodes(tmp_path, ray_tmp):
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        ray_bin = Path("ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    node = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory",
            str(80 * 2 ** 20), "--disable-usage-stats", "--block"]
    logs = open(tmp_path / "ray.log", "w")
    procs = [subprocess.Popen([str(ray_bin), "start", "--head", "--port", str(port), "--include-dashboard",
                               "false", "--temp-dir", str(ray_tmp), *node],
                              env=env, start_new_session=True, stdout=logs, stderr=logs)]
    try:
        import ray
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        deadline = time.monotonic() + 60
        joined = False
        while time.monotonic() < deadline:
            time.sleep(1)
            if len(procs) == 1 and any(ray_tmp.iterdir()):
                procs.append(subprocess.Popen([str(ray_bin), "start", "--address", address, *node],
                                              env=env, start_new_session=True, stdout=logs, stderr=logs))
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
                joined = ray.cluster_resources().get("CPU") == 2
            except Exception:
                pass
            finally:
                ray.shutdown()
            if joined:
                break
        assert joined, (tmp_path / "ray.log").read_text()[-2000:]
        out = tmp_path / "sweep"
        assert main(["sweep", *TINY, "--set", "seed=[0, 1, 2]", "--address", address,
                     "--out", str(out), *RAY]) == 0
        rows = json.loads((out / "results.json").read_text())
        assert [r["status"] for r in rows] == ["done"] * 3
        assert len({r["node"] for r in rows}) == 2  # trials landed on both nodes
    finally:
        _stop(procs)
        logs.close()


def test_spec_file_with_command_line_overrides(tmp_path, capsys):
    spec = tmp_path / "lr.yaml"
    spec.write_text("options:\n  task: hopper\n  steps: 512\n  seed: [0, 1]\n"
                    "  ppo.learning-rate: {loguniform: [1e-4, 1e-3]}\nsamples: 2\n"
                    f"out: {tmp_path / 'from-spec'}\ncpus-per-trial: 2\n")
    out = tmp_path / "from-cli"
    assert main(["sweep", str(spec), "--out", str(out), "--set", "seed=[5]", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"sweep {out}: 2 trials (0 done), 2 CPU per trial" in text
    assert text.count("seed=5") == 2 and "seed=0" not in text
    spec.write_text("options: {task: hopper}\ncpus_per_trail: 2\n")
    assert main(["sweep", str(spec), "--dry-run"]) == 2
    assert "unknown key 'cpus_per_trail'" in capsys.readouterr().err
