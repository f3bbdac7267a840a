"""Stream authentication: where the token is found, which subprotocol is selected, ``motia_config.py``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers, QueryParams

from motia import StreamAuthResult
from motia.exceptions import ConfigError
from motia.runtime.streams.auth import (
    StreamAuthRefused,
    StreamAuthRequest,
    authenticate,
    extract_token,
    load_stream_authenticate,
    select_subprotocol,
)


@pytest.mark.parametrize(
    ("headers", "query", "token"),
    [
        ({}, "", None),
        ({"sec-websocket-protocol": "Authorization, abc"}, "", "abc"),
        ({"sec-websocket-protocol": "authorization,abc"}, "", "abc"),
        ({"sec-websocket-protocol": "chat, Authorization, abc"}, "", "abc"),
        ({"sec-websocket-protocol": "Authorization"}, "", None),  # no token after it
        ({"sec-websocket-protocol": "chat"}, "authToken=q", "q"),
        ({}, "authToken=q&x=1", "q"),
        ({}, "authToken=", None),
        ({"authorization": "Bearer b"}, "", "b"),
        ({"authorization": "bearer  b "}, "", "b"),
        ({"authorization": "Basic dXNlcjpwdw=="}, "", None),
        ({"authorization": "Bearer "}, "", None),
        # The subprotocol wins over the query, which wins over the header
        ({"sec-websocket-protocol": "Authorization, p", "authorization": "Bearer b"}, "authToken=q", "p"),
        ({"authorization": "Bearer b"}, "authToken=q", "q"),
    ],
)
def test_the_token_is_found_where_motia_clients_put_it(headers: dict[str, str], query: str, token: str | None) -> None:
    assert extract_token(Headers(headers), QueryParams(query)) == token


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        ([], None),
        (["chat"], None),
        (["Authorization", "tok"], "Authorization"),
        (["authorization", "t"], "authorization"),
    ],
)
def test_the_authorization_subprotocol_is_selected_as_offered(offered: list[str], selected: str | None) -> None:
    assert select_subprotocol(offered) == selected


async def test_authenticate_passes_the_request_and_fails_closed() -> None:
    seen: list[StreamAuthRequest] = []

    async def hook(request: StreamAuthRequest) -> Any:
        seen.append(request)
        if request.token == "bad":
            raise PermissionError("no")
        return {"token": request.token}

    headers, url = Headers({"authorization": "Bearer good"}), "ws://h/__motia/streams?x=1"
    assert await authenticate(hook, headers, QueryParams("x=1"), url) == {"token": "good"}
    assert (seen[0].url, seen[0].query_params["x"], seen[0].headers["Authorization"]) == (url, "1", "Bearer good")
    with pytest.raises(StreamAuthRefused, match="no"):
        await authenticate(hook, Headers({}), QueryParams("authToken=bad"), url)
    assert await authenticate(None, Headers({}), QueryParams("authToken=bad"), url) is None  # no hook: anonymous
    assert await authenticate(lambda request: None, headers, QueryParams(""), url) is None  # a def hook


def write_config(directory: Path, body: str) -> None:
    (directory / "motia_config.py").write_text(textwrap.dedent(body))


def test_motia_config_provides_stream_authenticate(tmp_path: Path) -> None:
    assert load_stream_authenticate(tmp_path) is None  # no file
    write_config(tmp_path, "strict_topics = True\n")
    assert load_stream_authenticate(tmp_path) is None  # no function
    other = tmp_path / "other"
    other.mkdir()
    write_config(other, "def stream_authenticate(request):\n    return 'ok'\n")
    hook = load_stream_authenticate(other)
    assert hook is not None and hook(StreamAuthRequest({}, {}, "ws://h/", None)) == "ok"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("raise RuntimeError('broken config')\n", "failed to import: RuntimeError: broken config"),
        ("stream_authenticate = 'yes'\n", "must be a function, not str"),
    ],
)
def test_a_broken_motia_config_stops_the_start(tmp_path: Path, body: str, message: str) -> None:
    write_config(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as caught:
        load_stream_authenticate(tmp_path)
    assert "motia_config.py" in str(caught.value)


def AuthResult(authorized: bool, context: Any = None) -> StreamAuthResult:  # noqa: N802 - reads as the class
    """motia-py 1.0's StreamAuthResult, as exported by motia."""
    return StreamAuthResult(authorized=authorized, context=context)


@pytest.mark.parametrize(
    ("result", "context"),
    [(True, None), (None, None), ({"user": "ann"}, {"user": "ann"}), (AuthResult(True, {"u": 1}), {"u": 1})],
)
async def test_what_a_hook_returns_is_the_auth_context(result: Any, context: Any) -> None:
    assert await authenticate(lambda request: result, Headers({}), QueryParams(""), "ws://h/") == context


@pytest.mark.parametrize("result", [False, AuthResult(False), AuthResult(False, {"u": 1})])
async def test_a_hook_that_says_no_refuses(result: Any) -> None:
    with pytest.raises(StreamAuthRefused):
        await authenticate(lambda request: result, Headers({}), QueryParams(""), "ws://h/")


async def test_a_two_argument_hook_gets_a_ctx_and_motia_py_names() -> None:
    seen: list[tuple[Any, Any]] = []

    async def hook(request: StreamAuthRequest, ctx: Any) -> Any:
        seen.append((request, ctx))
        return "ok"

    result = await authenticate(
        hook, Headers({}), QueryParams(""), "ws://h/x", path="/x", addr="1.2.3.4:5", context=lambda: "the ctx"
    )
    assert result == "ok"
    assert (seen[0][0].path, seen[0][0].addr, seen[0][1]) == ("/x", "1.2.3.4:5", "the ctx")
