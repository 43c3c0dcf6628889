"""What the network takes and gives on the robot, for every kind of checkpoint.

A plain checkpoint maps the task observation to the task action. Two kinds train inside an env
wrapper, and the runtime runs that wrapper's transforms here, the same numpy code
(:mod:`policies.io`) the training wrappers run, with one world:

* **history policies** (``simrl distill`` students, ``spec["history"]``): the network sees the last
  ``H`` task observations, oldest first, zeros before the run starts (:class:`policies.io.History`),
  and with ``spec["history"]["actions"] = K`` (SAC with the DORAEMON paper's inputs) its own last
  ``K`` actions after them (:class:`policies.io.ActionHistory`);
* **residual policies** (``simrl train --residual``, ``spec["residual"]``): the network sees the
  task observation plus the frozen base's action and outputs a correction
  (:class:`policies.io.Residual`). On the robot the base must be a scripted controller from
  :mod:`policies.base` (a checkpoint base would need a second exported network).

Privileged teachers are refused: they read DR parameters and the true base velocity, which no
robot reports; deploy their distilled student instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.base import SCRIPTED
from policies.io import ActionHistory, History, Residual, scripted_base
from simrl.core.robot_state import RobotState


class PolicyIO:
    """``observe`` every control step (it keeps the history); ``network_input`` and ``action``
    around each policy call."""

    def __init__(self, spec: dict[str, Any], task: Any):
        if spec.get("privileged"):
            raise ValueError(f"checkpoint of task {spec['task']} is a privileged teacher: it needs "
                             "DR parameters and the true base velocity, which a robot does not "
                             "report; deploy the student `simrl distill` made from it")
        history, residual = spec.get("history"), spec.get("residual")
        if history and residual:
            raise ValueError("checkpoint has both a history and a residual base; not supported")
        length, actions = 1, 0
        if history:
            if list(history["names"]) != list(task.observation_names):
                raise ValueError(f"the checkpoint's history holds observations of another layout "
                                 f"than task {task.name}'s")
            length, actions = int(history["length"]), int(history.get("actions", 0))
            if actions and list(history["action_names"]) != list(task.action_names):
                raise ValueError(f"the checkpoint's history holds actions of another layout "
                                 f"than task {task.name}'s")
        self.history = History(1, length, task.observation_size)
        self.actions = ActionHistory(1, actions, task.action_size) if actions else None
        self.residual: Residual | None = None
        if residual:
            scripted = SCRIPTED.get(task.name, ())
            if residual["base"] not in scripted:
                raise ValueError(f"residual base {residual['base']!r} is not a scripted controller "
                                 f"of task {task.name} ({', '.join(scripted) or 'none'});"
                                 " the runtime runs residuals on scripted bases only")
            self.residual = Residual(scripted_base(residual["base"], task), float(residual["scale"]))
        self.input_size = (length * task.observation_size + actions * task.action_size
                           + (task.action_size if self.residual else 0))

    def observe(self, obs: np.ndarray) -> None:
        """Adds this step's task observation (obs_size,) to the history."""
        self.history.step(obs[None])

    def network_input(self, rs: RobotState) -> np.ndarray:
        """The network's observation for this step (after :meth:`observe`)."""
        x = self.history.flat()
        if self.actions is not None:
            x = np.concatenate([x, self.actions.flat()], axis=1)
        return (x if self.residual is None else self.residual.observe(x, rs))[0]

    def action(self, raw: np.ndarray) -> np.ndarray:
        """The task action for the network's output ``raw`` (after :meth:`network_input`)."""
        if self.actions is not None:
            self.actions.push(raw[None])
        if self.residual is None:
            return raw
        return self.residual.action(raw[None])[0]
