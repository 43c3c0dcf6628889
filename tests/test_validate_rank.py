"""Recorded rollouts, real-data checks and ``simrl rank`` end to end on tiny checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
import policies
from policies.networks import NetworkConfig, Policy
from simrl.cli import main
from simrl.core.logs import LogError, LogMeta, LogWriter, TruncatedLogWarning, read_log, read_logs
from simrl.validate.data import load_real_data
from simrl.validate.features import policy_features
from simrl.validate.ood import OODConfig
from simrl.validate.ranking import RankConfig, rank_checkpoints
from simrl.validate.record import log_meta, record
from simrl.validate.rollout import torch_threads
from simrl.validate.simeval import SimEvalConfig

EPISODE = 60  # short episodes keep simulation in tests tiny
FAST = ["--ood.reference-envs", "4", "--ood.reference-steps", "40", "--sim.num-envs", "2",
        "--ood.mahalanobis.clusters", "2", "--ood.gmm.components", "2"]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def make_checkpoint(path: Path, seed: int, dr: object) -> Path:
    """A random-weight policy with normalizer statistics from a short random rollout."""
    torch.manual_seed(seed)
    task = envs.make_task("hopper", max_episode_steps=EPISODE)
    env = envs.make(task, 2, dr=dr, seed=seed)
    policy = Policy(task.observation_size, task.action_size, NetworkConfig(actor_hidden=(16, 16)))
    obs = env.reset_numpy()
    rng = np.random.default_rng(seed)
    for _ in range(30):
        policy.normalizer.update(torch.as_tensor(obs))
        obs = env.step_numpy(rng.uniform(-1, 1, (2, task.action_size)))[0]
    return policies.save(path, policy, task, distribution=env.distribution,
                         training={"steps": 0, "seed": seed})


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("pool")
    with torch_threads(1):
        wide = {"mass:torso": (0.3, 2.0), "friction": (0.3, 2.0)}
        return [make_checkpoint(root / name, i, dr)
                for i, (name, dr) in enumerate([("none", "none"), ("uniform", "uniform"), ("wide", wide)])]


@pytest.fixture(scope="module")
def real_logs(pool, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real")
    proxy = envs.make(envs.make_task("hopper", max_episode_steps=EPISODE), 2, seed=7,
                      dr={"mass:torso": (1.4, 1.4), "gain": (0.8, 0.8), "latency": (1, 1)})
    with torch_threads(1):
        record(proxy, policies.load(pool[1]), 90, out, policy_id="uniform", source="sim2sim", seed=7)
    return out


def test_record_round_trip(pool, tmp_path):
    env = envs.make(envs.make_task("hopper", max_episode_steps=25), 2, seed=0)
    policy = policies.load(pool[0])
    paths = record(env, policy, 40, tmp_path, policy_id="none", seed=0)
    logs = read_logs(tmp_path)
    assert [Path(log.path) for log in logs] == sorted(paths)
    assert sum(len(log) for log in logs) == 80
    log = logs[0]
    assert log.meta.task == "hopper" and log.meta.source == "sim" and log.meta.policy_id == "none"
    assert log.meta.observation_names == env.task.observation_names
    np.testing.assert_array_equal(log.step, np.arange(len(log)))
    np.testing.assert_allclose(log.action, policy(log.obs), atol=1e-6)  # the policy's own actions
    assert set(log.state) >= {"joint_pos", "joint_vel"}
    finished = [lg for lg in logs if lg.meta.extra["complete"] == "true"]
    assert finished and all(len(lg) <= 25 and "return" in lg.meta.extra for lg in finished)


def test_policy_features_match_the_policy(pool):
    policy = policies.load(pool[1])
    obs = np.random.default_rng(0).standard_normal((20, policy.module.obs_dim))
    feats = policy_features(policy.module, obs)
    assert feats.shape == (20, 11 + 16 + 3)
    np.testing.assert_allclose(feats[:, -3:].numpy(), policy(obs), atol=1e-6)
    np.testing.assert_allclose(policy_features(policy.module, obs, ["obs"]).numpy(),
                               policy.module.normalize(torch.as_tensor(obs)).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="feature parts"):
        policy_features(policy.module, obs, ["pixels"])


def test_rank_end_to_end_writes_report_and_metrics(pool, real_logs, tmp_path, capsys):
    truth = {str(p): float(i) for i, p in enumerate(pool)}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    out = tmp_path / "report"
    code = main(["rank", "--checkpoints", *map(str, pool), "--real-logs", str(real_logs), "--out", str(out),
                 "--truth", str(tmp_path / "truth.json"), *FAST])
    text = capsys.readouterr().out
    assert code == 0, text
    data = json.loads((out / "ranking.json").read_text())
    assert sorted(c["rank"] for c in data["checkpoints"]) == [1, 2, 3]
    row = data["checkpoints"][0]
    assert set(row["ood"]) == {"mahalanobis", "knn", "gmm"}
    assert {"mean", "q95", "frac"} <= set(row["ood"]["knn"])
    assert {"vsdr", "sim", "ood:knn", "vsdr:gmm"} <= set(data["metrics"])
    for name in ("sim_vs_ood.png", "ranking.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "Spearman" in page
    assert "Spearman" in text and "vsdr" in text


class ObsNormModel:
    """A stand-in world model: disagreement is the observation norm."""

    def disagreement(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        assert action.shape == (len(obs), 3) and np.abs(action).max() <= 1
        return np.linalg.norm(obs, axis=1)


def test_rank_api_with_world_model(pool, real_logs):
    cfg = RankConfig(ood=OODConfig(detectors=("knn",), reference_envs=4, reference_steps=30),
                     sim=SimEvalConfig(num_envs=2))
    ranking = rank_checkpoints(pool[:2], real_logs, cfg, world_model=ObsNormModel())
    assert set(ranking.ood[0]) == {"knn", "world_model"}
    assert set(ranking.scores) == {"vsdr", "sim", "ood:knn", "vsdr:knn", "ood:world_model",
                                   "vsdr:world_model"}
    assert sorted(ranking.rank.tolist()) == [1, 2] and ranking.timings["simulation"] > 0


def test_rank_reads_truncated_log_with_warning(pool, real_logs, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    source = read_log(sorted(real_logs.glob("*.mcap"))[0])
    with LogWriter(logs / "cut.mcap", source.meta, chunk_steps=5) as w:
        for i in range(len(source)):
            w.write(source.t[i], int(source.step[i]), {}, source.obs[i], source.action[i])
    data = (logs / "cut.mcap").read_bytes()
    (logs / "cut.mcap").write_bytes(data[:int(len(data) * 0.7)])
    with pytest.warns(TruncatedLogWarning, match="cut.mcap"):
        code = main(["rank", "--checkpoints", *map(str, pool[:2]), "--real-logs", str(logs),
                     "--out", str(tmp_path / "report"), *FAST])
    assert code == 0
    report = json.loads((tmp_path / "report" / "ranking.json").read_text())
    assert report["real_logs"]["truncated"] == [str(logs / "cut.mcap")]
    assert 0 < report["real_logs"]["steps"] < len(source)


def write(path: Path, meta: LogMeta, obs: np.ndarray) -> Path:
    with LogWriter(path, meta) as w:
        for i, o in enumerate(obs):
            w.write(0.008 * i, i, {}, o, np.zeros(len(meta.action_names)))
    return path


def hopper_meta(**changes) -> LogMeta:
    task = envs.make_task("hopper")
    meta = log_meta(task, "p", "robot")
    for k, v in changes.items():
        setattr(meta, k, v)
    return meta


@pytest.mark.parametrize("case, match", [
    ("task", r"wrong\.mcap: field task is 'walker2d'"),
    ("robot", r"wrong\.mcap: field robot is 'go1'"),
    ("names", r"wrong\.mcap: field observation_names does not match"),
    ("nan", r"wrong\.mcap: field obs has NaN at step 3 \(qpos_leg_joint\)"),
    ("empty", r"wrong\.mcap: field step: empty log"),
])
def test_bad_logs_raise_clear_errors(pool, tmp_path, case, match):
    obs = np.zeros((6, 11))
    meta = hopper_meta()
    if case in ("task", "robot"):
        meta = hopper_meta(**{case: {"task": "walker2d", "robot": "go1"}[case]})
    elif case == "names":
        meta = hopper_meta(observation_names=[f"x{i}" for i in range(11)])
    elif case == "nan":
        obs[3, 3] = np.nan
    elif case == "empty":
        obs = obs[:0]
    path = write(tmp_path / "wrong.mcap", meta, obs)
    spec = policies.load_spec(pool[0])
    with pytest.raises(LogError, match=match):
        load_real_data(path, spec)


def test_bad_input_on_the_command_line(pool, tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    out = ["--out", str(tmp_path / "r")]
    code = main(["rank", "--checkpoints", str(pool[0]), "--real-logs", str(empty), *out])
    assert code == 2 and "nothing: field path: directory has no *.mcap logs" in capsys.readouterr().err
    other = make_checkpoint(tmp_path / "other", 0, "none")
    spec = json.loads((other / "spec.json").read_text())
    spec["observation"]["names"][0] = "renamed"
    (other / "spec.json").write_text(json.dumps(spec))
    code = main(["rank", "--checkpoints", str(pool[0]), str(other), "--real-logs", str(empty), *out])
    assert code == 2 and "field observation differs" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bench_reality_proxy_perturbs_physics_and_sensors():
    """The bench's proxy is a perturbation (the file deploy reads), run as batched worlds."""
    from simrl.cli.bench.rank import PROXY

    proxy = PROXY.make_env("hopper", 2, seed=0)
    dr = {k: (v, v) for k, v in PROXY.params.items()} | {"latency": (1, 1)}
    clean = envs.make("hopper", 2, seed=0, dr=dr)
    noisy_obs, clean_obs = proxy.reset_numpy(0), clean.reset_numpy(0)
    diff = noisy_obs - clean_obs
    assert 0 < np.abs(diff[:, :5]).max() < 0.1 and np.abs(diff[:, 5:]).std() > np.abs(diff[:, :5]).std()
    assert dict(zip(proxy.param_names, proxy.params[0])) == pytest.approx({**PROXY.params, "latency": 1})
    assert proxy.step_numpy(np.zeros((2, 3)))[0].shape == (2, 11)
