"""The OpenAPI 3.1 document served at ``/openapi.json``: every HTTP trigger, its parameters, request
body and response schemas (moved out of :mod:`motia.runtime.http`, which re-exports it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from motia.steps.definition import Step

__all__ = ["openapi_document"]


def openapi_document(steps: list[Step], *, title: str = "pymotia app", version: str = "0.1.0") -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every HTTP trigger of ``steps``."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    for step in steps:
        for trig in step.http_triggers:
            op: dict[str, Any] = {"operationId": step.name, "responses": {"default": {"description": "Response"}}}
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
