"""``response_schema``: documented per status in ``/openapi.json``; in development mode a response whose body
violates its status's schema is replaced by a logged 500; in production it is sent unchecked."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import BaseModel

from motia import ApiResponse, http, step
from motia.steps.definition import Step
from motia.testing import app_client


class Order(BaseModel):
    id: str
    total: int


NOT_FOUND = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


async def get_order(input: Any, ctx: Any) -> Any:
    kind = input.path_params["kind"]
    if kind == "good":
        return {"status": 200, "body": {"id": "o1", "total": 3}}
    if kind == "model":
        return ApiResponse(status=200, body=Order(id="o2", total=4))
    if kind == "bad":
        return {"status": 200, "body": {"id": "o3", "total": "three"}}
    if kind == "missing":
        return {"status": 404, "body": {"message": "no error key"}}
    return {"status": 202, "body": {"anything": "goes"}}  # no schema for 202


STEPS: list[Step] = [
    step(
        {
            "name": "GetOrder",
            "triggers": [http("GET", "/orders/:kind", response_schema={200: Order, "404": NOT_FOUND})],
        },
        get_order,
    ),
    step({"name": "Plain", "triggers": [http("GET", "/plain")]}, lambda input: {"status": 200, "body": {}}),
]


async def test_openapi_documents_each_status_with_its_schema():
    async with app_client(STEPS) as client:
        document = (await client.get("/openapi.json")).json()
    responses = document["paths"]["/orders/{kind}"]["get"]["responses"]
    assert set(responses) == {"200", "404"}
    assert responses["200"]["description"] == "OK"
    assert responses["200"]["content"]["application/json"]["schema"]["properties"]["total"] == {
        "title": "Total",
        "type": "integer",
    }
    assert responses["404"] == {"description": "Not Found", "content": {"application/json": {"schema": NOT_FOUND}}}
    # A trigger without response_schema keeps the default response
    assert document["paths"]["/plain"]["get"]["responses"] == {"default": {"description": "Response"}}


@pytest.mark.parametrize(("kind", "status"), [("good", 200), ("model", 200), ("other", 202)])
async def test_development_mode_passes_matching_responses_and_statuses_without_a_schema(kind, status):
    async with app_client(STEPS, dev=True) as client:
        response = await client.get(f"/orders/{kind}")
    assert response.status_code == status, response.text


@pytest.mark.parametrize(("kind", "field"), [("bad", "total"), ("missing", "error")])
async def test_development_mode_answers_500_for_a_violation_and_logs_it(kind, field, caplog):
    caplog.set_level(logging.ERROR)
    async with app_client(STEPS, dev=True) as client:
        response = await client.get(f"/orders/{kind}")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "Response does not match response_schema"
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert body["details"] and any(field in str(detail) for detail in body["details"]), body
    [record] = [r for r in caplog.records if "does not match response_schema" in r.getMessage()]
    assert record.motia_trace_id == body["trace_id"]
    assert record.motia_fields["details"] == body["details"]


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [("bad", 200, {"id": "o3", "total": "three"}), ("missing", 404, {"message": "no error key"})],
)
async def test_production_sends_responses_unchecked(kind, status, body):
    async with app_client(STEPS) as client:
        response = await client.get(f"/orders/{kind}")
    assert (response.status_code, response.json()) == (status, body)
