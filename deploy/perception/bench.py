"""ArUco pose accuracy on MuJoCo renders of the marker-textured panda-push scene, and the
detector's rate: ``MUJOCO_GL=egl python -m deploy.perception.bench [OUT.json]``."""

from __future__ import annotations

import json
import math
import sys
import time

import cv2
import mujoco
import numpy as np

from deploy.perception.aruco import MarkerPoseEstimator
from envs.render import offscreen_renderer
from simrl.core.machine import finish, machine_info
from deploy.perception.scene import (angle_between, camera_calibration, cube_pose, marker_scene,
                                     place_camera, render_bgr, set_cube)

WIDTH, HEIGHT = 1280, 720
CUBES = [((0.45, -0.1), 0.0), ((0.5, 0.0), 0.6), ((0.55, 0.1), -1.2), ((0.5, -0.05), 2.5),
         ((0.45, 0.08), -2.9)]
DISTANCES = (0.3, 0.45, 0.6)   # camera to cube, m
ELEVATION = 60.0               # camera elevation above the table, degrees
AZIMUTHS = (0.0, 90.0)         # camera in front of (+x side) and beside the cube, degrees


def camera_eye(target: np.ndarray, distance: float, azimuth_deg: float) -> np.ndarray:
    el, az = math.radians(ELEVATION), math.radians(azimuth_deg)
    return target + distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def measure() -> dict:
    """Errors over every cube pose, distance and azimuth, and detector timing."""
    machine = {**machine_info(threads=cv2.getNumThreads()), "opencv": cv2.__version__}
    model = marker_scene()
    data = mujoco.MjData(model)
    renderer = offscreen_renderer(model, HEIGHT, WIDTH)
    rows, times = [], []
    for (xy, yaw) in CUBES:
        for dist in DISTANCES:
            for az in AZIMUTHS:
                set_cube(model, data, xy, yaw)
                target = np.array([xy[0], xy[1], 0.06])
                place_camera(model, camera_eye(target, dist, az), target)
                mujoco.mj_forward(model, data)
                est = MarkerPoseEstimator(camera_calibration(model, data, WIDTH, HEIGHT))
                img = render_bgr(renderer, data)
                t0 = time.perf_counter()
                pose = est.detect(img)
                times.append(time.perf_counter() - t0)
                pos, quat = cube_pose(model, data)
                row = {"cube_xy": list(xy), "yaw_deg": round(math.degrees(yaw), 1), "distance_m": dist,
                       "azimuth_deg": az, "detected": pose is not None}
                if pose is not None:
                    row.update(position_error_mm=float(np.linalg.norm(pose.pos - pos) * 1e3),
                               angle_error_deg=angle_between(pose.quat, quat),
                               reprojection_px=pose.reprojection_px)
                rows.append(row)
    renderer.close()
    out = {"image": [WIDTH, HEIGHT], "fovy_deg": float(model.cam_fovy[model.camera("aruco_cam").id]),
           "marker": {"dictionary": "DICT_4X4_50", "size_m": 0.032}, "elevation_deg": ELEVATION,
           "detector_ms_mean": 1e3 * float(np.mean(times)),
           "detector_fps": float(1.0 / np.mean(times)), "machine": finish(machine), "cases": rows}
    summary = {}
    for dist in DISTANCES:
        ok = [r for r in rows if r["distance_m"] == dist and r["detected"]]
        n = sum(r["distance_m"] == dist for r in rows)
        pe = [r["position_error_mm"] for r in ok]
        ae = [r["angle_error_deg"] for r in ok]
        summary[f"{dist:g}"] = {"detected": f"{len(ok)}/{n}",
                                "position_error_mm": {"mean": float(np.mean(pe)), "max": float(np.max(pe))} if ok else None,
                                "angle_error_deg": {"mean": float(np.mean(ae)), "max": float(np.max(ae))} if ok else None}
    out["by_distance"] = summary
    return out


if __name__ == "__main__":
    result = measure()
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(result, f, indent=2)
