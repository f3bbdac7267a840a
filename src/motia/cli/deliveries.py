"""``motia deliveries ...``: what did not get handled, from a terminal (JSON on stdout).

``list`` prints dead letters (filtered by step, kind and topic) and the deliveries still pending per step,
through :mod:`motia.runtime.dead_letters`. Issue 18 adds ``show``, ``redrive`` and ``purge`` to this group.
"""

from __future__ import annotations

from typing import Any

import click

from motia.cli.state import _dumps, _emit, _run, state_option
from motia.runtime.dead_letters import KINDS, DeadLetterFilter, dead_letter_json, list_dead_letters
from motia.state.manager import StateManager

__all__ = ["deliveries"]


@click.group("deliveries")
def deliveries() -> None:
    """Inspect deliveries that failed for good (dead letters) or still wait.

    Every command takes --state URL (default: $MOTIA_STATE_URL, else ./.motia/state.db) and never creates
    a missing SQLite file. A message no step subscribes to is kept as a dead letter of the step
    "(no subscriber)".

    \b
    Example:
        motia deliveries list --topic orders.created
    """


@deliveries.command("list")
@click.option("--step", help='Only dead letters of this step ("(no subscriber)": messages nobody subscribes to).')
@click.option("--kind", type=click.Choice(KINDS), help="Only dead letters of this kind of delivery.")
@click.option("--topic", help="Only queue messages sent to this topic.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@click.option("--jsonl", is_flag=True, help="Print one dead letter per line (JSON Lines), without the pending counts.")
@state_option
def list_(
    step: str | None, kind: str | None, topic: str | None, limit: int, jsonl: bool, state_url: str | None
) -> None:
    """List dead letters, oldest first, and the deliveries pending per step.

    Prints {"dead_letters": [...], "pending": {step: count}}; each dead letter is {"id", "step", "kind",
    "topic" (queue messages), "error", "attempts", "created_at", "failed_at" (Unix seconds), "payload"}.
    --step also narrows the pending counts.

    \b
    Example:
        motia deliveries list
        motia deliveries list --step "(no subscriber)" --topic orders.created --jsonl
    """
    where = DeadLetterFilter(step=step, kind=kind, topic=topic, limit=limit)

    async def work(manager: StateManager) -> tuple[list[dict[str, Any]], dict[str, int]]:
        letters = [dead_letter_json(letter) for letter in await list_dead_letters(manager.backend, where)]
        pending = await manager.backend.pending_by_step()
        if step is not None:
            pending = {name: count for name, count in pending.items() if name == step}
        return letters, dict(sorted(pending.items()))

    letters, pending = _run(state_url, work)
    if jsonl:
        for letter in letters:
            click.echo(_dumps(letter))
        return
    _emit({"dead_letters": letters, "pending": pending})
