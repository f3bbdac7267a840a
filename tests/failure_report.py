"""What a failed test's report shows besides its traceback: the output of the processes it drove and what its
browser page saw, which a test of a served process cannot be diagnosed without (the console browser test
once failed in CI with nothing to say why).

Fixtures add a section with :func:`on_failure`; the hook in ``tests/conftest.py`` adds the sections of a
failed test to its report, where pytest prints each under its title (``--show-capture`` filters them by title
like captured output). A section's text is made only then, so a passing test pays nothing but the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["LOG_TAIL", "browser_events", "on_failure", "sections", "tail"]

#: The last lines of a log a section quotes (enough for the failing moment; a whole run's log drowns it).
LOG_TAIL = 300

_sections = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


def on_failure(item: pytest.Item, title: str, text: Callable[[], str]) -> None:
    """If ``item`` fails, its report gets a section ``title`` with what ``text()`` returns then."""
    item.stash.setdefault(_sections, []).append((title, text))


def sections(item: pytest.Item) -> list[tuple[str, str]]:
    """The sections registered for ``item``, made now; one whose text fails says so instead of hiding the
    test's own failure."""
    made = []
    for title, text in item.stash.get(_sections, []):
        try:
            made.append((title, text()))
        except Exception as exc:  # the report must still show the test's failure
            made.append((title, f"(could not be made: {exc!r})"))
    return made


def tail(text: str, lines: int = LOG_TAIL) -> str:
    """The last ``lines`` lines of ``text``, saying how many were left out."""
    all_lines = text.splitlines()
    if len(all_lines) <= lines:
        return text
    return f"({len(all_lines) - lines} earlier lines left out)\n" + "\n".join(all_lines[-lines:])


def browser_events(item: pytest.Item, context: Any) -> Iterator[None]:
    """While the test runs, record what the pages of the Playwright browser ``context`` log to their console,
    the errors they throw, their failed requests and the responses of status 400 and above; a generator for a
    fixture to ``yield from``."""
    seen: list[str] = []

    def console(message: Any) -> None:
        seen.append(f"console.{message.type}: {message.text}")

    def web_error(error: Any) -> None:
        seen.append(f"page error: {error.error}")

    def request_failed(request: Any) -> None:
        seen.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def response(response: Any) -> None:
        if response.status >= 400:
            seen.append(f"response {response.status}: {response.request.method} {response.url}")

    listeners = {"console": console, "weberror": web_error, "requestfailed": request_failed, "response": response}
    for event, listener in listeners.items():
        context.on(event, listener)
    on_failure(item, "browser pages: console, errors, failed requests", lambda: tail("\n".join(seen) or "(nothing)"))
    try:
        yield
    finally:
        for event, listener in listeners.items():
            context.remove_listener(event, listener)
