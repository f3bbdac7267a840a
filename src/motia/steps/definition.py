"""``Step``: a config plus a handler, and ``step(...)``, the one way to build it in code.

``step(config, handler)``, ``step(config).handle(handler)`` and ``@step(config)`` all return the same
plain ``Step`` object; a module-level ``config`` + ``handler`` pair is turned into one by the loader.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, overload

from motia.exceptions import ConfigError
from motia.steps._signature import callable_name, handler_arity, is_async_callable
from motia.steps.config import StepConfig, parse_config
from motia.steps.legacy import adapt_v0
from motia.steps.triggers import CronTrigger, HttpTrigger, Trigger

__all__ = ["Step", "StepBuilder", "StepDefinition", "handler_arity", "is_async_callable", "step"]

Handler = Callable[..., Any]


class Step:
    """A validated step: ``config`` (a ``StepConfig``), ``handler`` and facts about the handler.

    Calling a ``Step`` calls its handler, so a function decorated with ``@step(...)`` stays callable
    in tests.
    """

    def __init__(self, config: StepConfig | dict[str, Any], handler: Handler) -> None:
        config, handler = adapt_v0(config, handler)  # a Motia 0.x config ({"type": "api", ...})
        if not callable(handler):
            raise ConfigError(f"step handler must be callable, got {handler!r}")
        self.config = parse_config(config)
        self.handler = handler
        self.arity = handler_arity(handler)
        self.is_async = is_async_callable(handler)
        functools.update_wrapper(self, handler, updated=())

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def triggers(self) -> tuple[Trigger, ...]:
        return self.config.triggers

    @property
    def http_triggers(self) -> list[HttpTrigger]:
        return [t for t in self.config.triggers if isinstance(t, HttpTrigger)]

    @property
    def cron_triggers(self) -> list[CronTrigger]:
        return [t for t in self.config.triggers if isinstance(t, CronTrigger)]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and (self.config, self.handler) == (other.config, other.handler)

    def __hash__(self) -> int:
        return hash((self.config.name, self.handler))

    def __repr__(self) -> str:
        triggers = ", ".join(repr(t) for t in self.triggers)
        return f"Step(name={self.name!r}, triggers=[{triggers}], handler={callable_name(self.handler)})"


#: motia-py 1.0's name for what ``step(config, handler)`` returns (``StepDefinition(config=..., handler=...)``).
StepDefinition = Step


class StepBuilder:
    """A step waiting for its handler: ``step(config).handle(fn)`` or ``@step(config)``."""

    def __init__(self, config: StepConfig | dict[str, Any]) -> None:
        self.config = parse_config(config)

    def handle(self, handler: Handler) -> Step:
        return Step(self.config, handler)

    def __call__(self, handler: Handler) -> Step:
        return Step(self.config, handler)

    def __repr__(self) -> str:
        return f"StepBuilder(name={self.config.name!r}) (no handler yet: call .handle(fn))"


@overload
def step(config: StepConfig | dict[str, Any], handler: None = None) -> StepBuilder: ...
@overload
def step(config: StepConfig | dict[str, Any], handler: Handler) -> Step: ...
def step(config: StepConfig | dict[str, Any], handler: Handler | None = None) -> Step | StepBuilder:
    """Declare a step.

    ``step(config, handler)`` returns a ``Step``; ``step(config)`` returns a builder to finish with
    ``.handle(handler)`` or to use as a decorator. The config is validated here, so a bad one fails
    at import time, where the loader can name the file.
    """
    if handler is None:
        return StepBuilder(config)
    return Step(config, handler)
