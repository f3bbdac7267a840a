"""``Idempotency-Key`` on HTTP routes (SPEC 13, after the IETF "Idempotency-Key HTTP Header Field" draft).

A route opted in (``http(..., idempotency=True)``, ``MotiaApp(idempotency=...)`` or ``idempotency = True``
in ``motia_config.py``) answers a request carrying ``Idempotency-Key: <key>`` like this:

- the first request with a key claims it in the state store with a create-only write (``if_version=0``)
  of an *in-progress* record, then runs the handler; its answer (status, headers, body bytes) replaces
  the record, kept for the retention (``ttl``, default 24 h) as the key's TTL, so every backend forgets
  it on its own;
- a retry with the same key and the same request (method, path, query and body, hashed) gets the stored
  answer again, with ``idempotent-replayed: true`` (Stripe's header), and the handler does not run;
- a request with the key while the first still runs gets ``409``; the same key on a different request
  gets ``422`` (the draft's statuses);
- an answer of 5xx (a failed handler) or one that was streamed (``input.response``, more than one body
  message) is not stored: the key is released and a retry runs the handler again. 4xx answers are
  stored: the handler decided them and the same request would get the same one.

The in-progress record has a short TTL (:data:`LEASE_SECONDS`) renewed while the handler runs, so an
instance that dies mid-request blocks its key for at most that long. Records live in the reserved
scope :data:`SCOPE`, keyed by a hash of the route and the key; state triggers never see that scope.
The store is shared, so all of this holds across instances.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from motia.exceptions import StateConflictError, StateError
from motia.runtime.responses import error_response
from motia.state.values import INTERNAL_SCOPE_PREFIX

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from motia.runtime.http import StepRoute

__all__ = ["HEADER", "LEASE_SECONDS", "REPLAYED_HEADER", "SCOPE", "IdempotentRoute"]

logger = logging.getLogger("motia.http")

#: The reserved state scope holding the records (hidden from state triggers).
SCOPE = f"{INTERNAL_SCOPE_PREFIX}idempotency"
#: The request header (lower-case, as our request headers are).
HEADER = "idempotency-key"
#: The header a replayed answer carries.
REPLAYED_HEADER = "idempotent-replayed"
#: How long a claim outlives an instance that stopped renewing it.
LEASE_SECONDS = 30.0
#: The longest key accepted (Stripe's limit).
MAX_KEY_LENGTH = 255


class IdempotentRoute:
    """Serves one route's requests that carry an ``Idempotency-Key``; the others go to the route as usual."""

    def __init__(self, route: StepRoute, ttl: float, *, lease: float = LEASE_SECONDS) -> None:
        self.route = route
        self.ttl = ttl
        self.lease = lease
        method, path = route.trigger.route_key
        self._route_id = f"{route.step.name}\n{method}\n{path}"

    async def serve(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> None:
        key = _header(scope, HEADER)
        if key is None:
            await self.route.serve(scope, receive, send, params)
            return
        key = key.strip()
        if len(key) >= 2 and key[0] == key[-1] == '"':  # the draft's structured-field string form
            key = key[1:-1]
        if not key or len(key) > MAX_KEY_LENGTH:
            await _send(scope, receive, send, 400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
            return
        body, more = await self._read_body(receive)
        if body is None:
            return  # the client went away
        if more is not None:
            await _send(scope, receive, send, 413, more)
            return
        fingerprint = _fingerprint(scope, body)
        record_key = hashlib.sha256(f"{self._route_id}\n{key}".encode()).hexdigest()
        state = self.route.app.state
        claim = {"status": "running", "fingerprint": fingerprint}
        for _ in range(3):
            try:
                version = (await state.set(SCOPE, record_key, claim, ttl=self.lease, if_version=0)).version
                break
            except StateConflictError:
                record = await state.get(SCOPE, record_key)
            if record is None:
                continue  # expired between the two calls: claim again
            if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
                await _send(scope, receive, send, 422, "Idempotency-Key was already used with a different request")
                return
            if record.get("status") == "running":
                await _send(scope, receive, send, 409, "A request with this Idempotency-Key is still being processed")
                return
            await _replay(record, send)
            return
        else:  # pragma: no cover - three claims lost to three expiries in a row
            await _send(scope, receive, send, 409, "A request with this Idempotency-Key is still being processed")
            return
        await self._first(scope, _replaying(body, receive), send, params, record_key, fingerprint, version)

    async def _first(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        params: dict[str, str],
        record_key: str,
        fingerprint: str,
        version: int,
    ) -> None:
        """Run the route for the request that claimed the key, keep the claim alive, store or release."""
        state = self.route.app.state
        start: Message | None = None
        chunks: list[bytes] = []
        streamed = False
        claim = {"status": "running", "fingerprint": fingerprint}
        current = version

        async def capture(message: Message) -> None:
            nonlocal start, streamed
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                streamed = streamed or bool(message.get("more_body", False))
            await send(message)

        async def renew() -> None:
            nonlocal current
            while True:
                await asyncio.sleep(self.lease / 3)
                try:
                    current = (await state.set(SCOPE, record_key, claim, ttl=self.lease, if_version=current)).version
                except StateError as exc:  # a lost claim is logged; the answer is still sent
                    logger.warning("could not renew the claim of an Idempotency-Key: %s", exc)
                    return

        renewal = asyncio.create_task(renew())
        stored = False
        try:
            await self.route.serve(scope, receive, capture, params)
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            if start is not None and not streamed and start["status"] < 500:
                stored = await self._store(record_key, fingerprint, start, b"".join(chunks), current)
            if not stored:
                await self._release(record_key, current)

    async def _store(self, record_key: str, fingerprint: str, start: Message, body: bytes, version: int) -> bool:
        record = {
            "status": "done",
            "fingerprint": fingerprint,
            "code": start["status"],
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in start.get("headers", [])],
            "body": base64.b64encode(body).decode("ascii"),
        }
        try:
            await self.route.app.state.set(SCOPE, record_key, record, ttl=self.ttl, if_version=version)
        except StateError as exc:  # too large for the store, or the claim was lost: the key is released
            logger.warning("the answer to an Idempotency-Key request could not be stored: %s", exc)
            return False
        return True

    async def _release(self, record_key: str, version: int) -> None:
        try:
            await self.route.app.state.delete(SCOPE, record_key, if_version=version)
        except StateConflictError:
            return  # another request holds the key now
        except StateError as exc:
            logger.warning("could not release an Idempotency-Key (it expires with its claim): %s", exc)

    async def _read_body(self, receive: Receive) -> tuple[bytes | None, str | None]:
        """``(body, None)``; ``(b"", message)`` when too large; ``(None, None)`` when the client left."""
        limit = self.route.app.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", f"Request body too large (limit {limit} bytes)"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode("latin-1")
    for k, v in scope["headers"]:
        if k.lower() == wanted:
            return str(v.decode("latin-1"))
    return None


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body already read, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _replay(record: dict[str, Any], send: Send) -> None:
    headers = [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in record.get("headers", [])]
    headers.append((REPLAYED_HEADER.encode(), b"true"))
    await send({"type": "http.response.start", "status": int(record["code"]), "headers": headers})
    await send({"type": "http.response.body", "body": base64.b64decode(record.get("body", ""))})


async def _send(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    await error_response(status, message)(scope, receive, send)
