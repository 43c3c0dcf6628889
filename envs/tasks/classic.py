"""The classic MuJoCo benchmarks with Gymnasium v5 rewards: hopper, halfcheetah, walker2d.

These are the benchmarks of the DORAEMON paper, so results are comparable. Models are
Gymnasium's bundled MJCFs; rewards, terminations, observations and reset noise follow the
``*-v5`` environments (forward velocity + healthy bonus - control cost; observation =
``qpos[1:]`` and ``qvel``, clipped to +-10 where v5 clips it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import mujoco
import numpy as np

from simrl.core.arrays import device, like, namespace
from simrl.core.robot_state import RobotState
from envs.tasks.base import ResetState, Task, TaskConfig, register_task

INF = float("inf")


@dataclass
class PlanarLocomotionConfig(TaskConfig):
    forward_reward_weight: float = 1.0              # reward per m/s of forward velocity
    ctrl_cost_weight: float = 1e-3                  # control cost weight (sum of squared controls)
    healthy_reward: float = 1.0                     # reward per step while healthy
    terminate_when_unhealthy: bool = True           # end the episode when unhealthy
    healthy_z_range: tuple[float, float] = (-INF, INF)      # healthy torso height (low, high)
    healthy_angle_range: tuple[float, float] = (-INF, INF)  # healthy torso angle (low, high)
    healthy_state_range: tuple[float, float] = (-INF, INF)  # healthy qpos/qvel bounds (hopper)
    range_fields: ClassVar[tuple[str, ...]] = ("healthy_z_range", "healthy_angle_range",
                                               "healthy_state_range")
    reset_noise_scale: float = 5e-3                 # initial qpos/qvel noise scale
    qvel_noise: str = "uniform"          # halfcheetah v5 uses a normal distribution
    clip_qvel: float | None = 10.0                  # observed joint velocities are clipped to +-this (None: no clip)


def _leg_randomization() -> dict[str, tuple[float, ...]]:
    """Hopper's and walker2d's default ranges: the four link masses and friction, +-50%."""
    return {"mass:torso": (0.5, 1.5), "mass:thigh": (0.5, 1.5), "mass:leg": (0.5, 1.5),
            "mass:foot": (0.5, 1.5), "friction": (0.5, 1.5)}


@dataclass
class HopperConfig(PlanarLocomotionConfig):
    model: str = "hopper"                           # built-in model name or a user MJCF path
    control_dt: float = 0.008            # frame_skip 4 x 2 ms
    healthy_z_range: tuple[float, float] = (0.7, INF)
    healthy_angle_range: tuple[float, float] = (-0.2, 0.2)
    healthy_state_range: tuple[float, float] = (-100.0, 100.0)
    success_return: float | None = 1500.0    # standing still earns ~1000: success means hopping
    randomization: dict[str, tuple[float, ...]] = field(default_factory=_leg_randomization)  # default DR ranges for --dr uniform: name -> (low, high[, nominal])


@dataclass
class Walker2dConfig(PlanarLocomotionConfig):
    model: str = "walker2d"                         # built-in model name or a user MJCF path
    control_dt: float = 0.008                       # policy period, seconds
    healthy_z_range: tuple[float, float] = (0.8, 2.0)
    healthy_angle_range: tuple[float, float] = (-1.0, 1.0)
    success_return: float | None = 1500.0    # standing still earns ~1000: success means walking
    randomization: dict[str, tuple[float, ...]] = field(default_factory=_leg_randomization)  # default DR ranges for --dr uniform: name -> (low, high[, nominal])


@dataclass
class HalfCheetahConfig(PlanarLocomotionConfig):
    model: str = "halfcheetah"                      # built-in model name or a user MJCF path
    control_dt: float = 0.05             # frame_skip 5 x 10 ms
    ctrl_cost_weight: float = 0.1                   # control cost weight (sum of squared controls)
    healthy_reward: float = 0.0                     # reward per step while healthy
    terminate_when_unhealthy: bool = False          # end the episode when unhealthy
    reset_noise_scale: float = 0.1                  # initial qpos/qvel noise scale
    qvel_noise: str = "normal"                      # uniform | normal initial velocity noise
    clip_qvel: float | None = None                  # observed joint velocities are clipped to +-this (None: no clip)
    success_return: float | None = 1500.0           # success when the episode return reaches this
    randomization: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "mass:torso": (0.5, 1.5), "mass:bthigh": (0.5, 1.5), "mass:fthigh": (0.5, 1.5),
        "friction": (0.5, 1.5)})


class PlanarLocomotion(Task):
    """Planar runner: x is qpos[0], height qpos[1], pitch qpos[2] (Gymnasium's layout)."""

    array_generic = True

    def __init__(self, config: PlanarLocomotionConfig):
        super().__init__(config)
        self.ctrl_low, self.ctrl_high = self.model.actuator_ctrlrange.T.copy()

    def check_model(self, model: mujoco.MjModel) -> None:
        if model.nq < 3 or model.nu == 0:
            raise ValueError(f"{self.name}: model needs rootx, rootz, rooty joints and actuators "
                             f"(nq={model.nq}, nu={model.nu})")

    @property
    def observation_names(self) -> list[str]:
        m = self.model
        qpos = [f"qpos_{mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or j}"
                for j in range(m.njnt)][1:]
        qvel = [f"qvel_{mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or j}" for j in range(m.njnt)]
        return qpos + qvel

    @property
    def action_names(self) -> list[str]:
        return [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or f"a{i}"
                for i in range(self.model.nu)]

    def reset(self, rng: np.random.Generator, n: int) -> ResetState:
        m, s = self.model, self.cfg.reset_noise_scale
        qpos = m.qpos0 + rng.uniform(-s, s, (n, m.nq))
        if self.cfg.qvel_noise == "normal":
            qvel = s * rng.standard_normal((n, m.nv))
        else:
            qvel = rng.uniform(-s, s, (n, m.nv))
        return ResetState(qpos, qvel, np.zeros((n, m.nu)), {})

    def robot_state(self, qpos, qvel, sensordata, task_state, last_action) -> RobotState:
        xp = namespace(qpos)
        return RobotState(joint_pos=qpos, joint_vel=qvel, last_action=last_action,
                          command=xp.zeros((qpos.shape[0], 0), dtype=qpos.dtype, device=device(qpos)))

    def observation(self, rs: RobotState) -> np.ndarray:
        xp, qvel = namespace(rs.joint_vel), rs.joint_vel
        if self.cfg.clip_qvel is not None:
            qvel = xp.clip(qvel, -self.cfg.clip_qvel, self.cfg.clip_qvel)
        return xp.concat([rs.joint_pos[:, 1:], qvel], axis=1)

    def action_to_ctrl(self, action, rs, task_state) -> np.ndarray:
        lo, hi = like(self.ctrl_low, action), like(self.ctrl_high, action)
        return lo + 0.5 * (action + 1.0) * (hi - lo)

    def healthy(self, rs: RobotState) -> np.ndarray:
        c = self.cfg
        xp, z, angle = namespace(rs.joint_pos), rs.joint_pos[:, 1], rs.joint_pos[:, 2]
        state = xp.concat([rs.joint_pos[:, 2:], rs.joint_vel], axis=1)
        ok = (c.healthy_z_range[0] < z) & (z < c.healthy_z_range[1])
        ok &= (c.healthy_angle_range[0] < angle) & (angle < c.healthy_angle_range[1])
        ok &= xp.all((c.healthy_state_range[0] < state) & (state < c.healthy_state_range[1]), axis=1)
        return ok

    def reward(self, prev, rs, action, ctrl):
        c, xp = self.cfg, namespace(rs.joint_pos)
        x_velocity = (rs.joint_pos[:, 0] - prev.joint_pos[:, 0]) / c.control_dt
        healthy = self.healthy(rs)
        terminated = ~healthy if c.terminate_when_unhealthy else xp.zeros_like(healthy)
        healthy_reward = c.healthy_reward * xp.astype(healthy, x_velocity.dtype)  # v5: only while healthy
        ctrl_cost = c.ctrl_cost_weight * xp.sum(ctrl ** 2, axis=1)
        reward = c.forward_reward_weight * x_velocity + healthy_reward - ctrl_cost
        return reward, terminated, {"x_velocity": x_velocity}


# Held-out randomization: wider mass and friction ranges than the defaults (0.5-1.5) plus
# families the defaults leave out (joint damping, motor strength).
_WIDE = (0.3, 1.8)
_PLANAR = {"friction": _WIDE, "damping": (0.5, 2.0), "gain": (0.75, 1.25)}


@register_task
class Hopper(PlanarLocomotion):
    name = "hopper"
    config_class = HopperConfig
    root_body = "torso"
    gym_id = "simrl/Hopper-v0"
    heldout_randomization = {**{f"mass:{b}": _WIDE for b in ("torso", "thigh", "leg", "foot")}, **_PLANAR}


@register_task
class Walker2d(PlanarLocomotion):
    name = "walker2d"
    config_class = Walker2dConfig
    root_body = "torso"
    gym_id = "simrl/Walker2d-v0"
    heldout_randomization = {**{f"mass:{b}": _WIDE for b in ("torso", "thigh", "leg", "foot")}, **_PLANAR}


@register_task
class HalfCheetah(PlanarLocomotion):
    name = "halfcheetah"
    config_class = HalfCheetahConfig
    root_body = "torso"
    gym_id = "simrl/HalfCheetah-v0"
    heldout_randomization = {**{f"mass:{b}": _WIDE for b in ("torso", "bthigh", "fthigh")}, **_PLANAR}
