"""The training-side env wrappers of the policy inputs in :mod:`policies.io`: a privileged
teacher's observation (:class:`PrivilegedEnv`) and a history policy's (:class:`HistoryEnv`: the
last task observations, optionally with the last actions), and :func:`wrapper_from_spec`, the
wrapper a checkpoint runs in. Used by distillation (:mod:`simrl.distill`), SAC with the DORAEMON
paper's inputs (:mod:`simrl.algos.sb3`) and evaluation.

Privileged features are

- the true base linear velocity in the body frame (m/s, not rescaled), when the task's robot
  state has it (go1-velocity; hopper's observation already holds its root velocities);
- the world's domain-randomization parameters, standardized per dimension by the parameter
  space's bounds: ``2 (p - low) / (high - low) - 1``, so -1 and 1 are the ends of the range and
  a dimension without range (``low == high``) reads 0. The bounds are recorded in the teacher's
  checkpoint (``spec["privileged"]``) and reused whenever the teacher runs again; a recorded
  parameter the env does not randomize reads its nominal value.

A history policy sees only what a robot has. Its checkpoint records ``spec["history"] =
{"length": H, "names": [...]}`` plus ``"actions": K, "action_names": [...]`` when it also sees
its last ``K`` actions.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from envs.batched import reset_record
from envs.wrappers import TaskView, Wrapper, to_numpy
from policies.io import ActionHistory, History, Privileged


def task_has_base_lin_vel(task: Any) -> bool:
    """Whether the task's robot-state record carries the (privileged) base linear velocity."""
    return reset_record(task)[0].base_lin_vel is not None


def privileged_spec(env: Any, base_lin_vel: bool | None = None) -> dict[str, Any]:
    """What the privileged features of ``env`` are: parameter names with the bounds and nominal
    values that standardize them, and whether the base velocity is included (by default when
    the task's robot state has it)."""
    space = env.space
    if base_lin_vel is None:
        base_lin_vel = task_has_base_lin_vel(env.task)
    return {"params": list(space.names), "low": space.low.tolist(), "high": space.high.tolist(),
            "nominal": space.nominal.tolist(), "base_lin_vel": bool(base_lin_vel)}


class PrivilegedEnv(Wrapper):
    """Observation = task observation + privileged features (:class:`policies.io.Privileged`).

    ``spec`` (a teacher checkpoint's ``spec["privileged"]``) fixes which parameters appear and
    how they are standardized; by default they are ``env``'s own (:func:`privileged_spec`).
    """

    def __init__(self, env: Any, spec: dict[str, Any] | None = None):
        spec = privileged_spec(env) if spec is None else spec
        names = Privileged.names(env.task.observation_names, spec)
        super().__init__(env, TaskView(env.task, names, privileged=spec))
        self.spec = spec
        self.io = Privileged(spec, env.space.names)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return self.io.observe(obs, self.env.params, self.env.robot_state)

    def on_reset(self, obs: np.ndarray) -> np.ndarray:
        return self._observe(obs)

    def on_step(self, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        return self._observe(obs)

    def final_observation(self, final_obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        # Finished worlds were already reset: their features are those of the previous step.
        return self.io.final(final_obs)


class HistoryEnv(Wrapper):
    """Observation = the last ``length`` task observations (:class:`policies.io.History`), then,
    when ``actions`` > 0, the last ``actions`` actions taken (:class:`policies.io.ActionHistory`)."""

    def __init__(self, env: Any, length: int = 5, actions: int = 0):
        base = list(env.task.observation_names)
        self.io = History(env.num_envs, length, len(base))
        names = History.names(base, length)
        spec: dict[str, Any] = {"length": length, "names": base}
        self.actions: ActionHistory | None = None
        if actions:
            self.actions = ActionHistory(env.num_envs, actions, env.action_size)
            names += ActionHistory.names(env.task.action_names, actions)
            spec.update(actions=actions, action_names=list(env.task.action_names))
        super().__init__(env, TaskView(env.task, names, history=spec))
        self.length = length
        self._taken: np.ndarray | None = None

    @property
    def observation_part(self) -> slice:
        """Where the current task observation sits in this wrapper's observation."""
        size = self.env.task.observation_size
        return slice((self.length - 1) * size, self.length * size)

    def _with_actions(self, obs: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        return obs if actions is None else np.concatenate([obs, actions], axis=1)

    def action(self, action: Any) -> Any:
        if self.actions is not None:
            self._taken = to_numpy(action).reshape(self.num_envs, -1)
        return action

    def on_reset(self, obs: np.ndarray) -> np.ndarray:
        return self._with_actions(self.io.reset(obs),
                                  None if self.actions is None else self.actions.reset())

    def on_step(self, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        actions = None
        if self.actions is not None:
            self.actions.push(self._taken)
            actions = self.actions.reset(done)
        return self._with_actions(self.io.step(obs, done), actions)

    def final_observation(self, final_obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        obs = self.io.final(final_obs, done)
        if self.actions is None:
            return obs
        actions = np.where(done[:, None], self.actions.shifted(self._taken), 0.0)
        return np.concatenate([obs, actions], axis=1)


def wrapper_from_spec(spec: dict[str, Any]) -> Callable[[Any], Wrapper] | None:
    """The env wrapper a privileged teacher or a history checkpoint runs in, or None."""
    if spec.get("privileged"):
        return lambda env: PrivilegedEnv(env, spec["privileged"])
    history = spec.get("history")
    if not history:
        return None

    def wrap(env: Any) -> HistoryEnv:
        if list(env.task.observation_names) != list(history["names"]):
            raise ValueError(f"the checkpoint's history holds observations of another layout than "
                             f"task {env.task.name}'s")
        actions = int(history.get("actions", 0))
        if actions and list(env.task.action_names) != list(history["action_names"]):
            raise ValueError(f"the checkpoint's history holds actions of another layout than "
                             f"task {env.task.name}'s")
        return HistoryEnv(env, history["length"], actions)
    return wrap
