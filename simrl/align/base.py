"""The alignment-method registry and the options every method shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from simrl.core.config import require
from simrl.core.registry import Registry


@dataclass
class SysIdConfig:
    """System identification (``--method sysid``)."""

    sigma0: float = 0.25                 # CMA-ES initial step, in units of each parameter's search range
    popsize: int = 0                     # CMA-ES population (0: cma's default, 4 + 3 ln d)
    dr_sigmas: float = 3.0               # the DR range is the estimate +- this many standard deviations ...
    dr_min_width: float = 0.05           # ... and at least +- this (relative for scales, absolute otherwise)
    max_latency: int = 3                 # latency search range, whole control steps (when latency is identified)

    def validate(self) -> None:
        require(0 < self.sigma0 <= 1, "sigma0", f"must be in (0, 1], got {self.sigma0}")
        require(self.popsize == 0 or self.popsize >= 4, "popsize", f"must be 0 or >= 4, got {self.popsize}")
        require(self.dr_sigmas >= 0, "dr_sigmas", f"must be >= 0, got {self.dr_sigmas}")
        require(self.dr_min_width >= 0, "dr_min_width", f"must be >= 0, got {self.dr_min_width}")
        require(0 <= self.max_latency <= 20, "max_latency", f"must be in [0, 20], got {self.max_latency}")


@dataclass
class AlignConfig:
    """What every alignment method is given besides the task and the logs."""

    params: tuple[str, ...] = ()         # parameters to identify (default: the task's randomization names)
    budget: int = 600                    # simulator evaluations of a parameter vector (CMA-ES: candidates)
    windows: int = 32                    # log windows fitted (as many again are held out, when the logs have them)
    window_steps: int = 20               # control steps replayed per window
    seed: int = 0                        # window choice and optimizer seed
    fields: tuple[str, ...] = ("joint_pos", "joint_vel", "base_quat", "base_ang_vel")  # measured robot-state fields compared (those the log has)
    base_state: Literal["log", "support"] = "log"  # floating base at window starts: "log" uses logged base_pos / base_lin_vel when present, "support" always reconstructs them from the stance foot (what a robot without motion capture has)
    holdout: float = 0.25                # fraction of the windows (whole logs when there are several) held out
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # search range per parameter (default: by kind)
    threads: int = 0                     # mujoco.rollout threads (0: all cores)
    sysid: SysIdConfig = field(default_factory=SysIdConfig)

    def validate(self) -> None:
        require(self.budget >= 8, "budget", f"must be >= 8 evaluations, got {self.budget}")
        require(self.windows >= 1, "windows", f"must be >= 1, got {self.windows}")
        require(self.window_steps >= 1, "window_steps", f"must be >= 1, got {self.window_steps}")
        require(0 < self.holdout < 1, "holdout", f"must be in (0, 1), got {self.holdout}")
        require(bool(self.fields), "fields", "name at least one robot-state field")
        for name, b in self.bounds.items():
            require(len(b) == 2 and b[0] < b[1], f"bounds[{name!r}]", f"expected (low, high) with low < high, got {b}")


@dataclass(frozen=True)
class AlignMethod:
    """An alignment method: ``run(task, logs, cfg, out, log)`` writes its files into ``out`` and
    returns its report (a JSON-able dict)."""

    name: str
    help: str
    run: Callable[..., dict[str, Any]]


METHODS: Registry[AlignMethod] = Registry("alignment method", "simrl.align")


def register_method(name: str, help: str) -> Callable:
    """Decorator on ``run(task, logs, cfg: AlignConfig, out: Path, log) -> dict``."""
    def add(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        METHODS.register(name, AlignMethod(name, help, run))
        return run
    return add


def out_dir(path: str | Path) -> Path:
    """The output directory, created; a file there is an error."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {p}: a file exists there; alignment writes a directory")
    p.mkdir(parents=True, exist_ok=True)
    return p
