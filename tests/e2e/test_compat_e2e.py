"""A Motia 0.x project served by a real ``motia run``: its ``.env`` read at start, HTTP, queue and state."""

from __future__ import annotations

import shutil

import httpx

from motia.state.sync import SyncStateManager
from tests.compat.conftest import HERE
from tests.e2e.motia_proc import poll


def test_motia_run_serves_a_0x_project_with_its_env_file(tmp_path, run_motia):
    # Given a 0.x project whose .env names the store (and no --state, no MOTIA_STATE_URL)
    project = tmp_path / "shelter"
    shutil.copytree(HERE / "v0_project", project)
    db = tmp_path / "from-dotenv.db"
    (project / ".env").write_text(f"MOTIA_STATE_URL=sqlite:///{db}\n")
    proc = run_motia("steps", cwd=project).wait_ready()
    # When a pet is adopted over HTTP
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        assert client.post("/pets", json={"name": "Rex", "species": "dog"}).status_code == 201
        assert client.get("/pets/rex").json()["species"] == "dog"
    # Then the event step ran, and everything is in the store the .env named.
    with SyncStateManager.from_url(f"sqlite:///{db}") as store:
        assert poll(lambda: store.get("welcomed", "rex"), timeout=10, what="the event step") == {
            "message": "Welcome, Rex!"
        }
        assert store.get("pets", "rex") is not None
    assert proc.stop() == 0
    assert not (project / ".motia").exists()  # not the default store
