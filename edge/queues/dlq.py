"""Dead letters: reading them a page at a time, deleting them, and putting them back on their
queue without a running server.

With a server running, ``edge dlq redrive`` goes through :meth:`QueueService.redrive` (so the
running loaders see the messages at once); :func:`redrive_offline` serves ``edge dlq`` when it
works on the data directory directly.

Memory stays bounded whatever the number of dead letters (a handler that fails for weeks
makes tens of thousands): a read returns one page and counts the rest without decoding it;
deletes and offline redrives run in transactions of :data:`CHUNK` entries (an LMDB write
transaction keeps every page it dirties in memory until it commits).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import SchemaError
from . import records as R
from .enqueue import errors_line
from .records import decode_dead, encode_redriven

__all__ = ["select", "page", "list_page", "list_dead", "as_dict", "redrive_offline", "gone",
           "delete_dead", "delete_offline", "last_key", "drive", "drive_sync", "DEFAULT_LIMIT", "MAX_LIMIT"]

#: Dead letters a page holds when no limit is asked for (`GET /__edge/dlq`, `edge dlq list`).
DEFAULT_LIMIT = 100
#: The largest page `GET /__edge/dlq` hands out; beyond it, page on with ``after``.
MAX_LIMIT = 1000
#: A page also ends once its records reach this size (it holds at least one): a dead letter
#: keeps its message's data, and one message may be as large as the request that sent it.
MAX_PAGE_BYTES = 4 << 20
#: Dead letters one write transaction deletes or moves (~0.5 MB of dirty pages for messages
#: of a few hundred bytes), and the most entries one scans for a step filter (so it does not
#: hold the writer for long).
CHUNK = 1000
SCAN = 20 * CHUNK
#: How many of the dead letters a redrive skipped its answer lists, with the reason (the count
#: is whole); and how many ids of those it moved (the server's answer).
SKIPS_SHOWN = 100
IDS_SHOWN = 1000
_LAST_KEY = (1 << 64) - 1


class _StepOnly(msgspec.Struct):
    """The one field a step filter reads: msgspec skips the others (the data) undecoded."""

    step: str


_decode_step = msgspec.msgpack.Decoder(_StepOnly).decode


def _start(after: int | None) -> bytes | None:
    """The first key after id ``after`` (None: from the first; b"": past the last)."""
    if not after:
        return None
    return b"" if after >= _LAST_KEY else R.dlq_key(after + 1)


def _matching(txn, step: str | None, start: bytes | None):
    """``(key, raw)`` of the dead letters from key ``start``, of ``step`` when given."""
    if start == b"":
        return
    for key, value in txn.scan("dlq", start=start):
        if step is None or _decode_step(value).step == step:
            yield key, value


def select(txn, *, step: str | None = None, dlq_id: int | None = None, limit: int | None = None,
           after: int | None = None):
    """``[(key, DeadLetter)]`` oldest first, filtered by step and/or id, from the id after
    ``after`` (a read function). Decodes only the entries it returns."""
    if dlq_id is not None:
        raw = txn.get("dlq", R.dlq_key(dlq_id)) if 0 < dlq_id < 1 << 64 else None
        if raw is None:
            return []
        dead = decode_dead(raw)
        return [] if step is not None and dead.step != step else [(R.dlq_key(dlq_id), dead)]
    out = []
    for key, value in _matching(txn, step, _start(after)):
        out.append((key, decode_dead(value)))
        if limit is not None and len(out) >= limit:
            break
    return out


def page(txn, *, step: str | None = None, limit: int = DEFAULT_LIMIT, after: int | None = None):
    """One page of dead letters and how many there are (a read function).

    Returns:
        ``(entries, total, more)``: up to ``limit`` ``(key, DeadLetter)`` after id ``after``
        (fewer when they pass :data:`MAX_PAGE_BYTES`); ``total`` of ``step`` (or all of them);
        ``more`` after the last one returned. Only the returned entries are decoded: the
        count comes from LMDB's entry count, or with a step filter from each entry's step.
    """
    start = _start(after)
    entries, size, full = [], 0, False
    rest = _matching(txn, step, start)
    for key, value in rest:
        if len(entries) >= limit or (entries and size + len(value) > MAX_PAGE_BYTES):
            full = True  # (this one is not returned: counted below)
            break
        entries.append((key, decode_dead(value)))
        size += len(value)
    if step is None and start is None:  # LMDB's entry count says what follows
        total = txn.count("dlq")
        return entries, total, total - len(entries)
    more = 1 + sum(1 for _ in rest) if full else 0
    total = txn.count("dlq") if step is None else _count_before(txn, step, start) + len(entries) + more
    return entries, total, more


def _count_before(txn, step: str, start: bytes | None) -> int:
    """Dead letters of ``step`` before key ``start`` (None: none; b"": all of them)."""
    if start is None:
        return 0
    n = 0
    for key, value in txn.scan("dlq"):
        if start and key >= start:
            break
        n += _decode_step(value).step == step
    return n


def list_page(store, *, step: str | None = None, limit: int = DEFAULT_LIMIT, after: int | None = None) -> dict:
    """What `GET /__edge/dlq` answers: ``{"dead_letters": [...], "total", "more", "next_after"}``
    (``next_after``: the ``after`` that asks for the next page; None on the last one)."""

    def read(txn):
        entries, total, more = page(txn, step=step, limit=limit, after=after)
        return {"dead_letters": [as_dict(k, d) for k, d in entries], "total": total, "more": more,
                "next_after": R.dlq_id(entries[-1][0]) if more else None}

    return store.read(read)


def as_dict(key: bytes, dead) -> dict[str, Any]:
    """What ``edge dlq list --json`` prints for one entry."""
    out = {
        "id": R.dlq_id(key),
        "topic": dead.topic,
        "step": dead.step,
        "data": msgspec.msgpack.decode(dead.data),
        "error": dead.error,
        "attempts": dead.attempts,
        "failed_at": dead.failed_at,
        "trace_id": dead.trace_id,
        "enqueued_at": dead.enqueued_at,
    }
    if dead.group is not None:
        out["messageGroupId"] = dead.group
    if dead.error_id is not None:
        out["error_id"] = dead.error_id
    return out


def list_dead(store, *, step: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Every dead letter (of ``step``), or the first ``limit``: for tests and ``edge.testing``;
    the CLI and the endpoint read pages (:func:`list_page`)."""
    return store.read(lambda t: [as_dict(k, d) for k, d in select(t, step=step, limit=limit)])


def last_key(txn) -> bytes | None:
    """The newest dead letter's key (None: there is none); a read function."""
    return next((key for key, _ in txn.scan("dlq", reverse=True)), None)


def _chunk(txn, step: str | None, start: bytes | None, stop: bytes):
    """Up to :data:`CHUNK` ``(key, raw)`` of ``step`` from ``start`` through ``stop``, and the key
    to go on from (None: done). Scans at most :data:`SCAN` entries."""
    found, scanned = [], 0
    for key, value in txn.scan("dlq", start=start):
        if key > stop:
            return found, None
        if len(found) >= CHUNK or scanned >= SCAN:
            return found, key
        scanned += 1
        if step is None or _decode_step(value).step == step:
            found.append((key, value))
    return found, None


def internal_trigger(topic: str) -> tuple[str, str] | None:
    """``(kind, index)`` of a state or stream trigger's internal subscription (``"@state:0"``:
    ``("state", "0")``), or None for a topic."""
    if not topic.startswith("@"):
        return None
    kind, _, index = topic[1:].partition(":")
    return kind, index


def redrive_target(dead, dlq_id: int, subs: dict, to=None):
    """Where a redrive puts dead letter ``dlq_id``: ``(subscription, None)``, or ``(None, why it
    is skipped)``. Back to its own (step, topic) in ``subs``, or into ``to`` (``--to``) if that
    step's input schema takes its data."""
    if to is not None:
        reason = refused_by(to, dead, dlq_id)
        return (None, reason) if reason is not None else (to, None)
    sub = subs.get((dead.step, dead.topic))
    return (sub, None) if sub is not None else (None, gone(dead, dlq_id))


def gone(dead, dlq_id: int) -> str:
    """Why a redrive skipped dead letter ``dlq_id``, and the ways out."""
    trigger = internal_trigger(dead.topic)
    if trigger is not None:  # a state or stream trigger's run: no other step can take it
        kind, index = trigger
        return (f'step "{dead.step}" no longer has that {kind} trigger (triggers[{index}]); '
                f"a run of it cannot go to another step: delete it (edge dlq delete --id {dlq_id})")
    return (f'step "{dead.step}" no longer subscribes to "{dead.topic}"; redrive it to the step that handles it '
            f"now with --to STEP, or delete it (edge dlq delete --id {dlq_id})")


def refused_by(sub, dead, dlq_id: int) -> str | None:
    """Why step ``sub`` cannot take dead letter ``dlq_id`` (its data does not match the step's
    input schema), or None. Checked for ``redrive --to``: the step is another than the one
    the message was written for, and a mismatch would only make it a dead letter again."""
    schema = sub.schema
    if schema is None:
        return None
    try:
        schema.validate(msgspec.msgpack.decode(dead.data))
    except SchemaError as exc:
        detail = errors_line(exc.errors)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        detail = str(exc)
    else:
        return None
    return (f'its data does not match the input schema of step "{sub.step.name}" ({detail}); redrive it to a '
            f"step that takes it, or delete it (edge dlq delete --id {dlq_id})")


def redrive_offline(store, subs: dict, *, step: str | None = None, dlq_id: int | None = None, to=None,
                    now_ms: int = 0) -> tuple[int, int, list[dict], int]:
    """Move dead letters back to a queue (the server is not running).

    Args:
        subs: ``(step, topic) -> Subscription`` of the project's steps now (registered, so
            their ids exist): a dead letter goes back to its own, or is skipped when its step
            no longer subscribes to its topic (it would wait where no command shows it).
        to: the subscription to move them into instead (``edge dlq redrive --to``).
        now_ms: wall-clock ms, for the target's ``delaySeconds``.

    Each transaction moves up to :data:`CHUNK` of them, and each dead letter moves in the
    transaction that deletes it: once, even if the command is killed halfway (the rest stay
    dead letters). Only the dead letters there were when it started move.

    Returns:
        ``(how many moved, how many skipped, [{"id", "reason"}] of the first
        ``SKIPS_SHOWN`` skipped, how many matched)``.
    """
    skipped: list[dict] = []

    def move(entries, txn):  # pure over txn (the store may run it twice): it returns the skips
        shown, skips, placed = [], 0, []
        for key, dead in entries:
            sub, reason = redrive_target(dead, R.dlq_id(key), subs, to)
            if reason is not None:
                skips += 1
                if len(skipped) + len(shown) < SKIPS_SHOWN:
                    shown.append({"id": R.dlq_id(key), "reason": reason})
            else:
                placed.append((key, dead, sub))
        if placed:
            seq = R.next_seq(txn, R.SEQ_KEY, len(placed))
            for key, dead, sub in placed:
                due = now_ms + sub.delay_ms if sub.delay_ms else 0
                txn.put("queue", sub.prefix + seq.to_bytes(8, "big"), encode_redriven(dead, due))
                txn.delete("dlq", key)
                seq += 1
        return len(placed), skips, shown, len(entries)

    if dlq_id is not None:
        return store.write_sync(lambda txn: move(select(txn, step=step, dlq_id=dlq_id), txn))
    stop = store.read(last_key)
    moved, skips, matched, start = 0, 0, 0, None
    while stop is not None:
        def chunk(txn, start=start):
            found, resume = _chunk(txn, step, start, stop)
            return move([(k, decode_dead(v)) for k, v in found], txn), resume

        (count, missed, shown, seen), start = store.write_sync(chunk)
        moved, skips, matched = moved + count, skips + missed, matched + seen
        skipped += shown
        if start is None:
            break
    return moved, skips, skipped, matched


def drive_sync(store, plan):
    """Run ``plan``, a generator that yields write functions and is sent each one's result,
    one transaction each on the calling thread (the CLI without a server); its return value."""
    try:
        fn = next(plan)
        while True:
            fn = plan.send(store.write_sync(fn))
    except StopIteration as stop:
        return stop.value


async def drive(store, plan):
    """:func:`drive_sync` through the running store's writer (one group commit each)."""
    try:
        fn = next(plan)
        while True:
            fn = plan.send(await store.write(fn))
    except StopIteration as stop:
        return stop.value


def _deleting(store, step: str | None, dlq_id: int | None, keep: int):
    """The plan (see :func:`drive`) that removes dead letters: one id, one step's, or all of
    them (those there were when it started), :data:`CHUNK` per transaction, without decoding
    them (a step filter reads each one's step)."""
    if dlq_id is not None:
        key = R.dlq_key(dlq_id) if 0 < dlq_id < 1 << 64 else None

        def remove_one(txn):
            raw = txn.get("dlq", key) if key else None
            if raw is None or (step is not None and _decode_step(raw).step != step):
                return []
            txn.delete("dlq", key)
            return [dlq_id]

        ids = yield remove_one
        return len(ids), ids
    stop = store.read(last_key)
    count, ids, start = 0, [], None
    while stop is not None:
        def remove(txn, start=start):
            found, resume = _chunk(txn, step, start, stop)
            for key, _ in found:
                txn.delete("dlq", key)
            return [key for key, _ in found], resume

        keys, start = yield remove
        count += len(keys)
        ids.extend(R.dlq_id(k) for k in keys[:max(0, keep - len(ids))])
        if start is None:
            break
    return count, ids


async def delete_dead(store, *, step: str | None = None, dlq_id: int | None = None,
                      keep: int = MAX_LIMIT) -> tuple[int, list[int]]:
    """Remove dead letters for good through the running store (``DELETE /__edge/dlq``).

    Returns:
        ``(how many were removed, the first keep of their ids)``.
    """
    return await drive(store, _deleting(store, step, dlq_id, keep))


def delete_offline(store, *, step: str | None = None, dlq_id: int | None = None) -> int:
    """:func:`delete_dead` on the data directory (``edge dlq delete`` without a server);
    how many were removed."""
    return drive_sync(store, _deleting(store, step, dlq_id, 0))[0]
