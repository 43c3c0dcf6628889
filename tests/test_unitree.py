"""The Unitree SDK 2 back-end: message parity with Unitree's own Python SDK, the CRC, and real
deploys over DDS on loopback against the MuJoCo twin (``simrl robot-server --protocol
unitree``), each in its own process."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
import time
import types
import typing
from dataclasses import fields
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import deploy
from deploy.robots import unitree_idl as idl
from deploy.robots.base import DAMP, Command
from deploy.robots.mujoco import SimConfig
from deploy.robots.unitree import (GO_MOTORS, MotorMap, UnitreeRobot, command_from, low_cmd,
                                   low_state, parse_uri)
from deploy.robots.unitree_server import TwinProcess
from envs.tasks import make_task
from policies.export import export
from simrl.core.logs import read_log
from test_export import trained_like_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
TYPES = ["LowState_", "LowCmd_", "MotorState_", "MotorCmd_", "IMUState_"]
GO_ONLY = ["BmsState_", "BmsCmd_"]


def domain_id(offset: int) -> int:
    """A DDS domain of this test run (other runs on the machine use others)."""
    return 100 + (os.getpid() * 7 + offset) % 120


# -- messages and CRC -------------------------------------------------------------------------
def unitree_sdk2py() -> tuple[types.ModuleType, types.ModuleType, object]:
    """Unitree's message modules (go, hg) and CRC helper from the installed unitree_sdk2py,
    without running its package ``__init__`` (it imports a ``b2`` subpackage the 1.0.1 wheel
    lacks); its CRC helper is built as on a non-Linux system (it then uses its pure Python
    crc32_core instead of a shared library the wheel does not ship)."""
    shim = sys.modules.get("unitree_sdk2py")
    spec = shim.__spec__ if shim is not None and shim.__spec__ else None
    if shim is None:
        spec = importlib.util.find_spec("unitree_sdk2py")
    if shim is None and spec is None:
        pytest.skip("unitree-sdk2 not installed (pip install --no-deps unitree-sdk2==1.0.1): "
                    "message parity with Unitree's SDK not checked")
    if "unitree_sdk2py" not in sys.modules:  # stays: cyclonedds resolves nested types lazily
        shim = types.ModuleType("unitree_sdk2py")
        shim.__path__ = list(spec.submodule_search_locations)
        sys.modules["unitree_sdk2py"] = shim
    from unitree_sdk2py.idl.unitree_go.msg import dds_ as go
    from unitree_sdk2py.idl.unitree_hg.msg import dds_ as hg
    with mock.patch("platform.system", return_value="Darwin"):
        from unitree_sdk2py.utils.crc import CRC
        crc = CRC()
    return go, hg, crc


def ours(family: str, name: str) -> type:
    return getattr(idl, ("Go" if family == "go" else "Hg") + name)


def random_fill(msg, rng: random.Random):
    """Random values of the right type in every field (in place)."""
    hints = typing.get_type_hints(type(msg), include_extras=True)
    for f in fields(msg):
        setattr(msg, f.name, _random_value(hints[f.name], getattr(msg, f.name), rng))
    return msg


def _random_value(hint, value, rng):
    args = typing.get_args(hint)
    if len(args) == 2 and isinstance(args[1], str):
        kind = args[1]
        if kind == "float32":
            return float(np.float32(rng.uniform(-100, 100)))
        bits = int(kind.lstrip("uint"))
        # Unitree's CRC helper packs some unsigned fields as signed: stay in the common range
        return rng.randrange(0, 2 ** (bits - 1)) if kind.startswith("u") else rng.randrange(-2 ** (bits - 1), 2 ** (bits - 1))
    if isinstance(value, list):
        sub = args[1].subtype
        return [_random_value(sub, v, rng) for v in value]
    return random_fill(value, rng)


def _describe(hint) -> str:
    """A field type as text: 'float32', 'uint8[2]', nested structs by their DDS type name."""
    if isinstance(hint, str):
        return hint
    if hasattr(hint, "__idl_typename__"):
        return hint.__idl_typename__
    if hasattr(hint, "subtype") and hasattr(hint, "length"):
        return f"{_describe(hint.subtype)}[{hint.length}]"
    args = typing.get_args(hint)
    if len(args) == 2:
        return _describe(args[1])
    raise TypeError(f"unexpected field type {hint!r}")


def _field_kinds(cls) -> list[tuple[str, str]]:
    """(field name, type) in order, nested types by their DDS type name."""
    from cyclonedds.idl._type_normalize import get_extended_type_hints
    return [(name, _describe(hint)) for name, hint in get_extended_type_hints(cls).items()]


@pytest.mark.parametrize("family", ["go", "hg"])
def test_messages_match_unitree_sdk2py(family):
    go, hg, unitree_crc = unitree_sdk2py()
    theirs_mod = go if family == "go" else hg
    rng = random.Random(3)
    for name in TYPES + (GO_ONLY if family == "go" else []):
        mine, theirs = ours(family, name), getattr(theirs_mod, name)
        assert mine.__idl_typename__ == theirs.__idl_typename__ == f"unitree_{family}.msg.dds_.{name}"
        assert _field_kinds(mine) == _field_kinds(theirs), name
    for name in ("LowState_", "LowCmd_"):
        mine_cls, theirs_cls = ours(family, name), getattr(theirs_mod, name)
        msg = random_fill(idl.zero(mine_cls), rng)
        msg.crc = idl.crc(msg)
        back = theirs_cls.deserialize(msg.serialize())          # ours -> theirs
        assert back.serialize() == msg.serialize()
        assert unitree_crc.Crc(back) == msg.crc                 # the same CRC by Unitree's code
        other = mine_cls.deserialize(back.serialize())          # theirs -> ours
        assert other.serialize() == msg.serialize() and idl.crc(other) == msg.crc
    # our commands, signed by our CRC, as Unitree's code reads and signs them (Go1 -> go, G1 -> hg)
    task = make_task("go1-velocity" if family == "go" else "g1-stand")
    n = task.model.nu
    cmd = low_cmd(Command(np.full(n, 0.3), np.full(n, 20.0), np.full(n, 0.5)), MotorMap.from_model(task.model),
                  mode_machine=5)
    assert unitree_crc.Crc(theirs_mod.LowCmd_.deserialize(cmd.serialize())) == cmd.crc
    assert len(cmd.motor_cmd) == (20 if family == "go" else 35)
    if family == "hg":
        assert cmd.mode_machine == 5 and all(m.mode == 1 for m in cmd.motor_cmd[:29])
        assert all(m.mode == 0 for m in cmd.motor_cmd[29:])


def crc32_core_reference(words):
    """Unitree's crc32_core, bit by bit as in its SDK's C source."""
    crc, poly = 0xFFFFFFFF, 0x04C11DB7
    for word in words:
        for b in range(31, -1, -1):
            crc = ((crc << 1) & 0xFFFFFFFF) ^ (poly if crc & 0x80000000 else 0)
            if (word >> b) & 1:
                crc ^= poly
    return crc


def test_crc_known_answers():
    assert idl.crc32_core(np.array([1, 2, 3], np.uint32)) == 0x64C51784
    assert idl.crc32_core([]) == 0xFFFFFFFF
    rng = np.random.default_rng(0)
    for n in (1, 5, 202):
        words = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
        assert idl.crc32_core(words) == crc32_core_reference(words.tolist())
    # struct sizes in Unitree's SDK (its CRC helper's comments) and zero messages' CRCs
    sizes = {idl.GoLowCmd_: 812, idl.GoLowState_: 1180, idl.HgLowCmd_: 1004, idl.HgLowState_: 2092}
    for cls, size in sizes.items():
        assert idl.c_struct(cls).size == size, cls
    assert idl.crc(idl.zero(idl.GoLowCmd_)) == 0x4B5A4880
    assert idl.crc(idl.zero(idl.HgLowCmd_)) == 0xFE172F9F
    msg = idl.zero(idl.GoLowCmd_)
    msg.motor_cmd[3].kp = 20.0
    raw = idl.pack_c(msg)
    assert idl.crc(msg) == crc32_core_reference(np.frombuffer(raw[:-4], "<u4").tolist())


def test_uri_and_motor_map():
    assert parse_uri("unitree://eth0").iface == "eth0" and parse_uri("unitree://eth0").domain == 0
    addr = parse_uri("unitree://lo?robot=hg&domain=7")
    assert (addr.iface, addr.robot, addr.domain) == ("lo", "hg", 7)
    for bad, word in [("unitree://", "interface"), ("unitree://lo?robot=b1", "robot"),
                      ("unitree://lo?domain=x", "domain"), ("unitree://lo?speed=1", "speed")]:
        with pytest.raises(ValueError, match=word):
            parse_uri(bad)
    task = make_task("go1-velocity")
    mm = MotorMap.from_model(task.model)
    assert mm.family.name == "go" and GO_MOTORS[mm.actuator[4]] == "FL_thigh"
    np.testing.assert_array_equal(mm.actuator, np.arange(12))  # Menagerie's order is Unitree's
    with pytest.raises(ValueError, match="no motor named 'FR_hip'"):
        MotorMap.from_model(task.model, "hg")
    cmd = low_cmd(Command(np.linspace(-1, 1, 12), np.full(12, 20.0), np.full(12, 0.5), DAMP), mm)
    assert all(m.kp == 0 and m.kd == 0.5 for m in cmd.motor_cmd[:12])   # damping mode
    assert all(m.mode == 0 and m.kd == 0 for m in cmd.motor_cmd[12:])
    back = command_from(cmd, mm)
    np.testing.assert_allclose(back.ctrl, np.linspace(-1, 1, 12), atol=1e-6)
    cmd.motor_cmd[0].q += 0.01  # not re-signed
    with pytest.raises(ValueError, match="CRC"):
        command_from(cmd, mm)


# -- deploys against the twin -----------------------------------------------------------------
@pytest.fixture(scope="module")
def go1_checkpoint(tmp_path_factory):
    ckpt = trained_like_checkpoint(tmp_path_factory.mktemp("unitree") / "go1", "go1-velocity",
                                   out_gain=0.3)
    export(ckpt, "onnx")
    return ckpt


def start_twin(domain: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "simrl.cli", "robot-server", "--protocol", "unitree",
                             "--task", "go1-velocity", "--domain", str(domain), *extra],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert "Unitree SDK 2 robot (go)" in line, line + proc.stdout.read()
    return proc


def test_deploy_on_the_twin_with_the_start_up_sequence(go1_checkpoint, tmp_path):
    domain = domain_id(1)
    twin = start_twin(domain)
    try:
        log = tmp_path / "unitree.mcap"
        out = subprocess.run([sys.executable, "-m", "simrl.cli", "deploy", "--checkpoint", go1_checkpoint,
                              "--robot", f"unitree://lo?domain={domain}", "--duration", "3",
                              "--zero-torque", "0.2", "--soft-start", "1", "--stale-timeout", "1", "--command", "0.3", "0", "0",
                              "--log", str(log), "--json", str(tmp_path / "r.json")],
                             env=ENV, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        twin.send_signal(signal.SIGINT)
        twin_out = twin.communicate(timeout=10)[0]
    import json
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["stop_reason"] is None and report["steps"] == 150
    assert report["link"]["received"] > 150  # states at the physics rate (250 Hz when the CPU allows)
    # the start-up sequence, step by step in the log: zero torque, soft start, the policy
    rec = read_log(log)
    zero, soft = rec.safety["zero_torque"].astype(bool), rec.safety["soft_start"].astype(bool)
    assert zero[:10].all() and not zero[10:].any()
    assert soft[10:60].all() and not soft[60:].any()
    assert not np.any(rec.action[:60]) and np.abs(rec.action[60:]).max() > 0.05
    # the robot stood through it (the twin's base stays up) and took every command
    assert rec.obs[-1, 5] < -0.9  # gravity direction: upright
    assert "rejected (bad CRC or values)" in twin_out
    applied = int(twin_out.split(" commands applied")[0].split()[-1])
    assert applied >= 140 and " 0 rejected" in twin_out, twin_out


class _KillsTwin(UnitreeRobot):
    """The real back-end; once connected, kills the twin's process after ``after`` seconds."""

    def __init__(self, twin: TwinProcess, after: float, *a):
        super().__init__(*a)
        self.twin, self.after = twin, after

    def connect(self, timeout=60.0, cancel=None):
        sample = super().connect(timeout, cancel)
        threading.Timer(self.after, os.kill, (self.twin.process.pid, signal.SIGKILL)).start()
        return sample


def test_killed_twin_means_damping_within_three_periods(go1_checkpoint, tmp_path):
    domain = domain_id(2)
    spec_task = make_task("go1-velocity")
    with TwinProcess(SimConfig("go1-velocity"), domain) as twin:
        robot = _KillsTwin(twin, 1.5, parse_uri(f"unitree://lo?domain={domain}"), spec_task.model)
        cfg = deploy.RuntimeConfig(command=(0.3, 0.0, 0.0), safety=deploy.SafetyConfig(
            soft_start_s=0.5, stale_timeout_s=0.05))  # stop in the 3rd period without a state
        report = deploy.Runtime(go1_checkpoint, robot, cfg).run(5.0, tmp_path / "kill.mcap")
    assert report.stop_reason == "stale_data", report.summary()
    rec = read_log(tmp_path / "kill.mcap")
    robot_time = rec.state["robot_time"][:, 0]
    last_fresh = int(np.flatnonzero(np.diff(robot_time) > 0)[-1]) + 1  # the last step with a new state
    first_stop = int(np.flatnonzero(rec.safety["stale_data"])[0])
    assert 1 <= first_stop - last_fresh <= 3, (last_fresh, first_stop)
    assert 1.3 < first_stop * 0.02 < 2.5


def test_g1_stands_on_the_twin_through_hg_messages(tmp_path):
    """``simrl bench stand``: the Menagerie G1 on the twin, a scripted PD stand through the
    runtime over unitree_hg messages; the pelvis stays up."""
    import json
    from simrl.cli import main
    code = main(["bench", "stand", "--seconds", "3", "--soft-start", "0.5", "--domain", str(domain_id(4)),
                 "--json", str(tmp_path / "stand.json")])
    result = json.loads((tmp_path / "stand.json").read_text())
    assert code == 0 and result["stood"], result
    assert result["min_pelvis_height_m"] > 0.7 and result["held_s"] > 2.5
    assert "(hg," in result["report"]["robot"] and result["report"]["stop_reason"] is None
    assert result["twin"]["commands"] >= 140 and result["twin"]["rejected"] == 0
    assert result["machine"]["versions"]["cyclonedds"] and len(result["machine"]["load_avg_end"]) == 3


def test_commands_echo_the_robots_mode_machine():
    """A G1 command carries the mode_machine its state reported (the robot ignores others)."""
    task = make_task("g1-stand")
    robot = UnitreeRobot(parse_uri("unitree://lo"), task.model)
    fields = {"joint_pos": task.default_pose, "joint_vel": np.zeros(29),
              "base_quat": np.array([1.0, 0, 0, 0]), "base_ang_vel": np.zeros(3)}
    state = low_state(fields, robot.map, 10)
    state.mode_machine = 6
    robot._incoming = lambda: [idl.with_crc(state)]
    assert robot.read_state().fields["joint_pos"] == pytest.approx(task.default_pose, abs=1e-6)
    sent = []
    robot._writer = types.SimpleNamespace(write=sent.append)
    robot.send_command(Command(task.default_pose, np.full(29, 100.0), np.full(29, 2.0)))
    assert sent[0].mode_machine == 6 and sent[0].crc == idl.crc(sent[0])
