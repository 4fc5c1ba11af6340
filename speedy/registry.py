"""Name -> "module:attribute" registries, imported only when a name is used.

Families, tasks and backends register here by a string, so listing or naming them imports
nothing heavy (torch, a model's upstream package, a backend's runtime); a plugin from another
distribution joins through its entry point group (`speedy.families`, `speedy.tasks`,
`speedy.backends`) the same way.
"""

import importlib
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from speedy.errors import SpeedyError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, each a "module:attribute" reference resolved on first use."""

    def __init__(self, what: str, group: str, references: dict[str, str]) -> None:
        self.what = what  # "model family": for messages
        self.group = group  # the entry point group of plugins from other distributions
        self._references = dict(references)
        self._loaded: dict[str, T] = {}
        self._plugins_read = False

    def register(self, name: str, entry: "T | str") -> None:
        """Add an entry: the object itself (a test's), or its "module:attribute" reference."""
        self._loaded.pop(name, None)
        if isinstance(entry, str):
            self._references[name] = entry
        else:
            self._references[name] = f"<registered {name}>"
            self._loaded[name] = entry

    def names(self) -> list[str]:
        """Every registered name, sorted (importing none of them)."""
        self._read_plugins()
        return sorted(self._references)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def get(self, name: str) -> T:
        """The entry registered under `name`, imported now if it was not yet."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self.names():
            raise SpeedyError(
                f"unknown {self.what} '{name}'", f"use one of: {', '.join(self.names())}"
            )
        module_name, _, attribute = self._references[name].partition(":")
        entry = getattr(importlib.import_module(module_name), attribute)
        self._loaded[name] = entry
        return entry

    def _read_plugins(self) -> None:
        if self._plugins_read:
            return
        self._plugins_read = True
        for point in entry_points(group=self.group):
            self._references.setdefault(point.name, point.value)
