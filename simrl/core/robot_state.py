"""The robot-state record that observations are computed from.

The simulator fills it from MjData; a robot back-end fills it from hardware; training and
deployment then share one observation function. Arrays have a leading batch dimension
(one row per world; one row on a robot). Fields a robot cannot measure directly (``base_pos``,
``base_lin_vel``) are privileged: rewards and terminations may use them, observations of
deployable policies do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from simrl.core.arrays import device, namespace


@dataclass
class RobotState:
    joint_pos: np.ndarray                     # (n, nj) rad or m
    joint_vel: np.ndarray                     # (n, nj)
    command: np.ndarray                       # (n, nc) what the robot is asked to do
    last_action: np.ndarray                   # (n, na) policy units
    base_quat: np.ndarray | None = None       # (n, 4) wxyz, world from body (IMU orientation)
    base_ang_vel: np.ndarray | None = None    # (n, 3) body frame (gyro)
    base_lin_vel: np.ndarray | None = None    # (n, 3) body frame, privileged
    base_pos: np.ndarray | None = None        # (n, 3) world frame, privileged
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # task-specific (object poses ...)

    @property
    def n(self) -> int:
        return self.joint_pos.shape[0]

    def select(self, idx: np.ndarray) -> "RobotState":
        """The rows ``idx`` of every field."""
        kw = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[idx])
              for f in fields(self) if f.name != "extras"}
        return RobotState(**kw, extras={k: v[idx] for k, v in self.extras.items()})

    def to_dict(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping (what the real-log recorder writes)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name != "extras" and getattr(self, f.name) is not None}
        out.update(self.extras)
        return out


def quat_rotate_inverse(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """Rotates world-frame vectors into the body frame of unit quaternions (wxyz), batched
    (numpy arrays or torch tensors)."""
    xp = namespace(quat, vec)
    w = quat[:, :1]
    u = quat[:, 1:]
    uv = xp.linalg.cross(u, vec)
    return vec - 2.0 * w * uv + 2.0 * xp.linalg.cross(u, uv)


def projected_gravity(quat: np.ndarray) -> np.ndarray:
    """Unit gravity direction in the body frame: (0, 0, -1) when upright."""
    xp = namespace(quat)
    down = xp.zeros((quat.shape[0], 3), dtype=quat.dtype, device=device(quat))
    down[:, 2] = -1.0
    return quat_rotate_inverse(quat, down)


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    """Quaternions (wxyz) of rotations about the world z axis."""
    q = np.zeros((yaw.shape[0], 4))
    q[:, 0] = np.cos(0.5 * yaw)
    q[:, 3] = np.sin(0.5 * yaw)
    return q
