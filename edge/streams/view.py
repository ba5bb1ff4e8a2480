"""``ctx.streams`` and ``ctx.streams.<name>``: the calls handlers make, under both Motia dialects' names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._loops import answer
from .records import StreamError

if TYPE_CHECKING:
    from .store import Streams

__all__ = ["StreamHandle", "StreamsView"]


class StreamHandle:
    """``ctx.streams.<name>``: the calls of one stream, with the names both Motia dialects use."""

    __slots__ = ("_streams", "name")

    def __init__(self, streams: Streams, name: str):
        self._streams = streams
        self.name = name

    # From async code ``await`` these; from a sync handler's thread they return the result.

    def get(self, group_id: str, id: str) -> Any:
        return answer(self._streams.get_nowait(self.name, group_id, id))

    def set(self, group_id: str, id: str, data: Any) -> dict:
        return self._streams.set(self.name, group_id, id, data)

    def delete(self, group_id: str, id: str) -> Any:
        return self._streams.delete(self.name, group_id, id)

    def get_group(self, group_id: str) -> list[Any]:
        return answer(self._streams.get_group_nowait(self.name, group_id))

    getGroup = get_group
    list = get_group

    def update(self, group_id: str, id: str, ops) -> dict:
        return self._streams.update(self.name, group_id, id, ops)

    def send(self, channel: dict, event: dict) -> None:
        self._streams.send_nowait(self.name, channel, event)
        return answer(None)

    def list_groups(self) -> list[str]:
        return answer(self._streams.list_groups_nowait(self.name))

    listGroups = list_groups

    def __repr__(self) -> str:
        return f"<stream {self.name}>"


class StreamsView:
    """``ctx.streams``: ``ctx.streams.todos`` or ``ctx.streams["todos"]``."""

    __slots__ = ("_streams", "_handles")

    def __init__(self, streams: Streams):
        self._streams = streams
        self._handles: dict[str, StreamHandle] = {}

    def __getitem__(self, name: str) -> StreamHandle:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = self._streams.handle(name)
        return handle

    def __getattr__(self, name: str) -> StreamHandle:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except StreamError as exc:
            raise AttributeError(str(exc)) from None

    def get(self, name: str, default: Any = None) -> StreamHandle | None:
        """``ctx.streams.get("todos")``: Motia 1.0's ``ctx.streams`` was a dict."""
        return self[name] if name in self._streams.streams else default

    def __contains__(self, name: str) -> bool:
        return name in self._streams.streams

    def __iter__(self):
        return iter(sorted(self._streams.streams))

    def __repr__(self) -> str:
        return f"<streams {', '.join(sorted(self._streams.streams))}>"
