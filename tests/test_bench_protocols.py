"""Issue 18's protocols: the DORAEMON paper's values, the paper-protocol and many-proxy benches
end to end at a tiny budget, and the benches' sweeps resuming without retraining."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import envs
from envs.batched import EpisodeBatch
from simrl.cli import main
from simrl.cli.bench.dr_paper import SOURCES, Budget, PaperProtocol, budget_from, trial_options
from simrl.cli.sweep import resolved_config
from simrl.dr.curriculum import DoraemonCurriculum, DoraemonTrainConfig


def test_paper_protocol_holds_the_papers_hopper_values():
    p = PaperProtocol()
    assert (p.task, p.episode_steps, p.success_return, p.alpha, p.kl_bound) == ("hopper", 500, 1600.0, 0.5, 0.005)
    assert (p.timesteps, p.n_iters, p.update_steps, p.target_episodes) == (15_000_000, 150, 100_000, 100)
    assert (p.init_beta, p.beta_low, p.beta_high, p.wait_for_success) == (100.0, 1.0, 110.0, True)
    assert (p.min_samples, p.buffer_size, p.dr_percentage) == (100, 1000, 0.95) and p.seeds >= 3
    ranges = p.target_ranges()
    assert list(ranges) == ["mass:torso", "mass:thigh", "mass:leg", "mass:foot", "damping:thigh_joint",
                            "damping:leg_joint", "damping:foot_joint", "friction"]
    assert all(v == [0.05, 1.95] for v in ranges.values())
    assert set(SOURCES) == {f for f in p.__dataclass_fields__}
    # the DORAEMON arm's options resolve to a run config with exactly these values
    budget = Budget(p.timesteps, p.update_steps, p.target_episodes, 3, 64, "ppo")
    cfg = resolved_config(trial_options("doraemon", 0, Path("ranges.json"), p, budget))
    d = cfg["doraemon"]
    assert (d["alpha"], d["kl_bound"], d["steps_per_update"], d["start_concentration"]) == (0.5, 0.005, 100_000, 200.0)
    assert (d["param_low"], d["param_high"], d["wait_for_success"], d["min_samples"]) == (1.0, 110.0, True, 100)
    assert cfg["task"]["max_episode_steps"] == 500 and cfg["task"]["success_return"] == 1600.0
    # the paper's agent: SAC with DORAEMON, the 5-step obs-action history, dynamics for the critic
    sac = resolved_config(trial_options("sac-doraemon", 0, Path("ranges.json"), p, budget))
    assert sac["train"]["algo"] == "sb3-sac" and sac["train"]["dr"] == "doraemon"
    assert (sac["sac"]["history"], sac["sac"]["critic_dynamics"]) == (5, True)
    assert (sac["network"]["activation"], sac["network"]["actor_hidden"]) == ("tanh", [128, 128])
    assert {k: sac["doraemon"][k] for k in d} == d
    with pytest.raises(ValueError, match="--arms"):
        budget_from(SimpleNamespace(budget=0, update_steps=0, target_episodes=0, seeds=1, num_envs=1,
                                    algo="ppo", arms="none,sac", first_seed=0), p)
    with pytest.raises(ValueError, match="--first-seed"):
        budget_from(SimpleNamespace(budget=0, update_steps=0, target_episodes=0, seeds=1, num_envs=1,
                                    algo="ppo", arms="none", first_seed=-1), p)


def _batch(n, params, success):
    return EpisodeBatch(np.arange(n), np.zeros(n), np.ones(n, dtype=int), np.asarray(success, dtype=bool),
                        np.zeros(n, dtype=bool), params)


def test_doraemon_waits_for_the_success_target_then_updates_every_n_steps(tmp_path):
    from simrl.cli.quickstart import explain_doraemon

    env = envs.make("hopper", 8, dr="uniform", seed=0)
    cur = DoraemonCurriculum(env, DoraemonTrainConfig(steps_per_update=1000, wait_for_success=True,
                                                      min_samples=16, param_low=1.0, param_high=110.0,
                                                      start_concentration=200.0), tmp_path / "dr.png")
    logged: dict[str, float] = {}
    trainer = SimpleNamespace(step=0, log_scalars=logged.update)
    rng = np.random.default_rng(0)
    assert np.allclose(env.distribution.a, 100.0) and np.allclose(env.distribution.b, 100.0)

    def feed(success):
        for _ in range(4):
            cur.on_episodes(trainer, _batch(8, env.distribution.sample(8, rng), np.full(8, success)))

    feed(False)
    trainer.step = 999
    cur.on_iteration(trainer, {})          # not due yet
    assert cur.version == 0 and cur.buffered == 32
    trainer.step = 1000
    cur.on_iteration(trainer, {})          # due, but the success target was never reached
    assert cur.version == 0 and cur.buffered == 0 and logged["dr/waiting"] == 1.0
    feed(True)
    trainer.step = 1500
    cur.on_iteration(trainer, {})          # only 500 steps since the last due point
    assert cur.version == 0
    trainer.step = 2000
    cur.on_iteration(trainer, {})
    assert cur.version == 1 and cur.started and logged["dr/waiting"] == 0.0
    assert env.distribution.a.max() <= 110.0 and env.distribution.a.min() >= 1.0
    state = cur.state_dict()
    assert state["started"] and state["last_update_step"] == 2000
    assert explain_doraemon(tmp_path / "dr.json").startswith("DORAEMON widened: 1 of 1 updates")
    feed(False)                            # a failing buffer: no entropy step, and the reason
    trainer.step = 3000
    cur.on_iteration(trainer, {})
    assert cur.version == 2
    text = explain_doraemon(tmp_path / "dr.json")
    assert text.startswith("DORAEMON widened: 1 of 2 updates")
    cur.doraemon.history = cur.doraemon.history[:1] + cur.doraemon.history[2:]
    cur.update(np.zeros((0, env.space.dim)), np.zeros(0, dtype=bool))   # rewrite the file
    assert "did not widen" in explain_doraemon(tmp_path / "dr.json")


@pytest.fixture(scope="module")
def ray_local():
    """One in-process Ray for this module's sweeps (the benches reuse a running Ray)."""
    import ray

    from simrl.sweep import Resources, start_ray

    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    start_ray(Resources(object_store_mb=80, temp_dir=tmp))
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_bench_dr_paper_protocol_end_to_end(tmp_path, ray_local, capsys):
    out, js = tmp_path / "paper", tmp_path / "paper.json"
    assert main(["bench", "dr", "--protocol", "paper", "--budget", "1024", "--update-steps", "512",
                 "--target-episodes", "2", "--seeds", "1", "--num-envs", "8", "--out", str(out),
                 "--arms", "none,uniform,doraemon", "--json", str(js)]) == 0
    # each run was scored by the sweep's follow-up as it finished, none after the sweep
    assert "target evaluation of" not in capsys.readouterr().out
    report = json.loads(js.read_text())
    assert report["protocol"]["kl_bound"] == 0.005 and report["full_budget"] is False
    assert set(report["methods"]) == {"none", "uniform", "doraemon"}
    for m in report["methods"].values():
        (run,) = m["runs"]
        assert [c[0] for c in run["curve"]] == [512, 1024] and all(0 <= c[1] <= 1 for c in run["curve"])
    (dora,) = report["methods"]["doraemon"]["runs"]
    assert dora["distribution"]["names"][-1] == "friction"
    # Beta(100, 100) is 12% of the uniform's std; DORAEMON did not update in 1024 steps
    assert [w[0] for w in dora["width"]] == [512, 1024] and np.allclose([w[1] for w in dora["width"]], 0.122, atol=0.002)
    assert report["methods"]["none"]["runs"][0]["width"] is None
    assert (out / "dr_paper.png").stat().st_size > 1000
    # the target curves are cached: a rerun neither trains nor evaluates
    from simrl.cli.bench.dr_paper import curve_cache
    assert all(curve_cache(Path(m["runs"][0]["directory"]), 2)[1] == [] for m in report["methods"].values())
    capsys.readouterr()
    assert main(["bench", "dr", "--protocol", "paper", "--budget", "1024", "--update-steps", "512",
                 "--target-episodes", "2", "--seeds", "1", "--num-envs", "8", "--out", str(out),
                 "--arms", "none,uniform,doraemon"]) == 0
    assert "target evaluation of" not in capsys.readouterr().out
    # another seed of one arm, run apart (another machine or session), merged into one report
    more = tmp_path / "more"
    assert main(["bench", "dr", "--protocol", "paper", "--budget", "1024", "--update-steps", "512",
                 "--target-episodes", "2", "--seeds", "1", "--first-seed", "1", "--num-envs", "8",
                 "--out", str(more), "--arms", "none"]) == 0
    merged = tmp_path / "merged"
    assert main(["bench", "dr", "--protocol", "paper", "--merge", f"{js},{more / 'dr_paper.json'}",
                 "--out", str(merged)]) == 0
    both = json.loads((merged / "dr_paper.json").read_text())
    assert list(both["methods"]) == ["none", "uniform", "doraemon"]
    assert both["methods"]["none"]["seeds"] == [0, 1] and both["methods"]["uniform"]["seeds"] == [0]
    none = both["methods"]["none"]
    assert none["final_success_mean"] == pytest.approx(np.mean([r["final_success"] for r in none["runs"]]))
    assert [m["file"] for m in both["merged_from"]] == [str(js), str(more / "dr_paper.json")]
    assert (merged / "dr_paper.png").stat().st_size > 1000
    # a run in two reports is kept once; two different runs of one seed, or reports of different
    # budgets, are refused naming the file and field
    again = tmp_path / "again"
    assert main(["bench", "dr", "--protocol", "paper", "--merge", f"{js},{merged / 'dr_paper.json'}",
                 "--out", str(again)]) == 0
    assert json.loads((again / "dr_paper.json").read_text())["methods"] == both["methods"]
    other = json.loads(js.read_text())
    other["methods"]["none"]["runs"][0]["final_success"] = 0.5
    (tmp_path / "other.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["bench", "dr", "--protocol", "paper", "--merge", f"{js},{tmp_path / 'other.json'}",
                 "--out", str(merged)]) == 2
    assert f"other.json: none seed 0 differs from the run in {js}" in capsys.readouterr().err
    other = json.loads((more / "dr_paper.json").read_text())
    other["budget"]["timesteps"] = 2048
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["bench", "dr", "--protocol", "paper", "--merge", f"{js},{tmp_path / 'other.json'}",
                 "--out", str(merged)]) == 2
    assert "other.json: budget.timesteps 2048 differs" in capsys.readouterr().err
    other["budget"]["timesteps"] = 1024
    del other["methods"]["none"]["runs"][0]["curve"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["bench", "dr", "--protocol", "paper", "--merge", f"{js},{tmp_path / 'other.json'}",
                 "--out", str(merged)]) == 2
    assert "other.json: methods.none.runs[0] has no 'curve' field" in capsys.readouterr().err
    assert json.loads((merged / "dr_paper.json").read_text()) == both   # a refused merge writes nothing


def test_map_on_ray_returns_the_results_in_order(ray_local):
    from simrl.sweep import Resources, map_on_ray
    calls = [([i] * i,) for i in range(5)]
    assert map_on_ray(json.dumps, calls, Resources(), show_progress=False) == [json.dumps(*c) for c in calls]
    assert map_on_ray(json.dumps, [], Resources()) == []
    from functools import partial
    assert map_on_ray(partial(json.dumps, indent=1), calls, Resources(), show_progress=False) == [
        json.dumps(*c, indent=1) for c in calls]


def test_follow_ups_run_as_their_trial_finishes_before_trials_not_yet_started(tmp_path, ray_local, capsys):
    from simrl.sweep import Resources, make_trials, run_trials

    trials = make_trials([{"seed": i} for i in range(3)], ["seed"], tmp_path, lambda o: o)
    log = tmp_path / "order.log"

    def train(trial, context):
        (trial.directory / "final").mkdir()
        with open(log, "a") as f:
            f.write(f"train {trial.options['seed']}\n")
        return {}

    def then(trial):
        if trial.options["seed"] == 1:
            raise RuntimeError("no checkpoints")
        with open(log, "a") as f:
            f.write(f"then {trial.options['seed']}\n")

    # one slot (a trial takes both CPUs): train and follow-up alternate
    states = run_trials(trials, train, Resources(cpus_per_trial=2), show_progress=False, then=then)
    assert [s["status"] for s in states] == ["done"] * 3   # a failed follow-up fails no trial
    assert log.read_text().split("\n")[:-1] == ["train 0", "then 0", "train 1", "train 2", "then 2"]
    assert "follow-up of trial seed=1" in capsys.readouterr().err
    # done trials get no follow-up on a rerun (the caller scores what it lacks)
    assert run_trials(trials, train, Resources(cpus_per_trial=2), show_progress=False, then=then) == states
    assert log.read_text().count("\n") == 5


@pytest.mark.slow
def test_bench_rank_many_proxies_end_to_end(tmp_path, ray_local):
    from simrl.cli.bench.rank import Config
    from simrl.cli.bench.rank_many import ManySpec, draw_proxies, run_many
    from simrl.validate.ood import OODConfig
    from simrl.validate.ranking import RankConfig
    from simrl.validate.simeval import SimEvalConfig

    spec = ManySpec(pool_drs=("none", "narrow", "uniform"), pool_runs=((0, 1.0),), proxies=2,
                    real_worlds=2, real_steps=40, truth_episodes=2)
    # proxies lie outside every default range, with latency and noise, the same on every call
    proxies = draw_proxies("hopper", spec)
    assert [p.to_dict() for p in proxies] == [p.to_dict() for p in draw_proxies("hopper", spec)]
    for p in proxies:
        assert all(v < 0.5 or v > 1.5 for v in p.params.values()) and p.latency > 0 and p.noise
    args = Config(protocol="many", tasks="hopper", steps=256, num_envs=8, cache=str(tmp_path / "many"),
                  json=str(tmp_path / "many.json"))
    cfg = RankConfig(sim=SimEvalConfig(num_envs=4), ood=OODConfig(reference_envs=4, reference_steps=40))
    assert run_many(args, spec, cfg) == 0
    task = json.loads((tmp_path / "many.json").read_text())["tasks"]["hopper"]
    assert task["pool_size"] == 3 and len(task["per_proxy"]) == 2 and len(task["truth"][0]) == 3
    for method in ("vsdr", "sim"):
        assert set(task["summary"][method]) == {"spearman", "kendall", "regret@1"}
        assert task["summary"][method]["regret@1"]["min"] >= 0


@pytest.mark.slow
def test_bench_rank_and_residual_sweeps_resume_without_retraining(tmp_path, ray_local):
    from simrl.cli.bench.pool import train_pool
    from simrl.sweep import Resources

    members = {"none": ("none", 256, 0), "narrow": ({"mass": (0.9, 1.1)}, 256, 1)}
    first = train_pool("hopper", members, tmp_path / "pool", Resources(), num_envs=8)
    states = {n: (p.parent / "trial.json").read_text() for n, p in first.items()}
    stamps = {n: (p / "spec.json").stat().st_mtime_ns for n, p in first.items()}
    assert train_pool("hopper", members, tmp_path / "pool", Resources(), num_envs=8) == first
    assert {n: (p.parent / "trial.json").read_text() for n, p in first.items()} == states
    assert {n: (p / "spec.json").stat().st_mtime_ns for n, p in first.items()} == stamps

    argv = ["bench", "residual", "--steps", "256", "--seeds", "1", "--num-envs", "4", "--episodes", "2",
            "--evals", "1", "--out", str(tmp_path / "res")]
    assert main(argv) == 0
    (trial,) = (tmp_path / "res" / "trials").iterdir()
    before = (trial / "trial.json").read_text(), (trial / "final" / "spec.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert ((trial / "trial.json").read_text(), (trial / "final" / "spec.json").stat().st_mtime_ns) == before
    log = (trial / "train.log").read_text()
    assert log.count("simrl train") == 1
