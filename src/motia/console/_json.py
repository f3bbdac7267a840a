"""JSON out of the console: exact for ints of any size (see :func:`motia.state.values.dumps`)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from motia.state.values import dumps

__all__ = ["JSONResponse", "dumps"]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
