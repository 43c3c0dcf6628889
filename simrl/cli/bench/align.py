"""Which alignment method fixes a policy for a robot that differs from its training simulator,
and how much robot time does it need?

On ``--task`` with a sim-to-sim proxy whose perturbation is outside the training
randomization (per task, :data:`SETUPS`; hopper: motors at 60 % strength, its DR randomizes
masses and friction only; go1-velocity: weaker motors, a heavier trunk, more servo damping, a
slipperier floor and two control steps of latency, each past its DR range): one PPO
policy is trained on the nominal simulator (a sweep trial), or ``--checkpoint`` is taken as it is
(a go1 tracker takes an hour to train), then for each seed and each log length
(``--log-seconds``, robot time recorded by that policy on the proxy) every method is a sweep
trial (:mod:`simrl.sweep`, Ray; a finished trial is never rerun):

* ``dr``: the policy fine-tuned under the task's uniform DR (no logs);
* ``sysid``: ``simrl align --method sysid`` (``--sysid-params``), then fine-tuned under DR
  centred on the estimate (its ``dr.json``);
* ``delta-action`` (ASAP) and ``delta-dynamics``: ``simrl align`` with fine-tuning;
* ``vgdf``: SAC from scratch with online proxy steps, as many as the log length, and ten
  simulator steps per robot step (``--vgdf-updates`` SAC updates per simulator step; the
  dynamics ensemble refitted every log length of simulator steps).

``--methods`` picks some of them. Every fine-tuning gets the same env steps
(``--finetune-steps``). Each policy is scored on the proxy (``--episodes`` episodes,
:func:`simrl.align.finetune.proxy_return`) by the task's quantities, the first being the score: hopper the mean return (higher is better); go1-velocity
the mean linear-velocity tracking error over its random commands (m/s, lower is better), with
the yaw-rate error and the share of episodes that end in a fall. ``original`` is the policy
before any of it. On a floating base the window starts take the logged base position and
velocity (``--base-state log``: a robot with motion capture or a state estimator; ``support``
rebuilds them from the stance feet, what a robot without either has). Writes
``align_bench.json`` and ``align_bench.png`` into ``--out``. ``--small`` (the default) is a
configuration for ~15 minutes on 2 cores: its budgets are far below what the methods are
designed for, so read its numbers as a smoke test of the loop, not a verdict.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from envs.perturbation import Perturbation
from simrl.core.machine import finish, machine_info
from simrl.cli.sweep import sweep_trials
from simrl.sweep import Resources, make_trials, run_trials, write_table

METHODS = ("original", "dr", "sysid", "delta-action", "delta-dynamics", "vgdf")
RUNNABLE = METHODS[1:]                   # what --methods picks from (``original`` is always scored)


@dataclass(frozen=True)
class Quantity:
    """What a policy is scored by on the proxy: ``return``, ``fall_rate`` (share of episodes
    the task ended) or a per-step metric of the task (averaged per episode)."""

    key: str
    label: str
    better: Literal["higher", "lower"]

    def of(self, result: dict[str, Any]) -> float:
        """Its value in a :func:`simrl.align.finetune.proxy_return` result."""
        if self.key == "return":
            return float(result["mean_return"])
        if self.key == "fall_rate":
            return float(result["terminated_rate"])
        if self.key not in result["metrics"]:
            raise ValueError(f"the task reports no metric {self.key!r}; it has {sorted(result['metrics'])}")
        return float(result["metrics"][self.key])


@dataclass(frozen=True)
class TaskSetup:
    """The bench's per-task settings: the default proxy (outside the task's training DR), what
    sysid identifies, and the quantities reported (the first is the score)."""

    proxy: dict[str, Any] | None
    sysid_params: str                    # empty: the task's randomization names sysid can identify
    quantities: tuple[Quantity, ...] = (Quantity("return", "return on the proxy", "higher"),)


SETUPS = {
    "hopper": TaskSetup({"params": {"gain": 0.6}}, "gain,mass:torso,friction"),
    # training DR: mass:trunk 0.8-1.3, friction:floor 0.5-1.6, kp 0.8-1.2, kd 0.7-1.3,
    # latency 0-1 control steps (0-20 ms)
    "go1-velocity": TaskSetup(
        {"params": {"gain": 0.75, "mass:trunk": 1.4, "kd": 2.0, "friction:floor": 0.4}, "latency": 0.04},
        "gain,mass:trunk,kd,friction:floor,latency",
        (Quantity("lin_vel_error", "linear-velocity tracking error on the proxy (m/s)", "lower"),
         Quantity("yaw_rate_error", "yaw-rate tracking error on the proxy (rad/s)", "lower"),
         Quantity("fall_rate", "falls on the proxy (share of episodes)", "lower"))),
}
OTHER = TaskSetup(None, "")              # any other task: --proxy is needed, scored by return


@dataclass
class Config:
    """Options of ``simrl bench align``."""

    task: str = ""                       # task (default: the checkpoint's, else hopper)
    checkpoint: str = ""                 # the original policy (a simrl PPO checkpoint); empty: train one on the nominal task
    proxy: str = ""                      # perturbation file of the proxy robot (default: the task's, see SETUPS)
    small: bool = True                   # the ~15-minute configuration (overrides the budgets below)
    methods: tuple[str, ...] = RUNNABLE  # the methods run (``original`` is always scored)
    seeds: int = 3                       # seeds per method and log length
    log_seconds: tuple[float, ...] = (10.0, 60.0, 300.0)  # robot time recorded for the methods
    train_steps: int = 1_000_000         # env steps of the original policy (without --checkpoint)
    finetune_steps: int = 300_000        # env steps of every fine-tuning
    delta_steps: int = 300_000           # PPO env steps of the delta-action model
    sysid_params: str = ""               # what sysid identifies (default: the task's, see SETUPS)
    sysid_budget: int = 300              # sysid simulator evaluations
    windows: int = 2000                  # log windows the delta models fit (at most)
    base_state: Literal["log", "support"] = "log"  # floating base at window starts: the logged base position and velocity (motion capture or a state estimator) or rebuilt from the stance feet
    vgdf_updates: float = 0.25           # VGDF's SAC updates per simulator step
    episodes: int = 16                   # proxy episodes per evaluation
    out: str = "runs/bench_align"        # sweep directory (trials/, results) and results
    cpus_per_trial: float = 1.0          # CPUs each trial reserves on Ray
    address: str = ""                    # an existing Ray cluster (HOST:PORT); empty: a local Ray
    report_only: bool = False            # run no trial: the table of the trials already done in --out

    def resolved(self) -> "Config":
        """The budgets ``--small`` stands for."""
        if not self.small:
            return self
        return replace(self, log_seconds=tuple(s for s in self.log_seconds if s <= 60) or (10.0,),
                       train_steps=600_000, finetune_steps=50_000, delta_steps=50_000, sysid_budget=120,
                       windows=400, episodes=8, vgdf_updates=0.05)


def align_trial(trial: Any, context: dict[str, Any]) -> dict[str, Any]:
    """One method, seed and log length (in a Ray worker): align, fine-tune, score on the proxy."""
    from envs.tasks import task_from_spec
    from simrl.align import METHODS as ALIGN
    from simrl.align.base import AlignConfig, DeltaActionConfig, FinetuneConfig, VgdfConfig
    from simrl.align.finetune import finetune, proxy_return
    from simrl.core.spec import load_spec

    o, d, c = trial.options, trial.directory, context
    method, seed = o["method"], int(o["seed"])
    ckpt, proxy = c["checkpoint"], Perturbation.from_dict(c["proxy"])
    task = task_from_spec(load_spec(ckpt))
    fc = FinetuneConfig(steps=c["finetune_steps"], seed=seed, proxy_episodes=0)
    logs = c["logs"].get(f"{o['log_seconds']}-{seed}")
    base = c["base_state"]
    report: dict[str, Any] = {}
    say = lambda s: print(s, flush=True)  # noqa: E731
    if method == "dr":
        finetune(ckpt, d, fc, dr="uniform", log=say)
    elif method == "sysid":
        (d / "sysid").mkdir(parents=True, exist_ok=True)
        cfg = AlignConfig(params=tuple(p for p in c["sysid_params"].split(",") if p), budget=c["sysid_budget"],
                          seed=seed, threads=1, base_state=base)
        report = ALIGN.get("sysid").run(task, logs, cfg, d / "sysid", say, truth=proxy)
        finetune(ckpt, d, fc, dr=str(d / "sysid" / "dr.json"), log=say)
    elif method in ("delta-action", "delta-dynamics"):
        cfg = AlignConfig(windows=c["windows"], window_steps=10, seed=seed, threads=1, finetune=fc,
                          base_state=base, delta_action=DeltaActionConfig(steps=c["delta_steps"]))
        report = ALIGN.get(method).run(task, logs, cfg, d, say, checkpoint=ckpt)
    elif method == "vgdf":
        robot_steps = int(round(float(o["log_seconds"]) / task.cfg.control_dt))
        vc = VgdfConfig(sim_steps=10 * robot_steps, ratio=10, start_steps=min(2000, 5 * robot_steps),
                        updates_per_step=float(o["vgdf_updates"]), ensemble_every=max(1000, robot_steps),
                        eval_episodes=0)
        report = ALIGN.get("vgdf").run(task, logs, AlignConfig(seed=seed, vgdf=vc), d, say, truth=proxy,
                                       checkpoint=ckpt)
    else:
        raise ValueError(f"unknown method {method!r}")
    score = proxy_return(d / "final", proxy, c["episodes"], seed=20_000 + seed)
    err = report.get("heldout_error") or {}
    return {"final": str(d / "final"), "proxy_return": score["mean_return"],
            "proxy": {q.key: q.of(score) for q in c["quantities"]},
            "heldout_error_before": err.get("unaligned", err.get("nominal")),
            "heldout_error_after": err.get("aligned", err.get("identified")),
            "estimate": report.get("estimate")}


def record_logs(ckpt: Path, proxy: Perturbation, task: Any, seconds: float, seed: int, out: Path) -> str:
    """``seconds`` of robot time of the checkpoint on the proxy (4 worlds of the built ``task``),
    as real logs."""
    import policies
    from simrl.validate.record import record

    if not any(out.glob("*.mcap")):
        policy = policies.load(ckpt)
        steps = int(round(seconds / task.cfg.control_dt / 4))
        env = proxy.make_env(task, 4, seed=1000 + seed)
        record(env, lambda obs: policy(obs.astype(np.float32)), steps, out, source="sim2sim", seed=1000 + seed,
               policy_id=str(ckpt))
    return str(out)


def original_policy(cfg: Config, out: Path, resources: Resources) -> tuple[Path, str]:
    """``--checkpoint`` (checked: a PPO run that can be fine-tuned, of ``--task``) and its task,
    or a PPO policy trained on the nominal task (a sweep trial, no randomization)."""
    if cfg.checkpoint:
        from simrl.align.finetune import run_config
        from simrl.core.spec import load_spec

        ckpt = Path(cfg.checkpoint)
        if not (ckpt / "spec.json").is_file():
            raise ValueError(f"--checkpoint {ckpt}: no spec.json there; give a checkpoint directory "
                             "(RUN/final or RUN/checkpoints/step_N)")
        task = load_spec(ckpt).get("task")
        if cfg.task and cfg.task != task:
            raise ValueError(f"--checkpoint {ckpt}: field task is {task!r}, but --task is {cfg.task!r}")
        run_config(ckpt)                 # fails here, not in every trial, when it cannot be fine-tuned
        return ckpt, task
    task = cfg.task or "hopper"
    trials, rows = sweep_trials([{"task": task, "steps": cfg.train_steps, "seed": 0, "dr": "none",
                                  "checkpoint-every": cfg.train_steps}], [], out / "original", resources)
    if rows[0]["status"] != "done":
        raise RuntimeError(f"training the original policy failed: {rows[0].get('error')}")
    return trials[0].directory / "final", task


def run(args: Config) -> int:
    from envs.tasks import task_from_spec
    from simrl.align.finetune import proxy_return
    from simrl.core.spec import load_spec

    machine = machine_info(threads=1)
    t0 = time.perf_counter()
    cfg = args.resolved()
    unknown = [m for m in cfg.methods if m not in RUNNABLE]
    if unknown or not cfg.methods:
        raise ValueError(f"--methods {','.join(cfg.methods)}: "
                         + (f"unknown {unknown}; " if unknown else "none given; ")
                         + f"choose from {', '.join(RUNNABLE)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    resources = Resources(cfg.cpus_per_trial, 0.0, cfg.address or None)
    # 1. the original policy: --checkpoint, or trained on the nominal simulator
    ckpt, task_name = original_policy(cfg, out, resources)
    setup = SETUPS.get(task_name, OTHER)
    if not cfg.proxy and setup.proxy is None:
        raise ValueError(f"--proxy: bench align has no default proxy for {task_name} (it has for "
                         f"{', '.join(SETUPS)}); give a perturbation file")
    proxy = Perturbation.load(cfg.proxy) if cfg.proxy else Perturbation.from_dict(setup.proxy or {})
    cfg = replace(cfg, task=task_name, sysid_params=cfg.sysid_params or setup.sysid_params)
    quantities = setup.quantities
    task = task_from_spec(load_spec(ckpt))
    # 2. robot logs of it on the proxy, per seed and length
    logs = {f"{s}-{seed}": record_logs(ckpt, proxy, task, s, seed, out / "logs" / f"{s:g}s-seed{seed}")
            for s in cfg.log_seconds for seed in range(cfg.seeds)}
    # 3. every method as a sweep trial
    options = [{"method": "dr", "seed": seed, "log_seconds": 0.0}
               for seed in range(cfg.seeds) if "dr" in cfg.methods]
    options += [{"method": m, "seed": seed, "log_seconds": s,
                 **({"vgdf_updates": cfg.vgdf_updates} if m == "vgdf" else {})}
                for s in cfg.log_seconds for m in METHODS[2:] if m in cfg.methods for seed in range(cfg.seeds)]
    context = {"checkpoint": str(ckpt), "proxy": proxy.to_dict(), "logs": logs, "quantities": quantities, **{
        k: getattr(cfg, k) for k in ("finetune_steps", "delta_steps", "sysid_params", "sysid_budget",
                                     "windows", "episodes", "base_state")}}
    trials = make_trials(options, ["method", "log_seconds", "seed"], out, lambda o: {**o, **{
        k: v for k, v in context.items() if k not in ("logs", "quantities")}})
    states = ([t.state() for t in trials] if cfg.report_only
              else run_trials(trials, align_trial, resources, context))
    write_table(trials, out, states)
    missing = [f"{t.label}: {s.get('status')} {(s.get('error') or '')[:120]}".strip()
               for t, s in zip(trials, states) if s.get("status") != "done"]
    # 4. the tables: each quantity on the proxy per method and log length
    original = []
    for seed in range(cfg.seeds):
        r = proxy_return(ckpt, proxy, cfg.episodes, seed=20_000 + seed)
        original.append({"seed": seed, "proxy_return": r["mean_return"], "proxy": {q.key: q.of(r) for q in quantities}})
    shown = ("original", *(m for m in RUNNABLE if m in cfg.methods))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {} for m in shown}
    for t, s in zip(trials, states):
        if s.get("status") != "done":
            continue
        o = t.options
        lengths = cfg.log_seconds if o["method"] == "dr" else (o["log_seconds"],)
        for length in lengths:
            runs[o["method"]].setdefault(f"{length:g}", []).append(
                {"seed": o["seed"], **{k: s.get(k) for k in ("proxy_return", "proxy", "heldout_error_before",
                                                             "heldout_error_after", "estimate", "run_seconds")}})
    for length in cfg.log_seconds:
        runs["original"][f"{length:g}"] = original
    tables = {q.key: _table(runs, q, cfg.log_seconds) for q in quantities}
    score = quantities[0]
    report = {
        "task": cfg.task, "checkpoint": str(ckpt), "proxy": proxy.to_dict(),
        "config": {k: v for k, v in vars(cfg).items()},
        "command": "simrl bench align" + (f" --checkpoint {ckpt}" if cfg.checkpoint else "")
                   + ("" if args.small else " --no-small ..."),
        "machine": finish(machine),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "score": {"key": score.key, "label": score.label, "better": score.better},
        "quantities": [{"key": q.key, "label": q.label, "better": q.better} for q in quantities],
        "table": tables[score.key], "tables": tables, "runs": runs, "missing_trials": missing,
        "note": ("shared 2-core machine: wall times are noisy" if (os.cpu_count() or 0) <= 2 else ""),
    }
    (out / "align_bench.json").write_text(json.dumps(report, indent=2))
    _plot(tables, quantities, cfg.log_seconds, shown, out / "align_bench.png")
    print(f"\n{cfg.task}, proxy {proxy.to_dict()['params']}"
          + (f", latency {proxy.latency:g} s" if proxy.latency else "")
          + f", {cfg.seeds} seeds, fine-tuning {cfg.finetune_steps:,} steps (mean +- std over seeds):")
    for q in quantities:
        table = tables[q.key]
        print(f"  {q.label} ({q.better} is better)")
        print(f"  {'method':15s}" + "".join(f"{f'{s:g} s of logs':>22s}" for s in cfg.log_seconds))
        for m in shown:
            print(f"  {m:15s}" + "".join(f"{table[m][f'{s:g}']['mean']:14.4g} +- {table[m][f'{s:g}']['std']:5.3g}"
                                         f" ({table[m][f'{s:g}']['n']})" for s in cfg.log_seconds))
    print(f"results: {out / 'align_bench.json'}, {out / 'align_bench.png'}")
    if missing and cfg.report_only:
        print(f"left out of the table ({len(missing)} trials not done): {'; '.join(missing)}")
    elif missing:
        raise RuntimeError(f"{len(missing)} of {len(trials)} trials did not finish (left out of the table), "
                           f"e.g. {missing[0]}")
    return 0


def _table(runs: dict[str, dict[str, list[dict[str, Any]]]], q: Quantity, lengths: tuple[float, ...]
           ) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, std and count over seeds of quantity ``q`` per method and log length."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m, by_length in runs.items():
        out[m] = {}
        for k in lengths:
            values = [r["proxy"][q.key] for r in by_length.get(f"{k:g}", []) if r.get("proxy")]
            out[m][f"{k:g}"] = ({"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
                                if values else {"mean": float("nan"), "std": float("nan"), "n": 0})
    return out


def _plot(tables: dict[str, Any], quantities: tuple[Quantity, ...], lengths: tuple[float, ...],
          methods: tuple[str, ...], path: Path) -> None:
    """One panel per quantity: each method's mean +- std against the log length."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7 * len(quantities), 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    for ax, q in zip(np.atleast_1d(fig.subplots(1, len(quantities))), quantities):
        for m in methods:
            means = [tables[q.key][m][f"{s:g}"]["mean"] for s in lengths]
            stds = [tables[q.key][m][f"{s:g}"]["std"] for s in lengths]
            ax.errorbar(lengths, means, yerr=stds, marker="o", capsize=4, label=m)
        ax.set_xscale("log")
        ax.set_xlabel("robot time in the logs (s)")
        ax.set_ylabel(q.label)
        ax.set_title(f"{q.better} is better")
        ax.legend(fontsize=8)
    fig.savefig(str(path), dpi=110)
