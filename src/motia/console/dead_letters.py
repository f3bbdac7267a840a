"""The console's Dead letters view API: dead letters (filtered by step, kind and topic) and the deliveries
pending per step, read-only (issue 18 adds redrive and purge), through :mod:`motia.runtime.dead_letters`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from motia.console._api import ApiError, query, query_int
from motia.runtime.dead_letters import KINDS, DeadLetterFilter, dead_letter_json, list_dead_letters
from motia.runtime.http import JSONResponse
from motia.state.backends.base import DeliveryStore

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "DeadLettersAPI"]

#: Dead letters shown when the client does not say, and the most it may ask for.
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


class DeadLettersAPI:
    """``GET /__motia/api/dead-letters?step=&kind=&topic=&limit=``: ``{"dead_letters": [...], "pending":
    {step: count}, "limit": n}``, oldest first (``pending`` narrowed to ``step`` when given)."""

    def __init__(self, store: DeliveryStore) -> None:
        self.store = store

    async def list(self, request: Request) -> Response:
        kind = query(request, "kind")
        if kind is not None and kind not in KINDS:
            raise ApiError(400, f"query parameter 'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
        step = query(request, "step")
        limit = query_int(request, "limit", low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
        where = DeadLetterFilter(step=step, kind=kind, topic=query(request, "topic"), limit=limit)
        letters = await list_dead_letters(self.store, where)
        pending = await self.store.pending_by_step()
        if step is not None:
            pending = {name: count for name, count in pending.items() if name == step}
        return JSONResponse(
            {
                "dead_letters": [dead_letter_json(letter) for letter in letters],
                "pending": dict(sorted(pending.items())),
                "limit": limit,
            }
        )
