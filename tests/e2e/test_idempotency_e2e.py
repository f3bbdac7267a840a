"""Two ``motia run`` instances on one store (a SQLite file, a Redis prefix), ``idempotency = True`` in the
project's ``motia_config.py``: a retry sent to the other instance gets the first one's stored answer."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia import SyncStateManager
from tests.e2e.motia_proc import MotiaProcess

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_idempotency"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=idem_e2e_{uuid.uuid4().hex[:12]}"
    server: Any = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=idem-e2e-{uuid.uuid4().hex[:12]}"


def test_a_retry_on_the_other_instance_replays(
    run_motia: Callable[..., MotiaProcess], tmp_path: Path, store_url: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(STEPS, project / "steps")
    (project / "motia_config.py").write_text("idempotency = {'ttl': 3600}\n")
    a = run_motia(project / "steps", state=store_url, cwd=project, name="a").wait_ready()
    b = run_motia(project / "steps", state=store_url, cwd=project, name="b").wait_ready()
    headers = {"Idempotency-Key": "payment-1"}
    first = httpx.post(f"{a.url}/pay", json={"amount": 7}, headers=headers, timeout=10)
    retry = httpx.post(f"{b.url}/pay", json={"amount": 7}, headers=headers, timeout=10)
    other = httpx.post(f"{b.url}/pay", json={"amount": 8}, headers=headers, timeout=10)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json() == {"run": 1, "amount": 7}
    assert other.status_code == 422
    with SyncStateManager.from_url(store_url) as store:
        assert store.get("payments", "runs") == {"n": 1}  # the handler ran once across both instances
    assert a.stop() == 0 and b.stop() == 0
