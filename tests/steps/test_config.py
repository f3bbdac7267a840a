from __future__ import annotations

import pytest

from motia import ConfigError, StepConfig, cron, http
from motia.steps.config import parse_config


def test_full_config_is_accepted():
    config = parse_config(
        {
            "name": "get-session",
            "description": "d",
            "triggers": [http("GET", "/s/:id"), {"type": "cron", "expression": "0 * * * *"}],
            "enqueues": ["topic-a", {"topic": "topic-b", "label": "b"}],
            "flows": ["sessions"],
            "virtualEnqueues": ["x"],
            "virtual_subscribes": ["y"],
        }
    )
    assert config.name == "get-session"
    assert config.triggers == (http("GET", "/s/:id"), cron("0 * * * *"))
    assert config.enqueues == ("topic-a", {"topic": "topic-b", "label": "b"})
    assert config.flows == ("sessions",)


def test_single_trigger_is_wrapped_in_a_list():
    assert parse_config({"name": "x", "triggers": http("GET", "/x")}).triggers == (http("GET", "/x"),)


def test_a_step_config_passes_through():
    config = StepConfig(name="x")
    assert parse_config(config) is config
    assert config.triggers == ()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"triggers": []}, r"name: Field required"),
        ({"name": ""}, r"name: String should have at least 1 character"),
        ({"name": " x"}, r"name: must not have surrounding whitespace"),
        ({"name": 42}, r"name: Input should be a valid string"),
        ({"name": "x", "trigers": []}, r"trigers: unknown key"),
        ({"name": "x", "triggers": ["GET /x"]}, r"is not a trigger"),
        ({"name": "x", "triggers": "GET /x"}, r"must be a list of triggers"),
        ({"name": "x", "triggers": [{"type": "ftp"}]}, r"unknown trigger type"),
        ({"name": "x", "enqueues": [{"label": "no topic"}]}, r"needs a string 'topic'"),
        ({"name": "x", "flows": "sessions"}, r"flows"),
    ],
)
def test_invalid_configs_name_the_problem(config, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config)


def test_error_names_the_step():
    with pytest.raises(ConfigError, match=r"invalid config for step 'my-step': trigers"):
        parse_config({"name": "my-step", "trigers": []})


def test_config_must_be_a_dict():
    with pytest.raises(ConfigError, match="must be a dict, got list"):
        parse_config([("name", "x")])
