from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from pydantic import BaseModel

import motia
from motia import ApiResponse, StateValueError, StepLoadError, http, step
from motia.runtime.app import MotiaApp
from motia.testing import app_client


class Item(BaseModel):
    name: str
    qty: int


async def echo(input, ctx):
    return {
        "status": 200,
        "body": {
            "method": input.request.method,
            "path_params": input.request.path_params,
            "pathParams": input.pathParams,
            "query": input.query_params,
            "queryParams": input["queryParams"],
            "header": input.headers.get("x-thing"),
            "body": input.body,
            "same": input.request is input,
            "trigger": [ctx.trigger.type, ctx.trigger.method, ctx.trigger.path],
            "is_api": ctx.is_api(),
            "trace_id": ctx.trace_id,
        },
    }


def steps():
    yield step({"name": "echo-colon", "triggers": [http("GET", "/colon/:a/:b")]}, echo)
    yield step({"name": "echo-brace", "triggers": [http("POST", "/brace/{id}")]}, echo)
    yield step({"name": "static", "triggers": [http("GET", "/colon/static/x")]}, echo)
    yield step({"name": "param-first", "triggers": [http("GET", "/:anything/wild")]}, echo)
    yield step(
        {
            "name": "json-schema",
            "triggers": [
                http(
                    "POST",
                    "/js",
                    body_schema={
                        "type": "object",
                        "required": ["userId"],
                        "properties": {"userId": {"type": "string"}},
                        "additionalProperties": False,
                    },
                )
            ],
        },
        echo,
    )
    yield step({"name": "model-schema", "triggers": [http("POST", "/model", body_schema=Item)]}, echo)

    async def boom(input, ctx):
        raise RuntimeError("kaboom")

    yield step({"name": "boom", "triggers": [http("GET", "/boom")]}, boom)

    async def state_error(input, ctx):
        await ctx.state.set("s", "k", float("nan"))

    yield step({"name": "state-error", "triggers": [http("GET", "/state-error")]}, state_error)

    async def response_obj(input, ctx):
        return ApiResponse(status=201, body=Item(name="a", qty=1), headers={"x-custom": "yes"})

    yield step({"name": "api-response", "triggers": [http("GET", "/api-response")]}, response_obj)

    async def nothing(input, ctx):
        return None

    yield step({"name": "nothing", "triggers": [http("DELETE", "/nothing")]}, nothing)

    async def bad_return(input, ctx):
        return {"ok": True}

    yield step({"name": "bad-return", "triggers": [http("GET", "/bad-return")]}, bad_return)

    async def text(input, ctx):
        return {"status": 200, "body": "plain words", "headers": {"Content-Type": "text/plain"}}

    yield step({"name": "text", "triggers": [http("GET", "/text")]}, text)

    async def raw(input, ctx):
        return {"status": 200, "body": b"\x00\x01"}

    yield step({"name": "raw", "triggers": [http("GET", "/raw")]}, raw)

    def sync_handler(input, ctx):
        # A def handler: worker thread, blocking ctx.state and motia.stateManager both work.
        ctx.state.set("sync", "a", {"n": 1})
        motia.stateManager.update("sync", "a", [{"type": "increment", "path": "n", "value": 1}])
        return {"status": 200, "body": {"value": ctx.state.get("sync", "a"), "thread": threading.current_thread().name}}

    yield step({"name": "sync", "triggers": [http("POST", "/sync")]}, sync_handler)

    def one_arg(input):
        return {"status": 200, "body": {"id": input.path_params["id"]}}

    yield step({"name": "one-arg", "triggers": [http("GET", "/one/:id")]}, one_arg)

    async def mw_outer(input, ctx, next):
        response = await next()
        response["headers"] = {"x-mw": "outer"}
        return response

    async def mw_auth(input, ctx, next):
        if input.headers.get("authorization") != "secret":
            return {"status": 401, "body": {"error": "unauthorized"}}
        return await next()

    async def guarded(input, ctx):
        return {"status": 200, "body": {"ok": True}}

    yield step({"name": "guarded", "triggers": [http("GET", "/guarded", middleware=[mw_outer, mw_auth])]}, guarded)

    async def only_beta(input, ctx):
        return input.query_params.get("beta") == "1"

    yield step({"name": "conditional", "triggers": [http("GET", "/cond", condition=only_beta)]}, guarded)


@pytest.fixture
async def client():
    async with app_client(list(steps())) as c:
        yield c


async def test_colon_params_query_and_headers(client):
    r = await client.get("/colon/1/two?x=1&y=a&y=b&empty=", headers={"X-Thing": "hi"})
    assert r.status_code == 200
    body = r.json()
    assert body["path_params"] == body["pathParams"] == {"a": "1", "b": "two"}
    assert body["query"] == body["queryParams"] == {"x": "1", "y": ["a", "b"], "empty": ""}
    assert body["header"] == "hi"
    assert body["method"] == "GET"
    assert body["body"] is None
    assert body["same"] is True
    assert body["trigger"] == ["http", "GET", "/colon/:a/:b"]
    assert body["is_api"] is True
    assert r.headers["x-trace-id"] == body["trace_id"]


async def test_a_header_sent_twice_is_one_comma_joined_value(client):
    r = await client.get("/colon/1/two", headers=[("X-Thing", "a"), ("x-thing", "b"), ("X-Other", "c")])
    assert r.json()["header"] == "a, b"


async def test_static_route_wins_over_param_route(client):
    r = await client.get("/colon/static/x")
    assert r.json()["trigger"] == ["http", "GET", "/colon/static/x"]


@pytest.mark.parametrize(
    ("path", "params"), [("/xyz/wild", {"anything": "xyz"}), ("/colon/wild", {"anything": "colon"})]
)
async def test_routes_starting_with_a_parameter(client, path, params):
    r = await client.get(path)
    assert r.status_code == 200
    assert r.json()["trigger"] == ["http", "GET", "/:anything/wild"]
    assert r.json()["path_params"] == params


async def test_brace_params_and_json_body(client):
    r = await client.post("/brace/abc", json={"a": [1, 2], "b": "é"})
    assert r.status_code == 200
    assert r.json()["path_params"] == {"id": "abc"}
    assert r.json()["body"] == {"a": [1, 2], "b": "é"}


@pytest.mark.parametrize(
    ("content", "headers", "expected"),
    [
        (b'{"a": 1}', {}, {"a": 1}),  # no content type: JSON if it parses
        (b'{"a": 1}', {"content-type": "application/x-www-form-urlencoded"}, {"a": 1}),  # curl -d
        (b"a=1&b=2", {"content-type": "application/x-www-form-urlencoded"}, {"a": "1", "b": "2"}),
        (b"hello", {"content-type": "text/plain"}, "hello"),
        (b"hello", {}, "hello"),
        (b'{"a": 1}', {"content-type": "application/vnd.api+json"}, {"a": 1}),
        (b"", {"content-type": "application/json"}, None),
    ],
)
async def test_body_parsing(client, content, headers, expected):
    r = await client.post("/brace/x", content=content, headers=headers)
    assert r.status_code == 200
    assert r.json()["body"] == expected


async def test_malformed_json_is_400(client):
    r = await client.post("/brace/x", content=b'{"a": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "Malformed JSON body"
    assert r.json()["trace_id"]


async def test_json_schema_violation_is_400_with_details(client):
    r = await client.post("/js", json={"userId": 5, "extra": True})
    assert r.status_code == 400
    assert r.json()["error"] == "Invalid request body"
    assert r.json()["details"] == [
        {"path": "userId", "message": "expected string, got integer"},
        {"path": "extra", "message": "unexpected field"},
    ]
    assert (await client.post("/js", json={})).json()["details"] == [{"path": "userId", "message": "field required"}]
    assert (await client.post("/js", json={"userId": "u"})).status_code == 200


async def test_pydantic_schema_violation_is_400_with_details(client):
    r = await client.post("/model", json={"name": "x", "qty": "many"})
    assert r.status_code == 400
    assert r.json()["details"][0]["path"] == "qty"
    ok = await client.post("/model", json={"name": "x", "qty": 2})
    assert ok.status_code == 200 and ok.json()["body"] == {"name": "x", "qty": 2}


async def test_unknown_route_is_404_and_wrong_method_405(client):
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = await client.delete("/colon/1/2")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert r.headers["allow"] == "GET"


async def test_handler_exception_is_500_with_trace_id_and_logged(client, caplog):
    caplog.set_level(logging.ERROR, logger="motia")
    r = await client.get("/boom")
    assert r.status_code == 500
    trace_id = r.json()["trace_id"]
    assert r.json() == {"error": "Internal Server Error", "trace_id": trace_id}
    [record] = [rec for rec in caplog.records if getattr(rec, "motia_trace_id", None) == trace_id]
    assert record.motia_step == "boom"
    assert record.exc_info is not None and "kaboom" in caplog.text and "Traceback" in caplog.text
    # The app keeps serving.
    assert (await client.get("/colon/1/2")).status_code == 200


async def test_state_value_error_is_a_500_unless_the_handler_catches_it(client, caplog):
    r = await client.get("/state-error")
    assert r.status_code == 500
    assert StateValueError.__name__ in caplog.text


async def test_api_response_with_model_body_and_headers(client):
    r = await client.get("/api-response")
    assert r.status_code == 201
    assert r.json() == {"name": "a", "qty": 1}
    assert r.headers["x-custom"] == "yes"


async def test_none_is_204_bad_return_is_500(client, caplog):
    r = await client.delete("/nothing")
    assert r.status_code == 204 and r.content == b""
    r = await client.get("/bad-return")
    assert r.status_code == 500
    assert "must return {'status'" in caplog.text


async def test_text_and_bytes_bodies(client):
    r = await client.get("/text")
    assert r.text == "plain words" and r.headers["content-type"].startswith("text/plain")
    r = await client.get("/raw")
    assert r.content == b"\x00\x01" and r.headers["content-type"] == "application/octet-stream"


async def test_sync_handler_runs_in_a_worker_thread_with_sync_state(client):
    r = await client.post("/sync")
    assert r.status_code == 200
    assert r.json()["value"] == {"n": 2}
    assert r.json()["thread"].startswith("motia-handler")
    assert await client.state.get("sync", "a") == {"n": 2}


async def test_one_argument_handler(client):
    assert (await client.get("/one/7")).json() == {"id": "7"}


async def test_middleware_chain(client):
    r = await client.get("/guarded")
    assert r.status_code == 401
    assert r.headers["x-mw"] == "outer"
    r = await client.get("/guarded", headers={"authorization": "secret"})
    assert r.status_code == 200 and r.json() == {"ok": True}


async def test_condition_false_is_404(client):
    assert (await client.get("/cond")).status_code == 404
    assert (await client.get("/cond?beta=1")).status_code == 200


async def test_body_too_large_is_413():
    async with app_client([step({"name": "e", "triggers": [http("POST", "/e")]}, echo)]) as c:
        c.app.max_body_bytes = 10
        r = await c.post("/e", content=b"x" * 11)
        assert r.status_code == 413
        assert (await c.post("/e", content=b"x" * 10)).status_code == 200


async def test_concurrent_requests_are_served_concurrently():
    gate = asyncio.Event()

    async def wait(input, ctx):
        await gate.wait()
        return {"status": 200, "body": None}

    async def release(input, ctx):
        gate.set()
        return {"status": 200, "body": None}

    s = [
        step({"name": "wait", "triggers": [http("GET", "/wait")]}, wait),
        step({"name": "release", "triggers": [http("GET", "/release")]}, release),
    ]
    async with app_client(s) as c:
        waiting = asyncio.ensure_future(c.get("/wait"))
        assert (await c.get("/release")).status_code == 200
        assert (await waiting).status_code == 200


async def test_openapi_document(client):
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]["/colon/{a}/{b}"]) == {"get"}
    op = doc["paths"]["/colon/{a}/{b}"]["get"]
    assert op["operationId"] == "echo-colon"
    assert [p["name"] for p in op["parameters"]] == ["a", "b"]
    assert doc["paths"]["/js"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["userId"]
    model = doc["paths"]["/model"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert model["properties"]["qty"]["type"] == "integer"


async def test_health(client):
    assert (await client.get("/__motia/health")).json()["status"] == "ok"


def test_reserved_paths_are_rejected():
    app = MotiaApp([step({"name": "x", "triggers": [http("GET", "/openapi.json")]}, echo)], state="memory://")
    with pytest.raises(StepLoadError, match="reserved"):
        app.asgi  # noqa: B018


def test_duplicate_names_and_routes_in_hand_built_apps():
    a = step({"name": "a", "triggers": [http("GET", "/x/:id")]}, echo)
    with pytest.raises(StepLoadError, match="duplicate step name 'a'"):
        MotiaApp([a, a], state="memory://")
    b = step({"name": "b", "triggers": [http("GET", "/x/{key}")]}, echo)
    with pytest.raises(StepLoadError, match="duplicate route GET /x/\\{key\\}: steps 'a' and 'b'"):
        MotiaApp([a, b], state="memory://")


async def test_sync_one_argument_condition():
    async def ok(input, ctx):
        return {"status": 200, "body": None}

    s = step({"name": "c", "triggers": [http("GET", "/c", condition=lambda input: "go" in input.query_params)]}, ok)
    async with app_client([s]) as c:
        assert (await c.get("/c")).status_code == 404
        assert (await c.get("/c?go")).status_code == 200


async def test_condition_and_middleware_of_a_sync_step_get_the_async_state():
    async def flag_on(input, ctx):
        return await ctx.state.get("flags", "on")

    async def count(input, ctx, next):
        await ctx.state.update("flags", "hits", [{"type": "increment", "path": "n", "value": 1}])
        return await next()

    def handler(input, ctx):
        return {"status": 200, "body": ctx.state.get("flags", "hits")}

    trigger = http("GET", "/sync-cond", condition=flag_on, middleware=[count])
    async with app_client([step({"name": "sync-cond", "triggers": [trigger]}, handler)]) as c:
        assert (await c.get("/sync-cond")).status_code == 404
        await c.state.set("flags", "on", True)
        r = await c.get("/sync-cond")
        assert r.status_code == 200 and r.json() == {"n": 1}
