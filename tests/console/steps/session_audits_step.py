"""A queue step added to the example app by the browser test: the console lists it with its delivery
settings (FIFO, a keyed rate limit, its retry policy)."""

from motia import queue, step


async def record(input, ctx):
    ctx.logger.info("audit", {"tenant": input["tenant"]})


default = step(
    {
        "name": "session-audits",
        "description": "Record session audits in order",
        "triggers": [
            queue(
                "session-audits",
                config={
                    "type": "fifo",
                    "rate_limit": {"limit": 2, "period": 60, "key": "tenant"},
                    "max_retries": 5,
                    "backoff": 2,
                    "backoff_max": 30,
                },
            )
        ],
    },
    record,
)
