"""The panda-push scene with an ArUco marker on the cube's top face, rendered by MuJoCo: test
images with a known true pose, and the calibration of a MuJoCo camera (intrinsics from its
``fovy`` and the image size, camera-to-base from its pose).

The marker is a thin visual box (no collision, no mass) on the cube's top face whose material
carries the marker image (``cv2.aruco.generateImageMarker`` with a white quiet zone).
"""

from __future__ import annotations

import math

import cv2
import mujoco
import numpy as np

from deploy.perception.calibration import CameraCalibration, MarkerSpec
from envs.assets import asset_path

FACE = 0.04          # the cube's top face, m (4 x 4 cm)
TOP = 0.03           # the top face above the cube's centre, m
MARKER = 0.032       # the marker's black square, m (a 4 mm white margin around it)


def marker_image(marker: MarkerSpec, pixels: int = 400) -> np.ndarray:
    """The face texture (grey, ``pixels`` square): the marker's black square scaled to
    ``marker.size / FACE`` of the face, white around it."""
    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, marker.dictionary))
    inner = int(round(pixels * marker.size / FACE))
    img = np.full((pixels, pixels), 255, np.uint8)
    o = (pixels - inner) // 2
    img[o:o + inner, o:o + inner] = cv2.aruco.generateImageMarker(d, marker.id, inner, borderBits=1)
    return img


def marker_scene(marker: MarkerSpec | None = None, model: str = "panda-cube") -> mujoco.MjModel:
    """The panda-push model with the marker on the cube ``box``'s top face and a free camera
    ``aruco_cam`` (posed with :func:`place_camera`). The marker's image x and y axes are the
    cube's x and y axes."""
    marker = marker or MarkerSpec()
    spec = mujoco.MjSpec.from_file(str(asset_path(model)))
    img = marker_image(marker)
    # MuJoCo maps the texture's first row to the face's +y edge, as the marker's image: upright.
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    tex = spec.add_texture(name="aruco_marker", type=mujoco.mjtTexture.mjTEXTURE_2D,
                           width=rgb.shape[1], height=rgb.shape[0], nchannel=3)
    tex.data = rgb.tobytes()
    mat = spec.add_material(name="aruco_marker")
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "aruco_marker"
    mat.specular, mat.shininess, mat.reflectance = 0.0, 0.0, 0.0
    spec.body("box").add_geom(name="aruco_marker", type=mujoco.mjtGeom.mjGEOM_BOX,
                              size=[FACE / 2, FACE / 2, 0.0002], pos=[0, 0, TOP + 0.0002],
                              contype=0, conaffinity=0, density=0, material="aruco_marker",
                              rgba=[1, 1, 1, 1])
    spec.worldbody.add_camera(name="aruco_cam", pos=[0.5, 0.0, 0.6], fovy=45.0)
    spec.visual.global_.offwidth, spec.visual.global_.offheight = 1920, 1080
    return spec.compile()


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The MuJoCo camera rotation (columns: camera x right, y up, z backwards) looking from
    ``eye`` at ``target`` with the world z axis up in the image."""
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    if np.linalg.norm(right) < 1e-6:  # looking straight down: image up is world +x
        right = np.cross([1.0, 0.0, 0.0], back)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back], axis=1)


def place_camera(model: mujoco.MjModel, eye: np.ndarray, target: np.ndarray) -> None:
    """Puts ``aruco_cam`` at ``eye`` looking at ``target`` (world frame)."""
    cam = model.camera("aruco_cam").id
    model.cam_pos[cam] = eye
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, look_at(np.asarray(eye, float), np.asarray(target, float)).ravel())
    model.cam_quat[cam] = quat


def camera_calibration(model: mujoco.MjModel, data: mujoco.MjData, width: int, height: int,
                       marker: MarkerSpec | None = None) -> CameraCalibration:
    """The exact calibration of ``aruco_cam`` (after ``mj_forward``): square pixels with the
    focal length from ``fovy`` (vertical) and the principal point at the image centre, no
    distortion; camera-to-base from the camera's world pose (the Panda's base is the world
    origin), turned from MuJoCo's (x right, y up, looking along -z) to OpenCV's axes."""
    cam = model.camera("aruco_cam").id
    f = 0.5 * height / math.tan(math.radians(model.cam_fovy[cam]) / 2)
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = data.cam_xmat[cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
    T[:3, 3] = data.cam_xpos[cam]
    return CameraCalibration(K, np.zeros(5), T, marker or MarkerSpec(), "<mujoco camera aruco_cam>")


def set_cube(model: mujoco.MjModel, data: mujoco.MjData, xy: tuple[float, float], yaw: float) -> None:
    """Home pose with the cube at ``xy`` on the table, turned by ``yaw`` (rad)."""
    mujoco.mj_resetDataKeyframe(model, data, model.key("home").id)
    adr = model.jnt_qposadr[model.body("box").jntadr[0]]
    data.qpos[adr:adr + 3] = (xy[0], xy[1], TOP)
    data.qpos[adr + 3:adr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
    mujoco.mj_forward(model, data)


def render_bgr(renderer: mujoco.Renderer, data: mujoco.MjData) -> np.ndarray:
    """An OpenCV (BGR) image from ``aruco_cam``."""
    renderer.update_scene(data, "aruco_cam")
    return np.ascontiguousarray(renderer.render()[:, :, ::-1])


def cube_pose(model: mujoco.MjModel, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
    """The true cube centre and quaternion (w, x, y, z) in the world (= base) frame."""
    b = model.body("box").id
    return data.xpos[b].copy(), data.xquat[b].copy()


def angle_between(q1: np.ndarray, q2: np.ndarray) -> float:
    """The rotation angle between two unit quaternions, degrees."""
    return math.degrees(2 * math.acos(min(1.0, abs(float(np.dot(q1, q2))))))
