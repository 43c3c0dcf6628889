"""What every task provides. A task is a config dataclass (the knobs) plus a ``Task`` subclass
(the functions), all vectorized over a leading batch dimension of worlds.

Observations are computed only from the :class:`~simrl.core.robot_state.RobotState` record, never
from MjData, so the robot runtime can call the same ``observation`` on hardware readings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import mujoco
import numpy as np

from envs.assets import load_model
from simrl.core.config import require, validate
from simrl.core.registry import Registry
from simrl.core.robot_state import RobotState


@dataclass
class TaskConfig:
    """Fields every task has. Subclasses add their rewards, commands and ranges."""

    model: str = ""                      # built-in model name or a user MJCF path
    control_dt: float = 0.02             # policy period, seconds
    sim_dt: float | None = None          # physics step; None keeps the model's
    max_episode_steps: int = 1000                   # episode length limit, control steps
    # Default ranges for ``dr="uniform"``: name -> (low, high) or (low, high, nominal).
    randomization: dict[str, tuple[float, ...]] = field(default_factory=dict)  # default DR ranges for --dr uniform: name -> (low, high[, nominal])
    success_return: float | None = None  # used by tasks whose success is a return threshold
    push_interval_steps: int = 150       # when ``push`` is randomized: a push this often ...
    push_duration_steps: int = 5         # ... lasting this many control steps
    # (low, high) fields of this config that validate() checks (subclasses add theirs).
    range_fields: ClassVar[tuple[str, ...]] = ()
    # Fields added after checkpoints were saved without them: field -> the value those
    # checkpoints were trained with (the config a spec without the field loads with).
    before_added: ClassVar[dict[str, Any]] = {}

    def validate(self) -> None:
        """Field checks that need no model (:func:`simrl.core.config.validate` also rejects NaN)."""
        require(math.isfinite(self.control_dt) and self.control_dt > 0, "control_dt",
                f"must be a positive number of seconds, got {self.control_dt}")
        require(self.sim_dt is None or (math.isfinite(self.sim_dt) and self.sim_dt > 0), "sim_dt",
                f"must be positive (or None), got {self.sim_dt}")
        require(self.max_episode_steps >= 1, "max_episode_steps",
                f"must be >= 1, got {self.max_episode_steps}")
        require(self.push_interval_steps >= 1, "push_interval_steps",
                f"must be >= 1, got {self.push_interval_steps}")
        require(self.push_duration_steps >= 0, "push_duration_steps",
                f"must be >= 0, got {self.push_duration_steps}")
        for name, values in self.randomization.items():
            require(len(values) in (2, 3) and values[0] <= values[1], f"randomization[{name!r}]",
                    f"expected (low, high[, nominal]) with low <= high, got {tuple(values)}")
        for name in self.range_fields:
            low, high = getattr(self, name)
            require(low <= high, name, f"low {low} exceeds high {high}")


@dataclass
class ResetState:
    """Initial physics and task state for ``n`` worlds."""

    qpos: np.ndarray                     # (n, nq)
    qvel: np.ndarray                     # (n, nv)
    ctrl: np.ndarray                     # (n, nu) control before the first action
    task_state: dict[str, np.ndarray]    # (n, ...) each: commands, goals, joint targets


class Task:
    """Base class of robot tasks. ``name`` is the registry key; :func:`register_task` adds a
    subclass to :data:`TASKS` (and its Gymnasium id)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    root_body: ClassVar[str | None] = None  # body that pushes and disturbances act on
    gym_id: ClassVar[str] = ""              # default: simrl/<CamelName>-v0
    # Randomization the validator scores checkpoints under (families and ranges beyond the
    # training defaults). Empty: the default ranges widened by half their width each side.
    heldout_randomization: ClassVar[dict[str, tuple[float, float]]] = {}
    # Run-config overrides (dotted keys, e.g. "ppo.learning_rate") applied before the user's.
    train_defaults: ClassVar[dict[str, Any]] = {}
    # Its observation, reward, termination and success functions run on torch tensors too
    # (array API: simrl.core.arrays), so the MuJoCo Warp backend can run it on the GPU.
    array_generic: ClassVar[bool] = False

    def __init__(self, config: TaskConfig):
        validate(config, self.name)
        self.cfg = config
        self.model = self.build_model()
        dt = self.model.opt.timestep
        self.substeps = int(round(config.control_dt / dt))
        if self.substeps < 1 or abs(self.substeps * dt - config.control_dt) > 1e-9:
            raise ValueError(f"{self.name}: control_dt {config.control_dt} is not a whole number "
                             f"of physics steps of {dt}")

    # -- model ------------------------------------------------------------------------------
    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        """Adds what the task needs to the robot model (sensors, sites). Default: nothing."""

    def build_model(self) -> mujoco.MjModel:
        model = load_model(self.cfg.model, edit=self.edit_spec)
        if self.cfg.sim_dt is not None:
            model.opt.timestep = self.cfg.sim_dt
        self.check_model(model)
        return model

    def check_model(self, model: mujoco.MjModel) -> None:
        """Raises ValueError if a (user) model lacks what the task needs."""

    @classmethod
    def command_overrides(cls, command: tuple[float, ...]) -> dict[str, Any]:
        """Config overrides that hold the task's command at ``command`` (push tests). Default:
        the task has no command."""
        return {}

    def heldout(self) -> dict[str, tuple[float, float]]:
        """:attr:`heldout_randomization`, or the default ranges widened by half their width on
        each side (scales kept positive)."""
        if self.heldout_randomization:
            return dict(self.heldout_randomization)
        out = {}
        for name, values in self.cfg.randomization.items():
            low, high = float(values[0]), float(values[1])
            pad = 0.5 * (high - low)
            out[name] = (low - pad if low < 0 else max(low - pad, 0.5 * low), high + pad)
        return out

    # -- names ------------------------------------------------------------------------------
    @property
    def observation_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def action_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def observation_size(self) -> int:
        return len(self.observation_names)

    @property
    def action_size(self) -> int:
        return len(self.action_names)

    def obs_noise_scale(self) -> np.ndarray:
        """Per-element noise std when ``obs_noise`` = 1. Default: no noise on anything."""
        return np.zeros(self.observation_size)

    # -- episode ------------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator, n: int) -> ResetState:
        raise NotImplementedError

    def command_resample_steps(self, rng: np.random.Generator, n: int) -> np.ndarray | None:
        """Control steps until each of ``n`` worlds draws a new command with
        :meth:`sample_commands` (training envs redraw during the episode), or None: a command
        lasts the whole episode. Default: None."""
        return None

    def sample_commands(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` new commands (tasks whose :meth:`command_resample_steps` is not None)."""
        raise NotImplementedError(f"{self.name}: no command sampler")

    def update_task_state(self, rs: RobotState, task_state: dict[str, np.ndarray]) -> None:
        """Advances per-world task state in place after each step's reward (training envs
        only, not the robot runtime), from the step's record ``rs``: gait timers and the like.
        Default: nothing."""

    def robot_state(self, qpos: np.ndarray, qvel: np.ndarray, sensordata: np.ndarray,
                    task_state: dict[str, np.ndarray], last_action: np.ndarray) -> RobotState:
        raise NotImplementedError

    def observation(self, rs: RobotState) -> np.ndarray:
        raise NotImplementedError

    def action_to_ctrl(self, action: np.ndarray, rs: RobotState,
                       task_state: dict[str, np.ndarray]) -> np.ndarray:
        """Maps actions in [-1, 1] to MuJoCo controls; may update ``task_state`` in place."""
        raise NotImplementedError

    def reward(self, prev: RobotState, rs: RobotState, action: np.ndarray, ctrl: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Reward, termination and per-step metrics (summed over the episode by the env)."""
        raise NotImplementedError

    def success(self, final: RobotState, ep_return: np.ndarray, ep_length: np.ndarray,
                metric_sums: dict[str, np.ndarray], terminated: np.ndarray) -> np.ndarray:
        """Success flag of finished episodes. Default: the return reaches ``success_return``."""
        if self.cfg.success_return is None:
            raise ValueError(f"{self.name}: no success criterion configured (success_return)")
        return ep_return >= self.cfg.success_return


TASKS: Registry[type[Task]] = Registry("task", "envs.tasks")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: registers the task under ``cls.name`` and its Gymnasium id
    (``gymnasium.make(cls.gym_id)``)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: a task needs a name")
    if not cls.gym_id:
        cls.gym_id = "simrl/" + "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_]", cls.name)) + "-v0"
    TASKS.register(cls.name, cls)
    import gymnasium
    if cls.gym_id not in gymnasium.registry:
        gymnasium.register(id=cls.gym_id, entry_point="envs.gym:SimrlEnv",
                           kwargs={"task": cls.name}, disable_env_checker=True)
    return cls
