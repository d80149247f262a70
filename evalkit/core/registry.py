"""One small registry for upstreams, tasks and metrics, with "did you mean" on typos."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from evalkit.core.errors import EvalkitError


def suggest(name: str, choices) -> str:
    """' Did you mean X?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Registry:
    """Maps names to objects; entries may be lazy `"module:attr"` strings."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self._entries: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable:
        """Register `obj` under `name`; without `obj`, acts as a decorator."""

        def add(o: Any) -> Any:
            if name in self._entries and self._entries[name] is not o:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise EvalkitError(
                f"Unknown {self.kind} {name!r}.{suggest(name, self._entries)} "
                f"`evalkit ls {self.plural}` lists them."
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)
