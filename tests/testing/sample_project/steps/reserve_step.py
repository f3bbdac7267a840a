from motia import http, step

HOLD_SECONDS = 15 * 60


async def reserve(request, ctx):
    reservation = {"id": request.body["id"], "email": request.body["email"]}
    await ctx.state.set("reservations", reservation["id"], reservation, ttl=HOLD_SECONDS)
    await ctx.enqueue({"topic": "reservation.created", "data": reservation})
    return {"status": 201, "body": reservation}


reserve_step = step(
    {"name": "reserve", "triggers": [http("POST", "/reservations")], "enqueues": ["reservation.created"]}, reserve
)
