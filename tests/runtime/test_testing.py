from __future__ import annotations

import threading

import pytest

import motia
from motia import TriggerInfo, http, step
from motia.testing import api_request, app_client, call_handler, make_context, memory_state


async def get_session(input, ctx):
    session = await ctx.state.get("user-sessions", input.request.path_params["sessionId"])
    if not session:
        return {"status": 404, "body": {"error": "Session not found"}}
    return {"status": 200, "body": session}


async def test_call_async_handler_with_own_state():
    state = memory_state()
    await state.set("user-sessions", "s1", {"userId": "42"})
    result = await call_handler(get_session, api_request(path_params={"sessionId": "s1"}), state=state)
    assert result == {"status": 200, "body": {"userId": "42"}}
    assert (await call_handler(get_session, api_request(path_params={"sessionId": "zz"})))["status"] == 404
    await state.aclose()


async def test_call_sync_one_argument_handler_in_a_thread():
    state = memory_state()
    seen = {}

    def handler(input):
        seen["thread"] = threading.current_thread().name
        motia.stateManager.set("s", "k", input)
        return "done"

    assert await call_handler(handler, {"v": 1}, state=state) == "done"
    assert seen["thread"].startswith("motia-handler")
    assert await state.get("s", "k") == {"v": 1}
    await state.aclose()


async def test_call_a_step_object_and_make_context():
    ctx = make_context(step="get-session")
    assert ctx.logger.step == "get-session" and ctx.is_api()
    s = step({"name": "get-session", "triggers": [http("GET", "/session/:sessionId")]}, get_session)
    await ctx.state.set("user-sessions", "a", {"x": 1})
    result = await call_handler(s, api_request("get", "/session/a", path_params={"sessionId": "a"}), ctx=ctx)
    assert result["body"] == {"x": 1}


async def test_app_client_over_a_steps_directory():
    async with app_client("examples/sessions/steps") as client:
        created = await client.post("/session", json={"userId": "42"})
        assert created.status_code == 201
        sid = created.json()["sessionId"]
        assert (await client.get(f"/session/{sid}")).json()["userId"] == "42"
        assert (await client.state.get("user-sessions", sid))["userId"] == "42"


async def test_call_handler_records_enqueues_instead_of_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    from motia import EnqueueError, queue
    from motia.testing import EnqueueRecorder

    async def notify(input, ctx):
        await ctx.enqueue({"topic": "emails", "data": {"to": input["user"]}})

    def notify_sync(input, ctx):
        ctx.enqueue({"topic": "emails", "data": {"to": input["user"]}})

    sent = EnqueueRecorder()
    declared = step({"name": "notify", "triggers": [queue("signup")], "enqueues": ["emails"]}, notify)
    await call_handler(declared, {"user": "ada"}, enqueues=sent)
    await call_handler(notify_sync, {"user": "bob"}, enqueues=sent)
    assert sent.topics() == ["emails", "emails"] and sent.data("emails") == [{"to": "ada"}, {"to": "bob"}]
    assert sent.messages[0].sender == "notify"
    # A topic missing from the step's `enqueues` is recorded, as the app sends it (SPEC 12) ...
    undeclared = step({"name": "quiet", "triggers": [queue("signup")]}, notify)
    await call_handler(undeclared, {"user": "x"}, enqueues=sent)
    assert sent.messages[-1].sender == "quiet" and sent.messages[-1].data == {"to": "x"}
    # ... and refused with strict topics, recording nothing
    monkeypatch.setenv("MOTIA_STRICT_TOPICS", "1")
    with pytest.raises(EnqueueError, match="step 'quiet' enqueued to topic 'emails'.*strict topics"):
        await call_handler(undeclared, {"user": "y"}, enqueues=sent)
    assert len(sent.messages) == 3
    # Without a recorder enqueue says what to do
    with pytest.raises(motia.MotiaError, match="EnqueueRecorder"):
        await call_handler(notify, {"user": "x"})


async def test_make_context_records_enqueues():
    from motia.testing import EnqueueRecorder

    sent = EnqueueRecorder()
    ctx = make_context(enqueues=sent, step="s")
    await ctx.enqueue({"topic": "t", "data": [1, 2]})
    assert sent.assert_enqueued("t", [1, 2]).sender == "s"


async def test_record_state_events_on_a_plain_store():
    from motia.testing import record_state_events

    state = memory_state()
    async with record_state_events(state) as events:
        await state.set("s", "k", 1)
        await state.set("s", "k", 2)
        await state.delete("s", "k")
        await events.collect()
    assert [(e.event_type, e.old_value, e.new_value) for e in events.events] == [
        ("created", None, 1),
        ("updated", 1, 2),
        ("deleted", 2, None),
    ]
    assert events.of("updated", scope="s")[0].version == 2
    await state.aclose()


async def test_ctx_match_and_get_data_when_calling_by_hand_and_through_call_handler():
    async def handler(input, ctx):
        return await ctx.match({"queue": lambda data: ("queue", data, ctx.get_data()), "default": lambda x: "other"})

    # By hand: make_context carries the input the handler is given
    ctx = make_context(trigger=TriggerInfo(type="queue", topic="t"), input_value={"n": 1})
    assert await handler({"n": 1}, ctx) == ("queue", {"n": 1}, {"n": 1})
    # call_handler sets it, as the app does
    assert await call_handler(handler, {"n": 2}, trigger=TriggerInfo(type="queue", topic="t")) == (
        "queue",
        {"n": 2},
        {"n": 2},
    )
