"""Validation of JSON values (request bodies, queue messages, stream items) against a pydantic model
or a JSON Schema dict.

The JSON Schema support is a small validator for the keywords request bodies use (type, properties,
required, additionalProperties, items, enum, const, string/number/array bounds, pattern, anyOf,
oneOf, allOf, not, local ``$ref``); unknown keywords such as ``format`` are accepted and ignored.
It avoids a dependency on ``jsonschema`` for what is a 400-or-not decision.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["schema_errors", "validate_json_schema"]

#: One problem: ``{"path": "profile.age", "message": "..."}`` (path ``""`` is the whole body).
SchemaError = dict[str, str]

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(schema: Any, body: Any) -> list[SchemaError]:
    """Problems of ``body`` against ``schema`` (pydantic model class or JSON Schema dict); ``[]`` if valid."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            schema.model_validate(body)
        except ValidationError as exc:
            return [{"path": ".".join(str(p) for p in err["loc"]), "message": err["msg"]} for err in exc.errors()]
        return []
    return validate_json_schema(schema, body)


def validate_json_schema(schema: dict[str, Any], value: Any) -> list[SchemaError]:
    """Validate ``value`` against a JSON Schema dict; return every problem found (at most 50)."""
    errors: list[SchemaError] = []
    _check(schema, value, "", schema, errors)
    return errors[:50]


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _join(path: str, part: str | int) -> str:
    return f"{path}.{part}" if path else str(part)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node: Any = root
    for part in ref.lstrip("#/").split("/") if ref != "#" else []:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} does not point to a schema")
    return node


def _check(schema: Any, value: Any, path: str, root: dict[str, Any], errors: list[SchemaError]) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        errors.append({"path": path, "message": "no value is allowed here"})
        return
    if not isinstance(schema, dict):
        return

    def add(message: str, at: str = path) -> None:
        errors.append({"path": at, "message": message})

    if "$ref" in schema:
        _check(_resolve(schema["$ref"], root), value, path, root, errors)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if schema.get("nullable") is True:
            names.append("null")
        if not any(_TYPES.get(t, lambda v: True)(value) for t in names):
            add(f"expected {' or '.join(names)}, got {_type_name(value)}")
            return
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        add(f"must be one of {schema['enum']!r}")
    if "const" in schema and not _same(value, schema["const"]):
        add(f"must be {schema['const']!r}")

    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            add(f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            add(f"must have at most {schema['maxLength']} characters")
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            add(f"must match the pattern {schema['pattern']!r}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            add(f"must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            add(f"must be <= {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            add(f"must be > {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            add(f"must be < {schema['exclusiveMaximum']}")
        if "multipleOf" in schema and (value / schema["multipleOf"]) % 1 != 0:
            add(f"must be a multiple of {schema['multipleOf']}")
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            add(f"must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            add(f"must have at most {schema['maxItems']} items")
        if schema.get("uniqueItems") and len({_key(v) for v in value}) != len(value):
            add("items must be unique")
        items = schema.get("items")
        prefix = schema.get("prefixItems") or []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items
            if sub is not None:
                _check(sub, item, _join(path, i), root, errors)
    elif isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                add("field required", _join(path, name))
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                _check(props[name], item, _join(path, name), root, errors)
            elif extra is False:
                add("unexpected field", _join(path, name))
            elif isinstance(extra, dict):
                _check(extra, item, _join(path, name), root, errors)
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            add(f"must have at least {schema['minProperties']} fields")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            add(f"must have at most {schema['maxProperties']} fields")

    for sub in schema.get("allOf") or []:
        _check(sub, value, path, root, errors)
    if "anyOf" in schema and not any(not validate_json_schema_at(s, value, root) for s in schema["anyOf"]):
        add("does not match any of the allowed schemas (anyOf)")
    if "oneOf" in schema:
        matched = sum(1 for s in schema["oneOf"] if not validate_json_schema_at(s, value, root))
        if matched != 1:
            add(f"must match exactly one schema (oneOf), matched {matched}")
    if "not" in schema and not validate_json_schema_at(schema["not"], value, root):
        add("must not match the schema (not)")


def validate_json_schema_at(schema: Any, value: Any, root: dict[str, Any]) -> list[SchemaError]:
    errors: list[SchemaError] = []
    _check(schema, value, "", root, errors)
    return errors


def _same(a: Any, b: Any) -> bool:
    if type(a) is type(b):
        return bool(a == b)
    return bool(_TYPES["number"](a) and _TYPES["number"](b) and a == b)


def _key(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_key(v) for v in value)
    return (type(value) is bool, value)


def _type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__
