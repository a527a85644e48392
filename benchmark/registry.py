"""A name -> entry table for a plug point (losses, models, datasets; regularizers and metric kinds
have their own): one entry per name, looked up by that name everywhere, so that adding one is one
entry in one place (its module) plus its conf/<group>/<name>.yaml."""
from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name. A second entry under a name is refused: a silent replacement would
    swap what every run of that name trains, with nothing to show for it."""

    def __init__(self, what: str):
        self.what = what  # "loss", "model", "dataset": how messages and config keys name it
        self._entries: dict[str, T] = {}

    def add(self, entry: T) -> T:
        name = entry.name
        if name in self._entries:
            raise ValueError(f"two {self.what} entries are named {name!r}: names must be unique "
                             f"(conf/{self.what}/{name}.yaml selects one)")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Take an entry out again (a test that adds a throwaway one)."""
        del self._entries[name]

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"unknown {self.what} {name!r}; valid: {self.valid()}")
        return self._entries[name]

    def __iter__(self):
        return iter(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def values(self):
        return self._entries.values()

    def valid(self) -> str:
        return ", ".join(self._entries)
