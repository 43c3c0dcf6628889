"""Dataclass configs on the command line and in JSON.

Every field of a config dataclass becomes an option ``--{section}.{field-name}`` (nested
dataclasses nest: ``--ppo.network.actor-hidden 256 256``); options that are not given do not
appear in the parsed namespace, so :func:`overrides_from_args` returns exactly what the user
set. JSON round trips keep non-finite floats as the strings ``"inf"``, ``"-inf"`` and ``"nan"``
(strict JSON has no infinity).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from typing import Any, Iterable, Mapping

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


def _fields(classes: Iterable[type], prefix: str) -> dict[str, tuple[Any, str, Any]]:
    """Dotted field path -> (type hint, owner class names, default), over the union of
    ``classes``' fields (the default is that of the first class with the field)."""
    out: dict[str, tuple[Any, str, Any]] = {}
    for cls in classes:
        hints, default = _hints(cls), cls()
        for f in dataclasses.fields(cls):
            path, hint, value = f"{prefix}.{f.name}", hints[f.name], getattr(default, f.name)
            if dataclasses.is_dataclass(hint):
                for sub, info in _fields([hint], path).items():
                    out.setdefault(sub, info)
            elif path in out:
                hint_, owners, value_ = out[path]
                out[path] = (hint_, f"{owners}, {cls.__name__}", value_)
            else:
                out[path] = (hint, cls.__name__, value)
    return out


def add_arguments(parser: argparse.ArgumentParser | Any, classes: type | Iterable[type],
                  prefix: str, title: str | None = None, flat: bool = False,
                  helps: Mapping[str, str] | None = None) -> None:
    """Adds ``--{prefix}.{field}`` options (``--{field}`` when ``flat``) for every field of the
    dataclass(es) ``classes`` (the union of their fields when several); values are converted
    later by :func:`apply_overrides`. ``helps``: help texts by field path (without prefix)."""
    classes = [classes] if isinstance(classes, type) else list(classes)
    group = parser.add_argument_group(title or f"{prefix} options")
    for path, (hint, owners, default) in _fields(classes, prefix).items():
        name = path[len(prefix) + 1:]
        base = _optional_inner(hint) or hint
        text = (helps or {}).get(name)
        if text is None:
            text = (f"default: {json.dumps(to_jsonable(default))}" if len(classes) == 1
                    else f"in {owners}")
        kwargs: dict[str, Any] = {"dest": path, "default": argparse.SUPPRESS,
                                  "help": f"{text} [{_type_name(hint)}]"}
        if typing.get_origin(base) is tuple:
            kwargs["nargs"] = "+"
        group.add_argument("--" + (name if flat else path).replace("_", "-"), metavar="V", **kwargs)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def overrides_from_args(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """The ``--{prefix}.*`` options the user gave, as dotted keys without the prefix (raw
    strings or lists of strings; :func:`apply_overrides` converts them)."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in vars(args).items() if k.startswith(start)}
