"""What a robot's actuators allow, read from its MJCF: servo or effort, command limits, force
limits and PD gains. The safety layer clamps to it; a simulated robot clamps incoming commands
to it on its own side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from envs.assets import position_servos


@dataclass
class Actuators:
    """What the safety layer knows about the actuators (arrays of length ``nu``)."""

    servo: np.ndarray        # bool: position servo (ctrl is a target) vs direct effort
    low: np.ndarray          # command limits: targets for servos, efforts for direct actuators
    high: np.ndarray
    force_limit: np.ndarray  # |actuator force| bound, inf when unlimited
    kp: np.ndarray           # servo stiffness and damping commanded to the robot
    kd: np.ndarray

    @classmethod
    def from_model(cls, model: mujoco.MjModel, pd_gains: dict | None = None,
                   cfg: Any = None) -> "Actuators":
        """Limits from the MJCF: control ranges, joint ranges (via the transmission gear) and
        force ranges; servo gains from ``pd_gains`` (the spec's, for the first actuators) or
        the model's ``<position kp kv>``. ``cfg``: anything with ``torque_fraction`` and
        ``position_margin`` (the runtime's :class:`deploy.safety.SafetyConfig`); default 1 and 0,
        the model's own limits."""
        torque_fraction = getattr(cfg, "torque_fraction", 1.0)
        position_margin = getattr(cfg, "position_margin", 0.0)
        m, nu = model, model.nu
        kp = m.actuator_gainprm[:, 0].copy()
        kd = -m.actuator_biasprm[:, 2].copy()
        servo = position_servos(m)
        if pd_gains is not None:
            n = len(pd_gains["kp"])
            kp[:n], kd[:n] = pd_gains["kp"], pd_gains["kd"]
        low = np.where(m.actuator_ctrllimited, m.actuator_ctrlrange[:, 0], -np.inf)
        high = np.where(m.actuator_ctrllimited, m.actuator_ctrlrange[:, 1], np.inf)
        force = np.where(m.actuator_forcelimited,
                         np.abs(m.actuator_forcerange).max(axis=1), np.inf) * torque_fraction
        for i in range(nu):
            if servo[i] and m.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT:
                j = m.actuator_trnid[i, 0]
                if m.jnt_limited[j]:
                    lo, hi = sorted(m.jnt_range[j] * m.actuator_gear[i, 0])
                    if hi - lo > 2 * position_margin:
                        lo, hi = lo + position_margin, hi - position_margin
                    low[i], high[i] = max(low[i], lo), min(high[i], hi)
            elif not servo[i] and np.isfinite(force[i]) and kp[i] != 0:
                bound = force[i] / abs(kp[i])  # direct actuator: force = gain * ctrl
                low[i], high[i] = max(low[i], -bound), min(high[i], bound)
        return cls(servo, low, high, force, np.where(servo, kp, 0.0), np.where(servo, kd, 0.0))
