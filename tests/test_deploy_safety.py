"""The safety layer: limits from the model, commands that never leave them, stop events."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import envs
from deploy.robots.base import DAMP, RUN
from deploy.actuators import Actuators
from deploy.safety import SafetyConfig, SafetyLayer
from simrl.core.robot_state import RobotState, yaw_quat

NU = 12


@pytest.fixture(scope="module")
def go1():
    return envs.make_task("go1-velocity")


@pytest.fixture(scope="module")
def go1_actuators(go1):
    return Actuators.from_model(go1.model)


def test_limits_come_from_the_model(go1, go1_actuators):
    a = go1_actuators
    joint_range = go1.model.jnt_range[1:]
    assert a.servo.all() and np.allclose(a.low, joint_range[:, 0]) and np.allclose(a.high, joint_range[:, 1])
    assert np.allclose(a.kp, 35.0) and np.allclose(a.force_limit, np.abs(go1.model.actuator_forcerange[:, 1]))
    shrunk = Actuators.from_model(go1.model, {"kp": [20.0] * NU, "kd": [0.5] * NU},
                                  SafetyConfig(position_margin=0.1, torque_fraction=0.5))
    assert np.allclose(shrunk.low, a.low + 0.1) and np.allclose(shrunk.force_limit, a.force_limit / 2)
    assert np.allclose(shrunk.kp, 20.0) and np.allclose(shrunk.kd, 0.5)
    hopper = Actuators.from_model(envs.make_task("hopper").model)
    assert not hopper.servo.any() and np.allclose(hopper.low, -1) and np.allclose(hopper.high, 1)


finite = st.floats(-1e6, 1e6, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(ctrl=arrays(np.float64, NU, elements=anything), q=arrays(np.float64, NU, elements=finite),
       qd=arrays(np.float64, NU, elements=finite), margin=st.floats(0, 0.3),
       torque_fraction=st.floats(0.05, 1.0), max_velocity=st.floats(0.1, 50))
def test_commands_never_leave_the_limits(go1, ctrl, q, qd, margin, torque_fraction, max_velocity):
    cfg = SafetyConfig(position_margin=margin, torque_fraction=torque_fraction, max_velocity=max_velocity)
    act = Actuators.from_model(go1.model, cfg=cfg)
    layer = SafetyLayer(act, cfg)
    target = layer.limit_command(ctrl, q, qd)
    assert np.isfinite(target).all()
    assert np.all(target >= act.low) and np.all(target <= act.high)
    # the torque estimate respects the force limit wherever the position limits allow it
    tau = act.kp * (target - q) - act.kd * qd
    lo = q + (-act.force_limit + act.kd * qd) / act.kp
    hi = q + (act.force_limit + act.kd * qd) / act.kp
    feasible = (np.maximum(lo, act.low) <= np.minimum(hi, act.high))
    assert np.all(np.abs(tau[feasible]) <= act.force_limit[feasible] * (1 + 1e-9) + 1e-9)
    # joints over the speed limit get no torque that speeds them up
    fast = feasible & (np.abs(qd) > max_velocity) & (target > act.low) & (target < act.high)
    assert np.all(tau[fast] * qd[fast] <= 1e-6 * np.abs(qd[fast]))


@settings(max_examples=200, deadline=None)
@given(action=arrays(np.float64, NU, elements=anything),
       previous=arrays(np.float64, NU, elements=st.floats(-1, 1)), delta=st.floats(0.01, 2.0))
def test_actions_stay_in_range_and_rate(go1_actuators, action, previous, delta):
    layer = SafetyLayer(go1_actuators, SafetyConfig(max_action_delta=delta))
    out = layer.limit_action(action, previous)
    assert np.isfinite(out).all() and np.all(np.abs(out) <= 1.0)
    assert np.all(np.abs(out - previous) <= delta + 1e-12)
    assert layer.flags["nonfinite_action"] == (not np.isfinite(action).all())
    if layer.flags["nonfinite_action"]:
        np.testing.assert_array_equal(out, previous)


def record(quat: np.ndarray) -> tuple[dict, RobotState]:
    fields = {"joint_pos": np.zeros(NU), "joint_vel": np.zeros(NU), "base_quat": quat}
    rs = RobotState(np.zeros((1, NU)), np.zeros((1, NU)), np.zeros((1, 3)), np.zeros((1, NU)),
                    base_quat=quat[None], base_ang_vel=np.zeros((1, 3)))
    return fields, rs


def test_tilt_and_nonfinite_readings_stop(go1_actuators):
    layer = SafetyLayer(go1_actuators, SafetyConfig(max_tilt_deg=45))
    layer.check_state(*record(yaw_quat(np.array([2.0]))[0]))  # upright, any heading
    assert layer.stop_reason() is None
    tilted = np.array([np.cos(np.radians(25)), np.sin(np.radians(25)), 0, 0])  # 50 deg roll
    layer.check_state(*record(tilted))
    assert layer.stop_reason() == "tilt" and layer.counts["tilt"] == 1
    layer.begin_step()
    fields, rs = record(np.array([1.0, 0, 0, 0]))
    fields["joint_vel"][3] = np.nan
    layer.check_state(fields, rs)
    assert layer.stop_reason() == "nonfinite_state"


def test_soft_start_and_damped_stop(go1_actuators):
    layer = SafetyLayer(go1_actuators, SafetyConfig(soft_start_s=1.0, stop_kd=2.0))
    start, default = np.zeros(NU), np.full(NU, 0.5)
    # small offsets move at soft_start_speed (1 rad/s): there by 0.5 s, then held
    np.testing.assert_allclose(layer.soft_start(0.25, start, default), 0.25)
    np.testing.assert_allclose(layer.soft_start(0.75, start, default), 0.5)
    far = np.full(NU, 2.5)  # large ones take the whole soft start, on a straight line
    np.testing.assert_allclose(layer.soft_start(0.25, start, far), 0.625)
    assert not layer.soft_start_done(0.98) and layer.soft_start_done(1.0)
    assert layer.counts["soft_start"] == 1
    layer.limit_command(np.full(NU, 0.3), np.full(NU, 0.3), np.zeros(NU))
    stop = layer.stop_command()
    assert stop.mode == DAMP and np.allclose(stop.kp, 0) and np.allclose(stop.kd, 2.0)
    np.testing.assert_allclose(stop.ctrl, np.clip(0.3, go1_actuators.low, go1_actuators.high))
    run = layer.run_command(np.zeros(NU))
    assert run.mode == RUN and np.allclose(run.kp, 35.0)
