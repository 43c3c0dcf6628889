"""Perturbation files: how the sim-to-sim reality proxy differs from the training simulator.

The one definition of a reality proxy: ``deploy``'s MuJoCo robot runs it in real time
(``deploy.run(..., perturb=FILE)``), :meth:`Perturbation.make_env` runs it as batched worlds
(the rank benchmark's truth and real logs), and the quickstart writes one to a file.

A JSON or YAML file with any of these keys::

    {
      "params":    {"mass:trunk": 1.2, "friction": 0.7, "gain": 0.85, "kp": 1.1,
                    "damping": 1.3, "com_x:trunk": 0.02},
      "latency":   0.01,     # s between a command's arrival and the actuators applying it
      "motor_lag": 0.02,     # s, time constant of a first-order lag on the actuator inputs
      "noise":     {"joint_pos": 0.005, "joint_vel": 0.2, "base_ang_vel": 0.05}
    }

``params`` are the physical parameters of :mod:`envs.randomization` (``kind[:target]``: body
masses, friction, joint damping and armature, servo stiffness ``kp`` and damping ``kd``, motor
strength ``gain``, force limits, centre-of-mass offsets, gravity) with their values (scales,
offsets in metres, gravity in m/s^2); they are written into the robot's MjModel by the same
code that randomizes training worlds. ``noise`` maps robot-state fields (``joint_pos``,
``joint_vel``, ``base_quat``, ``base_ang_vel``, ``motor_pos``, task extras ...) to the std of
Gaussian noise added to each reading. The unmodelled effects (command latency, motor lag,
sensor noise) exist only here, never in training.

In batched worlds (:meth:`Perturbation.make_env`) the latency must be a whole number of
control steps, there is no motor lag, and the noise is added to the robot-state record the
observation is computed from (``motor_pos`` / ``motor_vel`` are not part of it).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from envs.batched import BatchedEnv, reset_record
from envs.randomization import KINDS, ParameterSpace, ParamRange
from envs.wrappers import Wrapper
from simrl.core.robot_state import RobotState

KEYS = ("params", "latency", "motor_lag", "noise")
MOTOR_FIELDS = ("motor_pos", "motor_vel")   # actuator readings besides the robot-state record
SENSOR_STREAM = 1                           # the noise generator's stream, apart from the env's


@dataclass
class Perturbation:
    """A fixed perturbation of a robot (see the module docstring for the keys)."""

    params: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0
    motor_lag: float = 0.0
    noise: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.params = {str(k): float(v) for k, v in self.params.items()}
        self.noise = {str(k): float(v) for k, v in self.noise.items()}
        for name in self.params:
            kind = name.split(":", 1)[0]
            if KINDS.get(kind).in_env:
                raise ValueError(f"perturbation params: {name!r} is not a physical parameter; use "
                                 "the top-level keys latency (seconds) and noise (per field)")
        for key, value in (("latency", self.latency), ("motor_lag", self.motor_lag), *self.noise.items()):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"perturbation {key} must be finite and >= 0, got {value}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "perturbation") -> "Perturbation":
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; known: {', '.join(KEYS)}")
        try:
            return cls(**data)
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Perturbation":
        """Reads a ``.json``, ``.yaml`` or ``.yml`` file."""
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--perturb {path}: cannot be read ({exc})") from None
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            try:  # safe_load: tags such as !!python/object are refused, never run
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"--perturb {path}: not plain YAML ({' '.join(str(exc).split())[:200]})") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--perturb {path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a perturbation file holds a mapping of keys")
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes a ``.json``, ``.yaml`` or ``.yml`` file that :meth:`load` reads back."""
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def check_noise(self, robot: str, fields: Any) -> None:
        """ValueError unless every ``noise`` field is one of the readings ``fields`` of ``robot``."""
        unknown = sorted(set(self.noise) - set(fields))
        if unknown:
            raise ValueError(f"perturbation noise: {robot} reports no fields {unknown}; "
                             f"fields: {sorted(fields)}")

    def latency_steps(self, control_dt: float) -> int:
        """The latency in whole control steps; ValueError when it is not a whole number."""
        steps = self.latency / control_dt
        if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
            raise ValueError(f"perturbation latency: {self.latency} s is not a whole number of "
                             f"control steps ({control_dt} s) in batched worlds")
        return int(round(steps))

    def make_env(self, task: Any, num_envs: int, seed: int = 0, device: Any = "cpu",
                 **overrides: Any) -> "SensorNoise":
        """The proxy as ``num_envs`` batched worlds of ``task`` (a name, with task config
        ``overrides``, or a built task): ``params`` in every world's model, the latency as whole
        control steps, Gaussian noise on the robot-state record."""
        from envs.tasks import make_task

        if self.motor_lag:
            raise ValueError("perturbation motor_lag: batched worlds have no motor lag; run the "
                             "proxy on deploy's mujoco robot or set motor_lag to 0")
        if overrides and not isinstance(task, str):
            raise ValueError("task config overrides need a task name, not a built task")
        task = make_task(task, **overrides) if isinstance(task, str) else task
        return SensorNoise(BatchedEnv(task, num_envs, device, dr=self.dr(task.cfg.control_dt), seed=seed),
                           self, seed)

    def dr(self, control_dt: float) -> dict[str, tuple[float, float]]:
        """The proxy's physics as a fixed DR mapping of batched worlds (latency in control steps)."""
        dr: dict[str, tuple[float, float]] = {name: (v, v) for name, v in self.params.items()}
        steps = self.latency_steps(control_dt)
        if steps:
            dr["latency"] = (steps, steps)
        return dr

    def space(self, model: mujoco.MjModel) -> ParameterSpace:
        """The parameter space of ``params`` over ``model`` (names are checked against it)."""
        ranges = [ParamRange(name, v, v, v) for name, v in self.params.items()]
        return ParameterSpace(ranges, model)

    def apply(self, model: mujoco.MjModel) -> mujoco.MjModel:
        """A copy of ``model`` with ``params`` written in."""
        out = copy.copy(model)
        self.space(model).apply(out, np.array(list(self.params.values())))
        return out

    def gain_scales(self, model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
        """Per-actuator factors on commanded servo stiffness and damping (from ``kp``, ``kd``
        and ``gain``), found by applying ``params`` to a model with unit gains."""
        probe = copy.copy(model)
        probe.actuator_gainprm[:, 0] = 1.0
        probe.actuator_biasprm[:, 1:3] = -1.0
        self.space(probe).apply(probe, np.array(list(self.params.values())))
        return probe.actuator_gainprm[:, 0].copy(), -probe.actuator_biasprm[:, 2].copy()


class SensorNoise(Wrapper):
    """Batched worlds whose sensors are noisy: Gaussian noise (std per field, a perturbation's
    ``noise``) on the robot-state record, and the observation computed from the noisy record.
    ``robot_state`` is the noisy record (what a robot would report and its logs hold); rewards
    and terminations stay those of the true state. Replaces the wrapped env's observation, so
    use it on worlds without the ``obs_noise`` randomization kind."""

    def __init__(self, env: Any, perturbation: Perturbation, seed: int = 0):
        super().__init__(env)
        self.noise = dict(perturbation.noise)
        rs, task_state = reset_record(env.task)
        readings = set(rs.to_dict()) - {"command", "last_action", *task_state}
        perturbation.check_noise(f"task {env.task.name}", readings | set(MOTOR_FIELDS))
        self._fields = {k: v for k, v in self.noise.items() if k not in MOTOR_FIELDS}
        self.rng = np.random.default_rng([SENSOR_STREAM, seed])
        self._rs: RobotState | None = None

    @property
    def robot_state(self) -> RobotState:
        """The current noisy record of every world."""
        if self._rs is None:
            raise RuntimeError("call reset() first")
        return self._rs

    def _measure(self, obs: np.ndarray) -> np.ndarray:
        rs = self.env.robot_state
        if not self._fields:
            self._rs = rs
            return obs
        extras = dict(rs.extras)
        changes: dict[str, Any] = {}
        for name, std in self._fields.items():
            value = extras[name] if name in extras else getattr(rs, name)
            noisy = value + std * self.rng.standard_normal(value.shape)
            if name in extras:
                extras[name] = noisy
            else:
                changes[name] = noisy
        self._rs = replace(rs, **changes, extras=extras)
        return self.task.observation(self._rs)

    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.rng = np.random.default_rng([SENSOR_STREAM, seed])
        return super().reset_numpy(seed)

    def on_reset(self, obs: np.ndarray) -> np.ndarray:
        return self._measure(obs)

    def on_step(self, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        return self._measure(obs)
