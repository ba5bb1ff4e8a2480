"""A subscription's window: the part of its backlog held in memory, and the loader that
refills it from LMDB.

Each subscription (one step, one topic) keeps at most ``window`` messages in memory — ready,
running, or queued behind the head of their FIFO group — and reads more from LMDB as it
drains, so memory stays flat whatever the backlog. Messages waiting for a retry are not
counted (a few poison messages must not stall a subscription).

The loader never misses a message: seqs are allocated inside the write transaction, so they
increase in commit order and a read snapshot that holds seq ``n`` holds every committed seq
below it. The loader therefore scans forward from ``scan_from``; it rewinds only to re-read
messages it skipped on purpose: those of a FIFO group whose head waits for a retry (so that
group cannot fill the window and starve the others) and acks whose commit failed.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

import msgspec
import trio

from .records import SEQ_KEY, Message, backoff_delay, decode_message

__all__ = ["Subscription", "WINDOW", "MAX_SCAN"]

#: Messages per subscription held in memory (ready, running, or behind a FIFO head).
WINDOW = 1024
#: Keys one loader pass may examine before it yields to the event loop.
MAX_SCAN = 4096

_unpack = msgspec.msgpack.decode


class _Msg:
    """A message in memory: its key, its decoded record and its FIFO group."""

    __slots__ = ("key", "rec", "group")

    def __init__(self, key: bytes, rec: Message):
        self.key = key
        self.rec = rec
        self.group = rec.group or ""


class Subscription:
    """One (step, topic) pair: its window of messages, its ready queue, its FIFO groups.

    Args:
        sub_id: the persistent id (the first 4 bytes of its keys).
        topic: the queue topic, or ``@state:<i>`` / ``@stream:<i>`` for state/stream triggers.
        config: the trigger's ``QueueConfig``.
        schema: the compiled input schema or None.
        store, timers: where to read from and how to wait.
        now_ms: the wall clock in ms (due times on disk are wall-clock).
        make_input: for state/stream triggers, builds the handler's event from the stored data.
    """

    def __init__(self, sub_id: int, step, trigger, topic: str, config, schema, *, store, timers,
                 now_ms: Callable[[], int], window: int = WINDOW, make_input=None):
        self.id = sub_id
        self.prefix = sub_id.to_bytes(4, "big")
        self.step = step
        self.trigger = trigger
        self.topic = topic
        self.config = config
        self.fifo = config.type == "fifo"
        self.schema = schema
        self.delay_ms = int(round((config.delay_seconds or 0) * 1000))
        # visibilityTimeout: leases live in memory, so a message is never handed to a second
        # worker while its handler runs; it bounds the handler when timeout is unset.
        limit = config.timeout or config.visibility_timeout
        self.limit = float(limit) if limit else math.inf
        self.concurrency = max(1, config.concurrency)
        self.window = max(window, 4 * self.concurrency)
        if make_input is not None:  # a state/stream trigger: rebuild its event object
            self.decode = lambda raw: make_input(_unpack(raw))
        elif schema is None or schema.kind == "json":
            # Dict schemas were checked at enqueue time; the handler gets the decoded JSON.
            self.decode = _unpack
        else:
            validate = schema.validate
            self.decode = lambda raw: validate(_unpack(raw))
        self._store = store
        self._timers = timers
        self._now_ms = now_ms
        self.loaded: dict[bytes, _Msg] = {}
        self.ready: deque[_Msg] = deque()
        self.lot = trio.lowlevel.ParkingLot()  # idle workers
        self.woken = False  # a worker was unparked and has not looked at ``ready`` yet
        self.scan_from = self.prefix  # the first key the loader has not examined
        self.caught_up = False  # nothing in LMDB at or after scan_from, as of the last scan
        #: The queue's seq counter in the snapshot of the last scan that reached the end: every
        #: message of this subscription with a lower seq is loaded or was handled.
        self.horizon: int | None = None
        self.rescan_from: bytes | None = None  # FIFO: lowest key skipped for a blocked group
        self.refill_at: float | None = None  # when a delayed first delivery becomes due
        self.groups: dict[str, deque[_Msg]] = {}  # FIFO: group -> its loaded messages, head first
        self.blocked: set[str] = set()  # FIFO: groups whose head waits for a retry
        self.done_keys: set[bytes] = set()  # handled; their deletion is not committed yet
        self.waiting = 0  # loaded messages waiting for a retry
        self.in_flight = 0
        self.stored = 0  # messages in LMDB (counted at start, then kept up to date)
        self.handled = 0
        self.failed = 0

    @property
    def label(self) -> str:
        return f'step "{self.step.name}" (topic "{self.topic}")'

    # -- loading --------------------------------------------------------------------------

    def fill(self) -> None:
        """Load messages from LMDB into the window, in key order."""
        if self.caught_up:
            return
        room = self.window - (len(self.loaded) - self.waiting)
        if room <= 0:
            if not (self.fifo and not self.ready and self._evict_blocked()):
                return
            room = self.window - (len(self.loaded) - self.waiting)
        loaded, done, prefix, start = self.loaded, self.done_keys, self.prefix, self.scan_from

        def scan(txn):
            out, last, examined = [], None, 0
            for key, value in txn.scan("queue", prefix, start=start):
                last = key
                examined += 1
                if key not in loaded and key not in done:
                    out.append((key, value))
                    if len(out) >= room:
                        return out, last, None
                if examined >= MAX_SCAN:
                    return out, last, None
            seq = txn.get("meta", SEQ_KEY)  # reached the end: the counter this snapshot holds
            return out, last, int.from_bytes(seq, "big") if seq else 0

        items, last, horizon = self._store.read(scan)
        now_ms = self._now_ms()
        for key, value in items:
            rec = decode_message(value)
            if rec.due > now_ms and rec.attempts == 0 and self.delay_ms:
                # A delayed first delivery (delaySeconds): the messages after it were enqueued
                # later with the same delay, so none of them is due before it. (Stored under a
                # delay the step no longer has: due now; waiting 0 s at a time spun the loop.)
                self.scan_from = key
                wait = min(rec.due - now_ms, self.delay_ms) / 1000
                when = trio.current_time() + wait
                if self.refill_at is None or when < self.refill_at:
                    self.refill_at = when
                    self._timers.at(wait, self._refill)
                return
            self._load(key, rec, now_ms)
        if last is not None:
            self.scan_from = last + b"\x00"
        self.caught_up = horizon is not None
        if self.caught_up:
            self.horizon = horizon
        elif len(self.loaded) - self.waiting < self.window:
            # Stopped after MAX_SCAN keys, or skipped blocked FIFO groups: go on once the
            # other tasks have had the event loop.
            self._timers.at(0, self.fill)

    def _load(self, key: bytes, rec: Message, now_ms: int) -> None:
        msg = _Msg(key, rec)
        if self.fifo and msg.group in self.blocked:
            if self.rescan_from is None or key < self.rescan_from:
                self.rescan_from = key
            return
        self.loaded[key] = msg
        self._admit(msg, now_ms)

    def take_committed(self, placed: list[tuple[bytes, bytes]], top: int, chain_from: int) -> None:
        """The committer stored ``placed`` (this subscription's new ``(key, record)`` pairs, in
        key order), ending the seq counter at ``top``; it allocated every seq from
        ``chain_from`` on. Admit them from memory when the last scan saw everything before
        that run and the window has room for them; else look at LMDB again."""
        if not (self.caught_up and self.horizon is not None and self.horizon >= chain_from - 1
                and not self.delay_ms and len(placed) <= self.window - (len(self.loaded) - self.waiting)):
            self.reload()
            return
        now_ms, scan_from = self._now_ms(), self.scan_from
        for key, record in placed:
            if key >= scan_from:  # (a scan that ran after the commit has loaded it already)
                self._load(key, decode_message(record), now_ms)
        last = placed[-1][0] + b"\x00"
        if last > scan_from:
            self.scan_from = last
        self.horizon = top

    def reload(self) -> None:
        """Something was written for this subscription: look at LMDB again."""
        self.caught_up = False
        self.fill()

    def rewind(self, key: bytes) -> None:
        """``key`` is still stored although it was handled (its ack did not commit): read it again."""
        self.done_keys.discard(key)
        if key < self.scan_from:
            self.scan_from = key
        self.caught_up = False

    def _refill(self) -> None:
        self.refill_at = None
        self.reload()

    def _evict_blocked(self) -> bool:
        """FIFO, window full, nothing ready: forget the messages queued behind heads that wait
        for a retry (they stay in LMDB) so other groups can load. True if any were dropped."""
        evicted = False
        for group in self.blocked:
            queue = self.groups.get(group)
            while queue is not None and len(queue) > 1:
                msg = queue.pop()
                del self.loaded[msg.key]
                if self.rescan_from is None or msg.key < self.rescan_from:
                    self.rescan_from = msg.key
                evicted = True
        return evicted

    # -- scheduling -----------------------------------------------------------------------

    def _admit(self, msg: _Msg, now_ms: int) -> None:
        if self.fifo:
            queue = self.groups.get(msg.group)
            if queue is not None:
                queue.append(msg)
                return
            self.groups[msg.group] = deque((msg,))
        self._arm(msg, now_ms)

    def _arm(self, msg: _Msg, now_ms: int) -> None:
        """Make ``msg`` (a FIFO head, or any standard message) ready, or wait for its due time."""
        if msg.rec.due > now_ms:
            # A retry scheduled by an earlier run. Never wait longer than the wait it was given
            # (the backoff, or a Retry's delay), whatever the wall clock did meanwhile (a Pi
            # boots with a stale clock). Records stored before ``wait`` was: the backoff.
            longest = msg.rec.wait or backoff_delay(self.config, msg.rec.attempts) * 1000
            wait = min(msg.rec.due - now_ms, longest) / 1000
            self.hold(msg, wait)
        else:
            self.ready.append(msg)
            self.wake()

    def wake(self) -> None:
        """Messages are ready: wake one idle worker, unless one is woken and not yet running.
        A worker that starts on them wakes the next while more are ready (``QueueService._drain``),
        so a burst costs one hop to the handlers' loop when they are quick, and still reaches
        ``concurrency`` handlers at once when they wait."""
        if not self.woken and self.lot:
            self.woken = True
            self.lot.unpark()

    def hold(self, msg: _Msg, wait: float) -> None:
        """``msg`` failed: run it again in ``wait`` seconds (its FIFO group waits too)."""
        self.waiting += 1
        if self.fifo:
            self.blocked.add(msg.group)
        self._timers.at(wait, self._release, msg)

    def _release(self, msg: _Msg) -> None:
        self.waiting -= 1
        self.ready.append(msg)
        self.wake()
        if self.fifo:
            self.blocked.discard(msg.group)
            if self.rescan_from is not None:  # messages of blocked groups were skipped: re-read
                if self.rescan_from < self.scan_from:
                    self.scan_from = self.rescan_from
                self.rescan_from = None
                self.reload()

    def finish(self, msg: _Msg) -> None:
        """``msg`` is handled (acked or dead-lettered): drop it, start its FIFO successor."""
        del self.loaded[msg.key]
        self.done_keys.add(msg.key)
        if self.fifo:
            queue = self.groups[msg.group]
            queue.popleft()
            if queue:
                self._arm(queue[0], self._now_ms())
            else:
                del self.groups[msg.group]
        if not self.caught_up and (not self.ready or len(self.loaded) - self.waiting <= self.window // 2):
            self.fill()
