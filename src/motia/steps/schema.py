"""``schema_to_json_schema``: the JSON Schema of a step's schema (``body_schema``, queue ``input``)."""

from __future__ import annotations

from typing import Any

__all__ = ["schema_to_json_schema"]


def schema_to_json_schema(schema: Any) -> dict[str, Any] | None:
    """The JSON Schema of ``schema``: a dict is one already, a pydantic model class gives its
    ``model_json_schema()``; ``None`` (and anything else) gives ``None``."""
    if isinstance(schema, dict):
        return schema
    to_json_schema = getattr(schema, "model_json_schema", None) if isinstance(schema, type) else None
    if callable(to_json_schema):
        result: dict[str, Any] = to_json_schema()
        return result
    return None
