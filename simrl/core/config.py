"""Dataclass configs to and from JSON (torch-free).

:func:`from_dict` and :func:`apply_overrides` rebuild a config dataclass from parsed JSON or
dotted overrides, converting each value to its field's type and naming the field in every
error. JSON round trips keep non-finite floats as the strings ``"inf"``, ``"-inf"`` and
``"nan"`` (strict JSON has no infinity).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, Mapping

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def to_jsonable(value: Any) -> Any:
    """Dataclasses, tuples, numpy values and non-finite floats as strict-JSON-compatible data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(hint: Any) -> Any | None:
    """``X`` for ``X | None`` / ``Optional[X]``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def convert(value: Any, hint: Any) -> Any:
    """``value`` (parsed JSON or a command-line string) converted to the type ``hint``."""
    inner = _optional_inner(hint)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return convert(value, inner)
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, str):
            low = value.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"expected a boolean (true/false), got {value!r}")
            return low in ("true", "1", "yes")
        return bool(value)
    if hint is float:
        if isinstance(value, str):
            return _NONFINITE[value] if value in _NONFINITE else float(value)
        return float(value)
    if hint in (int, str):
        return hint(value)
    if origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str):
            value = json.loads(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0]) for v in value)
        if len(value) != len(args):
            raise ValueError(f"expected {len(args)} values, got {len(value)}")
        return tuple(convert(v, a) for v, a in zip(value, args))
    if origin in (dict, Mapping) or hint is dict:
        if isinstance(value, str):
            value = json.loads(value)
        args = typing.get_args(hint)
        if len(args) == 2:
            return {convert(k, args[0]): convert(v, args[1]) for k, v in value.items()}
        return dict(value)
    return value


def from_dict(default: Any, data: Mapping[str, Any], where: str = "config") -> Any:
    """A copy of the dataclass instance ``default`` with the fields in ``data`` replaced
    (recursively for nested dataclasses); unknown fields are an error."""
    hints = _hints(type(default))
    names = {f.name for f in dataclasses.fields(default)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; known: {sorted(names)}")
    changes = {}
    for key, value in data.items():
        current = getattr(default, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = from_dict(current, value, f"{where}.{key}")
        else:
            try:
                changes[key] = convert(value, hints[key])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}.{key}: {exc}") from None
    return dataclasses.replace(default, **changes)


def apply_overrides(default: Any, overrides: Mapping[str, Any], where: str = "config") -> Any:
    """Like :func:`from_dict` with dotted keys: ``{"network.activation": "elu"}``."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(default, nested, where)


def validate(config: Any, where: str = "") -> Any:
    """Checks a config dataclass and every nested one: no NaN in float fields, then each
    class's own ``validate()`` (range checks). Errors are ValueErrors that name the field by
    its dotted path (``ppo.gamma: must be in (0, 1], got nan``). Returns ``config``."""
    for f in dataclasses.fields(config):
        value, path = getattr(config, f.name), f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, path)
        elif _has_nan(value):
            raise ValueError(f"{path}: must be a number, got nan")
    check = getattr(config, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}" if where else str(exc)) from None
    return config


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (tuple, list)):
        return any(_has_nan(v) for v in value)
    if isinstance(value, Mapping):
        return any(_has_nan(v) for v in value.values())
    return False


def require(ok: bool, name: str, message: str) -> None:
    """For ``validate()`` methods: a ValueError ``"{name}: {message}"`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name}: {message}")
