"""What handlers receive and return: ``ApiRequest``, ``ApiResponse``, ``CronInput``, ``StateTriggerInput``,
``StreamTriggerInput``, ``TriggerInfo``.

Kept free of starlette imports so ``import motia`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from motia.runtime.http_stream import MotiaHttpResponse, RequestBody

__all__ = [
    "ApiMiddleware",
    "ApiRequest",
    "ApiResponse",
    "CronInput",
    "Enqueuer",
    "MotiaHttpArgs",
    "MotiaHttpRequest",
    "MotiaHttpResponse",
    "StateTriggerInput",
    "StreamEvent",
    "StreamTriggerInput",
    "TriggerInfo",
    "TriggerInput",
]

#: The type of a request's parsed body, for ``ApiRequest[Order]`` (annotations only: not checked).
TBody = TypeVar("TBody", default=Any)
#: The type of a response's body, for ``ApiResponse[Order]`` (annotations only: not checked).
TOutput = TypeVar("TOutput", default=Any)

StateEventType = Literal["created", "updated", "deleted", "expired"]
StreamEventType = Literal["create", "update", "delete", "event"]

_ALIASES = {"pathParams": "path_params", "queryParams": "query_params"}


class ApiRequest(Generic[TBody]):
    """The ``input`` of an HTTP handler; ``ApiRequest[Order]`` in annotations (generic in the body type).

    ``path_params``, ``query_params``, ``headers`` (lower-case names), ``body`` (parsed JSON, or text)
    and ``method`` are available both as ``input.request.<name>`` (Motia's shape) and as
    ``input.<name>``; ``pathParams``/``queryParams`` and item access (``input["body"]``,
    ``input.get("queryParams")``) work for code written against Motia's other SDKs. A query
    parameter given once is a ``str``; given several times, a ``list[str]``.

    It is also motia-py 1.0's ``MotiaHttpArgs`` (the same class, see :data:`MotiaHttpArgs`):
    ``input.response`` is the request's :class:`~motia.runtime.http_stream.MotiaHttpResponse`, for a
    handler that streams its answer (built on first use, so it costs nothing to the others), and
    ``input.request_body.stream`` yields the raw body.
    """

    __slots__ = (
        "_response",
        "_transport",
        "body",
        "headers",
        "method",
        "path",
        "path_params",
        "query_params",
        "raw_body",
    )

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        path_params: dict[str, str] | None = None,
        query_params: dict[str, str | list[str]] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        raw_body: bytes = b"",
    ) -> None:
        self.method = method
        self.path = path
        self.path_params = path_params or {}
        self.query_params = query_params or {}
        self.headers = headers or {}
        self.body = body
        self.raw_body = raw_body
        self._response: MotiaHttpResponse | None = None
        #: ``(send, receive, trace_id, loop)`` of the request being served, set by the route.
        self._transport: tuple[Any, Any, str, Any] | None = None

    @property
    def request(self) -> ApiRequest:
        """Motia's ``input.request``: the same object."""
        return self

    @property
    def response(self) -> MotiaHttpResponse:
        """The request's streaming response (motia-py 1.0's ``args.response``), built on first use.

        Without a server behind the request (one built by hand or by ``motia.testing.api_request``), a
        response that records what is written (``input.response.chunks``).
        """
        response = self._response
        if response is None:
            t = self._transport
            response = MotiaHttpResponse() if t is None else MotiaHttpResponse(t[0], t[1], trace_id=t[2], loop=t[3])
            self._response = response
        return response

    @property
    def request_body(self) -> RequestBody:
        """The raw body as a reader (motia-py 1.0's ``request_body``): ``for chunk in input.request_body.stream``
        (or ``async for``)."""
        return RequestBody(self.raw_body)

    @property
    def pathParams(self) -> dict[str, str]:  # noqa: N802 - Motia's name
        return self.path_params

    @property
    def queryParams(self) -> dict[str, str | list[str]]:  # noqa: N802 - Motia's name
        return self.query_params

    def __getitem__(self, name: str) -> Any:
        name = _ALIASES.get(name, name)
        if name in _ITEMS:
            return getattr(self, name)
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __repr__(self) -> str:
        return f"ApiRequest(method={self.method!r}, path={self.path!r}, path_params={self.path_params!r})"


_ITEMS = frozenset(
    {
        "body",
        "headers",
        "method",
        "path",
        "path_params",
        "query_params",
        "raw_body",
        "request",
        "response",
        "request_body",
    }
)

#: motia-py 1.0's argument of a streaming handler (``args.request``, ``args.response``): the input every
#: HTTP handler gets already offers both, so it is the same class, and ``isinstance`` and annotations
#: (``MotiaHttpArgs[Any]``) work on it. One class rather than two because the runtime cannot know, before a
#: handler runs, whether it will stream.
MotiaHttpArgs = ApiRequest
#: motia-py 1.0's ``args.request``: ``input.request`` is the input itself.
MotiaHttpRequest = ApiRequest


@dataclass(slots=True)
class ApiResponse(Generic[TOutput]):
    """What an HTTP handler may return instead of ``{"status": ..., "body": ..., "headers": ...}``;
    ``ApiResponse[Order]`` in annotations (generic in the body type).

    ``body`` is sent as JSON (dicts, lists, strings, numbers, pydantic models, dataclasses); ``bytes``
    are sent as they are; ``None`` sends an empty body.
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CronInput:
    """The ``input`` of a cron handler: the expression and the tick (UTC) this run belongs to."""

    expression: str
    scheduled_at: datetime
    type: str = "cron"


class StateTriggerInput(BaseModel):
    """The ``input`` of a state trigger's handler: one change of one key.

    ``event_type`` is ``created``, ``updated``, ``deleted`` (also once per key removed by ``clear``) or
    ``expired`` (a TTL ran out). ``old_value``/``new_value`` are the values before and after (``None``
    when absent), ``version`` the key's version after the write (before it, for deleted/expired),
    ``timestamp`` the commit time (Unix seconds) and ``seq`` the event's position in the store's commit
    order. ``scope``/``key`` are aliases of ``group_id``/``item_id`` (also when building one:
    ``StateTriggerInput(event_type="created", scope="s", key="k")``), and item access
    (``input["new_value"]``, ``input.get("scope")``) works as on Motia's dict.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    type: Literal["state"] = "state"
    event_type: StateEventType
    group_id: str = Field(validation_alias=AliasChoices("group_id", "scope", "groupId"))
    item_id: str = Field(validation_alias=AliasChoices("item_id", "key", "itemId"))
    old_value: Any = None
    new_value: Any = None
    version: int = 0
    timestamp: float = 0.0
    seq: int | None = None

    @property
    def scope(self) -> str:
        return self.group_id

    @property
    def key(self) -> str:
        return self.item_id

    def __getitem__(self, name: str) -> Any:
        name = _STATE_ALIASES.get(name, name)
        if name in type(self).model_fields:
            return getattr(self, name)
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


_STATE_ALIASES = {
    "scope": "group_id",
    "key": "item_id",
    "groupId": "group_id",
    "itemId": "item_id",
    "eventType": "event_type",
    "oldValue": "old_value",
    "newValue": "new_value",
}


class StreamEvent(BaseModel):
    """``input.event`` of a stream trigger, motia-py 1.0's shape: ``type`` (the ``event_type``) and ``data``."""

    model_config = ConfigDict(frozen=True)

    type: StreamEventType
    data: Any = None


class StreamTriggerInput(BaseModel):
    """The ``input`` of a stream trigger's handler: one change of one stream group.

    ``event_type`` is ``create``, ``update`` or ``delete`` (an item of ``group_id`` changed; ``item_id``
    says which) or ``event`` (``send``: ``data`` is the event ``{"type", "data"}``; ``item_id`` is the
    channel's ``id``, or ``None`` for the whole group). ``old_value``/``new_value`` are the item before and
    after (``None`` when absent); ``data`` is what the change is about: the item after a create or update,
    the removed item after a delete, the event of a send. ``seq`` numbers the changes of the group (the
    ``seq`` stream clients see), ``timestamp`` is the commit time (Unix seconds).

    camelCase names work when building one and with item access (``input["streamName"]``), and motia-py
    1.0's ``input.id`` and ``input.event.type``/``input.event.data`` read the same fields.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    type: Literal["stream"] = "stream"
    event_type: StreamEventType = Field(validation_alias=AliasChoices("event_type", "eventType"))
    stream_name: str = Field(validation_alias=AliasChoices("stream_name", "streamName"))
    group_id: str = Field(validation_alias=AliasChoices("group_id", "groupId"))
    item_id: str | None = Field(default=None, validation_alias=AliasChoices("item_id", "itemId", "id"))
    old_value: Any = Field(default=None, validation_alias=AliasChoices("old_value", "oldValue"))
    new_value: Any = Field(default=None, validation_alias=AliasChoices("new_value", "newValue"))
    data: Any = None
    seq: int | None = None
    timestamp: float = 0.0

    @property
    def id(self) -> str | None:
        """motia-py 1.0's name of ``item_id``."""
        return self.item_id

    @property
    def event(self) -> StreamEvent:
        """motia-py 1.0's ``{"type", "data"}`` view of the change."""
        return StreamEvent(type=self.event_type, data=self.data)

    def __getitem__(self, name: str) -> Any:
        name = _STREAM_ALIASES.get(name, name)
        if name in type(self).model_fields or name in ("id", "event"):
            return getattr(self, name)
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


_STREAM_ALIASES = {
    "streamName": "stream_name",
    "groupId": "group_id",
    "itemId": "item_id",
    "eventType": "event_type",
    "oldValue": "old_value",
    "newValue": "new_value",
}


@dataclass(frozen=True, slots=True)
class TriggerInfo:
    """``ctx.trigger``: which trigger started this run (``type`` is http, cron, queue, state or stream).

    Only the fields of that type are set: ``method``/``path`` for http, ``expression`` for cron,
    ``topic`` for queue, ``scope``/``key`` (of the changed key) for state, ``stream_name``/``group_id``/
    ``item_id`` (of the change) for stream. Queue, state and stream runs also carry ``delivery_id``
    (stable across retries: a key for idempotent handlers) and ``attempt`` (1 on the first).
    """

    type: str
    method: str | None = None
    path: str | None = None
    expression: str | None = None
    topic: str | None = None
    scope: str | None = None
    key: str | None = None
    stream_name: str | None = None
    group_id: str | None = None
    item_id: str | None = None
    delivery_id: str | None = None
    attempt: int | None = None


#: The fields of a ``TriggerInfo`` in their order, as the runtime hands them to ``FlowContext`` (which builds
#: ``ctx.trigger`` from them on first read): ``TriggerInfo(*fields)``. Internal.
TriggerFields: TypeAlias = tuple[Any, ...]

#: A trigger's input, whatever its type (motia-py 1.0's name).
TriggerInput: TypeAlias = Any

#: What sends messages: ``ctx.enqueue`` and ``motia.enqueue`` (motia-py 1.0's name).
Enqueuer: TypeAlias = Callable[[Any], Any]

#: An HTTP middleware: ``async def mw(request, ctx, next)`` returning the response ``await next()`` gives,
#: or its own.
ApiMiddleware: TypeAlias = Callable[[ApiRequest[Any], Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]
