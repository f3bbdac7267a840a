"""``MotiaApp``: the registry of steps plus their lifecycle (state binding, cron, HTTP, queue and state
trigger delivery, shutdown)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import CoroutineType as _Coroutine
from typing import TYPE_CHECKING, Any

from motia.exceptions import ConfigError, MotiaError, StepLoadError
from motia.runtime import observe
from motia.runtime.context import FlowContext, StepLogger, current_run, new_trace_id
from motia.runtime.cron import CronJob, CronScheduler
from motia.runtime.dead_letter_notice import DeadLetterHook
from motia.runtime.dead_letters import DeadLetters
from motia.runtime.delivery import DeliveryOptions, DeliveryWorker
from motia.runtime.events import StateEventHub
from motia.runtime.http import build_asgi
from motia.runtime.queue import (
    EnqueueScope,
    QueueRouter,
    bind_app,
    strict_topics_from_env,
    unbind_app,
)
from motia.runtime.stream_triggers import check_stream_triggers
from motia.runtime.streams.auth import Authenticate
from motia.runtime.streams.hub import StreamHub
from motia.runtime.streams.limits import StreamLimits
from motia.runtime.tasks import cancel_and_wait
from motia.runtime.types import CronInput, TriggerFields, TriggerInfo
from motia.state.manager import StateManager
from motia.state.sync import SyncStateManager, bind_global, unbind_global
from motia.steps.definition import Step, handler_arity
from motia.steps.triggers import DEFAULT_IDEMPOTENCY_TTL, CronTrigger, Trigger, idempotency_setting
from motia.streams.config import StreamDefinition, StreamSubscription
from motia.streams.manager import StreamManager
from motia.streams.stream import Streams, bind_streams, unbind_streams

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

__all__ = ["HandlerExit", "MotiaApp", "new_trace_id"]

logger = logging.getLogger("motia.runtime")


class HandlerExit(Exception):
    """A ``def`` handler raised a ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit``...): carried back to the event loop as an ordinary failure of that
    run (the original is the ``__cause__``), because asyncio lets such exceptions stop the event loop or
    the awaiting coroutine rather than just fail one run."""


def _in_thread(context: contextvars.Context, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run a ``def`` handler in ``context`` on a pool thread; a non-``Exception`` becomes :class:`HandlerExit`."""
    try:
        return context.run(fn, *args)
    except Exception:
        raise
    except BaseException as exc:
        raise HandlerExit(f"the handler raised {type(exc).__name__}: {exc}") from exc


class MotiaApp:
    """A set of steps served together over one state store.

    ``await startup()`` binds ``motia.stateManager`` and ``motia.enqueue`` to the store and starts the
    cron scheduler and the delivery worker (queue and state triggers, see ``motia.runtime.delivery``);
    ``await shutdown()`` stops them (letting runs finish within ``shutdown_timeout``), unbinds and,
    when the app opened the store from a URL, closes it. ``asgi`` is the Starlette application serving
    the HTTP triggers; its lifespan calls ``startup``/``shutdown``.

    ``delivery`` is ``True`` (options from the environment: ``DeliveryOptions.from_env()``), explicit
    ``DeliveryOptions``, or ``False`` to run no worker (messages and events then wait in the store).

    ``state`` is a ``StateManager`` (the caller keeps ownership) or a state URL (the app opens and
    closes it). ``def`` handlers run on a dedicated pool of ``handler_threads`` threads, so they
    never starve the threads the state backend may use.

    ``dev`` is development mode (``motia dev`` sets it): HTTP handlers' responses are checked against
    their trigger's ``response_schema`` (a mismatch answers 500 and is logged); off in production, where
    the check would cost every request.

    ``on_dead_letter`` is called with a record of each delivery that becomes a dead letter
    (:mod:`motia.runtime.dead_letter_notice`); ``dead_letters`` operates them (:class:`DeadLetters`).
    """

    def __init__(
        self,
        steps: Iterable[Step],
        *,
        state: StateManager | str,
        cron: bool = True,
        shutdown_timeout: float = 10.0,
        max_body_bytes: int = 10 * 1024 * 1024,
        handler_threads: int = 32,
        sweep_interval: float = 30.0,
        delivery: bool | DeliveryOptions = True,
        streams: Iterable[StreamDefinition] = (),
        stream_authenticate: Authenticate | None = None,
        stream_limits: StreamLimits | None = None,
        strict_topics: bool | None = None,
        idempotency: bool | Mapping[str, Any] | None = None,
        on_dead_letter: DeadLetterHook | None = None,
        dev: bool = False,
    ) -> None:
        self.steps = list(steps)
        self.dev = dev
        #: The retention of ``Idempotency-Key`` answers on HTTP routes that do not choose (``None``: off);
        #: ``http(..., idempotency=...)`` decides per route (runtime/idempotency.py).
        setting = idempotency_setting(idempotency, "MotiaApp")
        self.idempotency: float | None = setting if isinstance(setting, float) else None
        #: Refuse messages nobody subscribes to instead of keeping them as dead letters (``None``: from
        #: ``MOTIA_STRICT_TOPICS``, whose bad values raise ``ConfigError`` here, at start).
        self.strict_topics = strict_topics_from_env() if strict_topics is None else strict_topics
        if on_dead_letter is not None and not callable(on_dead_letter):
            raise ConfigError(f"on_dead_letter must be callable, not {type(on_dead_letter).__name__}")
        #: Called with a record of each delivery that becomes a dead letter (``motia_config.on_dead_letter``).
        self.on_dead_letter = on_dead_letter
        check_steps(self.steps)
        if isinstance(state, str):
            self.state: StateManager = StateManager.from_url(state)
            self._owns_state = True
        else:
            self.state = state
            self._owns_state = False
        #: The app's declared streams, on its state backend (``ctx.streams``; ``Stream`` objects while bound).
        self.streams = StreamManager(self.state.backend, streams, max_value_bytes=self.state.max_value_bytes)
        self._streams_token: object | None = None
        #: ``ctx.streams`` of every run (immutable: one per app and loop, not one per run).
        self._ctx_streams = Streams(self.streams)
        #: The stream server's hub (started by the first subscriber) and ``motia_config.stream_authenticate``.
        #: The stream server's limits (``MOTIA_STREAM_*`` variables unless given).
        self.stream_limits = StreamLimits.from_env() if stream_limits is None else stream_limits
        self.stream_hub = StreamHub(
            self.streams,
            context_factory=self.stream_context,
            queue_limit=self.stream_limits.queue_limit,
            queue_bytes=self.stream_limits.queue_bytes,
            max_subscriptions=self.stream_limits.max_subscriptions,
        )
        self.stream_authenticate = stream_authenticate
        self.sync_state: SyncStateManager | None = None
        #: The app's topics and their subscribers (``ctx.enqueue`` sends through it).
        self.queues = QueueRouter(
            self.steps, self.state, strict=self.strict_topics, id_retention=self.idempotency or DEFAULT_IDEMPOTENCY_TTL
        )
        self.delivery_options: DeliveryOptions | None = (
            DeliveryOptions.from_env() if delivery is True else delivery if delivery else None
        )
        #: The running delivery worker (``None`` before startup or with ``delivery=False``).
        self.delivery: DeliveryWorker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._enqueue_token: object | None = None
        self.cron_enabled = cron
        self.shutdown_timeout = shutdown_timeout
        self.max_body_bytes = max_body_bytes
        self._handler_threads = handler_threads
        self.sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        #: The telemetry this app started (``OTEL_*``, see runtime/observe.py) and its store gauges.
        self._telemetry: observe.Telemetry | None = None
        self._store_watch: observe.StoreWatch | None = None
        self._gauges: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._scheduler: CronScheduler | None = None
        self._bind_token: Any = None
        self._asgi: Starlette | None = None
        self._arity_cache: dict[Any, int] = {}
        #: Live state events for the console feed (``motia.runtime.events``).
        self.state_events = StateEventHub()
        self.started = False

    @property
    def dead_letters(self) -> DeadLetters:
        """Operate the app store's dead letters and pending deliveries: list, get, redrive, purge."""
        return DeadLetters(self.state.backend)

    @property
    def asgi(self) -> Starlette:
        if self._asgi is None:
            self._asgi = build_asgi(self)
        return self._asgi

    async def startup(self) -> None:
        """Bind the globals and start the background work; on any failure undo all of it and re-raise.

        A failed startup leaves nothing behind (issue 11, #10): ``motia.stateManager`` and
        ``motia.enqueue`` are unbound again, the handler pool and every task started are stopped. The
        store stays open (the caller's, or the app's own until :meth:`aclose`).
        """
        if self.started:
            return
        self.started = True  # from here on, shutdown() has something to undo
        try:
            await self._start()
        except BaseException:
            logger.error("start-up failed: undoing what it started")
            await self._stop(close_state=False)
            raise

    async def _start(self) -> None:
        if self.delivery_options is not None:  # only an app that runs triggers needs their streams declared
            check_stream_triggers(self.steps, self.streams.definitions)
        loop = self._loop = asyncio.get_running_loop()
        self._ctx_streams = Streams(self.streams, loop)
        self._telemetry = observe.start_from_env()  # before anything runs, so every run is traced
        telemetry = observe.active
        if telemetry is not None:
            self._store_watch = telemetry.watch_store(self.state.backend, [step.name for step in self.steps])
            if self._store_watch is not None:
                self._gauges = asyncio.create_task(self._refresh_gauges(self._store_watch), name="motia-store-gauges")
        self._executor = ThreadPoolExecutor(self._handler_threads, thread_name_prefix="motia-handler")
        self.sync_state = SyncStateManager(self.state, loop=loop)
        self._bind_token = bind_global(self.state, loop)
        self._streams_token = bind_streams(self.streams, loop)
        self._enqueue_token = bind_app(self.queues, loop)
        fate = "refused (strict topics)" if self.strict_topics else "kept as dead letters"
        for name, topic in self.queues.unsubscribed_topics():
            logger.warning(
                "step %r declares it enqueues to %r, but no step subscribes to that topic: its messages will be %s",
                name,
                topic,
                fate,
            )
        if self.delivery_options is not None:
            self.delivery = DeliveryWorker(self, self.delivery_options)
            await self.delivery.start()
        if self.cron_enabled:
            jobs = self.cron_jobs()
            if jobs:
                # Every instance on this store schedules every tick; the claim lets exactly one run it, and
                # the job's lease keeps a run from starting while another instance still runs the job.
                backend = self.state.backend
                self._scheduler = CronScheduler(jobs, claim=backend.claim_tick, leases=backend)
                self._scheduler.start()
        if self.sweep_interval > 0:
            self._sweeper = asyncio.create_task(self._sweep_expired(), name="motia-ttl-sweeper")

    def cron_jobs(self) -> list[CronJob]:
        """One job per cron trigger of the app's steps, each running its step as the scheduler would.

        Named after the step (``step#i`` when it has several); keyed ``cron:<step>:<i>`` in tick claims.
        """
        return [
            CronJob(
                f"{step.name}#{i}" if len(step.cron_triggers) > 1 else step.name,
                trig.expression,
                functools.partial(self._run_cron, step, trig),
                key=f"cron:{step.name}:{i}",
            )
            for step in self.steps
            for i, trig in enumerate(step.cron_triggers)
        ]

    async def _sweep_expired(self) -> None:
        """Remove expired keys from storage now and then (reads already ignore them).

        Writes sweep a few as they go; this covers a store that only expires and is never written. Any
        error is logged and the sweep tried again next interval: this loop never dies (issue 11, #4).
        """
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                removed = await self.state.purge_expired()
            except Exception:
                logger.exception("sweeping expired state keys failed; retrying in %.0f s", self.sweep_interval)
            else:
                if removed:
                    logger.debug("swept %d expired state key(s)", removed)

    async def _refresh_gauges(self, watch: observe.StoreWatch) -> None:
        """Read the store's pending deliveries and dead letters for the metrics now and then (a metric
        reader never queries the store itself). Errors are logged; the loop goes on."""
        from motia.runtime.telemetry.metrics import STORE_GAUGE_INTERVAL

        while True:
            try:
                await watch.refresh()
            except Exception:
                logger.exception("reading the store for the delivery gauges failed; retrying later")
            await asyncio.sleep(STORE_GAUGE_INTERVAL)

    async def shutdown(self) -> None:
        """Stop the background work (runs get ``shutdown_timeout`` to finish), unbind the globals and close
        the store when the app opened it. Every step runs even if an earlier one fails (a task that died,
        a store that errors on close); each failure is logged with its traceback."""
        if not self.started:
            return
        await self._stop(close_state=self._owns_state)

    async def _stop(self, *, close_state: bool) -> None:
        self.started = False
        sweeper, self._sweeper = self._sweeper, None
        await cancel_and_wait(sweeper, "shutdown: the expired-key sweeper")
        gauges, self._gauges = self._gauges, None
        await cancel_and_wait(gauges, "shutdown: the store gauges")
        stopping: list[tuple[str, Awaitable[None]]] = []
        if self._scheduler is not None:
            stopping.append(("the cron scheduler", self._scheduler.stop(self.shutdown_timeout)))
            self._scheduler = None
        if self.delivery is not None:
            stopping.append(("the delivery worker", self.delivery.stop(self.shutdown_timeout)))
            self.delivery = None
        # Both wait for their runs at once, within one timeout; one failing does not stop the other.
        results = await asyncio.gather(*(work for _, work in stopping), return_exceptions=True)
        for (what, _), result in zip(stopping, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("shutdown: stopping %s failed", what, exc_info=result)
        if self._enqueue_token is not None:
            unbind_app(self._enqueue_token)
            self._enqueue_token = None
        if self._executor is not None:
            # Threads still running a handler cannot be interrupted; do not block shutdown on them.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._bind_token is not None:
            unbind_global(self._bind_token)
            self._bind_token = None
        if self._streams_token is not None:
            unbind_streams(self._streams_token)
            self._streams_token = None
        await self.stream_hub.close()
        if self._store_watch is not None:
            self._store_watch.close()
            self._store_watch = None
        if self._telemetry is not None:  # after the runs: their spans are flushed
            telemetry, self._telemetry = self._telemetry, None
            try:
                observe.stop(telemetry)
            except Exception:
                logger.exception("shutdown: stopping the telemetry failed")
        if close_state:
            try:
                await self.state.aclose()
            except Exception:
                logger.exception("shutdown: closing the state store failed")
            else:
                logger.info("state store closed")

    def context(
        self, step: Step, trigger: TriggerInfo | TriggerFields, trace_id: str | None, *, delivery_id: str | None = None
    ) -> FlowContext:
        """The ``ctx`` for one run of ``step``: sync state and enqueue for ``def`` handlers, async for
        ``async def``. ``delivery_id`` (queue and state runs) makes the run's message ids deterministic;
        ``trigger`` may be the fields of its ``TriggerInfo`` (``ctx.trigger`` builds it when read), ``trace_id``
        ``None`` (a fresh one, drawn when read)."""
        blocking = not step.is_async and self.sync_state is not None
        state: Any = self.sync_state if blocking else self.state
        # A positional call: one per run, and CPython packs keyword arguments of a class call in a dict. The
        # logger and the EnqueueScope are made by the ctx if the run uses them.
        return FlowContext(
            state,
            None,
            trace_id,
            trigger,
            step.config.name,  # `step.name` without its property's call
            None,
            self._ctx_streams,
            None,
            self._loop,
            (EnqueueScope, self.queues, delivery_id, blocking),
        )

    def stream_context(
        self, definition: StreamDefinition | None, subscription: StreamSubscription | None, is_async: bool
    ) -> FlowContext:
        """The ``ctx`` of a stream's ``on_join``/``on_leave`` hook, or (``definition`` ``None``) of a
        two-argument ``stream_authenticate``; blocking state for a ``def`` hook, which runs in a worker thread."""
        trace_id = new_trace_id()
        name = "stream:auth" if definition is None else f"stream:{definition.name}"
        blocking = not is_async and self.sync_state is not None
        return FlowContext(
            state=self.sync_state if blocking else self.state,
            logger=StepLogger(name, trace_id),
            trace_id=trace_id,
            trigger=TriggerInfo(type="stream"),
            step=name,
            streams=Streams(self.streams, self._loop),
            loop=self._loop,
        )

    def stream_routes(self) -> list[BaseRoute]:
        """The stream routes: SSE (``/__motia/streams/{stream}/{group}[/{id}]``) and WebSocket (``/`` and
        ``/__motia/streams``)."""
        from motia.runtime.streams.auth import mask_tokens_in_server_logs
        from motia.runtime.streams.hooks import is_async_hook
        from motia.runtime.streams.sse import EventStreamEndpoint, sse_routes
        from motia.runtime.streams.websocket import StreamEndpoint, stream_routes

        mask_tokens_in_server_logs()

        async def hub_of() -> StreamHub:
            if not self.started:  # shut down (or not started): never restart the hub on a stopped store
                raise MotiaError("the app is not running")
            return await self.stream_hub.ensure_started()

        def authenticate_hook() -> Authenticate | None:
            return self.stream_authenticate

        def auth_context() -> FlowContext:
            hook = self.stream_authenticate
            return self.stream_context(None, None, hook is not None and is_async_hook(hook))

        return [
            *sse_routes(EventStreamEndpoint(hub_of, authenticate_hook, auth_context=auth_context)),
            *stream_routes(
                StreamEndpoint(
                    hub_of,
                    authenticate_hook,
                    auth_context=auth_context,
                    max_frame_bytes=self.stream_limits.max_frame_bytes,
                )
            ),
        ]

    def async_view(self, ctx: FlowContext) -> FlowContext:
        """``ctx`` with the async store and enqueue, for conditions and middleware (always ``async``-capable code)."""
        enqueuer = ctx.enqueuer.async_view() if isinstance(ctx.enqueuer, EnqueueScope) else ctx.enqueuer
        if ctx.state is self.state and enqueuer is ctx.enqueuer:
            return ctx
        return FlowContext(
            state=self.state,
            logger=ctx.logger,
            trace_id=ctx.trace_id,
            trigger=ctx._trigger,  # not built if nobody reads it
            step=ctx.step,
            enqueuer=enqueuer,
            streams=ctx.streams,
            input_value=ctx.input_value,
            loop=self._loop,
        )

    async def call(self, fn: Callable[..., Any], arity: int, is_async: bool, *args: Any) -> Any:
        """Call ``fn`` with the first ``arity`` of ``args``; ``def`` functions run in the handler pool."""
        args = args[:arity]
        if is_async:
            result = fn(*args)
        else:
            if self._executor is None:
                raise RuntimeError("MotiaApp.startup() has not run")
            ctx = contextvars.copy_context()
            result = await asyncio.get_running_loop().run_in_executor(self._executor, _in_thread, ctx, fn, args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def invoke(self, step: Step, input: Any, ctx: FlowContext) -> Any:  # noqa: A002
        # `motia.enqueue` and `motia.logger` inside the handler are its ctx's (def handlers inherit the variable).
        token = current_run.set(ctx)
        ctx.input_value = input  # what ctx.get_data() and ctx.match() read
        try:
            if step.is_async:  # what call() does for it, one coroutine fewer on every request
                arity = step.arity
                result = step.handler(input, ctx) if arity == 2 else step.handler(*(input, ctx)[:arity])
                # An `async def` handler's coroutine, known without inspect's Python call (issue 15).
                return (await result) if type(result) is _Coroutine or inspect.isawaitable(result) else result
            return await self.call(step.handler, step.arity, step.is_async, input, ctx)
        finally:
            current_run.reset(token)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every state event and queue message for this app's steps has been handled (or
        dead-lettered); for tests and benchmarks. Raises ``TimeoutError`` after ``timeout`` seconds."""
        if self.delivery is None:
            raise RuntimeError("drain() needs a started app with delivery enabled")
        await self.delivery.drain(timeout)

    async def condition_passes(self, trigger: Trigger, input: Any, ctx: FlowContext) -> bool:  # noqa: A002
        """Evaluate the trigger's ``condition(input, ctx)`` (sync or async); no condition means yes.

        Sync conditions run on the event loop: keep them to cheap checks of the input. Conditions always
        see the async ``ctx.state``, whatever kind of handler the step has.
        """
        cond = trigger.condition
        if cond is None:
            return True
        ctx = self.async_view(ctx)
        arity = self._arity_cache.get(cond)
        if arity is None:
            arity = self._arity_cache[cond] = handler_arity(cond)
        result = cond(*(input, ctx)[:arity])
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    async def _run_cron(self, step: Step, trigger: CronTrigger, scheduled_at: datetime) -> None:
        info = TriggerInfo(type="cron", expression=trigger.expression)
        telemetry = observe.active
        if telemetry is None:
            await self._cron_run(step, trigger, scheduled_at, info, new_trace_id())
            return
        with telemetry.run(step.name, info, None, None) as trace_id:
            await self._cron_run(step, trigger, scheduled_at, info, trace_id)

    async def _cron_run(
        self, step: Step, trigger: CronTrigger, scheduled_at: datetime, info: TriggerInfo, trace_id: str
    ) -> None:
        ctx = self.context(step, info, trace_id)
        cron_input = CronInput(expression=trigger.expression, scheduled_at=scheduled_at)
        try:
            if not await self.condition_passes(trigger, cron_input, ctx):
                ctx.logger.debug("cron run skipped: condition is false")
                return
            await self.invoke(step, cron_input, ctx)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # even KeyboardInterrupt/SystemExit/GeneratorExit of a handler fail this run only
            # A failing run must not stop the schedule: log it with its traceback and wait for the next tick.
            ctx.logger.exception("cron run failed", {"scheduled_at": scheduled_at.isoformat()})
            observe.failed(exc)


def check_steps(steps: list[Step]) -> None:
    """Reject duplicate step names and duplicate HTTP routes (the loader does the same, naming files)."""
    names: dict[str, Step] = {}
    routes: dict[tuple[str, str], Step] = {}
    for step in steps:
        if not isinstance(step, Step):
            raise StepLoadError(f"{step!r} is not a Step")
        if step.name in names:
            raise StepLoadError(f"duplicate step name {step.name!r}")
        names[step.name] = step
        for trig in step.http_triggers:
            if trig.route_key in routes:
                other = routes[trig.route_key].name
                raise StepLoadError(f"duplicate route {trig.method} {trig.path}: steps {other!r} and {step.name!r}")
            routes[trig.route_key] = step
