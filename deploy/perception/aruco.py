"""ArUco marker poses from a camera, in the robot's base frame, for a robot's state record.

:class:`MarkerPoseEstimator` turns one image into the object's pose (``cv2.aruco.ArucoDetector``,
then ``cv2.solvePnP`` with ``SOLVEPNP_IPPE_SQUARE`` on the four marker corners, then the
calibration's camera-to-base transform and the marker-to-object offset).
:class:`CameraPoseSource` runs it in its own thread on every frame of a ``cv2.VideoCapture``
(camera index, URL or video file) and keeps the newest pose with its time.
:class:`PerceivedRobot` wraps a robot back-end: its states carry the camera's ``object_pos``,
``object_quat`` (what ``panda-push`` observes) and ``object_pose_age`` (seconds since the frame
the pose came from), which the safety layer's ``stale_pose`` watchdog judges.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from deploy.perception.calibration import CameraCalibration, mat_to_quat
from deploy.robots.base import Command, LinkStats, Robot, RobotLost, StateSample


@dataclass
class MarkerPose:
    """The object's pose in the robot's base frame; ``stamp``: ``time.monotonic()`` when the
    frame was read."""

    pos: np.ndarray          # (3,) m
    quat: np.ndarray         # (4,) w, x, y, z
    stamp: float
    reprojection_px: float   # RMS corner reprojection error


class MarkerPoseEstimator:
    """Finds the calibration's marker in images and returns the object's pose."""

    def __init__(self, calib: CameraCalibration, max_reprojection_px: float = 2.0):
        self.calib, self.max_reprojection_px = calib, max_reprojection_px
        m = calib.marker
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, m.dictionary))
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        self.detector = cv2.aruco.ArucoDetector(dictionary, params)
        h = 0.5 * m.size  # marker frame: x right, y up, z out of the marker; corners TL, TR, BR, BL
        self.object_points = np.array([[-h, h, 0], [h, h, 0], [h, -h, 0], [-h, -h, 0]], dtype=np.float64)
        self.offset = np.asarray(m.object_offset, dtype=np.float64)

    def detect(self, image: np.ndarray, stamp: float = 0.0) -> MarkerPose | None:
        """The object's pose from a BGR or grey image, or None when the marker is not seen."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        corners, ids, _ = self.detector.detectMarkers(grey)
        if ids is None:
            return None
        hits = [i for i, v in enumerate(ids.ravel()) if v == self.calib.marker.id]
        if len(hits) != 1:  # none, or ambiguous (two markers with the object's id)
            return None
        img_pts = corners[hits[0]].reshape(4, 2).astype(np.float64)
        ok, rvec, tvec = cv2.solvePnP(self.object_points, img_pts, self.calib.K, self.calib.dist,
                                      flags=cv2.SOLVEPNP_IPPE_SQUARE)
        if not ok:
            return None
        proj, _ = cv2.projectPoints(self.object_points, rvec, tvec, self.calib.K, self.calib.dist)
        rms = float(np.sqrt(np.mean(np.sum((proj.reshape(4, 2) - img_pts) ** 2, axis=1))))
        if rms > self.max_reprojection_px:  # corners no square fits: a misdetection
            return None
        r_cam, _ = cv2.Rodrigues(rvec)
        T = self.calib.camera_to_base
        r_base = T[:3, :3] @ r_cam
        marker_pos = T[:3, :3] @ tvec.ravel() + T[:3, 3]
        return MarkerPose(marker_pos + r_base @ self.offset, mat_to_quat(r_base), stamp, rms)


def open_capture(source: str | int) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` of a camera index ("0"), a URL or a video file; ValueError when it
    does not open."""
    src: str | int = int(source) if isinstance(source, str) and source.isdigit() else source
    if isinstance(src, str) and "://" not in src and not Path(src).exists():
        raise ValueError(f"camera {source!r}: no such video file (give a camera index, a URL or a file)")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise ValueError(f"camera {source!r}: cv2.VideoCapture cannot open it")
    return cap


class CameraPoseSource:
    """Reads ``source`` in a thread at the camera's rate, detects the marker in every frame and
    keeps the newest pose. A video file is read at its own frame rate when ``pace`` (as a camera
    would deliver it), as fast as it decodes otherwise; at its end the pose stops updating."""

    def __init__(self, source: str | int, calib: CameraCalibration, pace: bool = True):
        self.source, self.estimator = source, MarkerPoseEstimator(calib)
        self._cap = open_capture(source)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        is_file = isinstance(source, str) and Path(source).exists()
        self._period = 1.0 / fps if pace and is_file and fps > 0 else 0.0
        self._lock = threading.Lock()
        self._pose: MarkerPose | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = self.detections = 0
        self.detect_s = 0.0       # time spent detecting (the detector's rate: frames / detect_s)
        self.ended = False        # the stream ended (end of a video file, camera unplugged)

    def start(self) -> "CameraPoseSource":
        self._thread = threading.Thread(target=self._run, name="aruco-camera", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            stamp = time.monotonic()
            if not ok:
                self.ended = True
                return
            t0 = time.perf_counter()
            pose = self.estimator.detect(frame, stamp)
            self.detect_s += time.perf_counter() - t0
            self.frames += 1
            if pose is not None:
                with self._lock:
                    self._pose = pose
                    self.detections += 1
            if self._period:
                next_t += self._period
                self._stop.wait(max(0.0, next_t - time.monotonic()))

    def latest(self) -> MarkerPose | None:
        """The newest pose (None before the first detection)."""
        with self._lock:
            return self._pose

    def wait_first(self, timeout: float, cancel: Callable[[], bool] | None = None) -> MarkerPose:
        """Blocks until a pose is seen; RobotLost after ``timeout`` s or when the stream ends."""
        deadline = time.monotonic() + timeout
        while (pose := self.latest()) is None:
            if self.ended or time.monotonic() > deadline or (cancel is not None and cancel()):
                raise RobotLost(f"camera {self.source}: marker {self.estimator.calib.marker.id} "
                                f"({self.estimator.calib.marker.dictionary}) not seen in {self.frames} frames"
                                + (" (the stream ended)" if self.ended else f" within {timeout:g} s"))
            time.sleep(0.005)
        return pose

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._cap.release()


class PerceivedRobot:
    """A robot back-end whose states carry the camera's object pose: ``object_pos``,
    ``object_quat`` (replacing the robot's own, e.g. franka's fixed ``?object=``) and
    ``object_pose_age`` (s, monotonic clock). Everything else goes to ``robot``."""

    def __init__(self, robot: Robot, camera: CameraPoseSource):
        self.robot, self.camera = robot, camera
        self.name, self.source, self.lockstep = robot.name, robot.source, robot.lockstep

    def _with_pose(self, sample: StateSample | None) -> StateSample | None:
        if sample is None:
            return None
        pose = self.camera.latest()
        assert pose is not None  # connect waited for the first one
        fields = dict(sample.fields)
        fields["object_pos"], fields["object_quat"] = pose.pos.copy(), pose.quat.copy()
        fields["object_pose_age"] = np.array([time.monotonic() - pose.stamp])
        return StateSample(sample.seq, sample.stamp, fields)

    def connect(self, timeout: float = 60.0, cancel: Callable[[], bool] | None = None) -> StateSample:
        """Starts the camera, connects the robot and waits (within ``timeout``) for the first pose."""
        t0 = time.monotonic()
        if self.camera._thread is None:
            self.camera.start()
        sample = self.robot.connect(timeout, cancel=cancel)
        self.camera.wait_first(max(0.0, timeout - (time.monotonic() - t0)), cancel)
        return self._with_pose(sample)

    def read_state(self) -> StateSample | None:
        return self._with_pose(self.robot.read_state())

    def send_command(self, command: Command) -> None:
        self.robot.send_command(command)

    def link_stats(self) -> LinkStats:
        return self.robot.link_stats()

    def close(self) -> None:
        try:
            self.robot.close()
        finally:
            self.camera.close()
