"""A cron + TTL + retry flow tested with the plugin's fixtures only: time moves by motia_clock, nothing sleeps."""

import sys

import pytest


async def reserve(client, seat="s1"):
    response = await client.post("/reservations", json={"id": seat, "email": f"{seat}@example.com"})
    assert response.status_code == 201


def test_no_conftest_is_loaded(request):
    assert request.config.pluginmanager.has_plugin("motia")
    assert [name for name in sys.modules if name == "conftest" or name.endswith(".conftest")] == []


async def test_the_confirmation_is_retried_until_the_mailer_is_back(
    motia_client, motia_state, motia_clock, motia_events
):
    await motia_state.set("mailer", "status", "down")
    await reserve(motia_client)
    await motia_clock.advance(0)
    motia_events.assert_enqueued("reservation.created", {"id": "s1", "email": "s1@example.com"})
    assert await motia_state.get("emails", "s1") is None
    await motia_clock.advance(60)  # the first retry: the mailer is still down
    assert await motia_state.get("emails", "s1") is None
    await motia_state.set("mailer", "status", "up")
    await motia_clock.advance(59)
    assert await motia_state.get("emails", "s1") is None  # the next retry is not due yet
    await motia_clock.advance(1)
    assert await motia_state.get("emails", "s1") == {"to": "s1@example.com", "attempt": 3}


async def test_a_hold_expires_and_the_seat_is_released(motia_client, motia_state, motia_clock, motia_events):
    await reserve(motia_client)
    await motia_clock.advance(15 * 60 - 1)
    assert await motia_state.get("released", "s1") is None
    await motia_events.assert_no_event("expired", scope="reservations")
    await motia_clock.advance(1)
    await motia_events.assert_event("expired", scope="reservations", key="s1")
    assert await motia_state.get("released", "s1") == {"seat": "s1"}


async def test_the_report_runs_at_each_five_minute_tick(motia_client, motia_state, motia_clock):
    await reserve(motia_client, "s1")
    await reserve(motia_client, "s2")
    await motia_clock.advance(3600)
    reports = {entry.key: entry.value["held"] for entry in await motia_state.items("reports")}
    # 12 ticks in the hour, each once; the holds expire at 00:15, before that tick's report
    assert reports == {
        f"{hour:02d}:{minute:02d}": 2 if (hour, minute) < (0, 15) else 0
        for hour, minute in [(0, m) for m in range(5, 60, 5)] + [(1, 0)]
    }


@pytest.mark.motia_state("sqlite")
async def test_the_whole_flow_on_a_temporary_sqlite_file(motia_client, motia_state, motia_clock):
    assert motia_state.url.startswith("sqlite:///")
    await motia_state.set("mailer", "status", "down")
    await reserve(motia_client)
    await motia_clock.advance(4 * 60)  # attempts at 0, 60, 120, 180 and 240 failed; the last is due at 300
    assert await motia_state.get("emails", "s1") is None
    assert await motia_state.items("reports") == []
    await motia_state.set("mailer", "status", "up")
    await motia_clock.advance(15 * 60)
    assert await motia_state.get("emails", "s1") == {"to": "s1@example.com", "attempt": 6}
    assert await motia_state.get("reports", "00:05") == {"held": 1}
    assert await motia_state.get("released", "s1") == {"seat": "s1"}
    assert await motia_state.get("reports", "00:15") == {"held": 0}  # expired at 00:15, before its tick


async def test_a_redelivery_after_a_crash_sends_one_email(motia_client, motia_state, motia_clock, motia_crash):
    with motia_crash(step="confirm") as crash:
        await reserve(motia_client)
        await motia_clock.advance(0)
    assert len(crash.crashed) == 1
    assert await motia_state.get("emails", "s1") == {"to": "s1@example.com", "attempt": 1}
    await motia_clock.advance(60)  # the dead worker's lease expires: delivered again, and sends nothing twice
    assert await motia_state.get("emails", "s1") == {"to": "s1@example.com", "attempt": 1}
    assert await motia_state.backend.pending("confirm") == 0
