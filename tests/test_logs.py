"""Tests for simrl.core.logs: the MCAP real-log writer and reader."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer

from simrl.core.logs import (LogError, LogMeta, LogWriter, TruncatedLogWarning, check_compatible,
                        read_log, read_logs)

REPO = Path(__file__).resolve().parents[1]
OBS = [f"o{i}" for i in range(12)]
ACT = [f"a{i}" for i in range(4)]


def make_meta(**kw) -> LogMeta:
    args = dict(robot="go1", task="flat_walk", control_period=0.02, observation_names=OBS,
                action_names=ACT, policy_id="ckpt-0042", source="robot", extra={"operator": "ann"})
    args.update(kw)
    return LogMeta(**args)


def make_steps(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [dict(t=i * 0.02, step=i,
                 state={"joint_pos": rng.standard_normal(4), "base_quat": rng.standard_normal(4),
                        "rot": rng.standard_normal((2, 3))},
                 obs=rng.standard_normal(len(OBS)), action=rng.standard_normal(len(ACT)),
                 safety={"estop": bool(i % 7 == 0), "clip_count": i % 3})
            for i in range(n)]


def write_log(path: Path, steps: list[dict], meta: LogMeta | None = None, **kw) -> Path:
    with LogWriter(path, meta or make_meta(), **kw) as w:
        for s in steps:
            w.write(**s)
    return path


def test_round_trip_bit_exact(tmp_path):
    steps = make_steps(500)
    log = read_log(write_log(tmp_path / "run.mcap", steps))
    assert log.meta == make_meta() and not log.truncated and len(log) == 500
    assert log.obs.dtype == np.float64 and log.obs.shape == (500, len(OBS))
    np.testing.assert_array_equal(log.obs, np.stack([s["obs"] for s in steps]))
    np.testing.assert_array_equal(log.action, np.stack([s["action"] for s in steps]))
    np.testing.assert_array_equal(log.t, [s["t"] for s in steps])
    np.testing.assert_array_equal(log.step, np.arange(500))
    assert log.state["rot"].shape == (500, 2, 3)
    for k in ("joint_pos", "base_quat", "rot"):
        np.testing.assert_array_equal(log.state[k], np.stack([s["state"][k] for s in steps]))
    assert log.safety["estop"].dtype == bool and log.safety["estop"].tolist() == [i % 7 == 0 for i in range(500)]
    assert log.safety["clip_count"].tolist() == [i % 3 for i in range(500)]


def test_plain_mcap_reader_chunked_zstd(tmp_path):
    path = write_log(tmp_path / "run.mcap", make_steps(500))
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert len(summary.chunk_indexes) > 1
        assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
        assert all(c.compressed_size < c.uncompressed_size for c in summary.chunk_indexes)
        assert max(c.uncompressed_size for c in summary.chunk_indexes) < 80 * 1024
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        assert json.loads(meta["simrl"]["observation_names"]) == OBS
        msgs = list(reader.iter_messages(topics=["/simrl/step"]))
    assert len(msgs) == 500
    schema, channel, message = msgs[3]
    assert schema.encoding == "jsonschema" and channel.message_encoding == "json"
    assert json.loads(message.data)["step"] == 3


def test_truncated_file_reads_whole_chunks(tmp_path):
    steps = make_steps(500)
    data = write_log(tmp_path / "run.mcap", steps).read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.warns(TruncatedLogWarning, match=r"cut\.mcap.*recovered \d+ messages"):
        log = read_log(cut)
    assert log.truncated and 0 < len(log) < 500
    n = len(log)
    assert len(log) >= 500 * 0.7 * 0.8  # lost at most about one chunk beyond the cut
    np.testing.assert_array_equal(log.step, np.arange(n))
    np.testing.assert_array_equal(log.obs, np.stack([s["obs"] for s in steps[:n]]))


def test_killed_writer_without_close(tmp_path):
    path = tmp_path / "killed.mcap"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from simrl.core.logs import LogMeta, LogWriter
        meta = LogMeta("go1", "flat_walk", 0.02, {OBS!r}, {ACT!r}, "p", "robot")
        w = LogWriter({str(path)!r}, meta, chunk_size=4096)
        for i in range(300):
            w.write(i * 0.02, i, {{"joint_pos": np.full(4, i)}}, np.full({len(OBS)}, float(i)),
                    np.zeros({len(ACT)}))
        os._exit(0)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    with pytest.warns(TruncatedLogWarning, match="killed.mcap"):
        log = read_log(path)
    assert 200 < len(log) < 300  # only the last, unfinished chunk is lost
    np.testing.assert_array_equal(log.step, np.arange(len(log)))
    np.testing.assert_array_equal(log.obs[:, 0], np.arange(len(log)))


def test_flush_and_chunk_steps(tmp_path):
    path = tmp_path / "run.mcap"
    w = LogWriter(path, make_meta(), chunk_steps=10)
    for s in make_steps(25):
        w.write(**s)
    with pytest.warns(TruncatedLogWarning):
        assert len(read_log(path)) == 20  # two full chunks of 10 on disk before close
    w.flush()
    with pytest.warns(TruncatedLogWarning):
        assert len(read_log(path)) == 25
    w.close()
    assert len(read_log(path)) == 25


@pytest.mark.parametrize("content", [b"", b"not an mcap file at all" * 10])
def test_not_mcap(tmp_path, content):
    path = tmp_path / "bad.mcap"
    path.write_bytes(content)
    with pytest.raises(LogError, match=r"bad\.mcap.*magic.*not an MCAP"):
        read_log(path)


def test_no_metadata(tmp_path):
    path = tmp_path / "plain.mcap"
    with open(path, "wb") as f:
        w = Writer(f)
        w.start()
        w.finish()
    with pytest.raises(LogError, match=r"plain\.mcap.*metadata.*'simrl'"):
        read_log(path)


def test_empty_log(tmp_path):
    path = write_log(tmp_path / "empty.mcap", [])
    with pytest.raises(LogError, match=r"empty\.mcap.*step.*empty log"):
        read_log(path)


def test_obs_length_mismatch(tmp_path):
    path = tmp_path / "short.mcap"
    with open(path, "wb") as f:  # a foreign writer that disagrees with its own names
        w = Writer(f)
        w.start()
        w.add_metadata("simrl", make_meta().to_record())
        ch = w.register_channel("/simrl/step", "json", w.register_schema("simrl.Step", "jsonschema", b"{}"))
        msg = {"t": 0.0, "step": 0, "state": {}, "obs": [0.0] * 5, "action": [0.0] * 4, "safety": {}}
        w.add_message(ch, 0, json.dumps(msg).encode(), 0)
        w.finish()
    with pytest.raises(LogError, match=r"short\.mcap.*field obs has length 5 at step 0.*observation_names"):
        read_log(path)


def test_nan(tmp_path):
    steps = make_steps(20)
    steps[7]["obs"][3] = np.nan
    steps[9]["action"][1] = -np.inf
    path = write_log(tmp_path / "nan.mcap", steps)
    with pytest.raises(LogError, match=r"file .*nan\.mcap: field obs has NaN at step 7"):
        read_log(path)
    log = read_log(path, allow_nan=True)
    assert np.isnan(log.obs[7, 3]) and log.action[9, 1] == -np.inf
    assert np.isfinite(log.obs[8]).all()


def test_writer_validation(tmp_path):
    with pytest.raises(ValueError, match="source"):
        make_meta(source="simulator")
    with LogWriter(tmp_path / "v.mcap", make_meta()) as w:
        s = make_steps(1)[0]
        with pytest.raises(ValueError, match="field obs"):
            w.write(**{**s, "obs": np.zeros(3)})
        with pytest.raises(ValueError, match="field action"):
            w.write(**{**s, "action": np.zeros(5)})
        with pytest.raises(ValueError, match="field safety.x"):
            w.write(**{**s, "safety": {"x": 0.5}})
        w.write(**s)
        with pytest.raises(ValueError, match="field state.rot"):
            w.write(**{**s, "state": {**s["state"], "rot": np.zeros(3)}})


def test_read_logs_and_check_compatible(tmp_path):
    write_log(tmp_path / "b.mcap", make_steps(5))
    write_log(tmp_path / "a.mcap", make_steps(3), meta=make_meta(robot="h1", source="sim2sim"))
    logs = read_logs(tmp_path)
    assert [Path(l.path).name for l in logs] == ["a.mcap", "b.mcap"] and len(logs[0]) == 3
    check_compatible(logs[1], robot="go1", task="flat_walk", observation_names=OBS)
    with pytest.raises(LogError, match=r"a\.mcap: field robot is 'h1', expected 'go1'"):
        check_compatible(logs[0], robot="go1")
    with pytest.raises(LogError, match=r"b\.mcap: field task"):
        check_compatible(logs[1], task="stairs")
    with pytest.raises(LogError, match=r"b\.mcap: field observation_names.*index 2"):
        check_compatible(logs[1], observation_names=OBS[:2] + ["x"] + OBS[3:])
    with pytest.raises(LogError, match=r"b\.mcap: field observation_names"):
        check_compatible(logs[1], observation_names=OBS[:-1])
