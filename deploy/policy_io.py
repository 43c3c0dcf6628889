"""What the network takes and gives on the robot, for every kind of checkpoint.

A plain checkpoint maps the task observation to the task action. Two kinds train inside an env
wrapper, and the runtime rebuilds that wrapper here, without torch:

* **history students** (``simrl distill``, ``spec["history"]``): the network sees the last ``H``
  task observations, oldest first, zeros before the run starts, exactly like
  :class:`simrl.robust.distill.HistoryEnv` at an episode start;
* **residual policies** (``simrl train --residual``, ``spec["residual"]``): the network sees the
  task observation plus the frozen base's action and outputs a correction;
  ``action = clip(base + scale * clip(residual, -1, 1), -1, 1)`` as in
  :class:`simrl.robust.residual.ResidualEnv`. On the robot the base must be a scripted
  controller from :mod:`policies.base` (a checkpoint base would need a second exported network).

Privileged teachers are refused: they read DR parameters and the true base velocity, which no
robot reports; deploy their distilled student instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
        self.obs_size = task.observation_size
        self.length = 1
        if history:
            if list(history["names"]) != list(task.observation_names):
                raise ValueError(f"the student's history holds observations of another layout "
                                 f"than task {task.name}'s")
            self.length = int(history["length"])
        self._history = np.zeros((self.length, self.obs_size))
        self.base, self.scale = None, 1.0
        if residual:
            from policies.base import SCRIPTED, make_scripted
            if residual["base"] not in SCRIPTED.get(task.name, ()):
                raise ValueError(f"residual base {residual['base']!r} is not a scripted controller "
                                 f"of task {task.name} ({', '.join(SCRIPTED.get(task.name, ())) or 'none'});"
                                 " the runtime runs residuals on scripted bases only")
            self.base, self.scale = make_scripted(residual["base"], task), float(residual["scale"])
        self._base_action: np.ndarray | None = None
        self.input_size = self.length * self.obs_size + (task.action_size if self.base else 0)

    def observe(self, obs: np.ndarray) -> None:
        """Adds this step's task observation (obs_size,) to the history."""
        self._history[:-1] = self._history[1:]
        self._history[-1] = obs

    def network_input(self, rs: RobotState) -> np.ndarray:
        """The network's observation for this step (after :meth:`observe`)."""
        x = self._history.reshape(-1)
        if self.base is None:
            return x.copy()
        self._base_action = np.clip(np.asarray(self.base(rs), dtype=np.float64)[0], -1.0, 1.0)
        return np.concatenate([x, self._base_action])

    def action(self, raw: np.ndarray) -> np.ndarray:
        """The task action for the network's output ``raw`` (after :meth:`network_input`)."""
        if self.base is None:
            return raw
        return np.clip(self._base_action + self.scale * np.clip(raw, -1.0, 1.0), -1.0, 1.0)
