"""The console's Dead letters view API, through :mod:`motia.runtime.dead_letters` (as ``motia deliveries``):

- ``GET /__motia/api/dead-letters?step=&kind=&topic=&limit=&after=``: ``{"dead_letters": [...], "next":
  cursor or null, "pending": {step: count}, "limit": n}``, oldest failure first (``pending`` narrowed to
  ``step`` when given);
- ``GET /__motia/api/dead-letters/one?id=``: one dead letter (404 when there is none);
- ``GET /__motia/api/pending-deliveries?step=&kind=&topic=&limit=&after=``: ``{"pending_deliveries":
  [...], "next"}``;
- ``POST /__motia/api/dead-letters/redrive`` and ``.../purge`` with a JSON body: ``{"ids": [...]}``
  (atomic; an unknown id is a 404 and nothing changes), or ``{"step", "kind", "topic"}`` (every match), or
  ``{"all": true}``: ``{"redriven"|"purged": n, ...}``. A body that selects nothing is a 400.

The POSTs are writes: they go through the console's guard like its state writes (token or loopback, no
cross-origin ``Origin``) and must send ``Content-Type: application/json``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from motia.console._api import ApiError, json_body, query, query_int, required
from motia.exceptions import DeadLetterNotFoundError
from motia.runtime.dead_letters import (
    KINDS,
    DeadLetterFilter,
    dead_letter_json,
    dead_letter_page,
    pending_json,
    pending_page,
    purge_ids,
    purge_matching,
    redrive_ids,
    redrive_matching,
)
from motia.runtime.http import JSONResponse
from motia.state.backends.base import DeliveryStore

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "DeadLettersAPI"]

#: Dead letters shown when the client does not say, and the most it may ask for.
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name!r} must be a string, not {type(value).__name__}")
    return value


class DeadLettersAPI:
    """The endpoints above, on one store."""

    def __init__(self, store: DeliveryStore, *, max_body: int = 1024 * 1024) -> None:
        self.store = store
        self.max_body = max_body

    def _filter(self, request: Request) -> DeadLetterFilter:
        kind = query(request, "kind")
        if kind is not None and kind not in KINDS:
            raise ApiError(400, f"query parameter 'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
        limit = query_int(request, "limit", low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
        return DeadLetterFilter(
            step=query(request, "step"),
            kind=kind,
            topic=query(request, "topic"),
            limit=limit,
            after=query(request, "after"),
        )

    async def list(self, request: Request) -> Response:
        where = self._filter(request)
        page = await dead_letter_page(self.store, where)
        pending = await self.store.pending_by_step()
        if where.step is not None:
            pending = {name: count for name, count in pending.items() if name == where.step}
        return JSONResponse(
            {
                "dead_letters": [dead_letter_json(letter) for letter in page.items],
                "next": page.next,
                "pending": dict(sorted(pending.items())),
                "limit": where.limit,
            }
        )

    async def one(self, request: Request) -> Response:
        delivery_id = required(request, "id")
        letter = await self.store.get_dead_letter(delivery_id)
        if letter is None:
            raise ApiError(404, f"no dead letter {delivery_id!r}")
        return JSONResponse(dead_letter_json(letter))

    async def pending(self, request: Request) -> Response:
        page = await pending_page(self.store, self._filter(request))
        return JSONResponse({"pending_deliveries": [pending_json(item) for item in page.items], "next": page.next})

    async def _act(self, request: Request, past: str) -> Response:
        body = await json_body(request, self.max_body)
        unknown = sorted(set(body) - {"ids", "step", "kind", "topic", "all"})
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(map(repr, unknown))}")
        ids = body.get("ids")
        everything = body.get("all", False)
        if not isinstance(everything, bool):
            raise ApiError(400, "'all' must be true or false")
        kind = _optional_str(body, "kind")
        if kind is not None and kind not in KINDS:
            raise ApiError(400, f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
        where = DeadLetterFilter(step=_optional_str(body, "step"), kind=kind, topic=_optional_str(body, "topic"))
        redrive = past == "redriven"
        if ids is not None:
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise ApiError(400, "'ids' must be a non-empty list of dead letter ids")
            if everything or not where.is_everything:
                raise ApiError(400, "give 'ids', or a filter (step, kind, topic), or 'all', not both")
            try:
                done = await (redrive_ids if redrive else purge_ids)(self.store, ids)
            except DeadLetterNotFoundError as exc:
                raise ApiError(404, str(exc), id=exc.delivery_id) from None
            skipped = [delivery_id for delivery_id in dict.fromkeys(ids) if delivery_id not in set(done)]
            return JSONResponse({past: len(done), "ids": done, "skipped": skipped})
        if where.is_everything and not everything:
            raise ApiError(400, "say which dead letters: 'ids', a filter (step, kind, topic), or 'all': true")
        count = await (redrive_matching if redrive else purge_matching)(self.store, where, everything=True)
        return JSONResponse({past: count})

    async def redrive(self, request: Request) -> Response:
        return await self._act(request, "redriven")

    async def purge(self, request: Request) -> Response:
        return await self._act(request, "purged")
