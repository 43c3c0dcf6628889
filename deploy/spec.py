"""The task a checkpoint names, built once per process on the robot computer (no torch).

Reading and checking ``spec.json`` is :mod:`policies.spec`'s job; this module adds a cache,
because compiling a robot model can take seconds and the runtime, the robot back-end and the
exporter all ask for the same task.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from policies.spec import task_config


def build_task(spec: dict[str, Any], model: str | None = None):
    """The task the checkpoint was trained on, with its saved config; ``model`` replaces the
    robot model (an MJCF path) when given. A task's functions and model are not changed by
    their users, so one instance per (task, config, model) is shared."""
    return _task(spec["task"], json.dumps(spec.get("task_config", {}), sort_keys=True), model)


@functools.lru_cache(maxsize=8)
def _task(name: str, config_json: str, model: str | None):
    from envs.tasks import make_task
    config = task_config({"task": name, "task_config": json.loads(config_json)})
    if model is not None:
        config.model = model
    return make_task(name, config=config)
