"""The robot link protocol: codec, malformed packets, loss and reordering, and a real-time
deploy over UDP loopback against ``simrl robot-server`` with a lossy, reordering link."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deploy
from deploy.robots.base import DAMP, Command
from deploy.robots.udp import (COMMAND, HEADER, STATE, Faults, FaultySocket, Link, ProtocolError,
                               UdpRobot, decode, decode_command, decode_state, encode,
                               encode_command, encode_state)
from policies.export import export
from simrl.core.logs import read_log
from test_export import trained_like_checkpoint


def state_packet(seq: int = 0) -> bytes:
    fields = {"joint_pos": np.arange(3.0), "motor_vel": np.array([-1.5, np.nan]), "x": np.zeros(0)}
    return encode(STATE, seq, 1.25, encode_state(fields))


def test_codec_round_trip():
    packet = decode(state_packet(7))
    assert (packet.type, packet.seq, packet.stamp) == (STATE, 7, 1.25)
    fields = decode_state(packet.payload)
    assert list(fields) == ["joint_pos", "motor_vel", "x"]
    np.testing.assert_array_equal(fields["joint_pos"], [0, 1, 2])
    assert np.isnan(fields["motor_vel"][1]) and fields["x"].shape == (0,)
    cmd = Command(np.array([0.1, -0.2]), np.array([35.0, 35.0]), np.array([0.5, 0.5]), DAMP)
    back = decode_command(decode(encode(COMMAND, 3, 0.0, encode_command(cmd))).payload)
    assert back.mode == DAMP
    for a, b in ((back.ctrl, cmd.ctrl), (back.kp, cmd.kp), (back.kd, cmd.kd)):
        np.testing.assert_array_equal(a, b)
    assert len(state_packet()) > HEADER.size == 36


@pytest.mark.parametrize("mutate", [
    lambda p: p[:10],                                   # short
    lambda p: b"",                                      # empty
    lambda p: b"XXXX" + p[4:],                          # magic
    lambda p: p[:4] + b"\x09" + p[5:],                  # version
    lambda p: p[:5] + b"\x63" + p[6:],                  # type
    lambda p: p[:-1],                                   # payload shorter than stated
    lambda p: p + b"\0",                                # longer
    lambda p: p[:-3] + bytes([p[-3] ^ 0x10]) + p[-2:],  # bit flip: bad CRC
    lambda p: os.urandom(200),                          # garbage
])
def test_malformed_packets_are_rejected(mutate):
    with pytest.raises(ProtocolError):
        decode(mutate(state_packet()))


@pytest.mark.parametrize("payload", [
    b"", b"\x05\x00",                                 # missing fields
    b"\x01\x00\x03ab",                                # name cut short
    b"\x01\x00\x01\xff\x01\x00" + bytes(8),           # non-ASCII name
    b"\x01\x00\x01a\x02\x00" + bytes(8),              # fewer values than stated
    b"\x00\x00junk",                                  # trailing bytes
])
def test_bad_state_payloads_are_rejected(payload):
    with pytest.raises(ProtocolError):
        decode_state(payload)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x02\x00" + bytes(47), b"\x07\x00\x00\x00"])
def test_bad_command_payloads_are_rejected(payload):
    with pytest.raises(ProtocolError):
        decode_command(payload)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), flip=st.integers(0, 8 * 200))
def test_fuzzed_bytes_never_crash_the_decoder(data, flip):
    for candidate in (data, HEADER.pack(b"SIMR", 2, STATE, 0, 0, 0, 0.0, len(data), 0) + data):
        try:
            decode_state(decode(candidate).payload)
        except ProtocolError:
            pass
    valid = bytearray(state_packet())
    valid[flip // 8 % len(valid)] ^= 1 << (flip % 8)
    with pytest.raises(ProtocolError):
        decode(bytes(valid))


def test_link_counts_losses_reordering_and_garbage():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = Link(a)
    receiver = Link(FaultySocket(b, Faults(loss=0.1, delay=0.1, delay_packets=2, seed=3)))
    sender.start_session(77)
    receiver.start_session(77)
    got = []
    for i in range(200):
        sender.send(STATE, encode_state({"i": np.array([i])}))
        if i % 50 == 0:
            a.send(b"garbage that is long enough to look like a header....")
        got += [int(decode_state(p.payload)["i"][0]) for p, _ in receiver.receive()]
    s = receiver.stats
    assert got == sorted(got) and len(set(got)) == len(got)  # only newer packets come out
    assert s.rejected == 4 and s.late > 0 and s.lost > 0
    assert s.received == len(got) + s.late
    assert len(got) + s.late + s.lost <= 200
    a.close()
    b.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_realtime_deploy_over_a_lossy_reordering_link(tmp_path):
    """5% loss both ways and 5% of states delayed past newer ones, plus garbage datagrams
    to both ends: the loop runs its full duration and logs the losses (the garbage never
    reaches the runtime)."""
    ckpt = trained_like_checkpoint(tmp_path / "c")
    export(ckpt)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "simrl.cli", "robot-server", "--checkpoint", ckpt,
                               "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert "robot server" in server.stdout.readline()
        robot = UdpRobot("127.0.0.1", port, Faults(loss=0.05, delay=0.05, delay_packets=3, seed=0))
        stop = threading.Event()

        def garbage() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                while not stop.wait(0.05):
                    for target in (("127.0.0.1", port), robot.address):
                        s.sendto(os.urandom(40) + struct.pack("<I", 7), target)
        thread = threading.Thread(target=garbage, daemon=True)
        thread.start()
        config = deploy.RuntimeConfig(end_on_termination=False,
                                      safety=deploy.SafetyConfig(stale_periods=60))
        report = deploy.run(ckpt, robot, 1.5, tmp_path / "udp.mcap", config=config)
        stop.set()
        thread.join()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(10) == 0
    assert report.stop_reason is None and report.steps == round(1.5 / report.control_period_s)
    assert report.link["lost"] > 0 and report.link["late"] > 0
    assert report.link["rejected"] == 0  # the runtime's socket is connected: the kernel drops strangers
    log = read_log(tmp_path / "udp.mcap")
    assert len(log) == report.steps and log.meta.source == "robot"
    assert log.safety["packets_lost"][-1] > 0 and np.all(np.diff(log.safety["packets_rejected"]) >= 0)
    assert np.all(np.diff(log.state["robot_time"][:, 0]) >= 0)  # never an older state
