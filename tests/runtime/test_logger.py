"""``motia.logger``: the running handler's ``ctx.logger``, and a plain structured logger elsewhere."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from motia import FlowContext, logger, step
from motia.testing import call_handler


@pytest.mark.parametrize("kind", ["async", "def"])
async def test_inside_a_handler_it_logs_as_the_run(kind, caplog):
    caplog.set_level(logging.DEBUG, logger="motia.step")
    if kind == "async":

        async def handler(input: Any, ctx: FlowContext[Any]) -> str:
            logger.info("hello", {"n": 1})
            logger.warn("careful")
            return ctx.trace_id

    else:

        def handler(input: Any, ctx: FlowContext[Any]) -> str:  # type: ignore[misc]
            logger.info("hello", {"n": 1})
            logger.warn("careful")
            return ctx.trace_id

    trace_id = await call_handler(step({"name": "greeter", "triggers": []}, handler))
    hello, careful = [r for r in caplog.records if r.name == "motia.step"]
    assert (hello.getMessage(), hello.levelname, careful.levelname) == ("hello", "INFO", "WARNING")
    for record in (hello, careful):
        assert record.motia_step == "greeter"
        assert record.motia_trace_id == trace_id
    assert hello.motia_fields == {"n": 1}
    assert hello.funcName == "handler"  # the caller's line, not the logger's


def test_outside_a_handler_it_logs_without_step(caplog):
    caplog.set_level(logging.DEBUG, logger="motia.step")
    logger.debug("d", {"a": 1})
    logger.warning("w", extra={"b": 2})
    logger.error("e")
    logger.critical("c")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("x")
    records = [r for r in caplog.records if r.name == "motia.step"]
    assert [r.levelname for r in records] == ["DEBUG", "WARNING", "ERROR", "CRITICAL", "ERROR"]
    assert records[0].motia_fields == {"a": 1} and records[1].motia_fields == {"b": 2}
    assert all(r.motia_step == "" for r in records)
    assert records[-1].exc_info is not None
    assert repr(logger) == "<motia.logger>"


def test_upstream_types_are_generic():
    from motia import ApiRequest, ApiResponse

    assert FlowContext[Any] is not None and ApiRequest[dict[str, Any]] is not None
    response: ApiResponse[dict[str, int]] = ApiResponse(status=201, body={"a": 1})
    assert response.status == 201
