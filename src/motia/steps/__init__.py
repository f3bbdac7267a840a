"""Declaring steps: ``step(...)``, trigger constructors, config validation and file discovery."""

from __future__ import annotations

from motia.steps.config import StepConfig
from motia.steps.definition import Step, StepBuilder, step
from motia.steps.triggers import (
    CronTrigger,
    HttpTrigger,
    QueueTrigger,
    StateTrigger,
    StreamTrigger,
    Trigger,
    cron,
    http,
    queue,
    state,
    stream,
)

__all__ = [
    "CronTrigger",
    "HttpTrigger",
    "QueueTrigger",
    "StateTrigger",
    "Step",
    "StepBuilder",
    "StepConfig",
    "StreamTrigger",
    "Trigger",
    "cron",
    "http",
    "queue",
    "state",
    "step",
    "stream",
]
