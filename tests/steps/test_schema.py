from __future__ import annotations

from pydantic import BaseModel

from motia import schema_to_json_schema


class Pet(BaseModel):
    name: str


def test_schema_to_json_schema():
    assert schema_to_json_schema({"type": "object"}) == {"type": "object"}
    assert schema_to_json_schema(Pet)["required"] == ["name"]  # type: ignore[index]
    assert schema_to_json_schema(None) is None
    assert schema_to_json_schema(Pet(name="x")) is None  # an instance is not a schema
    assert schema_to_json_schema(int) is None
