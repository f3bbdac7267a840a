# motia-py 1.0.x style, after the SSE example of Motia's Python playground (in our own words): a handler taking
# one argument, MotiaHttpArgs, that reads the raw URL-encoded body, sets status and headers, writes server-sent
# events with `response.writer.stream.write` (blocking `time.sleep` between them, inside `async def`, as the
# example does) and closes the response itself.
import json
import time
from typing import Any
from urllib.parse import parse_qsl

from motia import MotiaHttpArgs, http, logger, stateManager

config = {
    "name": "SSE Countdown",
    "description": "Streams a countdown as server-sent events",
    "flows": ["sse-example"],
    "triggers": [http("POST", "/countdown")],
    "enqueues": [],
}


async def handler(args: MotiaHttpArgs[Any]) -> None:
    request = args.request
    response = args.response
    logger.info("Countdown requested", {"contentType": request.headers.get("content-type")})

    await response.status(200)
    await response.headers({"content-type": "text/event-stream", "cache-control": "no-cache"})

    raw = b"".join(chunk for chunk in request.request_body.stream).decode()
    fields = dict(parse_qsl(raw.strip(), keep_blank_values=True))
    start = int(fields.get("from", "3"))
    label = fields.get("label", "countdown")

    for n in range(start, 0, -1):
        response.writer.stream.write(f"event: tick\ndata: {json.dumps({'label': label, 'n': n})}\n\n".encode())
        time.sleep(0.01)  # blocks the loop, as upstream's example does: the events still go out, in order

    response.writer.stream.write(f"event: done\ndata: {json.dumps({'total': start})}\n\n".encode())
    response.close()
    stateManager.set("countdowns", label, {"total": start})
