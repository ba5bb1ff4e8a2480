"""What a queue message and a dead letter look like on disk, where they are kept, and the
retry arithmetic. Pure functions over a store transaction; no trio, no runtime.

Key layout (integers are fixed-width big-endian, so LMDB's byte order is numeric order):

    queue  sub_id (4 bytes) + seq (8 bytes)   -> Message  (msgpack array)
    dlq    dlq_id (8 bytes)                   -> DeadLetter (msgpack map)
    meta   b"queue/seq"                        -> last message seq handed out (8 bytes)
           b"queue/dlq-seq"                    -> last dead-letter id handed out (8 bytes)
           b"queue/next-sub"                   -> next subscription id (4 bytes)
           b"queue/sub/" + step + NUL + topic  -> sub_id (4 bytes)
           b"queue/sub-id/" + sub_id           -> msgpack [step, topic]

A *subscription* is one (step name, topic) pair: every subscriber of a topic gets its own
copy of each message under its own prefix (fan-out), so acking, retrying and dead-lettering
one copy never touches another. The id is persisted, so renaming a step's file or reordering
its triggers keeps its backlog.

The message seq is allocated *inside the write transaction* from ``queue/seq``: seqs are
therefore strictly increasing in commit order, which is what lets the loader scan each
subscription forward from a cursor without ever missing a message (see service.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "Message",
    "DeadLetter",
    "SEQ_KEY",
    "DLQ_SEQ_KEY",
    "MAX_BACKOFF",
    "backoff_delay",
    "encode_message",
    "decode_message",
    "encode_dead",
    "decode_dead",
    "encode_redriven",
    "dlq_key",
    "dlq_id",
    "register_subscriptions",
    "subscription_names",
    "next_seq",
]

SEQ_KEY = b"queue/seq"
DLQ_SEQ_KEY = b"queue/dlq-seq"
_NEXT_SUB = b"queue/next-sub"
_SUB = b"queue/sub/"
_SUB_ID = b"queue/sub-id/"

#: Longest wait between two attempts of an exponential backoff: past this, doubling again
#: only hides a failing handler for longer (24 h).
MAX_BACKOFF = 86_400.0


class Message(msgspec.Struct, array_like=True):
    """One stored copy of a message, for one subscription: a msgpack array.

    Trailing fields at their defaults are not written (see :func:`encode_message`), so a
    fresh message costs its data plus ~45 bytes.
    """

    trace: str  # trace id of the producer: the consumer runs in the same trace
    data: msgspec.Raw  # the message data, msgpack-encoded once and shared by all copies
    at: int  # wall-clock ms when it was enqueued
    group: str | None = None  # messageGroupId (FIFO order key)
    attempts: int = 0  # failed attempts so far
    due: int = 0  # wall-clock ms before which it is not delivered; 0: now
    error: str | None = None  # the last failure, while it waits for a retry
    parent: str | None = None  # span id of the run that enqueued it: the consumer's span names it
    wait: int = 0  # ms: the wait ``due`` was set with (a ``Retry(delay=)`` may exceed the backoff)


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A message whose handler failed on every attempt (or that can no longer be delivered)."""

    step: str
    topic: str
    data: msgspec.Raw
    error: str
    attempts: int
    failed_at: float  # wall-clock seconds
    trace_id: str
    enqueued_at: float  # wall-clock seconds
    group: str | None = None
    error_id: str | None = None  # ties the entry to the logged traceback


_encode = msgspec.msgpack.Encoder().encode
_decode_message = msgspec.msgpack.Decoder(Message).decode
_decode_dead = msgspec.msgpack.Decoder(DeadLetter).decode


def encode_message(message: Message) -> bytes:
    # msgspec writes every field of an array_like struct; drop the trailing defaults
    # (decoding fills them back in).
    fields = [message.trace, message.data, message.at, message.group, message.attempts,
              message.due, message.error, message.parent, message.wait]
    while len(fields) > 3 and fields[-1] in _TRAILING_DEFAULTS[len(fields) - 4]:
        fields.pop()
    return _encode(fields)


#: Default value of fields 4..9 (group, attempts, due, error, parent, wait), by position after ``at``.
_TRAILING_DEFAULTS = ((None,), (0,), (0,), (None,), (None,), (0,))


def decode_message(raw: bytes) -> Message:
    return _decode_message(raw)


def encode_dead(dead: DeadLetter) -> bytes:
    return _encode(dead)


def decode_dead(raw: bytes) -> DeadLetter:
    return _decode_dead(raw)


def encode_redriven(dead: DeadLetter, due: int = 0) -> bytes:
    """The queue record that puts ``dead`` back on its queue: attempts reset, same trace."""
    return encode_message(Message(dead.trace_id, dead.data, int(dead.enqueued_at * 1000), dead.group, 0, due))


def dlq_key(dlq_id: int) -> bytes:
    return dlq_id.to_bytes(8, "big")


def dlq_id(key: bytes) -> int:
    return int.from_bytes(key, "big")


def backoff_delay(config: Any, failures: int) -> float:
    """Seconds to wait after failure number ``failures`` (1-based) before the next attempt.

    ``exponential``: ``backoffDelayMs * 2**(failures-1)`` (1 s, 2 s, 4 s, ... by default),
    capped at :data:`MAX_BACKOFF`; ``fixed``: ``backoffDelayMs`` every time.
    """
    base = config.backoff_delay_ms / 1000
    if config.backoff_type == "fixed" or failures <= 1:
        return base
    return min(base * 2.0 ** min(failures - 1, 64), MAX_BACKOFF)


def next_seq(txn, key: bytes, count: int) -> int:
    """Reserve ``count`` numbers of the counter at ``key``; return the first one (>= 1)."""
    raw = txn.get("meta", key)
    last = int.from_bytes(raw, "big") if raw else 0
    txn.put("meta", key, (last + count).to_bytes(8, "big"))
    return last + 1


def register_subscriptions(txn, pairs) -> dict[tuple[str, str], int]:
    """Ids of the ``(step, topic)`` pairs, allocating ids for new ones (a write function)."""
    out = {}
    for step, topic in pairs:
        name = _SUB + step.encode() + b"\x00" + topic.encode()
        raw = txn.get("meta", name)
        if raw is None:
            raw_next = txn.get("meta", _NEXT_SUB)
            sub_id = int.from_bytes(raw_next, "big") if raw_next else 1
            txn.put("meta", _NEXT_SUB, (sub_id + 1).to_bytes(4, "big"))
            raw = sub_id.to_bytes(4, "big")
            txn.put("meta", name, raw)
            txn.put("meta", _SUB_ID + raw, _encode([step, topic]))
        out[(step, topic)] = int.from_bytes(raw, "big")
    return out


def subscription_names(txn) -> dict[int, tuple[str, str]]:
    """Every subscription id ever registered -> ``(step, topic)`` (a read function)."""
    out = {}
    for key, value in txn.scan("meta", _SUB_ID):
        step, topic = msgspec.msgpack.decode(value)
        out[int.from_bytes(key[len(_SUB_ID):], "big")] = (step, topic)
    return out
