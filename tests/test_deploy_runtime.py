"""The runtime against the MuJoCo robot: logs, the observation rule, perturbations, stops
(NaN, a killed robot process, Ctrl-C) and running without torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import deploy
import envs
from deploy.policy import OnnxPolicy
from deploy.robots.base import compose_state
from deploy.robots.mujoco import MujocoRobot, MujocoSim, SimConfig
from envs.perturbation import Perturbation
from simrl.core.spec import load_spec
from policies.export import export
from simrl.core.logs import read_log
from test_export import trained_like_checkpoint

REPO = Path(__file__).resolve().parents[1]
LOCKSTEP = deploy.RuntimeConfig(realtime=False, end_on_termination=False)


@pytest.fixture(scope="module")
def hopper_ckpt(tmp_path_factory) -> str:
    ckpt = trained_like_checkpoint(tmp_path_factory.mktemp("hopper") / "c")
    export(ckpt)
    return ckpt


def test_lockstep_go1_log_follows_the_observation_rule(go1_ckpt, tmp_path):
    perturb = tmp_path / "proxy.yaml"
    perturb.write_text("params: {mass:trunk: 1.2, friction: 0.8, gain: 0.9}\nlatency: 0.008\n"
                       "motor_lag: 0.01\nnoise: {joint_vel: 0.1}\n")
    config = deploy.RuntimeConfig(realtime=False, command=(0.5, 0.0, 0.2),
                                  safety=deploy.SafetyConfig(soft_start_s=0.2))
    report = deploy.run(go1_ckpt, "mujoco", 2.0, tmp_path / "go1.mcap", perturb=perturb, config=config)
    assert report.steps == 100 and report.policy_steps == 90 and report.safety_events["soft_start"] == 10
    assert report.real_return is not None and np.isfinite(report.real_return)
    log = read_log(tmp_path / "go1.mcap")
    spec, task = load_spec(go1_ckpt), envs.make_task("go1-velocity")
    assert (log.meta.robot, log.meta.task, log.meta.source) == ("go1-flat", "go1-velocity", "sim2sim")
    assert log.meta.control_period == 0.02 and log.meta.observation_names == spec["observation"]["names"]
    assert log.meta.extra["backend"] == "mujoco:go1-flat"
    np.testing.assert_allclose(log.state["command"][0], [0.5, 0.0, 0.2])
    # the logged observation is the task's observation of the logged robot-state record
    fields = {k: log.state[k] for k in ("joint_pos", "joint_vel", "base_quat", "base_ang_vel")}
    for k in (0, 50, 99):
        rs = compose_state({n: v[k] for n, v in fields.items()}, {"command": log.state["command"][k:k + 1]},
                           log.state["last_action"][k])
        np.testing.assert_allclose(task.observation(rs)[0], log.obs[k], atol=1e-12)
    # actions fed back as the next step's last action; logged rewards sum to the real return
    np.testing.assert_allclose(log.state["last_action"][11:], log.action[10:-1])
    assert log.state["reward"].sum() == pytest.approx(report.real_return)
    # commands stayed within the joint ranges
    low, high = task.model.jnt_range[1:].T
    assert np.all(log.state["ctrl"] >= low - 1e-12) and np.all(log.state["ctrl"] <= high + 1e-12)


def test_perturbations_change_the_robot(go1_ckpt, tmp_path):
    spec = load_spec(go1_ckpt)
    pert = Perturbation(params={"mass:trunk": 1.5, "kp": 0.5, "gain": 0.8}, noise={"joint_pos": 0.01})
    sim = MujocoSim(SimConfig.from_spec(spec, perturbation=pert))
    base = sim.task.model
    trunk = base.body("trunk").id
    assert sim.model.body_mass[trunk] == pytest.approx(1.5 * base.body_mass[trunk])
    np.testing.assert_allclose(sim.model.actuator_gainprm[:, 0], 35 * 0.5 * 0.8)
    np.testing.assert_allclose(sim.kp_scale, 0.4) and np.testing.assert_allclose(sim.kd_scale, 0.8)
    a, b = sim.sample().fields["joint_pos"], sim.sample().fields["joint_pos"]
    assert 0 < np.abs(a - b).max() < 0.1  # noisy readings
    path = tmp_path / "p.json"
    path.write_text(json.dumps(pert.to_dict()))
    assert Perturbation.load(path) == pert
    with pytest.raises(ValueError, match="unknown keys"):
        Perturbation.from_dict({"mass": 2})
    with pytest.raises(ValueError, match="latency"):
        Perturbation(params={"latency": 1})
    with pytest.raises(ValueError, match="no body named"):
        Perturbation(params={"mass:nope": 1.2}).apply(base)
    with pytest.raises(ValueError, match="reports no fields"):
        MujocoSim(SimConfig.from_spec(spec, perturbation=Perturbation(noise={"lidar": 1.0})))


def test_nan_from_the_policy_stops_the_robot(hopper_ckpt, tmp_path):
    onnx = OnnxPolicy(hopper_ckpt, load_spec(hopper_ckpt))
    calls = []

    def policy(obs: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.full(3, np.nan) if len(calls) == 20 else onnx(obs)

    report = deploy.run(hopper_ckpt, "mujoco", 2.0, tmp_path / "nan.mcap", config=LOCKSTEP, policy=policy)
    assert report.stop_reason == "nonfinite_action" and report.safety_events["nonfinite_action"] == 1
    assert report.policy_steps == 19 and len(calls) == 20
    log = read_log(tmp_path / "nan.mcap")  # no NaN reaches the log or the robot
    stop = int(np.argmax(log.safety["nonfinite_action"]))
    assert stop == 19 and np.all(log.action[stop:] == 0) and np.all(log.state["ctrl"][stop:] == 0)
    hold = int(np.ceil(deploy.SafetyConfig().stop_hold_s / report.control_period_s))
    assert len(log) == stop + 1 + hold  # damped-stop commands for stop_hold_s, then the end


def test_killed_robot_process_gives_a_safe_stop(hopper_ckpt, tmp_path):
    spec = load_spec(hopper_ckpt)
    robot = MujocoRobot(SimConfig.from_spec(spec), realtime=True, control_dt=spec["control_dt"])
    onnx, calls = OnnxPolicy(hopper_ckpt, spec), []

    def policy(obs: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 40:  # dead before this step's command goes out (on a loaded machine
            os.kill(robot.process.pid, signal.SIGKILL)  # the kernel may take a while to kill it)
            robot.process.join()
        return onnx(obs)

    config = deploy.RuntimeConfig(end_on_termination=False, safety=deploy.SafetyConfig(stale_periods=100))
    report = deploy.run(hopper_ckpt, robot, 10.0, tmp_path / "kill.mcap", config=config, policy=policy)
    assert report.stop_reason == "robot_lost"
    log = read_log(tmp_path / "kill.mcap")  # complete: read without a truncation warning
    assert not log.truncated
    killed = 39  # the step whose policy call killed the robot
    lost = int(np.argmax(log.safety["robot_lost"]))
    assert killed <= lost <= killed + 3 and len(log) == lost + 1


def test_runtime_runs_without_torch(hopper_ckpt, tmp_path):
    """The API and ``simrl deploy`` with every import of torch failing."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import deploy
        report = deploy.run({hopper_ckpt!r}, "mujoco", 1.0, {str(tmp_path / 'api.mcap')!r},
                            config=deploy.RuntimeConfig(realtime=False, end_on_termination=False))
        print("steps", report.steps, report.policy_steps)
        from simrl.cli import main
        sys.exit(main(["deploy", "--checkpoint", {hopper_ckpt!r}, "--lockstep", "--duration", "0.4",
                       "--log", {str(tmp_path / 'cli.mcap')!r}, "--no-end-on-termination"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "steps 125 125" in out.stdout and "steps 50 (50 by the policy)" in out.stdout
    assert len(read_log(tmp_path / "api.mcap")) == 125 and len(read_log(tmp_path / "cli.mcap")) == 50


def test_ctrl_c_is_an_estop_with_a_closed_log(hopper_ckpt, tmp_path):
    log_path = tmp_path / "sigint.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "simrl.cli", "deploy", "--checkpoint", hopper_ckpt,
                             "--duration", "60", "--log", str(log_path), "--no-end-on-termination",
                             "--stale-periods", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log_path.exists() or log_path.stat().st_size < 2000):
        time.sleep(0.1)  # the log has its first chunks: the loop is running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "stop: estop" in out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a truncated log would warn
        log = read_log(log_path)
    assert not log.truncated and log.safety["estop"][-1] and len(log) > 10
