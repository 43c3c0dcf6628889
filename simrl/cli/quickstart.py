"""``simrl quickstart``: the whole simrl loop on a small scale, in under 10 minutes on 2 cores.

1. Environments: the Go1 stands under randomized physics and pushes; a random hopper.
2. Training: PPO on hopper with no randomization, uniform randomization and DORAEMON (each a
   ``simrl train`` run, printed as the command line it is).
3. Evaluation: each policy under the task's uniform randomization, with confidence intervals.
4. Ranking: "real" logs recorded on the sim-to-sim reality proxy (the hopper with unmodelled
   mass, friction, motor-strength, latency and sensor-noise perturbations) rank all checkpoints
   with VSDR (simulation score + out-of-distribution scores on those logs); the proxy's true
   return of each checkpoint shows how good the ranking was.
5. Deployment: the best-ranked checkpoint runs on the proxy in real time through the safety
   layer, and its run is logged as MCAP.
6. Alignment: the proxy logs of step 4 go through ``simrl align --method delta-action`` (ASAP):
   a delta-action model learned from them, the uniform policy fine-tuned with it in the loop,
   and both policies' returns on the proxy printed.

Everything lands in ``--out``: runs, ranking report (``rank/index.html``), logs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.perturbation import Perturbation
from simrl.cli import command, main, parse

TASK = "hopper"
# The reality proxy: what the "real" hopper differs by (unknown to training).
PROXY = Perturbation(params={"mass:torso": 1.35, "mass:foot": 0.8, "friction": 0.75, "gain": 0.9},
                     latency=0.008, noise={"joint_pos": 0.005, "joint_vel": 0.05})


@dataclass
class QuickstartConfig:
    """Options of ``simrl quickstart``."""

    out: str = "runs/quickstart"         # output directory
    steps: int = 800_000                 # env steps per training run (hopper hops by then)
    num_envs: int = 64                   # worlds per env
    seed: int = 0                        # random seed


def _section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def _rollout(env, controller, steps: int) -> dict:
    """Runs ``controller`` on the robot-state record for ``steps`` control steps."""
    env.reset_numpy()
    returns, lengths, params = [], [], []
    t = time.perf_counter()
    for _ in range(steps):
        _, _, _, _, info = env.step_numpy(controller(env.robot_state))
        if "episodes" in info:
            ep = info["episodes"]
            returns += list(ep.returns)
            lengths += list(ep.lengths)
            params.append(ep.params)
    return {"episodes": len(returns), "mean_return": float(np.mean(returns)) if returns else float("nan"),
            "mean_length": float(np.mean(lengths)) if lengths else float("nan"),
            "params": np.concatenate(params) if params else np.zeros((0, env.space.dim)),
            "steps_per_s": env.num_envs * steps / (time.perf_counter() - t)}


def stage_environments(args: QuickstartConfig) -> None:
    import envs
    from policies.base import RandomController, StandController

    _section("1. Environments: randomized physics")
    dr = {"mass:trunk": (0.7, 1.5), "friction:floor": (0.3, 1.6), "kp": (0.7, 1.3),
          "latency": (0, 2), "push": (0, 120)}
    go1 = envs.make("go1-velocity", args.num_envs, dr=dr, seed=args.seed, max_episode_steps=250,
                    push_interval_steps=100)
    stand = _rollout(go1, StandController(go1.action_size), 500)
    p = stand["params"]
    print(f"go1-velocity, stand controller, {args.num_envs} worlds x 500 steps "
          f"({stand['steps_per_s']:,.0f} control steps/s)")
    for j, name in enumerate(go1.param_names):
        print(f"  {name:16s} sampled {p[:, j].min():7.2f} .. {p[:, j].max():7.2f}")
    print(f"  {stand['episodes']} episodes, mean length {stand['mean_length']:.0f} of 250 steps "
          "(the pushes knock some robots over)")
    go1.close()
    hop = envs.make(TASK, args.num_envs, dr="uniform", seed=args.seed)
    rnd = _rollout(hop, RandomController(hop.action_size, args.seed), 300)
    print(f"{TASK}, random actions, uniform DR over {', '.join(hop.param_names)}: "
          f"{rnd['episodes']} episodes, mean return {rnd['mean_return']:.1f}")
    hop.close()


def stage_training(args: QuickstartConfig, out: Path) -> dict[str, Path]:
    _section("2. Training: PPO with no randomization, uniform and DORAEMON")
    finals = {}
    for dr in ("none", "uniform", "doraemon"):
        run_dir = out / "runs" / dr
        options = ["train", "--task", TASK, "--dr", dr, "--steps", str(args.steps),
                   "--num-envs", str(args.num_envs), "--seed", str(args.seed), "--out", str(run_dir),
                   "--checkpoint-every", str(args.steps // 2),
                   # success = hopping on: standing still earns ~1000 over the 1000-step episode
                   "--task.success-return", "1100"]
        if dr == "doraemon":
            options += ["--dr-alpha", "0.5", "--dr-kl", "0.2", "--doraemon.episodes-per-update", "128"]
        if not (run_dir / "final" / "spec.json").exists():
            print("simrl " + " ".join(options), flush=True)
            if main(options) != 0:
                raise RuntimeError(f"training {dr} failed")
        finals[dr] = run_dir / "final"
    spec = json.loads((finals["doraemon"] / "spec.json").read_text())
    dist = spec["dr"]
    widths = [f"{n} std {np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))) * (hi - lo):.3f}"
              for n, a, b, lo, hi in zip(dist["names"], dist["a"], dist["b"], dist["low"], dist["high"])]
    print(f"DORAEMON's final distribution: {', '.join(widths)} "
          f"(started at std {0.05 * (dist['high'][0] - dist['low'][0]):.3f}); "
          f"plot: {out / 'runs' / 'doraemon' / 'dr_history.png'}")
    print(explain_doraemon(out / "runs" / "doraemon" / "dr_history.json"))
    return finals


def explain_doraemon(history_file: Path) -> str:
    """Whether DORAEMON widened its distribution, and why not when it did not: it takes an
    entropy step only once the policy's success rate on the current distribution reaches
    alpha; below that it only moves toward higher success (or not at all without successes)."""
    if not history_file.exists():
        return "DORAEMON made no update (too few episodes finished under one distribution)"
    data = json.loads(history_file.read_text())
    updates = [h for h in data["history"] if h["status"] != "initial"]
    if not updates:
        return "DORAEMON made no update"
    steps = [h for h in updates if "entropy_step" in h["status"]]
    best = max(h["success_before"] for h in updates)
    gain = updates[-1]["entropy"] - data["history"][0]["entropy"]
    if steps:
        return (f"DORAEMON widened: {len(steps)} of {len(updates)} updates were entropy steps "
                f"(entropy {gain:+.2f} nats); success on its own distribution peaked at {best:.0%}")
    return (f"DORAEMON did not widen: the policy's success rate on DORAEMON's own distribution "
            f"peaked at {best:.0%} over {len(updates)} updates, below its target alpha = "
            f"{data['alpha']:.0%}, and it widens only once alpha is reached (below it, it moves "
            f"toward higher success inside the trust region instead). A longer run (--steps) "
            f"or a lower success bar reaches alpha.")


def stage_evaluation(finals: dict[str, Path]) -> None:
    _section("3. Evaluation under uniform randomization")
    for dr, final in finals.items():
        main(["eval", "--checkpoint", str(final), "--dr", "uniform", "--episodes", "32",
              "--json", str(final / "eval_uniform.json")])


def stage_ranking(finals: dict[str, Path], out: Path, seed: int) -> Path:
    import deploy
    from deploy.runtime import RuntimeConfig
    from deploy.safety import SafetyConfig
    from simrl.validate import RankConfig, rank_checkpoints, write_report
    from simrl.validate.metrics import spearman

    _section("4. Ranking: real logs from the reality proxy, VSDR")
    perturb = PROXY.save(out / "proxy.json")
    print(f"reality proxy: {TASK} with {json.dumps(PROXY.to_dict())}")
    pool = sorted(p.parent for p in (out / "runs").glob("*/checkpoints/step_*/spec.json")) + list(finals.values())
    for ckpt in pool:
        if not (ckpt / "policy.onnx").exists():
            from policies.export import export
            export(ckpt, "onnx")
    lockstep = lambda i: RuntimeConfig(realtime=False, seed=i, safety=SafetyConfig(soft_start_s=0))  # noqa: E731
    logs = out / "real_logs"
    logs.mkdir(exist_ok=True)
    for i in range(3):   # held-out "real" data: the uniform policy on the proxy
        (logs / f"episode{i}.mcap").unlink(missing_ok=True)  # quickstart's own logs of a previous run
        deploy.run(finals["uniform"], robot="mujoco", duration=8.0, log_path=logs / f"episode{i}.mcap",
                   perturb=perturb, config=lockstep(i))
    t = time.perf_counter()
    ranking = rank_checkpoints([str(p) for p in pool], logs, RankConfig(), log=print)
    report = out / "rank"
    truth = []
    for ckpt in pool:   # what a real robot would tell us after the fact
        returns = [deploy.run(ckpt, robot="mujoco", duration=8.0, perturb=perturb,
                              config=lockstep(100 + i)).real_return for i in range(3)]
        truth.append(float(np.mean(returns)))
    metrics = ranking.evaluate(np.asarray(truth))
    write_report(ranking, RankConfig(), report, metrics=metrics)
    order = np.argsort(ranking.rank)
    print(f"ranked {len(pool)} checkpoints in {time.perf_counter() - t:.0f} s")
    width = max(len(n) for n in ranking.names)
    print(f"  {'rank':>4s}  {'checkpoint':{width}s} {'VSDR':>7s} {'sim':>8s} {'proxy return':>13s}")
    for i in order:
        print(f"  {ranking.rank[i]:4d}  {ranking.names[i]:{width}s} {ranking.scores['vsdr'][i]:7.2f} "
              f"{ranking.sim[i]:8.1f} {truth[i]:13.1f}")
    print("  Spearman vs proxy return: " + ", ".join(
        f"{m} {spearman(s, np.asarray(truth)):+.2f}" for m, s in ranking.scores.items()))
    print(f"report: {report / 'index.html'}")
    return Path(ranking.checkpoints[int(order[0])])


def stage_deploy(best: Path, out: Path) -> None:
    import deploy
    from deploy.runtime import RuntimeConfig
    from deploy.safety import SafetyConfig

    _section("5. Deployment: best-ranked checkpoint on the proxy, real time, safety layer on")
    # The proxy robot shares this computer's cores with everything else here; a robot with
    # its own computer would keep the default stale-data watchdog of 3 periods.
    (out / "deploy.mcap").unlink(missing_ok=True)  # quickstart's own log of a previous run
    report = deploy.run(best, robot="mujoco", duration=5.0, log_path=out / "deploy.mcap",
                        perturb=out / "proxy.json",
                        config=RuntimeConfig(seed=7, safety=SafetyConfig(stale_periods=10)))
    print(report.summary())


def stage_align(finals: dict[str, Path], out: Path, args: QuickstartConfig) -> None:
    _section("6. Alignment: the proxy logs through simrl align (ASAP delta-action), fine-tuning")
    options = ["align", "--checkpoint", str(finals["uniform"]), "--real-logs", str(out / "real_logs"),
               "--method", "delta-action", "--out", str(out / "align"), "--truth", str(out / "proxy.json"),
               "--window-steps", "10", "--windows", "400", "--delta-action.steps", str(max(2048, args.steps // 10)),
               "--finetune.steps", str(max(1024, args.steps // 8)), "--finetune.seed", str(args.seed)]
    print("simrl " + " ".join(options), flush=True)
    if main(options) != 0:
        raise RuntimeError("alignment failed")
    print(f"report: {out / 'align' / 'report.html'}")


def run(args: QuickstartConfig) -> int:
    t = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stage_environments(args)
    finals = stage_training(args, out)
    stage_evaluation(finals)
    best = stage_ranking(finals, out, args.seed)
    stage_deploy(best, out)
    stage_align(finals, out, args)
    print(f"\nquickstart finished in {time.perf_counter() - t:.0f} s; everything is in {out}")
    return 0


@command("quickstart", help="run the whole simrl loop on a small scale")
def command_run(argv: list[str]) -> int:
    return run(parse(QuickstartConfig, argv, "simrl quickstart", __doc__))
