"""The runtime: the composition root.

:meth:`Runtime.open` opens the store and builds, explicitly and in order, the tracer, the
queue service, state, streams, cron and the boundary that runs handlers, handing each what it
needs (``invoke=``, ``on_change=``, ``log=``). :meth:`Runtime.serve` runs the services in one
trio nursery. Services never import this module and never set attributes on the runtime; what
the runtime sets on a service after building it is listed in docs/architecture.md.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import msgspec
import trio

from ._boundary import Boundary, HandlerError, Host, Skipped, maybe_await
from ._cron import CronJob, CronSchedule, serve_cron
from ._loops import Pending, Ready, in_async, invoked_from_thread, thread_run, track
from ._legacy import LegacyState
from ._state import StateEvent, StateStore
from .context import Context
from .errors import EnqueueError
from .queues import QueueService
from .steps import compile_trigger_schemas
from .store import Store
from .streams import StreamEvent, Streams
from .tracing import Tracer, new_id

__all__ = ["Runtime", "Skipped", "HandlerError", "maybe_await"]


def _gave_up(name: str, fate: str) -> str:
    """What a sync handler's ``ctx.invoke`` raises once its own caller stopped waiting."""
    return (f"ctx.invoke({name!r}): the caller of this handler stopped waiting for it (its timeout, "
            f"or the runtime stopping); the callee {fate}")


class _TracerLogger:
    """The few ``logging.Logger`` methods the cron loop calls, routed to the tracer."""

    def __init__(self, tracer):
        self._tracer = tracer

    def _log(self, level, msg, *args, exc_info=False, **_):
        text = msg % args if args else msg
        error = sys.exc_info()[1] if exc_info else None
        if error is not None:
            self._tracer.exception(text, error)
        else:
            self._tracer.log(level, text)

    def debug(self, msg, *args, **kw):
        self._log("debug", msg, *args, **kw)

    def info(self, msg, *args, **kw):
        self._log("info", msg, *args, **kw)

    def warning(self, msg, *args, **kw):
        self._log("warn", msg, *args, **kw)

    def error(self, msg, *args, **kw):
        self._log("error", msg, *args, **kw)

    def exception(self, msg, *args, **kw):
        self._log("error", msg, *args, exc_info=True)


class Runtime:
    """Per-run state that ``ctx`` reaches. Build with :meth:`open`, run with :meth:`serve`.

    Args:
        settings, discovery: what to run.
        store, tracer: opened by :meth:`open`.
        wall_clock: seconds since the epoch (queues' due times); tests drive it.
        queue_window: messages per subscription held in memory.
    """

    def __init__(self, settings, discovery, store: Store, tracer: Tracer, *,
                 wall_clock: Callable[[], float] = time.time, queue_window: int | None = None):
        self.settings = settings
        self.discovery = discovery
        self.store = store
        self.tracer = tracer
        store.on_hook_error = lambda message, exc: tracer.exception(message, exc)
        store.on_notice = lambda level, message: tracer.log(level, message)
        self.steps = {step.name: step for step in discovery.steps}
        #: (step name, trigger index) -> the trigger's compiled schema (compiled at discovery; a
        #: Step built by hand, as tests do, has its schemas compiled here)
        self.schemas: dict[tuple[str, int], Any] = {
            (step.name, index): schema for step in discovery.steps
            for index, schema in (step.schemas or compile_trigger_schemas(step.triggers, step.file)).items()}
        self.boundary = Boundary(self, threads=getattr(settings, "threads", 4))
        options = {} if queue_window is None else {"window": queue_window}
        self.queues = QueueService(
            store, discovery.steps, schema_for=self.schema_for, invoke=self.boundary.invoke,
            run_for=self.boundary.run_for,
            skipped=Skipped, failed=HandlerError, tracer=tracer, wall_clock=wall_clock,
            trigger_inputs={"stream": StreamEvent, "state": StateEvent}, **options,
        )
        self.state = StateStore(store, on_change=self.queues.on_state_change)
        #: ``ctx.state`` for steps written for Motia's 0.x runtime (0.x's answers, edge._legacy).
        self.legacy_state = LegacyState(self.state)
        self.streams = Streams(
            store, discovery.streams, on_change=self.queues.on_stream_change,
            triggered={t.stream_name for step in discovery.steps for t in step.triggers if t.type == "stream"},
        )
        self.cron_jobs, self._cron_targets = self._cron_jobs()
        self.started = time.time()
        self.stopping = False

    @classmethod
    def open(cls, settings, discovery, *, out=None, **options) -> "Runtime":
        exporter = None
        if settings.otlp_endpoint:  # before the store: a missing exporter package is a ConfigError
            from ._otlp import OTLPExport

            service = os.environ.get("OTEL_SERVICE_NAME") or Path(settings.dir).resolve().name or "edge"
            exporter = OTLPExport(settings.otlp_endpoint, service, log=lambda level, msg: tracer.log(level, msg))
        store = Store.open(settings.data_dir, settings.durability)
        tracer = Tracer(store, mode=settings.mode, out=out, level=settings.log_level)
        tracer.exporter = exporter
        return cls(settings, discovery, store, tracer, **options)

    def schema_for(self, step, trigger):
        return self.schemas.get((step.name, trigger.index))

    # -- what ctx calls ---------------------------------------------------------------------

    async def invoke(self, step, trigger, input: Any, *, trace_id: str, **kw) -> tuple[Any, Context]:
        """Run one handler through the boundary (see :meth:`edge._boundary.Boundary.invoke`)."""
        return await self.boundary.invoke(step, trigger, input, trace_id=trace_id, **kw)

    async def invoke_step(self, ctx: Context, name: str, input: Any) -> Any:
        """``ctx.invoke``: run another step's handler in the caller's trace and outbox; the
        callee sees its first trigger as ``ctx.trigger``."""
        step = self.steps.get(name)
        if step is None:
            raise EnqueueError(f"ctx.invoke: no step named {name!r}; known steps: {', '.join(sorted(self.steps))}")
        trigger = step.triggers[0] if step.triggers else None
        child = Context(self, step, trigger, ctx.trace_id, input=input, outbox=ctx.outbox, caller=ctx)
        result, _ = await self.boundary.invoke(step, None, input, trace_id=ctx.trace_id,
                                               parent=ctx.span_id, ctx=child)
        return result

    def call_step(self, ctx: Context, name: str, input: Any) -> Any:
        """``ctx.invoke`` as the caller can take it: awaitable in async code; in a sync
        handler's thread, the result (the callee runs on its loop while the thread waits)."""
        if in_async():
            return self.invoke_step(ctx, name, input)
        host = self.boundary.host
        if host is None:
            raise RuntimeError("ctx.invoke from a thread needs the server running")
        run = thread_run.get()
        if run is not None and run.given_up:
            raise TimeoutError(_gave_up(name, "was not started"))
        token = invoked_from_thread.set(True)  # the callee's task starts from this context
        try:
            return host.await_blocking(self.invoke_step, ctx, name, input, run=run)
        except concurrent.futures.CancelledError:
            if run is None or not run.given_up:
                raise
            raise TimeoutError(_gave_up(name, "was cancelled")) from None
        finally:
            invoked_from_thread.reset(token)

    def publish(self, out) -> Any:
        """Commit one prepared enqueue now (HTTP, cron, the runtime's own calls): awaitable in
        async code, blocking in a sync handler's thread; durable when it returns."""
        if in_async():
            done = self.queues.submit([out])
            if done is None:
                return Ready(None)
            track(done)
            return Pending(done)
        host = self.boundary.host
        if host is None:
            raise EnqueueError("ctx.enqueue from a thread needs the server running")
        done = host.call_blocking(self.queues.submit, [out])
        if done is not None:
            done.wait_blocking()
        return None

    async def commit_outbox(self, ctx: Context) -> None:
        """Make a queued invocation's enqueues durable when it has no message to ack."""
        if ctx.outbox:
            await self.queues.commit(ctx.outbox)
            ctx.outbox.clear()

    # -- cron -------------------------------------------------------------------------------

    def _cron_jobs(self):
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
        return jobs, targets

    def _load_last(self, key: str):
        raw = self.store.read(lambda t: t.get("cron", key.encode()))
        return None if raw is None else datetime.fromtimestamp(msgspec.msgpack.decode(raw), timezone.utc)

    async def _save_last(self, key: str, slot) -> None:
        packed = msgspec.msgpack.encode(slot.timestamp())
        await self.store.write(lambda t: t.put("cron", key.encode(), packed))

    async def _fire(self, job, slot) -> None:
        step, trigger = self._cron_targets[job.key]
        try:
            await self.boundary.invoke(step, trigger, None, trace_id=new_id(16))
        except (Skipped, HandlerError):
            pass  # logged with its span; the next slot runs as usual

    async def fire_cron(self, key: str, slot) -> None:
        """Fire one slot of the cron job ``key`` as the cron loop does: persist it, then run the
        step (failures are logged with its span). Hook (edge.testing drives cron with it)."""
        job = next(job for job in self.cron_jobs if job.key == key)
        await self._save_last(key, slot)
        await self._fire(job, slot)

    async def serve_cron(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await serve_cron(self.cron_jobs, dispatch=self._fire, load_last=self._load_last,
                         save_last=self._save_last, logger=_TracerLogger(self.tracer), task_status=task_status)

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self, *, host: Host | None = None, cron: bool = True,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start the writer and every service; run until cancelled; flush on the way out.

        Args:
            host: the asyncio loop handlers run on (the server passes it); None runs every
                handler in trio (in-process tests on a mock clock).
            cron: serve the cron loop; False (hook: edge.testing) leaves firing to
                :meth:`fire_cron`.
        """
        self.store.start_writer(notify=host.loop.call_soon_threadsafe if host is not None else None)
        try:
            async with trio.open_nursery() as nursery:
                if host is not None:
                    host.nursery = nursery
                    host.token = trio.lowlevel.current_trio_token()
                    self.boundary.host = host
                await nursery.start(self.tracer.serve_flush)
                if self.tracer.exporter is not None:
                    await nursery.start(self.tracer.exporter.serve)
                await nursery.start(self.queues.serve)
                for name, n in self.streams.left_behind().items():  # said once, like orphaned messages
                    self.tracer.log("warn", f'{n} stored item(s) of stream "{name}" belong to no stream of the '
                                            f"project any more (renamed or removed?); they are kept, and a stream "
                                            f'named "{name}" sees them again')
                if self.cron_jobs and cron:
                    await nursery.start(self.serve_cron)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.boundary.host = None
            self.tracer.flush()

    def close(self) -> None:
        self.boundary.close()
        if self.tracer.exporter is not None:
            self.tracer.exporter.close()
        self.store.close()

    def health(self) -> dict:
        out = {
            "status": "stopping" if self.stopping else "ok",
            "uptime_s": round(time.time() - self.started, 3),
            "steps": len(self.steps),
            "store": self.store.info(),
            "queues": self.queues.health(),
        }
        if self.streams.streams:
            out["streams"] = self.streams.health()
        if self.tracer.exporter is not None:
            out["otlp"] = self.tracer.exporter.stats()
        return out
