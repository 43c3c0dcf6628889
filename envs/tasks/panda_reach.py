"""Franka Panda moves its end effector to a random goal (fingers closed).

Model: MuJoCo Menagerie's Panda (the MJX variant: position servos, no cube). The policy moves
the seven arm joint targets by small deltas (25 Hz), as on a Franka arm whose libfranka
back-end tracks those targets at 1 kHz. The observation holds only what the arm measures or the
runtime knows: joint positions and velocities, target minus position, the end-effector position
(forward kinematics of the measured joints: the ``gripper`` site, which the franka back-end
computes the same way), the goal and the last action. Joint targets lead their joints by at
most the servo's force limit over its stiffness (what deploy's safety layer allows a command on
the robot, so the target the policy observes is the one the robot gets), and stay inside ``target_low``
/ ``target_high``, by default the Panda's and the FR3's ranges intersected and shrunk by 0.05
rad, so a checkpoint never commands an FR3 joint out of its range. Success: the end effector
ends within ``success_distance`` of the goal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import mujoco
import numpy as np

from envs.tasks.base import ResetState, Task, TaskConfig, register_task
from envs.tasks.panda_push import ARM_JOINTS, add_ee_sensor
from simrl.core.config import require
from simrl.core.robot_state import RobotState

HOME = (0.0, 0.3, 0.0, -1.57079, 0.0, 2.0, -0.7853)
# Panda (Menagerie) and FR3 (Franka's datasheet) joint ranges intersected, less 0.05 rad.
TARGET_LOW = (-2.6937, -1.7128, -2.8473, -2.9921, -2.7565, 0.5945, -2.8473)
TARGET_HIGH = (2.6937, 1.7128, 2.8473, -0.2018, 2.7565, 3.7025, 2.8473)


@dataclass
class PandaReachConfig(TaskConfig):
    model: str = "panda"                            # built-in model name or a user MJCF path
    control_dt: float = 0.04                        # policy period, seconds
    max_episode_steps: int = 100                    # episode length limit, control steps (4 s)
    target_delta: float = 0.05                      # rad of joint-target change per unit action
    target_low: tuple[float, ...] = TARGET_LOW      # joint targets are clamped into [low, high] (rad)
    target_high: tuple[float, ...] = TARGET_HIGH
    limit_lead: bool = True                         # keep targets within force limit / kp of the joints (as deploy's safety layer does)
    start_noise: float = 0.2                        # rad, uniform, on each joint around HOME at reset
    goal_low: tuple[float, float, float] = (0.35, -0.25, 0.2)   # goal box lower corner (m, base frame)
    goal_high: tuple[float, float, float] = (0.65, 0.25, 0.5)   # goal box upper corner (m)
    success_distance: float = 0.03                  # m between end effector and goal at the end
    distance_weight: float = 1.0                    # reward: -weight * distance (m)
    precision_weight: float = 0.5                   # reward: weight * (1 - tanh(distance / 2 cm))
    action_weight: float = 0.01                     # action penalty weight
    velocity_weight: float = 0.002                  # joint velocity penalty weight ((rad/s)^2)
    randomization: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "damping": (0.5, 2.0), "armature": (0.5, 2.0), "kp": (0.5, 1.3), "latency": (0, 2),
        "obs_noise": (0.0, 1.0)})

    def validate(self) -> None:
        super().validate()
        for name in ("target_low", "target_high"):
            require(len(getattr(self, name)) == 7, name, f"needs 7 joint values, got {len(getattr(self, name))}")
        require(all(lo <= hi for lo, hi in zip(self.target_low, self.target_high)), "target_low",
                f"exceeds target_high on some joint: {self.target_low} vs {self.target_high}")
        require(all(lo <= hi for lo, hi in zip(self.goal_low, self.goal_high)), "goal_low",
                f"exceeds goal_high: {self.goal_low} vs {self.goal_high}")
        require(self.success_distance > 0, "success_distance", f"must be > 0, got {self.success_distance}")
        require(self.start_noise >= 0, "start_noise", f"must be >= 0, got {self.start_noise}")


@register_task
class PandaReach(Task):
    name = "panda-reach"
    config_class = PandaReachConfig
    root_body = None
    heldout_randomization = {"damping": (0.3, 3.0), "armature": (0.3, 3.0), "kp": (0.4, 1.4),
                             "latency": (0, 3), "obs_noise": (0.0, 1.5)}
    # 2 cores: 128 worlds x 32 steps per update, two 128-unit layers, moderate initial noise.
    train_defaults = {"train.num_envs": 128, "train.steps": 1_500_000, "ppo.num_steps": 32,
                      "ppo.learning_rate": 1e-3, "ppo.entropy_coef": 0.002, "network.init_log_std": -0.7,
                      "network.actor_hidden": (128, 128), "network.critic_hidden": (128, 128)}

    def __init__(self, config: PandaReachConfig):
        super().__init__(config)
        m = self.model
        ids = [m.joint(j).id for j in ARM_JOINTS]
        self.arm_qpos, self.arm_qvel = m.jnt_qposadr[ids].copy(), m.jnt_dofadr[ids].copy()
        limited = m.jnt_limited[ids].astype(bool)
        rng = np.where(limited[:, None], m.jnt_range[ids], (-np.inf, np.inf)).T
        self.target_low = np.maximum(np.asarray(config.target_low, dtype=np.float64), rng[0])
        self.target_high = np.minimum(np.asarray(config.target_high, dtype=np.float64), rng[1])
        self.home = np.clip(np.array(HOME), self.target_low, self.target_high)
        # how far a target may lead its joint: the servo's force limit over its stiffness, the
        # bound deploy's safety layer (torque_limit) puts on every command on the robot
        kp = m.actuator_gainprm[:7, 0]
        force = np.where(m.actuator_forcelimited[:7], np.abs(m.actuator_forcerange[:7]).max(axis=1), np.inf)
        self.max_lead = np.where(kp > 0, force / np.where(kp > 0, kp, 1.0), np.inf) if config.limit_lead else np.full(7, np.inf)

    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        add_ee_sensor(spec)

    def check_model(self, model: mujoco.MjModel) -> None:
        missing = [j for j in ARM_JOINTS if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) < 0]
        if missing or mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "gripper") < 0 or model.nu < 7:
            raise ValueError(f"{self.name}: model needs Panda joints joint1..joint7 with actuators and a "
                             f"site 'gripper'; missing joints {missing}")

    @property
    def observation_names(self) -> list[str]:
        return ([f"{j}_pos" for j in ARM_JOINTS] + [f"{j}_vel" for j in ARM_JOINTS]
                + [f"{j}_target_error" for j in ARM_JOINTS] + [f"ee_{a}" for a in "xyz"]
                + [f"goal_{a}" for a in "xyz"] + [f"goal_minus_ee_{a}" for a in "xyz"]
                + [f"last_action_{j}" for j in ARM_JOINTS])

    @property
    def action_names(self) -> list[str]:
        return [f"{j}_target_delta" for j in ARM_JOINTS]

    def obs_noise_scale(self) -> np.ndarray:
        return np.concatenate([np.full(7, 0.002), np.full(7, 0.02), np.zeros(7), np.full(3, 0.002),
                               np.zeros(3), np.full(3, 0.002), np.zeros(7)])

    def sample_goals(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` goals (m, base frame), uniform in the goal box."""
        return rng.uniform(self.cfg.goal_low, self.cfg.goal_high, (n, 3))

    def reset(self, rng: np.random.Generator, n: int) -> ResetState:
        m, c = self.model, self.cfg
        qpos = np.zeros((n, m.nq))
        start = np.clip(self.home + rng.uniform(-c.start_noise, c.start_noise, (n, 7)),
                        self.target_low, self.target_high)
        qpos[:, self.arm_qpos] = start  # fingers (the rest of qpos) closed
        ctrl = np.zeros((n, m.nu))
        ctrl[:, :7] = start
        return ResetState(qpos, np.zeros((n, m.nv)), ctrl,
                          {"command": self.sample_goals(rng, n), "joint_target": start.copy()})

    def robot_state(self, qpos, qvel, sensordata, task_state, last_action) -> RobotState:
        return RobotState(joint_pos=qpos[:, self.arm_qpos], joint_vel=qvel[:, self.arm_qvel],
                          command=task_state["command"], last_action=last_action,
                          extras={"ee_pos": sensordata[:, 0:3], "joint_target": task_state["joint_target"].copy()})

    def observation(self, rs: RobotState) -> np.ndarray:
        ee, goal = rs.extras["ee_pos"], rs.command
        return np.concatenate([rs.joint_pos, rs.joint_vel, rs.extras["joint_target"] - rs.joint_pos,
                               ee, goal, goal - ee, rs.last_action], axis=1)

    def action_to_ctrl(self, action, rs, task_state) -> np.ndarray:
        target = task_state["joint_target"] + self.cfg.target_delta * action
        target = np.clip(np.clip(target, rs.joint_pos - self.max_lead, rs.joint_pos + self.max_lead),
                         self.target_low, self.target_high)
        task_state["joint_target"][...] = target
        ctrl = np.zeros((action.shape[0], self.model.nu))
        ctrl[:, :7] = target
        return ctrl

    def goal_marker(self, rs: RobotState) -> np.ndarray:
        """Where videos draw the goal: (n, 3) world positions (the base sits at the origin)."""
        return rs.command

    def goal_distance(self, rs: RobotState) -> np.ndarray:
        return np.linalg.norm(rs.extras["ee_pos"] - rs.command, axis=1)

    def reward(self, prev, rs, action, ctrl):
        c = self.cfg
        d = self.goal_distance(rs)
        r = (-c.distance_weight * d + c.precision_weight * (1.0 - np.tanh(d / 0.02))
             - c.action_weight * np.sum(action ** 2, axis=1) - c.velocity_weight * np.sum(rs.joint_vel ** 2, axis=1))
        return r, np.zeros(len(d), dtype=bool), {"goal_distance": d}

    def success(self, final, ep_return, ep_length, metric_sums, terminated) -> np.ndarray:
        return self.goal_distance(final) < self.cfg.success_distance
