from __future__ import annotations

import pytest

from motia.state.schema import validate_json_schema

USER = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
        "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "uniqueItems": True},
        "role": {"enum": ["admin", "user"]},
        "kind": {"const": "person"},
        "nick": {"type": ["string", "null"]},
        "score": {"type": "number", "multipleOf": 0.5},
        "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "value",
    [
        {"name": "bob"},
        {"name": "bob", "age": 0, "tags": ["a", "b"], "role": "admin", "kind": "person", "nick": None},
        {"name": "bob", "age": 3.0, "score": 1.5, "meta": {"a": 1}},
    ],
)
def test_valid(value):
    assert validate_json_schema(USER, value) == []


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ([], [("", "expected object, got array")]),
        ({}, [("name", "field required")]),
        ({"name": ""}, [("name", "must have at least 1 characters"), ("name", "must match the pattern '^[a-z]+$'")]),
        ({"name": "toolong"}, [("name", "must have at most 5 characters")]),
        ({"name": "a", "age": -1}, [("age", "must be >= 0")]),
        ({"name": "a", "age": 150}, [("age", "must be < 150")]),
        ({"name": "a", "age": 1.5}, [("age", "expected integer, got number")]),
        ({"name": "a", "age": True}, [("age", "expected integer, got boolean")]),
        ({"name": "a", "tags": ["x", 1]}, [("tags.1", "expected string, got integer")]),
        ({"name": "a", "tags": ["x", "x"]}, [("tags", "items must be unique")]),
        ({"name": "a", "tags": ["x", "y", "z"]}, [("tags", "must have at most 2 items")]),
        ({"name": "a", "role": "root"}, [("role", "must be one of ['admin', 'user']")]),
        ({"name": "a", "kind": "robot"}, [("kind", "must be 'person'")]),
        ({"name": "a", "nick": 3}, [("nick", "expected string or null, got integer")]),
        ({"name": "a", "score": 0.3}, [("score", "must be a multiple of 0.5")]),
        ({"name": "a", "meta": {"x": "1"}}, [("meta.x", "expected integer, got string")]),
        ({"name": "a", "zzz": 1}, [("zzz", "unexpected field")]),
    ],
)
def test_invalid(value, errors):
    assert [(e["path"], e["message"]) for e in validate_json_schema(USER, value)] == errors


def test_combinators_and_refs():
    schema = {
        "$defs": {"pos": {"type": "integer", "minimum": 1}},
        "anyOf": [{"$ref": "#/$defs/pos"}, {"type": "string"}],
    }
    assert validate_json_schema(schema, 3) == []
    assert validate_json_schema(schema, "x") == []
    assert validate_json_schema(schema, 0)[0]["message"].startswith("does not match any")
    one_of = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    assert validate_json_schema(one_of, 1.5) == []
    assert "matched 2" in validate_json_schema(one_of, 1)[0]["message"]
    assert validate_json_schema({"not": {"type": "null"}}, None)[0]["message"] == "must not match the schema (not)"
    assert validate_json_schema({"allOf": [{"type": "integer"}, {"minimum": 5}]}, 3)[0]["message"] == "must be >= 5"
    assert validate_json_schema(True, 1) == [] and validate_json_schema(False, 1) != []  # type: ignore[arg-type]
    assert validate_json_schema({"type": "integer", "format": "int64"}, 1) == []  # unknown keywords ignored


def test_prefix_items_and_nullable():
    schema = {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}}
    assert validate_json_schema(schema, ["a", 1, 2]) == []
    assert validate_json_schema(schema, [1])[0]["path"] == "0"
    assert validate_json_schema({"type": "string", "nullable": True}, None) == []
