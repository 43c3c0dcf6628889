"""Robot tasks: one module per task, each a config dataclass plus a ``Task`` subclass."""

from __future__ import annotations

import dataclasses

from envs.tasks.base import ResetState, Task, TaskConfig
from envs.tasks.classic import (HalfCheetah, HalfCheetahConfig, Hopper, HopperConfig, Walker2d,
                                Walker2dConfig)
from envs.tasks.go1_velocity import Go1Velocity, Go1VelocityConfig
from envs.tasks.panda_push import PandaPush, PandaPushConfig

TASKS: dict[str, tuple[type[Task], type[TaskConfig]]] = {
    "go1-velocity": (Go1Velocity, Go1VelocityConfig),
    "panda-push": (PandaPush, PandaPushConfig),
    "hopper": (Hopper, HopperConfig),
    "halfcheetah": (HalfCheetah, HalfCheetahConfig),
    "walker2d": (Walker2d, Walker2dConfig),
}


def task_names() -> list[str]:
    return list(TASKS)


def make_config(name: str, **overrides) -> TaskConfig:
    """The task's default config with ``overrides`` applied (unknown fields are an error)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    cls = TASKS[name][1]
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"task {name}: unknown config fields {bad}; fields: {sorted(known)}")
    return cls(**{k: v for k, v in overrides.items() if v is not None or k == "sim_dt"})


def make_task(name: str, config: TaskConfig | None = None, **overrides) -> Task:
    """Builds a task from its name, with an optional full config or field overrides."""
    if config is None:
        config = make_config(name, **overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name][0](config)


__all__ = ["TASKS", "Task", "TaskConfig", "ResetState", "make_task", "make_config", "task_names"]
