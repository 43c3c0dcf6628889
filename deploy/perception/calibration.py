"""Camera calibration files (JSON or YAML): intrinsics, distortion, camera pose in the robot's
base frame and the marker on the object.

.. code-block:: yaml

    K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]     # intrinsics, pixels
    dist: [k1, k2, p1, p2, k3]                   # OpenCV distortion (optional: none)
    camera_to_base: {xyz: [x, y, z], quat: [w, x, y, z]}   # or a 4 x 4 matrix (rows)
    marker: {dictionary: DICT_4X4_50, id: 7, size: 0.032,  # marker side, m (black square)
             object_offset: [0, 0, -0.03]}       # object centre in the marker frame, m

``camera_to_base`` maps points in the OpenCV camera frame (x right, y down, z forward) into the
robot's base frame. Every error names the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class CalibrationError(ValueError):
    """A calibration file that cannot be used (the message names the file and the field)."""


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def mat_to_quat(r: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z, w >= 0) of a rotation matrix."""
    t = np.trace(r)
    if t > 0:
        s = 2.0 * math.sqrt(t + 1.0)
        q = np.array([0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s])
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + r[i, i] - r[j, j] - r[k, k], 1e-12))
        q = np.empty(4)
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


@dataclass
class MarkerSpec:
    """The ArUco marker on the object."""

    dictionary: str = "DICT_4X4_50"        # cv2.aruco predefined dictionary name
    id: int = 7
    size: float = 0.032                    # side of the black square, m
    object_offset: tuple[float, float, float] = (0.0, 0.0, -0.03)  # object centre, marker frame, m


@dataclass
class CameraCalibration:
    """Intrinsics ``K`` (3 x 3), distortion ``dist``, ``camera_to_base`` (4 x 4) and the marker."""

    K: np.ndarray
    dist: np.ndarray
    camera_to_base: np.ndarray
    marker: MarkerSpec = field(default_factory=MarkerSpec)
    path: str = "<calibration>"

    @classmethod
    def load(cls, path: str | Path) -> "CameraCalibration":
        """Reads a ``.json``, ``.yaml`` or ``.yml`` file; :class:`CalibrationError` naming the
        file and field on any problem."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CalibrationError(f"camera calibration {path}: cannot read ({exc.strerror or exc})") from None
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml
                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - any parse error, reported on one line
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CalibrationError(f"camera calibration {path}: not valid "
                                   f"{'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'} ({msg})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "<calibration>") -> "CameraCalibration":
        """Validates a parsed calibration mapping (see the module doc)."""
        def fail(name: str, why: str) -> CalibrationError:
            return CalibrationError(f"camera calibration {where}: field '{name}' {why}")

        if not isinstance(data, dict):
            raise CalibrationError(f"camera calibration {where}: expected a mapping with fields K, dist, "
                                   f"camera_to_base, marker; got {type(data).__name__}")
        unknown = set(data) - {"K", "dist", "camera_to_base", "marker", "image_size"}
        if unknown:
            raise fail(sorted(unknown)[0], "is unknown (fields: K, dist, camera_to_base, marker, image_size)")

        def array(name: str, value: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
            try:
                a = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise fail(name, f"must be numbers, got {value!r}") from None
            if shape is not None and a.shape != shape:
                raise fail(name, f"must have shape {shape}, got {a.shape}")
            if not np.isfinite(a).all():
                raise fail(name, "must be finite")
            return a

        if "K" not in data:
            raise fail("K", "is missing (3 x 3 intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])")
        K = array("K", data["K"], (3, 3))
        if not (K[0, 0] > 0 and K[1, 1] > 0 and np.allclose(K[2], [0, 0, 1])):
            raise fail("K", "must have fx, fy > 0 and last row [0, 0, 1]")
        dist = array("dist", data.get("dist") or [0.0] * 5)
        if dist.ndim != 1 or dist.size not in (4, 5, 8, 12, 14):
            raise fail("dist", f"must be 4, 5, 8, 12 or 14 OpenCV distortion coefficients, got {dist.size}")
        if "camera_to_base" not in data:
            raise fail("camera_to_base", "is missing (4 x 4 matrix or {xyz, quat: [w, x, y, z]})")
        c2b = data["camera_to_base"]
        if isinstance(c2b, dict):
            for key in ("xyz", "quat"):
                if key not in c2b:
                    raise fail(f"camera_to_base.{key}", "is missing")
            xyz = array("camera_to_base.xyz", c2b["xyz"], (3,))
            quat = array("camera_to_base.quat", c2b["quat"], (4,))
            if abs(np.linalg.norm(quat) - 1.0) > 1e-3:
                raise fail("camera_to_base.quat", f"must be a unit quaternion [w, x, y, z], norm {np.linalg.norm(quat):.4f}")
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = quat_to_mat(quat), xyz
        else:
            T = array("camera_to_base", c2b, (4, 4))
            R = T[:3, :3]
            if not (np.allclose(R @ R.T, np.eye(3), atol=1e-4) and np.linalg.det(R) > 0
                    and np.allclose(T[3], [0, 0, 0, 1])):
                raise fail("camera_to_base", "must be a rigid transform (rotation block orthonormal, "
                                             "det +1, last row [0, 0, 0, 1])")
        m = data.get("marker") or {}
        if not isinstance(m, dict):
            raise fail("marker", f"must be a mapping, got {m!r}")
        unknown = set(m) - {"dictionary", "id", "size", "object_offset"}
        if unknown:
            raise fail(f"marker.{sorted(unknown)[0]}", "is unknown (dictionary, id, size, object_offset)")
        marker = MarkerSpec()
        if "dictionary" in m:
            import cv2
            if not (isinstance(m["dictionary"], str) and m["dictionary"].startswith("DICT_")
                    and hasattr(cv2.aruco, m["dictionary"])):
                raise fail("marker.dictionary", f"must name a cv2.aruco dictionary such as DICT_4X4_50, "
                                                f"got {m['dictionary']!r}")
            marker.dictionary = m["dictionary"]
        if "id" in m:
            if not (isinstance(m["id"], int) and m["id"] >= 0):
                raise fail("marker.id", f"must be an integer >= 0, got {m['id']!r}")
            marker.id = m["id"]
        if "size" in m:
            size = array("marker.size", m["size"], ())
            if not size > 0:
                raise fail("marker.size", f"must be > 0 (metres), got {float(size)}")
            marker.size = float(size)
        if "object_offset" in m:
            marker.object_offset = tuple(array("marker.object_offset", m["object_offset"], (3,)).tolist())
        return cls(K, dist, T, marker, where)

    def to_dict(self) -> dict[str, Any]:
        """The file form (JSON-ready)."""
        return {"K": self.K.tolist(), "dist": self.dist.tolist(), "camera_to_base": self.camera_to_base.tolist(),
                "marker": {"dictionary": self.marker.dictionary, "id": self.marker.id, "size": self.marker.size,
                           "object_offset": list(self.marker.object_offset)}}
