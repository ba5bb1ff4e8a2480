"""Orphaned messages: stored for a (step, topic) subscription that no step has any more (the
step was renamed or removed, or its trigger's topic renamed).

They wait, and are delivered if a step of that name subscribes to that topic again (the
subscription's id is persisted, see records.py). ``edge dlq orphans`` lists them;
``--move`` turns them into dead letters, where ``edge dlq list``, ``edge dlq redrive --to``
and ``edge dlq delete`` apply. Nothing moves them on its own: a step renamed back finds its
backlog where it was.

Memory stays bounded whatever their number: a listing counts each orphaned subscription's
messages and decodes only its first few; a move runs in transactions of
:data:`~.dlq.CHUNK` messages, each moved in the transaction that deletes it.
"""

from __future__ import annotations

import msgspec

from . import records as R
from .dlq import CHUNK, internal_trigger
from .records import DeadLetter, decode_message, encode_dead

__all__ = ["failed_files", "orphaned", "orphans_warning", "moving", "moving_refused", "orphan_error", "SAMPLE"]

#: Messages of each orphaned subscription whose data a listing shows.
SAMPLE = 3
#: A listing counts each subscription's messages up to this many ("at least" beyond).
COUNT_LIMIT = 100_000


def moving_refused(discovery, project: str) -> str | None:
    """Why orphans must not be moved now (None: they may). A step whose file failed to load,
    or a project folder with no steps at all (a wrong --dir), would make live queues look
    orphaned, and a move would take their messages out of them."""
    if discovery.errors:
        files = ", ".join(sorted({error.file for error in discovery.errors}))
        return (f"{len(discovery.errors)} step file(s) failed to load ({files}); their messages would look "
                "orphaned: fix them (edge steps lists the errors), then move again")
    if not discovery.steps:
        return (f"no steps found in {project}; every stored message would look orphaned: pass the --dir of "
                "the project that owns the data directory")
    return None


def failed_files(discovery) -> str:
    """`` (N step file(s) failed to load: a, b; edge steps lists the errors)`` or ``""``: said
    after "no such step", which may be one whose file does not load."""
    if not discovery.errors:
        return ""
    files = ", ".join(sorted({error.file for error in discovery.errors}))
    return f" ({len(discovery.errors)} step file(s) failed to load: {files}; edge steps lists the errors)"


def orphans_warning(n: int, step: str, topic: str) -> str:
    """What the start says of ``n`` stored messages of (``step``, ``topic``) that no step takes."""
    trigger = internal_trigger(topic)
    if trigger is not None:  # a state or stream trigger's runs: no other step can take them
        kind, index = trigger
        return (f'{n} stored run(s) of a {kind} trigger of step "{step}" (triggers[{index}]) '
                "wait for a trigger the step no longer has; they are kept and run when it has it again. "
                f"`edge dlq orphans` shows them, `edge dlq orphans --move --step {step}` makes them dead "
                "letters (then `edge dlq delete`)")
    return (f'{n} stored message(s) for step "{step}" on topic "{topic}" wait for a step that no longer '
            "subscribes to it; they are kept and delivered when it does again. `edge dlq orphans` shows them, "
            f"`edge dlq orphans --move --step {step}` makes them dead letters (then `edge dlq redrive --to STEP` "
            "or `edge dlq delete`)")


def orphan_error(step: str, topic: str) -> str:
    """The error a dead letter made of an orphaned message carries."""
    return f'step "{step}" no longer subscribes to "{topic}" (renamed or removed?)'


def _orphaned_subs(txn, live: set[bytes], step: str | None) -> list[tuple[bytes, str, str]]:
    """``(prefix, step, topic)`` of every registered subscription not in ``live``, by name."""
    out = [(sub_id.to_bytes(4, "big"), name, topic)
           for sub_id, (name, topic) in R.subscription_names(txn).items()
           if sub_id.to_bytes(4, "big") not in live and (step is None or name == step)]
    return sorted(out, key=lambda o: (o[1], o[2]))


def orphaned(txn, live: set[bytes], *, step: str | None = None, sample: int = SAMPLE) -> list[dict]:
    """``[{"step", "topic", "count", "at_least", "first": [data, ...]}]`` of the subscriptions outside
    ``live`` (their key prefixes) that hold messages, of ``step`` when given (a read function).
    ``first``: the data of the oldest ``sample`` messages; only those are decoded."""
    out = []
    for prefix, name, topic in _orphaned_subs(txn, live, step):
        first = []
        for _, value in txn.scan("queue", prefix):
            if len(first) == sample:
                break
            first.append(msgspec.msgpack.decode(decode_message(value).data))
        if first:  # counted by key alone, and only so far: this runs on the server's loop thread
            count = txn.count_prefix("queue", prefix, COUNT_LIMIT)
            out.append({"step": name, "topic": topic, "count": count, "at_least": count == COUNT_LIMIT,
                        "first": first})
    return out


def moving(store, live: set[bytes], *, step: str | None, now: float):
    """The plan (run it with :func:`~.dlq.drive` or :func:`~.dlq.drive_sync`) that turns the
    orphaned messages (of ``step``) into dead letters, :data:`CHUNK` per transaction.

    Each subscription's messages move in seq order, so their dead-letter ids keep the order
    they were enqueued in, and a redrive (which moves dead letters in id order) hands a FIFO
    group's messages back in their order. A dead letter keeps the data, the trace, the
    ``messageGroupId``, the attempts and when it was enqueued; ``now`` is its ``failed_at``.

    Returns:
        ``{(step, topic): how many moved}``.
    """
    moved: dict[tuple[str, str], int] = {}
    for prefix, name, topic in store.read(lambda t: _orphaned_subs(t, live, step)):
        error, start = orphan_error(name, topic), None
        while True:
            def chunk(txn, prefix=prefix, name=name, topic=topic, error=error, start=start):
                found, resume = [], None
                for key, value in txn.scan("queue", prefix, start=start):
                    if len(found) >= CHUNK:
                        resume = key
                        break
                    found.append((key, value))
                if found:
                    first = R.next_seq(txn, R.DLQ_SEQ_KEY, len(found))
                    for i, (key, value) in enumerate(found):
                        rec = decode_message(value)
                        dead = DeadLetter(step=name, topic=topic, data=rec.data, error=error, attempts=rec.attempts,
                                          failed_at=now, trace_id=rec.trace, enqueued_at=rec.at / 1000,
                                          group=rec.group)
                        txn.put("dlq", R.dlq_key(first + i), encode_dead(dead))
                        txn.delete("queue", key)
                return len(found), resume

            count, start = yield chunk
            if count:
                moved[(name, topic)] = moved.get((name, topic), 0) + count
            if start is None:
                break
    return moved
