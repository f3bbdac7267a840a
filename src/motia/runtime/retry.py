"""The retry policy moved to :mod:`motia.steps.retry` (it is part of a trigger's declaration); this
module keeps ``from motia.runtime.retry import RetryPolicy`` working."""

from __future__ import annotations

from motia.steps.retry import RetryPolicy

__all__ = ["RetryPolicy"]
