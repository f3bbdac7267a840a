"""Motia 0.x configs (``type: api|event|cron|noop``) translated into today's steps."""

from __future__ import annotations

from typing import Any

import pytest

from motia import ConfigError, cron, http, queue, step
from motia.runtime.types import TriggerInfo
from motia.steps.legacy import is_v0_config, translate_v0
from motia.testing import call_handler


@pytest.mark.parametrize(
    ("config", "triggers", "enqueues"),
    [
        (
            {"type": "api", "name": "a", "path": "/x", "method": "PUT", "emits": ["t"], "queryParams": ["q"]},
            [http("PUT", "/x", query_params=["q"])],
            ("t",),
        ),
        ({"type": "api", "name": "a", "path": "/x"}, [http("GET", "/x")], ()),  # method defaults to GET
        (
            {"type": "event", "name": "e", "subscribes": ["a", "b"], "emits": [], "input": {"type": "object"}},
            [queue("a", input={"type": "object"}), queue("b", input={"type": "object"})],
            (),
        ),
        ({"type": "event", "name": "e", "subscribes": "a"}, [queue("a")], ()),
        ({"type": "cron", "name": "c", "cron": "0 * * * *", "emits": ["t"]}, [cron("0 * * * *")], ("t",)),
        ({"type": "noop", "name": "n", "virtualEmits": ["x"], "virtualSubscribes": ["y"]}, [], ()),
    ],
)
def test_translation(config, triggers, enqueues):
    assert is_v0_config(config)
    built = step(config, lambda input, ctx: None)
    assert list(built.triggers) == triggers
    assert built.config.enqueues == enqueues


def test_a_today_config_is_left_alone():
    assert not is_v0_config({"name": "x", "triggers": []})
    assert not is_v0_config({"name": "x", "type": "api", "triggers": []})  # has triggers: today's form


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "webhook", "name": "w"}, "type 'webhook' is not one of api, event, cron, noop"),
        ({"type": "api", "name": "a"}, "needs a 'path'"),
        ({"type": "event", "name": "e"}, "needs 'subscribes'"),
        ({"type": "cron", "name": "c"}, "needs a 'cron' expression"),
        ({"type": "cron", "name": "c", "cron": "every day"}, "invalid cron expression"),
        ({"type": "api", "name": "a", "path": "/x", "emitz": []}, "emitz: unknown key"),
    ],
)
def test_errors_name_the_step_and_the_problem(config, message):
    with pytest.raises(ConfigError, match=message):
        translate_v0(config) if "emitz" not in config else step(config, lambda i, c: None)


@pytest.mark.parametrize("kind", ["async", "def"])
async def test_one_argument_cron_handlers_get_the_context(kind):
    seen: list[Any] = []
    if kind == "async":

        async def handler(context: Any) -> None:
            seen.append(context.trigger.type)

    else:

        def handler(context: Any) -> None:  # type: ignore[misc]
            seen.append(context.trigger.type)

    built = step({"type": "cron", "name": "c", "cron": "* * * * *"}, handler)
    assert built.is_async is (kind == "async") and getattr(built, "__name__", None) == "handler"
    await call_handler(built, "the input", trigger=TriggerInfo(type="cron", expression="* * * * *"))
    assert seen == ["cron"]


async def test_one_argument_handlers_of_other_types_still_get_the_input():
    async def handler(req: Any) -> dict[str, Any]:
        return {"status": 200, "body": req}

    built = step({"type": "api", "name": "a", "path": "/x"}, handler)
    assert (await call_handler(built, "in"))["body"] == "in"
