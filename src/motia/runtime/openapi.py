"""The schemas of HTTP triggers: the OpenAPI 3.1 document served at ``/openapi.json`` (every trigger, its
parameters, request body and response schemas; moved out of :mod:`motia.runtime.http`, which re-exports
it), and the development-mode check of responses against ``response_schema``."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from motia.runtime.responses import encode_json, error_response
from motia.runtime.types import ApiResponse
from motia.state.schema import schema_errors
from motia.state.values import decode as decode_json
from motia.steps.definition import Step

if TYPE_CHECKING:
    from starlette.responses import Response

    from motia.runtime.context import FlowContext

__all__ = ["check_response", "openapi_document"]


def openapi_document(steps: list[Step], *, title: str = "pymotia app", version: str = "0.1.0") -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every HTTP trigger of ``steps``."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    for step in steps:
        for trig in step.http_triggers:
            op: dict[str, Any] = {"operationId": step.name, "responses": _responses(trig.response_schema, components)}
            if step.config.description:
                op["summary"] = step.config.description
            if step.config.flows:
                op["tags"] = list(step.config.flows)
            params = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in trig.param_names
            ]
            for q in trig.query_params:
                entry = {"name": q} if isinstance(q, str) else dict(q)
                params.append({"in": "query", "schema": {"type": "string"}, **entry})
            if params:
                op["parameters"] = params
            if trig.body_schema is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema(trig.body_schema, components)}},
                }
            paths.setdefault(trig.openapi_path, {})[trig.method.lower()] = op
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": paths}
    if components:
        doc["components"] = {"schemas": components}
    return doc


def _schema(schema: Any, components: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        js = schema.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(js.pop("$defs", {}))
        return js
    return dict(schema)


def _responses(schemas: dict[int, Any], components: dict[str, Any]) -> dict[str, Any]:
    if not schemas:
        return {"default": {"description": "Response"}}
    responses: dict[str, Any] = {}
    for status in sorted(schemas):
        try:
            description = HTTPStatus(status).phrase
        except ValueError:
            description = "Response"
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": _schema(schemas[status], components)}},
        }
    return responses


def check_response(schemas: dict[int, Any], result: Any, ctx: FlowContext) -> Response | None:
    """In development mode: ``None`` when ``result`` (a handler's return value) has no schema for its
    status or matches it, else the 500 that replaces it (the mismatch is logged with its details).

    The body is checked as the client would read it (encoded to JSON and decoded), so a pydantic model
    or a dataclass returned as the body is checked by its JSON form. Results that are not a response are
    left to ``to_response``, which refuses them.
    """
    if isinstance(result, ApiResponse):
        status, body = result.status, result.body
    elif isinstance(result, dict) and "status" in result:
        status, body = result["status"], result.get("body")
    else:
        return None
    schema = schemas.get(status) if isinstance(status, int) else None
    if schema is None:
        return None
    if body is not None and not isinstance(body, str | bytes | bytearray):
        body = decode_json(encode_json(body))
    problems = schema_errors(schema, body)
    if not problems:
        return None
    ctx.logger.error(
        f"response does not match response_schema[{status}]",
        {"status": status, "details": problems},
    )
    return error_response(500, "Response does not match response_schema", ctx.trace_id, details=problems)
