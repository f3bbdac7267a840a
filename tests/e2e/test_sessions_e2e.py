"""The Motia docs' session app (examples/sessions) served by a real `motia run` over a real socket."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.motia_proc import EXAMPLE_STEPS, start_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sessions")
    proc = start_run(tmp, EXAMPLE_STEPS, state=f"sqlite:///{tmp / 'state.db'}").wait_ready()
    yield proc
    assert proc.stop() == 0, proc.logs()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def create_session(client, user_id: str = "42") -> str:
    r = client.post("/session", json={"userId": user_id})
    assert r.status_code == 201
    return r.json()["sessionId"]


def test_create_then_get_session(client):
    before = int(time.time() * 1000)
    r = client.post("/session", json={"userId": "42"})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"sessionId", "expiresAt"}
    assert before + 3600000 <= body["expiresAt"] <= int(time.time() * 1000) + 3600000
    got = client.get(f"/session/{body['sessionId']}")
    assert got.status_code == 200
    session = got.json()
    assert session["userId"] == "42" and session["expiresAt"] == body["expiresAt"] and session["data"] == {}
    assert before <= session["createdAt"] <= session["expiresAt"] - 3600000


def test_get_missing_session_is_404(client):
    r = client.get("/session/does-not-exist")
    assert r.status_code == 404
    assert r.json() == {"error": "Session not found"}


def test_create_session_without_user_id_is_400(client):
    r = client.post("/session", json={"user": "42"})
    assert r.status_code == 400
    assert r.json()["details"] == [{"path": "userId", "message": "field required"}]


def test_malformed_json_is_400(client):
    r = client.post("/session", content=b'{"userId": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "Malformed JSON body"


def test_update_session(client):
    sid = create_session(client)
    r = client.patch(f"/session/{sid}", json={"pageViews": 7})
    assert r.status_code == 200
    assert r.json() == {"updated": True}
    data = client.get(f"/session/{sid}").json()["data"]
    assert data["pageViews"] == 7
    assert abs(data["lastActivity"] - time.time() * 1000) < 60000
    bad = client.patch(f"/session/{sid}", json={"pageViews": "many"})
    assert bad.status_code == 400 and bad.json()["details"][0]["path"] == "pageViews"


def test_delete_session(client):
    sid = create_session(client)
    r = client.delete(f"/session/{sid}")
    assert r.status_code == 200
    assert r.json() == {"deleted": True}
    assert client.get(f"/session/{sid}").status_code == 404
    again = client.delete(f"/session/{sid}")
    assert again.status_code == 404
    assert again.json() == {"error": "Session not found"}


def test_list_sessions(client):
    sid = create_session(client, "list-user")
    r = client.get("/sessions")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] >= body["active"] >= 1
    assert len(body["sessions"]) == body["active"]
    assert any(s["userId"] == "list-user" for s in body["sessions"])
    client.delete(f"/session/{sid}")


def test_list_all_scopes(client):
    create_session(client)
    r = client.get("/admin/scopes")
    assert r.status_code == 200
    scopes = r.json()["scopes"]
    assert "user-sessions" in scopes
    assert scopes == sorted(scopes)


def test_protected_route(client):
    r = client.get("/protected")
    assert r.status_code == 401 and r.json() == {"error": "No session"}
    r = client.get("/protected", headers={"x-session-id": "nope"})
    assert r.status_code == 401 and r.json() == {"error": "Invalid or expired session"}
    sid = create_session(client, "prot")
    r = client.get("/protected", headers={"x-session-id": sid})
    assert r.status_code == 200
    assert r.json() == {"userId": "prot", "data": "protected content"}
    assert "lastActivity" in client.get(f"/session/{sid}").json()


def test_rate_limit_429_on_request_101(client):
    user = f"rl-{time.monotonic_ns()}"
    statuses = [client.post("/api/action", headers={"x-user-id": user}).status_code for _ in range(100)]
    assert statuses == [200] * 100
    r = client.post("/api/action", headers={"x-user-id": user})
    assert r.status_code == 429
    assert r.json() == {"error": "Rate limit exceeded"}
    # Another user has its own window.
    other = client.post("/api/action", headers={"x-user-id": user + "-other"})
    assert other.status_code == 200 and other.json() == {"success": True}


def simple_hash(text: str) -> int:
    h = 0
    for ch in text:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return abs(h - 0x100000000 if h >= 0x80000000 else h)


def test_feature_flags(client):
    name = f"flag-{time.monotonic_ns()}"
    assert client.get(f"/feature/{name}", headers={"x-user-id": "u"}).json() == {"enabled": False}
    assert client.put(f"/feature/{name}", json={"enabled": True}).status_code == 200
    assert client.get(f"/feature/{name}", headers={"x-user-id": "u"}).json() == {"enabled": True}
    assert client.put(f"/feature/{name}", json={"enabled": True, "rolloutPercent": 0}).status_code == 200
    assert client.get(f"/feature/{name}", headers={"x-user-id": "u"}).json() == {"enabled": False}
    client.put(f"/feature/{name}", json={"enabled": True, "rolloutPercent": 50})
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        expected = simple_hash(user + name) % 100 < 50
        got = client.get(f"/feature/{name}", headers={"x-user-id": user})
        assert got.json() == {"enabled": expected}, user
    assert client.put(f"/feature/{name}", json={"enabled": "yes"}).status_code == 400
    assert client.put(f"/feature/{name}", json={"enabled": True, "rolloutPercent": 101}).status_code == 400


def test_unknown_route_and_openapi(client):
    assert client.get("/nowhere").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/session",
        "/session/{sessionId}",
        "/sessions",
        "/admin/scopes",
        "/api/action",
        "/protected",
        "/feature/{featureName}",
    }
    assert set(paths["/session/{sessionId}"]) == {"get", "patch", "delete"}
    assert set(paths["/feature/{featureName}"]) == {"get", "put"}


def test_startup_log_names_state_and_steps(server):
    logs = server.logs()
    assert "state: sqlite:////" in logs and "state.db" in logs
    assert "11 step(s) loaded from" in logs
    assert "cleanup-expired-sessions: cron('0 * * * *')" in logs
