"""pymotia: Motia's steps, triggers and scoped persistent state in pure Python.

``from motia import step, http`` — code written from Motia's documentation runs unchanged.
"""

from __future__ import annotations

from motia.exceptions import (
    ConfigError,
    EnqueueError,
    InvalidUpdateError,
    MotiaError,
    StateBackendError,
    StateBackendUnavailable,
    StateClosedError,
    StateConflictError,
    StateError,
    StateTimeout,
    StateValueError,
    StepLoadError,
)
from motia.runtime.context import Context, FlowContext, StepLogger
from motia.runtime.queue import enqueue
from motia.runtime.types import ApiRequest, ApiResponse, CronInput, StateTriggerInput, TriggerInfo
from motia.state.manager import StateManager
from motia.state.sync import SyncStateManager, SyncTransaction, stateManager
from motia.state.transaction import StateTransaction
from motia.state.typed import TypedScope
from motia.state.types import StateEntry, StateSetResult

# After motia.state (sorted order keeps it so): the trigger constructor `state` shadows the subpackage
# attribute `motia.state`; import state modules with `from motia.state.x import y`, never `motia.state.x`.
from motia.steps import Step, StepConfig, cron, http, queue, state, step

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
    # Steps and triggers
    "ApiRequest",
    "ApiResponse",
    "Context",
    "CronInput",
    "FlowContext",
    "StateTriggerInput",
    "Step",
    "StepConfig",
    "StepLogger",
    "TriggerInfo",
    "cron",
    "enqueue",
    "http",
    "queue",
    "state",
    "step",
    # Errors
    "ConfigError",
    "EnqueueError",
    "InvalidUpdateError",
    "MotiaError",
    "StateBackendError",
    "StateBackendUnavailable",
    "StateClosedError",
    "StateConflictError",
    "StateError",
    "StateTimeout",
    "StateValueError",
    "StepLoadError",
]
