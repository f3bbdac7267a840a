"""``motia deliveries ...``: operating what did not get handled, from a terminal (JSON on stdout).

``list`` pages through dead letters (or, with ``--pending``, the deliveries still waiting), ``show``
inspects one dead letter, ``redrive`` delivers dead letters again and ``purge`` deletes them; all through
:mod:`motia.runtime.dead_letters`, so the console and the Python API behave the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from motia.cli.state import _dumps, _emit, _run, state_option
from motia.runtime.dead_letters import (
    KINDS,
    DeadLetterFilter,
    dead_letter_json,
    dead_letter_page,
    pending_json,
    pending_page,
    purge_ids,
    purge_matching,
    redrive_ids,
    redrive_matching,
)
from motia.state.manager import StateManager

__all__ = ["deliveries"]

F = TypeVar("F", bound=Callable[..., Any])


def filter_options(fn: F) -> F:
    """``--step``, ``--kind`` and ``--topic``, shared by every command that selects dead letters."""
    fn = click.option("--topic", help="Only queue messages sent to this topic.")(fn)
    fn = click.option("--kind", type=click.Choice(KINDS), help="Only deliveries of this kind.")(fn)
    return click.option("--step", help='Only those of this step ("(no subscriber)": messages nobody subscribes to).')(
        fn
    )


@click.group("deliveries")
def deliveries() -> None:
    """Operate deliveries that failed for good (dead letters) or still wait.

    Every command takes --state URL (default: $MOTIA_STATE_URL, else ./.motia/state.db) and never creates
    a missing SQLite file. A message no step subscribes to is kept as a dead letter of the step
    "(no subscriber)". Redriving a dead letter makes it a delivery again (same id, payload and trace id,
    attempts reset) and removes the dead letter.

    \b
    Example:
        motia deliveries list --topic orders.created
        motia deliveries redrive 01J9Z...
    """


@deliveries.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@click.option("--after", metavar="CURSOR", help='Continue a listing: the "next" of the previous page.')
@click.option("--pending", is_flag=True, help="List the deliveries not yet settled instead of the dead letters.")
@click.option("--jsonl", is_flag=True, help="Print one record per line (JSON Lines), nothing else.")
@state_option
def list_(
    step: str | None,
    kind: str | None,
    topic: str | None,
    limit: int,
    after: str | None,
    pending: bool,
    jsonl: bool,
    state_url: str | None,
) -> None:
    """List dead letters, oldest failure first, and the deliveries pending per step.

    Prints {"dead_letters": [...], "next": CURSOR or null, "pending": {step: count}}; each dead letter is
    {"id", "step", "kind", "topic" and "trace_id" (queue messages), "attempts", "error_summary", "error"
    and "first_error" (tracebacks), "created_at", "failed_at" (Unix seconds), "cursor", "payload"}.
    --step also narrows the pending counts. With --pending: {"pending_deliveries": [...], "next"}, each
    with "attempts", "available_at" (its next attempt), "leased_until" (null: not running), "last_error"
    and "first_error". Pass "next" as --after for the next page.

    \b
    Example:
        motia deliveries list
        motia deliveries list --step "(no subscriber)" --topic orders.created --jsonl
        motia deliveries list --pending --step charge
    """
    where = DeadLetterFilter(step=step, kind=kind, topic=topic, limit=limit, after=after)

    async def work(manager: StateManager) -> dict[str, Any]:
        if pending:
            waiting = await pending_page(manager.backend, where)
            return {"pending_deliveries": [pending_json(item) for item in waiting.items], "next": waiting.next}
        page = await dead_letter_page(manager.backend, where)
        counts = await manager.backend.pending_by_step()
        if step is not None:
            counts = {name: count for name, count in counts.items() if name == step}
        letters = [dead_letter_json(letter) for letter in page.items]
        return {"dead_letters": letters, "next": page.next, "pending": dict(sorted(counts.items()))}

    listed = _run(state_url, work)
    if jsonl:
        for record in listed["pending_deliveries" if pending else "dead_letters"]:
            click.echo(_dumps(record))
        return
    _emit(listed)


@deliveries.command("show")
@click.argument("delivery_id", metavar="ID")
@state_option
def show(delivery_id: str, state_url: str | None) -> None:
    """Print one dead letter: its payload, attempts, first and last error (with tracebacks), trace id and
    times, as "motia deliveries list" prints each. An id that is not a dead letter is an error (exit 1).

    \b
    Example:
        motia deliveries show 01J9Z...
    """

    async def work(manager: StateManager) -> dict[str, Any]:
        letter = await manager.backend.get_dead_letter(delivery_id)
        if letter is None:
            raise click.ClickException(f"no dead letter {delivery_id!r}")
        return dead_letter_json(letter)

    _emit(_run(state_url, work))


def _selection(ids: tuple[str, ...], everything: bool, where: DeadLetterFilter) -> None:
    """Refuse an ambiguous or empty selection (a usage error, exit 2): ids, or a filter, or --all."""
    if ids and (everything or not where.is_everything):
        raise click.UsageError("give dead letter ids, or a filter (--step/--kind/--topic) or --all, not both")
    if not ids and not everything and where.is_everything:
        raise click.UsageError("say which dead letters: ids, a filter (--step/--kind/--topic), or --all")


def _act(
    past: str,
    by_ids: Callable[..., Any],
    matching: Callable[..., Any],
    ids: tuple[str, ...],
    where: DeadLetterFilter,
    everything: bool,
    state_url: str | None,
) -> None:
    """Redrive or purge: the ids given (atomically), else every dead letter the filter (or --all) selects."""
    _selection(ids, everything, where)

    async def work(manager: StateManager) -> dict[str, Any]:
        if ids:
            done: list[str] = await by_ids(manager.backend, ids)
            skipped = [delivery_id for delivery_id in dict.fromkeys(ids) if delivery_id not in set(done)]
            return {past: len(done), "ids": done, "skipped": skipped}
        count: int = await matching(manager.backend, where, everything=True)
        return {past: count}

    _emit(_run(state_url, work))


@deliveries.command("redrive")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@filter_options
@click.option("--all", "everything", is_flag=True, help="Every dead letter (when no filter is given).")
@state_option
def redrive(
    ids: tuple[str, ...], step: str | None, kind: str | None, topic: str | None, everything: bool, state_url: str | None
) -> None:
    """Deliver dead letters again: each becomes a delivery of the same id, step, payload and trace id,
    claimable at once, its attempts reset; the dead letter is removed (if it fails for good again it comes
    back under the same id). Give ids (atomic: an unknown id is an error, exit 1, and nothing is
    redriven), or a filter, or --all for every dead letter. Prints {"redriven": n, "ids": [...],
    "skipped": [...]} (ids whose delivery is pending again are skipped), or {"redriven": n} for a filter
    or --all.

    \b
    Example:
        motia deliveries redrive 01J9Z... 01J9Y...
        motia deliveries redrive --step charge
    """
    where = DeadLetterFilter(step=step, kind=kind, topic=topic)
    _act("redriven", redrive_ids, redrive_matching, ids, where, everything, state_url)


@deliveries.command("purge")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@filter_options
@click.option("--all", "everything", is_flag=True, help="Every dead letter (when no filter is given).")
@state_option
def purge(
    ids: tuple[str, ...], step: str | None, kind: str | None, topic: str | None, everything: bool, state_url: str | None
) -> None:
    """Delete dead letters for good. Give ids (atomic: an unknown id is an error, exit 1, and nothing is
    deleted), or a filter, or --all for every dead letter. Prints {"purged": n, "ids": [...],
    "skipped": []}, or {"purged": n} for a filter or --all.

    \b
    Example:
        motia deliveries purge 01J9Z...
        motia deliveries purge --step "(no subscriber)" --topic audit
    """
    where = DeadLetterFilter(step=step, kind=kind, topic=topic)
    _act("purged", purge_ids, purge_matching, ids, where, everything, state_url)
