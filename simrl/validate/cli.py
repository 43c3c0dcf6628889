"""``simrl rank``: rank checkpoints before deployment from held-out real logs (OOD scores) and
evaluation in simulation under held-out randomization, combined into VSDR.

Writes ``ranking.json``, ``sim_vs_ood.png``, ``ranking.png`` and ``index.html`` into ``--out``.
With ``--truth truth.json`` (``{checkpoint: measured real return}``) it also prints Spearman,
Kendall, regret@1 and top-3 hits of VSDR and of every baseline.

Every config field is an option: ``--ood.reference-steps 200``, ``--ood.knn.k 10``,
``--sim.num-envs 16``, ``--vsdr.lam 0.5``, ``--vsdr.aggregate frac``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from simrl.config import add_arguments
from simrl.core.config import apply_overrides
from simrl.validate.detectors import DisagreementModel
from simrl.validate.ood import OODConfig
from simrl.validate.ranking import RankConfig, match_truth, rank_checkpoints
from simrl.validate.report import write_report
from simrl.validate.score import VSDRConfig
from simrl.validate.simeval import SimEvalConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rank", help="rank checkpoints with real-log OOD scores and simulation (VSDR)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", required=True, metavar="DIR", help="checkpoint directories")
    p.add_argument("--real-logs", required=True, metavar="PATH",
                   help="a directory of *.mcap real logs or one log file")
    p.add_argument("--out", required=True, metavar="DIR", help="report directory")
    p.add_argument("--truth", metavar="JSON", help="measured real returns {checkpoint: return}")
    p.add_argument("--world-model", metavar="PT", help="a simrl.dream world model of the task: its "
                   "dropout disagreement becomes a fourth OOD score")
    add_arguments(p, OODConfig, "ood")
    add_arguments(p, SimEvalConfig, "sim")
    add_arguments(p, VSDRConfig, "vsdr")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> RankConfig:
    sections = ("ood", "sim", "vsdr")
    overrides = {k: v for k, v in vars(args).items() if "." in k and k.split(".")[0] in sections}
    return apply_overrides(RankConfig(), overrides, "rank config")


def print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    print(f"{'method':24s} {'Spearman':>9s} {'Kendall':>8s} {'regret@1':>9s} {'top-3':>6s}")
    for method, m in metrics.items():
        print(f"{method:24s} {m['spearman']:9.3f} {m['kendall']:8.3f} {m['regret@1']:9.3g} "
              f"{m['top3_hits']:6d}")


def load_world_model(path: str, checkpoint: str) -> DisagreementModel:
    """A :mod:`simrl.dream` world model that must fit the checkpoints' task and names."""
    import policies
    from simrl.dream import WorldModel

    model = WorldModel.load(path)
    spec = policies.load_spec(checkpoint)
    for key, have, want in (("task", model.task, spec["task"]),
                            ("observation_names", model.observation_names, spec["observation"]["names"]),
                            ("action_names", model.action_names, spec["action"]["names"])):
        if have != want:
            raise ValueError(f"world model {path}: field {key} does not match checkpoint {checkpoint}")
    return model


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    world_model = load_world_model(args.world_model, args.checkpoints[0]) if args.world_model else None
    truth = None
    if args.truth:
        truth = json.loads(Path(args.truth).read_text())
        if not isinstance(truth, dict):
            raise ValueError(f"--truth {args.truth}: expected a JSON object {{checkpoint: return}}")
    ranking = rank_checkpoints(args.checkpoints, args.real_logs, cfg, world_model, log=print)
    metrics = ranking.evaluate(match_truth(ranking, truth)) if truth is not None else None
    files = write_report(ranking, cfg, args.out, metrics)
    width = max(len(n) for n in ranking.names)
    print(f"{'rank':>4s}  {'checkpoint':{width}s} {'VSDR':>7s} {'sim':>9s}")
    for i in sorted(range(len(ranking.names)), key=lambda i: ranking.rank[i]):
        print(f"{ranking.rank[i]:4d}  {ranking.names[i]:{width}s} {ranking.scores['vsdr'][i]:7.2f} "
              f"{ranking.sim[i]:9.3g}")
    if metrics is not None:
        print_metrics(metrics)
    t = ranking.timings
    print(f"timings: read logs {t['read_logs']:.1f} s, simulation {t['simulation']:.1f} s, "
          f"scoring {t['scoring']:.1f} s; report: {files['html']}")
    return 0 if all(math.isfinite(s) for s in ranking.scores["vsdr"]) else 1
