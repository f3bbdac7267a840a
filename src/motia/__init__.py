"""pymotia: Motia's steps, triggers and scoped persistent state in pure Python.

``from motia import step, http`` — code written from Motia's documentation runs unchanged.
"""

from __future__ import annotations

from motia.exceptions import (
    ConfigError,
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
from motia.state.manager import StateManager
from motia.state.sync import SyncStateManager, stateManager
from motia.state.types import StateEntry, StateSetResult

__version__ = "0.1.0"

__all__ = [
    # State
    "StateEntry",
    "StateManager",
    "StateSetResult",
    "SyncStateManager",
    "stateManager",
    # Errors
    "ConfigError",
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
