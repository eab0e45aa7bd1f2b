"""A name -> spec mapping filled on first use by importing the modules of a package.

Registries are discovered lazily: a module that defines a spec imports the registry module (for the
spec class), so discovering at import time would find that module half-initialised.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any


class LazyRegistry(Mapping[str, Any]):
    def __init__(self, package: str, collect: Callable[[Any], list[Any]], skip: tuple[str, ...] = (),
                 order: Callable[[str], Any] | None = None) -> None:
        self._package = package
        self._collect = collect  # module -> the specs it defines (each with a .name)
        self._skip = skip
        self._order = order
        self._items: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._items is None:
            pkg = importlib.import_module(self._package)
            found: dict[str, Any] = {}
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                if info.name in self._skip:
                    continue
                module = importlib.import_module(f"{self._package}.{info.name}")
                for spec in self._collect(module):
                    if spec.name in found:
                        raise RuntimeError(f"two entries of {self._package} are named {spec.name!r}")
                    found[spec.name] = spec
            keys = sorted(found, key=self._order) if self._order else list(found)
            self._items = {k: found[k] for k in keys}
        return self._items

    def __getitem__(self, key: str) -> Any:  # noqa: ANN401
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"LazyRegistry({self._package}: {', '.join(self._load())})"
