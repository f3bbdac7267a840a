"""``motia.logger``: motia-py 1.0's module-level logger.

``from motia import logger; logger.info("Order created", {"id": order_id})`` logs like ``ctx.logger``:
inside a running handler it *is* that run's ``ctx.logger`` (the app sets
:data:`motia.runtime.context.current_run` around each handler call, and ``def`` handlers inherit it in their
worker thread), so records carry the step's
name and trace id; elsewhere (module import, scripts) they carry neither. Records go to the stdlib
logger ``motia.step``, printed by :mod:`motia.runtime.logging`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from motia.runtime.context import StepLogger, current_run

__all__ = ["ModuleLogger", "logger"]


class ModuleLogger:
    """Logs as the running step's ``ctx.logger``: ``info/warn/warning/error/debug/critical(message,
    data=None)``, where ``data`` is a dict of fields (``extra=`` is accepted too)."""

    __slots__ = ("_outside",)

    def __init__(self) -> None:
        self._outside = StepLogger("", "")

    def _current(self) -> StepLogger:
        run = current_run.get()
        return self._outside if run is None else run.logger

    def debug(
        self, message: object, data: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        self._current().log(logging.DEBUG, message, data, extra=extra)

    def info(
        self, message: object, data: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        self._current().log(logging.INFO, message, data, extra=extra)

    def warning(
        self, message: object, data: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        self._current().log(logging.WARNING, message, data, extra=extra)

    def warn(
        self, message: object, data: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        self._current().log(logging.WARNING, message, data, extra=extra)

    def error(
        self, message: object, data: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        self._current().log(logging.ERROR, message, data, extra=extra)

    def exception(
        self, message: object, data: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Log at ERROR with the traceback of the exception being handled."""
        self._current().log(logging.ERROR, message, data, extra=extra, exc_info=True)

    def critical(
        self, message: object, data: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        self._current().log(logging.CRITICAL, message, data, extra=extra)

    def __repr__(self) -> str:
        return "<motia.logger>"


#: The module-level logger (motia-py 1.0's ``from motia import logger``).
logger = ModuleLogger()
