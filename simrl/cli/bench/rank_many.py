"""``simrl bench rank --protocol many``: VSDR over many pools and proxies.

For each task of ``--tasks``: a pool of 20 PPO checkpoints (:data:`SPEC`: four randomization
settings x five seed/budget pairs) and a logging policy, all trained as the trials of one sweep
(resumable, on Ray); ``--proxies`` reality proxies drawn from a fixed seed, each a
perturbation *outside* the task's default training ranges (every physical scale parameter
below its range's low end or above its high end) with one or two control steps of latency and
sensor noise on the joint readings. Per proxy: real logs of the logging policy on it, every
checkpoint's true return on it, and the ranking of the pool by VSDR, the sim-only score and
each OOD-only score; Spearman, Kendall and regret@1 against the truth, then their mean and
spread over the proxies. The simulation scores and reference rollouts do not depend on the
proxy and are computed once per checkpoint.

Every setting is in :class:`ManySpec`, fixed before any pool was scored (the scoring's own
settings are simrl rank's defaults, :class:`~simrl.validate.ranking.RankConfig`, unchanged);
nothing here was tuned on these pools.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.perturbation import Perturbation
from simrl.core import machine as bench_machine

METRICS = ("spearman", "kendall", "regret@1")


@dataclass(frozen=True)
class ManySpec:
    """The protocol's settings (fixed before the runs; see the module doc)."""

    pool_drs: tuple[str, ...] = ("none", "narrow", "uniform", "wide")  # narrow/wide: the task's default ranges scaled about nominal
    narrow_factor: float = 0.25          # narrow: default ranges at a quarter of their width
    wide_factor: float = 1.5             # wide: default ranges at 1.5x their width (lower ends kept > 0)
    pool_runs: tuple[tuple[int, float], ...] = ((0, 1.0), (1, 1.0), (2, 1.0), (3, 0.5), (4, 0.25))  # (seed, budget as a multiple of --steps)
    logger_seed: int = 100               # the logging policy: uniform DR, full budget, this seed (not in the pool)
    proxies: int = 5                     # proxies per task
    proxy_seed: int = 18                 # seed of the proxy draws (issue 18)
    below: tuple[float, float] = (0.6, 0.95)   # a parameter below its range: low x U(below)
    above: tuple[float, float] = (1.05, 1.4)   # above it: high x U(above)
    latency_steps: tuple[int, ...] = (1, 2)    # command latency in control steps, drawn uniformly
    noise_joint_pos: tuple[float, float] = (0.005, 0.02)  # sensor noise std, U(lo, hi)
    noise_joint_vel: tuple[float, float] = (0.05, 0.2)
    real_worlds: int = 16                # proxy worlds recording real logs
    real_steps: int = 500                # control steps per world
    truth_episodes: int = 32             # proxy episodes per checkpoint

    @property
    def pool_size(self) -> int:
        return len(self.pool_drs) * len(self.pool_runs)


SPEC = ManySpec()


def default_ranges(task: str) -> list[Any]:
    """The task's default randomization ranges (``--dr uniform``) as ParamRanges."""
    from envs.randomization import make_ranges
    from envs.tasks import make_config, make_task

    return make_ranges(dict(make_config(task).randomization), make_task(task).model)


def scaled_ranges(task: str, factor: float) -> dict[str, list[float]]:
    """The default ranges at ``factor`` times their width about the nominal (lower ends of
    scale and non-negative parameters kept above 0)."""
    from envs.randomization import KINDS

    out = {}
    for r in default_ranges(task):
        lo = r.nominal - factor * (r.nominal - r.low)
        hi = r.nominal + factor * (r.high - r.nominal)
        if KINDS.get(r.kind).bound in ("positive", "non_negative"):
            lo = max(lo, 0.05 * r.nominal if r.nominal > 0 else 0.0)
        out[r.name] = [float(lo), float(hi), float(r.nominal)]
    return out


def pool_members(task: str, steps: int, spec: ManySpec = SPEC) -> dict[str, tuple[Any, int, int]]:
    """name -> (randomization, steps, seed) of the pool, then ``logger``."""
    drs: dict[str, Any] = {"none": "none", "uniform": "uniform",
                           "narrow": scaled_ranges(task, spec.narrow_factor),
                           "wide": scaled_ranges(task, spec.wide_factor)}
    members = {f"{d}-s{seed}-x{mult:g}": (drs[d], max(int(mult * steps), 1), seed)
               for d in spec.pool_drs for seed, mult in spec.pool_runs}
    members["logger"] = ("uniform", steps, spec.logger_seed)
    return members


def draw_proxies(task: str, spec: ManySpec = SPEC, n: int | None = None) -> list[Perturbation]:
    """``n`` proxies from ``spec.proxy_seed``: every physical scale parameter of the task's
    default ranges outside its range, latency and joint sensor noise."""
    from envs.randomization import KINDS
    from envs.tasks import make_config

    rng = np.random.default_rng([spec.proxy_seed, sum(map(ord, task))])
    dt = make_config(task).control_dt
    physical = [r for r in default_ranges(task)
                if KINDS.get(r.kind).unit == "scale" and not KINDS.get(r.kind).in_env]
    out = []
    for _ in range(spec.proxies if n is None else n):
        params = {}
        for r in physical:
            if rng.random() < 0.5:
                params[r.name] = round(float(r.low * rng.uniform(*spec.below)), 4)
            else:
                params[r.name] = round(float(r.high * rng.uniform(*spec.above)), 4)
        latency = int(rng.choice(spec.latency_steps)) * dt
        noise = {"joint_pos": round(float(rng.uniform(*spec.noise_joint_pos)), 4),
                 "joint_vel": round(float(rng.uniform(*spec.noise_joint_vel)), 4)}
        out.append(Perturbation(params=params, latency=latency, noise=noise))
    return out


def proxy_logs(task: str, proxy: Perturbation, logger: Path, out: Path, spec: ManySpec) -> Path:
    """Real logs of the logging policy on ``proxy`` (recorded once)."""
    import policies
    from simrl.validate.record import record

    if out.is_dir() and any(out.glob("*.mcap")):
        return out
    record(proxy.make_env(task, spec.real_worlds, seed=1), policies.load(logger), spec.real_steps, out,
           policy_id="logger", source="sim2sim", seed=1)
    return out


def summarize(per_proxy: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> metric -> mean, std, min, max over the proxies."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in per_proxy[0]:
        out[method] = {}
        for metric in METRICS:
            v = np.array([p[method][metric] for p in per_proxy], dtype=float)
            v = v[np.isfinite(v)]   # a constant score has no rank correlation (nan)
            out[method][metric] = ({"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                                    "max": float(v.max()), "proxies": int(len(v))} if len(v) else
                                   {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                                    "max": float("nan"), "proxies": 0})
    return out


def run_task(task: str, args: Any, spec: ManySpec, root: Path, cfg: Any = None) -> dict[str, Any]:
    """The protocol on one task; results cached under ``root``."""
    import policies
    from simrl.cli.bench.pool import proxy_returns, train_pool
    from simrl.sweep import Resources
    from simrl.validate.data import load_real_data
    from simrl.validate.ood import ood_scores, reference_rollouts
    from simrl.validate.ranking import RankConfig, finish
    from simrl.validate.rollout import torch_threads
    from simrl.validate.simeval import sim_score

    t0 = time.perf_counter()
    members = pool_members(task, args.steps, spec)
    finals = train_pool(task, members, root / "sweep",
                        Resources(args.cpus_per_trial, 0.0, args.address or None), args.num_envs)
    names = [n for n in members if n != "logger"]
    pool = [finals[n] for n in names]
    train_s = time.perf_counter() - t0
    cfg = cfg or RankConfig()
    proxies = draw_proxies(task, spec, args.proxies or None)
    loaded = [policies.load(p) for p in pool]
    with torch_threads(cfg.threads):
        t1 = time.perf_counter()
        sims = np.array([sim_score(p, cfg.sim).score for p in loaded])
        refs = [reference_rollouts(p, cfg.ood) for p in loaded]
        sim_s = time.perf_counter() - t1
        per_proxy, truths = [], []
        for i, proxy in enumerate(proxies):
            d = root / f"proxy{i}"
            d.mkdir(parents=True, exist_ok=True)
            proxy.save(d / "proxy.json")
            truth = proxy_returns(task, proxy, pool, spec.truth_episodes, d / "truth.json")
            logs = proxy_logs(task, proxy, finals["logger"], d / "real_logs", spec)
            real = load_real_data(logs, loaded[0].spec)
            oods = [ood_scores(p, ref, real, cfg.ood) for p, ref in zip(loaded, refs)]
            ranking = finish([str(p) for p in pool], sims, oods, real, cfg.vsdr, {})
            metrics = ranking.evaluate(truth)
            per_proxy.append(metrics)
            truths.append(truth.tolist())
            print(f"{task} proxy {i}: true return {truth.min():.3g}..{truth.max():.3g}; Spearman "
                  + ", ".join(f"{m} {v['spearman']:.2f}" for m, v in metrics.items()), flush=True)
    summary = summarize(per_proxy)
    best = max(summary, key=lambda m: summary[m]["spearman"]["mean"])
    vsdr_beats_sim = int(sum(p["vsdr"]["spearman"] > p["sim"]["spearman"] for p in per_proxy))
    print(f"{task}: best mean Spearman {best} ({summary[best]['spearman']['mean']:.2f}); VSDR beats "
          f"sim-only on {vsdr_beats_sim}/{len(per_proxy)} proxies", flush=True)
    return {"pool": names, "pool_size": len(pool), "proxies": [p.to_dict() for p in proxies],
            "truth": truths, "sim_scores": sims.tolist(), "per_proxy": per_proxy, "summary": summary,
            "best_mean_spearman": best, "vsdr_beats_sim_only": vsdr_beats_sim,
            "timings_s": {"train": round(train_s, 1), "sim_and_reference": round(sim_s, 1),
                          "total": round(time.perf_counter() - t0, 1)}}


def run_many(args: Any, spec: ManySpec = SPEC, cfg: Any = None) -> int:
    """Runs the protocol on every task of ``--tasks``; writes ``CACHE/rank_many.json`` (and
    ``--json``). ``spec`` and ``cfg`` (a RankConfig) other than the defaults: for tests."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ValueError("--tasks: give at least one task")
    root = Path(args.cache or "runs/bench-rank-many")
    machine = {**bench_machine.machine_info(threads=int(args.cpus_per_trial)), "cpus_per_trial": args.cpus_per_trial}
    t0 = time.perf_counter()
    results = {task: run_task(task, args, spec, root / task, cfg) for task in tasks}
    report = {"spec": asdict(spec), "steps": args.steps, "num_envs": args.num_envs, "proxies": args.proxies or spec.proxies,
              "tasks": results, "rank_config": "simrl.validate.ranking.RankConfig() defaults",
              "machine": bench_machine.finish(machine),
              "wall_time_s": round(time.perf_counter() - t0, 1),
              "command": f"simrl bench rank --protocol many --tasks {args.tasks} --steps {args.steps} "
                         f"--proxies {args.proxies} --num-envs {args.num_envs} --cache {root}"}
    root.mkdir(parents=True, exist_ok=True)
    (root / "rank_many.json").write_text(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\n{'task':14s} {'method':22s} {'Spearman':>16s} {'Kendall':>16s} {'regret@1':>18s}")
    for task, r in results.items():
        for method, m in r["summary"].items():
            print(f"{task:14s} {method:22s} " + " ".join(
                f"{m[k]['mean']:7.2f} +- {m[k]['std']:5.2f}" for k in METRICS))
    print(f"results: {root / 'rank_many.json'}")
    return 0
