"""``simrl align --method sysid``: system identification recovers the parameters of a reality
proxy from logs recorded on it, the held-out prediction error drops, and bad input gets one
line naming the file and field.

Logs are recorded on hopper proxies (``Perturbation.make_env`` + ``simrl.validate.record``) under
random actions, without terminations so a fallen hopper keeps logging. Tolerances: mass scales
within 5 %, friction and motor strength within 10 %, latency exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs.perturbation import Perturbation
from envs.tasks import make_task
from simrl.align import METHODS
from simrl.align.base import AlignConfig
from simrl.align.data import StateMap, load_windows
from simrl.align.sysid import Replay, SearchSpace, field_scales
from simrl.cli import main
from simrl.train import resolve_dr
from simrl.validate.record import record


def record_proxy(out, pert: Perturbation, task: str = "hopper", worlds: int = 3, steps: int = 200,
                 seed: int = 0, **overrides):
    """Logs of random actions on the proxy ``pert``; returns the log directory."""
    env = pert.make_env(task, worlds, seed=seed, **overrides)
    rng = np.random.default_rng(seed)
    record(env, lambda obs: rng.uniform(-1, 1, (len(obs), env.action_size)), steps, out,
           source="sim2sim", seed=seed)
    return out


@pytest.fixture(scope="module")
def mass_friction(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    pert = Perturbation(params={"mass:torso": 1.3, "friction": 0.7})
    pert.save(root / "proxy.json")
    return record_proxy(root / "logs", pert, terminate_when_unhealthy=False), root / "proxy.json"


def test_sysid_recovers_mass_and_friction_through_the_cli(mass_friction, tmp_path, capsys):
    logs, proxy = mass_friction
    out = tmp_path / "align"
    rc = main(["align", "--task", "hopper", "--real-logs", str(logs), "--out", str(out),
               "--params", "mass:torso,friction", "--budget", "150", "--windows", "16",
               "--window-steps", "15", "--truth", str(proxy), "--threads", "2"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    est = report["estimate"]
    assert est["mass:torso"] == pytest.approx(1.3, rel=0.05)
    assert est["friction"] == pytest.approx(0.7, rel=0.10)
    assert report["truth"] == {"mass:torso": 1.3, "friction": 0.7}
    err = report["heldout_error"]
    assert err["identified"] < 0.2 * err["nominal"]
    # the outputs: a perturbation file, a DR mapping `simrl train --dr` takes, the figure
    params = Perturbation.load(out / "params.json")
    assert params.params == pytest.approx(est)
    dr = resolve_dr(str(out / "dr.json"))
    for name, (low, high, centre) in dr.items():
        assert low < centre < high and centre == pytest.approx(est[name], abs=1e-5)
    assert (out / "replay.png").stat().st_size > 10_000
    assert "held-out prediction error" in capsys.readouterr().out


def test_sysid_finds_latency_and_motor_strength(tmp_path):
    task = make_task("hopper")
    pert = Perturbation(params={"gain": 0.8}, latency=2 * task.cfg.control_dt)
    logs = record_proxy(tmp_path / "logs", pert, seed=1, terminate_when_unhealthy=False)
    cfg = AlignConfig(params=("gain", "latency"), budget=100, windows=12, window_steps=15, seed=1)
    (tmp_path / "out").mkdir()
    report = METHODS.get("sysid").run(task, logs, cfg, tmp_path / "out", lambda s: None, truth=pert)
    assert report["estimate"]["latency"] == 2.0
    assert report["estimate"]["gain"] == pytest.approx(0.8, rel=0.10)
    assert min(report["latency_losses"], key=report["latency_losses"].get) == 2
    assert Perturbation.load(tmp_path / "out" / "params.json").latency == pytest.approx(0.016)
    # the replay itself: at the true parameters the logged windows are reproduced
    split = load_windows(logs, task, windows=8, steps=15, lookback=3)
    space = SearchSpace.build(task, ("gain", "latency"), {}, 3)
    replay = Replay(task, split.fit, space, 2, split.fields, field_scales(split.fit, split.fields))
    loss = replay.loss(np.array([[0.8, 2.0], [1.0, 0.0]]))
    assert loss[0] < 1e-6 < 1e-3 < loss[1]


def test_state_map_inverts_the_robot_state_record():
    hopper, go1 = StateMap.probe(make_task("hopper")), StateMap.probe(make_task("go1-velocity"))
    assert hopper.qpos == [("joint_pos", i) for i in range(6)] and hopper.free_qpos is None
    assert go1.qpos[:3] == [("base_pos", i) for i in range(3)]
    assert go1.qpos[7:] == [("joint_pos", i) for i in range(12)]
    assert go1.qvel[:3] == [None] * 3 and go1.qvel[3:6] == [("base_ang_vel", i) for i in range(3)]
    assert (go1.free_qpos, go1.free_qvel) == (0, 0)


def test_bad_input_is_one_line_naming_file_and_field(mass_friction, tmp_path, capsys):
    logs, _ = mass_friction

    def error(*argv: str) -> str:
        rc = main(["align", "--real-logs", *argv, "--out", str(tmp_path / "o"), "--budget", "8"])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("simrl align: error: ") and err.count("\n") == 1, err
        return err

    other = record_proxy(tmp_path / "cheetah", Perturbation(), task="halfcheetah", worlds=1, steps=30)
    assert "field task is 'halfcheetah', expected 'hopper'" in error(str(other), "--task", "hopper")
    assert "run_w000_e000.mcap" in error(str(other), "--task", "hopper")
    short = record_proxy(tmp_path / "short", Perturbation(), worlds=1, steps=12)
    msg = error(str(short), "--task", "hopper", "--window-steps", "20")
    assert "field step: logs too short" in msg and "short" in msg
    msg = error(str(logs), "--task", "hopper", "--params", "mass:wing")
    assert "--params" in msg and "no body named 'wing'" in msg
    assert "not a physical parameter" in error(str(logs), "--task", "hopper", "--params", "obs_noise")
    assert "give exactly one of --checkpoint and --task" in error(str(logs))
