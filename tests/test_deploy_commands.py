"""Velocity commands for a deployed policy: the Unitree remote's bytes (checked against
unitree_sdk2py's reader), a keyboard, and a run on the twin whose scripted remote changes the
command and presses select (the e-stop)."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

import deploy
from deploy.commands import CommandScale, KeyboardCommands, RemoteCommands, make_command_source
from deploy.robots import unitree_idl as idl
from deploy.robots.mujoco import SimConfig
from deploy.robots.unitree import (REMOTE_KEYS, MotorMap, encode_remote, parse_remote, parse_uri,
                                   state_fields)
from deploy.robots.unitree_server import RemoteSchedule, TwinProcess
from simrl.core.spec import load_spec
from envs.tasks import make_task
from simrl.core.logs import read_log
from test_unitree import domain_id, unitree_sdk2py
from test_unitree_link import go1_checkpoint  # noqa: F401  (fixture)


def sdk_joystick():
    """unitree_sdk2py's Joystick (its remote reader). Its module imports pygame for a gamepad
    subclass only; Joystick.extract does not use it, so an empty module stands in when pygame
    is not installed."""
    unitree_sdk2py()  # skips without the SDK; makes its package importable
    if "pygame" not in sys.modules:
        try:
            import pygame  # noqa: F401
        except ImportError:
            sys.modules["pygame"] = types.ModuleType("pygame")
    from unitree_sdk2py.utils.joystick import Joystick
    return Joystick()


def test_remote_bytes_match_unitree_sdk2py():
    data = encode_remote(lx=0.3, rx=-0.5, ry=0.1, ly=0.8, keys=("A", "select", "up", "R2"))
    lx, rx, ry, ly, keys = parse_remote(data)
    assert (lx, rx, ry, ly) == pytest.approx((0.3, -0.5, 0.1, 0.8))
    assert [REMOTE_KEYS[i] for i in range(16) if int(keys) >> i & 1] == ["select", "R2", "A", "up"]
    joystick = sdk_joystick()
    joystick.extract(data)
    smooth = 0.03  # the SDK low-passes its sticks: the first reading is 3% of the value
    assert (joystick.lx.data, joystick.rx.data, joystick.ry.data, joystick.ly.data) == pytest.approx(
        tuple(smooth * v for v in (0.3, -0.5, 0.1, 0.8)))
    pressed = {n for n in ("A", "B", "X", "Y", "up", "down", "left", "right", "start", "back",
                           "LB", "RB", "LT", "RT") if getattr(joystick, n).pressed}
    assert pressed == {"A", "back", "up", "RT"}  # the SDK's back is select, RT is R2
    # through a real LowState: Unitree's message type -> ours -> the state's remote field
    go, _, _ = unitree_sdk2py()
    mm = MotorMap.from_model(make_task("go1-velocity").model)
    theirs = go.LowState_.deserialize(idl.zero(idl.GoLowState_).serialize())
    theirs.wireless_remote = data
    fields = state_fields(idl.GoLowState_.deserialize(theirs.serialize()), mm)
    np.testing.assert_allclose(fields["remote"], [0.3, -0.5, 0.1, 0.8, keys], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown remote key 'Z'"):
        encode_remote(keys=("Z",))


def test_remote_commands_follow_deploy_reals_mapping():
    source = RemoteCommands(CommandScale(1.5, 0.5, 2.0))
    remote = lambda **kw: {"remote": parse_remote(encode_remote(**kw))}  # noqa: E731
    np.testing.assert_allclose(source.update(remote(ly=0.5, lx=-1.0, rx=0.25)), [0.75, 0.5, -0.5])
    np.testing.assert_allclose(source.update(remote(ly=0.03, lx=0.02)), [0, 0, 0])  # dead zone
    assert not source.estop
    source.update(remote(keys=("select",)))
    assert source.estop
    with pytest.raises(ValueError, match="reports no remote"):
        RemoteCommands().update({"joint_pos": np.zeros(12)})
    assert make_command_source("fixed") is None
    with pytest.raises(ValueError, match="--command-source"):
        make_command_source("gamepad")
    with pytest.raises(ValueError, match="command scale vy"):
        CommandScale(1.0, -0.5, 1.0)


def test_keyboard_commands_from_a_pipe():
    read, write = os.pipe()
    try:
        keys = KeyboardCommands(CommandScale(1.0, 0.5, 1.0), step=0.2, fd=read)
        assert keys.update({}) is None                     # nothing typed: unchanged
        os.write(write, b"wwwa")
        np.testing.assert_allclose(keys.update({}), [0.6, 0.2, 0.0])
        os.write(write, b"wwwwwwaaaaqx")                   # clipped to the scale; x is no key
        np.testing.assert_allclose(keys.update({}), [1.0, 0.5, 0.2])
        os.write(write, b" e")
        np.testing.assert_allclose(keys.update({}), [0.0, 0.0, -0.2])
        keys.close()
    finally:
        os.close(read)
        os.close(write)


def test_remote_schedule_file_errors(tmp_path):
    s = RemoteSchedule.from_entries([{"t": 0, "ly": 0.5}, {"t": 2, "keys": ["select"]}])
    assert parse_remote(s.at(-1))[3] == 0 and parse_remote(s.at(1.0))[3] == 0.5
    assert int(parse_remote(s.at(2.5))[4]) == 1 << REMOTE_KEYS.index("select")
    bad = tmp_path / "bad.yaml"
    for text, word in [("- {t: 0, ly: 2}", "entry 0: ly must be in"), ("- {t: 1}\n- {t: 0}", "entry 1: t must"),
                       ("- {t: 0, speed: 1}", "unknown field 'speed'"), ("{}", "non-empty list")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=word):
            RemoteSchedule.load(str(bad))


def test_the_twins_scripted_remote_drives_the_command_and_select_stops(go1_checkpoint, tmp_path):  # noqa: F811
    schedule = RemoteSchedule.from_entries([{"t": 0.0}, {"t": 1.2, "ly": 0.5, "rx": -0.4},
                                            {"t": 2.2, "keys": ["select"]}])
    domain = domain_id(21)
    with TwinProcess(SimConfig("go1-velocity"), domain, remote_schedule=schedule) as twin:
        robot = deploy.make_robot(twin.uri, load_spec(go1_checkpoint))
        cfg = deploy.RuntimeConfig(end_on_termination=False,
                                   safety=deploy.SafetyConfig(soft_start_s=0.5, stale_timeout_s=1.0))
        report = deploy.Runtime(go1_checkpoint, robot, cfg, commands=RemoteCommands()).run(
            5.0, tmp_path / "remote.mcap")
    assert report.stop_reason == "estop", report.summary()
    log = read_log(tmp_path / "remote.mcap")
    command, t = log.state["command"], log.t - log.t[0]
    assert np.all(command[t < 1.0] == 0)
    late = (t > 1.6) & ~log.safety["estop"].astype(bool)
    np.testing.assert_allclose(command[late], np.tile([0.5, 0.0, 0.4], (late.sum(), 1)), atol=1e-6)
    assert 1.9 < t[np.flatnonzero(log.safety["estop"])[0]] < 3.0
    assert report.steps < 5.0 / report.control_period_s
    assert parse_uri(twin.uri).domain == domain
