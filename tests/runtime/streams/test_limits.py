"""The stream server's limits: defaults, the MOTIA_STREAM_* variables, and an app serving with them."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from motia import ConfigError
from motia.runtime.app import MotiaApp
from motia.runtime.streams.limits import StreamLimits
from motia.streams.config import StreamDefinition
from tests.runtime.streams.conftest import ServeApp, join_frame, receive
from tests.runtime.streams.test_websocket import Connect


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, StreamLimits()),
        ({"MOTIA_STREAM_QUEUE_LIMIT": "50"}, StreamLimits(queue_limit=50)),
        (
            {
                "MOTIA_STREAM_QUEUE_BYTES": "1024",
                "MOTIA_STREAM_MAX_SUBSCRIPTIONS": "3",
                "MOTIA_STREAM_MAX_FRAME_BYTES": "512",
            },
            StreamLimits(queue_bytes=1024, max_subscriptions=3, max_frame_bytes=512),
        ),
        ({"MOTIA_STREAM_QUEUE_LIMIT": ""}, StreamLimits()),  # empty: the default
    ],
)
def test_limits_from_the_environment(environ, expected):
    assert StreamLimits.from_env(environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MOTIA_STREAM_QUEUE_LIMIT": "lots"}, "$MOTIA_STREAM_QUEUE_LIMIT must be a positive integer, got 'lots'"),
        ({"MOTIA_STREAM_MAX_SUBSCRIPTIONS": "0"}, "$MOTIA_STREAM_MAX_SUBSCRIPTIONS must be a positive integer"),
        ({"MOTIA_STREAM_MAX_FRAME_BYTES": "-5"}, "$MOTIA_STREAM_MAX_FRAME_BYTES must be a positive integer"),
        ({"MOTIA_STREAM_QUEUE_BYTES": "1.5"}, "$MOTIA_STREAM_QUEUE_BYTES must be a positive integer"),
    ],
)
def test_bad_values_name_the_variable(environ, message):
    with pytest.raises(ConfigError) as caught:
        StreamLimits.from_env(environ)
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "3"])
def test_limits_given_in_code_are_checked(value):
    with pytest.raises(ConfigError, match="max_subscriptions must be a positive int"):
        StreamLimits(max_subscriptions=value)


def test_a_bad_variable_stops_the_app_before_it_starts(monkeypatch):
    monkeypatch.setenv("MOTIA_STREAM_QUEUE_LIMIT", "many")
    with pytest.raises(ConfigError, match="MOTIA_STREAM_QUEUE_LIMIT"):
        MotiaApp([], state="memory://", cron=False)


async def test_an_app_serves_with_the_limits_of_its_environment(
    monkeypatch: pytest.MonkeyPatch, serve_app: ServeApp, ws_connect: Connect
) -> None:
    monkeypatch.setenv("MOTIA_STREAM_MAX_SUBSCRIPTIONS", "2")
    monkeypatch.setenv("MOTIA_STREAM_MAX_FRAME_BYTES", "300")
    app = MotiaApp([], state="memory://", cron=False, streams=[StreamDefinition(name="todo")])
    assert app.stream_limits == StreamLimits(max_subscriptions=2, max_frame_bytes=300)
    url = await serve_app(app)
    ws = await ws_connect(url)
    for n in range(2):
        await ws.send(join_frame(sub=f"s{n}", group=f"g{n}"))
        [synced] = await receive(ws)
        assert synced["event"]["type"] == "sync"
    await ws.send(join_frame(sub="third", group="g3"))
    refused, _ = await receive(ws, 2)
    assert refused["event"]["data"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    await ws.send(join_frame(sub="x" * 400))  # a frame over the 300 bytes allowed
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
