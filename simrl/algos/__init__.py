"""Training algorithms by name (``simrl train --algo NAME``), and the run config they make up
(:func:`default_config`, :func:`resolve_config`, :func:`make_trainer`).

Each algorithm registers itself in its own module of this package (or in any module the user
imports) with :func:`register_algorithm` on its trainer factory::

    @register_algorithm("my-algo", sections={"my": MyConfig}, defaults={"train.num_envs": 8})
    def make_my_trainer(cfg, out):          # cfg: the run config (cfg.my is a MyConfig)
        return MyTrainer(cfg, out)          # a simrl.train.Trainer subclass

``sections`` become run-config sections (``--my.field`` options, ``config.json`` keys);
``defaults`` are dotted run-config values applied after the task's ``train_defaults`` and
before the user's; ``run_defaults`` computes defaults that depend on the run's other options
(``--residual``, ``--robust``). The trainer owns the loop (:class:`simrl.train.Trainer`:
``begin``, ``after_iteration``, ``finish``, ``save_checkpoint``, ``resume``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from envs.tasks import TASKS, make_config
from simrl.core.config import apply_overrides, from_dict, validate
from simrl.core.registry import Registry
from simrl.train import RunConfig, TrainConfig, Trainer, resolve_dr


@dataclass(frozen=True)
class Algorithm:
    """A registered training algorithm."""

    name: str
    make_trainer: Callable[[Any, Any], Any]        # (run config, run directory) -> Trainer
    sections: Mapping[str, type] = field(default_factory=dict)   # run-config sections it reads
    defaults: Mapping[str, Any] = field(default_factory=dict)    # dotted run-config defaults
    # Defaults that depend on the run (the config with task and algorithm defaults applied).
    run_defaults: Callable[[Any], Mapping[str, Any]] | None = None
    help: str = ""                                # one line for ``--algo`` help
    # Supports --dr doraemon, --robust and --residual (the PPO wrappers).
    wrappers: bool = False
    # Supports --dr doraemon (without the other wrappers).
    doraemon: bool = False


ALGORITHMS: Registry[Algorithm] = Registry("algorithm", "simrl.algos")


def register_algorithm(name: str, *, sections: Mapping[str, type] | None = None,
                       defaults: Mapping[str, Any] | None = None,
                       run_defaults: Callable[[Any], Mapping[str, Any]] | None = None,
                       help: str = "", wrappers: bool = False, doraemon: bool = False) -> Callable:
    """Decorator on a trainer factory ``(cfg, out) -> Trainer``: registers it as ``name``."""

    def add(factory: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        ALGORITHMS.register(name, Algorithm(name, factory, dict(sections or {}),
                                            dict(defaults or {}), run_defaults, help, wrappers,
                                            doraemon),
                            replace=_redefined(name, factory))
        return factory
    return add


def _redefined(name: str, factory: Callable) -> bool:
    """A module imported twice (``python -m`` plus an import) registers the same factory anew."""
    if name not in ALGORITHMS._entries:
        return False
    old = ALGORITHMS._entries[name].make_trainer
    return (old.__module__, old.__qualname__) == (factory.__module__, factory.__qualname__)


# -- the run config of the registered algorithms ---------------------------------------------
def algorithm_sections() -> dict[str, type]:
    """Section name -> config class over every registered algorithm (one class per name)."""
    sections: dict[str, type] = {}
    for algo in ALGORITHMS.values():
        for name, cls in algo.sections.items():
            if name in ("train", "network", "task"):
                raise ValueError(f"algorithm {algo.name}: section name {name!r} is reserved")
            if sections.setdefault(name, cls) is not cls:
                raise ValueError(f"algorithm {algo.name}: section {name!r} is already a "
                                 f"{sections[name].__name__}")
    return sections


def run_config_class(task_config: type) -> type:
    """The :class:`RunConfig` subclass whose ``task`` is ``task_config`` and that has a field
    for every registered algorithm section."""
    return _run_config_class(task_config, tuple(algorithm_sections().items()))


@functools.lru_cache(maxsize=None)
def _run_config_class(task_config: type, sections: tuple[tuple[str, type], ...]) -> type:
    fields = [(name, cls, field(default_factory=cls)) for name, cls in sections]
    fields.append(("task", task_config, field(default_factory=task_config)))
    cls = dataclasses.make_dataclass("RunConfig", fields, bases=(RunConfig,))
    cls.__module__ = RunConfig.__module__
    cls.__doc__ = RunConfig.__doc__
    return cls


def default_config(task: str, algo: str = "ppo", **train: Any) -> RunConfig:
    """The defaults of a run of ``task`` with ``algo`` (and other ``train`` fields, e.g.
    ``residual="pusher"``): every section's defaults, then the task's ``train_defaults``, the
    algorithm's ``defaults`` and its ``run_defaults`` for these options."""
    algorithm: Algorithm = ALGORITHMS.get(algo)
    cfg = run_config_class(TASKS.get(task).config_class)(task=make_config(task))
    base = {"train.task": task, "train.algo": algo, **{f"train.{k}": v for k, v in train.items()}}
    cfg = apply_overrides(cfg, {**TASKS.get(task).train_defaults, **algorithm.defaults, **base},
                          "defaults")
    if algorithm.run_defaults is not None:
        cfg = apply_overrides(cfg, dict(algorithm.run_defaults(cfg)), "defaults")
    return cfg


def resolve_config(overrides: dict[str, Any]) -> RunConfig:
    """The validated run config for dotted ``overrides`` (``{"ppo.learning_rate": 1e-3,
    "train.task": ...}``): :func:`default_config` of their task, algorithm and train options,
    then the overrides."""
    train = {k[len("train."):]: v for k, v in overrides.items() if k.startswith("train.")}
    task, algo = train.pop("task", TrainConfig.task), train.pop("algo", TrainConfig.algo)
    cfg = apply_overrides(default_config(task, algo, **train), overrides, "config")
    return check_config(apply_run_defaults(cfg, given=set(overrides)))


def apply_run_defaults(cfg: RunConfig, given: set[str]) -> RunConfig:
    """Recomputes the algorithm's ``run_defaults`` from ``cfg`` (a default may follow another
    field the user set, e.g. ``hinf.ppo.num_steps`` follows ``ppo.num_steps``) and applies those
    the user did not set (``given``: dotted keys)."""
    algorithm = ALGORITHMS.get(cfg.train.algo)
    if algorithm.run_defaults is None:
        return cfg
    derived = {k: v for k, v in algorithm.run_defaults(cfg).items() if k not in given}
    return apply_overrides(cfg, derived, "defaults")


def check_config(cfg: RunConfig) -> RunConfig:
    """Validates every section (field ranges, no NaN) and the algorithm's options."""
    validate(cfg)
    algo = ALGORITHMS.get(cfg.train.algo)
    t = cfg.train
    if t.dr == "doraemon" and not (algo.wrappers or algo.doraemon):
        with_doraemon = [a.name for a in ALGORITHMS.values() if a.wrappers or a.doraemon]
        raise ValueError(f"--dr doraemon is not available with --algo {t.algo} "
                         f"(use --algo {' or '.join(with_doraemon)})")
    if not algo.wrappers and (t.robust != "none" or t.residual):
        raise ValueError(f"--robust and --residual are not available with --algo {t.algo} "
                         f"(use --algo ppo)")
    if t.init and t.algo != "ppo":
        raise ValueError(f"--init is available with --algo ppo only, got --algo {t.algo}")
    return cfg


def env_dr(cfg: RunConfig) -> Any:
    """The DR the run's env starts with: ``--dr`` resolved, or for ``--dr doraemon`` the support
    DORAEMON adapts within (``--doraemon.ranges``, else the task's ranges)."""
    if cfg.train.dr == "doraemon":
        return resolve_dr(cfg.doraemon.ranges) if cfg.doraemon.ranges else "uniform"
    return resolve_dr(cfg.train.dr)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuilds a run config from ``config.json`` content."""
    task = data.get("train", {}).get("task", TrainConfig.task)
    default = run_config_class(TASKS.get(task).config_class)(task=make_config(task))
    return from_dict(default, data, "config.json")


def make_trainer(cfg: RunConfig, out: str | Path) -> Trainer:
    """The trainer of ``cfg.train.algo`` (checked with :func:`check_config` first)."""
    check_config(cfg)
    return ALGORITHMS.get(cfg.train.algo).make_trainer(cfg, out)
