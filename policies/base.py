"""Base controllers: hand-written policies that need no training.

They act on the same robot-state record as learned policies and return actions in the task's
policy units ([-1, 1]), so they run in the batched env, on the robot, and under residual RL.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from simrl.core.robot_state import RobotState


class StandController:
    """Holds the task's default joint pose (Go1: the stance keyframe) through its PD actuators."""

    def __init__(self, action_size: int):
        self.action_size = action_size

    def __call__(self, rs: RobotState) -> np.ndarray:
        return np.zeros((rs.n, self.action_size))


class RandomController:
    """Uniform random actions: the untrained baseline."""

    def __init__(self, action_size: int, seed: int = 0):
        self.action_size = action_size
        self.rng = np.random.default_rng(seed)

    def __call__(self, rs: RobotState) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (rs.n, self.action_size))


class Go1TrotGait:
    """An open-loop trot for Go1: diagonal leg pairs swing in antiphase around the stance.

    A central pattern generator, not a balance controller: the knees lift each pair in turn and
    the thighs swing in proportion to the commanded forward velocity. With the defaults it walks
    at about half the commanded 0.5 m/s without falling, on nominal physics: good enough to
    move, not to track, which is what residual RL on top of it is for.
    """

    # Phase offset of each leg (FR, FL, RR, RL): diagonal pairs FR+RL and FL+RR.
    LEG_PHASE = np.array([0.0, np.pi, np.pi, 0.0])

    def __init__(self, action_scale: float, control_dt: float = 0.02, frequency_hz: float = 2.0,
                 thigh_amp: float = 0.0, calf_amp: float = 0.45, stride_gain: float = 1.0,
                 max_offset: float = 0.3):
        self.dt, self.freq = control_dt, frequency_hz
        self.max_offset = max_offset  # rad: joint offsets are clipped here (the gait was tuned so)
        self.thigh_amp, self.calf_amp, self.stride_gain = thigh_amp, calf_amp, stride_gain
        self.action_scale = action_scale
        self.phase = 0.0

    def __call__(self, rs: RobotState) -> np.ndarray:
        self.phase = (self.phase + 2 * np.pi * self.freq * self.dt) % (2 * np.pi)
        leg = self.phase + self.LEG_PHASE                                # (4,)
        swing = np.sin(leg)
        lift = np.maximum(swing, 0.0)                                    # knee flexes in swing
        vx = rs.command[:, :1] if rs.command.shape[1] else np.zeros((rs.n, 1))
        offsets = np.zeros((rs.n, 4, 3))
        offsets[:, :, 1] = self.stride_gain * vx * np.cos(leg) + self.thigh_amp * lift
        offsets[:, :, 2] = -self.calf_amp * lift
        offsets = np.clip(offsets, -self.max_offset, self.max_offset)
        return np.clip(offsets.reshape(rs.n, 12) / self.action_scale, -1.0, 1.0)


class PandaIK:
    """Differential inverse kinematics for the Panda: damped least squares on the gripper
    site's 6-D Jacobian, keeping the hand pointing down, turn the Cartesian target of
    :meth:`cartesian_target` (per world) into joint-target deltas in policy units."""

    def __init__(self, model, target_delta: float = 0.05, gain: float = 0.5, damping: float = 0.05,
                 max_step: float = 0.03):
        import mujoco
        self._mj = mujoco
        self.model = model
        self.data = mujoco.MjData(model)
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "gripper")
        self.arm_qpos = np.array([model.joint(f"joint{i}").qposadr[0] for i in range(1, 8)])
        self.arm_dof = np.array([model.joint(f"joint{i}").dofadr[0] for i in range(1, 8)])
        self.target_delta, self.gain, self.damping, self.max_step = target_delta, gain, damping, max_step
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def cartesian_target(self, rs: RobotState, i: int, ee: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, rs: RobotState) -> np.ndarray:
        mj, m, d = self._mj, self.model, self.data
        actions = np.zeros((rs.n, 7))
        for i in range(rs.n):  # forward kinematics needs one MjData call per world
            d.qpos[self.arm_qpos] = rs.joint_pos[i]
            mj.mj_kinematics(m, d)
            mj.mj_comPos(m, d)
            ee = d.site_xpos[self.site].copy()
            target = self.cartesian_target(rs, i, ee)
            mj.mj_jacSite(m, d, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.arm_dof], self._jacr[:, self.arm_dof]])
            pos_err = np.clip(self.gain * (target - ee), -self.max_step, self.max_step)
            z_axis = d.site_xmat[self.site].reshape(3, 3)[:, 2]
            rot_err = 0.5 * np.cross(z_axis, np.array([0.0, 0.0, -1.0]))  # keep the hand pointing down
            err = np.concatenate([pos_err, rot_err])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self.damping ** 2 * np.eye(6), err)
            actions[i] = dq / self.target_delta  # integrate into the joint target
        return np.clip(actions, -1.0, 1.0)


class PandaPushController(PandaIK):
    """A scripted pusher for ``panda-push``: go behind the cube, lower, push towards the goal.

    It is deliberately simple: it pushes through the cube's centre without correcting the cube's
    rotation or overshoot, so it often ends a few centimetres off the goal.
    """

    def __init__(self, model, target_delta: float = 0.05, behind: float = 0.07,
                 hover_height: float = 0.12, push_height: float = 0.035, gain: float = 0.5,
                 damping: float = 0.05):
        super().__init__(model, target_delta, gain, damping)
        self.behind, self.hover, self.push_z = behind, hover_height, push_height

    def cartesian_target(self, rs: RobotState, i: int, ee: np.ndarray) -> np.ndarray:
        return self.pusher_target(ee[None], rs.extras["object_pos"][i:i + 1], rs.command[i:i + 1])[0]

    def pusher_target(self, ee: np.ndarray, cube: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Where the gripper should go next, for each world (vectorized).

        Low and lined up behind the cube: push through it towards the goal. Near the spot
        behind the cube: descend. Elsewhere: rise to hover height first, then fly there.
        """
        d = goal[:, :2] - cube[:, :2]
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
        rel = ee[:, :2] - cube[:, :2]
        along = np.sum(rel * d, axis=1)
        lateral = np.abs(rel[:, 0] * d[:, 1] - rel[:, 1] * d[:, 0])
        behind_xy = cube[:, :2] - self.behind * d
        low = ee[:, 2] < self.push_z + 0.02
        pushing = low & (along < -0.02) & (lateral < 0.025)
        near_behind = np.linalg.norm(ee[:, :2] - behind_xy, axis=1) < 0.015
        high = ee[:, 2] > self.hover - 0.03
        target = np.empty_like(ee)
        target[:, :2] = np.where(pushing[:, None], cube[:, :2] + 0.1 * d,
                                 np.where((high | near_behind)[:, None], behind_xy, ee[:, :2]))
        target[:, 2] = np.where(pushing | near_behind, self.push_z, self.hover)
        return target


class PandaReachController(PandaIK):
    """A scripted reacher for ``panda-reach``: the end effector straight to the goal (the
    task's command) by differential IK, the hand pointing down."""

    def cartesian_target(self, rs: RobotState, i: int, ee: np.ndarray) -> np.ndarray:
        return rs.command[i]


SCRIPTED = {"go1-velocity": ("stand", "trot"), "panda-push": ("pusher",), "panda-reach": ("reacher",)}


def make_scripted(name: str, task) -> Callable[[RobotState], np.ndarray]:
    """The scripted controller ``name`` (stand, trot, pusher, reacher) for ``task``; ValueError when it
    does not drive that task."""
    allowed = SCRIPTED.get(task.name, ())
    if name not in allowed:
        raise ValueError(f"scripted base {name!r} does not drive task {task.name}; "
                         f"available: {', '.join(allowed) or 'none'}")
    if name == "stand":
        return StandController(task.action_size)
    if name == "trot":
        return Go1TrotGait(task.cfg.action_scale, control_dt=task.cfg.control_dt)
    if name == "reacher":
        return PandaReachController(task.model, target_delta=task.cfg.target_delta)
    return PandaPushController(task.model, target_delta=task.cfg.target_delta)
