"""``is_*_trigger``, ``is_*_step`` and ``get_*_triggers``: motia-py 1.0's questions about steps."""

from __future__ import annotations

import pytest

from motia import (
    api,
    cron,
    get_api_triggers,
    get_cron_triggers,
    get_queue_triggers,
    get_state_triggers,
    get_stream_triggers,
    http,
    is_api_step,
    is_api_trigger,
    is_cron_step,
    is_cron_trigger,
    is_queue_step,
    is_queue_trigger,
    is_state_step,
    is_state_trigger,
    is_stream_step,
    is_stream_trigger,
    queue,
    state,
    step,
    stream,
)

TRIGGERS = {
    "api": api("GET", "/a"),
    "queue": queue("t"),
    "cron": cron("* * * * *"),
    "state": state(scope="s"),
    "stream": stream("todo"),
}
GUARDS = {
    "api": is_api_trigger,
    "queue": is_queue_trigger,
    "cron": is_cron_trigger,
    "state": is_state_trigger,
    "stream": is_stream_trigger,
}


@pytest.mark.parametrize("kind", GUARDS)
def test_trigger_guards_answer_for_their_kind_only(kind):
    for other, trigger in TRIGGERS.items():
        assert GUARDS[kind](trigger) is (other == kind)
    assert GUARDS[kind]({"type": kind}) is False  # a dict is not a trigger object


def test_step_guards_and_getters():
    both = step({"name": "both", "triggers": [http("GET", "/x"), queue("a"), queue("b")]}, lambda i, c: None)
    assert (is_api_step(both), is_queue_step(both), is_cron_step(both), is_state_step(both)) == (
        True,
        True,
        False,
        False,
    )
    assert [t.topic for t in get_queue_triggers(both)] == ["a", "b"]
    assert get_api_triggers(both) == [http("GET", "/x")]
    assert get_cron_triggers(both) == [] and get_state_triggers(both) == []
    timed = step({"name": "t", "triggers": [cron("0 * * * *"), state()]}, lambda i, c: None)
    assert is_cron_step(timed) and is_state_step(timed) and not is_api_step(timed)
    assert get_cron_triggers(timed) == [cron("0 * * * *")] and get_state_triggers(timed) == [state()]
    assert not is_stream_step(timed) and get_stream_triggers(timed) == []
    watched = step({"name": "w", "triggers": [stream("todo"), http("GET", "/w"), stream("chat", group_id="g")]}, print)
    assert is_stream_step(watched) and is_api_step(watched)
    assert get_stream_triggers(watched) == [stream("todo"), stream("chat", group_id="g")]
