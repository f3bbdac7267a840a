"""``motia state ...``: inspect and edit state from a terminal, and move it between stores.

Thin click commands over :class:`~motia.state.manager.StateManager`: JSON on stdout, errors on stderr
with exit status 1 (2 for usage errors, such as an argument that is not JSON). ``export`` writes JSON
Lines, one key per line, that ``import`` reads back into any backend.

An export/import round trip keeps values, versions and absolute expiry times
(:meth:`StateManager.restore`), whatever the two backends.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click
import orjson

from motia.exceptions import MotiaError
from motia.state.manager import StateManager
from motia.state.types import JSON, StateEntry
from motia.state.urls import default_state_url, mask_url, sqlite_path

__all__ = ["state"]

F = TypeVar("F", bound=Callable[..., Any])

#: Keys read per round trip by ``list`` and ``export``.
PAGE = 1000
#: Below this many keys (or bytes, for import) no progress bar is drawn: it would only flicker.
PROGRESS_MIN = 5000
RECORD_FIELDS = frozenset({"scope", "key", "value", "version", "expires_at"})


def state_option(fn: F) -> F:
    """``--state URL``, shared by every ``motia state`` command."""
    return click.option(
        "--state",
        "state_url",
        envvar="MOTIA_STATE_URL",
        metavar="URL",
        help="State store URL (sqlite:///path.db, ...); also $MOTIA_STATE_URL. [default: sqlite:///./.motia/state.db]",
    )(fn)


def _json_argument(ctx: click.Context, param: click.Parameter, value: str) -> JSON:
    """Parse a JSON argument (``-``: read it from stdin); bad JSON is a usage error naming the argument."""
    text = sys.stdin.read() if value == "-" else value
    try:
        # The standard library reads big ints exactly; orjson would turn them into floats.
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}): {text[:80]!r}", ctx=ctx, param=param) from None


def _open(url: str | None, *, create: bool) -> StateManager:
    """Open the store; a command that only reads refuses to create a missing SQLite file."""
    url = url or default_state_url()
    path = sqlite_path(url)
    if not create and path is not None and not path.exists():
        raise click.ClickException(
            f"no state store at {path.absolute()} (nothing stored yet?); pass --state URL or set MOTIA_STATE_URL"
        )
    return StateManager.from_url(url)


def _run(url: str | None, work: Callable[[StateManager], Coroutine[Any, Any, Any]], *, create: bool = False) -> Any:
    """Open the store, run ``work`` on it, close it; ``MotiaError`` becomes a click error (exit 1)."""

    async def main() -> Any:
        async with _open(url, create=create) as manager:
            return await work(manager)

    try:
        return asyncio.run(main())
    except MotiaError as exc:
        raise click.ClickException(str(exc)) from exc


def _dumps(value: Any, *, indent: bool = False) -> str:
    """JSON text of ``value``; ints beyond 64 bits (which orjson refuses) go through the standard library."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else None).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, indent=2 if indent else None, separators=_SEPARATORS[indent])


_SEPARATORS = {True: (",", ": "), False: (",", ":")}


def _emit(value: Any) -> None:
    click.echo(_dumps(value, indent=True))


def _entry_json(entry: StateEntry) -> dict[str, Any]:
    return {"key": entry.key, "value": entry.value, "version": entry.version, "expires_at": entry.expires_at}


async def _require_scope(manager: StateManager, scope: str) -> int:
    """The scope's key count; an unknown (empty) scope is an error naming the known ones."""
    count = await manager.count(scope)
    if count == 0:
        known = await manager.list_groups()
        hint = f"known scopes: {', '.join(known)}" if known else "the store is empty"
        raise click.ClickException(f"unknown scope {scope!r} (it holds no keys; {hint})")
    return count


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long runs on a terminal; otherwise a no-op."""
    if total < PROGRESS_MIN or not _stderr_is_tty():
        yield lambda n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@click.group("state")
def state() -> None:
    """Inspect and edit state from a terminal: JSON on stdout, errors on stderr.

    Every command takes --state URL (default: $MOTIA_STATE_URL, else ./.motia/state.db). Commands
    that only read never create a missing SQLite file.

    \b
    Example:
        motia state groups
        motia state get user-sessions s-1 --state sqlite:///data/state.db
    """


@state.command()
@click.option("--counts", is_flag=True, help="Print {scope: number of keys} instead of a list.")
@state_option
def groups(counts: bool, state_url: str | None) -> None:
    """List the scopes that hold at least one key, sorted.

    \b
    Example:
        motia state groups            # ["carts", "user-sessions"]
        motia state groups --counts   # {"carts": 3, "user-sessions": 120}
    """

    async def work(manager: StateManager) -> Any:
        names = await manager.list_groups()
        if not counts:
            return names
        return {name: await manager.count(name) for name in names}

    _emit(_run(state_url, work))


@state.command()
@state_option
def stats(state_url: str | None) -> None:
    """Print what the store holds and how much space each part takes, as JSON. Reads only.

    "scopes" gives each scope's stored keys and their bytes (null where the backend cannot tell
    cheaply), the runtime's own "__motia." scopes included (idempotency records, message ids); "expired"
    the keys past their expiry not yet swept; then the outbox (change events not yet dispatched), pending
    deliveries, dead letters, subscriptions, the steps retention knows, the streams' groups, items and
    change-log length, and "size" in bytes ("total", and each part or table the backend can measure:
    SQLite pages and free pages, Redis MEMORY USAGE, PostgreSQL pg_total_relation_size). See
    docs/operations.md, "Retention".

    \b
    Example:
        motia state stats
        motia state stats --state redis://localhost:6379/0 | jq .size.total
    """

    async def work(manager: StateManager) -> dict[str, Any]:
        return {"store": mask_url(manager.url), **(await manager.stats()).to_json()}

    _emit(_run(state_url, work))


@state.command("list")
@click.argument("scope")
@click.option("--prefix", help="Only keys starting with this.")
@click.option("--after", metavar="KEY", help="Only keys after this one (pass the last key of a page).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many keys.  [default: all]")
@state_option
def list_(scope: str, prefix: str | None, after: str | None, limit: int | None, state_url: str | None) -> None:
    """Print the keys of SCOPE with their values, versions and expiry, in key order.

    Prints a JSON array with one entry per line: {"key", "value", "version", "expires_at"}
    (expires_at is a Unix time in seconds, or null). An unknown scope is an error.

    \b
    Example:
        motia state list user-sessions --prefix s- --limit 20
        motia state list user-sessions --after s-19 --limit 20    # the next page
    """

    async def work(manager: StateManager) -> None:
        await _require_scope(manager, scope)
        # Streamed page by page, one entry per line; each line is printed once the next one is known,
        # so that all but the last get their comma.
        click.echo("[")
        cursor, left, held = after, limit, None
        while left is None or left > 0:
            size = PAGE if left is None else min(PAGE, left)
            page = await manager.items(scope, prefix=prefix, after=cursor, limit=size)
            for entry in page:
                if held is not None:
                    click.echo(f"  {held},")
                held = _dumps(_entry_json(entry))
            if len(page) < size:
                break
            cursor = page[-1].key
            left = None if left is None else left - len(page)
        if held is not None:
            click.echo(f"  {held}")
        click.echo("]")

    _run(state_url, work)


@state.command()
@click.argument("scope")
@click.argument("key")
@click.option("--entry", "with_entry", is_flag=True, help="Print {key, value, version, expires_at}.")
@state_option
def get(scope: str, key: str, with_entry: bool, state_url: str | None) -> None:
    """Print the value of KEY in SCOPE; a missing key is an error (exit 1).

    \b
    Example:
        motia state get user-sessions s-1
        motia state get user-sessions s-1 --entry    # with version and expiry
    """

    async def work(manager: StateManager) -> StateEntry:
        entry = await manager.get_entry(scope, key)
        if entry is None:
            raise click.ClickException(f"no key {key!r} in scope {scope!r}")
        return entry

    entry = _run(state_url, work)
    _emit(_entry_json(entry) if with_entry else entry.value)


def write_options(fn: F) -> F:
    """``--ttl`` and ``--if-version``, shared by ``set`` and ``update``."""
    fn = click.option(
        "--if-version",
        type=click.IntRange(min=0),
        metavar="N",
        help="Write only if the key's version is N (0: only if absent); else exit 1.",
    )(fn)
    return click.option(
        "--ttl", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Expire the key after this long."
    )(fn)


def _result_json(result: Any) -> dict[str, JSON]:
    return {"old_value": result.old_value, "new_value": result.new_value, "version": result.version}


@state.command("set")
@click.argument("scope")
@click.argument("key")
@click.argument("value", metavar="JSON", callback=_json_argument)
@write_options
@state_option
def set_(scope: str, key: str, value: JSON, ttl: float | None, if_version: int | None, state_url: str | None) -> None:
    """Store the JSON value at KEY in SCOPE (replacing any old one); JSON '-' reads stdin.

    Without --ttl the key is permanent. Prints {"old_value", "new_value", "version"}.

    \b
    Example:
        motia state set user-sessions s-1 '{"userId": "42", "data": {}}' --ttl 3600
        echo '[1, 2, 3]' | motia state set lists primes -
    """

    async def work(manager: StateManager) -> Any:
        return await manager.set(scope, key, value, ttl=ttl, if_version=if_version)

    _emit(_result_json(_run(state_url, work, create=True)))


@state.command()
@click.argument("scope")
@click.argument("key")
@click.argument("ops", metavar="OPS_JSON", callback=_json_argument)
@write_options
@state_option
def update(scope: str, key: str, ops: JSON, ttl: float | None, if_version: int | None, state_url: str | None) -> None:
    """Apply update operations to KEY in SCOPE atomically: all of them or none.

    OPS_JSON is a list of operations (or one operation): set, delete, increment, decrement, merge,
    append, with nested paths. A missing key starts as {}. Without --ttl the key keeps its expiry.
    Prints {"old_value", "new_value", "version"}.

    \b
    Example:
        motia state update user-sessions s-1 '[{"type": "increment", "path": "data.pageViews", "value": 1}]'
        motia state update flags beta '{"type": "set", "path": "enabled", "value": true}'
    """
    operations = [ops] if isinstance(ops, dict) else ops

    async def work(manager: StateManager) -> Any:
        return await manager.update(scope, key, operations, ttl=ttl, if_version=if_version)

    _emit(_result_json(_run(state_url, work, create=True)))


@state.command()
@click.argument("scope")
@click.argument("key")
@click.option("--if-version", type=click.IntRange(min=0), metavar="N", help="Delete only if the key's version is N.")
@state_option
def delete(scope: str, key: str, if_version: int | None, state_url: str | None) -> None:
    """Delete KEY from SCOPE and print its last value; a missing key is an error (exit 1).

    \b
    Example:
        motia state delete user-sessions s-1
    """

    async def work(manager: StateManager) -> JSON:
        entry = await manager.get_entry(scope, key)
        if entry is None:
            raise click.ClickException(f"no key {key!r} in scope {scope!r}")
        return await manager.delete(scope, key, if_version=if_version)

    _emit(_run(state_url, work))


@state.command()
@click.argument("scope")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required when stdin is not a terminal).")
@state_option
def clear(scope: str, yes: bool, state_url: str | None) -> None:
    """Delete every key of SCOPE in one atomic step, after asking for confirmation.

    Without a terminal to ask on, --yes is required. Prints {"cleared": SCOPE, "count": N}.

    \b
    Example:
        motia state clear user-sessions
        motia state clear user-sessions --yes     # in scripts
    """

    async def work(manager: StateManager) -> int:
        found = await _require_scope(manager, scope)
        if not yes:
            if not _stdin_is_tty():
                raise click.ClickException(f"refusing to clear scope {scope!r} without confirmation: pass --yes")
            click.confirm(f"Delete all {found} keys of scope {scope!r}?", abort=True, err=True)
        await manager.clear(scope)
        return found

    found = _run(state_url, work)
    _emit({"cleared": scope, "count": found})


@state.command("export")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE", help="Export only this scope (repeatable).")
@click.option(
    "--output", "-o", type=click.File("wb"), default="-", metavar="FILE", help="Write here.  [default: stdout]"
)
@state_option
def export_(scopes: tuple[str, ...], output: IO[bytes], state_url: str | None) -> None:
    """Write every key (or those of --scope) as JSON Lines, for `motia state import`.

    One line per key: {"scope", "key", "value", "version", "expires_at"}, scopes and keys in order.
    Expired keys are left out. A summary goes to stderr (with a progress bar on a terminal). The
    export reads page by page: it is not a snapshot if other processes write meanwhile.

    \b
    Example:
        motia state export > state.jsonl
        motia state export --scope user-sessions -o sessions.jsonl --state sqlite:///prod.db
    """

    async def work(manager: StateManager) -> tuple[int, int]:
        names = list(dict.fromkeys(scopes)) if scopes else await manager.list_groups()
        totals = [await _require_scope(manager, name) if scopes else await manager.count(name) for name in names]
        written = 0
        with _progress(sum(totals), "exporting") as advance:
            for name in names:
                cursor: str | None = None
                while True:
                    page = await manager.items(name, after=cursor, limit=PAGE)
                    for entry in page:
                        record = {"scope": name, **_entry_json(entry)}
                        output.write(_dumps(record).encode() + b"\n")
                    written += len(page)
                    advance(len(page))
                    if len(page) < PAGE:
                        break
                    cursor = page[-1].key
        output.flush()
        return written, len(names)

    written, scope_count = _run(state_url, work)
    click.echo(f"exported {written} key(s) from {scope_count} scope(s)", err=True)


class _Record:
    """One validated line of an export file."""

    __slots__ = ("scope", "key", "value", "expires_at", "version")

    def __init__(self, line_no: int, line: bytes) -> None:
        where = f"line {line_no}"
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise click.ClickException(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - RECORD_FIELDS)
        missing = sorted({"scope", "key", "value"} - set(data))
        if unknown or missing:
            problem = f"unknown field(s) {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
            raise click.ClickException(f"{where}: {problem} (expected {', '.join(sorted(RECORD_FIELDS))})")
        for name in ("scope", "key"):
            if not isinstance(data[name], str) or not data[name]:
                raise click.ClickException(f"{where}: {name} must be a non-empty string")
        expires_at = data.get("expires_at")
        if expires_at is not None and (
            isinstance(expires_at, bool) or not isinstance(expires_at, int | float) or not math.isfinite(expires_at)
        ):
            raise click.ClickException(f"{where}: expires_at must be a Unix time in seconds or null")
        version = data.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise click.ClickException(f"{where}: version must be a positive integer")
        self.scope: str = data["scope"]
        self.key: str = data["key"]
        self.value: JSON = data["value"]
        self.expires_at: float | None = expires_at
        self.version: int | None = version


def _size(stream: IO[bytes]) -> int:
    try:
        return max(0, stream.seek(0, 2) - stream.seek(0))
    except (OSError, ValueError):  # a pipe: no size, no progress bar
        return 0


@state.command("import")
@click.argument("source", metavar="FILE", type=click.File("rb"))
@click.option("--replace", is_flag=True, help="Overwrite keys that already exist.")
@click.option("--ignore", is_flag=True, help="Skip keys that already exist.")
@state_option
def import_(source: IO[bytes], replace: bool, ignore: bool, state_url: str | None) -> None:
    """Write the keys of a `motia state export` file (FILE, or - for stdin) into the store.

    Each key keeps its value, its version and its absolute expiry time; keys already expired are
    skipped (a line without a version is numbered like a write). By default a key that already
    exists stops the import (exit 1) with the lines before it imported; --replace overwrites
    existing keys, --ignore skips them. Prints a JSON summary.

    \b
    Example:
        motia state export --state sqlite:///old.db > state.jsonl
        motia state import state.jsonl --state sqlite:///new.db
    """
    if replace and ignore:
        raise click.UsageError("--replace and --ignore exclude each other")
    total = _size(source)

    async def work(manager: StateManager) -> dict[str, Any]:
        counts = {"imported": 0, "skipped_existing": 0, "skipped_expired": 0}
        with _progress(total, "importing") as advance:
            for line_no, line in enumerate(source, start=1):
                advance(len(line))
                if not line.strip():
                    continue
                record = _Record(line_no, line)
                if record.expires_at is not None and record.expires_at <= time.time():
                    counts["skipped_expired"] += 1
                    continue
                try:
                    written = await manager.restore(
                        record.scope,
                        record.key,
                        record.value,
                        version=record.version,
                        expires_at=record.expires_at,
                        replace=replace,
                    )
                except MotiaError as exc:
                    raise click.ClickException(
                        f"line {line_no}: {exc} ({counts['imported']} key(s) imported before it)"
                    ) from exc
                if not written:
                    if ignore:
                        counts["skipped_existing"] += 1
                        continue
                    raise click.ClickException(
                        f"line {line_no}: key {record.key!r} already exists in scope {record.scope!r} "
                        f"({counts['imported']} key(s) imported before it); "
                        "pass --replace to overwrite existing keys or --ignore to skip them"
                    )
                counts["imported"] += 1
        return counts

    summary = _run(state_url, work, create=True)
    _emit(summary)
