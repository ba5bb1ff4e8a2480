"""The queue service: durable topics with fan-out, retries, dead letters, FIFO groups, delays.

How a message travels
---------------------
1. ``prepare`` (inside ``ctx.enqueue``) checks the topic against the step's ``enqueues``,
   validates the data against every subscriber's input schema and encodes one record per
   subscriber. Nothing is stored yet: the records wait in ``ctx.outbox``.
2. ``commit`` hands them to the :class:`~.committer.Committer`, which writes everything
   queued since its last commit (enqueues of every producer, acks, retries, dead letters) in
   ONE store transaction: one fsync. Producers resume once it is durable.
3. Each :class:`~.window.Subscription` reads its messages from LMDB in key (= commit) order
   into a bounded window; ``concurrency`` worker tasks take ready ones and run the handler
   through the injected ``invoke``.
4. Success: the message's delete and the handler's outbox go into the same commit. Failure:
   the record is rewritten with attempts+1 and the time of the next attempt; after
   ``maxRetries`` retries it moves to the dead-letter table, in one transaction.

Everything stored is delivered again after a crash (at least once): memory holds only a
window over LMDB, rebuilt at start.

This module does not import the runtime: ``invoke`` and the runtime's "condition was false"
and "handler failed" exception types are injected (the runtime, ``edge.runtime``, builds the service).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Iterable

import msgspec
import trio

from .._format import clip
from ..errors import EnqueueError, Retry, SchemaError, StorageFull
from ..schema import to_builtins
from ..steps import QueueConfig
from ..tracing import new_id
from . import records as R
from .committer import Committer
from .committer import Batch
from .enqueue import Outgoing, check_declared, encode_for, errors_line, parse_event
from .orphans import orphans_warning
from .records import DeadLetter, Message, backoff_delay, encode_dead, encode_message, encode_redriven
from .timers import Timers
from .window import WINDOW, Subscription, _Msg

__all__ = ["QueueService", "Outgoing", "NotFound", "BadRedrive", "HEAL_INTERVAL", "INTERNAL_TYPES", "unknown_step"]

#: Every so often each subscription looks at LMDB for messages it was not told about
#: (written by `edge emit` from another process) or could not ack (a failed commit; after a
#: full disk, once it has room again).
HEAL_INTERVAL = 5.0
#: Seconds between tries of the messages whose ack met a full disk, while the disk is short of
#: the free space that ends "full" but writes succeed again (``QueueService._heal``).
FULL_RETRY = 60.0
#: Trigger types whose invocations go through the queue machinery (SPEC 3.4): each such
#: trigger is an internal subscription named "@<type>:<index>" (not a topic users can use).
INTERNAL_TYPES = ("state", "stream")
#: Delivery settings of those: the queue defaults, FIFO per item (the staging caller passes
#: the item as the group), so the changes of one item reach the handler in order.
INTERNAL_CONFIG = QueueConfig(type="fifo")

_RETRY = "retry requested by the handler (Retry)"
#: Dead letters one redrive reads and moves per commit (it never holds them all at once).
REDRIVE_PAGE = 1000
#: Seconds a message waits when its handler met a full disk: not an attempt, never a dead letter.
STORAGE_FULL_WAIT = 5.0
_pack = msgspec.msgpack.Encoder().encode


class NotFound(EnqueueError):
    """A dead letter id that does not exist."""


class BadRedrive(EnqueueError):
    """A redrive ``--to`` a step that has no queue trigger, or whose topic is not clear."""


def _virtual_time() -> bool:
    """Whether trio runs on a test's clock (``trio.testing.MockClock``). Not imported to ask:
    ``trio.testing`` costs 8.8 MiB, and a clock of it exists only once something imported it."""
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)


def unknown_step(step: str, known) -> str:
    """What a redrive of a step with no dead letters and no queue trigger answers (a typo, or
    a renamed step whose dead letters were redriven already)."""
    which = f"steps that do: {', '.join(sorted(known))}" if known else "no step of this app has one"
    return (f"no dead letters of step {step!r}, and no step of that name has a queue trigger ({which}); "
            "`edge dlq list` shows whose dead letters there are")


class QueueService:
    """Durable topics for one runtime. ``serve`` runs the committer, timers and workers.

    Args:
        store: the :class:`~edge.store.Store`.
        steps: every discovered step; their queue (and state/stream) triggers become
            subscriptions.
        schema_for: ``fn(step, trigger) -> Schema | None`` (compiled input schemas).
        invoke: ``async fn(step, trigger, input, *, trace_id, limit) -> (result, ctx)`` (raises
            TimeoutError past ``limit`` seconds); None for a service that only enqueues (the CLI).
        run_for: ``async fn(step, trigger, coro_fn, *args)`` that runs ``coro_fn(*args)`` on the
            loop the step's handlers run on (default: right here).
        skipped, failed: the exception types ``invoke`` raises for a false condition and for
            a failed handler (``failed`` has ``error_id`` and ``original``).
        tracer: for log lines (None: silent).
        wall_clock: seconds since the epoch; due times on disk are wall-clock (they survive
            a restart), waits in memory use trio's clock.
        window: messages per subscription held in memory.
        trigger_inputs: ``{"stream": fn(data) -> event, ...}`` builds a state/stream trigger's
            input from what was stored.
    """

    def __init__(self, store, steps: Iterable, *, schema_for: Callable | None = None, invoke=None,
                 run_for=None, skipped: type | tuple = (), failed: type | tuple = (), tracer=None,
                 wall_clock: Callable[[], float] = time.time, window: int = WINDOW,
                 trigger_inputs: dict[str, Callable] | None = None):
        self.store = store
        self.tracer = tracer
        #: What each delivery calls (``invoke`` above); edge.testing wraps it to see timeouts.
        self.invoke = invoke
        self._run_for = run_for or _here
        self._skipped = skipped
        self._failed = failed
        self._wall = wall_clock
        self.timers = Timers(on_error=self._internal_error)
        self.committer = Committer(store, lambda level, msg: self._log(level, msg))
        if schema_for is None:
            from ..schema import compile_schema

            def schema_for(step, trigger):
                return compile_schema(trigger.input, where=f"{step.file}: triggers[{trigger.index}].input")

        trigger_inputs = trigger_inputs or {}
        wanted = []  # (step, trigger, topic, config, schema, make_input)
        for step in steps:
            seen = set()
            for trigger in step.triggers:
                if trigger.type in INTERNAL_TYPES:
                    wanted.append((step, trigger, f"@{trigger.type}:{trigger.index}", INTERNAL_CONFIG, None,
                                   trigger_inputs.get(trigger.type)))
                elif trigger.type == "queue" and trigger.topic in seen:
                    self._log("warn", f'{step.file}: triggers[{trigger.index}]: step "{step.name}" already '
                                      f'subscribes to "{trigger.topic}"; this trigger is ignored', step=step.name)
                elif trigger.type == "queue":
                    seen.add(trigger.topic)
                    wanted.append((step, trigger, trigger.topic, trigger.config, schema_for(step, trigger), None))
        ids = store.write_sync(lambda t: R.register_subscriptions(t, [(w[0].name, w[2]) for w in wanted]))
        self.subscriptions: list[Subscription] = [
            Subscription(ids[(step.name, topic)], step, trigger, topic, config, schema, store=store,
                         timers=self.timers, now_ms=self._now_ms, window=window, make_input=make_input)
            for step, trigger, topic, config, schema, make_input in wanted
        ]
        self.by_topic: dict[str, list[Subscription]] = {}
        self.by_name: dict[tuple[str, str], Subscription] = {}
        self._stream_subs: dict[str, list[Subscription]] = {}
        self._state_subs: list[Subscription] = []
        for sub in self.subscriptions:
            self.by_name[(sub.step.name, sub.topic)] = sub
            if sub.trigger.type == "queue":
                self.by_topic.setdefault(sub.topic, []).append(sub)
            elif sub.trigger.type == "stream":
                self._stream_subs.setdefault(sub.trigger.stream_name, []).append(sub)
            elif sub.trigger.type == "state":
                self._state_subs.append(sub)
        #: Hook (edge.testing): ``fn(out, data, group, trace_id)`` for every accepted enqueue.
        self.on_outgoing: Callable | None = None
        self.unrouted: dict[str, int] = {}
        self.orphaned: dict[str, int] = {}
        self._full_retry_at = -math.inf  # (trio's clock) see _heal
        self._serving = False

    def _log(self, level: str, msg: str, *, trace_id=None, step=None, data=None) -> None:
        if self.tracer is not None:
            self.tracer.log(level, msg, trace_id=trace_id, step=step, data=data)

    def _internal_error(self, message: str, exc: BaseException) -> None:
        if self.tracer is not None:
            self.tracer.exception(message, exc)

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    @property
    def topics(self) -> list[str]:
        return sorted(self.by_topic)

    def no_subscribers(self, topic: str, stored: str = "nothing was stored") -> str:
        """Why an emit to ``topic`` (which nobody subscribes to) was refused."""
        topics = ", ".join(f'"{t}"' for t in self.topics) or "none"
        return f'no step subscribes to topic "{clip(topic)}"; {stored} (topics with subscribers: {topics})'

    # -- enqueue --------------------------------------------------------------------------

    def prepare(self, ctx, event: Any) -> Outgoing:
        """``ctx.enqueue(event)``: check and encode; the caller puts the result in ctx.outbox.

        Raises:
            EnqueueError: a malformed event, or a topic the step did not declare.
            SchemaError: the data does not match a subscriber's input schema.
        """
        step = getattr(ctx, "step", None)
        topic, data, group = parse_event(event)
        check_declared(step, topic)
        return self.outgoing(topic, data, group, ctx.trace_id, step=step, parent=getattr(ctx, "span_id", None))

    def outgoing(self, topic: str, data: Any, group: str | None, trace_id: str, *, step=None,
                 where: str = "ctx.enqueue", parent: str | None = None, record: bool = True) -> Outgoing:
        """Validate and encode a message for every subscriber of ``topic``.

        A topic nobody subscribes to gives an Outgoing with no records (and a warning, once
        per topic): there is nobody to deliver to, so nothing is stored. ``record=False``: the
        caller tells the ``on_outgoing`` hook itself, once it is stored.
        """
        subs = self.by_topic.get(topic)
        if subs:
            out = encode_for(subs, topic, data, group, trace_id, self._now_ms(), where, parent)
            if record and self.on_outgoing is not None:  # hook (edge.testing)
                self.on_outgoing(out, data, group, trace_id)
            return out
        if self.on_outgoing is not None:  # hook (edge.testing)
            self.on_outgoing(Outgoing(topic, ()), data, group, trace_id)
        count = self.unrouted.get(topic, 0)
        self.unrouted[topic] = count + 1
        if count == 0:
            who = f'step "{step.name}" enqueued' if step is not None else "a message was enqueued"
            self._log("warn", f'{who} to topic "{topic}", which no step subscribes to; the message was '
                              f"dropped (counted under queues.unrouted in /__edge/health)",
                      trace_id=trace_id, step=step.name if step is not None else None)
        return Outgoing(topic, ())

    def submit(self, outbox: Iterable[Outgoing]):
        """Add the prepared messages to the next group commit now; returns its
        :class:`~edge._loops.Completion` (None: nothing to store, no subscribers)."""
        if self.committer.batch.insert_all(outbox):
            return self.committer.pending()
        return None

    async def commit(self, outbox: Iterable[Outgoing]) -> None:
        """Store the prepared messages; return once they are durable (one group commit).
        From an asyncio or a trio task.

        Raises:
            StoreError: the store could not be written (nothing of this batch was stored).
        """
        done = self.submit(outbox)
        if done is not None:  # none (no subscribers): nothing to wait for
            await done.wait()

    def commit_sync(self, outbox: Iterable[Outgoing]) -> None:
        """:meth:`commit` on the calling thread, for code outside trio (``edge emit`` without
        a server). Only while the service is not serving."""
        if self.committer.running:
            raise RuntimeError("commit_sync while the queue service runs; await commit() instead")
        batch = Batch()
        if batch.insert_all(outbox):
            self.committer.write_now(batch)

    async def emit(self, topic: str, data: Any, *, group: str | None = None, trace_id: str,
                   where: str = "emit") -> Outgoing:
        """Enqueue from outside a handler (``POST /__edge/emit``); durable when it returns."""
        out = self.outgoing(topic, data, group, trace_id, where=where)
        await self.commit([out])
        return out

    # -- state and stream triggers (stored inside the change's own transaction) -----------

    def stage(self, txn, sub: Subscription, raw: msgspec.Raw, trace_id: str, group: str | None,
              parent: str | None = None) -> None:
        """Store one invocation of a state or stream trigger inside ``txn`` (the write function
        of the change that fires it), so the change is never committed without it.

        Runs on the store's writer thread; the subscription looks at LMDB again once the
        transaction has committed (``txn.after_commit``).
        """
        seq = R.next_seq(txn, R.SEQ_KEY, 1)
        record = encode_message(Message(trace_id, raw, self._now_ms(), group, parent=parent))
        txn.put("queue", sub.prefix + seq.to_bytes(8, "big"), record)
        txn.after_commit(lambda: self._after_stage(sub))

    def on_state_change(self, txn, event_type: str, group: str, key: str, old: Any, new: Any, *,
                        trace_id: str | None = None, parent: str | None = None) -> None:
        """The runtime's hook for state changes: stage every state trigger whose filters match.

        Runs inside the change's write transaction: the change and the invocations it fires
        commit together or not at all. Delivery is FIFO per item (group/key).
        """
        subs = [sub for sub in self._state_subs if _watches(sub.trigger, group, key)]
        if not subs:
            return
        raw = _pack_raw({"group_id": group, "item_id": key, "old_value": old, "new_value": new,
                         "event_type": event_type})  # encoded once, shared by every trigger
        trace_id = trace_id or new_id(16)  # one change, one trace, however many triggers fire
        for sub in subs:
            self.stage(txn, sub, raw, trace_id, f"{group}/{key}", parent)

    def on_stream_change(self, txn, change) -> None:
        """The runtime's hook for stream changes: stage every stream trigger that listens."""
        subs = [sub for sub in self._stream_subs.get(change.stream, ())
                if (sub.trigger.group_id is None or sub.trigger.group_id == change.group)
                and (sub.trigger.item_id is None or sub.trigger.item_id == change.id)]
        if not subs:
            return
        trace_id = getattr(change, "trace_id", None) or new_id(16)
        raw = _pack_raw(change.event())  # encoded once, shared by every trigger
        for sub in subs:
            self.stage(txn, sub, raw, trace_id, f"{change.stream}/{change.group}/{change.id}", change.parent)

    def _after_stage(self, sub: Subscription) -> None:
        sub.stored += 1
        if self._serving:
            sub.reload()
        else:
            sub.caught_up = False  # loaded when the service starts

    # -- delivery -------------------------------------------------------------------------

    async def _work(self, sub: Subscription) -> None:
        ready, lot, committer = sub.ready, sub.lot, self.committer
        # One hop to the loop the handler runs on per burst of ready messages, not per message.
        # On a virtual clock (edge.testing) the burst stays in trio, so that handler timeouts
        # are bounded on trio's clock, which the test moves (the handler still hops).
        hop = None if _virtual_time() else self._run_for
        while True:
            while not ready:
                await lot.park()
                sub.woken = False
            if committer.full:
                await committer.wait_for_space()
                continue
            if hop is None:
                await self._drain(sub)
            else:
                await hop(sub.step, sub.trigger, self._drain, sub)

    async def _drain(self, sub: Subscription) -> None:
        """Deliver ready messages until none is left (or the committer is full); on the loop
        the step's handlers run on."""
        ready, committer = sub.ready, self.committer
        while ready and not committer.full:
            msg = ready.popleft()
            if ready:
                sub.wake()  # in case this handler waits: the next worker takes the next message
            sub.in_flight += 1
            try:
                await self._deliver(sub, msg)
            except Exception as exc:  # a bug in edge: keep the worker, try the message again
                if self.tracer is not None:
                    self.tracer.exception(f"edge failed delivering a message to {sub.label}", exc,
                                          trace_id=msg.rec.trace, step=sub.step.name)
                if msg.key in sub.loaded:
                    sub.hold(msg, 1.0)
            finally:
                sub.in_flight -= 1

    async def _deliver(self, sub: Subscription, msg: _Msg) -> None:
        rec = msg.rec
        if sub.trigger.type == "state" and (sub.trigger.group is not None or sub.trigger.key is not None):
            # Stored while the trigger's filter was another one (changed before a retry or a
            # restart): the step asks for these changes no more, so it does not get this one.
            change = msgspec.msgpack.decode(rec.data)
            group, key = change.get("group_id"), change.get("item_id")
            if not _watches(sub.trigger, group, key):
                self._log("info", f'{sub.step.name}: a stored run for the state change of group "{group}" key '
                                  f'"{key}" was skipped: triggers[{sub.trigger.index}] no longer watches it',
                          trace_id=rec.trace, step=sub.step.name)
                self._ack(sub, msg, ())
                return
        try:
            data = sub.decode(rec.data)
        except (SchemaError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            detail = errors_line(exc.errors) if isinstance(exc, SchemaError) else str(exc)
            rec.attempts += 1
            self._dead(sub, msg, f'the stored message does not match the input schema of step "{sub.step.name}": '
                                 f"{detail}", None)
            return
        outbox = None
        error = error_id = delay = None
        timed_out = False
        try:
            _, ctx = await self.invoke(sub.step, sub.trigger, data, trace_id=rec.trace, parent=rec.parent,
                                        limit=sub.limit)
            outbox = ctx.outbox
        except self._skipped:
            outbox = ()  # condition false: acked, handler not run
        except Retry as exc:
            error, delay = _RETRY, exc.delay
        except self._failed as exc:
            if isinstance(exc.original, Retry):
                error, delay = _RETRY, exc.original.delay
            elif isinstance(exc.original, StorageFull):
                # Not the handler's fault and not an attempt: wait for space, never dead-letter.
                sub.hold(msg, STORAGE_FULL_WAIT)
                return
            else:
                error, error_id = str(exc), exc.error_id
        except TimeoutError:
            timed_out = True
        if outbox is not None:
            self._ack(sub, msg, outbox)
            return
        if timed_out:
            error = f"TimeoutError: the handler did not finish within {sub.limit:g} s"
            self._log("error", f"{sub.step.name}: {error}", trace_id=rec.trace, step=sub.step.name)
        rec.attempts += 1
        sub.failed += 1
        if rec.attempts > sub.config.max_retries:
            self._dead(sub, msg, error, error_id)
        else:
            self._retry(sub, msg, backoff_delay(sub.config, rec.attempts) if delay is None else delay,
                        error, error_id, loud=error_id is not None or timed_out)

    def _ack(self, sub: Subscription, msg: _Msg, outbox) -> None:
        batch = self.committer.batch
        batch.remove(sub, msg.key)
        batch.insert_all(outbox)  # the handler's enqueues: stored with the ack, in one transaction
        self.committer.kick()
        sub.handled += 1
        sub.finish(msg)

    def _retry(self, sub: Subscription, msg: _Msg, delay: float, error: str, error_id, *, loud: bool) -> None:
        rec = msg.rec
        delay = max(0.0, float(delay))
        rec.wait = int(delay * 1000)
        rec.due = self._now_ms() + rec.wait
        rec.error = error
        self.committer.batch.rewrite(msg.key, encode_message(rec))  # attempts and due survive a restart
        self.committer.kick()
        self._log("warn" if loud else "info",
                  f"{sub.step.name}: attempt {rec.attempts} of {sub.config.max_retries + 1} failed; "
                  f"retrying in {delay:g} s", trace_id=rec.trace, step=sub.step.name,
                  data={"error": error, "error_id": error_id} if error_id else {"error": error})
        sub.hold(msg, delay)
        if not sub.ready:
            sub.fill()

    def _dead(self, sub: Subscription, msg: _Msg, error: str, error_id: str | None) -> None:
        rec = msg.rec
        dead = DeadLetter(step=sub.step.name, topic=sub.topic, data=rec.data, error=error,
                          attempts=rec.attempts, failed_at=self._wall(), trace_id=rec.trace,
                          enqueued_at=rec.at / 1000, group=rec.group, error_id=error_id)
        self.committer.batch.remove(sub, msg.key, encode_dead(dead))
        self.committer.kick()
        self._log("error", f"{sub.step.name}: message moved to the dead-letter queue after {rec.attempts} "
                           f"attempt(s): {error}; `edge dlq list` shows it, `edge dlq redrive` retries it",
                  trace_id=rec.trace, step=sub.step.name)
        sub.finish(msg)

    # -- dead letters ---------------------------------------------------------------------

    def target(self, to: str, topic: str | None = None) -> Subscription:
        """The subscription ``edge dlq redrive --to STEP [--topic T]`` moves dead letters into.

        Raises:
            BadRedrive: ``to`` has no queue trigger; it subscribes to several topics and
                ``topic`` is None; or it does not subscribe to ``topic``.
        """
        queues = {name for (name, _), sub in self.by_name.items() if sub.trigger.type == "queue"}
        topics = sorted(t for (name, t), sub in self.by_name.items() if name == to and sub.trigger.type == "queue")
        if not topics:
            which = f"steps that do: {', '.join(sorted(queues))}" if queues else "no step of this app has one"
            raise BadRedrive(f'--to {to}: no step named "{to}" has a queue trigger; {which}')
        named = ", ".join(f'"{t}"' for t in topics)
        if topic is None and len(topics) > 1:
            raise BadRedrive(f'--to {to}: step "{to}" subscribes to {named}; say which with --topic, '
                             f"e.g. --topic {topics[0]}")
        if topic is not None and topic not in topics:
            raise BadRedrive(f'--topic {topic}: step "{to}" does not subscribe to "{topic}"; it subscribes to {named}')
        return self.by_name[(to, topic or topics[0])]

    async def redrive(self, *, step: str | None = None, dlq_id: int | None = None, to: str | None = None,
                      topic: str | None = None) -> dict:
        """Put dead letters back on their subscription's queue (attempts reset, same trace),
        or on step ``to``'s (on its ``topic``: see :meth:`target`).

        Returns:
            ``{"count", "redriven": [ids], "skipped_count", "skipped": [{"id", "reason"}]}``:
            how many moved and the first :data:`IDS_SHOWN` of their ids; how many were skipped
            (a dead letter whose step no longer subscribes to its topic, unless ``to`` is given)
            and the first :data:`SKIPS_SHOWN` of them with the reason. (Listing every one was a
            3.5 MB answer and +10 MB of server memory for 20,000 skipped; now ~17 KB.)
        Raises:
            NotFound: ``dlq_id`` names no dead letter.
            BadRedrive: ``to`` cannot take them (see :meth:`target`).
        """
        from .dlq import IDS_SHOWN, SKIPS_SHOWN, last_key, redrive_target, select

        moved_to = None if to is None else self.target(to, topic)

        missing = NotFound(f"no dead letter with id {dlq_id}; `edge dlq list` shows the ids")
        # In pages, each durable before the next is read: memory stays bounded however many
        # there are, and only those stored when the redrive began move (one that fails again
        # gets a new id past ``last``).
        newest = self.store.read(last_key)
        last = R.dlq_id(newest) if newest is not None else 0
        redriven, skipped, after, first = [], [], None, True
        count = skips = 0
        while True:
            entries = self.store.read(lambda t: select(t, step=step, dlq_id=dlq_id, after=after,
                                                       limit=REDRIVE_PAGE))
            entries = [(key, dead) for key, dead in entries if R.dlq_id(key) <= last]
            if first:
                first = False
                if dlq_id is not None and not entries:
                    raise missing
                if step is not None and not entries:
                    known = {name for name, _ in self.by_name}
                    if step not in known:
                        raise NotFound(unknown_step(step, known))
            if not entries:
                break
            batch = self.committer.batch
            asked = []
            now = self._now_ms()
            for key, dead in entries:
                sub, reason = redrive_target(dead, R.dlq_id(key), self.by_name, moved_to)
                if reason is not None:
                    skips += 1
                    if len(skipped) < SKIPS_SHOWN:
                        skipped.append({"id": R.dlq_id(key), "reason": reason})
                    continue
                due = now + sub.delay_ms if sub.delay_ms else 0
                if batch.redrive(key, sub, encode_redriven(dead, due)):
                    asked.append(R.dlq_id(key))
            if asked:
                # A dead letter moves once, however many redrives ask for it at the same time:
                # one batch takes it once (Batch.redrive), a later batch finds it gone
                # (Batch.apply). Report the ones this call moved (issue 10 item 9).
                try:
                    moved = set(await self.committer.durable())
                except StorageFull as exc:
                    if not count:
                        raise
                    raise StorageFull(  # (the pages before this one did move: say how many)
                        f"the disk holding {exc.path} is full: {count} dead letter(s) were moved back to their "
                        "queues before it filled, the others stay dead letters; free space on that disk (or "
                        "move --data-dir), then redrive them", exc.path) from None
                mine = [i for i in asked if R.dlq_key(i) in moved]
                count += len(mine)
                redriven += mine[:IDS_SHOWN - len(redriven)]
            if dlq_id is not None or len(entries) < REDRIVE_PAGE:
                break
            after = R.dlq_id(entries[-1][0])
        if dlq_id is not None and not count and not skips:
            raise missing
        return {"count": count, "redriven": redriven, "skipped_count": skips, "skipped": skipped}

    # -- orphaned messages ----------------------------------------------------------------

    def orphans(self, step: str | None = None) -> list[dict]:
        """Messages stored for subscriptions no step has any more (of ``step`` when given):
        ``[{"step", "topic", "count", "first": [data]}]`` (see :mod:`.orphans`)."""
        from .orphans import orphaned

        live = {sub.prefix for sub in self.subscriptions}
        return self.store.read(lambda t: orphaned(t, live, step=step))

    def moving_orphans(self, step: str | None = None):
        """The plan that turns them into dead letters (:func:`.orphans.moving`); run it with
        :func:`.dlq.drive_sync` (no server) or :meth:`move_orphans`."""
        from .orphans import moving

        return moving(self.store, {sub.prefix for sub in self.subscriptions}, step=step, now=self._wall())

    async def move_orphans(self, step: str | None = None) -> int:
        """Turn the orphaned messages (of ``step``) into dead letters while serving; how many."""
        from .dlq import drive

        moved = await drive(self.store, self.moving_orphans(step))
        for (name, topic), count in moved.items():
            self.orphaned.pop(f"{name} <- {topic}", None)
            self._log("info", f'{count} stored message(s) for step "{name}" on topic "{topic}" moved to the '
                              "dead-letter queue", step=name)
        return sum(moved.values())

    # -- serving --------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the committer, the timers and every subscription's workers until cancelled."""
        if self.invoke is None:
            raise RuntimeError("QueueService.serve needs invoke")
        self._count_stored()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.committer.serve)
            await nursery.start(self.timers.serve)
            self._serving = True
            try:
                for sub in self.subscriptions:
                    for _ in range(sub.concurrency):
                        nursery.start_soon(self._work, sub)
                    sub.fill()
                self.timers.at(HEAL_INTERVAL, self._heal)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._serving = False

    def _heal(self) -> None:
        # Caught up or not: one whose ack failed was rewound (not caught up) and has nothing
        # else to make it look again (``fill`` itself checks for room). Not while the disk is
        # still full, though: its handler ran, and would run again every 5 s until then. But a
        # disk may never free RECOVERED_FREE again (data.mdb grew into it) and still take writes:
        # once one has succeeded, the rewound ones are tried again, once a minute at most.
        store = self.store
        rewound_too = True
        if store.full and not store.has_room_again():
            now = trio.current_time()
            rewound_too = store.wrote_while_full and now >= self._full_retry_at
            if rewound_too:
                self._full_retry_at = now + FULL_RETRY
        for sub in self.subscriptions:
            if sub.caught_up or rewound_too:
                sub.reload()
        self.timers.at(HEAL_INTERVAL, self._heal)

    def _count_stored(self) -> None:
        live = {sub.prefix: sub for sub in self.subscriptions}

        def count(txn):
            counts: dict[bytes, int] = {}
            for key, _ in txn.scan("queue"):
                counts[key[:4]] = counts.get(key[:4], 0) + 1
            return counts, R.subscription_names(txn)

        counts, names = self.store.read(count)
        for prefix, n in counts.items():
            sub = live.get(prefix)
            if sub is not None:
                sub.stored = n
                continue
            step, topic = names.get(int.from_bytes(prefix, "big"), ("?", "?"))
            self.orphaned[f"{step} <- {topic}"] = n
            self._log("warn", orphans_warning(n, step, topic))

    def health(self) -> dict:
        depth, dead = self.store.read(lambda t: (t.count("queue"), t.count("dlq")))
        subs = [{
            "step": sub.step.name, "topic": sub.topic, "type": sub.config.type,
            "depth": sub.stored, "in_flight": sub.in_flight, "retrying": sub.waiting,
            "handled": sub.handled, "failed_attempts": sub.failed,
        } for sub in self.subscriptions]
        return {
            "depth": depth,
            "in_flight": sum(s.in_flight for s in self.subscriptions),
            "retrying": sum(s.waiting for s in self.subscriptions),
            "dead_letters": dead,
            "subscriptions": subs,
            "unrouted": dict(self.unrouted),
            "orphaned": dict(self.orphaned),
        }


def _watches(trigger, group: str, key: str) -> bool:
    """Whether a state trigger's ``group``/``key`` filters take a change of ``group``/``key``."""
    return (trigger.group is None or trigger.group == group) and (trigger.key is None or trigger.key == key)


def _pack_raw(data: Any) -> msgspec.Raw:
    return msgspec.Raw(_pack(to_builtins(data)))


async def _here(step, trigger, fn, *args):
    return await fn(*args)
