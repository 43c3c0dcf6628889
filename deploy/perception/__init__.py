"""Perception on the robot computer (numpy + OpenCV, no torch): object poses from a camera.

:mod:`deploy.perception.aruco` reads a camera (``cv2.VideoCapture``), finds an ArUco marker on
the object, estimates its pose (``cv2.solvePnP``, IPPE_SQUARE) and puts it into the robot's
base frame with the transform of a calibration file (:mod:`deploy.perception.calibration`).
:class:`~deploy.perception.aruco.PerceivedRobot` wraps any robot back-end so that its states
carry the camera's ``object_pos`` / ``object_quat`` and their age (``object_pose_age``), which
the safety layer's ``stale_pose`` watchdog judges.
"""

from deploy.perception.aruco import CameraPoseSource, MarkerPose, MarkerPoseEstimator, PerceivedRobot
from deploy.perception.calibration import CameraCalibration, CalibrationError

__all__ = ["CameraCalibration", "CalibrationError", "MarkerPoseEstimator", "MarkerPose",
           "CameraPoseSource", "PerceivedRobot"]
