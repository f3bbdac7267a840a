"""Test helpers: call a handler directly with a real ``ctx``, or drive an app over in-process HTTP.

::

    from motia.testing import api_request, app_client, call_handler

    async def test_get_session():
        result = await call_handler(get_session, api_request(path_params={"sessionId": "s1"}))
        assert result["status"] == 404

    async def test_over_http():
        async with app_client("steps") as client:
            assert (await client.get("/session/s1")).status_code == 404

    async def test_order_flow():
        async with app_client("steps") as client, record_state_events(client.app) as events:
            with capture_enqueues(client.app) as sent:
                await client.post("/orders", json={"id": "o1"})
                await drain(client.app)                   # every event and message handled
            sent.assert_enqueued("order.created", {"id": "o1"})
            events.assert_event("created", scope="orders", key="o1")

Stores default to ``memory://`` (fresh and private each time). Nothing here touches the network.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motia.testing.client import AppClient, app_client, drain, load_project
    from motia.testing.clock import FakeClock
    from motia.testing.crash import CrashInjector, crash_after_commit
    from motia.testing.enqueues import EnqueueRecorder, capture_enqueues
    from motia.testing.events import MotiaEvents, record_events
    from motia.testing.handlers import api_request, call_handler, make_context
    from motia.testing.state_events import StateEventRecorder, record_state_events
    from motia.testing.stores import memory_state, temp_sqlite_state

__all__ = [
    "AppClient",
    "CrashInjector",
    "EnqueueRecorder",
    "FakeClock",
    "MotiaEvents",
    "StateEventRecorder",
    "api_request",
    "app_client",
    "call_handler",
    "capture_enqueues",
    "crash_after_commit",
    "drain",
    "load_project",
    "make_context",
    "memory_state",
    "record_events",
    "record_state_events",
    "temp_sqlite_state",
]

#: The module of each public name. They load on first use, so that the pytest plugin (``motia.testing.plugin``,
#: loaded by every pytest run where pymotia is installed) costs nothing to a run that uses none of its fixtures.
_MODULES = {
    "AppClient": "client",
    "app_client": "client",
    "drain": "client",
    "load_project": "client",
    "FakeClock": "clock",
    "CrashInjector": "crash",
    "crash_after_commit": "crash",
    "EnqueueRecorder": "enqueues",
    "capture_enqueues": "enqueues",
    "MotiaEvents": "events",
    "record_events": "events",
    "api_request": "handlers",
    "call_handler": "handlers",
    "make_context": "handlers",
    "StateEventRecorder": "state_events",
    "record_state_events": "state_events",
    "memory_state": "stores",
    "temp_sqlite_state": "stores",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'motia.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"motia.testing.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
