"""Unitree Go1 tracking a commanded forward/lateral velocity and yaw rate.

Model: MuJoCo Menagerie's Go1 in MuJoCo Playground's feet-only flat scene (4 ms physics).
Policy at 50 Hz outputs joint-position targets around the default stance; position servos with
the task's gains (Playground's kp = 35, kd = 0.5, written into whichever Go1 model is loaded)
do the PD. Observation, reward and termination follow Playground's Go1
joystick task, trimmed to what an onboard computer can measure: gyro, gravity direction from
the IMU orientation, command, joint positions and velocities, last action.

Commands are redrawn during the episode, every ``command_resample_s`` seconds (uniform per
world, as mjlab's velocity task; Playground draws exponential intervals of mean 5 s), a share
``zero_command_prob`` of draws being zero (stand still). The feet terms (air time, slip) and the
soft joint-limit penalty are Playground's ``feet_air_time``, ``feet_slip`` and
``dof_pos_limits`` with its weights; the feet's floor contact and velocity come from sensors the
task adds to the model (:meth:`Go1Velocity.edit_spec`), so a user's MJCF needs only foot geoms
and sites named FR, FL, RR, RL and a geom named ``floor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import mujoco
import numpy as np

from simrl.core.arrays import device, like, namespace
from simrl.core.config import require
from simrl.core.robot_state import RobotState, projected_gravity, quat_rotate_inverse, yaw_quat
from envs.assets import position_servos
from envs.tasks.base import ResetState, Task, TaskConfig, register_task

LEGS = ("FR", "FL", "RR", "RL")
JOINTS = tuple(f"{leg}_{j}_joint" for leg in LEGS for j in ("hip", "thigh", "calf"))
FOOT_CONTACT = tuple(f"simrl_{leg}_floor_contact" for leg in LEGS)   # sensors the task adds
FOOT_LINVEL = tuple(f"simrl_{leg}_linvel" for leg in LEGS)


@dataclass
class Go1RewardWeights:
    tracking_lin_vel: float = 1.0                   # weight of linear velocity tracking
    tracking_ang_vel: float = 0.5                   # weight of yaw rate tracking
    tracking_sigma: float = 0.25                    # tracking reward width exp(-err^2/sigma)
    lin_vel_z: float = -0.5                         # penalty on vertical base velocity
    ang_vel_xy: float = -0.05                       # penalty on roll and pitch rates
    orientation: float = -1.0                       # penalty on base tilt
    torques: float = -1e-5                          # penalty on squared torques (legged_gym's)
    action_rate: float = -0.01                      # penalty on action changes
    pose: float = -0.1                              # penalty on deviation from the default pose
    termination: float = -1.0                       # penalty at a fall
    feet_air_time: float = 0.5                      # reward (air time - air_time_target) at each touchdown, moving commands only
    air_time_target: float = 0.1                    # s: swings shorter than this are penalized
    feet_slip: float = -0.1                         # penalty on squared horizontal speed of feet in contact, moving commands only
    joint_limits: float = -1.0                      # penalty on joint positions past the soft limits (rad)
    soft_limit_factor: float = 0.95                 # soft limits: this share of each joint's range, about its middle


@dataclass
class Go1VelocityConfig(TaskConfig):
    model: str = "go1-flat"                         # built-in model name or a user MJCF path
    control_dt: float = 0.02                        # policy period, seconds
    max_episode_steps: int = 1000                   # episode length limit, control steps
    action_scale: float = 0.5                      # rad of joint target per unit action (Playground's)
    kp: float | None = 35.0                        # N m/rad: the leg servos' stiffness (Playground's Kp), written into the model; None: the model's own
    kd: float | None = 0.5                         # N m s/rad: the leg servos' damping (Playground's Kd), in the actuators; None: the model's own
    command_vx: tuple[float, float] = (-1.0, 1.0)  # m/s, body frame: (low, high) of the forward command
    command_vy: tuple[float, float] = (-0.5, 0.5)  # m/s: (low, high) of the sideways command
    command_yaw_rate: tuple[float, float] = (-1.0, 1.0)  # rad/s: (low, high) of the turn command
    zero_command_prob: float = 0.1                 # chance that a command draw is zero (stand still)
    command_resample_s: tuple[float, float] = (3.0, 8.0)  # s: (low, high) of the uniform time between command draws; (0, 0): one per episode
    reset_joint_noise: float = 0.1                 # rad, uniform
    fall_gravity_z: float = -0.5                   # terminate when body z tilts past ~60 deg
    fall_height: float = 0.12                      # ... or the trunk drops below this (m)
    success_tracking_error: float = 0.25           # mean |v_xy - command| (m/s) for success
    rewards: Go1RewardWeights = field(default_factory=Go1RewardWeights)
    randomization: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "mass:trunk": (0.8, 1.3), "com_x:trunk": (-0.03, 0.03), "friction:floor": (0.5, 1.6),
        "kp": (0.8, 1.2), "kd": (0.7, 1.3), "obs_noise": (0.0, 1.0),
        "latency": (0.0, 1.0), "obs_latency": (0.0, 1.0)})
    range_fields: ClassVar[tuple[str, ...]] = ("command_vx", "command_vy", "command_yaw_rate",
                                               "command_resample_s")
    before_added: ClassVar[dict[str, Any]] = {"kp": None, "kd": None}  # older checkpoints: the model's gains

    def validate(self) -> None:
        super().validate()
        require(self.command_resample_s[0] >= 0, "command_resample_s",
                f"must be >= 0 seconds, got {self.command_resample_s}")
        require(0.0 <= self.zero_command_prob <= 1.0, "zero_command_prob",
                f"must be in [0, 1], got {self.zero_command_prob}")
        require(self.kp is None or self.kp > 0, "kp", f"must be > 0 (N m/rad) or None, got {self.kp}")
        require(self.kd is None or self.kd >= 0, "kd", f"must be >= 0 (N m s/rad) or None, got {self.kd}")


@register_task
class Go1Velocity(Task):
    name = "go1-velocity"
    config_class = Go1VelocityConfig
    root_body = "trunk"
    gym_id = "simrl/Go1Velocity-v0"
    array_generic = True
    heldout_randomization = {"mass:trunk": (0.7, 1.5), "friction:floor": (0.3, 2.0), "kp": (0.7, 1.3),
                             "kd": (0.5, 1.5), "gain": (0.8, 1.2), "latency": (0, 2),
                             "obs_latency": (0, 2), "obs_noise": (0.0, 1.5)}
    command_axes: ClassVar[tuple[str, ...]] = ("vx", "vy", "yaw_rate")  # metrics AXIS_error: tracking per axis
    # rsl_rl's legged-robot settings, with fewer worlds and a smaller MLP: a CPU simulator and
    # one torch thread (512-256-128 makes the update 3x slower than the collection on 2 cores).
    # Initial action std 0.61, not 1: the task's per-step penalties (action rate, torques) under
    # std-1 noise outweigh its tracking reward, and the policy first learns to fall early.
    # A tanh on the actor mean (Playground's policy is tanh-bounded too): actions are clipped to
    # [-1, 1], and an unbounded mean drifted past the clip (2M steps: 60-80% of mean actions
    # saturated, 20M: 95%, hips pinned at one end), a bang-bang policy that walked forward but
    # never learned to walk backwards or sideways and could not learn at all under latency.
    train_defaults = {"train.num_envs": 256, "ppo.num_steps": 24, "ppo.learning_rate": 1e-3,
                      "ppo.entropy_coef": 0.01, "network.activation": "elu", "network.squash": True,
                      "network.init_log_std": -0.5, "network.actor_hidden": (128, 128, 128),
                      "network.critic_hidden": (128, 128, 128)}

    @classmethod
    def command_overrides(cls, command: tuple[float, ...]) -> dict:
        vx, vy, wz = command
        return {"command_vx": (vx, vx), "command_vy": (vy, vy), "command_yaw_rate": (wz, wz),
                "zero_command_prob": 0.0}

    def __init__(self, config: Go1VelocityConfig):
        super().__init__(config)
        m = self.model
        self.default_pose = np.array([m.qpos0[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]]
                                      for j in JOINTS])
        key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, "home")
        if key >= 0:
            self.default_pose = m.key_qpos[key, 7:19].copy()
            self.stand_height = float(m.key_qpos[key, 2])
        else:
            self.stand_height = float(m.qpos0[2])
        self.kp = m.actuator_gainprm[:, 0].copy()
        self.force_limit = np.abs(m.actuator_forcerange[:, 1]).copy()
        jnt = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in JOINTS]
        low, high = m.jnt_range[jnt, 0], m.jnt_range[jnt, 1]
        mid, half = 0.5 * (low + high), 0.5 * (high - low) * config.rewards.soft_limit_factor
        self.soft_low, self.soft_high = mid - half, mid + half
        self.contact_adr = np.array([m.sensor_adr[m.sensor(name).id] for name in FOOT_CONTACT])
        self.foot_vel_adr = np.array([m.sensor_adr[m.sensor(name).id] + np.arange(2) for name in FOOT_LINVEL])

    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        """Adds the feet's floor-contact and world-velocity sensors (the feet rewards' inputs)."""
        if not set(JOINTS) <= {j.name for j in spec.joints}:
            return  # not a Go1 layout: check_model says what is missing
        geoms = {g.name for g in spec.geoms}
        sites = {s.name for s in spec.sites}
        missing = [f"geom {n}" for n in (*LEGS, "floor") if n not in geoms] + [
            f"site {n}" for n in LEGS if n not in sites]
        if missing:
            raise ValueError(f"{self.name}: the model needs foot geoms and sites named "
                             f"{', '.join(LEGS)} and a geom named floor; missing {', '.join(missing)}")
        for leg, contact, linvel in zip(LEGS, FOOT_CONTACT, FOOT_LINVEL):
            # data "found" (1), reduce "mindist" (1), one contact: 1 while the foot touches the floor
            spec.add_sensor(name=contact, type=mujoco.mjtSensor.mjSENS_CONTACT,
                            objtype=mujoco.mjtObj.mjOBJ_GEOM, objname=leg,
                            reftype=mujoco.mjtObj.mjOBJ_GEOM, refname="floor", intprm=[1, 1, 1])
            spec.add_sensor(name=linvel, type=mujoco.mjtSensor.mjSENS_FRAMELINVEL,
                            objtype=mujoco.mjtObj.mjOBJ_SITE, objname=leg)

    def check_model(self, model: mujoco.MjModel) -> None:
        missing = [j for j in JOINTS if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) < 0]
        if missing or model.nq != 19 or model.nu != 12 or model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE:
            raise ValueError(f"{self.name}: the model must be a Go1 layout (free base, 12 joints "
                             f"{', '.join(JOINTS)} and 12 actuators in that order); missing {missing}, "
                             f"nq={model.nq}, nu={model.nu}")

    def build_model(self) -> mujoco.MjModel:
        """The model with the task's servo gains (:meth:`set_servo_gains`)."""
        model = super().build_model()
        set_servo_gains(model, self.cfg.kp, self.cfg.kd, self.name)
        return model

    @property
    def observation_names(self) -> list[str]:
        return ([f"base_ang_vel_{a}" for a in "xyz"] + [f"gravity_{a}" for a in "xyz"]
                + ["command_vx", "command_vy", "command_yaw_rate"]
                + [f"{j}_pos" for j in JOINTS] + [f"{j}_vel" for j in JOINTS]
                + [f"last_action_{j}" for j in JOINTS])

    @property
    def action_names(self) -> list[str]:
        return [f"{j}_target" for j in JOINTS]

    def obs_noise_scale(self) -> np.ndarray:
        return np.concatenate([np.full(3, 0.2), np.full(3, 0.05), np.zeros(3),
                               np.full(12, 0.03), np.full(12, 1.5), np.zeros(12)])

    def sample_commands(self, rng: np.random.Generator, n: int) -> np.ndarray:
        c = self.cfg
        cmd = np.stack([rng.uniform(*c.command_vx, n), rng.uniform(*c.command_vy, n),
                        rng.uniform(*c.command_yaw_rate, n)], axis=1)
        cmd[rng.random(n) < c.zero_command_prob] = 0.0
        return cmd

    def command_resample_steps(self, rng: np.random.Generator, n: int) -> np.ndarray | None:
        low, high = self.cfg.command_resample_s
        if high <= 0:
            return None
        return np.maximum(1, np.rint(rng.uniform(low, high, n) / self.cfg.control_dt))

    def reset(self, rng: np.random.Generator, n: int) -> ResetState:
        m, c = self.model, self.cfg
        qpos = np.tile(m.qpos0, (n, 1))
        qpos[:, 2] = self.stand_height
        qpos[:, 3:7] = yaw_quat(rng.uniform(-np.pi, np.pi, n))
        qpos[:, 7:19] = self.default_pose + rng.uniform(-c.reset_joint_noise, c.reset_joint_noise, (n, 12))
        qvel = np.zeros((n, m.nv))
        ctrl = np.tile(self.default_pose, (n, 1))
        return ResetState(qpos, qvel, ctrl, {"command": self.sample_commands(rng, n),
                                             "feet_air_time": np.zeros((n, len(LEGS)))})

    def robot_state(self, qpos, qvel, sensordata, task_state, last_action) -> RobotState:
        quat = qpos[:, 3:7]
        n, xp = qpos.shape[0], namespace(qpos)
        air = task_state.get("feet_air_time")
        return RobotState(joint_pos=qpos[:, 7:19], joint_vel=qvel[:, 6:18],
                          command=task_state["command"], last_action=last_action,
                          base_quat=quat, base_ang_vel=qvel[:, 3:6],
                          base_lin_vel=quat_rotate_inverse(quat, qvel[:, 0:3]), base_pos=qpos[:, 0:3],
                          extras={"feet_contact": sensordata[:, self.contact_adr],
                                  "feet_vel": xp.reshape(sensordata[:, self.foot_vel_adr], (n, -1)),
                                  "feet_air_time": (xp.zeros((n, len(LEGS)), dtype=qpos.dtype, device=device(qpos))
                                                    if air is None else xp.asarray(air, copy=True))})

    def observation(self, rs: RobotState) -> np.ndarray:
        xp = namespace(rs.joint_pos)
        return xp.concat([rs.base_ang_vel, projected_gravity(rs.base_quat), rs.command,
                          rs.joint_pos - like(self.default_pose, rs.joint_pos), rs.joint_vel,
                          rs.last_action], axis=1)

    def action_to_ctrl(self, action, rs, task_state) -> np.ndarray:
        return like(self.default_pose, action) + self.cfg.action_scale * action

    def update_task_state(self, rs: RobotState, task_state: dict[str, np.ndarray]) -> None:
        """Each foot's time in the air: grows by a control period, zero while it touches down."""
        in_air = rs.extras["feet_contact"] <= 0
        task_state["feet_air_time"][...] = (task_state["feet_air_time"] + self.cfg.control_dt) * in_air

    def reward(self, prev, rs, action, ctrl):
        w, c = self.cfg.rewards, self.cfg
        xp, q = namespace(rs.joint_pos), rs.joint_pos
        gravity = projected_gravity(rs.base_quat)
        xyz = xp.concat([rs.base_lin_vel[:, :2], rs.base_ang_vel[:, 2:]], axis=1)
        vel_err = xp.abs(rs.command - xyz)
        lin_err = xp.sum(vel_err[:, :2] ** 2, axis=1)
        yaw_err = vel_err[:, 2] ** 2
        limit = like(self.force_limit, q)
        torque = xp.clip(like(self.kp, q) * (ctrl - rs.joint_pos), -limit, limit)
        terminated = (gravity[:, 2] > c.fall_gravity_z) | (rs.base_pos[:, 2] < c.fall_height)
        moving = xp.astype(xp.sum(rs.command ** 2, axis=1) > 0.01 ** 2, q.dtype)
        contact = rs.extras["feet_contact"] > 0
        # touchdown: in contact now after time in the air (the air time up to the last step)
        touchdown = xp.astype(contact & (rs.extras["feet_air_time"] > 0), q.dtype)
        air_time = xp.sum((rs.extras["feet_air_time"] + c.control_dt - w.air_time_target) * touchdown, axis=1)
        slip = xp.sum(xp.reshape(rs.extras["feet_vel"], (-1, len(LEGS), 2)) ** 2, axis=2)
        past_limits = (xp.clip(like(self.soft_low, q) - rs.joint_pos, 0.0, None)
                       + xp.clip(rs.joint_pos - like(self.soft_high, q), 0.0, None))
        r = (w.tracking_lin_vel * xp.exp(-lin_err / w.tracking_sigma)
             + w.tracking_ang_vel * xp.exp(-yaw_err / w.tracking_sigma)
             + w.lin_vel_z * rs.base_lin_vel[:, 2] ** 2
             + w.ang_vel_xy * xp.sum(rs.base_ang_vel[:, :2] ** 2, axis=1)
             + w.orientation * xp.sum(gravity[:, :2] ** 2, axis=1)
             + w.torques * xp.sum(torque ** 2, axis=1)
             + w.action_rate * xp.sum((action - prev.last_action) ** 2, axis=1)
             + w.pose * xp.sum((rs.joint_pos - like(self.default_pose, q)) ** 2, axis=1)
             + w.termination * xp.astype(terminated, q.dtype)
             + w.feet_air_time * air_time * moving
             + w.feet_slip * xp.sum(slip * xp.astype(contact, q.dtype), axis=1) * moving
             + w.joint_limits * xp.sum(past_limits, axis=1))
        metrics = {"lin_vel_error": xp.sqrt(lin_err), "yaw_rate_error": vel_err[:, 2],
                   "vx_error": vel_err[:, 0], "vy_error": vel_err[:, 1]}
        return r * c.control_dt, terminated, metrics

    def reward_ceiling(self) -> float:
        """Per-step reward of perfect tracking with every penalty at zero (the H-infinity oracle)."""
        w = self.cfg.rewards
        return (w.tracking_lin_vel + w.tracking_ang_vel) * self.cfg.control_dt

    def success(self, final, ep_return, ep_length, metric_sums, terminated) -> np.ndarray:
        xp = namespace(ep_return)
        mean_error = metric_sums["lin_vel_error"] / xp.clip(xp.astype(ep_length, ep_return.dtype), 1, None)
        return ~terminated & (mean_error < self.cfg.success_tracking_error)


def set_servo_gains(model: mujoco.MjModel, kp: float | None, kd: float | None, where: str) -> None:
    """Writes the leg servos' PD gains into ``model``, as MuJoCo Playground does for its Go1
    tasks: the gains are the policy's (a deploy sends them to the robot's motor drivers), not the
    MJCF's. ``kp`` becomes every actuator's stiffness. ``kd`` becomes its velocity gain, and the
    leg joints' own damping is zeroed: Menagerie's Go1 (kp 100, damping 1-2) and Playground's
    (kp 35, damping 0.5) both model the servo's D term as joint damping. ``None`` keeps the
    model's own."""
    servo = position_servos(model)
    if (kp is not None or kd is not None) and not servo.all():
        names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or str(i) for i in np.flatnonzero(~servo)]
        raise ValueError(f"{where}: actuators {', '.join(names)} are not position servos (MJCF <position>); "
                         f"the task's kp/kd need them, or set --task.kp None --task.kd None to keep the model's")
    if kp is not None:
        model.actuator_gainprm[:, 0] = kp
        model.actuator_biasprm[:, 1] = -kp
    if kd is not None:
        model.actuator_biasprm[:, 2] = -kd
        dofs = model.jnt_dofadr[[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in JOINTS]]
        model.dof_damping[dofs] = 0.0
