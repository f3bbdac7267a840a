"""``response_schema`` and ``include_files`` are accepted in every config spelling; a bad response schema is a
``ConfigError`` naming the trigger (and the step, when declared in a config dict)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from motia import ConfigError, http, multi_trigger_step, step
from motia.steps.config import StepConfig, parse_config
from motia.steps.triggers import HttpTrigger


class Order(BaseModel):
    id: str


NOT_FOUND = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def test_statuses_may_be_ints_or_digit_strings():
    trigger = http("GET", "/orders/:id", response_schema={200: Order, "404": NOT_FOUND})
    assert trigger.response_schema == {200: Order, 404: NOT_FOUND}
    assert http("GET", "/x").response_schema == {}
    # part of the trigger's value
    assert trigger == http("GET", "/orders/:id", response_schema={"200": Order, 404: NOT_FOUND})
    assert trigger != http("GET", "/orders/:id", response_schema={200: Order})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({99: Order}, "status must be an int between 100 and 599, got 99"),
        ({600: Order}, "got 600"),
        ({"ok": Order}, "got 'ok'"),
        ({True: Order}, "got True"),
        ({200: "Order"}, r"response_schema\[200\] must be a pydantic model class or a JSON Schema dict"),
        ({200: None}, r"response_schema\[200\] must be"),
        ([Order], "must be a dict of status to schema"),
    ],
)
def test_bad_response_schemas_are_config_errors_naming_the_trigger(schema, message):
    with pytest.raises(ConfigError, match=message) as caught:
        http("GET", "/orders", response_schema=schema)
    assert "http('GET', '/orders')" in str(caught.value)


def test_a_bad_response_schema_in_a_config_dict_names_the_step():
    config = {
        "name": "orders",
        "triggers": [{"type": "http", "method": "GET", "path": "/o", "responseSchema": {1: {}}}],
    }
    with pytest.raises(ConfigError, match="step 'orders'.*response_schema status"):
        parse_config(config)


@pytest.mark.parametrize(
    "config",
    [
        # motia-py 1.0, trigger objects and dict triggers, both spellings
        {"name": "s", "triggers": [http("GET", "/o", response_schema={200: Order})], "include_files": ["a.txt"]},
        {
            "name": "s",
            "triggers": [{"type": "http", "method": "GET", "path": "/o", "responseSchema": {200: Order}}],
            "includeFiles": ["a.txt"],
        },
        {
            "name": "s",
            "triggers": [{"type": "api", "method": "GET", "path": "/o", "response_schema": {"200": Order}}],
            "include_files": "a.txt",
        },
        # Motia 0.x
        {"type": "api", "name": "s", "path": "/o", "responseSchema": {200: Order}, "includeFiles": ["a.txt"]},
        {"type": "api", "name": "s", "path": "/o", "response_schema": {200: Order}, "include_files": ["a.txt"]},
    ],
)
def test_every_config_spelling_keeps_response_schema_and_include_files(config):
    for declared in (
        parse_config(config),
        step(config, lambda input: None).config,
        multi_trigger_step(config).on_http(lambda input: None).handlers().config,
    ):
        [trigger] = declared.triggers
        assert isinstance(trigger, HttpTrigger)
        assert trigger.response_schema == {200: Order}
        assert declared.include_files == ("a.txt",)


def test_step_config_objects_take_include_files_by_either_name():
    assert StepConfig(name="s", include_files=("a",)).include_files == ("a",)
    assert StepConfig.model_validate({"name": "s", "includeFiles": ["a"]}).include_files == ("a",)
