"""The pipeline of the methods that learn a correction of the simulator and retrain through it
(delta-action, delta-dynamics): check the logs against the checkpoint, cut windows, fit the
correction, compare the held-out open-loop prediction error with and without it, fine-tune the
checkpoint with it in the loop, and report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from envs.perturbation import Perturbation
from simrl.align.base import AlignConfig
from simrl.align.data import WindowSplit, load_windows
from simrl.align.finetune import check_actions, finetune, proxy_return
from simrl.align.replay import field_scales, prediction_error, replay
from simrl.align.report import plot_curves, plot_replay, write_html
from simrl.train import set_threads

# fit(split, scale) -> (replay() options of the fitted correction, env wrapper for fine-tuning, report entries)
FitFn = Callable[[WindowSplit, dict[str, np.ndarray]], tuple[dict[str, Any], Callable[[Any], Any], dict[str, Any]]]


def align_and_finetune(method: str, task: Any, logs: str | Path, cfg: AlignConfig, out: Path, fit: FitFn,
                       log: Callable[[str], None], truth: Perturbation | None, checkpoint: str | None,
                       files: list[str]) -> dict[str, Any]:
    """Runs ``fit`` on the logs' windows and fine-tunes ``checkpoint`` (when given) through the
    correction; writes report.json, report.html, replay.png, curves.png; returns the report."""
    set_threads(0)                       # torch on half the cores, the simulator on the rest
    split = load_windows(logs, task, windows=cfg.windows, steps=cfg.window_steps, fields=cfg.fields,
                         base_state=cfg.base_state, holdout=cfg.holdout, seed=cfg.seed)
    if checkpoint is not None:           # after the task check: are these logs of this checkpoint?
        check_actions(checkpoint, logs)
    log(f"{method}: {task.name}, {len(split.logs)} logs ({split.log_steps} steps, "
        f"{split.log_steps * split.control_dt:.1f} s), {len(split.fit)} fitted + {len(split.heldout)} "
        f"held-out windows of {cfg.window_steps} steps; fields {', '.join(split.fields)}")
    for note in split.notes:
        log(f"{method}: {note}")
    scale = field_scales(split.fit, split.fields)
    tools, wrap, extra = fit(split, scale)
    losses = {}
    for name, w in (("fit", split.fit), ("heldout", split.heldout)):
        sims = [replay(task, w, split.fields, threads=cfg.threads),
                replay(task, w, split.fields, threads=cfg.threads, **tools)]
        loss, per_field = prediction_error(sims, w, scale)
        losses[name] = {"unaligned": float(loss[0]), "aligned": float(loss[1]),
                        "per_field": {f: {"unaligned": float(v[0]), "aligned": float(v[1])}
                                      for f, v in per_field.items()}}
        if name == "heldout":
            plot_replay(out / "replay.png", w, {f: np.stack([s[f] for s in sims]) for f in split.fields},
                        ("unaligned simulator", method), split.fields)
    report: dict[str, Any] = {
        "method": method, "task": task.name, "logs": split.logs, "log_steps": split.log_steps,
        "log_seconds": split.log_steps * split.control_dt, "fields": list(split.fields),
        "state_notes": split.notes, "windows": {"fit": len(split.fit), "heldout": len(split.heldout),
                                                "steps": cfg.window_steps},
        "heldout_error": losses["heldout"], "fit_error": losses["fit"], **extra,
    }
    log(f"{method}: held-out prediction error {losses['heldout']['unaligned']:.4g} (unaligned) -> "
        f"{losses['heldout']['aligned']:.4g} (aligned)")
    curves = {f"{method} model": (extra.get("model_curve", []), "step",
                                  "tracking_error" if method == "delta-action" else "loss")}
    if checkpoint is not None and cfg.finetune.steps:
        final, curve = finetune(checkpoint, out, cfg.finetune, wrap, log=log)
        report.update(checkpoint=str(checkpoint), finetuned=str(final), finetune_curve=curve)
        curves["fine-tuning (aligned simulator)"] = (curve, "step", "mean_return")
        files.append("final/")
        if truth is not None and cfg.finetune.proxy_episodes:
            report["proxy_return"] = {
                name: proxy_return(c, truth, cfg.finetune.proxy_episodes, seed=10_000 + cfg.seed)
                for name, c in (("original", checkpoint), ("fine-tuned", final))}
            log(f"{method}: return on the proxy {report['proxy_return']['original']['mean_return']:.1f} "
                f"(original) -> {report['proxy_return']['fine-tuned']['mean_return']:.1f} (fine-tuned)")
    plot_curves(out / "curves.png", curves)
    report["files"] = [*files, "report.json", "report.html", "replay.png", "curves.png"]
    if truth is not None:
        report["truth"] = truth.to_dict()
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_html(out / "report.html", report, ["replay.png", "curves.png"])
    return report


__all__ = ["align_and_finetune"]
