"""Rollout videos: MuJoCo offscreen rendering of a task's full-visual model, text overlays and
MP4 files written with OpenCV.

Training models drop their visual meshes (:func:`envs.assets.load_model`); videos are rendered
from the model with them. The camera tracks the task's root body (``Task.root_body``) where it
has one, and is fixed otherwise. Real logs are rendered after the run (:func:`render_log`): the
logged robot-state record is put back into ``qpos`` (the task's ``robot_state`` inverted by
probing it) and ``mj_forward`` places the bodies; nothing here runs in a control loop.

Headless machines render through EGL: when ``MUJOCO_GL`` is unset, :func:`ensure_gl` selects EGL
in this process (a user's ``MUJOCO_GL`` is always kept). Torch-free: the robot side uses it.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import mujoco
import numpy as np

from envs.assets import load_model
from simrl.core.logs import RealLog

_PROBE = 1000.5  # probe value: entry i of qpos is _PROBE + i


class VideoError(RuntimeError):
    """A video could not be rendered or written."""


@dataclass
class VideoConfig:
    """Size and frame rate of rendered videos."""

    width: int = 320                     # pixels
    height: int = 240                    # pixels
    fps: float = 30.0                    # frames per second wanted (a whole number of control steps per frame)

    def validate(self) -> None:
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"video size {self.width}x{self.height}: width and height must be 16-4096 pixels")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"video fps must be a finite number > 0, got {self.fps}")

    def stride(self, control_dt: float) -> int:
        """Control steps per frame: the whole number closest to the wanted frame rate (>= 1)."""
        return max(1, int(round(1.0 / (self.fps * control_dt))))


def ensure_gl() -> None:
    """Makes offscreen rendering work headless: ``MUJOCO_GL`` defaults to ``egl`` (a user's
    choice is kept), and since mujoco reads the variable at import, the context class it picked
    then is switched to the one the variable names now if they differ."""
    if sys.platform != "linux":
        return
    backend = os.environ.setdefault("MUJOCO_GL", "egl")
    from mujoco.rendering.classic import gl_context
    try:
        if backend == "egl":
            import mujoco.egl as chosen
        elif backend == "osmesa":
            import mujoco.osmesa as chosen
        else:
            return  # glfw (a display) or another platform mujoco handles itself
    except ImportError as exc:  # no libEGL / libOSMesa
        raise VideoError(f"offscreen rendering with MUJOCO_GL={backend} needs its library: {exc}; "
                         "set MUJOCO_GL to a backend this machine has (egl, osmesa, glfw)") from exc
    if gl_context.GLContext is not chosen.GLContext:
        gl_context.GLContext = chosen.GLContext


def offscreen_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """``mujoco.Renderer`` after :func:`ensure_gl`, with the model's offscreen buffer grown to
    the image size."""
    ensure_gl()
    vis = model.vis.global_
    vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
    try:
        return mujoco.Renderer(model, height, width)
    except Exception as exc:  # GL context creation: libEGL/driver problems
        raise VideoError(f"cannot create an offscreen renderer ({os.environ.get('MUJOCO_GL', 'default')} "
                         f"backend): {exc}; try MUJOCO_GL=egl or MUJOCO_GL=osmesa") from exc


def visual_model(task: Any) -> mujoco.MjModel:
    """The task's model with its visual meshes (what training drops), falling back to the
    training model if the full one does not line up with it."""
    try:
        model = load_model(task.cfg.model, strip_visual=False, edit=task.edit_spec)
    except (FileNotFoundError, ValueError):
        return task.model
    if model.nq != task.model.nq or model.nbody != task.model.nbody:
        return task.model
    return model


class FrameRenderer:
    """Renders RGB frames of ``model`` at given ``qpos``; a tracking camera on ``root_body``
    when given, a fixed view of the whole model otherwise."""

    def __init__(self, model: mujoco.MjModel, root_body: str | None, config: VideoConfig):
        config.validate()
        self.model, self.data = model, mujoco.MjData(model)
        self.renderer = offscreen_renderer(model, config.height, config.width)
        cam = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(model, cam)
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, root_body) if root_body else -1
        if body >= 0:
            cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            cam.trackbodyid = body
            cam.distance = 3.0 * max(0.3, _robot_size(model, body))
            cam.azimuth, cam.elevation = 90.0, -15.0
        else:
            cam.azimuth, cam.elevation = 135.0, -25.0
            cam.distance = 1.2 * float(model.stat.extent)
        self.camera = cam

    def frame(self, qpos: np.ndarray, markers: Sequence[np.ndarray] = ()) -> np.ndarray:
        """(height, width, 3) uint8 RGB image of the model at ``qpos``; ``markers``: world
        positions drawn as small translucent red spheres (a task's goal)."""
        self.data.qpos[:] = qpos
        mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, self.camera)
        scene = self.renderer.scene
        for pos in markers:
            if scene.ngeom >= scene.maxgeom:
                break
            mujoco.mjv_initGeom(scene.geoms[scene.ngeom], int(mujoco.mjtGeom.mjGEOM_SPHERE),
                                np.full(3, 0.03), np.asarray(pos, dtype=np.float64), np.eye(3).ravel(),
                                np.array([1.0, 0.1, 0.1, 0.8], dtype=np.float32))
            scene.ngeom += 1
        return self.renderer.render()

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self) -> "FrameRenderer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _robot_size(model: mujoco.MjModel, body: int) -> float:
    """Rough size (m) of the robot under ``body`` at the reference pose: its geoms' spread."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    root = model.body_rootid[body]
    geoms = np.flatnonzero(model.body_rootid[model.geom_bodyid] == root)
    if not len(geoms):
        return float(model.stat.extent)
    pos = data.geom_xpos[geoms]
    return float(np.max(np.linalg.norm(pos - pos.mean(axis=0), axis=1) + model.geom_rbound[geoms]))


def draw_overlay(rgb: np.ndarray, lines: Sequence[str], alerts: Sequence[str] = ()) -> np.ndarray:
    """BGR frame (what OpenCV writes) with ``lines`` in white at the top left and ``alerts`` in
    red below them."""
    import cv2

    img = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    scale = max(0.3, img.shape[0] / 600.0)
    step = int(round(30 * scale)) + 5
    y = step
    for text, colour in [(t, (255, 255, 255)) for t in lines] + [(t, (60, 60, 255)) for t in alerts]:
        for thickness, c in ((3, (0, 0, 0)), (1, colour)):  # dark outline, then the text
            cv2.putText(img, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, c, thickness, cv2.LINE_AA)
        y += step
    return img


class Mp4Writer:
    """Writes BGR frames to an MP4 file (OpenCV, mp4v); ``frames`` counts them."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int):
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size, self.frames = (width, height), 0
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                       (width, height))
        if not self._writer.isOpened():
            raise VideoError(f"file {self.path}: OpenCV cannot open an mp4v video writer there")

    def write(self, bgr: np.ndarray) -> None:
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            raise VideoError(f"file {self.path}: frame {bgr.shape[1]}x{bgr.shape[0]}, video is "
                             f"{self.size[0]}x{self.size[1]}")
        self._writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def fmt(values: Any, digits: int = 2) -> str:
    """A short vector: ``[0.50 0.00 0.20]``."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return "[" + " ".join(f"{v:.{digits}f}" for v in arr) + "]"


# -- real logs ----------------------------------------------------------------------------------
@dataclass
class QposMap:
    """Where the task's robot-state record keeps each ``qpos`` entry (``(field, element)`` or
    None), the task's reset ``qpos`` for entries no record field holds, and the floating base."""

    entries: list[tuple[str, int] | None]
    default: np.ndarray                  # (nq,)
    free_qpos: int | None                # qpos address of the free joint, if any
    fields: dict[str, int] = field(default_factory=dict)  # record field -> elements per step

    @classmethod
    def probe(cls, task: Any) -> "QposMap":
        """Calls ``task.robot_state`` on distinct probe values to find which record elements copy
        which ``qpos`` entries."""
        m = task.model
        init = task.reset(np.random.default_rng(0), 1)
        qpos = _PROBE + np.arange(m.nq, dtype=np.float64)[None]
        rs = task.robot_state(qpos, np.zeros((1, m.nv)), np.zeros((1, m.nsensordata)),
                              init.task_state, np.zeros((1, task.action_size)))
        where: dict[float, tuple[str, int]] = {}
        sizes = {}
        for name, value in rs.to_dict().items():
            flat = np.asarray(value, dtype=np.float64).reshape(-1)
            sizes[name] = flat.size
            for j, v in enumerate(flat):
                where.setdefault(float(v), (name, j))
        free = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        return cls([where.get(float(v)) for v in qpos[0]], np.asarray(init.qpos[0], dtype=np.float64),
                   int(m.jnt_qposadr[free[0]]) if free else None, sizes)

    def qpos(self, state: Mapping[str, np.ndarray], t: int) -> np.ndarray:
        """``qpos`` at step ``t`` of logged record fields ``state`` (name -> (T, ...))."""
        q = self.default.copy()
        for i, src in enumerate(self.entries):
            if src is not None and src[0] in state:
                q[i] = np.asarray(state[src[0]][t]).reshape(-1)[src[1]]
        return q

    def missing(self, state: Mapping[str, np.ndarray]) -> list[str]:
        """Record fields the qpos needs that ``state`` lacks."""
        return sorted({s[0] for s in self.entries if s is not None and s[0] not in state})

    def base_fixed(self, state: Mapping[str, np.ndarray]) -> bool:
        """A floating base whose position the log does not hold (drawn at the reset position)."""
        if self.free_qpos is None:
            return False
        pos = self.entries[self.free_qpos:self.free_qpos + 3]
        return any(s is None or s[0] not in state for s in pos)


def task_for_log(log: RealLog, model: str | None = None) -> Any:
    """The log's task on the log's robot model (or ``model``, an MJCF path overriding it)."""
    from envs.tasks import make_task

    name = model or log.meta.robot
    try:
        return make_task(log.meta.task, model=name)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise VideoError(f"file {log.path}: cannot build task {log.meta.task!r} on model {name!r} "
                         f"(meta.robot; give another with --model): {exc}") from exc


@dataclass
class VideoResult:
    """What :func:`render_log` wrote."""

    path: Path
    frames: int
    fps: float
    stride: int                          # control steps per frame
    notes: list[str]


def render_log(log: RealLog, out: str | Path, config: VideoConfig | None = None,
               model: str | None = None) -> VideoResult:
    """Renders a real log to an MP4: the logged robot state replayed into the visual model, with
    the command, the return so far (logged rewards), the safety flags raised at each step and the
    step/time drawn on the frames. A frame every :meth:`VideoConfig.stride` steps."""
    config = config or VideoConfig()
    config.validate()
    if len(log) == 0:
        raise VideoError(f"file {log.path}: the log holds no steps to render")
    task = task_for_log(log, model)
    qmap = QposMap.probe(task)
    missing = qmap.missing(log.state)
    if "joint_pos" in missing:
        raise VideoError(f"file {log.path}: field state.joint_pos is missing; rendering needs the "
                         f"joint positions (fields logged: {sorted(log.state)})")
    notes = []
    if qmap.base_fixed(log.state):
        notes.append("base fixed: log has no base_pos")
    others = [f for f in missing if f != "base_pos"]
    if others:
        notes.append("not logged, drawn at reset: " + ", ".join(others))
    dt = log.meta.control_period
    stride = config.stride(dt)
    fps = 1.0 / (stride * dt)
    rewards = log.state.get("reward")
    returns = np.cumsum(np.asarray(rewards, dtype=np.float64).reshape(len(log), -1)[:, 0]) if rewards is not None else None
    command = log.state.get("command")
    with FrameRenderer(visual_model(task), task.root_body, config) as renderer, \
            Mp4Writer(out, fps, config.width, config.height) as writer:
        for t in range(0, len(log), stride):
            lines = [f"{log.meta.task} on {log.meta.robot} ({log.meta.source})",
                     f"step {int(log.step[t])}  t {float(log.t[t] - log.t[0]):.2f} s"]
            if command is not None and np.asarray(command[t]).size:
                lines.append(f"command {fmt(command[t])}")
            lines.append(f"return {returns[t]:.2f}" if returns is not None else "return n/a (no reward logged)")
            lines += notes
            alerts = [k for k, v in log.safety.items() if v.dtype == bool and v[t]]
            counters = [f"{k} {int(v[t])}" for k, v in log.safety.items() if v.dtype != bool and v[t]]
            shown = ["SAFETY: " + ", ".join(alerts)] if alerts else []
            shown += [", ".join(counters)] if counters else []
            writer.write(draw_overlay(renderer.frame(qmap.qpos(log.state, t)), lines, shown))
        frames = writer.frames
    return VideoResult(Path(out), frames, fps, stride, notes)
