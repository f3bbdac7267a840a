"""The synchronous twin of :class:`StateManager`, for scripts, sync handlers and tests.

Every call runs the async method on an event loop and blocks for the answer: on the app's loop when
bound to one that is running (so a sync handler in a worker thread shares the app's store and
connections), otherwise on a private loop in a daemon thread (the *portal*). A call made on the very
thread that runs the bound loop goes to the portal too: blocking that loop while waiting on it would
deadlock, and backends accept calls from any loop. So the twin never raises "cannot call from the event
loop" (upstream Motia's sync ``stateManager`` does, inside handlers).
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from motia.exceptions import StateConflictError
from motia.state.manager import StateManager
from motia.state.transaction import StateTransaction
from motia.state.types import JSON, StateEntry, StateSetResult
from motia.state.urls import default_state_url

_T = TypeVar("_T")


class _Portal:
    """A private event loop on a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                threading.Thread(target=run, name="motia-state-portal", daemon=True).start()
                started.wait()
                self._loop = loop
            return self._loop


_portal = _Portal()


def run_blocking(call: Callable[[], Coroutine[Any, Any, _T]], loop: asyncio.AbstractEventLoop | None) -> _T:
    """Run the coroutine ``call()`` makes and block for its result: on ``loop`` while it runs in another
    thread (a sync handler shares the app's loop and connections), else on the portal. Never on the
    calling thread's own loop, which blocking would deadlock."""
    if loop is None or not loop.is_running() or loop.is_closed():
        loop = _portal.loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        loop = _portal.loop()
        if running is loop:  # pragma: no cover - only pymotia's own code runs on the portal
            raise RuntimeError("a blocking state call was made from the state portal thread")
    return asyncio.run_coroutine_threadsafe(call(), loop).result()


class SyncStateManager:
    """Blocking twin of :class:`StateManager` with the same methods; safe from any thread.

    ``SyncStateManager.from_url(url)`` opens (and owns) a store; ``SyncStateManager(manager, loop=loop)``
    shares an open async manager, running its calls on ``loop`` while that loop is running.
    """

    def __init__(self, manager: StateManager | None = None, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._manager = manager
        self._loop = loop
        self._owns = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyncStateManager:
        """Open the store at ``url`` (see :meth:`StateManager.from_url`); close it with :meth:`close`."""
        twin = cls(StateManager.from_url(url, **options))
        twin._owns = True
        return twin

    def _target(self) -> tuple[StateManager, asyncio.AbstractEventLoop | None]:
        assert self._manager is not None
        return self._manager, self._loop

    @property
    def manager(self) -> StateManager:
        """The async manager this twin drives."""
        return self._target()[0]

    @property
    def url(self) -> str:
        return self.manager.url

    def _run(self, call: Callable[[StateManager], Coroutine[Any, Any, _T]]) -> _T:
        manager, loop = self._target()
        return run_blocking(lambda: call(manager), loop)

    def get(self, scope: str, key: str) -> JSON:
        return self._run(lambda manager: manager.get(scope, key))

    def set(
        self, scope: str, key: str, value: Any, *, ttl: float | None = None, if_version: int | None = None
    ) -> StateSetResult:
        return self._run(lambda manager: manager.set(scope, key, value, ttl=ttl, if_version=if_version))

    def update(
        self,
        scope: str,
        key: str,
        ops: builtins.list[dict[str, Any]],
        *,
        ttl: float | None = None,
        if_version: int | None = None,
    ) -> StateSetResult:
        return self._run(lambda manager: manager.update(scope, key, ops, ttl=ttl, if_version=if_version))

    def delete(self, scope: str, key: str, *, if_version: int | None = None) -> JSON:
        return self._run(lambda manager: manager.delete(scope, key, if_version=if_version))

    def list(self, scope: str) -> builtins.list[JSON]:
        return self._run(lambda manager: manager.list(scope))

    def clear(self, scope: str) -> None:
        self._run(lambda manager: manager.clear(scope))

    def list_groups(self) -> builtins.list[str]:
        return self._run(lambda manager: manager.list_groups())

    def get_group(self, scope: str) -> builtins.list[JSON]:
        """Motia 0.x's name for :meth:`list`."""
        return self._run(lambda manager: manager.get_group(scope))

    def trace_ids(self) -> builtins.list[str]:
        """Motia 0.x's name for :meth:`list_groups`."""
        return self._run(lambda manager: manager.trace_ids())

    def get_entry(self, scope: str, key: str) -> StateEntry | None:
        return self._run(lambda manager: manager.get_entry(scope, key))

    def items(
        self, scope: str, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> builtins.list[StateEntry]:
        return self._run(lambda manager: manager.items(scope, prefix=prefix, after=after, limit=limit))

    def keys(
        self, scope: str, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> builtins.list[str]:
        return self._run(lambda manager: manager.keys(scope, prefix=prefix, after=after, limit=limit))

    def count(self, scope: str) -> int:
        return self._run(lambda manager: manager.count(scope))

    def purge_expired(self) -> int:
        return self._run(lambda manager: manager.purge_expired())

    def get_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        wanted = builtins.list(keys)
        return self._run(lambda manager: manager.get_many(scope, wanted))

    def set_many(self, scope: str, values: Mapping[str, Any], *, ttl: float | None = None) -> dict[str, StateSetResult]:
        return self._run(lambda manager: manager.set_many(scope, values, ttl=ttl))

    def delete_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        wanted = builtins.list(keys)
        return self._run(lambda manager: manager.delete_many(scope, wanted))

    def transaction(self) -> SyncTransaction:
        """``with state.transaction() as tx:``: the blocking form of :meth:`StateManager.transaction`."""
        return SyncTransaction(self, StateTransaction(self.manager))

    def transact(self, function: Callable[[SyncTransaction], _T], *, retries: int = 5) -> _T:
        """Run ``function(tx)`` and commit, re-running it on a conflict (the blocking ``transact``)."""
        attempt = 0
        while True:
            transaction = self.transaction()
            try:
                result = function(transaction)
                transaction.commit()
                return result
            except StateConflictError:
                attempt += 1
                if attempt > retries:
                    raise
            finally:
                transaction.close()

    def scope(self, scope: str, model: type[Any]) -> Blocking:
        """The typed scope (see :meth:`StateManager.scope`), its methods blocking."""
        return Blocking(self, self.manager.scope(scope, model))

    def close(self) -> None:
        """Close the store if this twin opened it (a twin sharing an app's manager leaves it open)."""
        if self._owns and self._manager is not None:
            self._run(lambda manager: manager.aclose())

    def __enter__(self) -> SyncStateManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._manager!r}>"


class Blocking:
    """Runs the coroutine methods of an async object (a transaction, a typed scope) through a twin."""

    def __init__(self, twin: SyncStateManager, target: Any) -> None:
        self._twin = twin
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._twin._run(lambda _manager: attribute(*args, **kwargs))

        return call

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"


class SyncTransaction(Blocking):
    """``with twin.transaction() as tx:``: commits on a normal exit, discards the writes on an exception."""

    def commit(self) -> None:
        self._twin._run(lambda _manager: self._target.commit())

    def close(self) -> None:
        if not self._target._finished:
            self._target.rollback()

    def __enter__(self) -> SyncTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._target._finished:
            self.commit()
        self.close()


class _GlobalStateManager(SyncStateManager):
    """``motia.stateManager``: the app's store inside ``motia run``; in a script, ``MOTIA_STATE_URL``
    or the default SQLite file, opened on first use."""

    def __init__(self) -> None:
        super().__init__()
        self._bindings: builtins.list[tuple[object, StateManager, asyncio.AbstractEventLoop | None]] = []
        self._default: StateManager | None = None
        self._lock = threading.Lock()

    def _target(self) -> tuple[StateManager, asyncio.AbstractEventLoop | None]:
        with self._lock:
            if self._bindings:
                _, manager, loop = self._bindings[-1]
                return manager, loop
            if self._default is None:
                self._default = StateManager.from_url(default_state_url())
            return self._default, None

    def bind(self, manager: StateManager, loop: asyncio.AbstractEventLoop | None) -> object:
        token = object()
        with self._lock:
            self._bindings.append((token, manager, loop))
        return token

    def unbind(self, token: object) -> None:
        with self._lock:
            self._bindings = [binding for binding in self._bindings if binding[0] is not token]

    def close(self) -> None:
        """Close the store opened on first use (a bound app store is closed by the app)."""
        with self._lock:
            default, self._default = self._default, None
        if default is not None:
            asyncio.run_coroutine_threadsafe(default.aclose(), _portal.loop()).result()

    def __repr__(self) -> str:
        return "<motia.stateManager>"


#: The module-level synchronous state manager (Motia's ``stateManager``).
stateManager = _GlobalStateManager()  # noqa: N816 - Motia's documented name


def bind_global(manager: StateManager, loop: asyncio.AbstractEventLoop | None) -> object:
    """Make ``motia.stateManager`` use ``manager`` (driven on ``loop``); returns a token for :func:`unbind_global`."""
    return stateManager.bind(manager, loop)


def unbind_global(token: object) -> None:
    """Undo one :func:`bind_global`."""
    stateManager.unbind(token)
