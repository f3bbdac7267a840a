from __future__ import annotations

import io
import json
import logging

import pytest

from motia import MotiaError, TriggerInfo
from motia.runtime.context import FlowContext, StepLogger
from motia.runtime.logging import JsonFormatter, TextFormatter, configure_logging


def make_record(caplog, fn) -> logging.LogRecord:
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="motia")
    fn(StepLogger("get-session", "trace123"))
    [record] = caplog.records
    return record


@pytest.mark.parametrize(
    "call",
    [
        lambda log: log.info("Session deleted", {"sessionId": "s1", "userId": "42"}),
        lambda log: log.info("Session deleted", extra={"sessionId": "s1", "userId": "42"}),
        lambda log: log.info("Session deleted", {"sessionId": "s1"}, extra={"userId": "42"}),
    ],
)
def test_fields_positionally_or_as_extra(caplog, call):
    record = make_record(caplog, call)
    assert record.getMessage() == "Session deleted"
    assert record.levelno == logging.INFO
    assert record.motia_step == "get-session"  # type: ignore[attr-defined]
    assert record.motia_trace_id == "trace123"  # type: ignore[attr-defined]
    assert record.motia_fields == {"sessionId": "s1", "userId": "42"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "level"),
    [
        ("debug", "DEBUG"),
        ("info", "INFO"),
        ("warn", "WARNING"),
        ("warning", "WARNING"),
        ("error", "ERROR"),
        ("critical", "CRITICAL"),
    ],
)
def test_levels(caplog, method, level):
    assert make_record(caplog, lambda log: getattr(log, method)("m")).levelname == level


def test_record_points_at_the_caller(caplog):
    record = make_record(caplog, lambda log: log.info("here"))
    assert record.filename == "test_context.py"


def test_exception_logs_traceback(caplog):
    def fail(log):
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed", {"n": 1})

    record = make_record(caplog, fail)
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_text_formatter():
    record = logging.LogRecord("motia.step", logging.INFO, __file__, 1, "Session deleted", None, None)
    record.motia_step = "delete-session"
    record.motia_trace_id = "abc"
    record.motia_fields = {"sessionId": "s 1", "count": 3, "ok": True}
    line = TextFormatter().format(record)
    assert line.endswith('INFO  [delete-session] Session deleted sessionId="s 1" count=3 ok=true trace=abc')
    plain = logging.LogRecord("motia.runtime", logging.WARNING, __file__, 1, "x=%s", (1,), None)
    assert TextFormatter().format(plain).endswith("WARN  (motia.runtime) x=1")
    assert "\x1b[" in TextFormatter(color=True).format(plain)


def test_json_formatter():
    record = logging.LogRecord("motia.step", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    record.motia_step = "s"
    record.motia_trace_id = "t"
    record.motia_fields = {"when": object()}
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "error" and data["msg"] == "boom now" and data["step"] == "s" and data["trace_id"] == "t"
    assert data["fields"]["when"].startswith("<object")
    assert data["time"].endswith("+00:00")


def test_configure_logging_json_to_a_stream():
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        StepLogger("s", "t").info("hello", {"a": 1})
        logging.getLogger("motia.step").debug("hidden")
    finally:
        configure_logging("text")
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["fields"] == {"a": 1}


def test_context_trigger_predicates_and_enqueue():
    def ctx(kind):
        return FlowContext(
            state=None, logger=StepLogger("s", "t"), trace_id="t", trigger=TriggerInfo(type=kind), step="s"
        )

    assert [ctx("http").is_api(), ctx("cron").is_cron(), ctx("queue").is_queue(), ctx("state").is_state()] == [True] * 4
    assert not ctx("http").is_cron()
    with pytest.raises(MotiaError, match=r"ctx.enqueue\(topic='orders'\) needs an app"):
        ctx("http").enqueue({"topic": "orders", "data": {}})
    assert "step='s'" in repr(ctx("cron"))


def test_ctx_trigger_from_the_runtime_fields_is_the_public_trigger_info():
    """The runtime hands a delivery's ``TriggerInfo`` fields and ``ctx.trigger`` builds it on first read:
    what a handler sees is the frozen dataclass it always was (equal, hashable, immutable, replaceable)."""
    import dataclasses

    fields = ("state", None, None, None, None, "carts", "c1", None, None, None, "state:7:watch", 2)
    ctx = FlowContext(None, StepLogger("s", "t"), "t", fields, "s")
    assert ctx.is_state() and not ctx.is_queue() and ctx.match({"state": lambda i: "S", "default": None}) == "S"
    expected = TriggerInfo(type="state", scope="carts", key="c1", delivery_id="state:7:watch", attempt=2)
    info = ctx.trigger
    assert type(info) is TriggerInfo and info == expected and hash(info) == hash(expected)
    assert repr(info) == repr(expected) and f"trigger={expected!r}" in repr(ctx)
    assert ctx.trigger is info  # built once
    assert dataclasses.asdict(info) == dataclasses.asdict(expected)
    assert dataclasses.replace(info, attempt=3) == TriggerInfo(
        type="state", scope="carts", key="c1", delivery_id="state:7:watch", attempt=3
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.attempt = 5  # type: ignore[misc]
    ctx.trigger = TriggerInfo(type="cron", expression="* * * * *")  # still assignable, as the slot was
    assert ctx.is_cron() and ctx.trigger.expression == "* * * * *"


async def test_the_runs_logger_and_enqueue_scope_are_made_on_first_use_and_are_what_they_were(caplog) -> None:
    """``app.context`` leaves ``ctx.logger`` and ``ctx.enqueuer`` to be made when used (issue 15): then they
    are the step's logger and the run's ``EnqueueScope`` (sender, parent delivery, trace id) as before, one
    per run, and ``motia.logger`` / ``motia.enqueue`` in the handler use them."""
    import motia
    from motia.runtime.app import MotiaApp
    from motia.runtime.queue import EnqueueScope
    from motia.steps.definition import Step
    from motia.testing.stores import memory_state

    seen: list[object] = []

    async def handler(input, ctx):  # noqa: A002
        motia.logger.info("from the module logger")
        seen.append(ctx.logger)

    step = Step({"name": "lazy", "triggers": []}, handler)
    app = MotiaApp([step], state=memory_state(), cron=False, delivery=False)
    await app.startup()
    try:
        ctx = app.context(step, ("queue",) + (None,) * 11, "trace-9", delivery_id="q:1")
        assert ctx._logger is None and ctx._enqueuer is None  # nothing made yet
        scope = ctx.enqueuer
        assert isinstance(scope, EnqueueScope) and scope is ctx.enqueuer
        assert (scope.sender, scope.parent, scope.trace_id, scope.blocking) == ("lazy", "q:1", "trace-9", False)
        assert [scope.next_id(), scope.next_id()] == ["q:1/0", "q:1/1"]
        caplog.set_level(logging.INFO, logger="motia")
        await app.invoke(step, {}, ctx)
        [record] = [r for r in caplog.records if r.getMessage() == "from the module logger"]
        assert record.motia_step == "lazy" and record.motia_trace_id == "trace-9"
        assert seen == [ctx.logger] and ctx.logger.step == "lazy" and ctx.logger.trace_id == "trace-9"

        other = app.context(step, TriggerInfo(type="http"), "t2")
        other.enqueuer = None  # replaced by hand (motia.testing does): no scope is made behind it
        assert other.enqueuer is None
        with pytest.raises(MotiaError, match="needs an app"):
            other.enqueue({"topic": "t", "data": {}})
    finally:
        await app.shutdown()


def test_a_ctx_without_a_trace_id_draws_one_when_read_and_keeps_it() -> None:
    """State deliveries carry no trace id: the ctx draws one on first read (issue 15), then it is the run's."""
    import re

    ctx = FlowContext(None, None, None, ("state",) + (None,) * 11, "s")
    assert ctx._trace_id is None
    trace_id = ctx.trace_id
    assert re.fullmatch(r"[0-9a-f]{16}", trace_id) and ctx.trace_id == trace_id == ctx.logger.trace_id
    assert FlowContext(None, None, None, ("state",) + (None,) * 11, "s").trace_id != trace_id
