"""pymotia: Motia's steps, triggers and scoped persistent state in pure Python.

``from motia import step, http`` — code written from Motia's documentation runs unchanged.
"""

from __future__ import annotations

import sys as _sys

from motia._facade import PackageCallable as _PackageCallable
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
from motia.steps import Step, StepConfig, cron, http, queue, step
from motia.steps import state as _state_trigger

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
