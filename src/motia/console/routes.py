"""The console's HTTP side: the page, its static files and the JSON API under ``/__motia``.

``console_routes(app, token=...)`` returns Starlette routes for ``build_asgi(app, extra_routes=...)``.

Keys and scopes may hold any character, ``/`` included, so they travel as query parameters
(``/__motia/api/entry?scope=S&key=K``), never as path segments. Every endpoint validates its input and
answers a 4xx JSON ``{"error": ...}`` naming the problem; a backend failure is a 503. The Streams view's
endpoints and the stream feed live in :mod:`motia.console.streams`, the Dead letters view's in
:mod:`motia.console.dead_letters`, the Traces view's in :mod:`motia.console.traces`; their routes are added
here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from motia.console._api import ApiError, Endpoint, json_body, query, query_int, required
from motia.console.auth import ConsoleAuth
from motia.console.dead_letters import DeadLettersAPI
from motia.console.steps import step_json
from motia.console.streams import StreamFeed, StreamsAPI
from motia.console.traces import TracesAPI
from motia.exceptions import StateBackendError, StateClosedError, StateConflictError, StateError
from motia.runtime.events import StateEventHub
from motia.runtime.http import JSONResponse
from motia.state.types import StateEntry
from motia.state.urls import mask_url
from motia.state.values import dumps
from motia.steps.triggers import StateTrigger

if TYPE_CHECKING:
    from motia.runtime.app import MotiaApp
    from motia.runtime.traces import TraceSource
    from motia.state.manager import StateManager
    from motia.streams.manager import StreamManager

__all__ = ["ConsoleAPI", "console_routes"]

PREFIX = "/__motia"
#: Items per page when the client does not say, and the most it may ask for.
DEFAULT_PAGE, MAX_PAGE = 50, 500
#: Seconds between keep-alive comments on an idle event stream (proxies drop silent connections).
KEEPALIVE = 15.0
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


def entry_json(entry: StateEntry) -> dict[str, Any]:
    return {"key": entry.key, "value": entry.value, "version": entry.version, "expires_at": entry.expires_at}


class ConsoleAPI:
    """The endpoints, bound to one app's store, steps and event hub."""

    def __init__(
        self,
        app: MotiaApp,
        hub: StateEventHub,
        *,
        keepalive: float = KEEPALIVE,
        stream_feed: StreamFeed | None = None,
        traces: TracesAPI | None = None,
    ) -> None:
        self.app = app
        self.traces = traces if traces is not None else TracesAPI()
        self.hub = hub
        self.keepalive = keepalive
        #: Publishes stream changes to ``hub`` while a feed is open (``None``: the feed carries state only).
        self.stream_feed = stream_feed
        # A request body holds one value plus a little JSON around it.
        self.max_body = app.state.max_value_bytes + 64 * 1024

    @property
    def state(self) -> StateManager:
        return self.app.state

    def _delivered(self, scope: str, key: str | None) -> bool:
        """Whether the runtime itself shows this change in the feed: every change once the hub is durable,
        else the changes a state trigger of the app receives (the delivery worker publishes those).
        ``key=None`` (a clear) counts only triggers on the whole scope."""
        if self.hub.durable:
            return True
        if getattr(self.app, "delivery_options", None) is None:  # no delivery worker in this app
            return False
        return any(
            isinstance(trigger, StateTrigger)
            and trigger.scope in (None, scope)
            and (trigger.key is None or (key is not None and trigger.key == key))
            for step in self.app.steps
            for trigger in step.triggers
        )

    def _publish(self, event_type: str, scope: str, key: str | None, **fields: Any) -> None:
        """Show a console write in the feed, unless the runtime does (it would then appear twice)."""
        if not self._delivered(scope, key):
            self.hub.publish(
                {"event_type": event_type, "group_id": scope, "item_id": key, "source": "console", **fields}
            )

    async def _json_body(self, request: Request) -> dict[str, Any]:
        return await json_body(request, self.max_body)

    # -- endpoints --------------------------------------------------------------------------------

    async def info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "state_url": mask_url(self.state.url),
                "version": metadata.version("pymotia"),
                "steps": len(self.app.steps),
                "events": {"durable": self.hub.durable, "subscribers": self.hub.subscriber_count},
                "streams": {"tailing": self.stream_feed is not None and self.stream_feed.running},
                "traces": {"enabled": self.traces.buffer() is not None},
            }
        )

    async def stats(self, request: Request) -> Response:
        """What the store holds (``motia state stats``): the overview line of the page."""
        return JSONResponse((await self.state.stats()).to_json())

    async def scopes(self, request: Request) -> Response:
        names = await self.state.list_groups()
        counts = await asyncio.gather(*(self.state.count(name) for name in names))
        return JSONResponse({"scopes": [{"name": n, "count": c} for n, c in zip(names, counts, strict=True)]})

    async def items(self, request: Request) -> Response:
        scope, prefix, after = required(request, "scope"), query(request, "prefix"), query(request, "after")
        limit = query_int(request, "limit", low=1, high=MAX_PAGE) or DEFAULT_PAGE
        page = await self.state.items(scope, prefix=prefix, after=after, limit=limit + 1)
        count = await self.state.count(scope)
        more = len(page) > limit
        page = page[:limit]
        return JSONResponse(
            {
                "scope": scope,
                "count": count,
                "items": [entry_json(e) for e in page],
                "next": page[-1].key if more else None,
            }
        )

    async def get_entry(self, request: Request) -> Response:
        scope, key = self._scope_key(request)
        entry = await self.state.get_entry(scope, key)
        if entry is None:
            raise ApiError(404, f"no key {key!r} in scope {scope!r}")
        return JSONResponse(entry_json(entry))

    async def put_entry(self, request: Request) -> Response:
        """Write a value; ``if_version`` makes it compare-and-set; the key keeps its expiry unless ``ttl`` says.

        ``ttl`` absent: keep the current expiry; a number: expire that many seconds from now; ``null``:
        make the key permanent.
        """
        scope, key = self._scope_key(request)
        body = await self._json_body(request)
        unknown = sorted(set(body) - {"value", "if_version", "ttl"})
        if unknown:
            raise ApiError(400, f"unknown field(s) in the body: {', '.join(unknown)} (expected value, if_version, ttl)")
        if "value" not in body:
            raise ApiError(400, "the body needs a 'value' field")
        if_version = body.get("if_version")
        if if_version is not None and (
            isinstance(if_version, bool) or not isinstance(if_version, int) or if_version < 0
        ):
            raise ApiError(400, f"if_version must be a non-negative integer or null, not {if_version!r}")
        ttl = body.get("ttl")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0
        ):
            raise ApiError(400, f"ttl must be a positive number of seconds or null, not {ttl!r}")
        value = body["value"]
        if "ttl" in body and ttl is None:
            result = await self.state.set(scope, key, value, if_version=if_version)
        else:
            # update with a whole-value `set` keeps the key's expiry when no ttl is given (set would drop it).
            op = {"type": "set", "path": "", "value": value}
            result = await self.state.update(scope, key, [op], ttl=ttl, if_version=if_version)
        event_type = "created" if result.version == 1 else "updated"
        self._publish(
            event_type, scope, key, old_value=result.old_value, new_value=result.new_value, version=result.version
        )
        # The answer describes *this* write (the editor bases its next if_version on it), even if another
        # write follows at once; only the expiry has to be read back.
        after = await self.state.get_entry(scope, key)
        expires_at = after.expires_at if after is not None and after.version == result.version else None
        return JSONResponse(entry_json(StateEntry(key, result.new_value, result.version, expires_at)))

    async def delete_entry(self, request: Request) -> Response:
        scope, key = self._scope_key(request)
        if_version = query_int(request, "if_version", low=0, high=2**63 - 1)
        entry = await self.state.get_entry(scope, key)
        if entry is None:
            raise ApiError(404, f"no key {key!r} in scope {scope!r}")
        old = await self.state.delete(scope, key, if_version=if_version)
        self._publish("deleted", scope, key, old_value=old, new_value=None, version=entry.version)
        return JSONResponse({"deleted": key, "scope": scope, "old_value": old})

    async def clear_scope(self, request: Request) -> Response:
        scope = required(request, "scope")
        if request.query_params.get("confirm") != scope:
            raise ApiError(400, "clearing a scope needs confirm=<the scope's name> as a query parameter")
        count = await self.state.count(scope)
        if count == 0:
            raise ApiError(404, f"unknown scope {scope!r} (it holds no keys)")
        await self.state.clear(scope)
        self._publish("cleared", scope, None, count=count)
        return JSONResponse({"cleared": scope, "count": count})

    async def steps(self, request: Request) -> Response:
        return JSONResponse({"steps": [step_json(step) for step in self.app.steps]})

    async def events(self, request: Request) -> Response:
        """Server-Sent Events: kept recent events (or those after ``Last-Event-ID``), then live ones."""
        last = request.headers.get("last-event-id") or request.query_params.get("after")
        after = 0
        if last:
            try:
                after = int(last)
            except ValueError:
                raise ApiError(400, f"Last-Event-ID must be an integer, not {last!r}") from None
        subscription, replay = self.hub.subscribe(after=after)
        feed = self.stream_feed
        if feed is not None:
            try:
                await feed.watch()  # once it returns, every stream change committed is published
            except BaseException:
                subscription.close()
                raise
        hello = {"durable": self.hub.durable}

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\nevent: hello\ndata: " + dumps(hello) + b"\n\n"
                for kept in replay:
                    yield _sse(kept)
                while True:
                    try:
                        live = await asyncio.wait_for(subscription.next(), self.keepalive)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if live is None:
                        return
                    yield _sse(live)
            finally:
                subscription.close()
                if feed is not None:
                    feed.unwatch()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    def _scope_key(self, request: Request) -> tuple[str, str]:
        return required(request, "scope"), required(request, "key")


def _sse(event: dict[str, Any]) -> bytes:
    """A state change is an ``event: state``, a stream change (from the stream feed) an ``event: stream``."""
    kind = b"stream" if event.get("kind") == "stream" else b"state"
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event["id"], kind, dumps(event))


def _static(name: str) -> bytes:
    return resources.files("motia.console").joinpath("static", name).read_bytes()


def console_routes(
    app: MotiaApp,
    *,
    token: str | None = None,
    hub: StateEventHub | None = None,
    streams: StreamManager | None = None,
    traces: TraceSource | None = None,
) -> list[BaseRoute]:
    """The console's routes for ``build_asgi(app, extra_routes=...)``; ``token=None``: loopback only.

    ``hub`` defaults to ``app.state_events``, the app's event hub; ``streams`` to the app's stream manager;
    ``traces`` to the recent-traces buffer installed in this process when tracing is on
    (:func:`motia.runtime.traces.installed`, looked up per request).
    """
    auth = ConsoleAuth(token)
    hub = hub if hub is not None else app.state_events
    manager = streams if streams is not None else app.streams
    feed = StreamFeed(manager.backend, hub)
    traces_api = TracesAPI(traces)
    api = ConsoleAPI(app, hub, stream_feed=feed, traces=traces_api)
    streams_api = StreamsAPI(manager)
    dead_letters_api = DeadLettersAPI(app.state.backend, max_body=api.max_body)
    static_files = {name: _static(name) for name in ("index.html", "app.js", "traces.js", "app.css")}

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def run(request: Request) -> Response:
            refused = auth.check(request)
            if refused is not None:
                return refused
            try:
                return await endpoint(request)
            except ApiError as exc:
                return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)
            except StateConflictError as exc:
                scope, key = request.query_params.get("scope", ""), request.query_params.get("key", "")
                current = await api.state.get_entry(scope, key)
                return JSONResponse(
                    {
                        "error": str(exc),
                        "expected": exc.expected,
                        "actual": exc.actual,
                        "current": entry_json(current) if current else None,
                    },
                    status_code=409,
                )
            except (StateBackendError, StateClosedError) as exc:
                return JSONResponse({"error": f"state store unavailable: {exc}"}, status_code=503)
            except StateError as exc:  # invalid scope, key, value or update: the client's input
                return JSONResponse({"error": str(exc)}, status_code=400)
            except ClientDisconnect:
                return Response(status_code=400)
            except NotImplementedError:  # a backend without streams (the stream endpoints)
                return JSONResponse(
                    {"error": f"the state store {mask_url(api.state.url)} does not support this"}, status_code=501
                )

        return run

    async def page(request: Request) -> Response:
        login = auth.login(request)
        if login is not None:
            return login
        refused = auth.check(request)
        if refused is not None:
            return Response(_REFUSED_PAGE, status_code=refused.status_code, media_type="text/html")
        return Response(static_files["index.html"], media_type=_STATIC_TYPES[".html"], headers=_NO_STORE)

    async def trace_page(request: Request) -> Response:
        login = auth.login(request)
        if login is not None:
            if login.status_code == 303:  # signed in: back to the trace, not to the console's front page
                login.headers["location"] = f"{PREFIX}/traces/{quote(request.path_params['trace_id'], safe='')}"
            return login
        refused = auth.check(request)
        if refused is not None:
            return Response(_REFUSED_PAGE, status_code=refused.status_code, media_type="text/html")
        return await traces_api.page(request)

    async def static(request: Request) -> Response:
        refused = auth.check(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if name not in static_files:
            return JSONResponse({"error": "Not Found"}, status_code=404)
        suffix = name[name.rfind(".") :]
        return Response(static_files[name], media_type=_STATIC_TYPES[suffix], headers=_NO_STORE)

    def api_route(path: str, endpoint: Endpoint, methods: list[str]) -> Route:
        return Route(f"{PREFIX}/api/{path}", guarded(endpoint), methods=methods)

    return [
        Route(PREFIX, page, methods=["GET"]),
        Route(f"{PREFIX}/", page, methods=["GET"]),
        Route(f"{PREFIX}/static/{{name}}", static, methods=["GET"]),
        api_route("info", api.info, ["GET"]),
        api_route("stats", api.stats, ["GET"]),
        api_route("scopes", api.scopes, ["GET"]),
        api_route("scope", api.clear_scope, ["DELETE"]),
        api_route("items", api.items, ["GET"]),
        Route(f"{PREFIX}/api/entry", _by_method(guarded, api), methods=["GET", "PUT", "DELETE"]),
        api_route("steps", api.steps, ["GET"]),
        api_route("events", api.events, ["GET"]),
        api_route("streams", streams_api.streams, ["GET"]),
        api_route("streams/groups", streams_api.groups, ["GET"]),
        api_route("streams/items", streams_api.items, ["GET"]),
        api_route("streams/item", streams_api.item, ["GET"]),
        api_route("dead-letters", dead_letters_api.list, ["GET"]),
        api_route("dead-letters/one", dead_letters_api.one, ["GET"]),
        api_route("dead-letters/redrive", dead_letters_api.redrive, ["POST"]),
        api_route("dead-letters/purge", dead_letters_api.purge, ["POST"]),
        api_route("pending-deliveries", dead_letters_api.pending, ["GET"]),
        api_route("traces", traces_api.list, ["GET"]),
        api_route("traces/{trace_id}", traces_api.trace, ["GET"]),
        Route(f"{PREFIX}/traces/{{trace_id}}", trace_page, methods=["GET"]),
    ]


def _by_method(guarded: Callable[[Endpoint], Endpoint], api: ConsoleAPI) -> Endpoint:
    handlers = {"GET": guarded(api.get_entry), "PUT": guarded(api.put_entry), "DELETE": guarded(api.delete_entry)}

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    return dispatch


_NO_STORE = {"cache-control": "no-store"}
_REFUSED_PAGE = b"""<!doctype html><meta charset="utf-8"><title>pymotia console</title>
<body style="font-family: system-ui, sans-serif; margin: 3rem">
<h1>pymotia console</h1>
<p>This console needs its token. Open <code>/__motia?token=YOUR_TOKEN</code> (the value of
<code>--console-token</code> or <code>MOTIA_CONSOLE_TOKEN</code>) once; a cookie keeps you signed in.</p>
</body>
"""
