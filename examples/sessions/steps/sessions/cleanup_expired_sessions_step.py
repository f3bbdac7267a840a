"""Hourly cron: delete expired sessions (the docs' "Clear" example; decorator style).

The docs' version loops over ``ctx.state.list(...)`` and deletes ``session["id"]``, but the stored
values carry no ``id`` (create-session stores userId, expiresAt, createdAt, data), so it raises
KeyError on the first expired session. ``ctx.state.items(scope)`` returns ``StateEntry(key, value,
version, expires_at)``, so the key comes with each value; reading it page by page (``after=`` the
last key) keeps memory flat however large the scope grows. ``if_version`` makes the delete skip a
session that was refreshed between the read and the delete.

(With pymotia, ``ctx.state.set(..., ttl=3600)`` expires sessions without any cron at all.)
"""

from time import time

from motia import StateConflictError, cron, step

PAGE = 500


@step(
    {
        "name": "cleanup-expired-sessions",
        "description": "Delete sessions whose expiresAt has passed",
        "flows": ["sessions"],
        "triggers": [cron("0 * * * *")],  # Every hour
    }
)
async def cleanup_expired_sessions(_, ctx):
    now = int(time() * 1000)
    expired_count = 0
    after = None
    while True:
        page = await ctx.state.items("user-sessions", after=after, limit=PAGE)
        for entry in page:
            if entry.value.get("expiresAt", 0) <= now:
                try:
                    await ctx.state.delete("user-sessions", entry.key, if_version=entry.version)
                except StateConflictError:
                    continue  # refreshed since we read it: not expired any more
                expired_count += 1
        if len(page) < PAGE:
            break
        after = page[-1].key
    ctx.logger.info("Cleaned up expired sessions", extra={"expiredCount": expired_count})
