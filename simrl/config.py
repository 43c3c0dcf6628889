"""Dataclass configs on the command line: every field of a config dataclass becomes an option
``--{section}.{field-name}`` (nested dataclasses nest: ``--ppo.network.actor-hidden 256 256``);
options that are not given do not appear in the parsed namespace, so :func:`overrides_from_args`
returns exactly what the user set (converted later by :func:`simrl.core.config.apply_overrides`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any, Iterable, Mapping

from simrl.core.config import _hints, _optional_inner, to_jsonable


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
