"""``simrl align``: fix the simulator from the robot's logs.

``--method sysid`` estimates the task's physical parameters (``--params``, default the task's
randomization names) by replaying the logged actions from logged states over short windows in
batched MuJoCo worlds and minimizing the prediction error with CMA-ES. It writes, into --out:
params.json (a perturbation file: ``simrl deploy --perturb``, ``Perturbation.load``), dr.json (a
DR distribution centred on the estimate: ``simrl train --dr out/dr.json``), report.json (estimate,
uncertainty, held-out prediction error before and after) and replay.png.

``--method delta-action`` (ASAP) trains a delta-action model with PPO so that the logged actions
plus its correction reproduce the logged trajectories, then fine-tunes --checkpoint in the
simulator with the model in the loop; ``--method delta-dynamics`` learns a residual next-state
model from the logs and fine-tunes --checkpoint in the corrected simulator. Both write the
model, the fine-tuned checkpoint (out/final: the same spec as --checkpoint, without the model),
report.json, report.html, replay.png and curves.png; they check first that --checkpoint
produced the logged actions.

``--method vgdf`` trains SAC on online steps of the robot (here the sim-to-sim proxy,
--vgdf.robot or --truth; one robot step per --vgdf.ratio simulator steps) plus the simulator
transitions whose value targets a dynamics ensemble fitted on the robot's data makes plausible;
it writes the policy (out/final), report.json, report.html and curves.png.

The task comes from --checkpoint (its spec) or --task. --truth PROXY.json (the perturbation
file the logs were recorded with, on a sim-to-sim proxy) adds the true values to the report
and, for methods that fine-tune, the original and fine-tuned policies' returns on that proxy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from envs.perturbation import Perturbation
from envs.tasks import make_task, task_from_spec
from simrl.align import METHODS
from simrl.align.base import (AlignConfig, DeltaActionConfig, DeltaDynamicsConfig, FinetuneConfig,
                              SysIdConfig, VgdfConfig, out_dir)
from simrl.cli import command, parse
from simrl.core.config import require
from simrl.core.spec import load_spec


@dataclass
class AlignArgs:
    """Logs, the task, the method and its budget."""

    real_logs: str                       # a directory of *.mcap real logs or one log file
    out: str                             # output directory
    checkpoint: str | None = None        # checkpoint whose task (and task config) the logs are of
    task: str | None = None              # the task, when no checkpoint is given
    method: str = "sysid"                # alignment method: sysid | delta-action | delta-dynamics | vgdf
    params: str = ""                     # comma-separated parameters, e.g. mass:torso,friction,latency (default: the task's randomization names)
    budget: int = AlignConfig.budget     # simulator evaluations of a parameter vector
    windows: int = AlignConfig.windows   # log windows fitted (as many again held out)
    window_steps: int = AlignConfig.window_steps  # control steps replayed per window
    seed: int = 0                        # window choice and optimizer seed
    fields: tuple[str, ...] = AlignConfig().fields  # measured robot-state fields compared (those the log has)
    base_state: Literal["log", "support"] = "log"  # floating base at window starts: logged position / velocity when present, or "support": from the stance foot
    bounds: str = ""                     # search ranges, JSON {"mass:torso": [0.5, 2.0]} or a JSON file
    truth: str | None = None             # perturbation file the logs were recorded with (proxy): reported next to the estimate
    threads: int = 0                     # simulation threads (0: all cores)
    sysid: SysIdConfig = field(default_factory=SysIdConfig)  # system identification
    delta_action: DeltaActionConfig = field(default_factory=DeltaActionConfig)  # ASAP's delta-action model
    delta_dynamics: DeltaDynamicsConfig = field(default_factory=DeltaDynamicsConfig)  # the delta-dynamics baseline
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # fine-tuning the checkpoint (delta-action, delta-dynamics)
    vgdf: VgdfConfig = field(default_factory=VgdfConfig)  # VGDF: SAC with online robot (proxy) steps

    def validate(self) -> None:
        require((self.checkpoint is None) != (self.task is None), "checkpoint",
                "give exactly one of --checkpoint and --task")

    def config(self) -> AlignConfig:
        """The method-independent configuration."""
        text = self.bounds.strip()
        bounds = {}
        if text:
            path = Path(text)
            try:
                raw = json.loads(path.read_text() if not text.startswith("{") else text)
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"--bounds {text}: not a JSON mapping or a readable JSON file ({exc})") from None
            if not isinstance(raw, dict):
                raise ValueError(f"--bounds {text}: expected a JSON object {{param: [low, high]}}")
            bounds = {str(k): tuple(float(x) for x in v) for k, v in raw.items()}
        params = tuple(p.strip() for p in self.params.split(",") if p.strip())
        from simrl.core.config import validate
        return validate(AlignConfig(params=params, budget=self.budget, windows=self.windows,
                                    window_steps=self.window_steps, seed=self.seed, fields=self.fields,
                                    base_state=self.base_state, bounds=bounds, threads=self.threads,
                                    sysid=self.sysid, delta_action=self.delta_action,
                                    delta_dynamics=self.delta_dynamics, finetune=self.finetune,
                                    vgdf=self.vgdf))


@command("align", help="align the simulator with real logs (sysid, delta-action, delta-dynamics) and retrain")
def run(argv: list[str]) -> int:
    args = parse(AlignArgs, argv, "simrl align", __doc__)
    method = METHODS.get(args.method)
    cfg = args.config()
    if args.checkpoint is not None:
        task = task_from_spec(load_spec(args.checkpoint))
    else:
        task = make_task(args.task)
    truth = Perturbation.load(args.truth) if args.truth else None
    out = out_dir(args.out)
    report = method.run(task, args.real_logs, cfg, out, print, truth=truth, checkpoint=args.checkpoint)
    if "estimate" in report:
        _print_estimate(report)
    err = report.get("heldout_error")
    if err:
        before, after = (("nominal", "identified") if "identified" in err else ("unaligned", "aligned"))
        print(f"held-out prediction error: {err[before]:.4g} ({before}) -> {err[after]:.4g} ({after})")
    for name, r in report.get("proxy_return", {}).items():
        print(f"return on the proxy, {name}: {r['mean_return']:.1f} (95% CI {r['ci95'][0]:.1f} .. {r['ci95'][1]:.1f})")
    print(f"wrote {', '.join(str(out / f) for f in report['files'])}"
          + (f" (simrl train --dr {out / 'dr.json'})" if "dr.json" in report["files"] else ""))
    return 0


def _print_estimate(report: dict) -> None:
    width = max(len(n) for n in report["params"])
    print(f"{'parameter':{width}s} {'nominal':>8s} {'estimate':>9s} {'std':>8s}"
          + (f" {'truth':>8s}" if "truth" in report else ""))
    for n in report["params"]:
        std = report["std_curvature"][n]
        line = (f"{n:{width}s} {report['nominal'][n]:8.3f} {report['estimate'][n]:9.3f} "
                f"{'-' if std is None else format(std, '8.4f'):>8s}")
        if "truth" in report:
            line += f" {report['truth'][n]:8.3f}"
        print(line)
    print(f"{report['evaluations']} evaluations in {report['seconds']:.1f} s")
