"""Hardening (issue 13): no code from files, no lost data, one clear error for bad files.

Items 3 (SB3 files), 5 (deploy logs), 6 (export), 8 (atomic checkpoints, resume fallback),
9 (NaN observations), 10 (bounded chunks), 11 (truncated logs), 15 (spec values) and the
file errors of the last section."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import policies
from simrl.cli import main
from simrl.core.logs import (LogError, LogExistsError, LogMeta, LogWriter, TruncatedLogWarning, read_log,
                        recover_log)
from test_export import trained_like_checkpoint

REPO = Path(__file__).resolve().parents[1]


class _Touch:
    """A pickle payload: unpickling it creates the file ``path`` (proof that code ran)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_blob(marker: Path) -> str:
    return base64.b64encode(pickle.dumps(_Touch(marker))).decode()


# -- item 3: SB3 files ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sb3_zip(tmp_path_factory) -> tuple[Path, object]:
    """A real SB3 PPO model trained for a few hundred steps on hopper."""
    import gymnasium
    from stable_baselines3 import PPO

    import envs.gym  # noqa: F401

    env = gymnasium.make("simrl/Hopper-v0", max_episode_steps=50)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu",
                policy_kwargs={"net_arch": {"pi": [32, 32], "vf": [16]}, "activation_fn": torch.nn.ReLU})
    model.learn(256)
    path = tmp_path_factory.mktemp("sb3") / "ppo.zip"
    model.save(path)
    return path, model


def _evil_zip(src: Path, dst: Path, marker: Path, policy_pth: bytes | None = None) -> Path:
    """``src`` with every pickled blob of ``data`` replaced by a payload that touches ``marker``."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data = json.loads(members["data"])
    for value in data.values():
        if isinstance(value, dict) and ":serialized:" in value:
            value[":serialized:"] = _evil_blob(marker)
    members["data"] = json.dumps(data).encode()
    if policy_pth is not None:
        members["policy.pth"] = policy_pth
    with zipfile.ZipFile(dst, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return dst


def test_real_sb3_zip_loads_without_pickle_and_matches_sb3(sb3_zip):
    path, model = sb3_zip
    policy = policies.load(path, task="hopper")
    assert policy.spec["network"]["actor_hidden"] == [32, 32] and policy.spec["network"]["activation"] == "relu"
    obs = np.random.default_rng(0).normal(0.0, 1.0, (64, 11)).astype(np.float32)
    np.testing.assert_allclose(policy(obs), model.predict(obs, deterministic=True)[0], atol=1e-6)


def test_malicious_sb3_zip_runs_nothing(sb3_zip, tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil_zip(sb3_zip[0], tmp_path / "evil.zip", marker)
    policy = policies.load(evil, task="hopper")  # the readable JSON and the weights suffice
    assert not marker.exists()
    obs = np.zeros((1, 11), dtype=np.float32)
    np.testing.assert_array_equal(policy(obs), policies.load(sb3_zip[0], task="hopper")(obs))
    from simrl.robust.residual import make_base  # train --residual evil.zip
    from envs.tasks import make_task
    make_base(str(evil), make_task("hopper"))
    assert main(["eval", "--checkpoint", str(evil), "--task", "hopper", "--episodes", "1",
                 "--task.max-episode-steps", "5"]) == 0
    assert not marker.exists()
    # The payload is real: SB3's own (pickle) loader runs it.
    from stable_baselines3.common.save_util import load_from_zip_file
    load_from_zip_file(evil, device="cpu")
    assert marker.exists()


def test_pickled_code_in_policy_pth_and_vec_normalize_is_refused(sb3_zip, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.pt"
    torch.save({"log_std": _Touch(marker)}, payload)
    evil = _evil_zip(sb3_zip[0], tmp_path / "evil.zip", marker, payload.read_bytes())
    with pytest.raises(policies.CheckpointError, match="policy.pth is not a plain torch state dict"):
        policies.load(evil, task="hopper")
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps(_Touch(marker)))
    assert main(["eval", "--checkpoint", str(sb3_zip[0]), "--task", "hopper", "--episodes", "1",
                 "--vec-normalize", str(pkl)]) == 2
    err = capsys.readouterr().err
    assert "evil.pkl" in err and "--trust-pickle" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_trust_pickle_is_explicit_and_warns(sb3_zip, tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.warns(UserWarning, match="unpickling"), pytest.raises(policies.CheckpointError,
                                                                        match="not a VecNormalize"):
        policies.load(sb3_zip[0], task="hopper", vec_normalize=pkl, trust_pickle=True)
    assert marker.exists()  # what --trust-pickle means, hence the warning


# -- item 5: deploy logs ----------------------------------------------------------------------
def _meta() -> LogMeta:
    return LogMeta("hopper", "hopper", 0.008, [f"o{i}" for i in range(3)], ["a0"], "p@0", "sim")


def test_a_log_is_never_overwritten(tmp_path, capsys):
    log = tmp_path / "run.mcap"
    with LogWriter(log, _meta()) as w:
        w.write(0.0, 0, {}, [1.0, 2.0, 3.0], [0.5])
    before = log.read_bytes()
    with pytest.raises(LogExistsError, match="never overwrites"):
        LogWriter(log, _meta())
    assert main(["deploy", "--checkpoint", str(tmp_path / "nowhere"), "--robot", "mujoco",
                 "--log", str(log), "--duration", "1"]) == 2
    assert "never overwrites a log" in capsys.readouterr().err
    assert log.read_bytes() == before and len(read_log(log)) == 1


# -- item 6: export --------------------------------------------------------------------------
def test_export_refuses_to_overwrite_checkpoint_files(tmp_path, capsys):
    ckpt = Path(trained_like_checkpoint(tmp_path / "c"))
    weights = (ckpt / "policy.pt").read_bytes()
    for out in (ckpt / "policy.pt", ckpt / "spec.json"):
        assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
        assert "refusing to overwrite a checkpoint file" in capsys.readouterr().err
    other = tmp_path / "notes.txt"
    other.write_text("keep")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(other)]) == 2
    assert other.read_text() == "keep" and (ckpt / "policy.pt").read_bytes() == weights
    policies.load(ckpt)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "p.onnx")]) == 0
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "p.onnx")]) == 0


# -- item 8: atomic checkpoints, resume falls back -------------------------------------------
WRITER = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    from simrl.train import config_to_dict
    from simrl.algos import make_trainer, resolve_config
    out = Path(sys.argv[1])
    cfg = resolve_config({"train.task": "hopper", "train.num_envs": 2, "train.progress": False,
                          "train.steps": 10**9, "network.actor_hidden": (8,),
                          "network.critic_hidden": (8,), "train.out": str(out)})
    trainer = make_trainer(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg)))

    class Ballast:  # makes every training_state.pt ~16 MB, so kills land mid-write
        def state_dict(self):
            return {"x": torch.randn(4_000_000)}
    trainer.stateful["ballast"] = Ballast()
    for k in range(1, 10**6):
        trainer.step = 16 * k
        trainer.save_checkpoint(out / "checkpoints" / f"step_{trainer.step:09d}")
        print(k, flush=True)
""")


def test_kill_9_mid_checkpoint_then_resume_continues_from_the_last_complete(tmp_path, capsys):
    from simrl.train import TRAINING_STATE, check_complete, find_resume_checkpoint

    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    runs = [tmp_path / f"run{i}" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(r)], stdout=subprocess.PIPE,
                              env=env, text=True) for r in runs]
    rng = np.random.default_rng(0)
    for proc in procs:  # a first checkpoint, then a kill at a random moment
        assert proc.stdout.readline().strip() == "1"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    for run in runs:
        _, ckpt, _ = find_resume_checkpoint(run)
        states = sorted(p for p in (run / "checkpoints").iterdir() if (p / TRAINING_STATE).exists())
        assert ckpt == states[-1]  # every training_state.pt under its own name is whole
        for p in states:
            check_complete(p)
    # A partial training_state.pt (what a non-atomic writer leaves): resume falls back.
    run = runs[0]
    newest = sorted((run / "checkpoints").iterdir())[-1]
    if not (newest / TRAINING_STATE).exists():
        shutil.copytree(sorted((run / "checkpoints").iterdir())[-2], newest, dirs_exist_ok=True)
    data = (newest / TRAINING_STATE).read_bytes()
    (newest / TRAINING_STATE).write_bytes(data[: len(data) // 2])
    _, previous, _ = find_resume_checkpoint(run)
    assert previous != newest
    step = int(previous.name[5:])
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", str(step + 32)]) == 0
    out, err = capsys.readouterr()
    notice = [line for line in err.splitlines() if line.startswith("--resume: skipped")]
    assert len(notice) == 1 and newest.name in notice[0] and str(previous) in notice[0]
    assert f"from {previous} at step {step:,}" in out
    assert policies.load(run / "final").spec["training"]["steps"] >= step + 32
    # Asked for exactly the damaged checkpoint: one clear line, no trace.
    assert main(["train", "--resume", str(newest)]) == 2
    assert "incomplete checkpoint" in capsys.readouterr().err


def test_pickle_bombs_in_training_state_and_world_model_are_one_line_errors(tmp_path, capsys):
    from simrl.dream.model import WorldModel
    from simrl.train import read_training_state

    marker = tmp_path / "pwned"
    ckpt = Path(trained_like_checkpoint(tmp_path / "c"))
    torch.save({"algo": "ppo", "step": _Touch(marker)}, ckpt / "training_state.pt")
    with pytest.raises(policies.CheckpointError, match="pickled objects .* refuses; nothing in it was run"):
        read_training_state(ckpt)
    torch.save({"format": _Touch(marker)}, tmp_path / "wm.pt")
    with pytest.raises(ValueError, match="wm.pt: not a readable simrl world model"):
        WorldModel.load(tmp_path / "wm.pt")
    assert not marker.exists()


# -- item 9: a NaN observation is logged as NaN ----------------------------------------------
def test_nan_observation_is_logged_as_nan(tmp_path):
    import deploy
    from deploy.robots.mujoco import MujocoRobot, SimConfig
    from policies.export import export
    from simrl.core.spec import load_spec

    ckpt = trained_like_checkpoint(tmp_path / "c")
    export(ckpt)
    spec = load_spec(ckpt)

    class NanSensor(MujocoRobot):
        reads = 0

        def read_state(self):
            sample = super().read_state()
            NanSensor.reads += 1
            if sample is not None and NanSensor.reads == 10:
                sample.fields["joint_vel"] = np.full_like(sample.fields["joint_vel"], np.nan)
            return sample

    robot = NanSensor(SimConfig.from_spec(spec), realtime=False, control_dt=spec["control_dt"])
    deploy.run(ckpt, robot, 0.5, tmp_path / "nan.mcap",
               config=deploy.RuntimeConfig(realtime=False, end_on_termination=False))
    with pytest.raises(LogError, match="field obs has NaN"):
        read_log(tmp_path / "nan.mcap")
    log = read_log(tmp_path / "nan.mcap", allow_nan=True)
    assert np.isnan(log.obs).any(axis=1).sum() == 1  # the one bad reading, as it was


# -- item 10: bounded chunk decompression ----------------------------------------------------
def _bomb(path: Path, claimed: int) -> Path:
    """A small MCAP whose one chunk decompresses to 1 GiB (16 zstd frames of 64 MiB of zeros);
    its header claims ``claimed`` bytes."""
    import zstandard
    from mcap.data_stream import RecordBuilder
    from mcap.records import Chunk, DataEnd, Footer, Header, Metadata

    frames = zstandard.compress(b"\0" * (64 << 20)) * 16
    b = RecordBuilder()
    Header(profile="", library="evil").write(b)
    Metadata(name="simrl", metadata=_meta().to_record()).write(b)
    Chunk(message_start_time=0, message_end_time=0, uncompressed_size=claimed, uncompressed_crc=0,
          compression="zstd", data=frames).write(b)
    DataEnd(0).write(b)
    Footer(0, 0, 0).write(b)
    path.write_bytes(b"\x89MCAP0\r\n" + b.end() + b"\x89MCAP0\r\n")
    return path


def test_a_chunk_bomb_is_refused_quickly(tmp_path):
    honest = _bomb(tmp_path / "honest.mcap", 1 << 30)
    lying = _bomb(tmp_path / "lying.mcap", 1000)
    assert honest.stat().st_size < 100_000
    t = time.perf_counter()
    with pytest.raises(LogError, match="chunk.uncompressed_size is 1,073,741,824 bytes, over the limit"):
        read_log(honest)
    with pytest.warns(TruncatedLogWarning, match="decompresses to more"), \
            pytest.raises(LogError, match="empty log"):
        read_log(lying)
    assert time.perf_counter() - t < 2.0


# -- item 11: truncated logs for every reader ------------------------------------------------
KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from simrl.core.logs import LogMeta, LogWriter
    meta = LogMeta("hopper", "hopper", 0.008, ["o0", "o1", "o2"], ["a0"], "p@0", "sim")
    w = LogWriter(sys.argv[1], meta, chunk_steps=10)
    for k in range(35):
        w.write(k * 0.008, k, {}, [k, 1.0, 2.0], [0.5])
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_log_reads_with_make_reader_and_recovers(tmp_path, capsys):
    from mcap.reader import make_reader

    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    path = tmp_path / "killed.mcap"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], env=env)
    assert proc.returncode == -signal.SIGKILL
    with open(path, "rb") as f:  # the standard (seeking) reader Foxglove-like tools use
        steps = [json.loads(m.data)["step"] for _, _, m in make_reader(f).iter_messages()]
    assert steps == list(range(30))  # three whole chunks; the open one is lost
    with pytest.warns(TruncatedLogWarning, match="not closed by its writer"):
        assert len(read_log(path)) == 30
    # Cut in the middle of a chunk: simrl reads the whole chunks, recover_log repairs the file.
    cut = tmp_path / "cut.mcap"
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader
    with open(path, "rb") as f:
        ends = [f.tell() for r in StreamReader(f, emit_chunks=True).records if isinstance(r, Chunk)]
    cut.write_bytes(path.read_bytes()[:ends[-1] - 20])  # inside the third chunk
    with open(cut, "rb") as f, pytest.raises(Exception):
        list(make_reader(f).iter_messages())
    fixed = tmp_path / "fixed.mcap"
    assert recover_log(cut, fixed) == 20
    with open(fixed, "rb") as f:
        assert [json.loads(m.data)["step"] for _, _, m in make_reader(f).iter_messages()] == list(range(20))
    assert not read_log(fixed).truncated
    with pytest.raises(LogExistsError):
        recover_log(cut, fixed)
    # the same from the command line, and what `simrl logs info` says of each file
    assert main(["logs", "recover", "--src", str(cut), "--dst", str(tmp_path / "cli.mcap")]) == 0
    assert main(["logs", "info", str(cut), str(tmp_path / "cli.mcap")]) == 0
    out = capsys.readouterr().out
    assert "wrote " + str(tmp_path / "cli.mcap") + ": 20 steps" in out
    assert f"{cut}: " in out and "20 steps" in out and "TRUNCATED" in out
    assert out.count("TRUNCATED") == 1
    assert main(["logs", "recover", "--src", str(cut), "--dst", str(tmp_path / "cli.mcap")]) == 2


# -- item 15 and the last section: checkpoint files ------------------------------------------
def _edit_spec(ckpt: Path, edit) -> None:
    spec = json.loads((ckpt / "spec.json").read_text())
    edit(spec)
    (ckpt / "spec.json").write_text(json.dumps(spec))


@pytest.mark.parametrize("field, edit", [
    ("pd_gains.kp[0]", lambda s: s.__setitem__("pd_gains", {"kp": [float("nan")] * 12, "kd": [1.0] * 12})),
    ("pd_gains.kd[0]", lambda s: s.__setitem__("pd_gains", {"kp": [35.0] * 12, "kd": [-3.0] * 12})),
    ("action.scale[0]", lambda s: s["action"]["scale"].__setitem__(0, float("nan"))),
    ("action.offset[1]", lambda s: s["action"]["offset"].__setitem__(1, float("inf"))),
    ("action.ctrl_low[0]", lambda s: s["action"]["ctrl_low"].__setitem__(0, 5.0)),
    ("control_dt", lambda s: s.__setitem__("control_dt", float("nan"))),
    ("observation.normalizer.var[2]", lambda s: s["observation"]["normalizer"]["var"].__setitem__(2, -1.0)),
])
def test_checkpoint_spec_values_are_validated_at_load(tmp_path, field, edit):
    ckpt = Path(trained_like_checkpoint(tmp_path / "c", "go1-velocity"))
    _edit_spec(ckpt, edit)
    with pytest.raises(policies.CheckpointError, match=f"spec.json: field {field.replace('[', '.').replace(']', '.')}"):
        policies.load(ckpt)


def test_action_scale_nan_is_one_line_at_export(tmp_path, capsys):
    ckpt = Path(trained_like_checkpoint(tmp_path / "c"))
    _edit_spec(ckpt, lambda s: s["action"]["scale"].__setitem__(0, float("nan")))
    assert main(["export", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "spec.json: field action.scale[0] is nan" in err and len(err.splitlines()) == 1


def test_corrupt_onnx_and_missing_policy_pt(tmp_path):
    from deploy.policy import OnnxPolicy
    from policies.export import export
    from simrl.core.spec import load_spec

    ckpt = Path(trained_like_checkpoint(tmp_path / "c"))
    export(ckpt)
    spec = load_spec(ckpt)
    (ckpt / "policy.pt").rename(tmp_path / "policy.pt")
    with pytest.raises(ValueError, match="policy.onnx is there but policy.pt is missing"):
        OnnxPolicy(ckpt, spec)
    (tmp_path / "policy.pt").rename(ckpt / "policy.pt")
    (ckpt / "policy.onnx").write_bytes((ckpt / "policy.onnx").read_bytes()[:100])
    with pytest.raises(ValueError, match="policy.onnx: not a loadable ONNX model"):
        OnnxPolicy(ckpt, spec)


def test_perturbation_files_yaml_tags_and_bad_json(tmp_path):
    from envs.perturbation import Perturbation

    marker = tmp_path / "pwned"
    tagged = tmp_path / "p.yaml"
    tagged.write_text(f"params: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    with pytest.raises(ValueError, match="p.yaml: not plain YAML"):
        Perturbation.load(tagged)
    bad = tmp_path / "p.json"
    bad.write_text("{\"params\": ")
    with pytest.raises(ValueError, match="p.json: not valid JSON"):
        Perturbation.load(bad)
    assert not marker.exists()


def test_rank_checks_truth_and_out_before_the_work(tmp_path, capsys):
    out = tmp_path / "report"
    out.write_text("not a directory")
    args = ["rank", "--checkpoints", str(tmp_path / "missing"), "--real-logs", str(tmp_path)]
    t = time.perf_counter()
    assert main([*args, "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err and out.read_text() == "not a directory"
    truth = tmp_path / "truth.json"
    truth.write_text("{oops")
    assert main([*args, "--out", str(tmp_path / "r"), "--truth", str(truth)]) == 2
    assert "truth.json: not a readable JSON file" in capsys.readouterr().err
    assert time.perf_counter() - t < 5


def test_two_trainings_on_one_run_directory_cannot_both_run(tmp_path):
    """Issue item 7: the second ``simrl train --out DIR`` fails at once while the first runs,
    instead of both exiting 0 with the first run overwritten."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "simrl.cli", "train", "--task", "hopper", "--num-envs", "8",
           "--steps", "40000", "--progress", "false", "--out", str(run)]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the first run holds the lock before it writes its config
    assert first.poll() is None, first.communicate()
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert f"run directory {run} is in use by another training process (pid {first.pid})" in second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # after the first finished, the directory holds its run and is refused as before
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds a run" in again.stderr


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected a JSON object"),
    ('{"mass": "wide"}', "mass: expected [low, high] or [low, high, nominal], got 'wide'"),
    ('{"mass": [0.5, ', "not a readable JSON file"),
    ('{"latency": [0, 1e9]}', "latency: high 1e+09 control steps is longer than an episode"),
    ('{"type": "gamma", "names": []}', "unknown distribution type 'gamma'"),
])
def test_bad_dr_files_are_one_line_errors_naming_the_file(tmp_path, capsys, content, message):
    dr = tmp_path / "dr.json"
    dr.write_text(content)
    assert main(["train", "--task", "hopper", "--dr", str(dr), "--steps", "64", "--num-envs", "2",
                 "--progress", "false", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simrl train: error:") and message in err and err.count("\n") == 1
    if "latency" not in content:
        assert str(dr) in err
