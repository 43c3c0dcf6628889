"""Franka Panda pushes a cube to a goal on the table it is mounted on.

Model: MuJoCo Menagerie's Panda with a 4 x 4 x 6 cm cube (the MuJoCo Playground cube scene;
its ground plane is the tabletop). The policy moves the seven arm joint targets by small deltas
(a joint-space velocity command, 25 Hz); the fingers stay closed and act as the pusher. Success:
the cube's centre ends within ``success_distance`` of the goal in the table plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import mujoco
import numpy as np

from simrl.core.robot_state import RobotState
from envs.tasks.base import ResetState, Task, TaskConfig, register_task

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))


def add_ee_sensor(spec: mujoco.MjSpec) -> None:
    """The end effector's position (site ``gripper``) as the first sensor, ``ee_pos``."""
    sensor = spec.add_sensor()
    sensor.name = "ee_pos"
    sensor.type = mujoco.mjtSensor.mjSENS_FRAMEPOS
    sensor.objtype = mujoco.mjtObj.mjOBJ_SITE
    sensor.objname = "gripper"


@dataclass
class PandaPushConfig(TaskConfig):
    model: str = "panda-cube"                       # built-in model name or a user MJCF path
    control_dt: float = 0.04                        # policy period, seconds
    max_episode_steps: int = 125                    # episode length limit, control steps
    target_delta: float = 0.05                     # rad of joint-target change per unit action
    cube_xy_low: tuple[float, float] = (0.45, -0.1)  # cube start x, y lower corner (m)
    cube_xy_high: tuple[float, float] = (0.55, 0.1)  # cube start x, y upper corner (m)
    goal_distance: tuple[float, float] = (0.1, 0.2)  # m from the cube's start
    range_fields: ClassVar[tuple[str, ...]] = ("goal_distance",)
    workspace_low: tuple[float, float] = (0.3, -0.3)  # gripper workspace x, y lower corner (m)
    workspace_high: tuple[float, float] = (0.75, 0.3)  # gripper workspace x, y upper corner (m)
    success_distance: float = 0.05                  # m between cube and goal for success
    reach_weight: float = 1.0                       # reward weight of the gripper-to-cube distance
    push_weight: float = 2.0                        # reward weight of the cube-to-goal distance
    success_bonus: float = 1.0                      # reward at success
    action_weight: float = 0.01                     # action penalty weight
    sparse_reward: bool = False                    # 1 when within success_distance, else 0
    randomization: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "mass:box": (0.5, 2.0), "friction": (0.6, 1.4), "kp": (0.8, 1.2),
        "damping": (0.5, 2.0), "obs_noise": (0.0, 1.0)})


@register_task
class PandaPush(Task):
    name = "panda-push"
    config_class = PandaPushConfig
    root_body = None
    gym_id = "simrl/PandaPush-v0"
    heldout_randomization = {"mass:box": (0.3, 3.0), "friction": (0.4, 1.6), "kp": (0.7, 1.3),
                             "damping": (0.3, 3.0), "latency": (0, 1), "obs_noise": (0.0, 1.5)}

    def __init__(self, config: PandaPushConfig):
        super().__init__(config)
        m = self.model
        self.arm_qpos = np.array([m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in ARM_JOINTS])
        self.arm_qvel = np.array([m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in ARM_JOINTS])
        box = m.body("box").jntadr[0]
        self.box_qpos, self.box_qvel = int(m.jnt_qposadr[box]), int(m.jnt_dofadr[box])
        key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, "home")
        self.home_qpos = (m.key_qpos[key] if key >= 0 else m.qpos0).copy()
        self.home_ctrl = (m.key_ctrl[key] if key >= 0 else np.zeros(m.nu)).copy()
        self.joint_low, self.joint_high = m.jnt_range[[m.joint(j).id for j in ARM_JOINTS]].T
        self.box_height = float(self.home_qpos[self.box_qpos + 2])

    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        add_ee_sensor(spec)

    def check_model(self, model: mujoco.MjModel) -> None:
        names = [*ARM_JOINTS]
        missing = [j for j in names if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) < 0]
        if missing or mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "box") < 0 or model.nu < 7:
            raise ValueError(f"{self.name}: model needs Panda joints joint1..joint7 with actuators, a "
                             f"free body 'box' and a site 'gripper'; missing joints {missing}")

    @property
    def observation_names(self) -> list[str]:
        return ([f"{j}_pos" for j in ARM_JOINTS] + [f"{j}_vel" for j in ARM_JOINTS]
                + [f"{j}_target_error" for j in ARM_JOINTS]
                + [f"ee_{a}" for a in "xyz"] + [f"cube_{a}" for a in "xyz"] + [f"goal_{a}" for a in "xyz"]
                + [f"cube_minus_ee_{a}" for a in "xyz"] + [f"goal_minus_cube_{a}" for a in "xyz"]
                + [f"last_action_{j}" for j in ARM_JOINTS])

    @property
    def action_names(self) -> list[str]:
        return [f"{j}_target_delta" for j in ARM_JOINTS]

    def obs_noise_scale(self) -> np.ndarray:
        return np.concatenate([np.full(7, 0.005), np.full(7, 0.05), np.zeros(7), np.zeros(3),
                               np.full(3, 0.005), np.zeros(3), np.full(6, 0.005), np.zeros(7)])

    def reset(self, rng: np.random.Generator, n: int) -> ResetState:
        m, c = self.model, self.cfg
        qpos = np.tile(self.home_qpos, (n, 1))
        cube = rng.uniform(c.cube_xy_low, c.cube_xy_high, (n, 2))
        qpos[:, self.box_qpos:self.box_qpos + 2] = cube
        qpos[:, self.box_qpos + 2] = self.box_height
        qpos[:, self.box_qpos + 3:self.box_qpos + 7] = (1.0, 0.0, 0.0, 0.0)
        angle = rng.uniform(-np.pi, np.pi, n)
        dist = rng.uniform(*c.goal_distance, n)
        goal_xy = np.clip(cube + dist[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1),
                          c.workspace_low, c.workspace_high)
        goal = np.concatenate([goal_xy, np.full((n, 1), self.box_height)], axis=1)
        ctrl = np.tile(self.home_ctrl, (n, 1))
        ctrl[:, 7:] = 0.0  # fingers closed
        target = qpos[:, self.arm_qpos].copy()
        return ResetState(qpos, np.zeros((n, m.nv)), ctrl, {"command": goal, "joint_target": target})

    def robot_state(self, qpos, qvel, sensordata, task_state, last_action) -> RobotState:
        b = self.box_qpos
        return RobotState(joint_pos=qpos[:, self.arm_qpos], joint_vel=qvel[:, self.arm_qvel],
                          command=task_state["command"], last_action=last_action,
                          extras={"ee_pos": sensordata[:, 0:3], "object_pos": qpos[:, b:b + 3],
                                  "object_quat": qpos[:, b + 3:b + 7],
                                  "joint_target": task_state["joint_target"].copy()})

    def observation(self, rs: RobotState) -> np.ndarray:
        ee, cube, goal = rs.extras["ee_pos"], rs.extras["object_pos"], rs.command
        return np.concatenate([rs.joint_pos, rs.joint_vel, rs.extras["joint_target"] - rs.joint_pos,
                               ee, cube, goal, cube - ee, goal - cube, rs.last_action], axis=1)

    def action_to_ctrl(self, action, rs, task_state) -> np.ndarray:
        target = np.clip(task_state["joint_target"] + self.cfg.target_delta * action,
                         self.joint_low, self.joint_high)
        task_state["joint_target"][...] = target
        ctrl = np.zeros((action.shape[0], self.model.nu))
        ctrl[:, :7] = target
        return ctrl

    def goal_distance(self, rs: RobotState) -> np.ndarray:
        return np.linalg.norm(rs.extras["object_pos"][:, :2] - rs.command[:, :2], axis=1)

    def reward(self, prev, rs, action, ctrl):
        c = self.cfg
        d_goal = self.goal_distance(rs)
        d_reach = np.linalg.norm(rs.extras["ee_pos"] - rs.extras["object_pos"], axis=1)
        at_goal = d_goal < c.success_distance
        cube = rs.extras["object_pos"]
        terminated = ((cube[:, 2] < -0.05) | np.any(cube[:, :2] < np.array(c.workspace_low) - 0.2, axis=1)
                      | np.any(cube[:, :2] > np.array(c.workspace_high) + 0.2, axis=1))
        if c.sparse_reward:
            r = at_goal.astype(np.float64)
        else:
            r = (-c.reach_weight * d_reach - c.push_weight * d_goal + c.success_bonus * at_goal
                 - c.action_weight * np.sum(action ** 2, axis=1))
        return r, terminated, {"goal_distance": d_goal}

    def success(self, final, ep_return, ep_length, metric_sums, terminated) -> np.ndarray:
        return ~terminated & (self.goal_distance(final) < self.cfg.success_distance)
