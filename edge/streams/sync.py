"""A group join's ``sync``, in pieces: a big group never sits in memory as one frame.

A join of a group of 20,000 items used to build the whole group as one ``sync`` frame and
queue it, once per socket: 50 clients that joined and never read cost 250 MiB. Now the
``sync`` carries the first :data:`PIECE` bytes of items, and the rest follow as ``create``
events, one page of about :data:`PIECE` bytes at a time, read from the store only when the
socket has sent everything before it (``edge.server.ws``). So a socket holds at most about
one piece of its sync, whether its client reads or not.

Why ``create``: Motia's clients replace their list with a ``sync`` and append a ``create`` whose
id they do not have yet; they know no other way to grow a list. A page is read when it is
sent, with the values of that moment; a change made meanwhile reaches the client as its own
event too, in commit order, so the client ends with the current group:

* an item updated (or deleted) before its page: the client has no such item yet, so the
  ``update`` (``delete``) changes nothing, and the page brings the new value (or nothing);
* an item created meanwhile: its ``create`` comes live, and again in its page (clients ignore a
  ``create`` of an id they have).

LMDB groups are read in key (id) order, resuming after the last key sent; memory groups in
insertion order over the ids they had at the join (a list of references: 8 bytes an item).
"""

from __future__ import annotations

import msgspec

__all__ = ["GroupSync", "PIECE"]

#: Bytes of items per piece: the first ``sync`` and each page of ``create`` events. A socket
#: holds about one piece of a join at a time (in its queue or in Granian's send).
PIECE = 64 * 1024

_unpack = msgspec.msgpack.Decoder().decode
_json = msgspec.json.Encoder().encode


class GroupSync:
    """The items of one group join, read piece by piece.

    Args:
        streams: the :class:`~edge.streams.Streams` (read only: its store and its streams).
        name, group: the group joined.
        piece: bytes of items per piece.
    """

    __slots__ = ("_streams", "name", "group", "piece", "done", "_after", "_ids", "_next")

    def __init__(self, streams, name: str, group: str, piece: int = PIECE):
        self._streams = streams
        self.name = name
        self.group = group
        self.piece = piece
        self.done = False
        stream = streams.get_stream(name)
        self._after: bytes = stream.group_prefix(group)  # LMDB: the last key read (or the prefix)
        memory = stream.memory
        self._ids: list[str] | None = None if memory is None else list(memory.get(group, ()))
        self._next = 0  # memory: index into _ids

    def next_items(self) -> list[tuple[str, bytes]]:
        """The next piece as ``(id, item as JSON)`` pairs, at least one unless the group is
        exhausted (then ``done`` is set). Items go out as encoded here (``msgspec.Raw``), so a
        piece's size is exact and each item is encoded once."""
        if self.done:
            return []
        return self._memory_page() if self._ids is not None else self._store_page()

    def _store_page(self) -> list[tuple[str, bytes]]:
        streams = self._streams
        prefix = streams.get_stream(self.name).group_prefix(self.group)
        start = self._after + b"\x00" if self._after != prefix else prefix  # the next key after the last
        limit, skip = self.piece, len(prefix)

        def read(txn) -> tuple[list, bytes | None, bool]:
            out, size, last = [], 0, None
            for key, value in txn.scan("streams", prefix, start=start):
                encoded = _json(_unpack(value))
                out.append((key[skip:].decode(), encoded))
                last = key
                size += len(encoded) + 1  # and its comma
                if size >= limit:
                    return out, last, False
            return out, last, True

        items, last, exhausted = streams.store.read(read)
        if last is not None:
            self._after = last
        self.done = exhausted
        return items

    def _memory_page(self) -> list[tuple[str, bytes]]:
        stream = self._streams.get_stream(self.name)
        current = (stream.memory or {}).get(self.group, {})
        ids, out, size = self._ids, [], 0
        while self._next < len(ids) and size < self.piece:
            id = ids[self._next]
            item = current.get(id)
            self._next += 1
            if item is not None:  # deleted since the join: its delete event went out already
                encoded = _json(item)
                out.append((id, encoded))
                size += len(encoded) + 1  # and its comma
        if self._next >= len(ids):
            self.done = True
            self._ids = []
        return out

