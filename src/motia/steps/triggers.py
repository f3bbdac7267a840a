"""Trigger objects: what starts a step (HTTP request, cron tick, queue message, state or stream change).

Plain objects, built by the lowercase constructors ``http``, ``cron``, ``queue``, ``state`` and ``stream`` and
listed in a step's ``triggers``. Each is keyword-only after its first argument, compares by value
and has a readable ``repr`` (starlette's ``Route`` shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from motia.exceptions import ConfigError
from motia.steps._signature import handler_arity
from motia.steps.queue_options import QueueOptions
from motia.steps.retry import RetryPolicy
from motia.steps.schedule import validate_expression
from motia.streams.config import check_stream_name

__all__ = [
    "DEFAULT_IDEMPOTENCY_TTL",
    "HTTP_METHODS",
    "CronTrigger",
    "HttpTrigger",
    "Match",
    "QueryParam",
    "QueueTrigger",
    "StateTrigger",
    "StreamTrigger",
    "Trigger",
    "api",
    "cron",
    "http",
    "idempotency_setting",
    "queue",
    "state",
    "stream",
    "trigger_from_dict",
]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

#: ``condition(input, ctx)``: sync or async; the handler runs only when it returns something truthy.
Condition = Callable[..., Any]


class Match(Enum):
    """How well an event matches a trigger: FULL, PARTIAL (HTTP: path matches, method does not) or NONE."""

    NONE = 0
    PARTIAL = 1
    FULL = 2


class Trigger:
    """Base of every trigger: a ``type`` name and an optional ``condition``."""

    type: ClassVar[str] = ""
    condition: Condition | None

    def _fields(self) -> tuple[Any, ...]:
        raise NotImplementedError  # pragma: no cover

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trigger) and type(other) is type(self) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self), repr(self)))


@dataclass(frozen=True, slots=True)
class QueryParam:
    """A query parameter of an HTTP trigger, for its OpenAPI document: ``QueryParam(name="limit",
    description="How many")`` in ``http(..., query_params=[...])``."""

    name: str
    description: str = ""


def _query_param(item: object) -> str | dict[str, Any]:
    """A query parameter as a name or a dict with ``name`` (``QueryParam`` objects become dicts)."""
    if isinstance(item, QueryParam):
        item = {"name": item.name, "description": item.description} if item.description else {"name": item.name}
    if isinstance(item, str) and item:
        return item
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
        return item
    raise ConfigError(f"http query parameter must be a name, a dict with 'name' or a QueryParam, got {item!r}")


_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_-]*)|\{([A-Za-z_][A-Za-z0-9_-]*)\}")


def _compile_path(path: str) -> tuple[re.Pattern[str], tuple[str, ...], str]:
    """Compile ``/a/:x/{y}`` into a regex, its parameter names and its OpenAPI form ``/a/{x}/{y}``."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"http path must be a string starting with '/', got {path!r}")
    if any(c.isspace() for c in path):
        raise ConfigError(f"http path must not contain whitespace: {path!r}")
    trimmed = path.rstrip("/") or "/"
    names: list[str] = []
    pattern = ["^"]
    template = []
    pos = 0
    for m in _PARAM.finditer(trimmed):
        literal = trimmed[pos : m.start()]
        pattern.append(re.escape(literal))
        template.append(literal)
        name = m.group(1) or m.group(2)
        if name in names:
            raise ConfigError(f"http path {path!r} uses the parameter {name!r} twice")
        names.append(name)
        pattern.append("([^/]+)")
        template.append("{" + name + "}")
        pos = m.end()
    rest = trimmed[pos:]
    if "{" in _PARAM.sub("", trimmed) or "}" in _PARAM.sub("", trimmed):
        raise ConfigError(f"http path {path!r} has a malformed parameter; use :name or {{name}}")
    pattern.append(re.escape(rest))
    template.append(rest)
    pattern.append("/?$" if trimmed != "/" else "$")
    return re.compile("".join(pattern)), tuple(names), "".join(template)


#: How long an ``Idempotency-Key``'s answer (and an enqueued message's ``id``) is remembered by default: 24 h.
DEFAULT_IDEMPOTENCY_TTL = 86400.0


def idempotency_setting(value: object, where: str) -> float | bool | None:
    """``idempotency=`` checked: ``None`` (not set), ``False`` (off), or the retention in seconds
    (``True``: :data:`DEFAULT_IDEMPOTENCY_TTL`; ``{"ttl": seconds}``). Anything else is a ``ConfigError``."""
    if value is None or value is False:
        return value
    if value is True:
        return DEFAULT_IDEMPOTENCY_TTL
    if isinstance(value, Mapping):
        unknown = set(value) - {"ttl"}
        if unknown:
            raise ConfigError(f"{where}: idempotency got unknown key(s) {sorted(map(str, unknown))}: expected 'ttl'")
        ttl = value.get("ttl", DEFAULT_IDEMPOTENCY_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < float("inf"):
            raise ConfigError(f"{where}: idempotency ttl must be a positive number of seconds, got {ttl!r}")
        return float(ttl)
    raise ConfigError(f"{where}: idempotency must be True, False or {{'ttl': seconds}}, got {value!r}")


class HttpTrigger(Trigger):
    """An HTTP route: ``method`` and ``path`` with ``:name`` or ``{name}`` parameters.

    ``body_schema`` (a pydantic model class or a JSON Schema dict) is checked before the handler
    runs: a violation answers 400 with details. ``query_params`` documents query parameters in the
    OpenAPI document (names, dicts with ``name`` and ``description``, or ``QueryParam`` objects, kept as
    dicts). ``middleware`` is a list
    of ``async def mw(input, ctx, next)`` run in order around the handler. ``response_schema`` maps
    statuses (ints 100..599, or their digit strings) to the schema of that status's body (a pydantic model
    class or a JSON Schema dict): documented in the OpenAPI document, checked in development mode.
    """

    type: ClassVar[str] = "http"

    def __init__(
        self,
        method: str,
        path: str,
        *,
        body_schema: Any = None,
        query_params: Sequence[str | dict[str, Any] | QueryParam] | None = None,
        middleware: Sequence[Callable[..., Any]] | None = None,
        condition: Condition | None = None,
        response_schema: Mapping[int | str, Any] | None = None,
        idempotency: bool | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            raise ConfigError(f"http method must be one of {', '.join(HTTP_METHODS)}, got {method!r}")
        self.method = method.upper()
        self.path = path
        self.regex, self.param_names, self.openapi_path = _compile_path(path)
        _check_body_schema(body_schema)
        self.body_schema = body_schema
        self.query_params = [_query_param(q) for q in query_params or []]
        self.middleware = list(middleware or [])
        for mw in self.middleware:
            if not callable(mw):
                raise ConfigError(f"http middleware must be callable, got {mw!r}")
        _check_condition(condition)
        self.condition = condition
        self.response_schema = _response_schemas(response_schema, f"http({self.method!r}, {path!r})")
        #: ``Idempotency-Key`` handling: ``None`` follows the app's setting, ``False`` is off, a float is on
        #: with that retention in seconds (``runtime/idempotency.py``).
        self.idempotency = idempotency_setting(idempotency, f"http({self.method!r}, {path!r})")

    @property
    def route_key(self) -> tuple[str, str]:
        """``(METHOD, /path/{})``: two triggers with the same key would serve the same requests."""
        return self.method, re.sub(r"\{[^}]*\}", "{}", self.openapi_path)

    def match_path(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` matches this route's path, else ``None``."""
        m = self.regex.match(path)
        if m is None:
            return None
        return dict(zip(self.param_names, m.groups(), strict=True))

    def matches(self, method: str, path: str) -> tuple[Match, dict[str, str]]:
        params = self.match_path(path)
        if params is None:
            return Match.NONE, {}
        if method == self.method or (method == "HEAD" and self.method == "GET"):
            return Match.FULL, params
        return Match.PARTIAL, params

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.method,
            self.path,
            self.body_schema,
            self.query_params,
            self.middleware,
            self.condition,
            self.response_schema,
            self.idempotency,
        )

    def __repr__(self) -> str:
        return f"http({self.method!r}, {self.path!r})"


class CronTrigger(Trigger):
    """A schedule: a 5-field, 6-field (seconds first) or 7-field (seconds first, year last) cron
    expression, evaluated in UTC."""

    type: ClassVar[str] = "cron"

    def __init__(self, expression: str, *, condition: Condition | None = None) -> None:
        self.expression = validate_expression(expression)
        _check_condition(condition)
        self.condition = condition

    def _fields(self) -> tuple[Any, ...]:
        return (self.expression, self.condition)

    def __repr__(self) -> str:
        return f"cron({self.expression!r})"


class QueueTrigger(Trigger):
    """Messages enqueued on ``topic`` (``ctx.enqueue({"topic": ..., "data": ...})``).

    ``input`` (a pydantic model class or a JSON Schema dict) is checked when a message is enqueued: an
    invalid one raises there and nothing is enqueued. ``config`` holds the queue's options (``type``
    ``"fifo"``/``"standard"``, ``delay_seconds``, ``visibility_timeout``, ``concurrency``) and its retry
    policy (``max_retries``, ``backoff``/``backoff_delay_ms``, ``backoff_max``, ``backoff_type``), read into
    ``options`` (:class:`~motia.steps.queue_options.QueueOptions`) and ``retry``.
    """

    type: ClassVar[str] = "queue"

    def __init__(
        self,
        topic: str,
        *,
        input: Any = None,  # noqa: A002 - Motia's name
        config: Mapping[str, Any] | None = None,
        condition: Condition | None = None,
    ) -> None:
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"queue topic must be a non-empty string, got {topic!r}")
        if config is not None and not isinstance(config, Mapping):
            raise ConfigError(f"queue config must be a dict, got {type(config).__name__}")
        self.topic = topic
        _check_body_schema(input, what="queue input")
        self.input = input
        self.config = dict(config or {})
        self.options = QueueOptions.from_config(self.config, what=f"queue({topic!r})")
        self.retry = self.options.retry
        _check_condition(condition)
        self.condition = condition

    def matches(self, topic: str) -> Match:
        return Match.FULL if topic == self.topic else Match.NONE

    def _fields(self) -> tuple[Any, ...]:
        return (self.topic, self.input, self.config, self.condition)

    def __repr__(self) -> str:
        return f"queue({self.topic!r})"


class StateTrigger(Trigger):
    """State change events (created, updated, deleted, expired), optionally of one ``scope`` and/or ``key``.

    ``config`` holds the retry policy, as for queues (default: 3 retries, backoff 1 s doubling).
    """

    type: ClassVar[str] = "state"

    def __init__(
        self,
        *,
        scope: str | None = None,
        key: str | None = None,
        condition: Condition | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        for name, value in (("scope", scope), ("key", key)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"state trigger {name} must be a non-empty string or None, got {value!r}")
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"state trigger config must be a dict, got {type(config).__name__}")
        self.scope = scope
        self.key = key
        self.config = dict(config or {})
        _check_condition(condition)
        self.condition = condition
        self.retry = RetryPolicy.from_config(self.config, what=repr(self))

    def matches(self, scope: str, key: str) -> Match:
        if (self.scope is None or self.scope == scope) and (self.key is None or self.key == key):
            return Match.FULL
        return Match.NONE

    def _fields(self) -> tuple[Any, ...]:
        return (self.scope, self.key, self.condition, self.config)

    def __repr__(self) -> str:
        args = [f"{n}={v!r}" for n, v in (("scope", self.scope), ("key", self.key)) if v is not None]
        return f"state({', '.join(args)})"


class StreamTrigger(Trigger):
    """Changes of the stream ``stream_name`` (item created, updated, deleted, or an event ``send``),
    optionally of one ``group_id`` and/or ``item_id``.

    ``config`` holds the retry policy, as for queues (default: 3 retries, backoff 1 s doubling). The stream
    must be declared in the app: start-up fails naming the step otherwise.
    """

    type: ClassVar[str] = "stream"

    def __init__(
        self,
        stream_name: str,
        *,
        group_id: str | None = None,
        item_id: str | None = None,
        condition: Condition | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.stream_name = check_stream_name(stream_name)
        except ConfigError as exc:
            raise ConfigError(f"stream trigger: {exc}") from None
        for name, value in (("group_id", group_id), ("item_id", item_id)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"stream trigger {name} must be a non-empty string or None, got {value!r}")
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"stream trigger config must be a dict, got {type(config).__name__}")
        self.group_id = group_id
        self.item_id = item_id
        self.config = dict(config or {})
        _check_condition(condition)
        self.condition = condition
        self.retry = RetryPolicy.from_config(self.config, what=repr(self))

    def matches(self, stream_name: str, group_id: str, item_id: str | None) -> Match:
        """FULL when the change is of this trigger's stream, and of its group and item when it names them
        (an event ``send`` to a whole group has no item: only triggers without ``item_id`` get it)."""
        if (
            stream_name == self.stream_name
            and self.group_id in (None, group_id)
            and (self.item_id is None or self.item_id == item_id)
        ):
            return Match.FULL
        return Match.NONE

    def _fields(self) -> tuple[Any, ...]:
        return (self.stream_name, self.group_id, self.item_id, self.condition, self.config)

    def __repr__(self) -> str:
        args = [repr(self.stream_name)]
        args += [f"{n}={v!r}" for n, v in (("group_id", self.group_id), ("item_id", self.item_id)) if v is not None]
        return f"stream({', '.join(args)})"


def _check_condition(condition: object) -> None:
    if condition is not None:
        if not callable(condition):
            raise ConfigError(f"condition must be callable (input, ctx) -> bool, got {condition!r}")
        handler_arity(condition)  # raises ConfigError for a signature we cannot call


def _check_body_schema(schema: object, *, what: str = "body_schema") -> None:
    if schema is None or isinstance(schema, dict):
        return
    if isinstance(schema, type) and hasattr(schema, "model_validate"):
        return
    raise ConfigError(f"{what} must be a pydantic model class or a JSON Schema dict, got {schema!r}")


def _response_schemas(value: object, label: str) -> dict[int, Any]:
    """``response_schema`` checked: ``{status: schema}`` with int (or digit string) statuses 100..599."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{label}: response_schema must be a dict of status to schema, got {value!r:.100}")
    schemas: dict[int, Any] = {}
    for status, schema in value.items():
        code = int(status) if isinstance(status, str) and status.isdigit() else status
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ConfigError(f"{label}: response_schema status must be an int between 100 and 599, got {status!r}")
        if schema is None:
            raise ConfigError(f"{label}: response_schema[{code}] must be a pydantic model class or a JSON Schema dict")
        try:
            _check_body_schema(schema, what=f"response_schema[{code}]")
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        schemas[code] = schema
    return schemas


def http(
    method: str,
    path: str,
    *,
    body_schema: Any = None,
    query_params: Sequence[str | dict[str, Any] | QueryParam] | None = None,
    middleware: Sequence[Callable[..., Any]] | None = None,
    condition: Condition | None = None,
    response_schema: Mapping[int | str, Any] | None = None,
    idempotency: bool | Mapping[str, Any] | None = None,
) -> HttpTrigger:
    """An HTTP trigger: ``http("GET", "/session/:sessionId")`` (``{sessionId}`` works too);
    ``response_schema={200: Order, 404: {...}}`` documents (and in development checks) response bodies;
    ``idempotency=True`` (or ``{"ttl": seconds}``) replays the answer to a retried ``Idempotency-Key``."""
    return HttpTrigger(
        method,
        path,
        body_schema=body_schema,
        query_params=query_params,
        middleware=middleware,
        condition=condition,
        response_schema=response_schema,
        idempotency=idempotency,
    )


#: Motia's earlier name of :func:`http` (``api("POST", "/orders")``): the same function.
api = http


def cron(expression: str, *, condition: Condition | None = None) -> CronTrigger:
    """A cron trigger: ``cron("0 * * * *")`` (hourly), ``cron("*/10 * * * * *")`` (every 10 s) or
    ``cron("0 0 9 * * * 2027")`` (9:00 every day of 2027), UTC."""
    return CronTrigger(expression, condition=condition)


def queue(
    topic: str,
    *,
    input: Any = None,  # noqa: A002 - Motia's name
    config: Mapping[str, Any] | None = None,
    condition: Condition | None = None,
) -> QueueTrigger:
    """A queue trigger: the step handles each message enqueued on ``topic``, at least once.

    ``queue("orders", input=Order, config={"max_retries": 5, "backoff": 2.0})``;
    ``queue("payments", config={"type": "fifo", "concurrency": 4})`` handles the messages of each
    ``messageGroupId`` in order, one at a time (see :mod:`motia.steps.queue_options` for every key).
    """
    return QueueTrigger(topic, input=input, config=config, condition=condition)


def state(
    *,
    scope: str | None = None,
    key: str | None = None,
    condition: Condition | None = None,
    config: dict[str, Any] | None = None,
) -> StateTrigger:
    """A state trigger: the step handles each change of ``scope``/``key`` (``None``: any), at least once
    and in commit order per key. ``config`` as for :func:`queue` (retries)."""
    return StateTrigger(scope=scope, key=key, condition=condition, config=config)


def stream(
    stream_name: str,
    *,
    group_id: str | None = None,
    item_id: str | None = None,
    condition: Condition | None = None,
    config: dict[str, Any] | None = None,
) -> StreamTrigger:
    """A stream trigger: the step handles each change of the stream ``stream_name`` (of ``group_id`` /
    ``item_id`` when given), at least once and in commit order per group. The handler gets a
    :class:`~motia.runtime.types.StreamTriggerInput`. ``config`` as for :func:`queue` (retries).

    ``stream("todo", group_id="inbox", condition=lambda input: input.event_type == "create")``.
    """
    return StreamTrigger(stream_name, group_id=group_id, item_id=item_id, condition=condition, config=config)


def trigger_from_dict(data: dict[str, Any]) -> Trigger:
    """Build a trigger from its dict form, e.g. ``{"type": "http", "method": "GET", "path": "/x"}``.

    Accepts Motia's type names (``http``/``api``, ``cron``, ``queue``/``event``, ``state``, ``stream``) and
    camelCase option names (``bodySchema``, ``queryParams``, ``streamName``, ``groupId``, ``itemId``).
    """
    opts = {_snake(k): v for k, v in data.items()}
    kind = opts.pop("type", None)
    try:
        if kind in ("http", "api"):
            return http(opts.pop("method"), opts.pop("path"), **opts)
        if kind == "cron":
            return cron(opts.pop("expression", None) or opts.pop("cron"), **opts)
        if kind in ("queue", "event"):
            return queue(opts.pop("topic", None) or opts.pop("subscribes"), **opts)
        if kind == "state":
            return state(**opts)
        if kind == "stream":
            name = opts.pop("stream_name", None) or opts.pop("stream", None)
            if name is None:
                raise KeyError("streamName")
            return stream(name, **opts)
    except KeyError as exc:
        raise ConfigError(f"{kind} trigger is missing {exc.args[0]!r}") from None
    except TypeError as exc:
        raise ConfigError(f"bad {kind} trigger {data!r}: {exc}") from None
    raise ConfigError(f"unknown trigger type {kind!r}; expected http, cron, queue, state or stream")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
