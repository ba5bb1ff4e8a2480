"""What ``ctx.enqueue`` checks and builds: the event's shape, the step's declared topics, the
data against every subscriber's schema, and one encoded record per subscriber.

Nothing here stores anything: the result (:class:`Outgoing`) waits in the invocation's
outbox until the producer succeeded.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import INT_OUT_OF_RANGE, EnqueueError, SchemaError
from ..schema import to_builtins
from .records import Message, encode_message

__all__ = ["Outgoing", "parse_event", "check_declared", "encode_for", "errors_line"]

_EVENT_KEYS = {"topic": "topic", "data": "data", "messageGroupId": "group", "message_group_id": "group"}
_EXAMPLE = '{"topic": "todo.created", "data": {...}}'
_pack = msgspec.msgpack.Encoder().encode


class Outgoing:
    """A prepared enqueue: one encoded record per subscriber, not stored yet."""

    __slots__ = ("topic", "records")

    def __init__(self, topic: str, records: tuple):
        self.topic = topic
        self.records = records  # ((Subscription, record bytes), ...)

    @property
    def steps(self) -> list[str]:
        return [sub.step.name for sub, _ in self.records]


def parse_event(event: Any, where: str = "ctx.enqueue") -> tuple[str, Any, str | None]:
    """``(topic, data, messageGroupId)`` of an enqueue event.

    Raises:
        EnqueueError: saying what is wrong with the event and what it should look like.
    """
    if not isinstance(event, dict):
        raise EnqueueError(f"{where}: expected a dict like {_EXAMPLE}, got {_show(event)}")
    values = {}
    for key, value in event.items():
        name = _EVENT_KEYS.get(key)
        if name is None:
            close = _close_matches(str(key), ["topic", "data", "messageGroupId"], n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise EnqueueError(f'{where}: unknown key "{key}"; {hint}the keys are "topic", "data" and "messageGroupId"')
        values[name] = value
    topic = values.get("topic")
    if topic is None:
        raise EnqueueError(f'{where}: "topic" is required, e.g. {_EXAMPLE}')
    if not isinstance(topic, str) or not topic:
        raise EnqueueError(f'{where}: "topic": expected a non-empty string, got {_show(topic)}')
    group = values.get("group")
    if group is not None and not isinstance(group, str):
        raise EnqueueError(f'{where}: "messageGroupId": expected a string, got {_show(group)}')
    return topic, values.get("data"), group


def check_declared(step, topic: str) -> None:
    """A step with a non-empty ``enqueues`` list may publish only to those topics."""
    if step is not None and step.enqueues and topic not in step.enqueue_topics:
        declared = ", ".join(f'"{e.topic}"' for e in step.enqueues)
        raise EnqueueError(
            f'{step.file}: step "{step.name}" enqueued to topic "{topic}", which is not in its '
            f'enqueues [{declared}]; add "{topic}" to config["enqueues"] or enqueue to a declared topic'
        )


def encode_for(subs, topic: str, data: Any, group: str | None, trace_id: str, at_ms: int,
               where: str = "ctx.enqueue", parent: str | None = None) -> Outgoing:
    """Validate ``data`` against every subscriber's schema and encode one record each.

    Raises:
        EnqueueError: the data has no JSON form.
        SchemaError: it does not match a subscriber's schema (nothing is stored).
    """
    try:
        data = to_builtins(data)
    except TypeError as exc:
        raise EnqueueError(f'{where}("{topic}"): data: {exc}') from None
    for sub in subs:
        if sub.schema is not None:
            try:
                sub.schema.validate(data)
            except SchemaError as exc:
                raise SchemaError(
                    f'{where}("{topic}"): data does not match the input schema of step '
                    f'"{sub.step.name}" ({sub.step.file}): {errors_line(exc.errors)}',
                    exc.errors,
                ) from None
    try:
        raw = msgspec.Raw(_pack(data))  # encoded once, shared by every subscriber's copy
    except OverflowError:
        raise EnqueueError(f'{where}("{topic}"): data: {INT_OUT_OF_RANGE}') from None
    encoded: dict[int, bytes] = {}
    records = []
    for sub in subs:
        due = at_ms + sub.delay_ms if sub.delay_ms else 0
        record = encoded.get(due)
        if record is None:
            record = encoded[due] = encode_message(Message(trace_id, raw, at_ms, group, 0, due, None, parent))
        records.append((sub, record))
    return Outgoing(topic, tuple(records))


def errors_line(errors: list[dict], most: int = 3) -> str:
    """``$.a: problem; $.b: problem`` for a one-line message."""
    shown = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:most])
    if len(errors) > most:
        shown += f"; and {len(errors) - most} more"
    return shown


def _show(value: Any) -> str:
    if isinstance(value, (str, int, float, bool, type(None))):
        text = msgspec.json.encode(value).decode()
        return text if len(text) <= 40 else text[:37] + "..."
    return type(value).__name__


def _close_matches(word, possibilities, n=3, cutoff=0.6):
    """difflib's suggestions, imported only when a message needs one (it is rarely needed)."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=n, cutoff=cutoff)
