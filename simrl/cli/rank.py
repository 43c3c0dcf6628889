"""``simrl rank``: rank checkpoints before deployment from held-out real logs (OOD scores) and
evaluation in simulation under held-out randomization, combined into VSDR.

Writes ranking.json, sim_vs_ood.png, ranking.png and index.html into --out. With --truth
truth.json ({checkpoint: measured real return}) it also prints Spearman, Kendall, regret@1 and
top-3 hits of VSDR and of every baseline.

Every config field is an option: --ood.reference-steps 200, --ood.knn.k 10, --sim.num-envs 16,
--vsdr.lam 0.5, --vsdr.aggregate frac.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import policies
from simrl.cli import command, parse
from simrl.core.config import validate
from simrl.validate.detectors import DisagreementModel
from simrl.validate.ood import OODConfig
from simrl.validate.ranking import RankConfig, match_truth, rank_checkpoints
from simrl.validate.report import print_metrics, write_report
from simrl.validate.score import VSDRConfig
from simrl.validate.simeval import SimEvalConfig


@dataclass
class RankArgs:
    """Checkpoints, real logs and the ranking configuration."""

    checkpoints: tuple[str, ...]         # checkpoint directories
    real_logs: str                       # a directory of *.mcap real logs or one log file
    out: str                             # report directory
    truth: str | None = None             # measured real returns, a JSON file {checkpoint: return}
    world_model: str | None = None       # a simrl.dream world model of the task: its dropout disagreement becomes a fourth OOD score
    ood: OODConfig = field(default_factory=OODConfig)          # out-of-distribution detectors
    sim: SimEvalConfig = field(default_factory=SimEvalConfig)  # evaluation in simulation
    vsdr: VSDRConfig = field(default_factory=VSDRConfig)       # the combined score
    threads: int = RankConfig.threads    # torch threads while ranking; 0 = torch's default


def load_world_model(path: str, checkpoint: str) -> DisagreementModel:
    """A :mod:`simrl.dream` world model that must fit the checkpoints' task and names."""
    from simrl.dream import WorldModel

    model = WorldModel.load(path)
    spec = policies.load_spec(checkpoint)
    for key, have, want in (("task", model.task, spec["task"]),
                            ("observation_names", model.observation_names, spec["observation"]["names"]),
                            ("action_names", model.action_names, spec["action"]["names"])):
        if have != want:
            raise ValueError(f"world model {path}: field {key} does not match checkpoint {checkpoint}")
    return model


@command("rank", help="rank checkpoints with real-log OOD scores and simulation (VSDR)")
def run(argv: list[str]) -> int:
    args = parse(RankArgs, argv, "simrl rank", __doc__)
    cfg = validate(RankConfig(ood=args.ood, sim=args.sim, vsdr=args.vsdr, threads=args.threads))
    if Path(args.out).exists() and not Path(args.out).is_dir():  # before the work, not after
        raise ValueError(f"--out {args.out}: a file exists there; the report needs a directory")
    world_model = load_world_model(args.world_model, args.checkpoints[0]) if args.world_model else None
    truth = None
    if args.truth:
        try:
            truth = json.loads(Path(args.truth).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"--truth {args.truth}: not a readable JSON file ({exc})") from None
        if not isinstance(truth, dict):
            raise ValueError(f"--truth {args.truth}: expected a JSON object {{checkpoint: return}}")
    ranking = rank_checkpoints(list(args.checkpoints), args.real_logs, cfg, world_model, log=print)
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
