"""Streams: state that clients subscribe to and receive live (SPEC 10).

The streams floor sits between state and steps: it declares streams (:mod:`motia.streams.config`), gives
handlers and scripts their server API (:mod:`motia.streams.manager`, :mod:`motia.streams.stream`), and
holds the pure wire protocol and the Python client. The WebSocket/SSE server lives in
:mod:`motia.runtime.streams`. Items and their change log are stored by the state backend
(:class:`~motia.state.backends.base.StreamStore`).
"""

from __future__ import annotations

import importlib
from typing import Any

from motia.streams.config import DEFAULT_HISTORY, StreamConfig, StreamDefinition, StreamSubscription
from motia.streams.manager import StreamManager, StreamSetResult
from motia.streams.stream import Stream, Streams, bind_streams, current_streams, unbind_streams

__all__ = [
    "DEFAULT_HISTORY",
    "Stream",
    "StreamConfig",
    "StreamDefinition",
    "StreamManager",
    "StreamSetResult",
    "StreamSubscription",
    "Streams",
    "bind_streams",
    "current_streams",
    "unbind_streams",
]


def __getattr__(name: str) -> Any:
    if name == "StreamClient":  # imports websockets: only when asked for
        return importlib.import_module("motia.streams.client").StreamClient
    raise AttributeError(f"module 'motia.streams' has no attribute {name!r}")
