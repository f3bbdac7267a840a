"""pymotia: Motia's steps, triggers and scoped persistent state in pure Python.

``from motia import step, http`` — code written from Motia's documentation runs unchanged. The names of
motia-py 1.0's ``__all__`` that make sense without its engine are here (``logger``, ``api``,
``multi_trigger_step``, the ``is_*``/``get_*`` guards, ...), and ``state_manager`` of the 1.0 release
candidates; see docs/migrating.md.
"""

from __future__ import annotations

import sys as _sys

from motia._facade import PackageCallable as _PackageCallable
from motia.exceptions import (
    ClientDisconnected,
    ConfigError,
    DeadLetterNotFoundError,
    EnqueueError,
    HttpResponseError,
    InvalidUpdateError,
    MatchError,
    MotiaError,
    ScheduleExhausted,
    StateBackendError,
    StateBackendUnavailable,
    StateClosedError,
    StateConflictError,
    StateError,
    StateTimeout,
    StateValueError,
    StepLoadError,
    StreamAccessDeniedError,
    StreamAuthError,
    StreamConnectionError,
    StreamError,
    StreamNotFoundError,
    StreamProtocolError,
)
from motia.runtime.context import Context, FlowContext, StepLogger
from motia.runtime.logger import logger
from motia.runtime.queue import enqueue
from motia.runtime.streams.auth import StreamAuthInput, StreamAuthResult
from motia.runtime.types import (
    ApiMiddleware,
    ApiRequest,
    ApiResponse,
    CronInput,
    Enqueuer,
    MotiaHttpArgs,
    MotiaHttpRequest,
    MotiaHttpResponse,
    StateTriggerInput,
    StreamEvent,
    StreamTriggerInput,
    TriggerInfo,
    TriggerInput,
)
from motia.state.manager import StateManager
from motia.state.module_manager import state_manager
from motia.state.sync import SyncStateManager, SyncTransaction, stateManager
from motia.state.transaction import StateTransaction
from motia.state.typed import TypedScope
from motia.state.types import StateEntry, StateSetResult
from motia.steps import CronTrigger, QueueTrigger, StateTrigger, Step, StepBuilder, StepConfig, cron, http, queue, step
from motia.steps import state as _state_trigger
from motia.steps.definition import StepDefinition
from motia.steps.guards import (
    get_api_triggers,
    get_cron_triggers,
    get_queue_triggers,
    get_state_triggers,
    get_stream_triggers,
    is_api_step,
    is_api_trigger,
    is_cron_step,
    is_cron_trigger,
    is_queue_step,
    is_queue_trigger,
    is_state_step,
    is_state_trigger,
    is_stream_step,
    is_stream_trigger,
)
from motia.steps.loader import generate_step_id
from motia.steps.multi_trigger import MultiTriggerStepBuilder, multi_trigger_step
from motia.steps.schema import schema_to_json_schema
from motia.steps.triggers import QueryParam, StreamTrigger, api, stream
from motia.steps.types import ApiRouteMethod, ApiTrigger, Enqueue, QueueConfig, TriggerCondition, TriggerConfig
from motia.streams import Stream, StreamConfig, StreamSetResult, StreamSubscription

# The import of motia.state.* above bound the package to `motia.state`; rebinding the name here keeps the
# package reachable through it (`motia.state.manager`) while `motia.state(scope=...)` builds a trigger.
state = _PackageCallable(_state_trigger, _sys.modules["motia.state"])

__version__ = "0.1.0"

__all__ = [
    # State
    "StateEntry",
    "StateManager",
    "StateSetResult",
    "StateTransaction",
    "SyncStateManager",
    "SyncTransaction",
    "TypedScope",
    "stateManager",
    "state_manager",
    # Streams
    "Stream",
    "StreamAuthInput",
    "StreamAuthResult",
    "StreamConfig",
    "StreamSetResult",
    "StreamSubscription",
    # Steps and triggers
    "ApiMiddleware",
    "ApiRequest",
    "ApiResponse",
    "ApiRouteMethod",
    "ApiTrigger",
    "Context",
    "CronInput",
    "CronTrigger",
    "Enqueue",
    "Enqueuer",
    "FlowContext",
    "MotiaHttpArgs",
    "MotiaHttpRequest",
    "MotiaHttpResponse",
    "MultiTriggerStepBuilder",
    "QueryParam",
    "QueueConfig",
    "QueueTrigger",
    "StateTrigger",
    "StateTriggerInput",
    "Step",
    "StepBuilder",
    "StepConfig",
    "StepDefinition",
    "StepLogger",
    "StreamEvent",
    "StreamTrigger",
    "StreamTriggerInput",
    "TriggerCondition",
    "TriggerConfig",
    "TriggerInfo",
    "TriggerInput",
    "api",
    "cron",
    "enqueue",
    "generate_step_id",
    "http",
    "logger",
    "multi_trigger_step",
    "queue",
    "schema_to_json_schema",
    "state",
    "step",
    "stream",
    # Guards
    "get_api_triggers",
    "get_cron_triggers",
    "get_queue_triggers",
    "get_state_triggers",
    "get_stream_triggers",
    "is_api_step",
    "is_api_trigger",
    "is_cron_step",
    "is_cron_trigger",
    "is_queue_step",
    "is_queue_trigger",
    "is_state_step",
    "is_state_trigger",
    "is_stream_step",
    "is_stream_trigger",
    # Errors
    "ClientDisconnected",
    "ConfigError",
    "DeadLetterNotFoundError",
    "EnqueueError",
    "HttpResponseError",
    "InvalidUpdateError",
    "MatchError",
    "MotiaError",
    "ScheduleExhausted",
    "StateBackendError",
    "StateBackendUnavailable",
    "StateClosedError",
    "StateConflictError",
    "StateError",
    "StateTimeout",
    "StateValueError",
    "StepLoadError",
    "StreamAccessDeniedError",
    "StreamAuthError",
    "StreamConnectionError",
    "StreamError",
    "StreamNotFoundError",
    "StreamProtocolError",
]
