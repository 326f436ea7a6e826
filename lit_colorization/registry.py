"""One registry style for every named choice (models, probe protocols, commands, initialisations), after timm's.

A ``Registry`` maps names to things; ``register`` adds one (``decorator`` does it as a decorator), ``get`` looks a name up and
fails in one line listing the known names, ``names`` lists them sorted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Entry = TypeVar("Entry")


class UnknownNameError(ValueError):
    """A name that no entry of a registry has; the message lists the names it has."""


class Registry(Generic[Entry]):
    """Named entries of one kind (``kind`` names it in errors, e.g. "model")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, entry: Entry, *, replace: bool = False) -> Entry:
        """Register ``entry`` under ``name`` and return it; a taken name is an error.

        ``replace=True`` lets the same name be registered again (a module re-imported by ``python -m``).
        """
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} name {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[Entry], Entry]:
        """A decorator registering what it decorates under ``name``."""
        return lambda entry: self.register(name, entry)

    def get(self, name: str) -> Entry:
        """The entry named ``name``; an unknown name is an error listing the known ones."""
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def values(self) -> list[Entry]:
        """The entries, in the order of their sorted names."""
        return [self._entries[name] for name in self.names()]

    def items(self) -> list[tuple[str, Entry]]:
        """(name, entry) pairs, sorted by name."""
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
