"""The recent traces of this process as the console reads them: plain records, the tree of one trace, and
the buffer the runtime installed (if tracing is on).

The buffer itself is an OpenTelemetry span processor (:mod:`motia.runtime.telemetry.recent`), loaded only
when tracing is on. This module imports no OpenTelemetry, so the console can ask "is there a buffer?" and
read it without pulling in the SDK: it gets the buffer from :func:`installed`, never by importing the
processor's module.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import ClassVar, Protocol

from motia.exceptions import ConfigError

__all__ = [
    "DEFAULT_MAX_SPANS",
    "DEFAULT_MAX_TOTAL_SPANS",
    "DEFAULT_MAX_TRACES",
    "AttributeValue",
    "SpanEvent",
    "SpanRecord",
    "TraceDetail",
    "TraceLimits",
    "TraceSource",
    "TraceSummary",
    "TreeSpan",
    "build_tree",
    "install",
    "installed",
    "uninstall",
]

#: Traces kept per process, and spans kept per trace (past it a trace counts the spans it dropped).
DEFAULT_MAX_TRACES, DEFAULT_MAX_SPANS = 100, 1000
#: Spans kept in all (about 2.8 KB each, attributes and a log line included: some 28 MB); past it the
#: traces least recently added to are evicted, so that a few big traces cannot hold the memory of 100.
DEFAULT_MAX_TOTAL_SPANS = 10_000

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """An event of a span: a ``log`` line (``log.severity``, ``log.message``) or an ``exception``."""

    name: str
    time: int  #: nanoseconds since the epoch
    attributes: Mapping[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One ended span, copied out of the SDK's span (ids as lowercase hex, times in ns since the epoch)."""

    trace_id: str
    span_id: str
    parent_id: str | None  #: ``None`` for a root; may name a span of another process (a continued trace)
    name: str
    kind: str  #: ``internal``, ``server``, ``client``, ``producer`` or ``consumer``
    start: int
    end: int
    status: str  #: ``unset``, ``ok`` or ``error``
    status_message: str | None
    attributes: Mapping[str, AttributeValue]
    events: tuple[SpanEvent, ...] = ()

    @property
    def error(self) -> bool:
        """Whether the span failed: its status is ERROR (an exception event alone may have been handled)."""
        return self.status == "error"


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """A trace in the list: its first span's name, when it started, how long it ran, how many spans."""

    trace_id: str
    root: str  #: the name of its root span (without one here: of its earliest span whose parent ran elsewhere)
    start: int  #: ns since the epoch: the earliest start of its spans (dropped ones included)
    duration: int  #: ns from that start to the latest end
    span_count: int  #: spans kept
    dropped: int  #: spans ended past the per-trace limit, not kept
    error: bool  #: whether any span failed (dropped ones included)


@dataclass(frozen=True, slots=True)
class TreeSpan:
    """A span in its place in the tree: ``depth`` 0 for a top-level span; ``orphan`` when its parent is
    not among the spans kept (it ran in another process, or was dropped)."""

    span: SpanRecord
    depth: int
    orphan: bool


@dataclass(frozen=True, slots=True)
class TraceDetail:
    """One trace: its summary and its spans in tree order (each parent before its children, siblings by
    start time), flat so that a deep flow needs no recursion to walk or render."""

    summary: TraceSummary
    spans: tuple[TreeSpan, ...]


class TraceSource(Protocol):
    """What the console needs of a recent-traces buffer."""

    @property
    def limits(self) -> TraceLimits: ...

    def recent(self, limit: int | None = None) -> list[TraceSummary]:
        """The traces kept, newest (latest start) first, at most ``limit``."""
        ...

    def trace(self, trace_id: str) -> TraceDetail | None:
        """The trace with this id (32 lowercase hex digits), or ``None`` if it is not kept."""
        ...


@dataclass(frozen=True)
class TraceLimits:
    """How much a recent-traces buffer keeps. Every value is a positive int."""

    max_traces: int = DEFAULT_MAX_TRACES  #: traces kept; the one least recently added to goes first
    max_spans: int = DEFAULT_MAX_SPANS  #: spans kept per trace
    max_total_spans: int = DEFAULT_MAX_TOTAL_SPANS  #: spans kept in all traces (the newest trace is never evicted)

    ENV: ClassVar[dict[str, str]] = {
        "max_traces": "MOTIA_TRACES_KEPT",
        "max_spans": "MOTIA_TRACE_MAX_SPANS",
        "max_total_spans": "MOTIA_TRACES_TOTAL_SPANS",
    }

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"trace limit {field.name} must be a positive int, not {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TraceLimits:
        """The defaults, overridden by ``MOTIA_TRACES_KEPT``, ``MOTIA_TRACE_MAX_SPANS`` and
        ``MOTIA_TRACES_TOTAL_SPANS``."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name, variable in cls.ENV.items():
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise ConfigError(f"{variable} must be a positive integer, not {raw!r}") from None
            if values[name] < 1:
                raise ConfigError(f"{variable} must be a positive integer, not {raw!r}")
        return cls(**values)


def build_tree(spans: Iterable[SpanRecord]) -> tuple[TreeSpan, ...]:
    """``spans`` in tree order: depth first, parents before children, siblings by start (then the longer
    first, then name). A span whose parent is not among ``spans`` is a top-level ``orphan``."""
    by_id = {span.span_id: span for span in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in by_id.values():
        parent = span.parent_id if span.parent_id in by_id else None
        children.setdefault(parent, []).append(span)

    def order(span: SpanRecord) -> tuple[int, int, str]:
        return (span.start, -span.end, span.name)

    for siblings in children.values():
        siblings.sort(key=order)
    tree: list[TreeSpan] = []
    seen: set[str] = set()
    # An explicit stack, not recursion: a long flow (a step that enqueues itself) nests deep.
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        tree.append(TreeSpan(span, depth, orphan=depth == 0 and span.parent_id is not None))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    # Spans in a parent cycle (only malformed input has one) are unreachable from the top: show them anyway.
    for span in sorted((s for s in by_id.values() if s.span_id not in seen), key=order):
        tree.append(TreeSpan(span, 0, orphan=True))
    return tuple(tree)


_lock = threading.Lock()
_installed: TraceSource | None = None


def install(source: TraceSource) -> None:
    """Make ``source`` the buffer the console of this process shows (replacing any other)."""
    global _installed
    with _lock:
        _installed = source


def uninstall(source: TraceSource) -> None:
    """Forget ``source`` if it is the one installed (a buffer shut down with its provider)."""
    global _installed
    with _lock:
        if _installed is source:
            _installed = None


def installed() -> TraceSource | None:
    """The buffer installed in this process, or ``None`` when tracing is off."""
    return _installed
