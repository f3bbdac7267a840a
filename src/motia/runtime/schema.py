"""Old import path of :mod:`motia.state.schema` (request bodies, queue messages and stream items are
validated by the same code)."""

from motia.state.schema import schema_errors, validate_json_schema, validate_json_schema_at

__all__ = ["schema_errors", "validate_json_schema", "validate_json_schema_at"]
