"""The delivery worker: runs queue, state-trigger and stream-trigger handlers for the deliveries waiting in
the store.

Each app process leases ready deliveries of its own steps (``backend.claim``), runs their handlers with
bounded concurrency (a queue step's ``concurrency`` bounds its own share, and its ``visibility_timeout``
is its lease: :mod:`motia.runtime.claim_plan`), renews the leases of handlers that run long, and settles
each delivery only after its handler returned: ``complete`` on success (the handlers that return together
are completed in one store call, with the next claim where the claim loop makes one: ``complete_and_claim``,
:mod:`motia.runtime.completions`; a returned handler's slot is free at once), ``retry`` with the trigger's
backoff on an exception, and ``dead_letter`` once the trigger's retry policy is spent. A process that dies
holding leases simply lets them expire; another process (or the restarted one) claims the deliveries again.
That makes delivery at least once, and, with one lease per (step, order key) at a time (the backend's
rule), in commit order per key (state), per group (streams) and per ``messageGroupId`` (FIFO queues).

Wake-ups: the store calls back after every local commit that recorded events or added deliveries, so a
local write reaches its handler without waiting for a poll; other processes' commits are found by
polling every ``poll_interval`` seconds, except where the store tells this process of them
(``backend.wakes_other_processes``: PostgreSQL's ``LISTEN``): there an idle worker waits for a wake-up or
the next delivery due with no commit (``backend.next_due``: a delay, a backoff, a lease's end), and an idle
app costs the store (almost) no queries.

Stream triggers: the store makes their deliveries in the transaction of each change, for the
subscriptions registered with it; the worker registers this app's at start and again every
``retention_interval`` seconds (see :mod:`motia.runtime.stream_triggers`).

Retention: at start and every ``retention_interval`` seconds the worker tells the store which steps this
app serves (``touch_steps``), and the instance holding the store's retention lease applies retention
(``prune``): dead letters older than ``dead_letter_retention`` are deleted, a step no running app has
served for ``step_retention`` (a renamed or removed step) loses its subscriptions, its waiting deliveries
moving to the dead letters, and stream changes older than ``stream_retention`` leave the groups'
histories (docs/operations.md, "Retention").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from motia.exceptions import Undeliverable
from motia.runtime import observe
from motia.runtime.claim_plan import ClaimPlan
from motia.runtime.completions import Completions
from motia.runtime.dead_letter_notice import announce_dead_letter
from motia.runtime.delivery_options import DeliveryOptions
from motia.runtime.delivery_payload import attempt_error as _error_text
from motia.runtime.delivery_payload import traceparent as _traceparent
from motia.runtime.feed_once import FeedOnce
from motia.runtime.flow_control import RateLimiter
from motia.runtime.handler_tasks import Run, Running, start_runs
from motia.runtime.retention import RETENTION_LEASE, log_pruned
from motia.runtime.runner import StepRunner
from motia.runtime.state_triggers import (
    IDLE_WAIT,
    EventDispatcher,
    state_input_json,
    state_triggers,
    subscriptions,
    wait_for,
)
from motia.runtime.stream_triggers import route_stream, stream_subscriptions
from motia.runtime.tasks import cancel_and_wait
from motia.runtime.types import TriggerFields, TriggerInfo
from motia.state import values as _values
from motia.state.backends.types import Delivery
from motia.steps.retry import RetryPolicy
from motia.steps.triggers import QueueTrigger, StateTrigger, StreamTrigger, Trigger

if TYPE_CHECKING:
    from motia.steps.definition import Step

__all__ = ["DeliveryOptions", "DeliveryWorker", "Undeliverable"]

logger = logging.getLogger("motia.runtime")

#: After a store error, the worker and the dispatcher wait this long at most before trying again.
MAX_ERROR_DELAY = 5.0
#: The trigger kinds whose runs are deliveries (claimed, retried with the trigger's policy, dead-lettered).
_RETRIED = (QueueTrigger, StateTrigger, StreamTrigger)


class DeliveryWorker:
    """Claims and runs the deliveries of an app's queue, state-trigger and stream-trigger steps; also runs
    the app's :class:`~motia.runtime.state_triggers.EventDispatcher` and registers its stream triggers.

    ``owner`` identifies this worker in leases (host, pid and a random part: unique per process).
    """

    def __init__(self, app: StepRunner, options: DeliveryOptions) -> None:
        self.app = app
        self.backend = app.state.backend
        self.options = options
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.steps: dict[str, Step] = {
            step.name: step for step in app.steps if any(isinstance(trigger, _RETRIED) for trigger in step.triggers)
        }
        self.subscriptions = subscriptions(app.steps)
        self.stream_subscriptions = stream_subscriptions(app.steps)
        self._step_names = tuple(self.steps)
        #: The running deliveries by id, each with the task it runs in: one record per delivery (issue 15).
        self._running: Running = {}
        #: How many deliveries run per step (for step limits).
        self._per_step: dict[str, int] = {}
        self.plan = ClaimPlan(self.steps.values(), options.lease)
        self.rate_limiter = RateLimiter(self.steps.values(), app.state)
        self._dispatch_task: asyncio.Task[None] | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._holds_retention = False
        self._wake = asyncio.Event()
        self._dispatch_wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        #: Each state event shown once in the console feed, however many steps receive it.
        self.feed = FeedOnce(app)
        self._errors = 0
        #: Handlers that returned, their deliveries waiting to be completed together (one store call).
        self.completions = Completions(self.backend, self.owner)
        #: The state triggers of each step, in declaration order (found once, not per delivery).
        self._state_triggers = {name: state_triggers(step) for name, step in self.steps.items()}
        #: Asked after each handler returned, before its delivery is completed: ``True`` leaves the delivery
        #: leased and unsettled, as if the process died between the handler's commits and the delivery's
        #: completion (kill -9); it is claimed again once its lease expires. For crash-injection tests
        #: (``motia.testing.crash_after_commit``); ``None`` in production.
        self.crash_after_commit: Callable[[Delivery], bool] | None = None
        #: Told ``(delivery, delay)`` for each delivery put back for a retry (or postponed by a rate limit),
        #: due ``delay`` seconds later on the store's clock: how a fake clock (``motia.testing``) learns when
        #: retries come due.
        self.retry_listeners: list[Callable[[Delivery, float], None]] = []
        self.dispatcher = EventDispatcher(
            self.backend,
            self.subscriptions,
            wake=self._dispatch_wake,
            poll_interval=options.poll_interval,
            batch_window=options.batch_window,
            on_error=self._store_error,
            after_cycle=self._wake.set,
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.subscriptions:
            await self.backend.enable_events()
        if self.stream_subscriptions:
            # Before start-up returns: a change committed once the app is up makes its deliveries. Touched
            # first, so that no other instance's retention takes this app's steps for stale meanwhile.
            await self.backend.touch_steps(self._step_names)
            await self.backend.add_stream_subscriptions(self.stream_subscriptions)
        self.backend.add_listener(self._on_commit)
        self._dispatch_task = asyncio.create_task(self.dispatcher.run(), name="motia-event-dispatcher")
        self._retention_task = asyncio.create_task(self._retain(), name="motia-retention")
        if self.steps:
            logger.info(
                "delivery: %d queue/state/stream step(s), up to %d at once, lease %g s, polling every %g s",
                len(self.steps),
                self.options.concurrency,
                self.options.lease,
                self.options.poll_interval,
            )
            for name, lease in self.plan.leases.items():
                limit = self.plan.limits.get(name)
                if lease != self.options.lease or limit is not None:
                    at_once = f", up to {limit} at once in this process" if limit is not None else ""
                    logger.info("delivery: step %r: lease %g s%s (its queue config)", name, lease, at_once)
            self._claim_task = asyncio.create_task(self._claim_loop(), name="motia-delivery-worker")
            self._lease_task = asyncio.create_task(self._keep_leases(), name="motia-delivery-leases")

    async def stop(self, timeout: float) -> None:
        """Stop claiming, give running handlers ``timeout`` seconds, then interrupt them and release
        their deliveries (claimable again at once; the interrupted attempt counts)."""
        try:
            self.backend.remove_listener(self._on_commit)
        except Exception:
            logger.exception("delivery: removing the commit listener failed")
        await cancel_and_wait(self._retention_task, "delivery: retention")
        if self._holds_retention:  # let another instance take over retention now, not once the lease lapses
            self._holds_retention = False
            try:
                await self.backend.release_lease(RETENTION_LEASE, self.owner)
            except Exception:
                logger.warning("delivery: releasing the retention lease failed", exc_info=True)
        await cancel_and_wait(self._dispatch_task, "delivery: the event dispatcher")
        await cancel_and_wait(self._claim_task, "delivery: claiming")
        self._dispatch_task = self._claim_task = self._retention_task = None
        if self._running:
            # _run settles every outcome itself (and _settle never raises), so these end without error. Waited
            # for again while the set changes: a claim's task hands the runs after one that pauses to a new task.
            deadline = time.monotonic() + timeout
            while (running := {task for task, _ in self._running.values() if not task.done()}) and (
                left := deadline - time.monotonic()
            ) > 0:
                await asyncio.wait(running, timeout=left)
            unfinished = {task for task, _ in self._running.values() if not task.done()}
            interrupted = [delivery_id for delivery_id, (task, _) in self._running.items() if task in unfinished]
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            # A task cancelled before its first step never ran its coroutine, so neither its `finally`.
            self._running.clear()
            self._per_step.clear()
            for delivery_id in interrupted:
                logger.warning("delivery %s interrupted by shutdown: released for another attempt", delivery_id)
                await self._settle("retry", delivery_id, delay=0.0, error="interrupted: the app shut down")
        await self.completions.wait()
        await cancel_and_wait(self._lease_task, "delivery: lease renewal")
        self._lease_task = None

    def _on_commit(self) -> None:
        """Store listener: may run on any thread, so it only schedules the wake-up.

        It wakes the dispatcher only: the dispatcher wakes the worker after each of its cycles, so the
        worker claims once per burst of writes rather than once per commit.
        """
        if threading.get_ident() == self._loop_thread:
            self._dispatch_wake.set()
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing left to wake
                self._loop.call_soon_threadsafe(self._dispatch_wake.set)

    def _store_error(self, exc: BaseException) -> float:
        """Log a failed claim or dispatch and return how long to wait before the next try."""
        self._errors += 1
        delay = min(self.options.poll_interval * 2.0 ** min(self._errors, 20), MAX_ERROR_DELAY)
        logger.warning("delivery: the state store failed (%s); trying again in %.1f s", exc, delay, exc_info=exc)
        return delay

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the outbox is empty and no delivery of this app's steps is pending or running.

        For tests and benchmarks. Deliveries waiting out a retry backoff count as pending. Raises
        ``TimeoutError`` naming what is left after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            await self.dispatcher.dispatch_all()
            left = sum([await self.backend.pending(name) for name in self._step_names])
            if not left and not self._running and self.completions.idle:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{left} deliveries still pending after {timeout} s ({len(self._running)} running)")
            self._wake.set()
            await asyncio.sleep(0.005)  # bounded poll: handlers settle on their own schedule

    async def run_ready(self, timeout: float = 10.0) -> int:
        """Dispatch the recorded events and run every delivery ready now, again and again until none is
        ready and none runs; return how many deliveries were claimed.

        For driving an app by hand under a fake clock (``motia.testing``): unlike :meth:`drain`, it does not
        wait for deliveries whose retry backoff, delay or lease has not yet passed on the store's clock
        (which may never move on its own). Raises ``TimeoutError`` if it is not done within ``timeout``
        seconds (a handler that never returns).
        """
        total = 0
        async with asyncio.timeout(timeout):
            while True:
                await self.dispatcher.dispatch_all()
                claimed = await self._claim_units(self.options.concurrency - len(self._running))
                total += claimed
                if self._running:
                    await asyncio.wait({task for task, _ in self._running.values()})
                elif not claimed:
                    await self.completions.wait()
                    return total

    # -- claiming ----------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        options = self.options
        completions = self.completions
        # Where the store completes and claims in one transaction, returned handlers' completions ride the next
        # claim (below); elsewhere they are written on their own, beside the claims.
        together = completions.collected = self.backend.completes_with_claim
        try:
            while True:
                self._wake.clear()
                # A handler that returned no longer counts: its slot is free, and its completion is written
                # with this claim, in one store call (one transaction on SQLite).
                free = options.concurrency - len(self._running)
                if free > 0:
                    try:
                        free -= await self._claim_units(free)
                    except Exception as exc:  # any failure: log, back off, go on; this loop never dies (#4)
                        completions.collected = False  # meanwhile, returned handlers' completions flush alone
                        completions.flush()
                        await asyncio.sleep(self._store_error(exc))
                        completions.collected = together
                        continue
                    self._errors = 0
                # Fewer than `free` claimed: nothing else is ready. All claimed: no slot is free. Either way the
                # next claim waits for a wake-up (a dispatch, a finished handler) or the poll timer.
                if self._wake.is_set():  # under load it often is: no wait to arm (wait_for would return at once)
                    continue  # completions added meanwhile ride the next round's claim
                completions.flush()  # what no claim took (no slot free, every step paused): written alone
                await wait_for(self._wake, await self._idle_wait(free > 0))
        finally:
            completions.collected = False
            completions.flush()

    async def _claim_units(self, free: int) -> int:
        """Claim for up to ``free`` slots, unit by unit (:class:`ClaimPlan`), start what was claimed and return
        how many; the first claim also completes the deliveries of the handlers that returned."""
        claimed = 0
        for unit, room in self.plan.next_units(self._per_step, self.rate_limiter.is_paused):
            limit = free if room is None else min(free, room)
            if limit <= 0:
                break
            batch = await self.completions.claim(unit.steps, limit, unit.lease)
            if self.rate_limiter and any(step in self.plan.rate_limited for step in unit.steps):
                batch = await self._admit(batch)
            if not batch:
                continue
            free -= len(batch)
            claimed += len(batch)
            shared = not self.plan.several_per_key or self.plan.several_per_key.isdisjoint(unit.steps)
            runs = [self._start(d) for d in batch]
            start_runs(self._loop or asyncio.get_running_loop(), runs, self._running, shared=shared)
            self.feed.flush()  # the events of the handlers just started, before any of them runs
        return claimed

    async def _idle_wait(self, slots_free: bool) -> float:
        """How long the claim loop may wait for a wake-up: the poll interval, unless the store tells this
        process of every process's commits (``wakes_other_processes``): then, with a slot free, until the
        next delivery the store says is due with no commit (a delay, a retry's backoff, a lease's end),
        since anything else becomes claimable by a commit, whose notification wakes the loop."""
        if not self.backend.wakes_other_processes:
            return self.options.poll_interval
        if not slots_free:
            return IDLE_WAIT  # a finished handler wakes the loop
        try:
            due = await self.backend.next_due(self._step_names)
        except Exception as exc:  # any failure: poll as if the store could not tell (#4)
            logger.warning("delivery: asking the state store for the next due delivery failed: %s", exc)
            return self.options.poll_interval
        return IDLE_WAIT if due is None else min(max(due, 0.0), IDLE_WAIT)

    async def _admit(self, claimed: list[Delivery]) -> list[Delivery]:
        """The claimed deliveries within their rate limits; the others are postponed until their window
        opens (not an attempt). A failed postpone is logged: the lease runs out and the delivery comes back."""
        start, postponed = await self.rate_limiter.admit(claimed)
        if postponed:
            outcomes = await asyncio.gather(
                *(self.backend.postpone(d.id, owner=self.owner, delay=delay) for d, delay in postponed),
                return_exceptions=True,
            )
            for (delivery, delay), outcome in zip(postponed, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    logger.warning(
                        "delivery %s: postponing it past its rate limit failed (%s); it comes back when its lease "
                        "runs out",
                        delivery.id,
                        outcome,
                    )
                else:
                    self._tell_due_later(delivery, delay)
            self._wake.set()  # other messages than the postponed ones may be ready
        return start

    def _tell_due_later(self, delivery: Delivery, delay: float) -> None:
        for listener in self.retry_listeners:
            try:
                listener(delivery, delay)
            except Exception:  # an observer's failure must not fail the delivery
                logger.exception("delivery %s: a retry listener failed", delivery.id)

    def _start(self, delivery: Delivery) -> Run:
        """Route ``delivery`` and count it as running; return its run (one coroutine per delivery), which
        :func:`~motia.runtime.handler_tasks.start_runs` starts with the rest of its claim."""
        step = self.steps[delivery.step]
        run: Run
        try:
            triggers, input_, info, trace_id = self._route(step, delivery)
        except Exception as exc:  # a payload no trigger can take: it could never succeed
            run = (delivery, self._undeliverable, (step, delivery, exc))
        else:
            telemetry = observe.active
            if telemetry is None:  # trace id None: ctx draws one if read
                run = (delivery, self._run, (step, delivery, triggers, input_, info, trace_id or None))
            else:
                run = (delivery, self._traced, (telemetry, step, delivery, triggers, input_, info))
        per_step = self._per_step
        per_step[delivery.step] = per_step.get(delivery.step, 0) + 1
        return run

    def _finished(self, delivery: Delivery) -> None:
        """Called by each delivery's coroutine as it ends (no done callback to schedule)."""
        if self._running.pop(delivery.id, None) is not None:
            per_step, step = self._per_step, delivery.step
            left = per_step.get(step, 0) - 1
            if left > 0:
                per_step[step] = left
            else:
                per_step.pop(step, None)
        self._wake.set()  # a slot is free

    async def _keep_leases(self) -> None:
        """Renew the leases of running handlers every third of the shortest lease, each at its step's
        lease, so a long handler keeps its work."""
        while True:
            await asyncio.sleep(self.plan.renew_period)
            # Running handlers, and those whose completion is not written yet (still theirs until it is).
            held = {**self.completions.settling, **{id_: d.step for id_, (_, d) in self._running.items()}}
            for lease, running in self.plan.group_by_lease(held).items():
                try:
                    await self.backend.extend(running, owner=self.owner, lease=lease)
                except Exception:  # the next period tries again; a lease that lapses meanwhile only repeats work
                    logger.warning("delivery: renewing %d lease(s) failed", len(running), exc_info=True)

    async def _retain(self) -> None:
        """Touch this app's steps and apply retention now, then every ``retention_interval`` seconds.

        Touching first: a step this app serves is never forgotten by its own prune (nor, from then on, by
        another instance's). The stream-trigger subscriptions are registered again each time, after the
        touch, so that a store which forgot them (another instance's retention while this one was away, a
        store restored from a backup) has them back while this app runs. Every instance touches; one at a
        time prunes: the holder of the store's ``RETENTION_LEASE``, which it renews each round and which
        passes to another instance once it lapses (its holder stopped). A failure is logged and tried
        again next interval; this loop never dies.
        """
        options = self.options
        while True:
            try:
                await self.backend.touch_steps(self._step_names)
                if self.stream_subscriptions:
                    await self.backend.add_stream_subscriptions(self.stream_subscriptions)
                if await self.backend.acquire_lease(RETENTION_LEASE, self.owner, ttl=1.5 * options.retention_interval):
                    self._holds_retention = True
                    log_pruned(
                        await self.backend.prune(
                            dead_letter_age=options.dead_letter_retention or None,
                            step_age=options.step_retention or None,
                            stream_age=options.stream_retention or None,
                            dead_letter_limit=options.dead_letter_limit or None,
                        ),
                        options,
                    )
            except Exception:
                logger.warning(
                    "retention: the state store failed; trying again in %g s", options.retention_interval, exc_info=True
                )
            await asyncio.sleep(options.retention_interval)

    # -- handling ----------------------------------------------------------------------------------

    def _route(
        self, step: Step, delivery: Delivery
    ) -> tuple[Sequence[Trigger], Any, TriggerInfo | TriggerFields, str | None]:
        """The candidate triggers, handler input, ``ctx.trigger`` (or its fields) and trace id of ``delivery``."""
        if delivery.kind == "state":
            # Validated from the payload's JSON at once: no dict decoded first (~3,300 instructions, issue 15).
            event = state_input_json(delivery.payload)
            scope, key = event.group_id, event.item_id
            # `matching`, without a call per delivery, nor a list when every trigger of the step matches (the
            # usual case: one trigger, its scope the event's).
            candidates = self._state_triggers[delivery.step]
            found: Sequence[Trigger] = candidates
            for t in candidates:
                if not ((t.scope is None or t.scope == scope) and (t.key is None or t.key == key)):
                    found = [t for t in candidates if (t.scope in (None, scope)) and (t.key in (None, key))]
                    break
            if not found:
                where = f"{event.group_id!r}/{event.item_id!r}"
                raise Undeliverable(f"step {step.name!r} has no state trigger matching {where}")
            self.feed.waiting.append((event.seq, delivery.payload))  # recorded by feed.flush(), once the claim started
            # TriggerInfo(type="state", scope=..., key=..., delivery_id=..., attempt=...), built if read.
            info: TriggerInfo | TriggerFields = (
                "state", None, None, None, None, scope, key, None, None, None, delivery.id, delivery.attempts
            )  # fmt: skip
            return found, event, info, None
        if delivery.kind == "queue":
            message: Any = _values.decode(delivery.payload)
            topic = message.get("topic") if isinstance(message, dict) else None
            found = [t for t in step.triggers if isinstance(t, QueueTrigger) and t.topic == topic]
            if not found:
                raise Undeliverable(f"step {step.name!r} has no queue trigger on topic {topic!r}")
            info = ("queue", None, None, None, topic, None, None, None, None, None, delivery.id, delivery.attempts)
            return found, message.get("data"), info, message.get("trace_id")
        if delivery.kind == "stream":
            triggers, change, info = route_stream(step, delivery)
            return triggers, change, info, None
        raise Undeliverable(f"unknown delivery kind {delivery.kind!r}")

    async def _undeliverable(self, step: Step, delivery: Delivery, exc: Exception) -> None:
        try:
            logger.error("delivery %s of step %r cannot be handled: %s; dead-lettered", delivery.id, step.name, exc)
            if await self._settle("dead", delivery.id, error=f"undeliverable: {exc}"):
                await self._dead_lettered(delivery, f"undeliverable: {exc}", None)
        finally:
            self._finished(delivery)

    async def _traced(
        self,
        telemetry: observe.Telemetry,
        step: Step,
        delivery: Delivery,
        triggers: Sequence[Trigger],
        input_: Any,
        info: TriggerInfo | TriggerFields,
    ) -> None:
        if isinstance(info, tuple):
            info = TriggerInfo(*info)
        running = False
        try:
            # The run continues the trace of whoever caused the delivery (the traceparent its payload carries).
            with telemetry.run(step.name, info, _traceparent(delivery.payload), delivery.created_at) as trace_id:
                running = True
                await self._run(step, delivery, triggers, input_, info, trace_id)  # which calls _finished
        finally:
            if not running:  # telemetry.run itself failed
                self._finished(delivery)

    async def _run(
        self,
        step: Step,
        delivery: Delivery,
        triggers: Sequence[Trigger],
        input_: Any,
        info: TriggerInfo | TriggerFields,
        trace_id: str | None,
    ) -> None:
        try:
            ctx = self.app.context(step, info, trace_id, delivery_id=delivery.id)
            trigger = triggers[0]
            try:
                chosen: Trigger | None = None
                for trigger in triggers:
                    if trigger.condition is None or await self.app.condition_passes(trigger, input_, ctx):
                        chosen = trigger
                        break
                if chosen is None:
                    ctx.logger.debug("skipped: the trigger's condition is false", {"delivery": delivery.id})
                else:
                    await self.app.invoke(step, input_, ctx)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # KeyboardInterrupt, SystemExit, GeneratorExit... fail this attempt only
                observe.failed(exc)
                policy = trigger.retry if isinstance(trigger, _RETRIED) else RetryPolicy()
                fields = {"delivery": delivery.id, "attempt": delivery.attempts, "max_attempts": policy.max_retries + 1}
                if policy.gives_up_after(delivery.attempts):
                    ctx.logger.exception("handler failed on its last attempt: moved to the dead letters", fields)
                    error = _error_text(exc)
                    if await self._settle("dead", delivery.id, error=error):
                        await self._dead_lettered(delivery, error, ctx.trace_id)
                else:
                    delay = policy.delay(delivery.attempts)
                    ctx.logger.exception(f"handler failed: retrying in {delay:g} s", fields)
                    await self._settle("retry", delivery.id, delay=delay, error=_error_text(exc))
                    self._tell_due_later(delivery, delay)
                return
            if self.crash_after_commit is not None and self.crash_after_commit(delivery):
                logger.warning("delivery %s: crash injected after its handler returned: left leased", delivery.id)
                return
            # The slot is free now; the completion rides the next flush.
            self.completions.add(delivery.id, delivery.step, ctx)
        finally:
            self._finished(delivery)  # the slot is free

    async def _dead_lettered(self, delivery: Delivery, error: str, trace_id: str | None) -> None:
        """The log line and the app's ``on_dead_letter`` hook (never raises)."""
        await announce_dead_letter(delivery, error, trace_id, getattr(self.app, "on_dead_letter", None))

    async def _settle(self, outcome: str, delivery_id: str, *, delay: float = 0.0, error: str = "") -> bool:
        """Retry or dead-letter; a store failure is logged (the lease expires, it comes back)."""
        try:
            if outcome == "retry":
                return await self.backend.retry(delivery_id, owner=self.owner, delay=delay, error=error)
            return await self.backend.dead_letter(delivery_id, owner=self.owner, error=error)
        except Exception:
            logger.exception(
                "delivery %s: recording its outcome (%s) failed; it will be tried again once its lease expires",
                delivery_id,
                outcome,
            )
            return True
