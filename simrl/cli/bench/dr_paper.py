"""``simrl bench dr --protocol paper``: DORAEMON on the paper's Hopper setting.

Tiboni et al., "Domain Randomization via Entropy Maximization", ICLR 2024, and its reference
code (github.com/gabrieletiboni/doraemon). Every value of the protocol is in
:class:`PaperProtocol`, fixed before any run, with its source beside it (:data:`SOURCES`, also
written into the result JSON). Every arm runs ``--seeds`` seeds, every run a trial of a sweep
(resumable, on Ray). Every checkpoint (one per ``update_steps``) is scored on the uniform target
distribution (``target_episodes`` episodes, success = return >= 1600): the curve of target
success over training, and its last point as the final number.

Arms (:data:`ARMS`, ``--arms`` picks some):

======================  ====================================================================
``none``                ``--algo`` (PPO by default) without randomization
``uniform``             ``--algo`` with fixed uniform DR over the target distribution
``doraemon``            ``--algo`` with DORAEMON on the plain observation
``sac-doraemon``        the paper's agent: SB3 SAC with DORAEMON, the actor on the current
                        observation plus the 5 previous observations and actions, the critics
                        also on the episode's dynamics parameters (its code's ``adaptive+``:
                        ``stack_history`` 5, ``actor_history_only``, ``critic_dyn_only``), tanh
                        MLPs of 128 x 128 (:data:`PAPER_SAC`)
======================  ====================================================================

Differences from the paper that simrl's stack imposes (also in the JSON's ``deviations``): the
history starts from zeros (the paper's frame stack repeats the first observation); the critic's
dynamics are standardized to [-1, 1] over the target ranges (the paper: value - nominal). The
foot friction is simrl's ``friction`` kind on every geom: MuJoCo takes the larger friction of
the two contacting geoms, so scaling all of them scales the foot-floor contact as the paper's
``pair_friction`` does.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from simrl.core import machine as bench_machine
from simrl.cli.sweep import sweep_trials
from simrl.sweep import Resources, Trial, map_on_ray

ARMS = ("none", "uniform", "doraemon", "sac-doraemon")
CODE = "github.com/gabrieletiboni/doraemon"
CURVE_FILE = "target_curve.json"   # each run's cached target scores
# The sac-doraemon arm's agent: the paper's SAC inputs and networks (policy/policy.py, adaptive+.yaml
# of its code; SB3's other SAC defaults, learning_starts 100 as in the SB3 1.x it used).
PAPER_SAC: dict[str, Any] = {
    "algo": "sb3-sac", "sac.history": 5, "sac.critic-dynamics": True, "sac.learning-starts": 100,
    "network.activation": "tanh", "network.actor-hidden": [128, 128], "network.critic-hidden": [128, 128]}


@dataclass(frozen=True)
class PaperProtocol:
    """The DORAEMON paper's Hopper protocol (source of each value in :data:`SOURCES`)."""

    task: str = "hopper"
    masses: tuple[str, ...] = ("torso", "thigh", "leg", "foot")      # 4 link masses
    damped_joints: tuple[str, ...] = ("thigh_joint", "leg_joint", "foot_joint")  # 3 joint dampings
    friction: str = "friction"                                       # foot-floor friction
    dr_percentage: float = 0.95      # target: nominal +- 0.95 * (nominal - 0), i.e. scale [0.05, 1.95]
    episode_steps: int = 500         # max_episode_steps of RandomHopper-v0
    success_return: float = 1600.0   # success: episode return >= 1600
    alpha: float = 0.5               # success_rate_condition: target success rate
    kl_bound: float = 0.005          # kl_ub for Hopper
    timesteps: int = 15_000_000      # training budget (longx)
    n_iters: int = 150               # DORAEMON iterations: timesteps / n_iters = 100k steps per update
    init_beta: float = 100.0         # Beta(100, 100) start
    beta_low: float = 1.0            # a, b >= 1 (min_bound when train_until_lb)
    beta_high: float = 110.0         # a, b <= init_beta + 10
    wait_for_success: bool = True    # train_until_lb: no update before alpha is first reached
    min_samples: int = 100           # min_dyn_samples
    buffer_size: int = 1000          # max_dyn_samples
    target_episodes: int = 100       # test_episodes on the uniform target, every iteration
    seeds: int = 3                   # (the paper: 5 seeds per method; the issue asks >= 3)

    @property
    def update_steps(self) -> int:
        return self.timesteps // self.n_iters

    def target_ranges(self) -> dict[str, list[float]]:
        """The uniform target distribution: every randomized scale in
        ``[1 - dr_percentage, 1 + dr_percentage]`` (nominal 1, lower bound 0)."""
        lo, hi = 1.0 - self.dr_percentage, 1.0 + self.dr_percentage
        names = ([f"mass:{b}" for b in self.masses] + [f"damping:{j}" for j in self.damped_joints]
                 + [self.friction])
        return {n: [round(lo, 10), round(hi, 10)] for n in names}


SOURCES: dict[str, str] = {
    "task": f"paper Sec. 5.1 (Hopper); {CODE} dr_envs/mujoco_locomotion/random_hopper.py",
    "masses": f"{CODE} random_hopper.py dyn_ind_to_name 0-3: torsomass, thighmass, legmass, footmass",
    "damped_joints": f"{CODE} random_hopper.py set_task: dof_damping[3:] (the three actuated joints)",
    "friction": f"{CODE} random_hopper.py set_task: pair_friction[0, :2] (foot-floor)",
    "dr_percentage": f"{CODE} exps_launcher_configs/scripts/train_doraemon/default.yaml dr_percentage: 0.95; "
                     "train_doraemon.py lower_bounds = zeros for locomotion; random_env.py get_uniform_dr_by_percentage",
    "episode_steps": f"{CODE} random_hopper.py gym register max_episode_steps=500",
    "success_return": f"{CODE} exps_launcher_configs/scripts/train_doraemon/hopper.yaml performance_lb: 1600",
    "alpha": f"{CODE} exps_launcher_configs/scripts/train_doraemon/succRate50.yaml success_rate_condition: 0.5",
    "kl_bound": f"{CODE} reproduce_paper_results.md (Hopper: kl_ub=0.005)",
    "timesteps": f"{CODE} exps_launcher_configs/scripts/train_doraemon/longx.yaml timesteps: 15000000",
    "n_iters": f"{CODE} longx.yaml n_iters: 150 (train_doraemon.py max_ts_per_iter = timesteps / n_iters)",
    "init_beta": f"{CODE} train_doraemon.py --init_beta_param default 100",
    "beta_low": f"{CODE} doraemon/doraemon.py min_bound = 1 if train_until_performance_lb",
    "beta_high": f"{CODE} doraemon/doraemon.py max_bound = init_beta_param + 10",
    "wait_for_success": f"{CODE} train_doraemon/default.yaml train_until_lb: true, hard_performance_constraint: true",
    "min_samples": f"{CODE} train_doraemon.py --min_dyn_samples default 100",
    "buffer_size": f"{CODE} train_doraemon.py --max_dyn_samples default 1000",
    "target_episodes": f"{CODE} train_doraemon.py --test_episodes default 100; doraemon.py test_on_target_distr each step",
    "seeds": "issue 18 (>= 3 seeds); the paper reports 5",
}

DEVIATIONS = [
    "policy: the none/uniform/doraemon arms train --algo (simrl PPO by default) on the plain "
    "observation; the sac-doraemon arm is the paper's agent (SB3 SAC, actor on a 5-step obs-action "
    "history, critic on the current observation and the dynamics: adaptive+.yaml)",
    "sac-doraemon: the history starts from zeros (the paper's FrameStack repeats the first "
    "observation); the critic's dynamics are standardized to [-1, 1] over the target ranges "
    "(the paper's DynamicsInObs: value - nominal)",
    "friction: simrl's friction kind scales every geom's friction (MuJoCo uses the larger of the two "
    "contacting geoms, so the foot-floor contact scales as the paper's pair_friction)",
    "target success is measured on each saved checkpoint after training (one per update_steps), "
    "not inside the training loop",
]


@dataclass
class Budget:
    """What a run of the protocol actually uses (the paper's values unless reduced)."""

    timesteps: int
    update_steps: int
    target_episodes: int
    seeds: int
    num_envs: int
    algo: str
    arms: tuple[str, ...] = ARMS
    first_seed: int = 0


def budget_from(args: Any, protocol: PaperProtocol) -> Budget:
    """The run's budget from ``simrl bench dr``'s options (0: the paper's value)."""
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip()) if args.arms else ARMS
    b = Budget(args.budget or protocol.timesteps, args.update_steps or protocol.update_steps,
               args.target_episodes or protocol.target_episodes, args.seeds, args.num_envs, args.algo,
               arms, args.first_seed)
    if b.algo not in ("ppo", "sb3-sac"):
        raise ValueError(f"--algo: ppo or sb3-sac, got {b.algo!r}")
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ValueError(f"--arms: a comma-separated subset of {', '.join(ARMS)}, got {args.arms!r}")
    if b.seeds < 1 or b.first_seed < 0:
        raise ValueError(f"--seeds must be >= 1 and --first-seed >= 0, got {b.seeds} and {b.first_seed}")
    if b.update_steps > b.timesteps:
        raise ValueError(f"--update-steps {b.update_steps} exceeds --budget {b.timesteps}")
    return b


def trial_options(method: str, seed: int, ranges_file: Path, protocol: PaperProtocol,
                  budget: Budget) -> dict[str, Any]:
    """``simrl train`` options of one arm and seed."""
    p = protocol
    algo = PAPER_SAC["algo"] if method == "sac-doraemon" else budget.algo
    options: dict[str, Any] = {
        "task": p.task, "algo": algo, "steps": budget.timesteps, "seed": seed,
        "dr": {"none": "none", "uniform": str(ranges_file)}.get(method, "doraemon"),
        "checkpoint-every": budget.update_steps,
        "task.max-episode-steps": p.episode_steps, "task.success-return": p.success_return}
    if algo == "ppo":
        options["num-envs"] = budget.num_envs
    if method == "sac-doraemon":
        options.update(PAPER_SAC)
    if options["dr"] == "doraemon":
        options.update({
            "doraemon.ranges": str(ranges_file), "doraemon.alpha": p.alpha,
            "doraemon.kl-bound": p.kl_bound, "doraemon.steps-per-update": budget.update_steps,
            "doraemon.start-concentration": 2 * p.init_beta,   # a + b of Beta(100, 100)
            "doraemon.param-low": p.beta_low, "doraemon.param-high": p.beta_high,
            "doraemon.wait-for-success": p.wait_for_success,
            "doraemon.min-samples": p.min_samples, "doraemon.buffer-size": p.buffer_size})
    return options


def target_curve(run_dir: Path, ranges_file: Path, protocol: PaperProtocol, episodes: int,
                 seed: int) -> list[tuple[int, float, float]]:
    """(env steps, target success, target mean return) of every checkpoint of a run on the
    uniform target; cached in ``RUN/target_curve.json`` per checkpoint (only the missing ones
    are evaluated)."""
    cache, missing = curve_cache(run_dir, episodes)
    if missing:
        import policies
        from envs.tasks import make_task
        from policies.wrappers import wrapper_from_spec
        from simrl.evaluate import run_episodes

        task = make_task(protocol.task, max_episode_steps=protocol.episode_steps,
                         success_return=protocol.success_return)
        ranges = {k: tuple(v) for k, v in json.loads(ranges_file.read_text()).items()}
        for ckpt in missing:
            steps = int(json.loads((ckpt / "spec.json").read_text())["training"]["steps"])
            policy = policies.load(ckpt)   # a history policy runs in its wrapper
            ep = run_episodes(policy, task, episodes, dr=ranges, seed=50_000 + seed,
                              wrap=wrapper_from_spec(policy.spec))
            cache[f"{ckpt.name}:{episodes}"] = [steps, float(np.mean(ep["success"])), float(np.mean(ep["returns"]))]
            (run_dir / CURVE_FILE).write_text(json.dumps(cache, indent=1))
    return sorted({tuple(cache[f"{c.name}:{episodes}"]) for c in run_checkpoints(run_dir)})


def score_trial(ranges_file: Path, protocol: PaperProtocol, episodes: int, trial: Trial) -> None:
    """The sweep's follow-up of a finished run: its target curve (cached in the run)."""
    target_curve(trial.directory, ranges_file, protocol, episodes, int(trial.options["seed"]))


def run_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoints in step order, ``final`` last."""
    return sorted((run_dir / "checkpoints").glob("step_*")) + [run_dir / "final"]


def curve_cache(run_dir: Path, episodes: int) -> tuple[dict[str, list[float]], list[Path]]:
    """The run's cached target scores (``CHECKPOINT:EPISODES`` -> steps, success, return) and
    the checkpoints that still lack one."""
    cache_file = run_dir / CURVE_FILE
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    return cache, [c for c in run_checkpoints(run_dir) if f"{c.name}:{episodes}" not in cache]


def distribution(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The DORAEMON distribution in a checkpoint's ``spec.json`` (Beta a, b and per-parameter
    std, with the std of the uniform over the same range); None for other randomizations."""
    from envs.distributions import BetaDistribution

    dist = spec.get("dr")
    if not isinstance(dist, dict) or dist.get("type") != "beta":
        return None
    beta = BetaDistribution.from_dict(dist)
    return {"names": list(beta.names), "a": beta.a.tolist(), "b": beta.b.tolist(), "std": beta.std().tolist(),
            "uniform_std": (beta.width / np.sqrt(12)).tolist()}


def width_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(env steps, mean over parameters of std / uniform std) of a DORAEMON run's checkpoints:
    how far the distribution has widened toward the target (1 = the uniform target)."""
    curve = []
    for ckpt in run_checkpoints(run_dir):
        spec = json.loads((ckpt / "spec.json").read_text())
        dist = distribution(spec)
        if dist is not None:
            curve.append((int(spec["training"]["steps"]),
                          float(np.mean(np.divide(dist["std"], dist["uniform_std"])))))
    return curve


def run_paper(args: Any) -> int:
    """Runs the protocol with ``simrl bench dr``'s options; writes ``OUT/dr_paper.json``,
    ``OUT/dr_paper.png`` (and ``--json``). With ``--merge``, combines earlier reports instead."""
    if args.merge:
        return merge_reports([Path(f.strip()) for f in args.merge.split(",") if f.strip()], args)
    protocol = PaperProtocol()
    budget = budget_from(args, protocol)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ranges_file = out / "target_ranges.json"
    ranges_file.write_text(json.dumps(protocol.target_ranges(), indent=1))
    methods = list(budget.arms)
    seeds = range(budget.first_seed, budget.first_seed + budget.seeds)
    pairs = [(m, s) for m in methods for s in seeds]
    print(f"DORAEMON paper protocol (Hopper, 8 parameters, target {protocol.target_ranges()['friction']}): "
          f"{budget.timesteps:,} steps per run (paper {protocol.timesteps:,}), update/eval every "
          f"{budget.update_steps:,} (paper {protocol.update_steps:,}), {budget.target_episodes} target "
          f"episodes (paper {protocol.target_episodes}), {len(pairs)} runs (arms {', '.join(methods)}, "
          f"seeds {seeds.start}-{seeds.stop - 1}; --algo {budget.algo})", flush=True)
    machine = {**bench_machine.machine_info(threads=int(args.cpus_per_trial)), "cpus_per_trial": args.cpus_per_trial}
    t0 = time.perf_counter()
    resources = Resources(args.cpus_per_trial, 0.0, args.address or None)
    # each run is scored on the target as soon as it finishes, while the other runs train
    trials, rows = sweep_trials([trial_options(m, s, ranges_file, protocol, budget) for m, s in pairs],
                                ["algo", "dr", "seed"], out, resources,
                                then=partial(score_trial, ranges_file, protocol, budget.target_episodes))
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"{len(failed)} training runs failed, e.g. {failed[0]['directory']}: {failed[0]['error']}")
    calls = [(t.directory, ranges_file, protocol, budget.target_episodes, seed) for (_, seed), t in zip(pairs, trials)]
    todo = [c for c in calls if curve_cache(c[0], budget.target_episodes)[1]]
    if todo:   # runs trained before this command, or whose follow-up failed: in parallel on Ray
        print(f"target evaluation of {len(todo)} runs ({budget.target_episodes} episodes per checkpoint)", flush=True)
        map_on_ray(target_curve, todo, resources, "target evaluation")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for (method, seed), trial in zip(pairs, trials):
        curve = target_curve(trial.directory, ranges_file, protocol, budget.target_episodes, seed)
        runs[method].append({"seed": seed, "directory": str(trial.directory), "curve": curve,
                             "final_success": curve[-1][1], "final_return": curve[-1][2],
                             "distribution": distribution(json.loads((trial.directory / "final" / "spec.json").read_text())),
                             "width": width_curve(trial.directory) if "doraemon" in method else None})
        print(f"{method:12s} seed {seed}: target success {curve[-1][1]:5.1%} "
              f"(return {curve[-1][2]:.0f}) after {curve[-1][0]:,} steps", flush=True)
    report = {"protocol": asdict(protocol), "sources": SOURCES, "deviations": DEVIATIONS,
              "target_ranges": protocol.target_ranges(), "budget": asdict(budget),
              "full_budget": budget.timesteps == protocol.timesteps, "methods": summarize(runs),
              "machine": bench_machine.finish(machine),
              "wall_time_s": round(time.perf_counter() - t0, 1),
              "command": "simrl bench dr --protocol paper " + " ".join(
                  f"--{k.replace('_', '-')} {getattr(args, k)}" for k in ("budget", "update_steps", "target_episodes",
                                                                          "seeds", "first_seed", "num_envs", "algo", "out"))
                  + (f" --arms {','.join(budget.arms)}" if args.arms else "")}
    write_report(report, out, args.json)
    return 0


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Each arm's final target success (mean, std over its runs), mean final return, the union
    of its curves' steps, its seeds and its runs."""
    summary = {}
    for m, rs in runs.items():
        finals = [r["final_success"] for r in rs]
        summary[m] = {"final_success_mean": float(np.mean(finals)), "final_success_std": float(np.std(finals)),
                      "final_return_mean": float(np.mean([r["final_return"] for r in rs])),
                      "seeds": [r["seed"] for r in rs],
                      "curve_steps": sorted({c[0] for r in rs for c in r["curve"]}), "runs": rs}
    return summary


def write_report(report: dict, out: Path, json_path: str = "") -> None:
    """Writes ``OUT/dr_paper.json`` (and ``json_path``) and ``OUT/dr_paper.png``; prints each
    arm's final target success."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "dr_paper.json").write_text(json.dumps(report, indent=2))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2))
    plot_curves(report, out / "dr_paper.png")
    print(f"\ntarget success (uniform over the 8-D target, {report['budget']['target_episodes']} episodes, "
          f"return >= {report['protocol']['success_return']:g}) after {report['budget']['timesteps']:,} steps:")
    for m, s in report["methods"].items():
        print(f"  {m:12s} {s['final_success_mean']:6.1%} +- {s['final_success_std']:.1%}  "
              f"({len(s['runs'])} seeds: {', '.join(str(x) for x in s['seeds'])})")
    print(f"results: {out / 'dr_paper.json'}, {out / 'dr_paper.png'}")


# what every merged report must share (its arms, seeds and machine may differ)
MERGE_KEYS = ("protocol", "target_ranges")
MERGE_BUDGET_KEYS = ("timesteps", "update_steps", "target_episodes", "num_envs", "algo")
RUN_KEYS = ("seed", "curve", "final_success", "final_return")   # what summarize and the figure read of a run


def merge_reports(files: list[Path], args: Any) -> int:
    """``--merge``: one report from ``dr_paper.json`` files of the same protocol and budget
    (arms or seeds run on other machines or at other times); no training. Each arm's runs are
    pooled in the order of :data:`ARMS` and seeds; a run (arm, seed) in several files must be the
    same run (it is kept once)."""
    if len(files) < 2:
        raise ValueError(f"--merge: at least two dr_paper.json files, got {len(files)}")
    reports, owner, runs = [], {}, {}
    for f in files:
        try:
            report = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--merge: {f}: not a readable JSON file ({e})") from e
        for key in (*MERGE_KEYS, "budget", "methods"):
            if key not in report:
                raise ValueError(f"--merge: {f}: no {key!r} field (not a simrl bench dr --protocol paper report)")
        first = reports[0] if reports else report
        reports.append(report)
        for key in MERGE_KEYS:
            if report[key] != first[key]:
                raise ValueError(f"--merge: {f}: field {key!r} differs from {files[0]}'s")
        for key in MERGE_BUDGET_KEYS:
            if report["budget"].get(key) != first["budget"].get(key):
                raise ValueError(f"--merge: {f}: budget.{key} {report['budget'].get(key)!r} differs from "
                                 f"{files[0]}'s {first['budget'].get(key)!r}")
        for arm, s in report["methods"].items():
            if arm not in ARMS:
                raise ValueError(f"--merge: {f}: methods.{arm}: not an arm of {', '.join(ARMS)}")
            for i, r in enumerate(s.get("runs", [])):
                lacking = [k for k in RUN_KEYS if k not in r]
                if lacking:
                    raise ValueError(f"--merge: {f}: methods.{arm}.runs[{i}] has no {lacking[0]!r} field")
                if (arm, r["seed"]) in owner:   # the same run in two reports is kept once
                    kept, where = owner[arm, r["seed"]]
                    if r != kept:
                        raise ValueError(f"--merge: {f}: {arm} seed {r['seed']} differs from the run in {where}")
                    continue
                owner[arm, r["seed"]] = (r, f)
                runs.setdefault(arm, []).append(r)
    if not runs:
        raise ValueError(f"--merge: no runs in {', '.join(str(f) for f in files)}")
    first = reports[0]
    runs = {a: sorted(runs[a], key=lambda r: r["seed"]) for a in ARMS if a in runs}
    budget = {**first["budget"], "arms": list(runs), "seeds": max(len(rs) for rs in runs.values()),
              "first_seed": min(seed for _, seed in owner)}
    report = {**{k: first[k] for k in ("protocol", "sources", "deviations", "target_ranges") if k in first},
              "budget": budget, "full_budget": first.get("full_budget"), "methods": summarize(runs),
              "merged_from": [{"file": str(f), "runs": {a: [run["seed"] for run in s.get("runs", [])] for a, s in rep["methods"].items()},
                               **{k: rep[k] for k in ("command", "machine", "wall_time_s", "note") if k in rep}}
                              for f, rep in zip(files, reports)],
              "command": f"simrl bench dr --protocol paper --merge {','.join(str(f) for f in files)} --out {args.out}"}
    print(f"merged {len(files)} reports: " + ", ".join(f"{a} x {len(rs)}" for a, rs in runs.items()), flush=True)
    write_report(report, Path(args.out), args.json)
    return 0


def plot_curves(report: dict, path: Path) -> None:
    """Target success and target return against env steps, each method's seed mean with a
    min-max band (the success axis zooms in when every curve stays low), and each DORAEMON
    run's width (std / uniform std) against env steps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.2), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    colors = {"none": "#999999", "uniform": "#4477aa", "doraemon": "#ee6677", "sac-doraemon": "#228833"}
    top = 0.0
    for m, s in report["methods"].items():
        steps = s["curve_steps"]
        for ax, column in zip(axes, (1, 2)):
            table = np.full((len(s["runs"]), len(steps)), np.nan)
            for i, r in enumerate(s["runs"]):
                for point in r["curve"]:
                    table[i, steps.index(point[0])] = point[column]
            mean = np.nanmean(table, axis=0)
            ax.plot(steps, mean, marker="o", ms=3, color=colors[m], label=f"{m} ({len(s['runs'])} seeds)")
            ax.fill_between(steps, np.nanmin(table, axis=0), np.nanmax(table, axis=0), color=colors[m], alpha=0.2)
            if column == 1:
                top = max(top, float(np.nanmax(table)))
        for r in s["runs"]:
            if r.get("width"):
                w = np.asarray(r["width"])
                axes[2].plot(w[:, 0], w[:, 1], color=colors[m], lw=1.2, label=f"{m} seed {r['seed']}",
                             ls=("-", "--", ":", "-.")[r["seed"] % 4])
    axes[0].set_ylim(0, 1 if top > 0.5 else max(0.1, 1.2 * top))
    axes[0].set_ylabel("success on the uniform target")
    axes[1].set_ylabel("mean return on the uniform target")
    axes[1].axhline(report["protocol"]["success_return"], color="k", ls="--", lw=0.8, label="success return")
    axes[2].set_ylim(0, 1.05)
    axes[2].axhline(1.0, color="k", ls="--", lw=0.8, label="uniform target")
    axes[2].set_ylabel("DORAEMON std / uniform std (mean of 8)")
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("DORAEMON paper protocol, Hopper (band: min-max over seeds)")
    fig.savefig(str(path), dpi=120)
