"""Ranks checkpoints before deployment: for each checkpoint a simulation score under held-out
randomization and OOD scores on held-out real logs, combined into VSDR
(:mod:`simrl.validate.score`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

import policies
from simrl.validate.data import RealData, check_specs, load_real_data
from simrl.validate.detectors import DisagreementModel
from simrl.validate.metrics import ranking_metrics
from simrl.validate.ood import DetectorScores, OODConfig, ood_scores, reference_rollouts
from simrl.validate.rollout import torch_threads
from simrl.validate.score import VSDRConfig, combine
from simrl.validate.simeval import SimEvalConfig, sim_score


@dataclass
class RankConfig:
    ood: OODConfig = field(default_factory=OODConfig)
    sim: SimEvalConfig = field(default_factory=SimEvalConfig)
    vsdr: VSDRConfig = field(default_factory=VSDRConfig)
    threads: int = 1   # torch threads while ranking; 1 avoids OpenMP spinning; 0 = torch's default


@dataclass
class Ranking:
    """The result for a pool: per checkpoint (in input order) the simulation score, each
    detector's OOD scores, every method's pool score; ``rank`` 1 = best VSDR."""

    checkpoints: list[str]
    names: list[str]
    sim: np.ndarray
    ood: list[dict[str, DetectorScores]]
    scores: dict[str, np.ndarray]        # method -> (n,) higher = better
    rank: np.ndarray
    real: RealData
    timings: dict[str, float]            # seconds: read_logs, simulation, scoring

    def evaluate(self, truth: np.ndarray) -> dict[str, dict[str, float]]:
        """Spearman, Kendall, regret@1 and top-3 hits of every method against true returns."""
        return {m: ranking_metrics(s, truth) for m, s in self.scores.items()}


def ood_table(oods: Sequence[Mapping[str, DetectorScores]], aggregate: str) -> dict[str, np.ndarray]:
    """Detector -> (n,) OOD log scores of the pool (higher = more OOD)."""
    return {d: np.array([o[d].aggregate(aggregate) for o in oods]) for d in oods[0]}


def checkpoint_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Short unique labels: the directory name, with parents added until unique."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def rank_checkpoints(checkpoints: Sequence[str | os.PathLike], real_logs: str | os.PathLike | Iterable,
                     cfg: RankConfig = RankConfig(), world_model: DisagreementModel | None = None,
                     log: Callable[[str], Any] = lambda s: None) -> Ranking:
    """Loads the checkpoints and the real logs (checked against them), scores and ranks."""
    with torch_threads(cfg.threads):
        return _rank(checkpoints, real_logs, cfg, world_model, log)


def _rank(checkpoints: Sequence[str | os.PathLike], real_logs: str | os.PathLike | Iterable,
          cfg: RankConfig, world_model: DisagreementModel | None, log: Callable[[str], Any]) -> Ranking:

    paths = [str(p) for p in checkpoints]
    t0 = time.perf_counter()
    loaded = [policies.load(p) for p in paths]
    spec = check_specs({p: pol.spec for p, pol in zip(paths, loaded)})
    real = load_real_data(real_logs, spec)
    timings = {"read_logs": time.perf_counter() - t0, "simulation": 0.0, "scoring": 0.0}
    log(f"{len(real.paths)} real logs, {len(real):,} steps ({timings['read_logs']:.1f} s)")
    sims, oods = [], []
    for name, policy in zip(checkpoint_names(paths), loaded):
        t1 = time.perf_counter()
        sims.append(sim_score(policy, cfg.sim).score)
        reference = reference_rollouts(policy, cfg.ood)
        t2 = time.perf_counter()
        oods.append(ood_scores(policy, reference, real, cfg.ood, world_model))
        t3 = time.perf_counter()
        timings["simulation"] += t2 - t1
        timings["scoring"] += t3 - t2
        text = ", ".join(f"{d} {s.aggregate(cfg.vsdr.aggregate):.3g}" for d, s in oods[-1].items())
        log(f"  {name}: sim {sims[-1]:.3g}; OOD ({cfg.vsdr.aggregate}) {text}  "
            f"[sim {t2 - t1:.1f} s, scoring {t3 - t2:.1f} s]")
    return finish(paths, np.array(sims), oods, real, cfg.vsdr, timings)


def finish(paths: Sequence[str], sim: np.ndarray, oods: list[dict[str, DetectorScores]], real: RealData,
           cfg: VSDRConfig, timings: dict[str, float]) -> Ranking:
    """Combines per-checkpoint scores into the pool's :class:`Ranking`."""
    scores = combine(sim, ood_table(oods, cfg.aggregate), cfg)
    order = np.argsort(-scores["vsdr"], kind="stable")
    rank = np.empty(len(paths), dtype=int)
    rank[order] = np.arange(1, len(paths) + 1)
    return Ranking(list(paths), checkpoint_names(paths), sim, oods, scores, rank, real, timings)


def match_truth(ranking: Ranking, truth: Mapping[str, float]) -> np.ndarray:
    """True returns in checkpoint order; ``truth`` keys are checkpoint paths (as given or
    resolved) or their labels in the ranking."""
    out = []
    for path, name in zip(ranking.checkpoints, ranking.names):
        keys = [path, str(Path(path).resolve()), name]
        value = next((truth[k] for k in keys if k in truth), None)
        if value is None:
            raise KeyError(f"truth has no entry for checkpoint {path} (keys tried: {keys})")
        out.append(float(value))
    return np.array(out)
