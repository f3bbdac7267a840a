"""``StepRunner``: what the delivery worker and the HTTP routes need from the app that runs the steps.

:class:`~motia.runtime.app.MotiaApp` composes the delivery worker (:mod:`motia.runtime.delivery`) and the
HTTP routes (:mod:`motia.runtime.http`) and hands itself to them as their runner. They see it only
through this protocol, so neither imports the app module: the app depends on them, never the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from motia.runtime.context import FlowContext
from motia.runtime.types import TriggerFields, TriggerInfo
from motia.state.manager import StateManager
from motia.steps.definition import Step
from motia.steps.triggers import Trigger

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = ["StepRunner"]


class StepRunner(Protocol):
    """The steps, their store, and how one run of a step is set up and called (see ``MotiaApp``)."""

    @property
    def steps(self) -> list[Step]:
        """Every step served."""
        ...

    @property
    def state(self) -> StateManager:
        """The store the steps' ``ctx.state`` reads and writes."""
        ...

    @property
    def dev(self) -> bool:
        """Development mode (``motia dev``): HTTP responses are checked against their ``response_schema``."""
        ...

    @property
    def idempotency(self) -> float | None:
        """The retention of ``Idempotency-Key`` answers on routes that do not choose (``None``: off there)."""
        ...

    @property
    def max_body_bytes(self) -> int:
        """The largest HTTP request body accepted."""
        ...

    def context(
        self, step: Step, trigger: TriggerInfo | TriggerFields, trace_id: str | None, *, delivery_id: str | None = None
    ) -> FlowContext:
        """The ``ctx`` for one run of ``step``."""
        ...

    def async_view(self, ctx: FlowContext) -> FlowContext:
        """``ctx`` with the async store and enqueue (for conditions and middleware)."""
        ...

    async def condition_passes(self, trigger: Trigger, input: Any, ctx: FlowContext) -> bool:  # noqa: A002
        """Whether the trigger's condition lets this input through."""
        ...

    async def invoke(self, step: Step, input: Any, ctx: FlowContext) -> Any:  # noqa: A002
        """Run the step's handler on ``input``."""
        ...

    def stream_routes(self) -> list[BaseRoute]:
        """The stream server's routes (WebSocket and SSE) served beside the steps."""
        ...

    async def startup(self) -> None:
        """Bind the globals and start the background work."""
        ...

    async def shutdown(self) -> None:
        """Stop the background work and unbind."""
        ...
