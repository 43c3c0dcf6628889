"""Pools of checkpoints for the ranking benches: each member a ``simrl train`` run, all of them
the trials of one sweep (:mod:`simrl.sweep`: on Ray, a finished run never retrained, an
interrupted one resumed from its last checkpoint)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from simrl.cli.sweep import sweep_trials
from simrl.sweep import Resources


def member_options(task: str, dr: Any, steps: int, seed: int, dr_dir: Path, name: str,
                   num_envs: int = 64) -> dict[str, Any]:
    """The ``simrl train`` options of one pool member; a ranges mapping is written to
    ``DR_DIR/NAME.json`` (``simrl train`` takes a file)."""
    dr_arg = dr
    if isinstance(dr, dict):
        dr_dir.mkdir(parents=True, exist_ok=True)
        dr_arg = str(dr_dir / f"{name}.json")
        Path(dr_arg).write_text(json.dumps(_expand(task, dr)))
    return {"task": task, "dr": dr_arg, "steps": steps, "seed": seed, "num-envs": num_envs,
            "checkpoint-every": max(steps // 4, 1)}


def train_pool(task: str, members: dict[str, tuple[Any, int, int]], root: Path,
               resources: Resources, num_envs: int = 64) -> dict[str, Path]:
    """Trains ``members`` (name -> (randomization, steps, seed)) as the trials of one sweep in
    ``root`` (on Ray; a finished trial is never retrained, an interrupted one resumes);
    returns name -> final checkpoint."""
    t = time.perf_counter()
    names = list(members)
    options = [member_options(task, dr, steps, seed, root / "dr", n, num_envs)
               for n, (dr, steps, seed) in members.items()]
    trials, rows = sweep_trials(options, ["dr", "steps", "seed"], root, resources)
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"{len(failed)} pool runs failed, e.g. {failed[0]['directory']}: {failed[0]['error']}")
    by_options = {json.dumps(tr.options, sort_keys=True): tr.directory / "final" for tr in trials}
    finals = {n: by_options[json.dumps(o, sort_keys=True)] for n, o in zip(names, options)}
    print(f"{len(finals)} pool runs ready ({time.perf_counter() - t:.0f} s)")
    return finals


def _expand(task: str, dr: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    """``mass`` without a target means every body the task randomizes by default."""
    from envs.tasks import make_config

    out = {}
    for name, rng in dr.items():
        if name == "mass":
            bodies = [k for k in make_config(task).randomization if k.startswith("mass:")]
            out.update({b: list(rng) for b in bodies})
        else:
            out[name] = list(rng)
    return out


def proxy_returns(task: str, proxy: Any, pool: list[Path], episodes: int, cache: Path) -> np.ndarray:
    """Mean return of each checkpoint of ``pool`` over ``episodes`` episodes on ``proxy`` (an
    :class:`envs.perturbation.Perturbation`), cached by path in ``cache`` after each checkpoint
    (a rerun after a crash scores only the rest)."""
    import policies
    from simrl.validate.rollout import first_episodes

    truth = json.loads(cache.read_text()) if cache.exists() else {}
    for path in pool:
        if str(path) not in truth:
            returns, _ = first_episodes(proxy.make_env(task, episodes, seed=2), policies.load(path), seed=2)
            truth[str(path)] = float(returns.mean())
            cache.write_text(json.dumps(truth, indent=1))
    return np.array([truth[str(p)] for p in pool])
