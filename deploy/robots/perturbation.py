"""Perturbation files: how the sim-to-sim reality proxy differs from the training simulator.

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
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from envs.randomization import KINDS, ParameterSpace, ParamRange


@dataclass
class Perturbation:
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
        unknown = sorted(set(data) - {"params", "latency", "motor_lag", "noise"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; known: params, latency, motor_lag, noise")
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
