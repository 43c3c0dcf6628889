"""Name -> entry tables that modules fill themselves.

Tasks, randomization kinds, distributions, algorithms, robot back-ends and commands each have
one :class:`Registry`. An entry registers itself where it is defined (a decorator or one call
in its own module); a registry given a ``package`` imports every public module of that package
on its first lookup, so adding a built-in entry is one new module and nothing else. Entries
registered from anywhere else (a user's file, a test) work the same way.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name. ``what`` names the kind of entry in error messages; ``package``: the
    package whose modules define the built-in entries (imported on first lookup)."""

    def __init__(self, what: str, package: str | None = None):
        self.what = what
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    def register(self, name: str, entry: T | None = None, *, replace: bool = False
                 ) -> T | Callable[[T], T]:
        """``registry.register("name", entry)``, or ``@registry.register("name")`` as a decorator.
        Registering another entry under a taken name is an error unless ``replace``."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.what} name must be a non-empty string, got {name!r}")

        def add(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old is not obj and not replace and not _same_definition(old, obj):
                raise ValueError(f"{self.what} {name!r} is already registered ({_describe(old)})")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        """Removes ``name`` (tests that register toy entries clean up with this)."""
        self._entries.pop(name, None)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name is a ValueError listing the known ones."""
        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}"
                             ) from None

    def names(self) -> list[str]:
        self._discover()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._discover()
        return list(self._entries.items())

    def values(self) -> list[T]:
        self._discover()
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)


def _same_definition(old: object, new: object) -> bool:
    """A module imported twice (``python -m`` plus an import) defines equal entries anew."""
    return (getattr(old, "__module__", None) == getattr(new, "__module__", None)
            and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)
            and getattr(old, "__qualname__", None) is not None)


def _describe(obj: object) -> str:
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(obj)
