"""motia-py 1.0.x step files (``logger``, ``enqueue``, ``multi_trigger_step``, generic types, ``QueryParam``,
``include_files``, 7-field cron, ``api``) load and run unchanged, on every backend."""

from __future__ import annotations

import json
import logging

import orjson

from motia.steps.loader import load_steps
from motia.testing import app_client, drain
from tests.compat.conftest import HERE
from tests.polling import eventually

STEPS = HERE / "v1_project" / "steps"
FORM = "application/x-www-form-urlencoded"


def test_include_files_are_resolved_relative_to_the_step():
    loaded = {ls.step.name: ls for ls in load_steps(STEPS)}
    assert loaded["CreateOrder"].include_files == ((STEPS / "data" / "prices.json").resolve(),)
    assert loaded["OrderLifecycle"].include_files == ()


async def test_query_params_are_in_the_openapi_document():
    async with app_client(STEPS) as client:
        document = (await client.get("/openapi.json")).json()
    params = document["paths"]["/orders"]["post"]["parameters"]
    assert {"in": "query", "name": "coupon", "description": "A discount code", "schema": {"type": "string"}} in params
    assert {"in": "query", "name": "note", "schema": {"type": "string"}} in params


async def test_http_queue_and_state_triggers_of_one_multi_trigger_step(state_url, caplog):
    caplog.set_level(logging.INFO, logger="motia.step")
    async with app_client(STEPS, state=state_url) as client:
        # Given an order placed over HTTP (module-level logger and enqueue inside the handler)
        placed = await client.post("/orders", json={"id": "o1", "item": "book"})
        assert placed.status_code == 201, placed.text
        assert placed.json()["price"] == 12  # read from the included file
        # When the queue and state handlers of the multi-trigger step have run
        await drain(client)
        # Then the queue handler confirmed it, the state handler saw the change, the HTTP handler serves it.
        assert (await client.get("/orders/o1")).json()["status"] == "confirmed"
        assert await client.state.get("order-audit", "o1") == {"event": "updated", "status": "confirmed"}
        assert (await client.get("/orders/o2")).status_code == 404
        # And the blocking `def` handler reads through the module-level stateManager.
        stats = (await client.get("/stats")).json()
        assert stats["count"] == 1

    # `motia.logger` inside a handler logs as that run: step name and trace id.
    [placed_log] = [r for r in caplog.records if r.getMessage() == "Order placed"]
    assert placed_log.motia_step == "CreateOrder"
    assert placed_log.motia_trace_id == placed.json()["traceId"]
    assert placed_log.motia_fields == {"orderId": "o1"}
    [counted] = [r for r in caplog.records if r.getMessage() == "Counting orders"]
    assert (counted.levelname, counted.motia_step) == ("WARNING", "OrderStats")
    assert counted.motia_trace_id == stats["traceId"]


async def test_seven_field_cron_runs_the_cron_handler_with_ctx(state_url):
    async with app_client(STEPS, state=state_url, cron=True) as client:
        assert await eventually(lambda: client.state.get("lifecycle", "ticks")) >= 1


async def test_a_multi_trigger_step_dispatching_with_ctx_match(state_url):
    async with app_client(STEPS, state=state_url) as client:
        # Given an order placed and confirmed
        assert (await client.post("/orders", json={"id": "o1", "item": "book"})).status_code == 201
        await drain(client)
        # When it is shipped over HTTP (the http branch of ctx.match enqueues; get_data is the body)
        shipped = await client.post("/orders/o1/ship", json={"carrier": "ups"})
        assert shipped.status_code == 202, shipped.text
        assert shipped.json() == {"queued": True, "data": {"carrier": "ups"}}
        await drain(client)
        # Then the queue branch updated the order
        order = (await client.get("/orders/o1")).json()
        assert (order["status"], order["carrier"]) == ("shipped", "ups")
        # And its notice, which no step subscribes to yet, was kept as a dead letter, not refused
        [kept] = await client.state.backend.dead_letters("(no subscriber)")
        assert orjson.loads(kept.payload)["data"] == {"id": "o1", "carrier": "ups"}
        assert kept.error == "no subscriber: no step subscribes to topic 'order.shipped'"


def server_sent_events(text: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_the_playground_style_sse_step_streams_its_events(state_url):
    async with app_client(STEPS, state=state_url) as client:
        # Given the SSE step, posted a URL-encoded body as the playground's client does
        response = await client.post("/countdown", content=b"from=3&label=launch", headers={"content-type": FORM})
        # Then it answered with its own status and headers, and every event in order
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-trace-id"]
        assert server_sent_events(response.text) == [
            ("tick", {"label": "launch", "n": 3}),
            ("tick", {"label": "launch", "n": 2}),
            ("tick", {"label": "launch", "n": 1}),
            ("done", {"total": 3}),
        ]
        # And its write through the module-level stateManager reached the backend
        assert await client.state.get("countdowns", "launch") == {"total": 3}


async def test_fifo_queue_keeps_each_customers_shipments_in_order(state_url):
    async with app_client(STEPS, state=state_url) as client:
        # Given 3 customers x 10 shipments sent interleaved, the third of each customer failing once
        shipments = [
            {"customer": customer, "n": n, "flaky": n == 2} for n in range(10) for customer in ("ann", "bob", "cy")
        ]
        sent = await client.post("/shipments", json={"shipments": shipments})
        assert sent.status_code == 202, sent.text
        await drain(client, timeout=20)
        # Then each customer's shipments went out in order, the retried one in its place
        for customer in ("ann", "bob", "cy"):
            assert await client.state.get("shipments", customer) == {"sequence": list(range(10))}
