"""H-infinity disturber: its force reaches MjData and changes the trajectory, never exceeds the
bound, and the Lagrange multiplier rises while the constraint is violated and falls otherwise."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.batched import BatchedEnv
from envs.tasks import make_task
from simrl.robust.hinf import DisturbedEnv, HinfConfig, LagrangeMultiplier


def disturbed(n=4, physics="rollout", **cfg):
    env = BatchedEnv(make_task("go1-velocity", max_episode_steps=200), n, seed=0,
                     external_forces=True, physics=physics)
    config = HinfConfig(**cfg)
    config.ppo.num_steps = 8
    return DisturbedEnv(env, config)


def run(denv, steps=8):
    denv.reset()
    torch.manual_seed(0)
    for _ in range(steps):
        denv.step(torch.zeros(denv.num_envs, 12))
    return denv.env.robot_state.base_pos.copy()


def test_force_reaches_mjdata_and_changes_the_trajectory():
    pushed = disturbed(physics="serial", force_start=80.0, force_final=80.0)
    pushed.reset()
    _, _, _, _, info = pushed.step(torch.zeros(4, 12))
    force = info["disturber_force"]
    root = pushed.env.root_body
    for world, data in enumerate(pushed.env.physics.datas):
        assert np.allclose(data.xfrc_applied[root, :3], force[world])
    assert np.linalg.norm(force, axis=1).max() > 1.0
    calm = run(disturbed(force_start=0.0, force_final=0.0))
    moved = run(disturbed(force_start=80.0, force_final=80.0))
    assert np.abs(moved - calm).max() > 1e-3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2), st.floats(0.0, 500.0))
def test_force_never_exceeds_the_bound(action, bound):
    denv = test_force_never_exceeds_the_bound.denv
    denv.cfg.force_start = denv.cfg.force_final = bound
    force = denv.forces(torch.tensor([action], dtype=torch.float32))
    assert np.hypot(force[0, 0], force[0, 1]) <= bound * (1 + 1e-9)  # hypot: no underflow for tiny bounds
    assert force[0, 2] == 0.0          # horizontal pushes only


test_force_never_exceeds_the_bound.denv = disturbed(n=1)


def test_curriculum_grows_the_bound():
    denv = disturbed(force_start=10.0, force_final=50.0, curriculum_steps=1000)
    assert denv.force_bound == 10.0
    denv.env_steps = 500
    assert denv.force_bound == 30.0
    denv.env_steps = 10_000
    assert denv.force_bound == 50.0


def test_multiplier_dual_ascent():
    lam = LagrangeMultiplier(init=1.0, lr=0.5, max_value=3.0)
    assert lam.update(+1.0) == 1.5 and lam.update(+10.0) == 3.0    # violated: rises (capped)
    assert lam.update(-1.0) == 2.5 and lam.update(-10.0) == 0.0    # satisfied: falls to 0


def test_multiplier_follows_the_constraint_in_training():
    strict = disturbed(force_start=40.0, force_final=40.0, eta=0.0, lambda_init=1.0)
    run(strict)
    assert strict.end_iteration()["hinf_lambda"] > 1.0          # cost > 0 = eta * intensity
    loose = disturbed(force_start=40.0, force_final=40.0, eta=100.0, lambda_init=1.0)
    run(loose)
    stats = loose.end_iteration()
    assert stats["hinf_violation"] < 0 and stats["hinf_lambda"] < 1.0
