"""Base controllers: hand-written policies that need no training.

They act on the same robot-state record as learned policies and return actions in the task's
policy units ([-1, 1]), so they run in the batched env, on the robot, and under residual RL.
"""

from __future__ import annotations

import numpy as np

from envs.robot_state import RobotState


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
