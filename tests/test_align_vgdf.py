"""``simrl align --method vgdf``: the value-guided filter, with a dynamics ensemble fitted on a
weak-motor hopper's logs, keeps transitions of a simulator that matches that robot and drops
those of the nominal (mismatched) one; a short run writes a loadable checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import policies
from envs.tasks import make_task
from policies.networks import mlp
from simrl.align.data import load_windows
from simrl.align.replay import WindowEnv
from simrl.align.vgdf import Ensemble, log_transitions, value_filter
from simrl.cli import main
from simrl.train import set_threads
from test_align import record_proxy
from test_align_delta import WEAK


@pytest.fixture(scope="module")
def weak_logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vgdf")
    WEAK.save(root / "proxy.json")
    return record_proxy(root / "logs", WEAK, worlds=4, steps=250, terminate_when_unhealthy=False), root / "proxy.json"


def one_step(task, windows, dr):
    """(obs, logged action, next obs) of every window's first step in a simulator with ``dr``."""
    env = WindowEnv(task, windows, dr=dr)
    obs = env.start()
    act = env.logged_action
    nxt = env.step(act)
    return (torch.as_tensor(x, dtype=torch.float32) for x in (obs, act, nxt))


def test_the_value_filter_keeps_the_matching_simulator_and_drops_the_mismatched(weak_logs):
    logs, _ = weak_logs
    task = make_task("hopper")
    set_threads(0)
    torch.manual_seed(0)
    ens = Ensemble(task.observation_size, task.action_size, 5, (128, 128))
    ens.fit(*log_transitions(logs), epochs=100)
    held = load_windows(logs, task, windows=200, steps=1, holdout=0.5).heldout
    match = one_step(task, held, WEAK.dr(task.cfg.control_dt))
    mismatch = one_step(task, held, "none")
    (o1, a1, n1), (o2, a2, n2) = match, mismatch
    obs, act, nxt = torch.cat([o1, o2]), torch.cat([a1, a2]), torch.cat([n1, n2])
    critic = mlp(task.observation_size, (64, 64), 1, "tanh")      # any smooth value function
    mask, _ = value_filter(lambda s: critic(s).squeeze(-1), ens, obs, act, nxt, keep=0.5)
    n = len(o1)
    kept_match, kept_mismatch = mask[:n].float().mean().item(), mask[n:].float().mean().item()
    assert kept_match >= 0.65 and kept_mismatch <= 0.35  # measured 0.72 / 0.28, (kept_match, kept_mismatch)


def test_a_short_vgdf_run_writes_a_checkpoint(weak_logs, tmp_path, capsys):
    logs, proxy = weak_logs
    out = tmp_path / "v"
    rc = main(["align", "--task", "hopper", "--real-logs", str(logs), "--out", str(out), "--method", "vgdf",
               "--truth", str(proxy), "--vgdf.sim-steps", "1500", "--vgdf.start-steps", "1000",
               "--vgdf.eval-episodes", "2", "--vgdf.ensemble-every", "500"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["robot_steps"] == 150 and "vgdf" in report["proxy_return"]
    assert policies.load(out / "final", task="hopper")(np.zeros((1, 11), dtype=np.float32)).shape == (1, 3)
