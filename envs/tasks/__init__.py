"""Robot tasks: one module per task, each a config dataclass plus a ``Task`` subclass that
registers itself with :func:`register_task`. Every module of this package is imported on the
first lookup, so a new task is one new module here (or anywhere, registered the same way)."""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Mapping

from envs.tasks.base import TASKS, ResetState, Task, TaskConfig, register_task
from simrl.core.config import from_dict
from simrl.core.spec import CheckpointError


def task_names() -> list[str]:
    return TASKS.names()


def make_config(name: str, **overrides) -> TaskConfig:
    """The task's default config with ``overrides`` applied (unknown fields are an error). A
    None override means "not given" unless the field may be None (``sim_dt``, go1's ``kp``)."""
    cls = TASKS.get(name).config_class
    fields = {f.name: f for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - set(fields))
    if bad:
        raise ValueError(f"task {name}: unknown config fields {bad}; fields: {sorted(fields)}")
    return cls(**{k: v for k, v in overrides.items() if v is not None or "None" in str(fields[k].type)})


def make_task(name: str, config: TaskConfig | None = None, **overrides) -> Task:
    """Builds a task from its name, with an optional full config or field overrides."""
    cls = TASKS.get(name)
    if config is None:
        config = make_config(name, **overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return cls(config)


def config_from_spec(spec: Mapping[str, Any]) -> TaskConfig:
    """The task config a checkpoint spec was trained with (for evaluating under the same task)."""
    try:
        base = make_config(spec["task"])
        saved = spec.get("task_config", {})
        saved = {**{k: v for k, v in base.before_added.items() if k not in saved}, **saved}
        return from_dict(base, saved, f"{spec['task']} config")
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint spec: {exc}") from None


def task_from_spec(spec: Mapping[str, Any], model: str | None = None) -> Task:
    """The task a checkpoint was trained on, with its saved config; ``model`` replaces the robot
    model (an MJCF path) when given. Compiling a robot model takes seconds and a task's
    functions and model are not changed by their users, so one instance per (task, config,
    model) is shared in a process."""
    return _cached_task(spec["task"], json.dumps(spec.get("task_config", {}), sort_keys=True), model)


@functools.lru_cache(maxsize=8)
def _cached_task(name: str, config_json: str, model: str | None) -> Task:
    config = config_from_spec({"task": name, "task_config": json.loads(config_json)})
    if model is not None:
        config.model = model
    return make_task(name, config=config)


__all__ = ["TASKS", "Task", "TaskConfig", "ResetState", "register_task", "make_task",
           "make_config", "task_names", "config_from_spec", "task_from_spec"]
