"""``Stream``: a stream used by name from any code (motia-py 1.0 style), and ``ctx.streams``.

``todo = Stream(StreamConfig(name="todo", schema=Todo))`` at module level declares the stream (the loader
finds it in step and stream files); ``Stream("todo")`` only names one declared elsewhere. Either is used
directly: ``await todo.set("inbox", "t1", {...})`` in ``async`` code, ``todo.set(...)`` without ``await``
in ``def`` handlers and scripts. The rule is the thread's: with an event loop running in the calling
thread a method returns an awaitable, otherwise it blocks (on the app's loop when one is bound, so a sync
handler shares the app's store; see :func:`motia.state.sync.run_blocking`).

Inside ``motia run`` (and ``motia.testing``) the app binds its :class:`StreamManager`; in a script the
stream works on the default store (``MOTIA_STATE_URL`` or the default SQLite file), as ``stateManager``.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Generic, TypeVar

from typing_extensions import TypeVar as DefaultTypeVar

from motia.exceptions import StreamNotFoundError
from motia.state.sync import run_blocking, stateManager
from motia.streams.config import StreamConfig, StreamDefinition, check_stream_name, definition_from_config
from motia.streams.manager import StreamManager

__all__ = ["Stream", "Streams", "bind_streams", "current_streams", "unbind_streams"]

#: The item type, for ``Stream[Todo]`` in annotations (not checked).
TData = DefaultTypeVar("TData", default=Any)
_T = TypeVar("_T")


class _Bindings:
    """The stream managers of running apps (the newest wins), and the default one for scripts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bindings: list[tuple[object, StreamManager, asyncio.AbstractEventLoop | None]] = []
        self._default: StreamManager | None = None

    def bind(self, manager: StreamManager, loop: asyncio.AbstractEventLoop | None) -> object:
        token = object()
        with self._lock:
            self._bindings.append((token, manager, loop))
        return token

    def unbind(self, token: object) -> None:
        with self._lock:
            self._bindings = [binding for binding in self._bindings if binding[0] is not token]

    def current(self) -> tuple[StreamManager, asyncio.AbstractEventLoop | None, bool]:
        """(manager, its loop, whether it is the scripts' default)."""
        with self._lock:
            if self._bindings:
                _, manager, loop = self._bindings[-1]
                return manager, loop, False
        backend = stateManager.manager.backend
        with self._lock:
            if self._default is None or self._default.backend is not backend:
                self._default = StreamManager(backend)
            return self._default, None, True


_bindings = _Bindings()


def bind_streams(manager: StreamManager, loop: asyncio.AbstractEventLoop | None) -> object:
    """Make ``Stream`` objects use ``manager`` (driven on ``loop``); returns a token for :func:`unbind_streams`."""
    return _bindings.bind(manager, loop)


def unbind_streams(token: object) -> None:
    _bindings.unbind(token)


def current_streams() -> StreamManager:
    """The manager ``Stream`` objects use right now."""
    return _bindings.current()[0]


def _caller_file() -> str | None:
    frame = inspect.currentframe()
    try:
        outer = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        return None if outer is None else outer.f_code.co_filename
    finally:
        del frame


class Stream(Generic[TData]):
    """One stream, used directly. Methods are those of :class:`StreamManager` without the stream name."""

    def __init__(
        self,
        config: StreamConfig | Mapping[str, Any] | str,
        *,
        manager: StreamManager | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.definition: StreamDefinition | None
        if isinstance(config, str):
            self.stream_name = check_stream_name(config)
            self.definition = None  # a reference: declared elsewhere (or schema-less in scripts)
        else:
            self.definition = definition_from_config(config, source=_caller_file())
            self.stream_name = self.definition.name
        self._manager = manager
        self._loop = loop

    @property
    def name(self) -> str:
        return self.stream_name

    def _target(self) -> tuple[StreamManager, asyncio.AbstractEventLoop | None]:
        if self._manager is not None:
            return self._manager, self._loop
        manager, loop, is_default = _bindings.current()
        if self.stream_name not in manager:
            if self.definition is not None:
                manager.declare(self.definition)
            elif is_default:
                manager.declare(StreamDefinition(self.stream_name))
            else:
                raise StreamNotFoundError(
                    f"no stream named {self.stream_name!r} is declared in this app (declare it in a "
                    f"*_stream.py file or with Stream(StreamConfig(name={self.stream_name!r})))"
                )
        return manager, loop

    def _call(self, make: Callable[[StreamManager], Coroutine[Any, Any, _T]]) -> Any:
        manager, loop = self._target()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run_blocking(lambda: make(manager), loop)
        return make(manager)

    def get(self, group_id: str, item_id: str) -> Any:
        """The item or ``None``."""
        return self._call(lambda m: m.get(self.stream_name, group_id, item_id))

    def set(self, group_id: str, item_id: str, data: Any) -> Any:
        """Store the item; a :class:`~motia.streams.manager.StreamSetResult`."""
        return self._call(lambda m: m.set(self.stream_name, group_id, item_id, data))

    def update(self, group_id: str, item_id: str, ops: builtins.list[dict[str, Any]]) -> Any:
        """Apply update operations atomically; a :class:`~motia.streams.manager.StreamSetResult`."""
        return self._call(lambda m: m.update(self.stream_name, group_id, item_id, ops))

    def delete(self, group_id: str, item_id: str) -> Any:
        """Remove the item; the old item or ``None``."""
        return self._call(lambda m: m.delete(self.stream_name, group_id, item_id))

    def get_group(self, group_id: str) -> Any:
        """The group's items in id order."""
        return self._call(lambda m: m.get_group(self.stream_name, group_id))

    def list(self, group_id: str) -> Any:
        """Alias of :meth:`get_group` (motia-py 1.0)."""
        return self.get_group(group_id)

    def list_groups(self) -> Any:
        """Sorted ids of the groups holding an item."""
        return self._call(lambda m: m.list_groups(self.stream_name))

    def send(self, channel: Mapping[str, Any], event: Mapping[str, Any]) -> Any:
        """An ephemeral event to the channel's subscribers (``{"group_id", "id"?}``, ``{"type", "data"}``)."""
        return self._call(lambda m: m.send(self.stream_name, channel, event))

    def __repr__(self) -> str:
        return f"Stream({self.stream_name!r})"


class Streams:
    """``ctx.streams``: ``ctx.streams.todo`` or ``ctx.streams["todo"]`` is the app's stream ``todo``."""

    __slots__ = ("_loop", "_manager")

    def __init__(self, manager: StreamManager, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._manager = manager
        self._loop = loop

    def __getitem__(self, name: str) -> Stream[Any]:
        definition = self._manager.definition(name)  # StreamNotFoundError for an undeclared name
        return Stream(definition.name, manager=self._manager, loop=self._loop)

    def __getattr__(self, name: str) -> Stream[Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except StreamNotFoundError as exc:
            raise AttributeError(str(exc)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._manager

    def __iter__(self) -> Any:
        return iter(sorted(self._manager.definitions))

    def __dir__(self) -> builtins.list[str]:
        return sorted(self._manager.definitions)

    def __repr__(self) -> str:
        return f"<streams {', '.join(sorted(self._manager.definitions)) or '(none)'}>"
