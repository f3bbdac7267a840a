"""Motia 0.x step files (``type: api|event|cron|noop``) load and run unchanged, on every backend."""

from __future__ import annotations

from motia.steps.loader import load_steps
from motia.steps.triggers import CronTrigger, HttpTrigger, QueueTrigger
from motia.testing import app_client, drain
from tests.compat.conftest import HERE
from tests.polling import eventually

STEPS = HERE / "v0_project" / "steps"


def test_each_type_becomes_todays_triggers():
    steps = {ls.step.name: ls.step for ls in load_steps(STEPS)}
    assert set(steps) == {
        "CreatePet",
        "GetPet",
        "ListPets",
        "CountPets",
        "WelcomePet",
        "PetCensus",
        "ShelterVolunteers",
    }

    [create] = steps["CreatePet"].triggers
    assert isinstance(create, HttpTrigger) and (create.method, create.path) == ("POST", "/pets")
    assert create.body_schema["required"] == ["name", "species"]
    assert steps["CreatePet"].config.enqueues == ({"topic": "pet.adopted", "label": "Pet adopted"},)
    assert steps["CreatePet"].config.flows == ("shelter",)

    [welcome] = steps["WelcomePet"].triggers
    assert isinstance(welcome, QueueTrigger) and welcome.topic == "pet.adopted"
    assert welcome.retry.max_retries == 2  # infrastructure.queue.maxRetries
    assert welcome.input["required"] == ["id", "name"]

    [census] = steps["PetCensus"].triggers
    assert isinstance(census, CronTrigger) and census.expression == "* * * * * *"
    assert steps["ShelterVolunteers"].triggers == ()


async def test_api_event_and_state_flow(state_url):
    async with app_client(STEPS, state=state_url) as client:
        # Given a 0.x API step that emits, when a pet is adopted ...
        created = await client.post("/pets", json={"name": "Rex", "species": "dog"})
        assert created.status_code == 201, created.text
        assert created.json()["id"] == "rex" and created.json()["traceId"]
        # ... then the 0.x event step subscribed to the topic gets the data as its input.
        await drain(client)
        assert await client.state.get("welcomed", "rex") == {"message": "Welcome, Rex!"}
        # bodySchema is enforced; the `def` handler reads state with the blocking ctx.state.
        assert (await client.post("/pets", json={"name": "Tom"})).status_code == 400
        assert (await client.get("/pets/rex")).json() == {"id": "rex", "name": "Rex", "species": "dog"}
        assert (await client.get("/pets/nemo")).status_code == 404


async def test_cron_handler_gets_the_context(state_url):
    async with app_client(STEPS, state=state_url, cron=True) as client:
        await client.state.set("pets", "rex", {"id": "rex"})
        census = await eventually(lambda: client.state.get("census", "latest"))
        assert census == {"count": 1, "trigger": "cron"}


async def test_context_state_get_group_in_async_and_def_handlers(state_url):
    async with app_client(STEPS, state=state_url) as client:
        # Given two pets adopted through the 0.x API step
        for name, species in [("Rex", "dog"), ("Tom", "cat")]:
            assert (await client.post("/pets", json={"name": name, "species": species})).status_code == 201
        await drain(client)
        # Then an async handler lists them with context.state.get_group ...
        assert (await client.get("/pets")).json() == {"pets": ["Rex", "Tom"]}
        # ... and so did the blocking event handler after each adoption (the pet it got among them; the
        # other may or may not be there yet, as the two events may be handled concurrently)
        after_rex = await client.state.get("census", "names-after-rex")
        after_tom = await client.state.get("census", "names-after-tom")
        assert "Rex" in after_rex and set(after_rex) <= {"Rex", "Tom"}
        assert "Tom" in after_tom and set(after_tom) <= {"Rex", "Tom"}
