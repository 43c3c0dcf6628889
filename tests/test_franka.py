"""The libfranka back-end (``franka://HOST``) against franky-sim, a MuJoCo FR3 that speaks the
libfranka network protocol, started here on a loopback address of its own.

The simulator runs slower than real time on a small machine (about 700-900 Hz of wall time):
the back-end must follow the robot's clock. Needs the ``franka`` extra (pylibfranka,
franky-sim), which CI installs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.robots import RobotOptions, make_robot
from deploy.robots.base import RUN, Command
from deploy.robots.franka import FR3, JointTracker, joint_impedance, parse_uri, trajectory_derivatives
from deploy.robots.franka_sim import FrankySim, free_loopback
from simrl.core.logs import read_log

pytest.importorskip("pylibfranka")
pytest.importorskip("franky_sim")

PUSH_SPEC = {"task": "panda-push", "task_config": {}}
REACH_SPEC = {"task": "panda-reach", "task_config": {},
              "pd_gains": {"kp": [1000, 1000, 750, 750, 300, 300, 300], "kd": [20, 20, 4, 4, 2, 2, 2]}}


@pytest.fixture
def sim():
    s = FrankySim(free_loopback())
    yield s
    s.kill()


@pytest.fixture(scope="module")
def push_checkpoint(tmp_path_factory) -> str:
    from policies.export import export
    from test_export import trained_like_checkpoint
    ckpt = trained_like_checkpoint(tmp_path_factory.mktemp("franka") / "push", "panda-push", out_gain=0.5)
    export(ckpt, "onnx")
    return ckpt


def _check_trace(path: Path) -> dict[str, float]:
    """The 1 kHz commands of a trace within the FR3's documented limits; their peaks as a
    share of each limit."""
    t = np.load(path)
    q_c = t["q_c"]
    assert len(q_c) > 500
    assert np.all(q_c >= t["q_min"]) and np.all(q_c <= t["q_max"])
    d = trajectory_derivatives(q_c, t["tick"])
    peaks = {}
    for name, lim in (("velocity", "dq_max"), ("acceleration", "ddq_max"), ("jerk", "dddq_max")):
        peak = np.nanmax(np.abs(d[name]), axis=0) / t[lim]
        assert np.all(peak <= 1.0), f"{name} exceeds the FR3's limit: {peak}"
        peaks[name] = float(peak.max())
    assert np.all(np.diff(t["robot_time"]) > 0)  # the robot's clock advances every cycle
    return peaks


# -- without the simulator ------------------------------------------------------------------
def test_uri_options_and_errors():
    a = parse_uri("franka://127.0.0.1")
    assert (a.host, a.realtime, a.limits, a.gripper, a.recover) == ("127.0.0.1", "ignore", "clamp", True, False)
    b = parse_uri("franka://172.16.0.2?limits=refuse&object=0.5,0,0.03&speed=0.3&recover=1")
    assert (b.realtime, b.limits, b.object_pos, b.speed, b.recover) == ("enforce", "refuse", (0.5, 0.0, 0.03), 0.3, True)
    for bad, word in (("franka://", "host"), ("franka://h?limits=maybe", "limits"), ("franka://h?speed=2", "speed"),
                      ("franka://h?object=1,2", "object"), ("franka://h?foo=1", "foo"), ("franka://h:99", "host")):
        with pytest.raises(ValueError, match=word):
            parse_uri(bad)


def test_refuses_a_checkpoint_beyond_the_fr3_limits_when_asked():
    with pytest.raises(ValueError, match=r"joint1 \[-2.8973, 2.8973\] vs fr3 \[-2.7437, 2.7437\].*limits=refuse"):
        make_robot("franka://127.0.0.1?limits=refuse", PUSH_SPEC)
    with pytest.raises(ValueError, match="lockstep"):
        make_robot("franka://127.0.0.1", PUSH_SPEC, RobotOptions(realtime=False))


def test_limits_check_names_the_joint_the_policy_could_send_out_of_range():
    robot = make_robot("franka://127.0.0.1?limits=refuse", REACH_SPEC)  # panda-reach: within the FR3
    assert robot.notes["limits"] == "the checkpoint's joint ranges lie within the FR3's"
    np.testing.assert_allclose(robot.q_low, np.array(FR3.q_min) + 0.02)
    wide = {**REACH_SPEC, "task_config": {"target_high": [2.6937, 1.7128, 2.8473, -0.05, 2.7565, 3.7025, 2.8473]}}
    with pytest.raises(ValueError, match=r"1 joint\(s\): joint4 \[-2.9921, -0.0698\] vs fr3 \[-3.0421, -0.1518\]"):
        make_robot("franka://127.0.0.1?limits=refuse", wide)
    clamped = make_robot("franka://127.0.0.1", wide, RobotOptions())  # the default clamps, and says so
    assert "joint4" in clamped.notes["limits"] and "clamped" in clamped.notes["limits"]


def test_joint_impedance_from_the_spec_or_the_address():
    assert parse_uri("franka://h").impedance == "spec"
    assert parse_uri("franka://h?impedance=robot").impedance == "robot"
    assert parse_uri("franka://h?impedance=" + ",".join(["500"] * 7)).impedance == (500.0,) * 7
    for bad, word in (("1,2,3", "7 joint stiffnesses"), ("0,1,1,1,1,1,1", "joint1 stiffness 0"),
                      ("1,1,1,1,1,1,20000", "joint7 stiffness 20000"), ("stiff", "K1")):
        with pytest.raises(ValueError, match=word):
            parse_uri(f"franka://h?impedance={bad}")
    k, source = joint_impedance(parse_uri("franka://h"), REACH_SPEC)
    assert k == (1000, 1000, 750, 750, 300, 300, 300) and "spec" in source
    assert joint_impedance(parse_uri("franka://h?impedance=robot"), REACH_SPEC)[0] is None
    assert joint_impedance(parse_uri("franka://h?impedance=" + ",".join(["500"] * 7)), REACH_SPEC)[0] == (500.0,) * 7
    assert joint_impedance(parse_uri("franka://h"), {"pd_gains": None})[0] is None  # no servo gains: the robot's
    with pytest.raises(ValueError, match="spec.json pd_gains.kp: joint5 stiffness -1"):
        joint_impedance(parse_uri("franka://h"), {"pd_gains": {"kp": [1, 1, 1, 1, -1, 1, 1]}})


def test_tracker_stays_within_the_limits_and_converges():
    rng = np.random.default_rng(1)
    q0 = np.array([0, 0.3, 0, -1.57, 0, 2.0, -0.785])
    low, high = np.array(FR3.q_min) + 0.02, np.array(FR3.q_max) - 0.02
    tr = JointTracker(q0, np.array(FR3.dq_max), np.array(FR3.ddq_max), np.array(FR3.dddq_max), low, high)
    qs, target = [q0], q0.copy()
    for k in range(4000):  # random policy steps every 40 ms, then jumps far outside the range
        if k % 40 == 0:
            target = target + rng.uniform(-0.3, 0.3, 7) if k < 2000 else rng.uniform(-5, 5, 7)
        qs.append(tr.tick(target).copy())
    for _ in range(1500):  # then a braking stop
        qs.append(tr.tick(None).copy())
    q = np.array(qs)
    assert np.all(q >= low - 1e-12) and np.all(q <= high + 1e-12)
    d = trajectory_derivatives(q)
    for name, lim in (("velocity", FR3.dq_max), ("acceleration", FR3.ddq_max), ("jerk", FR3.dddq_max)):
        assert np.all(np.abs(d[name]) <= np.array(lim) * (1 + 1e-9)), name
    assert tr.still
    target = q[-1] + 0.2
    for _ in range(2000):
        tr.tick(target)
    np.testing.assert_allclose(tr.q, np.clip(target, low, high), atol=1e-6)


# -- against franky-sim ---------------------------------------------------------------------
def test_connect_and_read_state(sim):
    robot = make_robot(f"franka://{sim.host}?object=0.5,0,0.03", PUSH_SPEC)
    try:
        first = robot.connect(timeout=20)
        f = first.fields
        np.testing.assert_allclose(f["joint_pos"], (0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785), atol=0.02)
        assert f["motor_pos"].shape == (8,) and f["ee_pos"].shape == (3,)
        assert 0.0 <= f["gripper_width"][0] <= 0.08
        assert 0.3 < f["ee_pos"][0] < 0.7 and f["ee_pos"][2] > 0.2  # the hand above the table
        stamps = [first.stamp]
        deadline = time.monotonic() + 5
        while len(stamps) < 20 and time.monotonic() < deadline:
            s = robot.read_state()
            if s is not None:
                stamps.append(s.stamp)
            time.sleep(0.005)
        assert len(stamps) == 20 and np.all(np.diff(stamps) > 0)  # the robot's clock
    finally:
        robot.close()


def test_deploy_cli_logs_and_limits(sim, push_checkpoint, tmp_path, capsys):
    from simrl.cli import main
    log, trace, rep = tmp_path / "run.mcap", tmp_path / "trace.npz", tmp_path / "report.json"
    rc = main(["deploy", "--checkpoint", push_checkpoint, "--robot",
               f"franka://{sim.host}?object=0.5,0,0.03&trace={trace}", "--duration", "3",
               "--log", str(log), "--json", str(rep), "--connect-timeout", "20"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert "joint ranges exceed the FR3's" in out.err  # the Panda checkpoint's limits are clamped
    real = read_log(log)
    assert not real.truncated and len(real) == 75 and real.end["stop_reason"] == "none"
    assert real.meta.extra["backend"].startswith("franka://")
    assert np.all(np.diff(real.state["robot_time"][:, 0]) > 0)
    peaks = _check_trace(trace)
    assert peaks["velocity"] > 0.01  # the arm moved (soft start and policy)
    assert main(["logs", "info", str(log)]) == 0
    assert "ended: none" in capsys.readouterr().out


def test_killing_the_simulator_mid_motion_is_a_safe_stop(sim, push_checkpoint, tmp_path):
    import deploy
    log = tmp_path / "killed.mcap"
    timer = threading.Timer(2.0, sim.kill)
    timer.start()
    t0 = time.monotonic()
    try:
        report = deploy.run(push_checkpoint, f"franka://{sim.host}?object=0.5,0,0.03", 15.0, log,
                            connect_timeout=20)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 8.0
    assert report.stop_reason in ("stale_data", "robot_lost"), report.summary()
    real = read_log(log)  # reads to the end: closed by the writer
    assert not real.truncated and real.end["stop_reason"] == report.stop_reason
    assert real.safety[report.stop_reason][-1]
    if report.stop_reason == "robot_lost":
        assert "libfranka" in real.end["stop_detail"]


def test_an_unreachable_target_is_clamped_into_the_fr3_range(sim, tmp_path):
    trace = tmp_path / "trace.npz"
    robot = make_robot(f"franka://{sim.host}?object=0.5,0,0.03&trace={trace}", PUSH_SPEC)
    try:
        first = robot.connect(timeout=20)
        ctrl = first.fields["motor_pos"].copy()
        ctrl[3] = 0.5  # joint 4 past the FR3's (and the Panda's) upper limit
        deadline = time.monotonic() + 10
        state = first
        while time.monotonic() < deadline:
            robot.send_command(Command(ctrl, np.zeros(8), np.zeros(8), RUN))
            s = robot.read_state()
            state = s or state
            if abs(state.fields["joint_pos"][3] - (FR3.q_max[3] - 0.02)) < 0.01:
                break
            time.sleep(0.04)
        assert state.fields["target_clamped"][0] >= 1
        assert abs(state.fields["joint_pos"][3] - (FR3.q_max[3] - 0.02)) < 0.01
    finally:
        robot.close()
    t = np.load(trace)
    assert t["q_c"][:, 3].max() <= FR3.q_max[3] - 0.02 + 1e-9
    _check_trace(trace)


@pytest.fixture
def verbose_sim():
    s = FrankySim(free_loopback(), verbose=True)  # its debug log shows the stiffness it receives
    yield s
    s.kill()


def test_scripted_reacher_reaches_a_goal_on_franky_sim(verbose_sim, tmp_path):
    """The whole deploy stack on franky-sim with a train-free policy: a zero residual on the
    scripted reacher (differential IK) drives panda-reach's end effector to a goal, measured
    from the arm's joint positions by forward kinematics; the spec's gains reach franky-sim."""
    import deploy
    import envs
    from test_deploy_wrapped import save_untrained
    from simrl.robust.residual import ResidualTask
    task = envs.make_task("panda-reach")
    ckpt = save_untrained(tmp_path / "reacher", ResidualTask(task, "reacher", 0.2))
    goal = (0.55, 0.12, 0.3)
    log = tmp_path / "reach.mcap"
    config = deploy.RuntimeConfig(command=goal, end_on_termination=False, safety=deploy.SafetyConfig(soft_start_s=1.5))
    sim = verbose_sim
    report = deploy.run(ckpt, f"franka://{sim.host}", 8.0, log, config=config,
                        policy=lambda x: np.zeros(7), connect_timeout=20)
    assert report.stop_reason is None and report.policy_steps > 50, report.summary()
    real = read_log(log)
    assert not real.truncated and real.end["stop_reason"] == "none"
    assert "lie within the FR3's" in real.meta.extra["limits"]
    assert "[1000.0, 1000.0, 750.0, 750.0, 300.0, 300.0, 300.0] Nm/rad from the checkpoint" in real.meta.extra["joint_impedance"]
    assert any("Joint stiffness values: [1000.0, 1000.0, 750.0, 750.0, 300.0, 300.0, 300.0]" in line
               for line in sim.lines)  # what franky-sim received over libfranka's protocol
    assert real.state["target_clamped"][-1, 0] == 0
    import mujoco
    data = mujoco.MjData(task.model)
    err = []
    for q in real.state["joint_pos"]:  # the measured joints -> the gripper site, as in training
        data.qpos[task.arm_qpos] = q
        mujoco.mj_kinematics(task.model, data)
        err.append(np.linalg.norm(data.site("gripper").xpos - np.array(goal)))
    # reached: within the task's success distance (franky-sim runs slower than real time under
    # load, so how soon varies; the policy then holds the pose)
    assert err[0] > 0.1 and min(err) < task.cfg.success_distance, (err[0], min(err), err[-1])


def test_bench_reach_measures_on_the_robot_and_logs(tmp_path, capsys):
    """``simrl bench reach`` end to end on its own franky-sim, with one goal and an untrained
    panda-reach checkpoint (what it measures, not how well: that is the benchmark's job)."""
    import json
    from policies.export import export
    from simrl.cli import main
    from test_export import trained_like_checkpoint
    ckpt = trained_like_checkpoint(tmp_path / "reach", "panda-reach", out_gain=0.5)
    export(ckpt, "onnx")
    assert main(["bench", "reach", "--checkpoint", ckpt, "--goals", "0"]) == 2
    assert "goals: must be >= 1" in capsys.readouterr().err
    out, logs = tmp_path / "bench.json", tmp_path / "logs"
    assert main(["bench", "reach", "--checkpoint", ckpt, "--goals", "1", "--seconds", "1", "--soft-start", "0.5",
                 "--logs", str(logs), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    row = r["goals"][0]
    assert r["summary"]["goals"] == 1 and row["stop_reason"] is None and row["policy_steps"] > 5
    goal = np.array(row["goal"])
    assert np.all(goal >= (0.35, -0.25, 0.2)) and np.all(goal <= (0.65, 0.25, 0.5))
    assert row["ee_pos_logged_vs_fk_m"] < 1e-9 and 0 < row["final_error_m"] < 1.0
    assert row["success"] == (row["final_error_m"] < 0.03)
    assert r["summary"]["cycles"] > 100 and r["summary"]["libfranka_period_ms"]["p50"] >= 1.0
    m = r["machine"]
    assert len(m["load_avg_start"]) == 3 and len(m["load_avg_end"]) == 3 and m["versions"]["pylibfranka"]
    assert read_log(logs / "goal_00.mcap").end["stop_reason"] == "none"
    capsys.readouterr()
    assert main(["bench", "reach", "--checkpoint", ckpt, "--goals", "1", "--logs", str(logs)]) == 2
    assert "not empty" in capsys.readouterr().err  # logs are never overwritten
