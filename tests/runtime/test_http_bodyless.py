"""Statuses that carry no body (1xx, 204, 304): a handler's body is never sent with them.

Issue 14 found a handler returning ``{"status": 204, "body": ""}`` failing every request under uvicorn
("Response content longer than Content-Length"): HTTP forbids a body there, and the server refuses one.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia import ApiResponse, http, step
from motia.testing import app_client
from tests.e2e.motia_proc import run_motia  # noqa: F401 - the fixture

RESULTS: list[tuple[Any, int]] = [
    ({"status": 204, "body": ""}, 204),
    ({"status": 204, "body": {"deleted": True}}, 204),
    ({"status": 204}, 204),
    (ApiResponse(status=204, body=""), 204),
    ({"status": 304, "body": {"x": 1}, "headers": {"etag": '"abc"'}}, 304),
    ({"status": 304, "body": b"cached", "headers": {"etag": '"abc"'}}, 304),
]


@pytest.mark.parametrize(("result", "status"), RESULTS)
async def test_bodyless_statuses_send_no_body(result: Any, status: int) -> None:
    async def handler(input: Any, ctx: Any) -> Any:
        return result

    steps = [step({"name": "bodyless", "triggers": [http("GET", "/x")]}, handler)]
    # Given a handler answering a bodyless status, with or without a body
    async with app_client(steps) as client:
        # When it is called
        response = await client.get("/x")
    # Then the status and headers arrive, and no body, no content type, no non-zero length
    assert response.status_code == status
    assert response.content == b""
    assert "content-type" not in response.headers
    assert response.headers.get("content-length", "0") == "0"
    if status == 304:
        assert response.headers["etag"] == '"abc"'


async def test_a_dropped_body_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(input: Any, ctx: Any) -> Any:
        return {"status": 204, "body": {"deleted": True}}

    steps = [step({"name": "bodyless", "triggers": [http("DELETE", "/x")]}, handler)]
    with caplog.at_level(logging.WARNING, logger="motia.http"):
        async with app_client(steps) as client:
            assert (await client.delete("/x")).status_code == 204
    assert any("204 response has no body" in record.getMessage() for record in caplog.records)


def test_bodyless_statuses_over_a_real_server(tmp_path: Path, run_motia) -> None:  # noqa: F811
    # Given `motia run` (uvicorn) serving handlers that return bodies with 204 and 304
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "bodyless_step.py").write_text(
        textwrap.dedent(
            """
            from motia import http, step

            @step({"name": "gone", "triggers": [http("DELETE", "/items/:id")]})
            async def gone(input, ctx):
                return {"status": 204, "body": ""}

            @step({"name": "cached", "triggers": [http("GET", "/items/:id")]})
            async def cached(input, ctx):
                return {"status": 304, "body": {"id": input.path_params["id"]}, "headers": {"etag": '"v1"'}}
            """
        )
    )
    proc = run_motia(steps, state="memory://").wait_ready()
    # When each is called several times on one keep-alive connection
    with httpx.Client(base_url=proc.url, timeout=5.0) as client:
        for _ in range(3):
            deleted = client.delete("/items/1")
            cached = client.get("/items/1")
            # Then every answer arrives whole, with no body, and the connection keeps serving
            assert (deleted.status_code, deleted.content) == (204, b"")
            assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", '"v1"')
    assert proc.stop() == 0
    assert "Content-Length" not in proc.logs()
