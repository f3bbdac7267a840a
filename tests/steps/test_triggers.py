from __future__ import annotations

import pytest

from motia import ConfigError, cron, http, queue, state, stream
from motia.steps.triggers import (
    CronTrigger,
    HttpTrigger,
    Match,
    QueueTrigger,
    StateTrigger,
    StreamTrigger,
    trigger_from_dict,
)


@pytest.mark.parametrize(
    ("route", "path", "params"),
    [
        ("/session/:sessionId", "/session/abc", {"sessionId": "abc"}),
        ("/session/{sessionId}", "/session/abc", {"sessionId": "abc"}),
        ("/session/{sessionId}", "/session/abc/", {"sessionId": "abc"}),
        ("/a/:x/b/{y}", "/a/1/b/2", {"x": "1", "y": "2"}),
        ("/users/:user-id", "/users/u1", {"user-id": "u1"}),
        ("/sessions", "/sessions", {}),
        ("/sessions/", "/sessions", {}),
        ("/", "/", {}),
        ("/file.json", "/file.json", {}),
        ("/session/:id", "/session/a%20b", {"id": "a%20b"}),
        ("/session/:id", "/session/héllo", {"id": "héllo"}),
    ],
)
def test_path_matches(route, path, params):
    assert http("GET", route).match_path(path) == params


@pytest.mark.parametrize(
    ("route", "path"),
    [
        ("/session/:sessionId", "/session"),
        ("/session/:sessionId", "/session/"),
        ("/session/:sessionId", "/session/a/b"),
        ("/session/{sessionId}", "/sessions/abc"),
        ("/sessions", "/sessionsx"),
        ("/file.json", "/fileXjson"),
        ("/", "/x"),
    ],
)
def test_path_does_not_match(route, path):
    assert http("GET", route).match_path(path) is None


def test_matches_distinguishes_method():
    t = http("get", "/x/:id")
    assert t.method == "GET"
    assert t.matches("GET", "/x/1") == (Match.FULL, {"id": "1"})
    assert t.matches("HEAD", "/x/1") == (Match.FULL, {"id": "1"})
    assert t.matches("POST", "/x/1") == (Match.PARTIAL, {"id": "1"})
    assert t.matches("GET", "/y/1") == (Match.NONE, {})


def test_both_param_syntaxes_are_the_same_route():
    assert http("GET", "/s/:id").route_key == http("GET", "/s/{key}/").route_key
    assert http("GET", "/s/:id").route_key != http("POST", "/s/:id").route_key
    assert http("GET", "/s/:id").openapi_path == "/s/{id}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("FETCH", "/x"), "http method"),
        (("GET", "x"), "starting with '/'"),
        (("GET", "/a/:id/:id"), "twice"),
        (("GET", "/a/{id"), "malformed"),
        (("GET", "/a b"), "whitespace"),
    ],
)
def test_http_rejects_bad_arguments(args, message):
    with pytest.raises(ConfigError, match=message):
        http(*args)


def test_http_rejects_bad_options():
    with pytest.raises(ConfigError, match="body_schema"):
        http("POST", "/x", body_schema=42)
    with pytest.raises(ConfigError, match="middleware"):
        http("POST", "/x", middleware=["nope"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="condition"):
        http("POST", "/x", condition="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        http("POST", "/x", {"type": "object"})  # type: ignore[call-arg]  # keyword-only after the first arguments


def test_triggers_compare_by_value_and_repr():
    assert http("GET", "/x") == http("GET", "/x")
    assert http("GET", "/x") != http("POST", "/x")
    assert http("GET", "/x") != cron("* * * * *")
    assert len({http("GET", "/x"), http("GET", "/x")}) == 1
    assert repr(http("GET", "/session/:id")) == "http('GET', '/session/:id')"
    assert repr(cron("0 * * * *")) == "cron('0 * * * *')"
    assert repr(queue("orders")) == "queue('orders')"
    assert repr(state(scope="s", key="k")) == "state(scope='s', key='k')"
    assert repr(state()) == "state()"
    assert repr(stream("todo")) == "stream('todo')"
    assert repr(stream("todo", group_id="g", item_id="i")) == "stream('todo', group_id='g', item_id='i')"
    assert stream("todo", group_id="g") == stream("todo", group_id="g")
    assert stream("todo", group_id="g") != stream("todo", group_id="h")
    assert stream("todo") != stream("chat") and stream("todo") != state()
    assert len({stream("todo"), stream("todo")}) == 1


def test_cron_validates_at_declaration():
    assert cron("  0  *  * * * ").expression == "0 * * * *"
    assert cron("@Hourly").expression == "@hourly"
    with pytest.raises(ConfigError, match="invalid cron expression 'every minute'"):
        cron("every minute")
    assert cron("0 0 9 * * * 2030").expression == "0 0 9 * * * 2030"  # 7 fields: year last
    with pytest.raises(ConfigError, match="got 8"):
        cron("0 0 * * * * 2030 1")
    with pytest.raises(ConfigError, match="invalid cron expression"):
        cron("61 * * * *")


def test_queue_and_state_triggers():
    q = queue("orders", config={"max_retries": 3})
    assert q.type == "queue" and q.config == {"max_retries": 3}
    assert q.matches("orders") is Match.FULL and q.matches("other") is Match.NONE
    with pytest.raises(ConfigError):
        queue("")
    s = state(scope="user-sessions")
    assert s.matches("user-sessions", "k") is Match.FULL
    assert s.matches("other", "k") is Match.NONE
    assert state(key="k").matches("any", "k") is Match.FULL
    with pytest.raises(ConfigError):
        state(scope="")
    with pytest.raises(TypeError):
        state("user-sessions")  # type: ignore[call-arg]  # keyword-only


def test_stream_triggers():
    s = stream("todo", group_id="inbox")
    assert s.type == "stream" and (s.stream_name, s.group_id, s.item_id) == ("todo", "inbox", None)
    assert s.matches("todo", "inbox", "t1") is Match.FULL
    assert s.matches("todo", "inbox", None) is Match.FULL  # an event sent to the whole group
    assert s.matches("todo", "done", "t1") is Match.NONE and s.matches("chat", "inbox", "t1") is Match.NONE
    item = stream("todo", item_id="t1")
    assert item.matches("todo", "any", "t1") is Match.FULL
    assert item.matches("todo", "any", "t2") is Match.NONE and item.matches("todo", "any", None) is Match.NONE
    assert stream("todo").matches("todo", "g", None) is Match.FULL
    assert stream("todo", condition=lambda input: True).condition is not None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stream(""), "stream trigger: a stream name must not be empty"),
        (lambda: stream(3), "stream trigger: a stream name must be a str"),  # type: ignore[arg-type]
        (lambda: stream("to do"), "may hold only letters"),
        (lambda: stream("todo", group_id=""), "group_id must be a non-empty string or None"),
        (lambda: stream("todo", item_id=1), "item_id must be a non-empty string or None"),  # type: ignore[arg-type]
        (lambda: stream("todo", config=[]), "config must be a dict"),  # type: ignore[arg-type]
        (lambda: stream("todo", config={"retries": 1}), r"stream\('todo'\): unknown config key 'retries'"),
        (lambda: stream("todo", condition="yes"), "condition must be callable"),  # type: ignore[arg-type]
    ],
)
def test_stream_trigger_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_stream_trigger_is_keyword_only_after_the_name():
    with pytest.raises(TypeError):
        stream("todo", "inbox")  # type: ignore[call-arg]


def test_retry_policy_from_trigger_config():
    from motia.runtime.retry import RetryPolicy

    assert queue("t").retry == RetryPolicy(max_retries=3, backoff=1.0, backoff_max=60.0)
    policy = queue("t", config={"maxRetries": 5, "backoff": 0.5, "backoff_max": 3}).retry
    assert (policy.max_retries, [policy.delay(n) for n in (1, 2, 3, 4, 5)]) == (5, [0.5, 1.0, 2.0, 3.0, 3.0])
    assert not policy.gives_up_after(5) and policy.gives_up_after(6)
    assert state(scope="s", config={"max_retries": 0}).retry.max_retries == 0
    assert stream("todo").retry == RetryPolicy(max_retries=3, backoff=1.0, backoff_max=60.0)
    assert stream("todo", config={"max_retries": 1, "backoff": 0.5}).retry == RetryPolicy(1, 0.5, 60.0)
    with pytest.raises(ConfigError, match=r"queue\('t'\): unknown config key 'retries'"):
        queue("t", config={"retries": 3})
    with pytest.raises(ConfigError, match="max_retries must be an int >= 0"):
        state(config={"max_retries": -1})
    with pytest.raises(ConfigError, match="backoff must be a number of seconds"):
        queue("t", config={"backoff": "1s"})
    with pytest.raises(ConfigError, match="queue input must be a pydantic model class or a JSON Schema dict"):
        queue("t", input=str)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "http", "method": "GET", "path": "/x"}, http("GET", "/x")),
        ({"type": "api", "method": "POST", "path": "/x"}, http("POST", "/x")),
        ({"type": "cron", "expression": "0 * * * *"}, cron("0 * * * *")),
        ({"type": "cron", "cron": "0 * * * *"}, cron("0 * * * *")),
        ({"type": "queue", "topic": "t"}, queue("t")),
        ({"type": "event", "subscribes": "t"}, queue("t")),
        ({"type": "state", "scope": "s"}, state(scope="s")),
        ({"type": "stream", "streamName": "todo"}, stream("todo")),
        (
            {"type": "stream", "stream_name": "todo", "groupId": "g", "itemId": "i"},
            stream("todo", group_id="g", item_id="i"),
        ),
        ({"type": "stream", "stream": "todo", "group_id": "g"}, stream("todo", group_id="g")),
        (
            {"type": "stream", "streamName": "todo", "config": {"maxRetries": 1}},
            stream("todo", config={"maxRetries": 1}),
        ),
    ],
)
def test_trigger_from_dict(data, expected):
    assert trigger_from_dict(data) == expected


def test_trigger_from_dict_accepts_camel_case_options():
    t = trigger_from_dict({"type": "http", "method": "POST", "path": "/x", "bodySchema": {"type": "object"}})
    assert isinstance(t, HttpTrigger) and t.body_schema == {"type": "object"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "ftp"}, "unknown trigger type"),
        ({"type": "http", "method": "GET"}, "missing 'path'"),
        ({"type": "cron", "expression": "0 * * * *", "bogus": 1}, "bad cron trigger"),
        ({"type": "stream", "groupId": "g"}, "stream trigger is missing 'streamName'"),
        ({"type": "stream", "streamName": "todo", "scope": "s"}, "bad stream trigger"),
    ],
)
def test_trigger_from_dict_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        trigger_from_dict(data)


def test_trigger_types():
    assert [t.type for t in (HttpTrigger, CronTrigger, QueueTrigger, StateTrigger, StreamTrigger)] == [
        "http",
        "cron",
        "queue",
        "state",
        "stream",
    ]


def test_condition_signature_is_checked_at_declaration():
    with pytest.raises(ConfigError, match="takes 3 arguments"):
        http("GET", "/x", condition=lambda a, b, c: True)
    assert http("GET", "/x", condition=lambda input: True).condition is not None


def test_query_params_accept_query_param_objects_names_and_dicts():
    from motia import QueryParam, api

    trig = api("GET", "/q", query_params=[QueryParam(name="a", description="A"), QueryParam("b"), "c", {"name": "d"}])
    assert trig == http(
        "GET", "/q", query_params=[{"name": "a", "description": "A"}, {"name": "b"}, "c", {"name": "d"}]
    )
    for bad in ["", {"description": "no name"}, 3]:
        with pytest.raises(ConfigError, match="query parameter"):
            http("GET", "/q", query_params=[bad])  # type: ignore[list-item]
