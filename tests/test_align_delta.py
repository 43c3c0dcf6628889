"""``simrl align --method delta-action / delta-dynamics``: a zero delta action is the unaligned
simulator, both models reduce the held-out replay error on logs of a hopper with weak motors
(``gain`` 0.6, not in the training randomization), the fine-tuned checkpoint has the original's
spec, and bad input (another task, too-short logs, actions the checkpoint did not produce) is
one line naming the file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest

import policies
from envs.batched import BatchedEnv
from envs.perturbation import Perturbation
from envs.tasks import make_task
from simrl.align import METHODS
from simrl.align.base import AlignConfig, DeltaActionConfig
from simrl.align.data import load_windows
from simrl.align.delta_action import DeltaActionWrapper, DeltaModel
from simrl.align.replay import replay
from simrl.cli import main
from simrl.validate.record import record
from test_align import record_proxy

WEAK = Perturbation(params={"gain": 0.6})


@pytest.fixture(scope="module")
def weak_logs(tmp_path_factory):
    """Random-action logs (4 x 250 steps) of the weak-motor hopper."""
    root = tmp_path_factory.mktemp("weak")
    return record_proxy(root / "logs", WEAK, worlds=4, steps=250, terminate_when_unhealthy=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A (barely) trained PPO checkpoint, logs it recorded on the weak-motor proxy and the proxy file."""
    root = tmp_path_factory.mktemp("ckpt")
    assert main(["train", "--task", "hopper", "--steps", "2048", "--num-envs", "16", "--out",
                 str(root / "run"), "--progress", "false", "--checkpoint-every", "0"]) == 0
    ckpt = root / "run" / "final"
    policy = policies.load(ckpt)
    env = WEAK.make_env("hopper", 2, seed=3, terminate_when_unhealthy=False)
    record(env, lambda obs: policy(obs.astype(np.float32)), 120, root / "logs", source="sim2sim", seed=3)
    WEAK.save(root / "proxy.json")
    return ckpt, root / "logs", root / "proxy.json"


def test_a_zero_delta_action_is_the_unaligned_simulator(weak_logs):
    task = make_task("hopper")
    split = load_windows(weak_logs, task, windows=8, steps=10)
    zero = DeltaModel(None, task.action_size, scale=0.5)
    plain = replay(task, split.heldout, split.fields)
    with_zero = replay(task, split.heldout, split.fields, act=zero)
    for f in split.fields:
        np.testing.assert_array_equal(with_zero[f], plain[f])
    # in the fine-tuning loop: the wrapped env steps exactly as the bare one
    a, b = BatchedEnv(task, 4, dr="uniform", seed=5), DeltaActionWrapper(BatchedEnv(task, 4, dr="uniform", seed=5), zero)
    oa, ob = a.reset_numpy(), b.reset_numpy()
    rng = np.random.default_rng(0)
    for _ in range(60):
        act = rng.uniform(-1.2, 1.2, (4, task.action_size))
        (oa, ra, ta, *_), (ob, rb, tb, *_) = a.step_numpy(act), b.step_numpy(act)
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ta, tb)


def test_replays_in_batches_of_worlds_match_one_world_per_window(weak_logs, monkeypatch):
    """Replay and the delta-dynamics data run MAX_WORLDS worlds at a time (a go1 world holds an
    11 MB model): batches of 3, the last padded, give what one world per window gives."""
    import simrl.align.replay as replay_module
    from simrl.align.delta_dynamics import one_step_data

    task = make_task("hopper")
    split = load_windows(weak_logs, task, windows=8, steps=10)
    whole, data = replay(task, split.fit, split.fields), one_step_data(task, split.fit)
    monkeypatch.setattr(replay_module, "MAX_WORLDS", 3)
    assert len(replay_module.batches(len(split.fit))) > 2 and len(split.fit) % 3
    for f, v in replay(task, split.fit, split.fields).items():
        np.testing.assert_array_equal(v, whole[f])
    for got, want in zip(one_step_data(task, split.fit), data):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method", ["delta-dynamics", "delta-action"])
def test_the_delta_model_reduces_the_heldout_replay_error(method, weak_logs, tmp_path):
    cfg = AlignConfig(windows=32, window_steps=10,
                      delta_action=DeltaActionConfig(steps=30_000))
    report = METHODS.get(method).run(make_task("hopper"), weak_logs, cfg, tmp_path, lambda s: None)
    err = report["heldout_error"]
    assert err["aligned"] < 0.8 * err["unaligned"], err
    assert (tmp_path / "replay.png").stat().st_size > 10_000 and (tmp_path / "report.html").is_file()


def test_finetuned_checkpoint_keeps_the_spec_and_runs_without_the_model(trained, tmp_path, capsys):
    ckpt, logs, proxy = trained
    out = tmp_path / "dd"
    rc = main(["align", "--checkpoint", str(ckpt), "--real-logs", str(logs), "--out", str(out),
               "--method", "delta-dynamics", "--windows", "8", "--window-steps", "10",
               "--finetune.steps", "1024", "--finetune.proxy-episodes", "2", "--truth", str(proxy)])
    assert rc == 0, capsys.readouterr().err
    assert "return on the proxy, fine-tuned" in capsys.readouterr().out
    before, after = (json.loads((p / "spec.json").read_text()) for p in (ckpt, out / "final"))
    same = lambda spec: {k: v for k, v in spec.items() if k not in ("training", "observation")}  # noqa: E731
    assert same(before) == same(after) and before["observation"]["names"] == after["observation"]["names"]
    assert after["training"]["steps"] == before["training"]["steps"] + 1024
    policy = policies.load(out / "final", task="hopper")
    assert policy(np.zeros((1, 11), dtype=np.float32)).shape == (1, 3)
    report = json.loads((out / "report.json").read_text())
    assert set(report["proxy_return"]) == {"original", "fine-tuned"} and report["finetune_curve"]


def test_bad_input_is_one_line_naming_file_and_field(trained, weak_logs, tmp_path, capsys):
    ckpt, logs, _ = trained

    def error(*argv: str) -> str:
        rc = main(["align", "--out", str(tmp_path / "o"), "--finetune.steps", "0", *argv])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("simrl align: error: ") and err.count("\n") == 1, err
        return err

    msg = error("--checkpoint", str(ckpt), "--real-logs", str(weak_logs), "--method", "delta-action")
    assert "field action: the checkpoint" in msg and "run_w000_e000.mcap" in msg
    other = record_proxy(tmp_path / "cheetah", Perturbation(), task="halfcheetah", worlds=1, steps=30)
    msg = error("--checkpoint", str(ckpt), "--real-logs", str(other), "--method", "delta-dynamics")
    assert "field" in msg and "halfcheetah" in msg
    short = record_proxy(tmp_path / "short", Perturbation(), worlds=1, steps=12)
    msg = error("--task", "hopper", "--real-logs", str(short), "--method", "delta-dynamics")
    assert "field step: logs too short" in msg
