"""go1-velocity's task features: commands redrawn during the episode, observation latency apart
from action latency, the feet and joint-limit reward terms, and ``simrl eval``'s tracking error
per command axis with its command-sweep plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from envs.batched import BatchedEnv
from envs.tasks import make_task
from envs.tasks.go1_velocity import Go1RewardWeights
from simrl.cli import main
from simrl.evaluate import CommandSweep, run_episodes
from test_export import trained_like_checkpoint

ZERO = {f: 0.0 for f in ("tracking_lin_vel", "tracking_ang_vel", "lin_vel_z", "ang_vel_xy", "orientation",
                         "torques", "action_rate", "pose", "termination", "feet_air_time", "feet_slip",
                         "joint_limits")}


def stand(env: BatchedEnv, steps: int) -> list[np.ndarray]:
    """Steps with zero actions (the default pose); the commands after every step."""
    out = []
    for _ in range(steps):
        env.step_numpy(np.zeros((env.num_envs, env.action_size)))
        out.append(env.task_state["command"].copy())
    return out


def test_commands_are_redrawn_during_the_episode_with_a_share_of_zeros():
    def commands(zero_prob: float) -> tuple[BatchedEnv, np.ndarray]:
        task = make_task("go1-velocity", command_resample_s=(0.1, 0.1), zero_command_prob=zero_prob)
        env = BatchedEnv(task, 64, seed=0)
        env.reset_numpy()
        return env, np.stack([env.task_state["command"].copy()] + stand(env, 10))  # (11, 64, 3)

    env, moving = commands(0.0)
    # every 5 steps (0.1 s) a new draw, in the observation too; none between draws
    changed = np.any(moving[1:] != moving[:-1], axis=2)
    assert changed[[4, 9]].all() and not changed[[0, 1, 2, 3, 5, 6, 7, 8]].any()
    assert np.array_equal(env.robot_state.command, moving[-1])
    obs = env.step_numpy(np.zeros((64, 12)))[0]
    np.testing.assert_array_equal(obs[:, 6:9], env.task_state["command"])
    zero = np.all(commands(0.3)[1][[0, 5, 10]] == 0, axis=2)
    assert 0.15 < zero.mean() < 0.45  # about 30% of the draws stand still
    once = BatchedEnv(make_task("go1-velocity", command_resample_s=(0.0, 0.0)), 8, seed=0)
    once.reset_numpy()
    first = once.task_state["command"].copy()
    assert all(np.array_equal(c, first) for c in stand(once, 20))  # one command per episode
    with pytest.raises(ValueError, match="command_resample_s"):
        make_task("go1-velocity", command_resample_s=(-1.0, 2.0))


def test_observation_latency_delays_the_sensors_not_the_command():
    task = make_task("go1-velocity", command_resample_s=(0.1, 0.1))
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (12, 4, 12))
    runs = {}
    for delay in (0, 2):
        env = BatchedEnv(task, 4, dr={"obs_latency": (delay, delay)}, seed=3)
        obs = [env.reset_numpy()]
        for a in actions:
            obs.append(env.step_numpy(a)[0])
        runs[delay] = np.stack(obs)
    now, late = runs[0], runs[2]
    sensors = np.r_[0:6, 9:33]            # gyro, gravity, joint positions and velocities
    current = np.r_[6:9, 33:45]           # command and last action
    np.testing.assert_allclose(late[2:, :, sensors], now[:-2, :, sensors], atol=1e-9)
    np.testing.assert_allclose(late[:3, :, sensors], np.repeat(now[:1, :, sensors], 3, axis=0), atol=1e-9)
    np.testing.assert_array_equal(late[:, :, current], now[:, :, current])
    assert np.abs(late[5:, :, sensors] - now[5:, :, sensors]).max() > 0.1  # the delay is visible
    assert np.abs(late[:, :, 6:9]).max() > 0                                # commands were drawn


def _record(task, **extras):
    """The record of one standing world at its reset pose, with ``extras`` replaced."""
    env = BatchedEnv(task, 1, seed=0)
    env.reset_numpy()
    rs = env.robot_state
    rs.command[:] = [0.5, 0.0, 0.0]
    rs.extras.update({k: np.asarray(v, dtype=np.float64)[None] for k, v in extras.items()})
    return rs


def test_feet_air_time_slip_and_joint_limit_terms():
    dt = 0.02
    only = lambda **w: make_task("go1-velocity", rewards=Go1RewardWeights(**{**ZERO, **w}))  # noqa: E731
    zero_action = np.zeros((1, 12))
    # touchdown of the front-right foot after 0.3 s in the air: (0.3 + dt - 0.1) x weight
    task = only(feet_air_time=1.0)
    rs = _record(task, feet_contact=[1, 1, 1, 1], feet_air_time=[0.3, 0, 0, 0])
    r, _, _ = task.reward(rs, rs, zero_action, task.default_pose[None])
    assert r[0] == pytest.approx((0.3 + dt - 0.1) * dt)
    rs.command[:] = 0.0  # standing still: no air-time reward
    assert task.reward(rs, rs, zero_action, task.default_pose[None])[0][0] == 0.0
    # slip: squared horizontal speed of the feet in contact only
    task = only(feet_slip=-1.0)
    rs = _record(task, feet_contact=[1, 0, 0, 0], feet_vel=[0.3, 0.4, 2, 2, 2, 2, 2, 2])
    assert task.reward(rs, rs, zero_action, task.default_pose[None])[0][0] == pytest.approx(-0.25 * dt)
    # joint limits: only what is past the soft limits counts
    task = only(joint_limits=-1.0)
    rs = _record(task)
    assert task.reward(rs, rs, zero_action, task.default_pose[None])[0][0] == 0.0
    rs.joint_pos[0, 2] = task.soft_low[2] - 0.05
    assert task.reward(rs, rs, zero_action, task.default_pose[None])[0][0] == pytest.approx(-0.05 * dt)


def test_air_time_grows_in_the_air_and_resets_on_contact():
    task = make_task("go1-velocity")
    env = BatchedEnv(task, 2, seed=0)
    env.reset_numpy()
    qpos = env.state[:, env._qpos].copy()
    qpos[:, 7:19] = task.default_pose
    qpos[0, 2] += 0.3  # world 0 dropped from 30 cm, world 1 standing
    env.start_from(env.params.copy(), qpos, np.zeros((2, task.model.nv)))
    env.task_state["feet_air_time"] = np.zeros((2, 4))
    air = []
    for _ in range(30):
        env.step_numpy(np.zeros((2, 12)))
        air.append(env.task_state["feet_air_time"].copy())
    air = np.stack(air)
    assert air[4, 0].min() == pytest.approx(5 * 0.02) and not air[:, 1].any()
    landed = np.flatnonzero(air[:, 0].max(axis=1) == 0)
    assert landed.size and landed[0] > 5  # all four feet down again after the fall


def test_command_sweep_of_a_standing_policy_is_the_command_itself():
    """A policy that stands still misses each axis by the commanded value: the sweep's error per
    bin is |bin centre| (up to the bin width and the small drift of a standing robot)."""
    task = make_task("go1-velocity", max_episode_steps=100, command_resample_s=(0.2, 0.6))
    sweep = CommandSweep(task.command_axes)
    zero = lambda obs: torch.zeros(obs.shape[0], 12)  # noqa: E731
    episodes = run_episodes(zero, task, 16, sweep=sweep)
    result = sweep.result(bins=6)
    assert result["steps"] == 16 * 100
    for axis, r in result["axes"].items():
        centre, error = np.array(r["command"]), np.array(r["error"])
        width = centre[1] - centre[0]
        assert np.all(np.abs(error - np.abs(centre)) < 0.5 * width + 0.1), (axis, centre, error)
        assert sum(r["steps"]) == 1600
    assert result["axes"]["vx"]["mean_error"] == pytest.approx(episodes["vx_error"].mean(), rel=1e-9)


def test_simrl_eval_reports_axes_and_writes_the_sweep_plot(tmp_path, capsys):
    ckpt = trained_like_checkpoint(tmp_path / "c", "go1-velocity", out_gain=0.2)
    assert main(["eval", "--checkpoint", ckpt, "--episodes", "4", "--task.max-episode-steps", "50",
                 "--out", str(tmp_path / "sweep"), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "tracking error per command axis over 200 steps: vx" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["metrics"]) >= {"vx_error", "vy_error", "yaw_rate_error", "lin_vel_error"}
    sweep = result["command_sweep"]
    assert set(sweep["axes"]) == {"vx", "vy", "yaw_rate"}
    png = tmp_path / "sweep" / "command_sweep-c.png"
    assert sweep["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "sweep" / "command_sweep-c.json").read_text())["steps"] == 200


def test_the_full_menagerie_go1_runs_the_same_task():
    """Sim-to-sim on the robot's full model (`--task.model go1-menagerie`: mesh collisions, its
    own 2 ms time step): the same observation layout and feet sensors, and the default pose held
    by the PD keeps it standing."""
    flat, full = make_task("go1-velocity"), make_task("go1-velocity", model="go1-menagerie")
    assert full.observation_names == flat.observation_names
    assert full.model.opt.timestep != flat.model.opt.timestep and full.substeps * full.model.opt.timestep == pytest.approx(0.02)
    env = BatchedEnv(full, 8, seed=0)
    env.reset_numpy()
    stand(env, 100)                                         # 2 s
    rs = env.robot_state
    assert np.all(rs.base_pos[:, 2] > 0.2), rs.base_pos[:, 2]
    assert rs.extras["feet_contact"].shape == (8, 4) and np.all(rs.extras["feet_contact"].sum(axis=1) >= 3)


def test_the_task_servo_gains_replace_any_models_own():
    """The PD gains are the policy's (a deploy sends them to the motor drivers), as Playground
    writes its Kp/Kd into whichever Go1 model it loads: Menagerie's full Go1 (kp 100, joint
    damping 1-2) and Playground's (kp 35, joint damping 0.5) run with kp 35 and kd 0.5 in the
    actuators and no leg-joint damping, and the checkpoint spec says so; None keeps the model's."""
    from policies.checkpoint import pd_gains
    for model in ("go1-flat", "go1-menagerie"):
        task = make_task("go1-velocity", model=model)
        m = task.model
        assert np.allclose(m.actuator_gainprm[:, 0], 35.0) and np.allclose(m.actuator_biasprm[:, 1:3], [-35.0, -0.5])
        assert np.all(m.dof_damping[6:] == 0.0)
        assert pd_gains(task) == {"kp": [35.0] * 12, "kd": [0.5] * 12}
    own = make_task("go1-velocity", model="go1-menagerie", kp=None, kd=None)
    assert pd_gains(own) == {"kp": [100.0] * 12, "kd": [0.0] * 12}
    assert sorted(set(own.model.dof_damping[6:])) == [1.0, 2.0]


def test_checkpoints_saved_before_the_servo_gains_load_with_the_models_own():
    from envs.tasks import config_from_spec
    assert config_from_spec({"task": "go1-velocity", "task_config": {}}).kp is None
    assert config_from_spec({"task": "go1-velocity", "task_config": {"kp": 30.0, "kd": 1.0}}).kd == 1.0


def test_servo_gains_on_a_model_with_torque_motors_is_a_clear_error(tmp_path):
    """A Go1 MJCF with <motor> actuators (unitree_mujoco's style) cannot take the task's PD
    gains silently: the error names the actuators and the way out."""
    from envs.assets import asset_path
    src = asset_path("go1-menagerie").parent
    for name in ("go1.xml", "scene.xml"):
        text = (src / name).read_text()
        (tmp_path / name).write_text(text.replace('kp="100" ', "").replace("<position", "<motor"))
    (tmp_path / "assets").symlink_to(src / "assets")
    with pytest.raises(ValueError, match="not position servos.*--task.kp None"):
        make_task("go1-velocity", model=str(tmp_path / "scene.xml"))


def test_finished_episodes_carry_their_per_step_metric_means_and_the_trainer_logs_them():
    from simrl.train import EpisodeWindow
    env = BatchedEnv(make_task("go1-velocity", max_episode_steps=6), 8, seed=3)
    env.reset_numpy()
    sums: dict[str, np.ndarray] = {}
    for _ in range(6):
        *_, info = env.step_numpy(np.random.default_rng(0).uniform(-1, 1, (8, env.action_size)))
        for k, v in info["metrics"].items():
            sums[k] = sums.get(k, 0.0) + v
    batch = info["episodes"]                   # every world ends at the time limit together
    assert set(batch.metrics) == {"lin_vel_error", "yaw_rate_error", "vx_error", "vy_error"}
    for k, v in batch.metrics.items():
        np.testing.assert_allclose(v, sums[k][batch.env_ids] / 6)
    window = EpisodeWindow()
    window.add(batch.returns, batch.lengths, batch.success, batch.terminated, batch.metrics)
    restored = EpisodeWindow()
    restored.load_state_dict(window.state_dict())
    summary = restored.summary()
    assert summary["termination_rate"] == pytest.approx(batch.terminated.mean())
    assert summary["lin_vel_error"] == pytest.approx(batch.metrics["lin_vel_error"].mean())
