"""The runtime: the store, the discovered steps, ``invoke`` (one handler run, one span) and the
services that trigger steps, all started in one nursery.

Trigger services (HTTP, queues, cron, state, streams) receive the runtime's ``invoke``; they
never import this module.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import trio

from .context import Context
from .errors import EnqueueError, Retry
from .schema import compile_schema
from .state import StateStore
from .store import Store
from .streams import Streams
from .tracing import Span, Tracer, current_trace_id, new_id

__all__ = ["Runtime", "Skipped", "HandlerError"]


class Skipped(Exception):
    """A trigger's condition returned false: the handler did not run."""


class HandlerError(Exception):
    """A handler raised; ``error_id`` ties the response or DLQ entry to the logged traceback."""

    def __init__(self, original: BaseException, error_id: str):
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original
        self.error_id = error_id


async def maybe_await(value):
    if inspect.isawaitable(value):
        return await value
    return value


class _TracerLogger:
    """The few ``logging.Logger`` methods the cron loop calls, routed to the tracer."""

    def __init__(self, tracer):
        self._tracer = tracer

    def _log(self, level, msg, *args, **_):
        self._tracer.log(level, msg % args if args else msg)

    def debug(self, msg, *args, **kw):
        self._log("debug", msg, *args)

    def info(self, msg, *args, **kw):
        self._log("info", msg, *args)

    def warning(self, msg, *args, **kw):
        self._log("warn", msg, *args)

    def error(self, msg, *args, **kw):
        self._log("error", msg, *args)

    def exception(self, msg, *args, **kw):
        self._log("error", msg, *args)


class Runtime:
    """Per-run state that ``ctx`` reaches. Build with :meth:`open`, run with :meth:`serve`."""

    def __init__(self, settings, discovery, store: Store, tracer: Tracer):
        self.settings = settings
        self.discovery = discovery
        self.store = store
        self.tracer = tracer
        self.steps = {step.name: step for step in discovery.steps}
        self.schemas: dict[tuple[str, int], Any] = {}
        for step in discovery.steps:
            for trigger in step.triggers:
                spec = getattr(trigger, "body_schema", None) or getattr(trigger, "input", None)
                if spec is not None:
                    self.schemas[(step.name, trigger.index)] = compile_schema(
                        spec, where=f"{step.file}: triggers[{trigger.index}]"
                    )
        self.state = StateStore(store, on_change=self._on_state_change)
        #: The queue service sets itself here when attached (edge.queues.attach).
        self.queues = None
        self.streams = Streams(
            store, discovery.streams, on_change=self._on_stream_change,
            triggered={t.stream_name for step in discovery.steps for t in step.triggers if t.type == "stream"},
        )
        self.started = time.time()
        self.stopping = False
        self._services: list = []

    @classmethod
    def open(cls, settings, discovery, *, out=None) -> "Runtime":
        store = Store.open(settings.data_dir, settings.durability)
        tracer = Tracer(store, mode=settings.mode, out=out, level=settings.log_level)
        return cls(settings, discovery, store, tracer)

    def schema_for(self, step, trigger):
        return self.schemas.get((step.name, trigger.index))

    # -- running handlers -----------------------------------------------------------------

    async def invoke(self, step, trigger, input: Any, *, trace_id: str, parent: str | None = None,
                     ctx: Context | None = None, handler=None) -> tuple[Any, Context]:
        """Run ``step``'s handler for ``trigger`` once, recording a span.

        Returns:
            ``(result, ctx)``; ``ctx.outbox`` holds what the handler enqueued (not yet committed).
        Raises:
            Skipped: the trigger's condition was false.
            HandlerError: the handler (or its condition) raised; already logged with its id.
        """
        from .steps import call_handler

        span_id = new_id()
        if ctx is None:
            ctx = Context(self, step, trigger, trace_id, span_id)
        else:
            ctx.span_id = span_id  # a ctx.invoke child: its own invokes name this span as parent
        start = time.time()
        t0 = time.perf_counter()
        status, error, error_id = "ok", None, None
        trace_token = current_trace_id.set(trace_id)
        try:
            condition = getattr(trigger, "condition", None)
            if condition is not None and not await maybe_await(condition(input, ctx)):
                status = "skipped"
                raise Skipped()
            if handler is not None:
                result = await handler(ctx)
            else:
                result = await call_handler(step, input, ctx)
            return result, ctx
        except (Skipped, trio.Cancelled):
            if status != "skipped":
                status, error = "error", "cancelled"
            raise
        except HandlerError:
            status = "error"
            raise
        except Retry:  # raised on purpose (queue handlers): not an error, not logged
            status, error = "retry", "Retry"
            raise
        except Exception as exc:
            status, error_id = "error", new_id(6)
            error = f"{type(exc).__name__}: {exc}"
            self.tracer.exception(
                f"{step.name} failed: {type(exc).__name__} (error_id {error_id})", exc,
                trace_id=trace_id, step=step.name, flows=step.flows, data={"error_id": error_id},
            )
            raise HandlerError(exc, error_id) from exc
        finally:
            current_trace_id.reset(trace_token)
            self.tracer.record_span(Span(
                trace_id=trace_id, span_id=span_id, step=step.name,
                trigger=getattr(trigger, "type", "invoke"), start=start,
                duration_ms=round((time.perf_counter() - t0) * 1000, 3),
                status=status, error=error, error_id=error_id, parent=parent,
            ))

    async def invoke_step(self, ctx: Context, name: str, input: Any) -> Any:
        """``ctx.invoke``: run another step's handler in the caller's trace and outbox."""
        step = self.steps.get(name)
        if step is None:
            raise EnqueueError(f"ctx.invoke: no step named {name!r}; known steps: {', '.join(sorted(self.steps))}")
        trigger = step.triggers[0] if step.triggers else None
        child = Context(self, step, trigger, ctx.trace_id)
        child.outbox = ctx.outbox  # the callee's enqueues commit or vanish with the caller's
        result, _ = await self.invoke(step, None, input, trace_id=ctx.trace_id, parent=ctx.span_id, ctx=child)
        return result

    # -- enqueue (the queue service fills these in) -----------------------------------------

    def enqueue_from(self, ctx: Context, event: dict) -> None:
        if self.queues is None:
            raise EnqueueError("ctx.enqueue: the queue service is not running")
        ctx.outbox.append(self.queues.prepare(ctx, event))

    async def commit_outbox(self, ctx: Context) -> None:
        """Make ``ctx``'s enqueues durable (for triggers that have no message to ack)."""
        if ctx.outbox:
            await self.queues.commit(ctx.outbox)
            ctx.outbox = []

    def streams_view(self, ctx):
        return self.streams.view(ctx)

    def _on_stream_change(self, txn, change) -> None:
        """Inside the write txn of a change to a stream some step listens to: store its triggers."""
        hook = getattr(self.queues, "on_stream_change", None)
        if hook is not None:
            hook(txn, change)

    def _on_state_change(self, txn, event_type, group, key, old, new, trace_id=None) -> None:
        hook = getattr(self.queues, "on_state_change", None)
        if hook is not None:
            hook(txn, event_type, group, key, old, new, trace_id=trace_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start the writer and every service; run until cancelled; flush on the way out."""
        self.store.start_writer()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.tracer.serve_flush)
                for service in self.services():
                    await nursery.start(service)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.tracer.flush()

    def services(self) -> list:
        """The ``serve_*`` callables to start: cron (when a step has a cron trigger) and
        whatever other layers registered with :meth:`add_service`."""
        services = list(self._services)
        cron = self._cron_service()
        if cron is not None:
            services.append(cron)
        return services

    def _cron_service(self):
        from datetime import datetime, timezone

        import msgspec

        from .cron import CronJob, CronSchedule, serve_cron

        jobs, targets = [], {}
        for step in self.steps.values():
            for trigger in step.triggers:
                if trigger.type != "cron":
                    continue
                key = f"{step.name}#{trigger.index}"
                schedule = CronSchedule.parse(trigger.expression, trigger.timezone,
                                              where=f"{step.file}: triggers[{trigger.index}]")
                jobs.append(CronJob(key, schedule, trigger.missed))
                targets[key] = (step, trigger)
        if not jobs:
            return None

        def load_last(key: str):
            raw = self.store.read(lambda t: t.get("cron", key.encode()))
            return None if raw is None else datetime.fromtimestamp(msgspec.msgpack.decode(raw), timezone.utc)

        async def save_last(key: str, slot) -> None:
            packed = msgspec.msgpack.encode(slot.timestamp())
            await self.store.write(lambda t: t.put("cron", key.encode(), packed))

        async def dispatch(job, slot) -> None:
            step, trigger = targets[job.key]
            try:
                _, ctx = await self.invoke(step, trigger, None, trace_id=new_id(16))
                await self.commit_outbox(ctx)
            except (Skipped, HandlerError):
                pass  # logged with its span; the next slot runs as usual

        async def serve(*, task_status=trio.TASK_STATUS_IGNORED):
            await serve_cron(jobs, dispatch=dispatch, load_last=load_last, save_last=save_last,
                             logger=_TracerLogger(self.tracer), task_status=task_status)

        return serve

    def add_service(self, serve_fn) -> None:
        self._services.append(serve_fn)

    def close(self) -> None:
        self.store.close()

    def health(self) -> dict:
        out = {
            "status": "stopping" if self.stopping else "ok",
            "uptime_s": round(time.time() - self.started, 3),
            "steps": len(self.steps),
            "store": self.store.info(),
        }
        if self.queues is not None:
            out["queues"] = self.queues.health()
        if self.streams.streams:
            out["streams"] = self.streams.health()
        return out
