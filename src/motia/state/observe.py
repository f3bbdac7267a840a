"""Where observability meets the state floor: the trace a write carries into its outbox row, and the hook
that times and traces every state and stream operation.

Both cost nothing unless the runtime's telemetry (``motia.runtime.telemetry``, imported only when tracing
is on) installs them: :data:`current_trace` is then the W3C ``traceparent`` of the running span, and
:func:`set_observer` gives the operations an observer. Nothing here imports OpenTelemetry: this floor
only knows that a write may carry an opaque trace string and that an operation may be observed.

Why a context variable: a write's change event is recorded by the backend, possibly in a batch committed
by another task (SQLite's group commit) or pipelined (Redis). Every backend reads :data:`current_trace`
when the write is *called*, in the caller's context, and stores it with the event in the same transaction
as the write, so a delivery of that event continues the caller's trace (issue 17).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, Protocol, TypeVar, cast

__all__ = ["Observer", "current_trace", "observed", "observer", "set_observer"]

#: The ``traceparent`` (W3C trace context) of the work running in this context; backends store it with
#: the change events of the writes made here. ``None`` when tracing is off.
current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("motia_traceparent", default=None)


class Observer(Protocol):
    """Times and traces one operation: ``kind`` is ``"state"`` or ``"stream"``, ``op`` its name (``get``,
    ``set``...), ``target`` the scope (state) or ``(stream, group)`` (stream), ``key`` the key or item id
    (``None`` for an operation on a whole scope or group), ``backend`` the store's kind (``sqlite``...).
    The context manager sees the operation's exception, if any."""

    def operation(
        self, kind: str, op: str, backend: str, target: str | tuple[str, str], key: str | None
    ) -> AbstractContextManager[Any]: ...


#: The installed observer (``None``: operations run unobserved, which is the default and costs one check).
observer: Observer | None = None


def set_observer(new: Observer | None) -> Observer | None:
    """Install ``new`` (``None`` removes it); return the one it replaces. Every :func:`observed` method is
    switched to its observed form or back to the bare method."""
    global observer
    old, observer = observer, new
    for owner, name, method, watched in _switches:
        setattr(owner, name, method if new is None else watched)
    return old


_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Every :func:`observed` method: its class, its name, the bare method and its observed form.
_switches: list[tuple[type, str, Callable[..., Any], Callable[..., Any]]] = []


class _Observed:
    """What :func:`observed` puts in the class body: when the class is made (``__set_name__``) it replaces
    itself with the bare method, or with its observed form if an observer is installed, and is remembered so
    that :func:`set_observer` switches it.

    Why switch, rather than one wrapper that checks for an observer on every call: while nothing observes
    (the default), a state operation is then the method itself, without a wrapper's frame and its argument
    packing on every ``get``, ``set`` and ``update`` (issue 15)."""

    def __init__(self, method: Callable[..., Any], watched: Callable[..., Any]) -> None:
        self.method = method
        self.watched = watched

    def __set_name__(self, owner: type, name: str) -> None:
        _switches.append((owner, name, self.method, self.watched))
        setattr(owner, name, self.method if observer is None else self.watched)


def observed(
    kind: str, op: str, describe: Callable[..., tuple[str, str | tuple[str, str], str | None]]
) -> Callable[[Callable[_P, Coroutine[Any, Any, _R]]], Callable[_P, Coroutine[Any, Any, _R]]]:
    """Decorate an async method of a manager so that, with an observer installed, it runs inside
    ``observer.operation(kind, op, *describe(self, *args, **kwargs))``. ``describe`` returns
    ``(backend, target, key)`` and never raises on bad input (the method itself checks its arguments).
    Only for methods defined in a class body (see :class:`_Observed`)."""

    def decorate(method: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
        @functools.wraps(method)
        async def watched(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            watcher = observer
            if watcher is None:  # removed while a caller held this form (a method looked up before)
                return await method(*args, **kwargs)
            with watcher.operation(kind, op, *describe(*args, **kwargs)):
                return await method(*args, **kwargs)

        return cast(Callable[_P, Coroutine[Any, Any, _R]], _Observed(method, watched))

    return decorate


_kinds: dict[type, str] = {}


def backend_kind(backend: object) -> str:
    """``sqlite``, ``redis``, ``postgres``, ``memory``... from a backend's class name (for attributes)."""
    cls = type(backend)
    kind = _kinds.get(cls)
    if kind is None:
        name = cls.__name__
        kind = _kinds[cls] = name[: -len("Backend")].lower() if name.endswith("Backend") else name.lower()
    return kind
