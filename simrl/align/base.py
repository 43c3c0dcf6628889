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
class FinetuneConfig:
    """PPO fine-tuning of the checkpoint in the aligned simulator (delta-action, delta-dynamics)."""

    steps: int = 200_000                 # env steps of fine-tuning (0: align only, no fine-tuning)
    num_envs: int = 0                    # worlds (0: the checkpoint's run's)
    seed: int = 0                        # fine-tuning seed (torch and worlds)
    proxy_episodes: int = 16             # with --truth: episodes of the original and the fine-tuned policy on the proxy

    def validate(self) -> None:
        require(self.steps >= 0, "steps", f"must be >= 0, got {self.steps}")
        require(self.num_envs >= 0, "num_envs", f"must be >= 0, got {self.num_envs}")
        require(self.proxy_episodes >= 0, "proxy_episodes", f"must be >= 0, got {self.proxy_episodes}")


@dataclass
class DeltaActionConfig:
    """ASAP's delta-action model (``--method delta-action``): ``da = f(sim observation, action)``
    trained with PPO so that replayed logged actions plus ``scale * da`` track the logged states."""

    steps: int = 300_000                 # PPO env steps of the delta-action model
    num_envs: int = 64                   # replay worlds (each replays a random fitted window)
    scale: float = 0.5                   # the simulator gets clip(a + scale * clip(da, -1, 1), -1, 1)
    action_penalty: float = 0.05         # reward penalty on mean(da^2)
    tracking_sigma: float = 1.0          # tracking reward exp(-error / sigma); sigma in units of the unaligned simulator's mean error
    learning_rate: float = 1e-3          # PPO learning rate (start of the adaptive schedule)
    init_log_std: float = -1.0           # initial exploration log std (the output layer starts at zero: da = 0)

    def validate(self) -> None:
        require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        require(self.num_envs >= 1, "num_envs", f"must be >= 1, got {self.num_envs}")
        for name in ("scale", "tracking_sigma", "learning_rate"):
            require(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        require(self.action_penalty >= 0, "action_penalty", f"must be >= 0, got {self.action_penalty}")


@dataclass
class DeltaDynamicsConfig:
    """The delta-dynamics baseline (``--method delta-dynamics``): an MLP on (observation, action)
    regressed on the logged next state minus the simulator's one-step prediction."""

    hidden: tuple[int, ...] = (128, 128)  # MLP hidden layers
    epochs: int = 300                    # full-batch passes (Adam)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(all(h >= 1 for h in self.hidden), "hidden", f"sizes must be >= 1, got {self.hidden}")


@dataclass
class VgdfConfig:
    """VGDF (``--method vgdf``)."""

    robot: str = ""                      # perturbation file of the proxy the method interacts with (default: --truth)
    sim_steps: int = 100_000             # simulator transitions
    ratio: int = 10                      # simulator steps per robot step
    num_envs: int = 10                   # simulator worlds (one robot world steps every ratio / num_envs vector steps)
    keep: float = 0.25                   # fraction of each simulator batch kept by the value filter
    ensemble: int = 5                    # dynamics models
    batch: int = 128                     # robot and simulator transitions per update (each)
    updates_per_step: float = 0.25       # gradient updates per simulator transition
    start_steps: int = 2_000             # simulator transitions of random actions before learning
    hidden: tuple[int, ...] = (128, 128)  # actor, critic and dynamics MLPs
    gamma: float = 0.99
    tau: float = 0.005
    learning_rate: float = 3e-4
    ensemble_every: int = 1_000          # simulator steps between dynamics refits
    eval_episodes: int = 8               # proxy episodes of the final policy (and the checkpoint's)

    def validate(self) -> None:
        require(self.sim_steps >= 1, "sim_steps", f"must be >= 1, got {self.sim_steps}")
        require(self.ratio >= 1, "ratio", f"must be >= 1, got {self.ratio}")
        require(self.num_envs >= 1 and (self.ratio % self.num_envs == 0 or self.num_envs % self.ratio == 0),
                "num_envs", f"must divide ratio ({self.ratio}) or be a multiple of it, got {self.num_envs}")
        require(0 < self.keep <= 1, "keep", f"must be in (0, 1], got {self.keep}")
        require(self.ensemble >= 2, "ensemble", f"must be >= 2 (the filter needs a spread), got {self.ensemble}")
        require(self.updates_per_step > 0, "updates_per_step", f"must be > 0, got {self.updates_per_step}")


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
    delta_action: DeltaActionConfig = field(default_factory=DeltaActionConfig)
    delta_dynamics: DeltaDynamicsConfig = field(default_factory=DeltaDynamicsConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    vgdf: VgdfConfig = field(default_factory=VgdfConfig)

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
    """An alignment method: ``run(task, logs, cfg, out, log, truth=..., checkpoint=...)`` writes
    its files into ``out`` and returns its report (a JSON-able dict)."""

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
