"""DORAEMON: Domain Randomization via Entropy Maximization (Tiboni et al., ICLR 2024).

Between two training iterations, the dynamics distribution ``nu_phi`` (independent rescaled
Betas, :class:`~simrl.dr.beta.BetaDistribution`) is updated from the episodes that the current
policy just finished on worlds sampled from ``nu_phi``. The update is the paper's
constrained problem (labelled (P) below; equation numbers differ between paper versions):

(P) phi' = argmax_phi'  H(nu_phi')
           s.t.         G(phi')                   >= alpha     (success rate)
                        KL(nu_phi || nu_phi')     <= epsilon   (trust region)

where ``G(phi') = E_{xi ~ nu_phi'}[success(pi, xi)]`` is estimated by importance sampling from
the buffer ``{(xi_k, s_k)}`` collected under the old ``nu_phi`` (the paper's estimator, (IS) below):

(IS) G_hat(phi') = 1/K sum_k  nu_phi'(xi_k) / nu_phi(xi_k) * s_k.

We use these *plain* (unnormalized) importance weights, as the paper and its reference code do:
the estimator is unbiased, and when ``nu_phi'`` moves mass to regions the buffer barely covers,
the weights there are small and the estimate *drops*, which makes the ``>= alpha`` constraint
conservative exactly where the data cannot vouch for the new distribution. The self-normalized
estimator ``sum w s / sum w`` (``DoraemonConfig.self_normalized=True``) has lower variance but is
driven by the relative weights of the few samples nearest to the new mass, so it can report a
high success rate for a distribution supported by a handful of lucky episodes. The KL trust
region keeps the weights well-behaved either way; the effective sample size is reported.

If the old distribution itself misses the target (``G_hat(phi) < alpha``), the entropy problem may
have no feasible point. DORAEMON then first solves the paper's backup problem ((B) below;
``get_feasible_starting_distr`` in the authors' reference code):

(B) phi* = argmax_phi' G_hat(phi')   s.t.   KL(nu_phi || nu_phi') <= epsilon,

i.e. it moves toward higher success inside the trust region. If ``G_hat(phi*) >= alpha`` the
entropy problem is solved from ``phi*`` (still inside the same trust region around ``phi``);
otherwise ``phi*`` becomes the new distribution and the step is reported infeasible. Entropy
plays no role in that fallback, so it may go up or down; it never moves when no episode
succeeded (``G_hat`` is then identically 0 and no direction is better than another).

Optimization variables are ``theta = (log a, log b)`` of the free dimensions, box-bounded by
``DoraemonConfig.param_bounds``; objective and constraints are written in torch, and
``scipy.optimize.minimize`` (SLSQP by default, or trust-constr) gets their exact autograd
gradients. Every returned point is checked: parameters are finite and inside the bounds,
``KL(old || new) <= epsilon`` holds exactly, and (when the step is feasible) ``G_hat(new) >=
alpha - success_tol``. A solver point that violates a check is pulled back by bisection along the
segment from the (feasible) starting point; the result is never worse than that start.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import optimize
from scipy.special import logsumexp

from simrl.dr.beta import (BetaDistribution, beta_entropy_torch, beta_kl_torch,
                           beta_log_prob_torch)

_METHODS = ("SLSQP", "trust-constr")


@dataclass
class DoraemonConfig:
    """Hyper-parameters of the DORAEMON update (paper defaults where it gives them)."""

    alpha: float = 0.5
    """Target success rate: the lower bound of the performance constraint in (P)."""
    kl_bound: float = 0.1
    """Trust region ``epsilon``: max ``KL(old || new)`` per update."""
    param_bounds: tuple[float, float] = (0.8, 1e4)
    """Box for every Beta ``a`` and ``b``. The lower bound 0.8 is the paper's; ``a = b = 1``
    (uniform) is the entropy maximum, so a lower bound <= 1 lets the search reach it."""
    buffer_size: int = 1000
    """At most this many episodes (the most recent) enter one update."""
    min_samples: int = 16
    """Fewer episodes than this: the update is skipped and the distribution kept."""
    fallback: bool = True
    """Run the max-success-in-trust-region step when ``G_hat(old) < alpha``; else keep old."""
    self_normalized: bool = False
    """Use self-normalized importance weights instead of the paper's plain ones."""
    method: str = "SLSQP"
    """``scipy.optimize.minimize`` method: "SLSQP" or "trust-constr"."""
    max_iter: int = 200
    """Iteration limit of each scipy solve."""
    success_tol: float = 1e-4
    """Accepted shortfall of ``G_hat(new)`` below ``alpha`` for a feasible step."""
    boundary_eps: float = 1e-6
    """Buffer points are clipped to ``[eps, 1 - eps]`` in standardized coordinates, so that a
    parameter the env clipped onto a range end keeps a finite importance weight."""

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.param_bounds)
        self.param_bounds = (lo, hi)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"DoraemonConfig: alpha must be in [0, 1], got {self.alpha}")
        if not self.kl_bound > 0.0:
            raise ValueError(f"DoraemonConfig: kl_bound must be > 0, got {self.kl_bound}")
        if not 0.0 < lo < hi < math.inf:
            raise ValueError(f"DoraemonConfig: need 0 < param_bounds[0] < param_bounds[1], got {self.param_bounds}")
        if self.buffer_size < 1 or self.min_samples < 1:
            raise ValueError("DoraemonConfig: buffer_size and min_samples must be >= 1")
        if self.method not in _METHODS:
            raise ValueError(f"DoraemonConfig: method must be one of {_METHODS}, got {self.method!r}")
        if not 0.0 < self.boundary_eps < 0.5:
            raise ValueError(f"DoraemonConfig: boundary_eps must be in (0, 0.5), got {self.boundary_eps}")


@dataclass
class UpdateResult:
    """What one :meth:`Doraemon.update` did."""

    distribution: BetaDistribution
    """The new distribution (the old one when the update kept it)."""
    entropy_before: float
    entropy_after: float
    success_before: float
    """Success rate of the buffer, i.e. ``G_hat(old)`` (nan when the buffer is empty)."""
    success_after: float
    """``G_hat(new)``: importance-sampled success rate of the new distribution."""
    kl: float
    """``KL(old || new)``; always ``<= kl_bound``."""
    feasible: bool
    """Whether the new distribution meets ``G_hat >= alpha`` (a real entropy step was taken)."""
    fallback_used: bool
    """Whether the max-success step ran (because ``G_hat(old) < alpha``)."""
    status: str
    """"entropy_step", "fallback_then_entropy_step", "fallback_max_success", "no_successes",
    "infeasible_kept_old", "too_few_samples" or "nothing_to_randomize"."""
    solver_message: str = ""
    """scipy's messages (one per solve) and any correction applied after them."""
    n_samples: int = 0
    ess: float = float("nan")
    """Effective sample size ``(sum w)^2 / sum w^2`` of the importance weights of the new
    distribution (= ``n_samples`` when it did not move)."""


# ------------------------------------------------------------------------------ IS estimate
def importance_success_estimate(new: BetaDistribution, old: BetaDistribution, params: np.ndarray,
                                success: np.ndarray, self_normalized: bool = False
                                ) -> tuple[float, float]:
    """``G_hat(new)`` from episodes sampled under ``old`` ((IS) above), and the effective sample size.

    Plain: ``mean(w * s)``; self-normalized: ``sum(w * s) / sum(w)``, with
    ``w = new.pdf(x) / old.pdf(x)`` computed in log space.
    """
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    s = _as_success(success, len(params))
    log_w = new.log_prob(params) - old.log_prob(params)
    log_w = np.where(np.isnan(log_w), -np.inf, log_w)
    return _is_from_log_weights(log_w, s, self_normalized)


def _is_from_log_weights(log_w: np.ndarray, s: np.ndarray, self_normalized: bool
                         ) -> tuple[float, float]:
    n = len(log_w)
    if n == 0:
        return float("nan"), 0.0
    lse_all = logsumexp(log_w)
    lse_succ = logsumexp(log_w[s]) if s.any() else -np.inf
    est = math.exp(lse_succ - (lse_all if self_normalized else math.log(n)))
    ess = math.exp(2.0 * lse_all - logsumexp(2.0 * log_w)) if np.isfinite(lse_all) else 0.0
    return float(est), float(ess)


def _as_success(success: np.ndarray, n: int) -> np.ndarray:
    s = np.asarray(success).reshape(-1)
    if s.shape != (n,):
        raise ValueError(f"success must have shape ({n},), got {s.shape}")
    if s.dtype != bool:
        if not np.isin(s, (0, 1)).all():
            raise ValueError("success must be boolean (or 0/1)")
        s = s.astype(bool)
    return s


# ------------------------------------------------------------------------------ the problem
class _Problem:
    """Entropy, KL and IS-success as torch functions of ``theta = (log a, log b)`` (free dims).

    ``evaluate(theta)`` returns values and exact gradients of all three, cached per theta, so
    scipy's separate calls for objective and constraints cost one forward/backward.
    """

    def __init__(self, old: BetaDistribution, z: np.ndarray, success: np.ndarray,
                 self_normalized: bool):
        self.old = old
        self.free = np.flatnonzero(old.free)
        self.k = len(self.free)
        self.log_width = float(np.log(old.width[self.free]).sum())
        self.a0 = torch.as_tensor(old.a[self.free], dtype=torch.float64)
        self.b0 = torch.as_tensor(old.b[self.free], dtype=torch.float64)
        self.z = torch.as_tensor(z, dtype=torch.float64)
        self.s = torch.as_tensor(success, dtype=torch.bool)
        self.n = len(success)
        self.self_normalized = self_normalized
        self.logp_old = beta_log_prob_torch(self.z, self.a0, self.b0)
        self.theta_old = np.concatenate([np.log(old.a[self.free]), np.log(old.b[self.free])])
        self._cache_key: bytes | None = None
        self._cache: dict[str, tuple[float, np.ndarray]] = {}

    def ab(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-length (a, b) of a new distribution: fixed dims keep the old values."""
        a, b = self.old.a.copy(), self.old.b.copy()
        a[self.free] = np.exp(theta[: self.k])
        b[self.free] = np.exp(theta[self.k:])
        return a, b

    def distribution(self, theta: np.ndarray) -> BetaDistribution:
        if np.array_equal(theta, self.theta_old):  # exp(log(a)) may not round-trip exactly
            return self.old
        return self.old.with_params(*self.ab(theta))

    def _terms(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        a, b = torch.exp(t[: self.k]), torch.exp(t[self.k:])
        entropy = beta_entropy_torch(a, b).sum() + self.log_width
        kl = beta_kl_torch(self.a0, self.b0, a, b).sum()
        log_w = beta_log_prob_torch(self.z, a, b) - self.logp_old
        log_num = torch.logsumexp(log_w[self.s], dim=0) if bool(self.s.any()) else None
        if log_num is None:
            success = torch.zeros((), dtype=torch.float64) + 0.0 * t.sum()
        elif self.self_normalized:
            success = torch.exp(log_num - torch.logsumexp(log_w, dim=0))
        else:
            success = torch.exp(log_num - math.log(self.n))
        return {"entropy": entropy, "kl": kl, "success": success}

    def evaluate(self, theta: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
        theta = np.asarray(theta, dtype=np.float64)
        key = theta.tobytes()
        if key != self._cache_key:
            t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
            terms = self._terms(t)
            out = {}
            names = list(terms)
            for i, name in enumerate(names):
                (g,) = torch.autograd.grad(terms[name], t, retain_graph=i < len(names) - 1)
                out[name] = (float(terms[name].detach()), g.detach().numpy().copy())
            self._cache_key, self._cache = key, out
        return self._cache

    def value(self, name: str, theta: np.ndarray) -> float:
        return self.evaluate(theta)[name][0]

    def grad(self, name: str, theta: np.ndarray) -> np.ndarray:
        return self.evaluate(theta)[name][1]


# ------------------------------------------------------------------------------ DORAEMON
class Doraemon:
    """Keeps the current DR distribution and updates it from finished episodes (the paper's
    algorithm: alternate policy training and this update).

    Usage, once per training iteration::

        dist = doraemon.distribution              # hand to the env; sample worlds from it
        ...train, collect (params, success) of episodes whose worlds were sampled from dist...
        result = doraemon.update(params, success)

    Only pass episodes whose parameters were drawn from the *current* distribution: the
    importance weights divide by its density. Episodes that started before the previous update
    belong to the previous distribution and must be dropped.
    """

    def __init__(self, distribution: BetaDistribution, config: DoraemonConfig | None = None):
        self.config = config if config is not None else DoraemonConfig()
        self._check_in_bounds(distribution)
        self.distribution = distribution
        self.history: list[dict[str, Any]] = []
        self._record(None)

    # -------------------------------------------------------------------------- public API
    def update(self, params: np.ndarray, success: np.ndarray) -> UpdateResult:
        """One DORAEMON step ((P), with the backup problem (B)) from an episode buffer.

        params: (n, d) parameter vectors the episodes ran with, sampled from ``self.distribution``.
        success: (n,) bool, whether each episode succeeded.
        """
        cfg = self.config
        old = self.distribution
        x, s = self._check_buffer(old, params, success)
        n = len(x)
        base = dict(entropy_before=old.entropy(), success_before=float(s.mean()) if n else math.nan,
                    n_samples=n)

        def keep(status: str, feasible: bool, message: str = "") -> UpdateResult:
            return self._finish(UpdateResult(
                distribution=old, entropy_after=base["entropy_before"],
                success_after=base["success_before"], kl=0.0, feasible=feasible,
                fallback_used=False, status=status, solver_message=message, ess=float(n), **base))

        if n < cfg.min_samples:
            return keep("too_few_samples", False, f"{n} < min_samples={cfg.min_samples}")
        if not old.free.any():
            return keep("nothing_to_randomize", base["success_before"] >= cfg.alpha)

        z = np.clip(old.standardize(x)[:, old.free], cfg.boundary_eps, 1.0 - cfg.boundary_eps)
        problem = _Problem(old, z, s, cfg.self_normalized)
        theta_old = problem.theta_old
        messages: list[str] = []
        fallback_used = False

        if problem.value("success", theta_old) >= cfg.alpha:
            start = theta_old
        elif not s.any():
            return keep("no_successes", False)
        elif not cfg.fallback:
            return keep("infeasible_kept_old", False)
        else:
            # Inverted problem: max G_hat s.t. KL <= eps (move toward success).
            fallback_used = True
            cand, msg = self._solve(problem, theta_old, objective="success", success_constraint=False)
            messages.append(f"fallback: {msg}")
            cand, note = self._restrict(problem, theta_old, cand, need_success=False)
            if note:
                messages.append(note)
            if problem.value("success", cand) < problem.value("success", theta_old):
                cand = theta_old
                messages.append("fallback lowered G_hat: kept old")
            if problem.value("success", cand) < cfg.alpha - cfg.success_tol:
                return self._result(problem, base, cand, feasible=False, fallback_used=True,
                                    status="fallback_max_success", messages=messages)
            start = cand

        cand, msg = self._solve(problem, start, objective="entropy", success_constraint=True)
        messages.append(f"entropy: {msg}")
        cand, note = self._restrict(problem, start, cand, need_success=True)
        if note:
            messages.append(note)
        if problem.value("entropy", cand) < problem.value("entropy", start):
            cand = start
            messages.append("solver lowered the entropy: kept its starting point")
        status = "fallback_then_entropy_step" if fallback_used else "entropy_step"
        return self._result(problem, base, cand, feasible=True, fallback_used=fallback_used,
                            status=status, messages=messages)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: distribution, config and history (JSON-friendly)."""
        return {"distribution": self.distribution.to_dict(), "config": asdict(self.config),
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cfg = dict(state["config"])
        cfg["param_bounds"] = tuple(cfg["param_bounds"])
        self.config = DoraemonConfig(**cfg)
        dist = BetaDistribution.from_dict(state["distribution"])
        self._check_in_bounds(dist)
        self.distribution = dist
        self.history = [dict(h) for h in state["history"]]

    # -------------------------------------------------------------------------- internals
    def _check_in_bounds(self, dist: BetaDistribution) -> None:
        lo, hi = self.config.param_bounds
        f = dist.free
        if ((dist.a[f] < lo) | (dist.a[f] > hi) | (dist.b[f] < lo) | (dist.b[f] > hi)).any():
            raise ValueError(f"Doraemon: the distribution's a={dist.a.tolist()}, b={dist.b.tolist()} "
                             f"are outside param_bounds={self.config.param_bounds}")

    def _check_buffer(self, dist: BetaDistribution, params: np.ndarray, success: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(params, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(dist.names):
            raise ValueError(f"params must have shape (n, {len(dist.names)}), got {x.shape}")
        s = _as_success(success, len(x))
        if not np.isfinite(x).all():
            raise ValueError("params contain NaN or inf")
        tol = 1e-9 * np.maximum(dist.width, 1.0)
        if ((x < dist.low - tol) | (x > dist.high + tol)).any():
            raise ValueError("params outside the distribution's [low, high]: they cannot have "
                             "been sampled from it")
        keep = self.config.buffer_size
        return x[-keep:], s[-keep:]

    def _solve(self, problem: _Problem, x0: np.ndarray, objective: str,
               success_constraint: bool) -> tuple[np.ndarray, str]:
        """Runs scipy from ``x0``; returns its point (unchecked) and a status message."""
        cfg = self.config
        sign = -1.0  # both objectives (entropy, success) are maximized
        kl_ub = cfg.kl_bound * (1.0 - 1e-4)  # a hair inside, so the exact check rarely bites
        lb, ub = np.log(cfg.param_bounds[0]), np.log(cfg.param_bounds[1])
        bounds = optimize.Bounds(np.full(len(x0), lb), np.full(len(x0), ub))

        def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
            return sign * problem.value(objective, th), sign * problem.grad(objective, th)

        # Constraints as g(theta) >= 0.
        cons: list[tuple[Callable, Callable]] = [
            (lambda th: kl_ub - problem.value("kl", th), lambda th: -problem.grad("kl", th))]
        if success_constraint:
            cons.append((lambda th: problem.value("success", th) - cfg.alpha,
                         lambda th: problem.grad("success", th)))
        x0 = np.clip(x0, lb, ub)
        try:
            if cfg.method == "SLSQP":
                res = optimize.minimize(
                    fun, x0, jac=True, method="SLSQP", bounds=bounds,
                    constraints=[{"type": "ineq", "fun": g, "jac": j} for g, j in cons],
                    options={"maxiter": cfg.max_iter, "ftol": 1e-10})
            else:
                nlc = [optimize.NonlinearConstraint(g, 0.0, np.inf, jac=lambda th, j=j: j(th)[None])
                       for g, j in cons]
                res = optimize.minimize(
                    fun, x0, jac=True, method="trust-constr", bounds=bounds, constraints=nlc,
                    options={"maxiter": cfg.max_iter, "gtol": 1e-8, "xtol": 1e-10})
        except (ValueError, ArithmeticError, RuntimeError) as exc:  # keep training alive
            return x0, f"solver raised {type(exc).__name__}: {exc}"
        x = np.asarray(res.x, dtype=np.float64)
        return x, f"{res.message} (success={bool(res.success)}, nit={getattr(res, 'nit', '?')})"

    def _restrict(self, problem: _Problem, start: np.ndarray, cand: np.ndarray,
                  need_success: bool) -> tuple[np.ndarray, str]:
        """Returns ``cand`` if it passes the checks, else the farthest passing point found by
        bisection on the segment ``start -> cand`` (``start`` must pass)."""
        cfg = self.config
        lb, ub = np.log(cfg.param_bounds[0]), np.log(cfg.param_bounds[1])

        def ok(th: np.ndarray) -> bool:
            if not np.isfinite(th).all():
                return False
            vals = problem.evaluate(th)
            if not all(np.isfinite(v) for v, _ in vals.values()):
                return False
            if vals["kl"][0] > cfg.kl_bound:
                return False
            # The reported KL is scipy's closed form; its digamma may differ from torch's in the
            # last bits, so check that one too: the bound must hold for the number we report.
            if problem.old.kl(problem.distribution(th)) > cfg.kl_bound:
                return False
            if not need_success:
                return True
            # Likewise for success: the solver's value and the one reported (recomputed from the
            # distribution's a and b) may differ in the last bits; both must meet the bound.
            bound = cfg.alpha - cfg.success_tol
            return vals["success"][0] >= bound and self._success_of(problem, th)[0] >= bound

        if not np.isfinite(cand).all():
            return start, "solver returned non-finite parameters: kept its starting point"
        cand = np.clip(cand, lb, ub)
        if ok(cand):
            return cand, ""
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if ok(start + mid * (cand - start)):
                lo = mid
            else:
                hi = mid
        return start + lo * (cand - start), f"solver point violated a constraint: bisected to t={lo:.6f}"

    def _result(self, problem: _Problem, base: dict[str, Any], theta: np.ndarray, feasible: bool,
                fallback_used: bool, status: str, messages: Sequence[str]) -> UpdateResult:
        new = problem.distribution(theta)
        old = problem.old
        success_after, ess = self._success_of(problem, theta)
        return self._finish(UpdateResult(
            distribution=new, entropy_after=new.entropy(), success_after=success_after,
            kl=old.kl(new), feasible=feasible, fallback_used=fallback_used, status=status,
            solver_message="; ".join(messages), ess=ess, **base))

    def _success_of(self, problem: _Problem, theta: np.ndarray) -> tuple[float, float]:
        """(importance-sampled success, effective sample size) of the distribution at ``theta``,
        as reported: from its a and b, on the (standardized, clipped) buffer the constraint was
        solved on."""
        new = problem.distribution(theta)
        log_w = (beta_log_prob_torch(problem.z, torch.as_tensor(new.a[problem.free]),
                                     torch.as_tensor(new.b[problem.free])) - problem.logp_old).numpy()
        return _is_from_log_weights(log_w, problem.s.numpy(), self.config.self_normalized)

    def _finish(self, result: UpdateResult) -> UpdateResult:
        if result.kl > self.config.kl_bound:  # cannot happen after _restrict; never hand it out
            raise AssertionError(f"DORAEMON produced KL {result.kl} > {self.config.kl_bound}")
        self.distribution = result.distribution
        self._record(result)
        return result

    def _record(self, result: UpdateResult | None) -> None:
        d = self.distribution
        entry: dict[str, Any] = {
            "update": len(self.history), "entropy": d.entropy(),
            "a": d.a.tolist(), "b": d.b.tolist(), "low": d.low.tolist(), "high": d.high.tolist(),
            "mean": d.mean().tolist(), "std": d.std().tolist(),
        }
        if result is None:  # the initial distribution, before any update
            entry.update(success_before=math.nan, success_after=math.nan, kl=0.0,
                         feasible=True, status="initial", n_samples=0)
        else:
            entry.update(success_before=result.success_before, success_after=result.success_after,
                         kl=result.kl, feasible=result.feasible, status=result.status,
                         n_samples=result.n_samples)
        self.history.append(entry)


# ------------------------------------------------------------------------------ plotting
def plot_history(history: Sequence[dict[str, Any]], names: Sequence[str], path: str,
                 n_curves: int = 6) -> None:
    """Writes a PNG of how each dimension's distribution widened over the updates.

    Top row: the marginal pdf of each dimension at ``n_curves`` updates spread over the history
    (light = early, dark = late). Bottom row: mean and mean +/- std of each dimension vs. update
    index, with entropy and estimated success in the titles of the last update.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not history:
        raise ValueError("plot_history: empty history")
    d = len(names)
    fig = Figure(figsize=(3.6 * max(d, 1), 6.4), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, max(d, 1), squeeze=False)
    # Geometric spacing: most of the widening happens in the first updates.
    picks = sorted(set(np.geomspace(1, len(history), min(n_curves, len(history))).round().astype(int) - 1))
    updates = np.array([h["update"] for h in history])
    mean = np.array([h["mean"] for h in history])
    std = np.array([h["std"] for h in history])
    for i, name in enumerate(names):
        ax = axes[0, i]
        lo, hi = history[-1]["low"][i], history[-1]["high"][i]
        if hi > lo:
            xs = np.linspace(lo, hi, 400)[1:-1]  # the pdf may be infinite on the ends
            for rank, k in enumerate(picks):
                h = history[k]
                dist = BetaDistribution([name], [h["low"][i]], [h["high"][i]], [h["a"][i]], [h["b"][i]])
                shade = 0.25 + 0.75 * rank / max(len(picks) - 1, 1)
                ax.plot(xs, dist.pdf_1d(0, xs), color=(0.1, 0.3, 0.8, shade), label=f"update {h['update']}")
        else:
            ax.axvline(lo, color="k")
        ax.set_title(name)
        ax.set_xlabel("value")
        if i == 0:
            ax.set_ylabel("pdf")
            ax.legend(fontsize=7)
        ax = axes[1, i]
        ax.fill_between(updates, mean[:, i] - std[:, i], mean[:, i] + std[:, i], alpha=0.3,
                        label="mean +/- std")
        ax.plot(updates, mean[:, i], label="mean")
        ax.set_ylim(lo - 0.02 * (hi - lo + 1e-12), hi + 0.02 * (hi - lo + 1e-12))
        ax.set_xlabel("update")
        if i == 0:
            ax.set_ylabel("value")
            ax.legend(fontsize=7)
    last = history[-1]
    fig.suptitle(f"DORAEMON: entropy {history[0]['entropy']:.3g} -> {last['entropy']:.3g}, "
                 f"est. success {last['success_after']:.3g} after update {last['update']}")
    fig.savefig(path, dpi=100)
