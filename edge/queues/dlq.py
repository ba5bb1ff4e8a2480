"""Dead letters: reading them, and putting them back on their queue without a running server.

With a server running, ``edge dlq redrive`` goes through :meth:`QueueService.redrive` (so the
running loaders see the messages at once); these functions serve ``edge dlq`` when it works
on the data directory directly.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import records as R
from .records import decode_dead, encode_redriven

__all__ = ["select", "list_dead", "as_dict", "redrive_offline", "delete_dead"]


def select(txn, *, step: str | None = None, dlq_id: int | None = None, limit: int | None = None):
    """``[(key, DeadLetter)]`` oldest first, filtered by step and/or id (a read function)."""
    if dlq_id is not None:
        raw = txn.get("dlq", R.dlq_key(dlq_id)) if 0 < dlq_id < 1 << 64 else None
        if raw is None:
            return []
        dead = decode_dead(raw)
        return [] if step is not None and dead.step != step else [(R.dlq_key(dlq_id), dead)]
    out = []
    for key, value in txn.scan("dlq"):
        dead = decode_dead(value)
        if step is not None and dead.step != step:
            continue
        out.append((key, dead))
        if limit is not None and len(out) >= limit:
            break
    return out


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
    return store.read(lambda t: [as_dict(k, d) for k, d in select(t, step=step, limit=limit)])


def redrive_offline(store, *, step: str | None = None, dlq_id: int | None = None) -> list[int]:
    """Move dead letters back to their queue in one transaction (the server is not running).

    The subscription is looked up (or registered) by step and topic; the server delivers
    the messages when it starts, if the step still subscribes to the topic.

    Returns:
        The ids moved (empty when ``dlq_id`` does not exist).
    """

    def move(txn):
        entries = select(txn, step=step, dlq_id=dlq_id)
        if not entries:
            return []
        ids = R.register_subscriptions(txn, sorted({(d.step, d.topic) for _, d in entries}))
        seq = R.next_seq(txn, R.SEQ_KEY, len(entries))
        for key, dead in entries:
            prefix = ids[(dead.step, dead.topic)].to_bytes(4, "big")
            txn.put("queue", prefix + seq.to_bytes(8, "big"), encode_redriven(dead))
            txn.delete("dlq", key)
            seq += 1
        return [R.dlq_id(k) for k, _ in entries]

    return store.write_sync(move)


async def delete_dead(store, *, step: str | None = None, dlq_id: int | None = None) -> list[int]:
    """Remove dead letters for good (the console's delete): one id, one step's, or all of them.

    Returns:
        The ids removed (empty when ``dlq_id`` does not exist).
    """

    def remove(txn):
        entries = select(txn, step=step, dlq_id=dlq_id)
        for key, _ in entries:
            txn.delete("dlq", key)
        return [R.dlq_id(k) for k, _ in entries]

    return await store.write(remove)
