"""The values streams hand around: changes, trigger events, subscriptions, and their errors."""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import EdgeError
from ..records import Record

__all__ = ["StreamError", "Record", "Subscription", "AuthContext", "StreamEvent", "ChangeEvent", "StreamChange",
           "matching_triggers", "CREATE", "UPDATE", "DELETE"]

#: Event types a change carries (what Motia's clients understand).
CREATE, UPDATE, DELETE = "create", "update", "delete"


class StreamError(EdgeError):
    """A stream call had bad arguments: unknown stream, empty group or id, data not an object."""


class Subscription(Record):
    """What ``canAccess(subscription, auth_context)`` receives: streamName, groupId, id, subscriptionId."""

    __slots__ = ()
    _ALIASES = {"stream_name": "streamName", "group_id": "groupId", "subscription_id": "subscriptionId",
                "item_id": "id"}


class AuthContext(Record):
    """``auth_context`` of ``canAccess``: the ``token`` the client sent (subprotocol or ``?authToken=``)."""

    __slots__ = ()


class ChangeEvent(Record):
    """``event`` of a stream trigger's input: ``type`` ("create" | "update" | "delete") and
    ``data``, as keys and as attributes (Motia 1.0: ``input.event.type``)."""

    __slots__ = ()


class StreamEvent(Record):
    """A stream trigger's input: ``stream_name``, ``group_id``, ``id``, ``event`` ({type, data})."""

    __slots__ = ()
    _ALIASES = {"stream_name": "streamName", "group_id": "groupId", "item_id": "id"}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        event = dict.get(self, "event")
        if isinstance(event, dict) and not isinstance(event, ChangeEvent):
            dict.__setitem__(self, "event", ChangeEvent(event))


class StreamChange:
    """One committed change of an item, as published and as handed to ``on_change``."""

    __slots__ = ("stream", "group", "id", "kind", "data", "old", "trace_id", "parent")

    def __init__(self, stream: str, group: str, id: str, kind: str = UPDATE, data: Any = None,
                 trace_id: str | None = None, parent: str | None = None):
        self.stream = stream
        self.group = group
        self.id = id
        self.kind = kind  # create | update | delete
        self.data = data  # the item (for delete: the item removed)
        self.old = None  # the item before (None for create)
        #: the trace and span of the invocation that made the change: its stream triggers
        #: continue the trace and name the span as their parent
        self.trace_id = trace_id
        self.parent = parent

    def event(self) -> StreamEvent:
        """The stream trigger input for this change (plain data: it is stored in a queue)."""
        return StreamEvent(streamName=self.stream, groupId=self.group, id=self.id,
                           event={"type": self.kind, "data": self.data})

    def __repr__(self) -> str:
        return f"StreamChange({self.kind} {self.stream}/{self.group}/{self.id})"


def matching_triggers(steps: Iterable, change: StreamChange) -> list[tuple[Any, Any]]:
    """The ``(step, trigger)`` pairs whose stream trigger listens to ``change``.

    Filters are the trigger's ``streamName``, ``groupId`` and ``itemId``; its ``condition`` is
    the queue worker's business (it runs with a ctx, at delivery time).
    """
    out = []
    for step in steps:
        for trigger in step.triggers:
            if (trigger.type == "stream" and trigger.stream_name == change.stream
                    and (trigger.group_id is None or trigger.group_id == change.group)
                    and (trigger.item_id is None or trigger.item_id == change.id)):
                out.append((step, trigger))
    return out
