"""``Stream("name")``: Motia 1.0's module-level stream handle, over edge's streams.

A ``Stream`` needs no ``*_stream.py``: discovery finds module-level ``Stream`` objects in the
project's modules and declares their streams (default storage, no schema unless a
``StreamConfig`` gives one). Methods and arguments are Motia's (``get``, ``set``, ``delete``,
``get_group``/``list``, ``update``, ``list_groups``), plus edge's ``send``. ``set`` and
``update`` answer ``{"old_value", "new_value"}`` as Motia's engine did; ``delete`` the old
item. Synchronous and awaited calls both work (see ``motia._runtime``).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from edge._loops import Ready, in_async

from ._runtime import MotiaError, Then, answer, awaited, current, runtime_of, settle, write_soon
from ._state import motia_ops
from ._types import StreamConfig

__all__ = ["Stream"]

TData = TypeVar("TData")
_list = list  # Stream.list shadows the builtin inside the class


class Stream(Generic[TData]):
    """``todo_stream: Stream[dict] = Stream("todo")`` (or ``Stream(StreamConfig(name=...))``)."""

    def __init__(self, config: StreamConfig | str | dict) -> None:
        if isinstance(config, str):
            self.stream_name = config
            self.config = StreamConfig(name=config)
        elif isinstance(config, dict):
            self.config = StreamConfig(**config)
            self.stream_name = self.config.name
        else:
            self.stream_name = config.name
            self.config = config
        if not isinstance(self.stream_name, str) or not self.stream_name:
            raise MotiaError(f"Stream(...): expected a stream name or a StreamConfig with a name, got {config!r}")

    def __edge_stream_config__(self) -> dict:
        """What discovery declares for this stream (see edge.steps.discovery)."""
        config = self.config
        out: dict[str, Any] = {"name": self.stream_name}
        for key in ("description", "schema", "base_config", "on_join", "on_leave", "can_access"):
            value = getattr(config, key, None)
            if value is not None:
                out[key] = value
        return out

    def _streams(self, what: str, reads: tuple | None = None):
        """The streams, once this invocation's queued sets of what the call ``reads``
        (``(group, id)``, ``(group,)``, ``()``: the whole stream) are durable
        (``motia._runtime.settle``)."""
        ctx = current(f"Stream({self.stream_name!r}).{what}")
        streams = runtime_of(ctx).streams
        if self.stream_name not in streams.streams:
            raise MotiaError(
                f"Stream({self.stream_name!r}).{what}: no stream named {self.stream_name!r} was declared when "
                f"the steps were loaded; create Stream({self.stream_name!r}) at module level in a step file (or in "
                f"a module a step imports), or add a {self.stream_name}_stream.py file"
            )
        if reads is not None:
            settle(ctx, ("stream", self.stream_name, *reads))
        return streams

    def get(self, group_id: str, item_id: str) -> TData | None:
        value = self._streams("get", (group_id, item_id)).get_nowait(self.stream_name, group_id, item_id)
        return Ready(value) if awaited() else answer(value)

    def set(self, group_id: str, item_id: str, data: TData) -> Any:
        """Store an item (validated, ``id`` added); answers ``{"old_value", "new_value"}``."""
        streams = self._streams("set", (group_id, item_id))
        name = self.stream_name
        old = streams.get_nowait(name, group_id, item_id, f"ctx.streams.{name}.set")
        if awaited():
            return Then(streams.set(name, group_id, item_id, data), lambda new: {"old_value": old, "new_value": new})
        plan = streams._plan_set(name, group_id, item_id, data)
        if in_async():  # on the loop thread: queued, not waited for (motia._runtime)
            new, done = streams._perform_soon(plan)
            write_soon(done, ("stream", name, group_id, item_id) if plan[0].memory is None else None)
        else:
            new = streams._execute_blocking(plan)
        return answer({"old_value": old, "new_value": new})

    def update(self, group_id: str, item_id: str, ops: Any) -> Any:
        """Apply update ops atomically; answers ``{"old_value", "new_value"}``."""
        streams = self._streams("update", (group_id, item_id))
        name = self.stream_name
        ops = motia_ops(ops)
        old = streams.get_nowait(name, group_id, item_id, f"ctx.streams.{name}.update")
        if awaited():
            return Then(streams.update(name, group_id, item_id, ops), lambda new: {"old_value": old, "new_value": new})
        new = streams._execute_blocking(streams._plan_update(name, group_id, item_id, ops))
        return answer({"old_value": old, "new_value": new})

    def delete(self, group_id: str, item_id: str) -> Any:
        """Remove an item; answers it (None when there was none)."""
        streams = self._streams("delete")
        if awaited():
            return streams.delete(self.stream_name, group_id, item_id)
        return answer(streams._execute_blocking(streams._plan_delete(self.stream_name, group_id, item_id)))

    def get_group(self, group_id: str) -> _list[TData]:
        value = self._streams("get_group", (group_id,)).get_group_nowait(self.stream_name, group_id)
        return Ready(value) if awaited() else answer(value)

    list = get_group
    getGroup = get_group

    def list_groups(self) -> _list[str]:
        value = self._streams("list_groups", ()).list_groups_nowait(self.stream_name)
        return Ready(value) if awaited() else answer(value)

    def send(self, channel: dict, event: dict) -> None:
        """Push a custom event ``{type, data}`` to ``{"groupId", "id"?}`` (not stored)."""
        self._streams("send").send_nowait(self.stream_name, channel, event)
        return Ready(None) if awaited() else None

    def __repr__(self) -> str:
        return f"Stream({self.stream_name!r})"
