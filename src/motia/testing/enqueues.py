"""Messages enqueued, recorded for assertions: by a handler called by hand, or by a running app."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from motia.runtime.app import MotiaApp
from motia.runtime.queue import EnqueueError, Message, parse_event, strict_topics_from_env
from motia.state import values as _values

__all__ = ["EnqueueRecorder", "RecordingEnqueuer", "capture_enqueues"]

_ANY: Any = object()


class EnqueueRecorder:
    """Messages enqueued, in order, as :class:`~motia.runtime.queue.Message` (``topic``, ``data``,
    ``sender``, ...).

    Pass one to :func:`call_handler`/:func:`make_context` (messages are recorded instead of sent), or
    watch a running app with :func:`capture_enqueues` (messages are sent and recorded).
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def __call__(self, message: Message) -> None:
        with self._lock:
            self.messages.append(message)

    def topics(self) -> list[str]:
        return [message.topic for message in self.messages]

    def data(self, topic: str) -> list[Any]:
        """The data of every message sent to ``topic``, in order."""
        return [message.data for message in self.messages if message.topic == topic]

    def assert_enqueued(self, topic: str, data: Any = _ANY) -> Message:
        """The one message sent to ``topic`` (with ``data``, if given); ``AssertionError`` listing what was sent."""
        found = [m for m in self.messages if m.topic == topic and (data is _ANY or m.data == data)]
        if len(found) != 1:
            sent = "\n".join(f"  {m.topic}: {m.data!r}" for m in self.messages) or "  (nothing)"
            wanted = topic if data is _ANY else f"{topic}: {data!r}"
            raise AssertionError(f"expected one message {wanted}, found {len(found)}; enqueued:\n{sent}")
        return found[0]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


class RecordingEnqueuer:
    """``ctx.enqueue`` for handlers called without an app: checks and records, sends nothing."""

    def __init__(
        self, recorder: EnqueueRecorder, *, sender: str, declared: frozenset[str] | None, blocking: bool
    ) -> None:
        self.recorder = recorder
        self.sender = sender
        self.declared = declared
        self.blocking = blocking
        self._numbers = itertools.count()

    def __call__(self, event: Mapping[str, Any]) -> Any:
        topic, data, group = parse_event(event)
        if self.declared is not None and topic not in self.declared and strict_topics_from_env():
            # As the app does: refused with strict topics, else recorded (the app sends it with a warning).
            raise EnqueueError(
                f"step {self.sender!r} enqueued to topic {topic!r}, which its config does not declare: add it "
                f"to 'enqueues' (declared: {', '.join(sorted(self.declared)) or 'none'}; strict topics refuse "
                "undeclared ones)"
            )
        try:
            json_data = _values.to_json(data)
        except ValueError as exc:
            raise EnqueueError(f"message data for topic {topic!r} cannot be enqueued: {exc}") from None
        self.recorder(Message(topic, json_data, self.sender, f"test/{next(self._numbers)}", (), group))
        if self.blocking:
            return None
        return _done()


async def _done() -> None:
    return None


@contextlib.contextmanager
def capture_enqueues(app: MotiaApp) -> Iterator[EnqueueRecorder]:
    """Record every message ``app`` enqueues inside the block (they are still delivered)."""
    recorder = EnqueueRecorder()
    app.queues.observers.append(recorder)
    try:
        yield recorder
    finally:
        app.queues.observers.remove(recorder)
