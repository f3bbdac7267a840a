"""What the delivery worker's retention loop says it pruned, and the lease that lets one instance at a time
prune (the loop itself is :meth:`motia.runtime.delivery.DeliveryWorker._retain`; the settings are
:class:`~motia.runtime.delivery_options.DeliveryOptions`; docs/operations.md, "Retention")."""

from __future__ import annotations

import logging

from motia.runtime.delivery_options import DeliveryOptions
from motia.state.backends.types import PruneResult

__all__ = ["RETENTION_LEASE", "log_pruned"]

logger = logging.getLogger("motia.runtime")

#: The store lease whose holder prunes; every instance tries for it each ``retention_interval``.
RETENTION_LEASE = "motia:retention"


def log_pruned(result: PruneResult, options: DeliveryOptions) -> None:
    """Log what one prune removed: dead letters and stream history at info, forgotten steps (and their
    waiting deliveries moved to the dead letters) as a warning, since they usually mean a renamed step."""
    if result.dead_letters:
        logger.info(
            "retention: deleted %d dead letter(s) older than %g s or beyond the newest %s",
            result.dead_letters,
            options.dead_letter_retention,
            options.dead_letter_limit or "(no limit)",
        )
    if result.steps or result.orphaned:
        logger.warning(
            "retention: forgot %d step(s) no running app has served for %g s; %d of their waiting "
            "deliveries moved to the dead letters",
            result.steps,
            options.step_retention,
            result.orphaned,
        )
    if result.stream_changes or result.stream_groups:
        logger.info(
            "retention: removed %d stream change(s) older than %g s and forgot %d empty stream group(s)",
            result.stream_changes,
            options.stream_retention,
            result.stream_groups,
        )
