"""Named physical parameters, how a vector of their values is written into one world's MjModel,
and the distributions that sample one vector per world at each reset.

Parameter names follow ``kind[:target]``; without a target a parameter acts on every element
of its kind (all bodies, all geoms, all dofs, all actuators).

==============  =========================================  ===========  =========
kind            what it changes                            unit         nominal
==============  =========================================  ===========  =========
mass            body mass and rotational inertia           scale        1
com_x/y/z       body centre-of-mass offset (body frame)    metres       0
friction        geom sliding friction coefficient          scale        1
damping         joint (dof) damping                        scale        1
armature        joint (dof) armature (rotor inertia)       scale        1
kp              position-actuator stiffness                scale        1
kd              position-actuator velocity gain            scale        1
gain            motor strength (whole actuator force)      scale        1
force_limit     actuator force range                       scale        1
gravity         vertical gravity                           m/s^2        model's
latency         control (action) latency                   whole steps  0
obs_latency     observation latency (sensors, not command) whole steps  0
obs_noise       observation noise std (x task scales)      std          0
action_noise    action noise std (policy units)            std          0
push            random horizontal push on the root body    newtons      0
==============  =========================================  ===========  =========

``latency``, ``obs_latency``, ``obs_noise``, ``action_noise`` and ``push`` act in the env, not in MjModel.

Each kind is one entry of :data:`KINDS`, added by :func:`register_kind` on a function that says
which model fields a parameter of that kind writes; a new kind that changes the model is one
such function (in this module or any other).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import mujoco
import numpy as np

from envs.distributions import RandomizationError
from simrl.core.registry import Registry



@dataclass
class FieldWrite:
    """How one parameter writes into a model field: rows, columns and the operation
    (``"scale"`` multiplies the nominal value, ``"offset"`` adds to it, ``"set"`` replaces it)."""

    field: str
    rows: np.ndarray
    cols: tuple[int, ...] | None
    op: str


@dataclass(frozen=True)
class Kind:
    """A randomization kind: what its values mean and how they reach the physics.

    ``resolve(model, target, param_name)`` returns the model-field writes of one parameter of
    this kind (``target`` is the part after ``:``, or None for every element); kinds that act in
    the env (``in_env``: latency, noise, pushes) write nothing into the model and are read by
    :class:`envs.batched.BatchedEnv` through :meth:`ParameterSpace.env_values`.
    """

    name: str
    unit: str
    nominal: float | None = 0.0          # value that leaves the model unchanged (None: the model's)
    bound: str = ""                      # "" | "positive" | "non_negative"
    in_env: bool = False
    resolve: Callable[[mujoco.MjModel, "str | None", str], list[FieldWrite]] | None = None


KINDS: Registry[Kind] = Registry("randomization kind")


def register_kind(name: str, unit: str, *, nominal: float | None = 0.0, bound: str = "",
                  in_env: bool = False) -> Callable:
    """Decorator on a ``resolve(model, target, param_name) -> list[FieldWrite]`` function: adds
    the kind ``name`` (one call per kind; see the built-ins below)."""
    if bound not in ("", "positive", "non_negative"):
        raise ValueError(f"kind {name}: bound must be '', 'positive' or 'non_negative'")

    def add(resolve: Callable | None) -> Callable | None:
        KINDS.register(name, Kind(name, unit, nominal, bound, in_env, resolve))
        return resolve
    return add


def register_env_kind(name: str, unit: str) -> None:
    """An env-level kind (the env reads its per-world value; nothing is written to the model)."""
    register_kind(name, unit, bound="non_negative", in_env=True)(None)


def _ids(model: mujoco.MjModel, objtype: mujoco.mjtObj, count: int, target: str | None,
         param: str, what: str) -> np.ndarray:
    if target is None:
        return np.arange(count)
    idx = mujoco.mj_name2id(model, objtype, target)
    if idx < 0:
        names = [mujoco.mj_id2name(model, objtype, i) for i in range(count)]
        names = [n for n in names if n]
        raise RandomizationError(
            f"{param}: no {what} named {target!r} in the model; {what}s: {', '.join(names)}")
    return np.array([idx])


def _bodies(m: mujoco.MjModel, t: str | None, p: str) -> np.ndarray:
    return _ids(m, mujoco.mjtObj.mjOBJ_BODY, m.nbody, t, p, "body")


def _actuators(m: mujoco.MjModel, t: str | None, p: str) -> np.ndarray:
    if m.nu == 0:
        raise RandomizationError(f"{p}: the model has no actuators")
    return _ids(m, mujoco.mjtObj.mjOBJ_ACTUATOR, m.nu, t, p, "actuator")


def _dofs(m: mujoco.MjModel, t: str | None, p: str) -> np.ndarray:
    if t is None:
        return np.arange(m.nv)
    jnt = _ids(m, mujoco.mjtObj.mjOBJ_JOINT, m.njnt, t, p, "joint")[0]
    start = m.jnt_dofadr[jnt]
    ndof = {0: 6, 1: 3}.get(int(m.jnt_type[jnt]), 1)
    return np.arange(start, start + ndof)


# -- the built-in kinds ---------------------------------------------------------------------------
@register_kind("mass", "scale", nominal=1.0, bound="positive")
def _mass(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    rows = _bodies(m, t, p)
    rows = rows[m.body_mass[rows] > 0]  # the world body has no mass
    return [FieldWrite("body_mass", rows, None, "scale"), FieldWrite("body_inertia", rows, None, "scale")]


def _com(axis: int) -> Callable:
    def resolve(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
        return [FieldWrite("body_ipos", _bodies(m, t, p), (axis,), "offset")]
    return resolve


for _axis, _name in enumerate(("com_x", "com_y", "com_z")):
    register_kind(_name, "m")(_com(_axis))


@register_kind("friction", "scale", nominal=1.0, bound="non_negative")
def _friction(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    return [FieldWrite("geom_friction", _ids(m, mujoco.mjtObj.mjOBJ_GEOM, m.ngeom, t, p, "geom"), (0,), "scale")]


@register_kind("damping", "scale", nominal=1.0, bound="non_negative")
def _damping(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    return [FieldWrite("dof_damping", _dofs(m, t, p), None, "scale")]


@register_kind("armature", "scale", nominal=1.0, bound="non_negative")
def _armature(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    return [FieldWrite("dof_armature", _dofs(m, t, p), None, "scale")]


@register_kind("kp", "scale", nominal=1.0, bound="non_negative")
def _kp(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    rows = _actuators(m, t, p)
    return [FieldWrite("actuator_gainprm", rows, (0,), "scale"), FieldWrite("actuator_biasprm", rows, (1,), "scale")]


@register_kind("kd", "scale", nominal=1.0, bound="non_negative")
def _kd(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    return [FieldWrite("actuator_biasprm", _actuators(m, t, p), (2,), "scale")]


@register_kind("gain", "scale", nominal=1.0, bound="non_negative")
def _gain(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    rows = _actuators(m, t, p)
    return [FieldWrite("actuator_gainprm", rows, (0,), "scale"),
            FieldWrite("actuator_biasprm", rows, (0, 1, 2), "scale")]


@register_kind("force_limit", "scale", nominal=1.0, bound="non_negative")
def _force_limit(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    return [FieldWrite("actuator_forcerange", _actuators(m, t, p), None, "scale")]


@register_kind("gravity", "m/s^2", nominal=None)
def _gravity(m: mujoco.MjModel, t: str | None, p: str) -> list[FieldWrite]:
    if t is not None:
        raise RandomizationError(f"{p}: gravity takes no target")
    return [FieldWrite("gravity", np.array([2]), None, "set")]


for _name, _unit in (("latency", "whole control steps"), ("obs_latency", "whole control steps"),
                     ("obs_noise", "std (x task scales)"),
                     ("action_noise", "std (policy units)"), ("push", "N")):
    register_env_kind(_name, _unit)



@dataclass(frozen=True)
class ParamRange:
    """One randomized parameter: its name, nominal value and the range it may take."""

    name: str
    low: float
    high: float
    nominal: float

    def __post_init__(self) -> None:
        kind = self.name.split(":", 1)[0]
        bound = _kind(self.name).bound
        if not all(math.isfinite(v) for v in (self.low, self.high, self.nominal)):
            raise RandomizationError(f"{self.name}: low, high and nominal must be finite")
        if self.low > self.high:
            raise RandomizationError(f"{self.name}: low {self.low} > high {self.high}")
        if bound == "positive" and self.low <= 0:
            raise RandomizationError(
                f"{self.name}: {kind} scale must be positive (low={self.low}); "
                "a non-positive mass is not physical")
        if bound == "non_negative" and self.low < 0:
            raise RandomizationError(f"{self.name}: {kind} must be >= 0 (low={self.low})")
        if not self.low <= self.nominal <= self.high:
            raise RandomizationError(
                f"{self.name}: nominal {self.nominal} outside [{self.low}, {self.high}]")

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def target(self) -> str | None:
        parts = self.name.split(":", 1)
        return parts[1] if len(parts) == 2 else None


def _kind(param: str) -> Kind:
    """The kind of the parameter named ``param`` (``kind[:target]``)."""
    kind = param.split(":", 1)[0]
    if kind not in KINDS:
        raise RandomizationError(f"unknown randomization parameter kind {kind!r} in {param!r}; "
                                 f"known kinds: {', '.join(KINDS.names())}")
    return KINDS.get(kind)


def default_nominal(name: str, model: mujoco.MjModel) -> float:
    """The value of a parameter that leaves ``model`` unchanged."""
    kind = _kind(name)
    if kind.nominal is not None:
        return float(kind.nominal)
    return float(model.opt.gravity[2])


def make_ranges(spec: dict[str, Sequence[float]], model: mujoco.MjModel) -> list[ParamRange]:
    """Builds ranges from ``{name: (low, high)}`` or ``{name: (low, high, nominal)}``.

    Without a nominal, the model's own value is used when it lies in the range, else the midpoint.
    """
    if not isinstance(spec, Mapping):
        raise RandomizationError(f"randomization ranges must be a mapping {{param: [low, high]}}, "
                                 f"got {type(spec).__name__}")
    ranges = []
    for name, raw in spec.items():
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
            raise RandomizationError(f"{name}: expected [low, high] or [low, high, nominal], got {raw!r}")
        try:
            values = [float(v) for v in raw]
        except (TypeError, ValueError):
            raise RandomizationError(f"{name}: expected numbers [low, high] or [low, high, nominal], "
                                     f"got {list(raw)!r}") from None
        if len(values) not in (2, 3):
            raise RandomizationError(f"{name}: expected (low, high) or (low, high, nominal), got {values}")
        low, high = values[0], values[1]
        if len(values) == 3:
            nominal = values[2]
        else:
            nominal = default_nominal(name, model)
            if not low <= nominal <= high:
                nominal = 0.5 * (low + high)
        ranges.append(ParamRange(name, low, high, nominal))
    return ranges


class ParameterSpace:
    """Resolves parameter names against a model and writes value vectors into model copies.

    The model given here is the nominal one: it is never modified, and every ``apply`` starts
    from its values, so a world's parameters never depend on what it ran with before.
    """

    def __init__(self, ranges: Sequence[ParamRange], model: mujoco.MjModel):
        names = [r.name for r in ranges]
        if len(set(names)) != len(names):
            raise RandomizationError(f"duplicate randomization parameters in {names}")
        self.ranges = list(ranges)
        self.names = tuple(names)
        self.nominal_model = model
        self.writes: list[list[FieldWrite]] = [self._resolve(r, model) for r in ranges]
        fields = {w.field for ws in self.writes for w in ws}
        self._nominal_fields = {f: self._get(model, f).copy() for f in fields}
        kinds = [r.kind for r in ranges]
        env_kinds = [name for name, kind in KINDS.items() if kind.in_env]
        self.env_index = {k: [i for i, kk in enumerate(kinds) if kk == k] for k in env_kinds}

    @property
    def dim(self) -> int:
        return len(self.ranges)

    @property
    def low(self) -> np.ndarray:
        return np.array([r.low for r in self.ranges], dtype=np.float64)

    @property
    def high(self) -> np.ndarray:
        return np.array([r.high for r in self.ranges], dtype=np.float64)

    @property
    def nominal(self) -> np.ndarray:
        return np.array([r.nominal for r in self.ranges], dtype=np.float64)

    @staticmethod
    def _get(model: mujoco.MjModel, field: str) -> np.ndarray:
        if field == "gravity":
            return model.opt.gravity
        return getattr(model, field)

    def _resolve(self, r: ParamRange, m: mujoco.MjModel) -> list[FieldWrite]:
        kind = KINDS.get(r.kind)
        if kind.in_env:
            if r.target is not None:
                raise RandomizationError(f"{r.name}: {r.kind} takes no target")
            return []
        return kind.resolve(m, r.target, r.name)

    def check(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.dim:
            raise RandomizationError(
                f"parameter values must have shape (n, {self.dim}) for {self.names}, got {values.shape}")
        if not np.isfinite(values).all():
            raise RandomizationError("parameter values contain NaN or inf")
        return values

    def apply(self, model: mujoco.MjModel, values: np.ndarray) -> None:
        """Writes one parameter vector into ``model`` (a copy of the nominal model)."""
        for field, nominal in self._nominal_fields.items():
            self._get(model, field)[...] = nominal
        for v, writes in zip(values, self.writes):
            for w in writes:
                arr = self._get(model, w.field)
                sel = (w.rows,) if w.cols is None else np.ix_(w.rows, w.cols)
                if w.op == "scale":
                    arr[sel] *= v
                elif w.op == "offset":
                    arr[sel] += v
                else:
                    arr[sel] = v

    def env_values(self, values: np.ndarray, kind: str, default: float = 0.0) -> np.ndarray:
        """Per-world value of an env-level kind (latency, noise, push); ``default`` if absent."""
        idx = self.env_index[kind]
        if not idx:
            return np.full(values.shape[0], default)
        return values[:, idx[0]]
