"""Training algorithms by name (``simrl train --algo NAME``).

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

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from simrl.core.registry import Registry


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


ALGORITHMS: Registry[Algorithm] = Registry("algorithm", "simrl.algos")


def register_algorithm(name: str, *, sections: Mapping[str, type] | None = None,
                       defaults: Mapping[str, Any] | None = None,
                       run_defaults: Callable[[Any], Mapping[str, Any]] | None = None,
                       help: str = "", wrappers: bool = False) -> Callable:
    """Decorator on a trainer factory ``(cfg, out) -> Trainer``: registers it as ``name``."""

    def add(factory: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        ALGORITHMS.register(name, Algorithm(name, factory, dict(sections or {}),
                                            dict(defaults or {}), run_defaults, help, wrappers),
                            replace=_redefined(name, factory))
        return factory
    return add


def _redefined(name: str, factory: Callable) -> bool:
    """A module imported twice (``python -m`` plus an import) registers the same factory anew."""
    if name not in ALGORITHMS._entries:
        return False
    old = ALGORITHMS._entries[name].make_trainer
    return (old.__module__, old.__qualname__) == (factory.__module__, factory.__qualname__)
