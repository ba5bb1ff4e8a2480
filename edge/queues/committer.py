"""The committer: every queue change of the whole runtime, one LMDB transaction at a time.

Producers (``ctx.enqueue`` outboxes, ``POST /__edge/emit``, redrives) add messages to the
open :class:`Batch` and wait for it; workers add acks, retries and dead letters without
waiting (nobody needs to hear that an ack is on disk). The committer hands the batch to the
store as ONE write function while the next batch fills up, so however many producers and
workers there are, the disk sees one transaction and one fsync per round trip.

The messages a commit stored go to their subscriptions' windows straight from memory when
nothing else can have been stored before them unseen: the queue's seq counter is shared by
every writer, so the committer keeps the run of seqs since which it allocated every one
(``chain_from`` .. ``seq_top``), and a subscription knows the counter its last full scan of
LMDB saw (``Subscription.horizon``). Otherwise (a state change staged a trigger run, `edge
emit` ran in another process) the subscription reads LMDB again.
"""

from __future__ import annotations

from typing import Callable

import trio

from .._loops import Completion
from ..errors import StoreError
from . import records as R

__all__ = ["Batch", "Committer", "MAX_PENDING"]

#: Workers stop taking messages while this many changes wait for a commit (the disk cannot
#: keep up); producers are never refused.
MAX_PENDING = 20_000


class Batch:
    """Everything the committer writes in its next transaction."""

    __slots__ = ("writes", "inserts", "dead", "redrives", "redriving", "removed", "counts", "done", "error", "size",
                 "placed")

    def __init__(self):
        self.writes: dict[bytes, bytes | None] = {}  # queue key -> new record, None: delete
        self.inserts: list[tuple] = []  # (subscription, record)
        self.dead: list[bytes] = []  # dead letters to add
        self.redrives: list[tuple] = []  # (dlq key, subscription, record)
        self.redriving: set[bytes] = set()  # their dlq keys
        self.removed: list = []  # (subscription, key): acked or dead-lettered
        self.counts: dict = {}  # subscription -> messages inserted for it (redrives: once moved)
        self.done: Completion | None = None  # set once committed, with the dlq keys moved
        self.error: BaseException | None = None
        self.size = 0
        self.placed: list[tuple] = []  # (subscription, key, record) of the inserts, as committed

    def __bool__(self) -> bool:
        return self.size > 0

    def insert(self, sub, record: bytes) -> None:
        self.inserts.append((sub, record))
        self.counts[sub] = self.counts.get(sub, 0) + 1
        self.size += 1

    def insert_all(self, outbox) -> int:
        """Insert every record of the prepared enqueues (:class:`~.enqueue.Outgoing`); how many."""
        before = self.size
        for out in outbox:
            for sub, record in out.records:
                self.insert(sub, record)
        return self.size - before

    def rewrite(self, key: bytes, record: bytes) -> None:
        self.writes[key] = record
        self.size += 1

    def remove(self, sub, key: bytes, dead: bytes | None = None) -> None:
        self.writes[key] = None
        self.removed.append((sub, key))
        if dead is not None:
            self.dead.append(dead)
        self.size += 1

    def redrive(self, dlq_key: bytes, sub, record: bytes) -> bool:
        """Add a dead letter's move; False when this batch moves it already (a concurrent
        redrive asked first: the one that moves it reports it)."""
        if dlq_key in self.redriving:
            return False
        self.redriving.add(dlq_key)
        self.redrives.append((dlq_key, sub, record))
        self.size += 1
        return True

    def apply(self, txn) -> list[bytes]:
        """The write function. Pure over ``txn`` (the store may run it twice). Returns the dlq
        keys redriven (an entry redriven twice at once moves only once)."""
        put, delete = txn.put, txn.delete
        for key, value in self.writes.items():
            if value is None:
                delete("queue", key)
            else:
                put("queue", key, value)
        moved = [(k, sub, r) for k, sub, r in self.redrives if delete("dlq", k)]
        inserts = self.inserts + [(sub, r) for _, sub, r in moved] if moved else self.inserts
        self.placed = placed = []
        if inserts:
            seq = R.next_seq(txn, R.SEQ_KEY, len(inserts))
            for sub, record in inserts:
                key = sub.prefix + seq.to_bytes(8, "big")
                put("queue", key, record)
                placed.append((sub, key, record))
                seq += 1
        if self.dead:
            first = R.next_seq(txn, R.DLQ_SEQ_KEY, len(self.dead))
            for i, record in enumerate(self.dead):
                put("dlq", R.dlq_key(first + i), record)
        return [k for k, _, _ in moved]


class Committer:
    """Owns the open batch and the task that commits it.

    Args:
        store: the :class:`~edge.store.Store`.
        log: ``fn(level, msg)`` for commit failures.
    """

    def __init__(self, store, log: Callable[[str, str], None]):
        self.store = store
        self.batch = Batch()
        self.running = False
        self.commits = 0  # transactions written (for the benchmark)
        #: Every queue seq from ``chain_from`` to ``seq_top`` was allocated by this committer
        #: (None: nothing committed yet). A gap (another writer allocated) restarts the run.
        self.chain_from: int | None = None
        self.seq_top: int | None = None
        self._log = log
        self._work = trio.lowlevel.ParkingLot()
        self._space = trio.lowlevel.ParkingLot()

    def kick(self) -> None:
        """Something was added to the batch."""
        if self._work:  # (unpark builds a list even when nobody waits; this runs per ack)
            self._work.unpark()

    @property
    def full(self) -> bool:
        return self.batch.size >= MAX_PENDING

    async def wait_for_space(self) -> None:
        await self._space.park()

    def pending(self) -> Completion | None:
        """The completion of the open batch (None: it is empty): set once it is committed,
        failed with its error. Safe to call from asyncio code and threads' loop callbacks."""
        batch = self.batch
        if not batch:
            return None
        if not self.running:
            self.batch = Batch()
            done = batch.done = Completion()
            try:
                self.write_now(batch)
            except Exception:
                pass  # batch.done carries the error
            return done
        if batch.done is None:
            batch.done = Completion()
        self.kick()
        return batch.done

    async def durable(self) -> list[bytes]:
        """Wait until the open batch is committed (raise its error if it failed); from an
        asyncio or a trio task. Returns the dlq keys it redrove."""
        done = self.pending()
        return [] if done is None else await done.wait()

    def write_now(self, batch: Batch) -> None:
        """Commit ``batch`` on the calling thread (no committer task: CLI, before start)."""
        try:
            moved = self.store.write_sync(batch.apply)
        except Exception as exc:
            self._failed(batch, exc)
            raise batch.error from None
        self._committed(batch, moved)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.running = True
        try:
            while True:
                while not self.batch:
                    await self._work.park()
                batch, self.batch = self.batch, Batch()
                self._space.unpark_all()
                try:
                    moved = await self.store.write(batch.apply)
                except Exception as exc:  # a full disk, a store error: say so, deliver again later
                    self._failed(batch, exc)
                else:
                    self._committed(batch, moved)
        finally:
            self.running = False
            if self.batch:  # stopping: the store's writer commits this before it exits
                self.store.write_nowait(self.batch.apply)

    def _committed(self, batch: Batch, moved: list[bytes] = ()) -> None:
        """``moved``: the dlq keys this batch redrove (``Batch.apply``'s answer)."""
        self.commits += 1
        if moved:
            moved_keys = set(moved)
            for key, sub, _ in batch.redrives:
                if key in moved_keys:
                    batch.counts[sub] = batch.counts.get(sub, 0) + 1
        for sub, key in batch.removed:
            sub.done_keys.discard(key)
            sub.stored -= 1
        for sub, count in batch.counts.items():
            sub.stored += count
        placed = batch.placed
        if placed:
            first = int.from_bytes(placed[0][1][4:], "big")
            if self.seq_top is None or first != self.seq_top + 1:
                self.chain_from = first  # another writer allocated seqs since our last commit
            self.seq_top = top = first + len(placed) - 1
            by_sub: dict = {}
            for sub, key, record in placed:
                items = by_sub.get(sub)
                if items is None:
                    by_sub[sub] = [(key, record)]
                else:
                    items.append((key, record))
            for sub, items in by_sub.items():
                if self.running:
                    sub.take_committed(items, top, self.chain_from)
                else:
                    sub.caught_up = False
        if batch.done is not None:
            batch.done.set(list(moved))

    def _failed(self, batch: Batch, exc: BaseException) -> None:
        if not isinstance(exc, StoreError):
            exc = StoreError(f"writing queue changes failed: {type(exc).__name__}: {exc}")
        batch.error = exc
        if batch.removed:
            self._log("error", f"{exc}; {len(batch.removed)} handled message(s) stay stored and will be delivered again")
        for sub, key in batch.removed:
            sub.rewind(key)  # still stored: the loader finds it again (at least once)
        if batch.done is not None:
            batch.done.fail(exc)
