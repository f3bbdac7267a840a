"""A test that must fail: it expects a retry before its backoff has passed (the fake clock does not cheat)."""


async def test_the_retry_comes_before_its_backoff(motia_client, motia_state, motia_clock):
    await motia_state.set("mailer", "status", "down")
    await motia_client.post("/reservations", json={"id": "s1", "email": "s1@example.com"})
    await motia_clock.advance(0)
    await motia_state.set("mailer", "status", "up")
    await motia_clock.advance(59)
    assert await motia_state.get("emails", "s1") is not None
