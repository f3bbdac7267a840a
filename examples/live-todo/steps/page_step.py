"""GET /: the live todo page (``page.html``, beside this file). It subscribes to the list over Server-Sent
Events and changes it through the HTTP steps; it needs no build step and nothing from the network."""

from pathlib import Path

from motia import http

config = {
    "name": "todo-page",
    "description": "The live todo page",
    "flows": ["live-todo"],
    "triggers": [http("GET", "/")],
    "include_files": ["page.html"],
}

PAGE = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")


async def handler(request, ctx):
    return {"status": 200, "body": PAGE, "headers": {"content-type": "text/html; charset=utf-8"}}
