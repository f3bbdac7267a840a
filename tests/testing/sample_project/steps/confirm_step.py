from motia import queue, step


class MailerDown(Exception):
    pass


async def confirm(reservation, ctx):
    if await ctx.state.get("emails", reservation["id"]) is not None:
        return  # sent already: a redelivery (after a crash) sends nothing twice
    if await ctx.state.get("mailer", "status") == "down":
        raise MailerDown("the mailer is down")
    await ctx.state.set("emails", reservation["id"], {"to": reservation["email"], "attempt": ctx.trigger.attempt})


confirm_step = step(
    {
        "name": "confirm",
        "triggers": [queue("reservation.created", config={"max_retries": 5, "backoff": 60, "backoff_type": "fixed"})],
    },
    confirm,
)
