"""A name -> entry table, the one kind of registry every plug point uses: losses (LOSSES),
models (MODELS), datasets (DATASETS), regularizers (regularizers.REGISTRY), metric kinds
(benchmark.contract.METRIC_KINDS) and their compute functions (benchmark.evaluation.COMPUTE).
One entry per name, looked up by that name everywhere. The built-ins are registered by the
same public call a user's addition makes (torch-fidelity registers its own feature
extractors so), so adding one is that call in one place plus its conf/<group>/<name>.yaml:

    from benchmark.losses import LOSSES, Loss
    LOSSES.add(Loss("lsgan", d=..., g=...))         # an entry that carries its name
    COMPUTE.add(compute_spread, name="spread")      # or a name given beside it

`add` returns the entry, so `@REGISTRY.add` decorates a class that has a `name`.

This module imports nothing, so the torch-free contract (analysis reads it) and regularizers/
(which must not pull in the trainer) can both import it without a cycle; see docs/design.md.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name. A second entry under a name is refused: a silent replacement would
    swap what every run of that name trains, with nothing to show for it."""

    def __init__(self, what: str, selected_by: str | None = None):
        self.what = what  # "loss", "model", "dataset", "regularizer", "metric kind": how messages name it
        # how a run picks an entry, for the refusal of a second one under a name
        self.selected_by = selected_by or f"conf/{what}/<name>.yaml"
        self._entries: dict[str, T] = {}

    def add(self, entry: T, name: str | None = None) -> T:
        """Register `entry` under `name` (default: its own `.name`) and return it."""
        name = entry.name if name is None else name
        if name in self._entries:
            raise ValueError(f"two {self.what} entries are named {name!r}: names must be unique "
                             f"({self.selected_by} selects one)")
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

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def values(self):
        return self._entries.values()

    def items(self):
        return self._entries.items()

    def valid(self) -> str:
        return ", ".join(self._entries)
