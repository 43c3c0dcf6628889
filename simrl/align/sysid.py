"""System identification (``simrl align --method sysid``): the task's named physical parameters
estimated from real logs.

Every candidate parameter vector is scored by replaying the logged actions from the logged
states over short windows (:mod:`simrl.align.data`) in batched worlds, one world per candidate x
window: the same :class:`envs.batched.BatchedEnv` (per-world MjModel copies written by
:class:`envs.randomization.ParameterSpace`, one ``mujoco.rollout`` call per control step,
latency through its control history) that training uses. The score is the mean squared
prediction error of the measured robot-state fields, each element divided by its standard
deviation over the fitted windows, averaged over fields. CMA-ES (``cma``) minimizes it.

* Search space: scale kinds (masses, friction, gains ...) in log space over ``bounds`` (default
  0.25x to 4x), offsets and gravity linearly.
* Latency (whole control steps): a coordinate of the search rounded to the nearest step when
  the worlds are set (``cma``'s integer handling keeps its step size from collapsing); at the end
  every value 0 .. ``max_latency`` is tried with the other parameters at their estimate and the
  best is kept.
* Uncertainty: a local-curvature (Gauss-Newton / Laplace) standard deviation of each continuous
  parameter, ``s^2 (J^T J)^-1`` from the residual Jacobian at the estimate (finite differences,
  one batched replay) and the residual variance ``s^2``. Residuals within a window are
  correlated, so it is optimistic; the final CMA-ES step size per parameter is reported too.
* DR distribution: ``{param: [low, high, estimate]}``, the estimate +- ``dr_sigmas`` standard
  deviations, at least +- ``dr_min_width`` (relative for scales), clipped to the kind's bounds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from envs.batched import BatchedEnv
from envs.distributions import RandomizationError
from envs.perturbation import Perturbation
from envs.randomization import KINDS, ParameterSpace, default_nominal, make_ranges
from simrl.align.base import AlignConfig, register_method
from simrl.align.data import LogWindows, WindowSplit, load_windows
from simrl.align.replay import field_scales, field_weights, normalized_residuals

LATENCY = "latency"
DEFAULT_BOUNDS = {"scale": (0.25, 4.0), "m": (-0.1, 0.1), "m/s^2": (-15.0, -5.0)}


@dataclass
class SearchSpace:
    """The identified parameters and how CMA-ES coordinates map to their values."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    log: np.ndarray                      # (d,) bool: searched in log space
    latency: int | None                  # index of the latency parameter, if identified
    nominal: np.ndarray                  # values of the unaligned simulator

    @classmethod
    def build(cls, task: Any, names: tuple[str, ...], bounds: dict[str, tuple[float, float]],
              max_latency: int) -> "SearchSpace":
        """Checks ``names`` against the task's model; ValueError naming ``--params`` otherwise."""
        if not names:
            raise ValueError("--params: no parameters to identify")
        low, high, log, lat = [], [], [], None
        unknown = sorted(set(bounds) - set(names))
        if unknown:
            raise ValueError(f"--bounds: {unknown[0]} is not one of --params {list(names)}")
        for i, name in enumerate(names):
            kind_name = name.split(":", 1)[0]
            if kind_name not in KINDS:
                raise ValueError(f"--params {name}: unknown randomization kind {kind_name!r}; known: "
                                 f"{', '.join(KINDS.names())}")
            kind = KINDS.get(kind_name)
            if name == LATENCY:
                lat = i
                lo, hi = bounds.get(name, (0.0, float(max_latency)))
            elif kind.in_env:
                raise ValueError(f"--params {name}: {kind_name} is not a physical parameter; sysid "
                                 "identifies model parameters and latency")
            else:
                default = DEFAULT_BOUNDS.get(kind.unit)
                if name not in bounds and default is None:
                    raise ValueError(f"--params {name}: give its search range with --bounds")
                lo, hi = bounds.get(name, default)
            low.append(float(lo))
            high.append(float(hi))
            log.append(kind.unit == "scale" and lo > 0)
        try:
            space = ParameterSpace(make_ranges({n: (lo, hi) for n, lo, hi in zip(names, low, high)},
                                               task.model), task.model)
        except RandomizationError as exc:
            raise ValueError(f"--params: {exc}") from None
        nominal = np.array([default_nominal(n, task.model) for n in names])
        return cls(tuple(names), np.array(low), np.array(high), np.array(log), lat,
                   np.clip(nominal, space.low, space.high))

    @property
    def dim(self) -> int:
        return len(self.names)

    def _to(self, v: np.ndarray) -> np.ndarray:
        """Values -> the space searched linearly (log of scales)."""
        return np.where(self.log, np.log(np.where(self.log, v, 1.0)), v)

    def values(self, x: np.ndarray) -> np.ndarray:
        """CMA-ES coordinates (n, d) -> parameter values (latency rounded)."""
        x = np.atleast_2d(x)
        lo, hi = self._to(self.low), self._to(self.high)
        v = lo + np.clip(x, 0.0, 1.0) * (hi - lo)
        v = np.where(self.log, np.exp(np.where(self.log, v, 0.0)), v)
        if self.latency is not None:
            v[:, self.latency] = np.clip(np.rint(x[:, self.latency]), self.low[self.latency],
                                         self.high[self.latency])
        return v

    def coords(self, v: np.ndarray) -> np.ndarray:
        """Parameter values (d,) -> CMA-ES coordinates."""
        lo, hi = self._to(self.low), self._to(self.high)
        x = (self._to(v) - lo) / (hi - lo)
        if self.latency is not None:
            x[self.latency] = v[self.latency]
        return x

    def dvalue(self, v: np.ndarray) -> np.ndarray:
        """d value / d coordinate at ``v`` (continuous parameters)."""
        span = self._to(self.high) - self._to(self.low)
        return np.where(self.log, v * span, span)


class Replay:
    """Replays ``windows`` under up to ``batch`` candidate parameter vectors at once in one
    :class:`BatchedEnv` of ``batch x W`` worlds."""

    def __init__(self, task: Any, windows: LogWindows, space: SearchSpace, batch: int,
                 fields: tuple[str, ...], scale: dict[str, np.ndarray], threads: int = 0):
        self.task, self.w, self.space, self.batch, self.fields = task, windows, space, batch, fields
        self.weight = field_weights({f: scale[f] for f in fields})
        dr = {n: (lo, hi) for n, lo, hi in zip(space.names, space.low, space.high)}
        self.env = BatchedEnv(task, batch * len(windows), dr=dr, autoreset=False,
                              nthread=threads or None)
        rep = lambda a: np.concatenate([a] * batch, axis=0)  # noqa: E731
        self.qpos, self.qvel, self.past = rep(windows.qpos), rep(windows.qvel), rep(windows.past_ctrl)
        self.last, self.actions = rep(windows.last_action), rep(windows.actions)
        self.task_state = {k: rep(v) for k, v in windows.task_state.items()}
        self.evaluations = 0

    def rollout(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Replayed fields, ``field -> (n, W, H, k)`` for parameter vectors ``values`` (n, d)."""
        out: dict[str, list[np.ndarray]] = {f: [] for f in self.fields}
        for start in range(0, len(values), self.batch):
            chunk = values[start:start + self.batch]
            n, W, H = len(chunk), len(self.w), self.w.steps
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            self.env.start_from(np.repeat(padded, W, axis=0), self.qpos, self.qvel, self.past,
                                self.task_state, self.last)
            got = {f: np.zeros((self.batch * W, H) + self.w.targets[f].shape[2:]) for f in self.fields}
            for k in range(H):
                self.env.step_numpy(self.actions[:, k])
                rs = self.env.robot_state.to_dict()
                for f in self.fields:
                    got[f][:, k] = rs[f].reshape(len(rs[f]), -1)
            for f in self.fields:
                out[f].append(got[f].reshape(self.batch, W, H, -1)[:n])
            self.evaluations += n
        return {f: np.concatenate(v) for f, v in out.items()}

    def residuals(self, values: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Normalized residuals (n, R) (each field weighted to count equally) and the per-field
        mean squared normalized errors (n,) of ``values``."""
        return normalized_residuals(self.rollout(values), self.w.targets, self.weight)

    def loss(self, values: np.ndarray) -> np.ndarray:
        r, _ = self.residuals(values)
        return (r ** 2).sum(axis=1)


@dataclass
class SysIdResult:
    """The estimate and how it was found."""

    names: tuple[str, ...]
    estimate: np.ndarray
    std: np.ndarray                      # local-curvature standard deviation (NaN for latency)
    cma_std: np.ndarray                  # final CMA-ES step size, in parameter units
    history: list[float]                 # best loss per generation
    evaluations: int
    fit_loss: float
    latency_losses: dict[int, float]
    seconds: float


def identify(task: Any, split: WindowSplit, space: SearchSpace, cfg: AlignConfig,
             log: Callable[[str], None] = print) -> tuple[SysIdResult, Replay]:
    """CMA-ES over ``space`` on the fitted windows; returns the result and the replay."""
    import cma

    t0 = time.perf_counter()
    sc = cfg.sysid
    popsize = sc.popsize or int(4 + 3 * math.log(space.dim))
    scale = field_scales(split.fit, split.fields)
    replay = Replay(task, split.fit, space, max(popsize, space.dim + 1, 2), split.fields, scale, cfg.threads)
    x0 = space.coords(space.nominal)
    d = space.dim
    lows, highs, stds = np.zeros(d), np.ones(d), np.ones(d)
    opts: dict[str, Any] = {"seed": cfg.seed + 1, "maxfevals": cfg.budget, "popsize": popsize,
                            "verbose": -9, "tolfun": 1e-12, "tolx": 1e-6}
    if space.latency is not None:
        i = space.latency
        lows[i], highs[i] = space.low[i] - 0.49, space.high[i] + 0.49
        stds[i] = max(1.0, (space.high[i] - space.low[i]) / 2) / sc.sigma0 * 0.5
        opts["integer_variables"] = [i]
    x0 = np.clip(x0, lows + 1e-3, highs - 1e-3)
    opts["bounds"] = [lows.tolist(), highs.tolist()]
    opts["CMA_stds"] = stds.tolist()
    es = cma.CMAEvolutionStrategy(x0.tolist(), sc.sigma0, opts)
    history: list[float] = []
    while not es.stop():
        xs = es.ask()
        f = replay.loss(space.values(np.array(xs)))
        es.tell(xs, f.tolist())
        history.append(float(f.min()))
        if len(history) % 10 == 0:
            log(f"sysid: generation {len(history)}, {replay.evaluations} evaluations, best loss {min(history):.4g}")
    candidates = space.values(np.array([es.result.xfavorite, es.result.xbest]))
    losses = replay.loss(candidates)
    best = candidates[int(np.argmin(losses))]
    latency_losses: dict[int, float] = {}
    if space.latency is not None:
        i = space.latency
        options = np.arange(int(space.low[i]), int(space.high[i]) + 1)
        trial = np.repeat(best[None], len(options), axis=0)
        trial[:, i] = options
        tl = replay.loss(trial)
        latency_losses = {int(o): float(v) for o, v in zip(options, tl)}
        best = trial[int(np.argmin(tl))]
    std = curvature_std(replay, space, best)
    cma_std = np.asarray(es.result.stds) * np.where(np.arange(d) == (space.latency if space.latency is not None else -1),
                                                    1.0, space.dvalue(best))
    fit_loss = float(replay.loss(best[None])[0])
    return SysIdResult(space.names, best, std, cma_std, history, replay.evaluations, fit_loss,
                       latency_losses, time.perf_counter() - t0), replay


def curvature_std(replay: Replay, space: SearchSpace, best: np.ndarray, h: float = 0.01) -> np.ndarray:
    """Gauss-Newton standard deviation of each continuous parameter at ``best`` (NaN for latency)."""
    cont = [i for i in range(space.dim) if i != space.latency]
    std = np.full(space.dim, np.nan)
    if not cont:
        return std
    x = space.coords(best)
    xs = np.repeat(x[None], len(cont) + 1, axis=0)
    for row, i in enumerate(cont, start=1):
        xs[row, i] += h if x[i] + h <= 1.0 else -h
    vals = space.values(xs)
    vals[:, [i for i in range(space.dim) if i not in cont]] = best[[i for i in range(space.dim) if i not in cont]]
    r, _ = replay.residuals(vals)
    J = np.stack([(r[row] - r[0]) / (xs[row, i] - x[i]) for row, i in enumerate(cont, start=1)], axis=1)
    n_res = max(1, r.shape[1] - len(cont))
    s2 = float((r[0] ** 2).sum()) / n_res   # residual variance, in the units of r (and of J)
    try:
        cov = np.linalg.pinv(J.T @ J) * s2
    except np.linalg.LinAlgError:
        return std
    std[cont] = np.sqrt(np.maximum(np.diag(cov), 0.0)) * space.dvalue(best)[cont]
    return std


def dr_ranges(space: SearchSpace, result: SysIdResult, sigmas: float, min_width: float
              ) -> dict[str, list[float]]:
    """``{param: [low, high, estimate]}`` centred on the estimate, clipped to each kind's bound."""
    out = {}
    for i, name in enumerate(space.names):
        v = float(result.estimate[i])
        if i == space.latency:
            out[name] = [v, v, v]
            continue
        kind = KINDS.get(name.split(":", 1)[0])
        floor = min_width * (abs(v) if kind.unit == "scale" else 1.0)
        std = result.std[i] if np.isfinite(result.std[i]) else 0.0
        half = max(sigmas * std, floor)
        lo, hi = v - half, v + half
        if kind.bound == "positive":
            lo = max(lo, 0.05 * v)
        elif kind.bound == "non_negative":
            lo = max(lo, 0.0)
        out[name] = [round(lo, 6), round(hi, 6), round(v, 6)]
    return out


def to_perturbation(space: SearchSpace, estimate: np.ndarray, control_dt: float) -> Perturbation:
    """The estimate as a perturbation file (latency in seconds)."""
    params = {n: float(v) for i, (n, v) in enumerate(zip(space.names, estimate)) if i != space.latency}
    latency = float(estimate[space.latency]) * control_dt if space.latency is not None else 0.0
    return Perturbation(params=params, latency=latency)


def default_params(task: Any) -> tuple[str, ...]:
    """The task's default randomization names that sysid can identify (no noise or pushes)."""
    return tuple(n for n in task.cfg.randomization
                 if n == LATENCY or not KINDS.get(n.split(":", 1)[0]).in_env)


@register_method("sysid", help="system identification: the task's physical parameters from replayed log windows (CMA-ES)")
def run(task: Any, logs: str | Path, cfg: AlignConfig, out: Path, log: Callable[[str], None] = print,
        truth: Perturbation | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """Identifies ``cfg.params`` from the logs at ``logs``; writes params.json, dr.json,
    report.json, report.html, replay.png and curves.png into ``out``; returns the report
    (``checkpoint`` is not needed: sysid identifies the robot, whatever drove it)."""
    from simrl.align.report import plot_curves, plot_replay, write_html

    names = tuple(cfg.params) or default_params(task)
    space = SearchSpace.build(task, names, dict(cfg.bounds), cfg.sysid.max_latency)
    lookback = int(space.high[space.latency]) if space.latency is not None else 0
    split = load_windows(logs, task, windows=cfg.windows, steps=cfg.window_steps, lookback=lookback,
                         fields=cfg.fields, base_state=cfg.base_state, holdout=cfg.holdout, seed=cfg.seed)
    log(f"sysid: {task.name}, {len(split.logs)} logs ({split.log_steps} steps, "
        f"{split.log_steps * split.control_dt:.1f} s), {len(split.fit)} fitted + {len(split.heldout)} "
        f"held-out windows of {cfg.window_steps} steps; fields {', '.join(split.fields)}; "
        f"parameters {', '.join(names)}")
    for note in split.notes:
        log(f"sysid: {note}")
    result, _ = identify(task, split, space, cfg, log)
    held = Replay(task, split.heldout, space, 2, split.fields, field_scales(split.fit, split.fields), cfg.threads)
    pair = np.stack([space.nominal, result.estimate])
    _, per_field = held.residuals(pair)
    held_loss = held.loss(pair)
    sim = held.rollout(pair)
    pert = to_perturbation(space, result.estimate, task.cfg.control_dt)
    pert.save(out / "params.json")
    dr = dr_ranges(space, result, cfg.sysid.dr_sigmas, cfg.sysid.dr_min_width)
    (out / "dr.json").write_text(json.dumps(dr, indent=2))
    plot_replay(out / "replay.png", split.heldout, sim, ("nominal", "identified"), split.fields)
    report: dict[str, Any] = {
        "method": "sysid", "task": task.name, "logs": split.logs, "log_steps": split.log_steps,
        "log_seconds": split.log_steps * split.control_dt, "fields": list(split.fields),
        "state_notes": split.notes, "windows": {"fit": len(split.fit), "heldout": len(split.heldout),
                                                "steps": cfg.window_steps},
        "params": list(names),
        "estimate": {n: float(v) for n, v in zip(names, result.estimate)},
        "nominal": {n: float(v) for n, v in zip(names, space.nominal)},
        "std_curvature": {n: (None if not np.isfinite(s) else float(s)) for n, s in zip(names, result.std)},
        "std_cma": {n: float(s) for n, s in zip(names, result.cma_std)},
        "bounds": {n: [float(lo), float(hi)] for n, lo, hi in zip(names, space.low, space.high)},
        "latency_losses": result.latency_losses,
        "heldout_error": {"nominal": float(held_loss[0]), "identified": float(held_loss[1]),
                          "per_field": {f: {"nominal": float(v[0]), "identified": float(v[1])}
                                        for f, v in per_field.items()}},
        "fit_error": result.fit_loss, "evaluations": result.evaluations,
        "generations": len(result.history), "history": result.history, "seconds": result.seconds,
        "dr": dr, "files": ["params.json", "dr.json", "report.json", "report.html", "replay.png", "curves.png"],
    }
    if truth is not None:
        true = {**{n: v for n, v in truth.params.items()},
                **({LATENCY: truth.latency_steps(task.cfg.control_dt)} if space.latency is not None else {})}
        report["truth"] = {n: true.get(n, float(space.nominal[i])) for i, n in enumerate(names)}
        report["relative_error"] = {n: abs(report["estimate"][n] - report["truth"][n]) / max(abs(report["truth"][n]), 1e-9)
                                    for n in names}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_curves(out / "curves.png", {"CMA-ES": ([{"generation": i, "best loss": v} for i, v in enumerate(result.history)],
                                               "generation", "best loss")})
    write_html(out / "report.html", report, ["replay.png", "curves.png"])
    return report
