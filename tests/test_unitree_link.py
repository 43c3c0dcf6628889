"""The deploy reliability checks of the UDP link, on the Unitree DDS path against the twin:
injected loss, reordering and latency; garbage states (wrong CRC) from another publisher; a
NaN in a state; states that arrive late. (The killed twin is in test_unitree.py.)"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

import deploy
from deploy.clock import Rate
from deploy.robots import unitree_idl as idl
from deploy.robots.base import DAMP
from deploy.robots.mujoco import MujocoSim, SimConfig
from deploy.robots.udp import Faults
from deploy.robots.unitree import (LOWCMD, LOWSTATE, MotorMap, UnitreeRobot, command_from, low_state,
                                   parse_uri, participant)
from deploy.robots.unitree_server import TwinProcess
from envs.tasks import make_task
from policies.export import export
from simrl.core.logs import read_log
from test_export import trained_like_checkpoint
from test_unitree import domain_id, random_fill


@pytest.fixture(scope="module")
def go1_checkpoint(tmp_path_factory):
    ckpt = trained_like_checkpoint(tmp_path_factory.mktemp("unitree_link") / "go1", "go1-velocity",
                                   out_gain=0.3)
    export(ckpt, "onnx")
    return ckpt


def _publish_garbage(domain: int, stop: threading.Event, sent: list) -> None:
    """Random go LowState messages with a wrong CRC and a tick far ahead, every 10 ms."""
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic
    dp = participant(domain, "lo")
    writer = DataWriter(dp, Topic(dp, LOWSTATE, idl.GoLowState_))
    rng = random.Random(5)
    while not stop.wait(0.01):
        msg = random_fill(idl.zero(idl.GoLowState_), rng)
        msg.tick = 2 ** 31 - 1
        msg.crc = idl.crc(msg) ^ 1
        writer.write(msg)
        sent.append(msg)


def test_loss_reordering_latency_and_garbage_against_the_twin(go1_checkpoint, tmp_path):
    """5% loss both ways, 5% of states held back past newer ones, 10 ms latency, and garbage
    states from a third publisher: the run completes, the losses are counted, the garbage is
    rejected and never reaches the policy, and the robot clock never runs backwards."""
    domain = domain_id(11)
    stop, garbage = threading.Event(), []
    with TwinProcess(SimConfig("go1-velocity"), domain) as twin:
        thread = threading.Thread(target=_publish_garbage, args=(domain, stop, garbage), daemon=True)
        thread.start()
        try:
            cfg = deploy.RuntimeConfig(command=(0.3, 0.0, 0.0), end_on_termination=False,
                                       safety=deploy.SafetyConfig(soft_start_s=0.5, stale_timeout_s=1.0))
            report = deploy.run(go1_checkpoint, twin.uri, 2.0, tmp_path / "faults.mcap", config=cfg,
                                faults=Faults(loss=0.05, delay=0.05, delay_packets=3, latency_s=0.01, seed=2))
        finally:
            stop.set()
            thread.join()
    assert report.stop_reason is None, report.summary()
    assert report.steps == 100 and report.policy_steps >= 70
    link = report.link
    assert link["lost"] > 0 and link["late"] > 0, link
    assert garbage and link["rejected"] > 0, link
    assert link["sent"] == report.steps + 1  # and the closing damped stop
    log = read_log(tmp_path / "faults.mcap")
    assert np.all(np.diff(log.state["robot_time"][:, 0]) >= 0)
    assert log.state["robot_time"][-1, 0] < 1000  # never the garbage's tick (2^31 ms)
    assert np.abs(log.state["joint_pos"]).max() < 5  # never the garbage's joint angles
    assert log.safety["packets_lost"][-1] == link["lost"]


def _robot_with_a_nan(domain: int, bad_at: int, modes: list, stop: threading.Event) -> None:
    """A go1 on DDS (the twin's pieces, 50 Hz states) whose ``bad_at``-th state has a NaN joint
    angle; records whether each command it takes is damping (kp = 0)."""
    from cyclonedds.internal import InvalidSample
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    sim = MujocoSim(SimConfig("go1-velocity"))
    mm = MotorMap.from_model(sim.model)
    dp = participant(domain, "lo")
    writer = DataWriter(dp, Topic(dp, LOWSTATE, mm.family.state_type))
    reader = DataReader(dp, Topic(dp, LOWCMD, mm.family.cmd_type))
    rate, sent = Rate(0.02), 0
    while not stop.is_set():
        rate.wait()
        for msg in reader.take(N=16):
            if not isinstance(msg, InvalidSample):
                command = command_from(msg, mm)
                modes.append(DAMP if not command.kp.any() else 0)
                sim.submit(command)
        sim.step(5)
        fields = {k: v.copy() for k, v in sim.sample().fields.items()}
        sent += 1
        if sent == bad_at:
            fields["joint_pos"][3] = np.nan
        writer.write(low_state(fields, mm, round(sim.time * 1000)))


def test_a_nan_in_a_state_is_a_damped_stop(go1_checkpoint, tmp_path):
    domain = domain_id(12)
    modes, stop = [], threading.Event()
    thread = threading.Thread(target=_robot_with_a_nan, args=(domain, 60, modes, stop), daemon=True)
    thread.start()
    try:
        robot = UnitreeRobot(parse_uri(f"unitree://lo?domain={domain}"), make_task("go1-velocity").model)
        cfg = deploy.RuntimeConfig(command=(0.0, 0.0, 0.0), end_on_termination=False,
                                   safety=deploy.SafetyConfig(soft_start_s=0.3, stale_timeout_s=1.0))
        report = deploy.Runtime(go1_checkpoint, robot, cfg).run(4.0, tmp_path / "nan.mcap")
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert report.stop_reason == "nonfinite_state", report.summary()
    log = read_log(tmp_path / "nan.mcap", allow_nan=True)
    first = int(np.flatnonzero(log.safety["nonfinite_state"])[0])
    assert np.isnan(log.state["joint_pos"][first]).any()
    assert 0 in modes and modes[-1] == DAMP


def test_late_states_are_dropped_and_the_clock_never_runs_backwards():
    """States taken in one read: the newest valid one wins; an older tick than the last
    accepted one is late, a wrong CRC rejected (the next older state is tried)."""
    task = make_task("go1-velocity")
    robot = UnitreeRobot(parse_uri("unitree://lo"), task.model)
    mm = robot.map
    fields = {"joint_pos": task.default_pose.copy(), "joint_vel": np.zeros(12),
              "base_quat": np.array([1.0, 0, 0, 0]), "base_ang_vel": np.zeros(3)}
    batches = [[low_state(fields, mm, 100), low_state(fields, mm, 104)],
               [low_state(fields, mm, 96)],                                  # late
               [low_state(fields, mm, 108), idl.with_crc(low_state(fields, mm, 112))]]
    batches[2][1].crc ^= 1                                                   # corrupted
    robot._incoming = lambda: list(batches.pop(0))
    first = robot.read_state()
    assert first.stamp == pytest.approx(0.104) and robot.stats.received == 2
    assert robot.read_state() is None and robot.stats.late == 1
    third = robot.read_state()
    assert third.stamp == pytest.approx(0.108) and robot.stats.rejected == 1
    ignoring = UnitreeRobot(parse_uri("unitree://lo?crc=ignore"), task.model)
    bad = low_state(fields, mm, 5)
    bad.crc ^= 1
    ignoring._incoming = lambda: [bad]
    assert ignoring.read_state().stamp == pytest.approx(0.005)
    with pytest.raises(ValueError, match="crc"):
        parse_uri("unitree://lo?crc=maybe")


class _StallingPolicy:
    """The checkpoint's ONNX policy; the ``at``-th calls stall the runtime for ``seconds`` (a
    loaded robot computer), as a blocked loop does between two reads."""

    def __init__(self, checkpoint, at: tuple[int, ...], seconds: float):
        from deploy.policy import OnnxPolicy
        from simrl.core.spec import load_spec
        self.policy, self.at, self.seconds, self.calls = OnnxPolicy(checkpoint, load_spec(checkpoint)), at, seconds, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls in self.at:
            time.sleep(self.seconds)
        return self.policy(x)


def test_runtime_stalls_with_lost_states_are_not_stale(go1_checkpoint, tmp_path):
    """Runtime stalls of 0.15 s (more than 3 periods, less than the stale timeout) on a link
    that loses 30% of the states: after each stall the next read brings a new state, so the
    watchdog (no new state for stale_timeout_s on a monotonic clock) does not stop. The old
    watchdog, which compared the robot time of consecutive reads and stopped when states were
    lost over more than 3 periods of it, stopped at the first stall."""
    domain = domain_id(13)
    with TwinProcess(SimConfig("go1-velocity"), domain) as twin:
        robot = UnitreeRobot(parse_uri(twin.uri), make_task("go1-velocity").model, Faults(loss=0.3, seed=4))
        cfg = deploy.RuntimeConfig(command=(0.3, 0.0, 0.0), end_on_termination=False,
                                   safety=deploy.SafetyConfig(soft_start_s=0.5, stale_timeout_s=0.2))
        policy = _StallingPolicy(go1_checkpoint, at=(5, 20, 35), seconds=0.15)
        report = deploy.Runtime(go1_checkpoint, robot, cfg, policy).run(2.0, tmp_path / "stalls.mcap")
    assert report.stop_reason is None, report.summary()
    assert report.safety_events["stale_data"] == 0 and report.link["lost"] > 0, report.link
    assert report.deadline_misses >= 3 * 6  # the loop really stalled, 3 times over 6 periods
    robot_time = read_log(tmp_path / "stalls.mcap").state["robot_time"][:, 0]
    assert (np.diff(robot_time) > 0.1).sum() >= 3  # robot time ran on during each stall
