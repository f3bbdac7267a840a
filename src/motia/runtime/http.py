"""HTTP triggers served by Starlette: one route per ``http(...)`` trigger, plus ``/openapi.json``.

Each ``StepRoute`` is a starlette ``BaseRoute``: ``matches`` asks the trigger, ``handle`` reads and
parses the body, validates it, runs condition + middleware + handler and turns the return value into
a response. Errors never escape a route: a failing handler is logged with its traceback and answers
500 with the trace id, and the server keeps serving.

The hot path skips Starlette (issue 15): :class:`MotiaStarlette` looks a request up in one table of
the step routes (method, then exact path or first segment) and calls the route directly; everything
else (``/__motia``, ``/openapi.json``, requests no step serves, which answer 404/405 or a redirect)
goes through Starlette's router as before, so every answer but the speed is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from motia.exceptions import StepLoadError
from motia.runtime import observe
from motia.runtime.context import FlowContext, new_trace_id
from motia.runtime.http_stream import MotiaHttpResponse
from motia.runtime.idempotency import IdempotentRoute
from motia.runtime.openapi import check_response, openapi_document
from motia.runtime.responses import JSONResponse, encode_json, error_response, plain_json, to_response
from motia.runtime.runner import StepRunner
from motia.runtime.types import ApiRequest, TriggerInfo
from motia.state.schema import schema_errors
from motia.state.values import MAX_DEPTH
from motia.state.values import decode as decode_json
from motia.steps.definition import Step
from motia.steps.triggers import HTTP_METHODS
from motia.steps.triggers import Match as TriggerMatch

if TYPE_CHECKING:
    from motia.steps.triggers import HttpTrigger

__all__ = [
    "JSONResponse",
    "MotiaStarlette",
    "StepRoute",
    "StepRouter",
    "build_asgi",
    "encode_json",
    "openapi_document",
    "parse_json",
    "to_response",
]

logger = logging.getLogger("motia.http")

#: Paths the runtime serves itself; a step cannot claim them.
RESERVED_PATHS = ("/openapi.json", "/__motia")


class BadRequest(Exception):
    """The request cannot reach the handler (malformed JSON, schema violation, too large)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class StepRoute(BaseRoute):
    """Serves one ``http(...)`` trigger of one step."""

    def __init__(self, app: StepRunner, step: Step, trigger: HttpTrigger) -> None:
        self.app = app
        self.step = step
        self.trigger = trigger
        self.info = TriggerInfo(type="http", method=trigger.method, path=trigger.path)
        #: The response schemas checked on every answer: only in development mode (they cost a validation).
        self.checked_responses = trigger.response_schema if app.dev and trigger.response_schema else None
        setting = trigger.idempotency
        ttl = app.idempotency if setting is None else None if setting is False else setting
        #: The ``Idempotency-Key`` guard (runtime/idempotency.py), only on routes that opted in.
        self.idempotent = IdempotentRoute(self, float(ttl)) if ttl else None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        match, params = self.trigger.matches(scope["method"], scope["path"])
        if match is TriggerMatch.NONE:
            return Match.NONE, {}
        child = {"path_params": params, "endpoint": self.step.handler}
        return (Match.FULL if match is TriggerMatch.FULL else Match.PARTIAL), child

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NotImplementedError("step routes are not reversible")  # pragma: no cover

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method != self.trigger.method and not (method == "HEAD" and self.trigger.method == "GET"):
            allowed = self.trigger.method
            response: Response = error_response(405, "Method Not Allowed")
            response.headers["allow"] = allowed
            await response(scope, receive, send)
            return
        await self.serve(scope, receive, send, scope.get("path_params") or {})

    async def serve(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> None:
        """Answer a request this route matched (method included), with its path parameters."""
        if self.idempotent is not None and "motia_idempotency" not in scope:
            scope["motia_idempotency"] = True  # handled below: the guard serves through this method again
            await self.idempotent.serve(scope, receive, send, params)
            return
        telemetry = observe.active
        if telemetry is None:
            await self._serve(scope, receive, send, params, new_trace_id())
            return
        # One span per request, continuing an incoming traceparent and answering with its own.
        with telemetry.http(self.step.name, self.info, scope["headers"]) as run:
            await self._serve(scope, receive, run.wrap(send), params, run.trace_id)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str], trace_id: str) -> None:
        # The request's input is read inline here, not in a coroutine of its own (issue 15); _run runs the
        # handler and turns its result into the answer sent below.
        response: Response | tuple[int, bytes] | None
        method: str = scope["method"]
        headers = _headers(scope["headers"])
        raw = b""
        body = None
        try:
            if method not in _BODYLESS_METHODS or "content-length" in headers or "transfer-encoding" in headers:
                raw = await self._read_body(headers, receive)
                body = _parse_body(raw, headers.get("content-type"))
            schema = self.trigger.body_schema
            if schema is not None:
                problems = schema_errors(schema, body)
                if problems:
                    raise BadRequest(400, "Invalid request body", details=problems)
        except BadRequest as exc:
            response = error_response(exc.status, exc.message, trace_id, **exc.extra)
        except ClientDisconnect:
            return
        else:
            query_string: bytes = scope.get("query_string", b"")
            query = _query(query_string) if query_string else {}
            # Positional: CPython packs keyword arguments of a class call in a dict (issue 15).
            request = ApiRequest(method, scope["path"], params, query, headers, body, raw)
            request._transport = (send, receive, trace_id, asyncio.get_running_loop())
            response = await self._run(request, trace_id)
            if response is None:  # the handler streamed its answer (runtime/http_stream.py): all sent
                return
        if type(response) is tuple:
            # The common answer, a JSON body and no headers of the handler's, sent as two ASGI messages:
            # the same bytes and headers a JSONResponse would send, without building one.
            status, content = response
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"x-trace-id", trace_id.encode()),
                        (b"content-length", str(len(content)).encode()),
                        _JSON_TYPE,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": content})
        else:
            assert isinstance(response, Response)
            await response(scope, receive, send)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.app.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, f"Request body too large (limit {limit} bytes)")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"Request body too large (limit {limit} bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _run(self, request: ApiRequest, trace_id: str) -> Response | tuple[int, bytes] | None:
        app, step = self.app, self.step
        ctx = app.context(step, self.info, trace_id)
        try:
            if self.trigger.condition is not None and not await app.condition_passes(self.trigger, request, ctx):
                return error_response(404, "Not Found")
            if self.trigger.middleware:
                result = await self._with_middleware(request, ctx)
            else:
                result = await app.invoke(step, request, ctx)
            streamed = request._response
            if streamed is not None and streamed.touched:
                return await self._streamed(streamed, result, ctx)
            if self.checked_responses is not None:
                invalid = check_response(self.checked_responses, result, ctx)
                if invalid is not None:
                    return invalid
            fast = plain_json(result)
            return fast if fast is not None else to_response(result, trace_id)
        except asyncio.CancelledError:
            if request._response is not None:
                request._response.abort()
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, GeneratorExit from a handler: a 500 too
            observe.failed(exc)
            ctx.logger.exception(
                f"handler failed: {type(exc).__name__}: {exc}", {"method": request.method, "path": request.path}
            )
            streamed = request._response
            if streamed is not None and (streamed.writing or streamed.closed):
                # Part of the answer is on the wire: a 500 can no longer be sent; end the body instead.
                await streamed.finish()
                return None
            return error_response(500, "Internal Server Error", trace_id)

    async def _streamed(self, response: MotiaHttpResponse, result: Any, ctx: FlowContext) -> Response | None:
        """Finish the answer of a handler that used ``input.response``.

        Nothing written yet (only ``status``/``headers`` set) and a response returned: the returned
        response is the answer, with the headers set beside its own (motia-py 1.0 does the same). Otherwise
        the stream is ended; a response returned after writing cannot be sent and is logged as ignored.
        """
        if result is not None:
            if not response.writing and not response.closed:
                if self.checked_responses is not None:
                    invalid = check_response(self.checked_responses, result, ctx)
                    if invalid is not None:
                        return invalid
                answer = to_response(result, ctx.trace_id)
                for name, value in response.headers_sent.items():
                    answer.headers.setdefault(name, value)
                return answer
            ctx.logger.warning("the handler streamed its response and also returned one: the returned one is ignored")
        await response.finish()
        return None

    async def _with_middleware(self, request: ApiRequest, ctx: FlowContext) -> Any:
        chain = self.trigger.middleware
        mw_ctx = self.app.async_view(ctx)  # middleware is async code: it gets the async ctx.state

        async def call(i: int) -> Any:
            if i == len(chain):
                return await self.app.invoke(self.step, request, ctx)
            result = chain[i](request, mw_ctx, lambda: call(i + 1))
            return await result if inspect.isawaitable(result) else result

        return await call(0)

    def __repr__(self) -> str:
        return f"StepRoute(step={self.step.name!r}, trigger={self.trigger!r})"


def parse_json(raw: bytes) -> Any:
    """Parse a request body as strict JSON, the one way every endpoint does (issue 11, #6).

    Ints of any size come back exact; ``NaN``/``Infinity`` and nesting deeper than a state value may
    have (:data:`motia.state.values.MAX_DEPTH` levels) raise ``ValueError`` saying what is wrong, so such
    a body is a 400 and never reaches a handler (which could neither store nor echo it).
    """
    try:
        body = decode_json(raw)
    except ValueError as exc:
        # orjson stops at 1024 levels ("depth limit exceeded"), the stdlib at its recursion limit: one message.
        if "depth limit" in str(exc) or "nested too deeply" in str(exc):
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        raise
    # Only a body with enough brackets can be too deep: counting them is cheap, walking the value is not.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth_exceeds(body, MAX_DEPTH):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return body


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` holds containers nested more than ``limit`` deep (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _parse_body(raw: bytes, content_type: str | None) -> Any:
    """JSON for JSON content types (malformed → 400); leniently JSON for bodies sent without a content
    type or as a form (curl's default); other forms as a dict; anything else as text (bytes if not UTF-8).
    """
    if not raw:
        return None
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        try:
            return parse_json(raw)
        except ValueError as exc:  # orjson's and the stdlib's decode errors are both ValueErrors
            raise BadRequest(400, "Malformed JSON body", detail=str(exc)) from None
    if not mime or mime == "application/x-www-form-urlencoded":
        # `curl -d '{"a": 1}'` sends JSON labelled as a form: accept it as JSON.
        with contextlib.suppress(ValueError):
            return parse_json(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if mime == "application/x-www-form-urlencoded":
        return dict(parse_qsl(text, keep_blank_values=True))
    return text


#: Methods whose requests are read without a body unless they announce one (content-length, chunked).
_BODYLESS_METHODS = frozenset({"GET", "HEAD"})
_JSON_TYPE = (b"content-type", b"application/json")


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """A request's headers by lower-case name; a header sent several times is one comma-joined value."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
    if len(headers) == len(raw):  # every name once: the common case, one comprehension
        return headers
    headers = {}
    for k, v in raw:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _query(query_string: bytes) -> dict[str, str | list[str]]:
    """Query parameters: a name given once is a ``str``, given several times a ``list[str]``."""
    query: dict[str, str | list[str]] = {}
    for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        old = query.get(k)
        query[k] = v if old is None else [*old, v] if isinstance(old, list) else [old, v]
    return query


def _route_order(route: StepRoute) -> tuple[int, ...]:
    # Static segments win over parameters at the same position: /session/stats before /session/:id.
    return tuple(1 if seg.startswith("{") else 0 for seg in route.trigger.openapi_path.split("/"))


def step_routes(app: StepRunner) -> list[StepRoute]:
    routes = [StepRoute(app, step, trig) for step in app.steps for trig in step.http_triggers]
    return sorted(routes, key=_route_order)


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.count("/") else ""


class StepRouter(BaseRoute):
    """All step routes as one starlette route, indexed by first path segment.

    Starlette's router tries every route in turn; with the index a request only tries the routes that
    can match its first segment (plus those starting with a parameter), in the same precedence order.
    """

    def __init__(self, routes: list[StepRoute]) -> None:
        self.routes = routes
        firsts = {r: _first_segment(r.trigger.openapi_path) for r in routes}
        keys = {f for f in firsts.values() if not f.startswith("{")}
        self._wild = [r for r in routes if firsts[r].startswith("{")]
        self._index = {k: [r for r in routes if firsts[r] == k or firsts[r].startswith("{")] for k in keys}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        partial: tuple[Match, Scope] | None = None
        for route in self._index.get(_first_segment(scope["path"]), self._wild):
            match, child = route.matches(scope)
            if match is Match.FULL:
                child["motia_route"] = route
                return match, child
            if match is Match.PARTIAL and partial is None:
                child["motia_route"] = route
                partial = (match, child)
        return partial or (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NotImplementedError("step routes are not reversible")  # pragma: no cover

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["motia_route"].handle(scope, receive, send)


class _Dispatch:
    """The step routes indexed for one lookup per request: by method, then by exact path (routes
    without parameters) or by first path segment (routes with parameters, in precedence order).

    :meth:`lookup` answers the route :class:`StepRouter` would serve, or ``None`` when it is not sure
    (no route of that method matches; a path only the route regexes' corner cases match): the request
    then goes through Starlette, which answers it exactly as before (404, 405, redirect, or the route).
    """

    def __init__(self, routes: list[StepRoute]) -> None:
        self._static: dict[str, dict[str, StepRoute]] = {}
        self._params: dict[str, tuple[dict[str, list[StepRoute]], list[StepRoute]]] = {}
        for method in HTTP_METHODS:
            # A HEAD request is served by a GET route (StepRoute.matches): both, in precedence order.
            served = [r for r in routes if r.trigger.method in (method, "GET" if method == "HEAD" else method)]
            static: dict[str, StepRoute] = {}
            for route in served:
                if not route.trigger.param_names:
                    static.setdefault(route.trigger.openapi_path, route)
            with_params = [r for r in served if r.trigger.param_names]
            firsts = {r: _first_segment(r.trigger.openapi_path) for r in with_params}
            wild = [r for r in with_params if firsts[r].startswith("{")]
            keys = {f for f in firsts.values() if not f.startswith("{")}
            index = {k: [r for r in with_params if firsts[r] == k or firsts[r].startswith("{")] for k in keys}
            self._static[method] = static
            self._params[method] = (index, wild)

    def lookup(self, method: str, path: str) -> tuple[StepRoute, dict[str, str]] | None:
        static = self._static.get(method)
        if static is None:
            return None
        # A route without parameters matches its path with or without one trailing slash ("//" is not "/");
        # it wins over every route with parameters that matches the same path (_route_order).
        route = static.get(path)
        if route is None and len(path) > 2 and path[-1] == "/":
            route = static.get(path[:-1])
        if route is not None:
            return route, {}
        index, wild = self._params[method]
        first = path[1:].partition("/")[0] if path[:1] == "/" else _first_segment(path)
        for route in index.get(first, wild):
            m = route.trigger.regex.match(path)
            if m is not None:
                # The regex has one group per name (steps/triggers.py compiles both from the path).
                return route, dict(zip(route.trigger.param_names, m.groups()))  # noqa: B905
        return None


class MotiaStarlette(Starlette):
    """The app's Starlette application, with the step routes served without Starlette's router.

    A request outside ``/__motia`` and ``/openapi.json`` is looked up once in the step routes and the
    route called directly; on a miss, and for every other request, Starlette answers as it always did
    (for every request, when middleware was added or the app is mounted under a root path).
    """

    def __init__(self, dispatch: _Dispatch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._dispatch = dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Middleware added with add_middleware must see every request: then Starlette serves them all.
        if scope["type"] == "http" and not self.user_middleware and not scope.get("root_path"):
            path: str = scope["path"]
            if not path.startswith(RESERVED_PATHS[1]) and path != RESERVED_PATHS[0]:
                found = self._dispatch.lookup(scope["method"], path)
                if found is not None:
                    scope["app"] = self
                    await found[0].serve(scope, receive, send, found[1])
                    return
        await super().__call__(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(status, "Not Found" if status == 404 else "Method Not Allowed" if status == 405 else "Error")


def build_asgi(app: StepRunner, *, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    """The Starlette application for ``app``: step routes, ``/openapi.json``, ``/__motia/health``.

    Its lifespan runs ``app.startup()`` and ``app.shutdown()``.
    """
    for step in app.steps:
        for trig in step.http_triggers:
            if trig.openapi_path == RESERVED_PATHS[0] or trig.openapi_path.startswith(RESERVED_PATHS[1]):
                raise StepLoadError(f"step {step.name!r}: the path {trig.path!r} is reserved by the runtime")
    document = openapi_document(app.steps)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "steps": len(app.steps)})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await app.startup()
        try:
            yield
        finally:
            await app.shutdown()

    served = step_routes(app)
    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/__motia/health", health, methods=["GET"]),
        *(extra_routes or []),
        *app.stream_routes(),
        StepRouter(served),
    ]
    handlers: dict[Any, Callable[..., Any]] = {404: _not_found, 405: _not_found}
    return MotiaStarlette(_Dispatch(served), routes=routes, exception_handlers=handlers, lifespan=lifespan)
