"""ArUco object poses on MuJoCo renders of the marker-textured panda-push scene: accuracy against
the true cube pose, no marker no pose, the stale-pose watchdog, calibration errors and a video
file through cv2.VideoCapture."""

from __future__ import annotations

import json


import cv2
import mujoco
import numpy as np
import pytest

import deploy
from deploy.perception import CalibrationError, CameraCalibration, CameraPoseSource, MarkerPoseEstimator
from deploy.perception.bench import camera_eye
from deploy.perception.scene import (angle_between, camera_calibration, cube_pose, marker_scene,
                                     place_camera, render_bgr, set_cube)
from deploy.safety import SafetyConfig, SafetyLayer
from deploy.actuators import Actuators
from policies.export import export
from envs.render import offscreen_renderer
from test_export import trained_like_checkpoint

W, H = 960, 540


@pytest.fixture(scope="module")
def scene():
    model = marker_scene()
    data = mujoco.MjData(model)
    renderer = offscreen_renderer(model, H, W)
    yield model, data, renderer
    renderer.close()


def _view(scene, xy, yaw, dist=0.35, az=0.0):
    model, data, renderer = scene
    set_cube(model, data, xy, yaw)
    target = np.array([xy[0], xy[1], 0.06])
    place_camera(model, camera_eye(target, dist, az), target)
    mujoco.mj_forward(model, data)
    return render_bgr(renderer, data), camera_calibration(model, data, W, H), cube_pose(model, data)


@pytest.mark.parametrize("xy,yaw,az", [((0.45, -0.1), 0.0, 0.0), ((0.5, 0.05), 1.0, 90.0),
                                       ((0.55, 0.1), -2.0, 0.0), ((0.5, -0.05), 3.0, 90.0)])
def test_pose_matches_the_true_cube_pose(scene, xy, yaw, az):
    img, calib, (pos, quat) = _view(scene, xy, yaw, az=az)
    pose = MarkerPoseEstimator(calib).detect(img)
    assert pose is not None
    assert np.linalg.norm(pose.pos - pos) < 0.005          # 5 mm
    assert angle_between(pose.quat, quat) < 2.0             # degrees (yaw included: no 90/180 flips)


def test_no_marker_no_pose(scene):
    img, calib, _ = _view(scene, (0.5, 0.0), 0.0)
    assert MarkerPoseEstimator(calib).detect(img) is not None
    blank = img.copy()
    blank[:] = (120, 90, 60)
    assert MarkerPoseEstimator(calib).detect(blank) is None
    other = CameraCalibration(calib.K, calib.dist, calib.camera_to_base, calib.marker)
    other.marker = type(calib.marker)(id=3)  # the cube carries id 7
    assert MarkerPoseEstimator(other).detect(img) is None


def test_safety_layer_flags_a_stale_pose():
    model = marker_scene()
    layer = SafetyLayer(Actuators.from_model(model, None, SafetyConfig()), SafetyConfig(max_pose_age_s=0.1))
    fields = {"joint_pos": np.zeros(9), "joint_vel": np.zeros(9), "object_pos": np.zeros(3),
              "object_pose_age": np.array([0.05])}
    rs = deploy.robots.base.compose_state(fields, {}, np.zeros(1))
    layer.check_state(fields, rs)
    assert layer.stop_reason() is None
    layer.begin_step()
    layer.check_state({**fields, "object_pose_age": np.array([0.15])}, rs)
    assert layer.stop_reason() == "stale_pose"


@pytest.mark.parametrize("name,text,field", [
    ("c.json", '{"K": [[1, 0, 0], [0, 1, 0]], "camera_to_base": {"xyz": [0, 0, 0], "quat": [1, 0, 0, 0]}}', "'K'"),
    ("c.json", '{"K": [[500, 0, 320], [0, 500, 240], [0, 0, 1]]}', "'camera_to_base'"),
    ("c.yaml", "K: [[500, 0, 320], [0, 500, 240], [0, 0, 1]]\ncamera_to_base: {xyz: [0, 0, 1], quat: [2, 0, 0, 0]}\n",
     "'camera_to_base.quat'"),
    ("c.yaml", "K: [[500, 0, 320], [0, 500, 240], [0, 0, 1]]\ncamera_to_base: {xyz: [0, 0, 1], quat: [1, 0, 0, 0]}\n"
               "marker: {dictionary: DICT_NOPE}\n", "'marker.dictionary'"),
    ("c.json", '{"K": [[500, 0, 320], [0, 500, 240], [0, 0, 1]], "dist": [0, 0, 0], '
               '"camera_to_base": {"xyz": [0, 0, 0], "quat": [1, 0, 0, 0]}}', "'dist'"),
    ("c.json", "{not json", "not valid JSON"),
])
def test_bad_calibration_file_names_the_field(tmp_path, name, text, field):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CalibrationError) as err:
        CameraCalibration.load(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and field in msg


def _write_video(path, frames, fps=30.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def test_video_file_source_reads_poses(scene, tmp_path):
    img, calib, (pos, quat) = _view(scene, (0.5, 0.02), 0.7)
    video = tmp_path / "cube.avi"
    _write_video(video, [img] * 8)
    src = CameraPoseSource(str(video), calib, pace=False).start()
    try:
        pose = src.wait_first(10.0)
        assert np.linalg.norm(pose.pos - pos) < 0.006 and angle_between(pose.quat, quat) < 3.0
    finally:
        src.close()
    assert src.frames >= 1 and src.detections >= 1


@pytest.fixture(scope="module")
def push_ckpt(tmp_path_factory) -> str:
    ckpt = trained_like_checkpoint(tmp_path_factory.mktemp("aruco") / "push", "panda-push", out_gain=0.5)
    export(ckpt)
    return ckpt


def test_runtime_stops_on_stale_pose_when_the_marker_leaves_the_view(scene, push_ckpt, tmp_path):
    """Marker frames for 0.2 s, then frames without it: the run ends with stale_pose, damped,
    and the log holds the pose age and the flag per step."""
    img, calib, (pos, _) = _view(scene, (0.5, 0.0), 0.0)
    blank = img.copy()
    blank[:] = (120, 90, 60)
    video = tmp_path / "leaves.avi"
    _write_video(video, [img] * 6 + [blank] * 60)
    calib_file = tmp_path / "calib.json"
    calib_file.write_text(json.dumps(calib.to_dict()))
    def slow_policy(x: np.ndarray) -> np.ndarray:  # a 10 ms policy: 4 s of steps take >= 1 s of wall time
        import time
        time.sleep(0.01)
        return np.zeros(7)
    config = deploy.RuntimeConfig(realtime=False, end_on_termination=False,
                                  safety=SafetyConfig(soft_start_s=0.0, max_pose_age_s=0.1))
    report = deploy.runtime.run(push_ckpt, "mujoco", 4.0, tmp_path / "run.mcap", config=config,
                                policy=slow_policy, camera=(str(video), str(calib_file)))
    assert report.stop_reason == "stale_pose" and report.safety_events["stale_pose"] >= 1
    assert 5 < report.policy_steps < 100
    from simrl.core.logs import read_log
    log = read_log(tmp_path / "run.mcap")
    age = log.state["object_pose_age"].ravel()
    assert age[0] < 0.1 and age.max() > 0.1
    np.testing.assert_allclose(log.state["object_pos"][0], pos, atol=0.006)
