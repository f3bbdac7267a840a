"""``motia state ...`` through click's CliRunner, plus real ``python -m motia state`` subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import orjson
import pytest
from click.testing import CliRunner

from motia import StateManager
from motia.cli import main
from motia.cli import state as cli_state


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def motia(url):
    """Run ``motia state ARGS --state URL`` in-process; returns the click Result."""

    def invoke(*args: str, input: str | None = None, state: str | None = url):
        extra = ["--state", state] if state is not None else []
        return CliRunner().invoke(main, ["state", *args, *extra], input=input, catch_exceptions=False)

    return invoke


def seed(url: str, *writes) -> None:
    """Write ``(scope, key, value, ttl)`` tuples through the library (not through the CLI under test)."""

    async def go():
        async with StateManager.from_url(url) as state:
            for scope, key, value, ttl in writes:
                await state.set(scope, key, value, ttl=ttl)

    asyncio.run(go())


def read(url: str, scope: str, key: str):
    async def go():
        async with StateManager.from_url(url) as state:
            return await state.get_entry(scope, key)

    return asyncio.run(go())


def out(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- groups, list, get ------------------------------------------------------------------------------


def test_groups_lists_scopes_sorted_and_with_counts(motia, url):
    seed(url, ("b", "k", 1, None), ("a", "k1", 1, None), ("a", "k2", 2, None))
    assert out(motia("groups")) == ["a", "b"]
    assert out(motia("groups", "--counts")) == {"a": 2, "b": 1}


def test_list_prints_entries_in_key_order_with_prefix_after_and_limit(motia, url, monkeypatch):
    # Given more keys than one internal page holds
    monkeypatch.setattr(cli_state, "PAGE", 2)
    seed(url, *[("s", f"k{i}", {"i": i}, None) for i in range(5)], ("s", "other", None, 60))

    # When listing everything, pages are stitched into one JSON array
    entries = out(motia("list", "s"))
    assert [e["key"] for e in entries] == ["k0", "k1", "k2", "k3", "k4", "other"]
    assert entries[0] == {"key": "k0", "value": {"i": 0}, "version": 1, "expires_at": None}
    assert entries[-1]["value"] is None and entries[-1]["expires_at"] > time.time() + 50

    assert [e["key"] for e in out(motia("list", "s", "--prefix", "k", "--limit", "3"))] == ["k0", "k1", "k2"]
    assert [e["key"] for e in out(motia("list", "s", "--prefix", "k", "--after", "k2"))] == ["k3", "k4"]
    assert out(motia("list", "s", "--prefix", "zzz")) == []


def test_list_of_an_unknown_scope_is_an_error_naming_the_known_ones(motia, url):
    seed(url, ("real", "k", 1, None))
    result = motia("list", "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "unknown scope 'nope'" in result.stderr and "real" in result.stderr


def test_get_prints_the_value_or_the_entry(motia, url):
    seed(url, ("s", "k", {"a": [1, 2]}, 30))
    assert out(motia("get", "s", "k")) == {"a": [1, 2]}
    entry = out(motia("get", "s", "k", "--entry"))
    assert entry["key"] == "k" and entry["version"] == 1 and entry["value"] == {"a": [1, 2]}
    assert time.time() < entry["expires_at"] <= time.time() + 30


def test_get_of_a_missing_key_exits_1(motia, url):
    seed(url, ("s", "k", 1, None))
    result = motia("get", "s", "missing")
    assert result.exit_code == 1
    assert "no key 'missing' in scope 's'" in result.stderr


def test_reading_commands_do_not_create_a_missing_store(motia, tmp_path):
    missing = tmp_path / "nothing-here.db"
    for args in (["groups"], ["list", "s"], ["get", "s", "k"], ["delete", "s", "k"], ["export"], ["stats"]):
        result = motia(*args, state=f"sqlite:///{missing}")
        assert result.exit_code == 1, args
        assert "no state store at" in result.stderr
    assert not missing.exists()


def test_state_url_comes_from_the_environment(url, monkeypatch):
    seed(url, ("env", "k", "v", None))
    monkeypatch.setenv("MOTIA_STATE_URL", url)
    result = CliRunner().invoke(main, ["state", "get", "env", "k"])
    assert out(result) == "v"


def test_a_bad_state_url_is_an_error(motia):
    result = motia("groups", state="nosuch://x")
    assert result.exit_code == 1
    assert "unknown state URL scheme" in result.stderr


# -- set, update, delete ----------------------------------------------------------------------------


def test_set_stores_json_and_prints_the_result(motia, url):
    assert out(motia("set", "s", "k", '{"n": 1}')) == {"old_value": None, "new_value": {"n": 1}, "version": 1}
    assert out(motia("set", "s", "k", "[1, 2]", "--ttl", "60")) == {
        "old_value": {"n": 1},
        "new_value": [1, 2],
        "version": 2,
    }
    entry = read(url, "s", "k")
    assert entry.value == [1, 2] and entry.expires_at is not None and entry.expires_at > time.time() + 50


def test_set_reads_stdin_for_dash(motia, url):
    out(motia("set", "s", "k", "-", input='{"from": "stdin"}'))
    assert read(url, "s", "k").value == {"from": "stdin"}


@pytest.mark.parametrize("command", [["set", "s", "k"], ["update", "s", "k"]])
def test_bad_json_is_a_usage_error_naming_the_argument(motia, url, command):
    result = motia(*command, "{not json")
    assert result.exit_code == 2
    name = "JSON" if command[0] == "set" else "OPS_JSON"
    assert f"Invalid value for '{name}'" in result.stderr and "not valid JSON" in result.stderr
    assert read(url, "s", "k") is None


def test_set_with_a_stale_version_conflicts_and_writes_nothing(motia, url):
    seed(url, ("s", "k", 1, None))
    result = motia("set", "s", "k", "2", "--if-version", "5")
    assert result.exit_code == 1
    assert "version" in result.stderr
    assert read(url, "s", "k").value == 1
    assert out(motia("set", "s", "new", "1", "--if-version", "0"))["version"] == 1


def test_set_refuses_values_that_are_not_json_data(motia, url):
    result = motia("set", "s", "k", "NaN")  # Python's json reads it; the store refuses it
    assert result.exit_code == 1
    assert "finite" in result.stderr
    assert read(url, "s", "k") is None


def test_big_ints_are_never_turned_into_floats(motia, url):
    # Either the store refuses an int beyond 64 bits (exit 1), or it keeps it exactly: never a float.
    result = motia("set", "s", "k", str(2**70))
    if result.exit_code == 0:
        assert out(motia("get", "s", "k")) == 2**70
        assert str(2**70) in motia("list", "s").stdout
    else:
        assert result.exit_code == 1 and read(url, "s", "k") is None


def test_update_applies_operations_atomically(motia, url):
    seed(url, ("s", "k", {"n": 1, "tags": []}, 100))
    before = read(url, "s", "k").expires_at
    ops = '[{"type": "increment", "path": "n", "value": 2}, {"type": "append", "path": "tags", "value": "x"}]'
    assert out(motia("update", "s", "k", ops)) == {
        "old_value": {"n": 1, "tags": []},
        "new_value": {"n": 3, "tags": ["x"]},
        "version": 2,
    }
    assert read(url, "s", "k").expires_at == before  # update without --ttl keeps the expiry
    # A single operation object works too.
    assert out(motia("update", "s", "k", '{"type": "set", "path": "a.b", "value": true}'))["new_value"]["a"] == {
        "b": True
    }


def test_an_invalid_update_exits_1_and_writes_nothing(motia, url):
    seed(url, ("s", "k", {"n": "text"}, None))
    result = motia("update", "s", "k", '[{"type": "increment", "path": "n", "value": 1}]')
    assert result.exit_code == 1
    assert "n" in result.stderr
    assert read(url, "s", "k").value == {"n": "text"}


def test_delete_prints_the_old_value(motia, url):
    seed(url, ("s", "k", {"gone": True}, None), ("s", "keep", 1, None))
    assert out(motia("delete", "s", "k")) == {"gone": True}
    assert read(url, "s", "k") is None
    result = motia("delete", "s", "k")
    assert result.exit_code == 1 and "no key 'k'" in result.stderr
    conflict = motia("delete", "s", "keep", "--if-version", "9")
    assert conflict.exit_code == 1
    assert read(url, "s", "keep") is not None


# -- clear --------------------------------------------------------------------------------------------


def test_clear_with_yes(motia, url):
    seed(url, ("s", "a", 1, None), ("s", "b", 2, None), ("t", "c", 3, None))
    assert out(motia("clear", "s", "--yes")) == {"cleared": "s", "count": 2}
    assert out(motia("groups")) == ["t"]


def test_clear_without_yes_and_without_a_terminal_refuses(motia, url):
    seed(url, ("s", "a", 1, None))
    result = motia("clear", "s", input="y\n")
    assert result.exit_code == 1
    assert "refusing to clear" in result.stderr and "--yes" in result.stderr
    assert read(url, "s", "a") is not None


@pytest.mark.parametrize(("answer", "cleared"), [("y", True), ("n", False)])
def test_clear_asks_on_a_terminal(motia, url, monkeypatch, answer, cleared):
    monkeypatch.setattr(cli_state, "_stdin_is_tty", lambda: True)
    seed(url, ("s", "a", 1, None))
    result = motia("clear", "s", input=f"{answer}\n")
    assert "Delete all 1 keys of scope 's'?" in result.stderr
    assert result.exit_code == (0 if cleared else 1)
    assert (read(url, "s", "a") is None) is cleared


def test_clear_of_an_unknown_scope_is_an_error(motia, url):
    seed(url, ("s", "a", 1, None))
    result = motia("clear", "nope", "--yes")
    assert result.exit_code == 1 and "unknown scope 'nope'" in result.stderr


# -- export and import --------------------------------------------------------------------------------


def test_export_then_import_into_another_store_round_trips(motia, url, tmp_path):
    # Given a store with several scopes, odd keys, TTLs and rewritten keys (version > 1)
    seed(
        url,
        ("user-sessions", "s-1", {"userId": "42", "data": {"views": 3}}, 3600),
        ("user-sessions", "s-2", {"userId": "7"}, None),
        ("user-sessions", "s-2", {"userId": "7", "again": True}, None),
        ("odd/scope:é", "key with spaces/and:colons", ["ü", 1.5, None, True], None),
        ("counters", "n", 2**63 - 1, 120),
        ("counters", "big", -(2**80), None),  # beyond orjson's 64 bits: still exact
    )
    dump = tmp_path / "state.jsonl"
    target = f"sqlite:///{tmp_path / 'other.db'}"

    # When exporting to a file and importing it into a second SQLite file
    export = motia("export", "-o", str(dump))
    assert export.exit_code == 0, export.output
    assert "exported 5 key(s) from 3 scope(s)" in export.stderr
    imported = out(motia("import", str(dump), state=target))

    # Then values, versions and expiry are equal
    assert imported == {"imported": 5, "skipped_existing": 0, "skipped_expired": 0}
    records = [orjson.loads(line) for line in dump.read_bytes().splitlines()]
    assert [(r["scope"], r["key"]) for r in records] == sorted((r["scope"], r["key"]) for r in records)
    assert {(r["scope"], r["key"]): r["version"] for r in records}[("user-sessions", "s-2")] == 2
    for record in records:
        copy = read(target, record["scope"], record["key"])
        assert copy.value == record["value"]
        assert copy.version == record["version"]
        assert copy.expires_at == record["expires_at"]
    assert out(motia("groups", "--counts", state=target)) == out(motia("groups", "--counts"))


def test_export_of_some_scopes_to_stdout(motia, url):
    seed(url, ("a", "k", 1, None), ("b", "k", 2, None), ("c", "k", 3, None))
    result = motia("export", "--scope", "c", "--scope", "a")
    assert result.exit_code == 0
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["scope"], r["value"]) for r in lines] == [("c", 3), ("a", 1)]
    unknown = motia("export", "--scope", "nope")
    assert unknown.exit_code == 1 and "unknown scope 'nope'" in unknown.stderr


def write_lines(path, *records):
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records))
    return str(path)


def test_import_skips_keys_that_already_expired(motia, url, tmp_path):
    dump = write_lines(
        tmp_path / "d.jsonl",
        {"scope": "s", "key": "old", "value": 1, "version": 4, "expires_at": time.time() - 5},
        {"scope": "s", "key": "live", "value": 2, "expires_at": time.time() + 60},
        b"",
        {"scope": "s", "key": "plain", "value": 3},
    )
    assert out(motia("import", dump)) == {
        "imported": 2,
        "skipped_existing": 0,
        "skipped_expired": 1,
    }
    assert read(url, "s", "old") is None and read(url, "s", "plain").value == 3


def test_import_stops_at_an_existing_key_unless_told(motia, url, tmp_path):
    seed(url, ("s", "b", "mine", None))
    dump = write_lines(
        tmp_path / "d.jsonl",
        {"scope": "s", "key": "a", "value": "A"},
        {"scope": "s", "key": "b", "value": "B"},
        {"scope": "s", "key": "c", "value": "C"},
    )
    # By default: stop at line 2, line 1 imported, nothing overwritten
    stopped = motia("import", dump)
    assert stopped.exit_code == 1
    assert "line 2: key 'b' already exists" in stopped.stderr and "1 key(s) imported before it" in stopped.stderr
    assert read(url, "s", "a").value == "A" and read(url, "s", "b").value == "mine" and read(url, "s", "c") is None

    # --ignore skips existing keys
    ignored = out(motia("import", dump, "--ignore"))
    assert ignored["imported"] == 1 and ignored["skipped_existing"] == 2
    assert read(url, "s", "b").value == "mine" and read(url, "s", "c").value == "C"

    # --replace overwrites them (a line without a version is numbered like a write: version + 1)
    assert out(motia("import", dump, "--replace"))["imported"] == 3
    assert read(url, "s", "b").value == "B" and read(url, "s", "b").version == 2

    both = motia("import", dump, "--replace", "--ignore")
    assert both.exit_code == 2 and "exclude each other" in both.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{oops", "line 2: not valid JSON"),
        (b"[1]", "line 2: expected a JSON object"),
        (orjson.dumps({"scope": "s", "key": "k"}), "line 2: missing value"),
        (orjson.dumps({"scope": "s", "key": "k", "value": 1, "extra": 1}), "line 2: unknown field(s) extra"),
        (orjson.dumps({"scope": "", "key": "k", "value": 1}), "line 2: scope must be a non-empty string"),
        (orjson.dumps({"scope": "s", "key": "k", "value": 1, "expires_at": "soon"}), "line 2: expires_at"),
        (orjson.dumps({"scope": "s", "key": "k", "value": 1, "version": 0}), "line 2: version"),
        (orjson.dumps({"scope": "s" * 300, "key": "k", "value": 1}), "line 2: scope"),
    ],
)
def test_import_rejects_bad_lines_naming_them(motia, url, tmp_path, line, message):
    dump = write_lines(tmp_path / "d.jsonl", {"scope": "s", "key": "first", "value": 0}, line)
    result = motia("import", dump)
    assert result.exit_code == 1
    assert message in result.stderr


def test_import_reads_stdin(motia, url):
    lines = orjson.dumps({"scope": "s", "key": "k", "value": "piped"}).decode() + "\n"
    assert out(motia("import", "-", input=lines))["imported"] == 1
    assert read(url, "s", "k").value == "piped"


def test_progress_bar_only_on_a_terminal(motia, url, tmp_path, monkeypatch):
    seed(url, *[("s", f"k{i}", i, None) for i in range(3)])
    monkeypatch.setattr(cli_state, "PROGRESS_MIN", 1)
    plain = motia("export", "-o", str(tmp_path / "a.jsonl"))
    assert "exporting" not in plain.stderr
    monkeypatch.setattr(cli_state, "_stderr_is_tty", lambda: True)
    shown = motia("export", "-o", str(tmp_path / "b.jsonl"))
    assert "exporting" in shown.stderr
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert "importing" in motia("import", str(tmp_path / "b.jsonl"), state=f"sqlite:///{tmp_path / 'c.db'}").stderr


# -- real processes -----------------------------------------------------------------------------------


def run_motia(*args: str, input: bytes | None = None, cwd=None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MOTIA_STATE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "motia", "state", *args], input=input, capture_output=True, cwd=cwd, env=env, timeout=60
    )


def test_real_process_set_get_export_import(tmp_path):
    # Given the default store of a project directory (./.motia/state.db), written by a real `motia state set`
    project = tmp_path / "project"
    project.mkdir()
    done = run_motia("set", "carts", "c-1", '{"items": [1, 2]}', "--ttl", "600", cwd=project)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1
    assert (project / ".motia" / "state.db").exists()

    # Then get prints JSON and a missing key exits 1 with the message on stderr only
    got = run_motia("get", "carts", "c-1", cwd=project)
    assert got.returncode == 0 and json.loads(got.stdout) == {"items": [1, 2]}
    missing = run_motia("get", "carts", "nope", cwd=project)
    assert missing.returncode == 1 and missing.stdout == b"" and b"no key 'nope'" in missing.stderr
    bad = run_motia("set", "carts", "c-2", "{", cwd=project)
    assert bad.returncode == 2 and b"Invalid value for 'JSON'" in bad.stderr

    # And export | import moves it to another SQLite file with its expiry
    exported = run_motia("export", cwd=project)
    assert exported.returncode == 0, exported.stderr
    other = f"sqlite:///{tmp_path / 'other.db'}"
    imported = run_motia("import", "-", "--state", other, input=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["imported"] == 1
    entry = read(other, "carts", "c-1")
    assert entry.value == {"items": [1, 2]}
    assert entry.expires_at == pytest.approx(orjson.loads(exported.stdout)["expires_at"], abs=1.0)


def test_real_processes_export_import_between_postgres_and_sqlite_keep_identical_content(tmp_path, postgres_server):
    # Given a PostgreSQL store with odd keys (a NUL byte, non-ASCII, code point order), TTLs and versions > 1
    postgres = f"{postgres_server.url}?schema=cli_export"
    seed(
        postgres,
        ("user-sessions", "s-1", {"userId": "42", "data": {"views": 3}}, 3600),
        ("user-sessions", "s-2", {"userId": "7"}, None),
        ("user-sessions", "s-2", {"userId": "7", "again": True}, None),
        ("odd/scope:é", "key with spaces\x00and a NUL", ["ü", 1.5, None, True], None),
        ("odd/scope:é", "\ue000 after \ud7ff", 1, None),
        ("odd/scope:é", "\ud7ff", 2, None),
        ("counters", "big", -(2**80), None),
    )
    sqlite = f"sqlite:///{tmp_path / 'copy.db'}"
    back = f"{postgres_server.url}?schema=cli_export_back"
    # When `motia state export` of each store is piped into `motia state import` of the next
    exported = run_motia("export", "--state", postgres)
    assert exported.returncode == 0, exported.stderr
    imported = run_motia("import", "-", "--state", sqlite, input=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["imported"] == 6
    again = run_motia("export", "--state", sqlite)
    assert again.returncode == 0, again.stderr
    assert run_motia("import", "-", "--state", back, input=again.stdout).returncode == 0
    round_trip = run_motia("export", "--state", back)
    # Then every export is byte for byte the same: keys, values, versions and expiry
    assert again.stdout == exported.stdout
    assert round_trip.stdout == exported.stdout
    records = [orjson.loads(line) for line in exported.stdout.splitlines()]
    assert len(records) == 6
    assert {(r["scope"], r["key"]): r["version"] for r in records}[("user-sessions", "s-2")] == 2


def test_stats_shows_keys_per_scope_and_sizes_and_writes_nothing(motia, url, tmp_path):
    # Given a store with two scopes, one key of which has expired
    seed(url, ("carts", "c-1", {"items": [1, 2]}, None), ("carts", "c-2", 1, 0.001), ("users", "u-1", "Ann", None))
    time.sleep(0.01)  # the TTL above is 1 ms of wall time: nothing to await
    db = tmp_path / "state.db"
    before = db.read_bytes()
    # When `motia state stats` reads it
    stats = out(motia("stats"))
    # Then it prints every scope's stored keys with their bytes, the expired key counted, and the file's size
    assert stats["store"] == url
    assert stats["scopes"] == {
        "carts": {"keys": 2, "bytes": len("c-1" + '{"items":[1,2]}' + "c-2" + "1")},
        "users": {"keys": 1, "bytes": len("u-1" + '"Ann"')},
    }
    assert (stats["keys"], stats["expired"], stats["outbox"], stats["pending"], stats["dead_letters"]) == (
        3,
        1,
        0,
        0,
        0,
    )
    assert stats["streams"] == {"groups": 0, "items": 0, "changes": 0}
    assert stats["size"]["total"] >= len(before)
    assert stats["size"]["tables"]["motia_state"] > 0
    # and the file is as it was (the expired key is still there for the sweep)
    assert db.read_bytes() == before
    assert out(motia("stats"))["expired"] == 1


def test_real_process_stats_of_a_redis_store(redis_server):
    url = f"{redis_server.url}?prefix=cli_stats"
    seed(url, ("orders", "o-1", {"total": 3}, None))
    done = run_motia("stats", "--state", url)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["scopes"]["orders"]["keys"] == 1
    assert stats["scopes"]["orders"]["bytes"] > 0
    assert stats["size"]["total"] > 0 and stats["size"]["server_used_memory"] > 0
