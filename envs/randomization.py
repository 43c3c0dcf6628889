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
latency         control latency                            whole steps  0
obs_noise       observation noise std (x task scales)      std          0
action_noise    action noise std (policy units)            std          0
push            random horizontal push on the root body    newtons      0
==============  =========================================  ===========  =========

``latency``, ``obs_noise``, ``action_noise`` and ``push`` act in the env, not in MjModel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import mujoco
import numpy as np

SCALE_KINDS = ("mass", "friction", "damping", "armature", "kp", "kd", "gain", "force_limit")
OFFSET_KINDS = ("com_x", "com_y", "com_z")
ENV_KINDS = ("latency", "obs_noise", "action_noise", "push")
ABSOLUTE_KINDS = ("gravity",)
KINDS = SCALE_KINDS + OFFSET_KINDS + ABSOLUTE_KINDS + ENV_KINDS
# Kinds whose value must stay strictly positive (a zero mass or gain makes no physical sense).
_POSITIVE = ("mass",)
# Kinds whose value must stay non-negative.
_NON_NEGATIVE = ("friction", "damping", "armature", "kp", "kd", "gain", "force_limit",
                 "latency", "obs_noise", "action_noise", "push")


class RandomizationError(ValueError):
    """A randomization parameter, range or distribution is invalid."""


@dataclass(frozen=True)
class ParamRange:
    """One randomized parameter: its name, nominal value and the range it may take."""

    name: str
    low: float
    high: float
    nominal: float

    def __post_init__(self) -> None:
        kind = self.name.split(":", 1)[0]
        if kind not in KINDS:
            raise RandomizationError(
                f"unknown randomization parameter kind {kind!r} in {self.name!r}; "
                f"known kinds: {', '.join(KINDS)}")
        if not all(math.isfinite(v) for v in (self.low, self.high, self.nominal)):
            raise RandomizationError(f"{self.name}: low, high and nominal must be finite")
        if self.low > self.high:
            raise RandomizationError(f"{self.name}: low {self.low} > high {self.high}")
        if kind in _POSITIVE and self.low <= 0:
            raise RandomizationError(
                f"{self.name}: {kind} scale must be positive (low={self.low}); "
                "a non-positive mass is not physical")
        if kind in _NON_NEGATIVE and self.low < 0:
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


def default_nominal(name: str, model: mujoco.MjModel) -> float:
    """The value of a parameter that leaves ``model`` unchanged."""
    kind = name.split(":", 1)[0]
    if kind in SCALE_KINDS:
        return 1.0
    if kind == "gravity":
        return float(model.opt.gravity[2])
    return 0.0


def make_ranges(spec: dict[str, Sequence[float]], model: mujoco.MjModel) -> list[ParamRange]:
    """Builds ranges from ``{name: (low, high)}`` or ``{name: (low, high, nominal)}``.

    Without a nominal, the model's own value is used when it lies in the range, else the midpoint.
    """
    ranges = []
    for name, values in spec.items():
        values = [float(v) for v in values]
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


@dataclass
class _FieldWrite:
    """How one parameter writes into a model field: rows, columns and the operation."""

    field: str
    rows: np.ndarray
    cols: tuple[int, ...] | None
    op: str  # "scale", "offset" or "set"


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
        self.writes: list[list[_FieldWrite]] = [self._resolve(r, model) for r in ranges]
        fields = {w.field for ws in self.writes for w in ws}
        self._nominal_fields = {f: self._get(model, f).copy() for f in fields}
        kinds = [r.kind for r in ranges]
        self.env_index = {k: [i for i, kk in enumerate(kinds) if kk == k] for k in ENV_KINDS}

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

    def _resolve(self, r: ParamRange, m: mujoco.MjModel) -> list[_FieldWrite]:
        k, t = r.kind, r.target
        if k in ENV_KINDS:
            if t is not None:
                raise RandomizationError(f"{r.name}: {k} takes no target")
            return []
        if k == "gravity":
            if t is not None:
                raise RandomizationError(f"{r.name}: gravity takes no target")
            return [_FieldWrite("gravity", np.array([2]), None, "set")]
        if k == "mass":
            rows = _ids(m, mujoco.mjtObj.mjOBJ_BODY, m.nbody, t, r.name, "body")
            rows = rows[m.body_mass[rows] > 0]  # the world body has no mass
            return [_FieldWrite("body_mass", rows, None, "scale"),
                    _FieldWrite("body_inertia", rows, None, "scale")]
        if k in OFFSET_KINDS:
            rows = _ids(m, mujoco.mjtObj.mjOBJ_BODY, m.nbody, t, r.name, "body")
            return [_FieldWrite("body_ipos", rows, ("xyz".index(k[-1]),), "offset")]
        if k == "friction":
            rows = _ids(m, mujoco.mjtObj.mjOBJ_GEOM, m.ngeom, t, r.name, "geom")
            return [_FieldWrite("geom_friction", rows, (0,), "scale")]
        if k in ("damping", "armature"):
            if t is None:
                rows = np.arange(m.nv)
            else:
                jnt = _ids(m, mujoco.mjtObj.mjOBJ_JOINT, m.njnt, t, r.name, "joint")[0]
                start = m.jnt_dofadr[jnt]
                ndof = {0: 6, 1: 3}.get(int(m.jnt_type[jnt]), 1)
                rows = np.arange(start, start + ndof)
            return [_FieldWrite(f"dof_{k}", rows, None, "scale")]
        rows = _ids(m, mujoco.mjtObj.mjOBJ_ACTUATOR, m.nu, t, r.name, "actuator")
        if m.nu == 0:
            raise RandomizationError(f"{r.name}: the model has no actuators")
        if k == "kp":
            return [_FieldWrite("actuator_gainprm", rows, (0,), "scale"),
                    _FieldWrite("actuator_biasprm", rows, (1,), "scale")]
        if k == "kd":
            return [_FieldWrite("actuator_biasprm", rows, (2,), "scale")]
        if k == "gain":
            return [_FieldWrite("actuator_gainprm", rows, (0,), "scale"),
                    _FieldWrite("actuator_biasprm", rows, (0, 1, 2), "scale")]
        if k == "force_limit":
            return [_FieldWrite("actuator_forcerange", rows, None, "scale")]
        raise RandomizationError(f"{r.name}: unhandled kind {k}")  # pragma: no cover

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


class Distribution(Protocol):
    """A distribution over parameter vectors: what DR and DORAEMON hand to the env."""

    names: tuple[str, ...]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...
    def log_prob(self, x: np.ndarray) -> np.ndarray: ...
    def entropy(self) -> float: ...


class Fixed:
    """Every world gets the same vector (``dr=none`` uses the nominal values)."""

    def __init__(self, names: Sequence[str], values: Sequence[float]):
        self.names = tuple(names)
        self.values = np.asarray(values, dtype=np.float64)
        if self.values.shape != (len(self.names),):
            raise RandomizationError(f"Fixed: {len(self.names)} names but values of shape {self.values.shape}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.tile(self.values, (n, 1))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        return np.where(np.all(x == self.values, axis=1), 0.0, -np.inf)

    def entropy(self) -> float:
        """A point mass has differential entropy minus infinity."""
        return -math.inf if len(self.names) else 0.0

    def to_dict(self) -> dict:
        return {"type": "fixed", "names": list(self.names), "values": self.values.tolist()}


class Uniform:
    """Independent uniform distribution per dimension; a dimension with low == high is fixed."""

    def __init__(self, names: Sequence[str], low: Sequence[float], high: Sequence[float]):
        self.names = tuple(names)
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != (len(self.names),) or self.high.shape != self.low.shape:
            raise RandomizationError("Uniform: names, low and high must have the same length")
        bad = [n for n, lo, hi in zip(self.names, self.low, self.high) if lo > hi]
        if bad:
            raise RandomizationError(f"Uniform: low > high for {bad}")
        self._width = self.high - self.low
        self._free = self._width > 0

    @classmethod
    def from_ranges(cls, ranges: Sequence[ParamRange]) -> "Uniform":
        return cls([r.name for r in ranges], [r.low for r in ranges], [r.high for r in ranges])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.low + self._width * rng.random((n, len(self.names)))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        inside = np.all((x >= self.low) & (x <= self.high), axis=1)
        return np.where(inside, -np.log(self._width[self._free]).sum(), -np.inf)

    def entropy(self) -> float:
        return float(np.log(self._width[self._free]).sum())

    def to_dict(self) -> dict:
        return {"type": "uniform", "names": list(self.names),
                "low": self.low.tolist(), "high": self.high.tolist()}


def distribution_from_dict(d: dict) -> Distribution:
    """Rebuilds a distribution saved with ``to_dict`` (checkpoint specs store them this way)."""
    kind = d.get("type")
    if kind == "fixed":
        return Fixed(d["names"], d["values"])
    if kind == "uniform":
        return Uniform(d["names"], d["low"], d["high"])
    if kind == "beta":
        from simrl.dr.beta import BetaDistribution  # registered by simrl.dr, optional here
        return BetaDistribution.from_dict(d)
    raise RandomizationError(f"unknown distribution type {kind!r}")
