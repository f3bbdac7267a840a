"""Glue for the package facade, ``motia/__init__.py``: nothing else imports this module.

``motia.state`` has two meanings: the ``state(...)`` trigger constructor exported by the facade, and the
``motia.state`` subpackage. :class:`PackageCallable` lets one object be both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any, Generic, ParamSpec, TypeVar

__all__ = ["PackageCallable"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class PackageCallable(Generic[_P, _R]):
    """A function that is also a package: ``motia.state``, the ``state(...)`` trigger constructor and the
    ``motia.state`` subpackage, which share the name.

    Calling it calls ``constructor`` (same signature for mypy; same docs, name and ``inspect.signature``
    through ``__wrapped__``); any other attribute comes from ``package``, so both
    ``motia.state(scope="orders")`` and ``motia.state.manager.StateManager`` work.
    """

    def __init__(self, constructor: Callable[_P, _R], package: ModuleType) -> None:
        functools.update_wrapper(self, constructor)
        self._constructor = constructor
        self._package = package

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return self._constructor(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_constructor", "_package"):
            raise AttributeError(name)
        return getattr(self._package, name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self._package)})

    def __repr__(self) -> str:
        return repr(self._constructor)
