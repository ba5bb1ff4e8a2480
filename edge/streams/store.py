"""Stream storage: LMDB (``storageType: "default"``) or RAM (``"memory"``), validated items,
writes that publish once committed and call ``on_change`` inside their transaction."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import msgspec

from .._loops import Completion, Pending, checkpoint, current_caller, in_async, track
from ..errors import SchemaError
from ..schema import compile_schema, to_builtins
from .._state import StateError, apply_ops, check_ops, encode_value
from .hub import Hub
from .records import CREATE, DELETE, UPDATE, StreamChange, StreamError
from .view import StreamHandle, StreamsView

__all__ = ["Streams", "MAX_KEY"]

_SEP = b"\x00"
_pack = msgspec.msgpack.Encoder()
_unpack = msgspec.msgpack.Decoder()

#: LMDB's largest key (bytes); ``name NUL group NUL id`` must fit.
MAX_KEY = 511
#: Where the hub's clock lead is saved (``meta``), and how far above the saved value a run
#: after a crash starts its timestamps.
_CLOCK_KEY = b"streams.clock"
CLOCK_MARGIN_MS = 1_000


def _copy(item: Any) -> Any:
    """A caller's own copy of a stored (encodable) item: what it does to it changes neither the
    stream nor what subscribers and triggers are sent."""
    return None if item is None else _unpack.decode(_pack.encode(item))


def _check_name(value: Any, what: str, call: str) -> str:
    if not isinstance(value, str) or not value:
        raise StreamError(f"{call}: {what} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise StreamError(f"{call}: {what} must not contain NUL: {value!r}")
    return value


class _Stream:
    """One declared stream: its definition, compiled schema and (memory streams) its items."""

    __slots__ = ("name", "definition", "schema", "memory", "prefix", "triggered")

    def __init__(self, definition, triggered: bool):
        self.name = definition.name
        self.definition = definition
        where = f"{definition.file}: schema" if definition.file else f"stream {definition.name}: schema"
        self.schema = compile_schema(definition.schema, where=where)
        self.memory: dict[str, dict[str, Any]] | None = {} if definition.storage_type == "memory" else None
        self.prefix = definition.name.encode() + _SEP
        self.triggered = triggered

    def key(self, group: str, id: str, call: str) -> bytes:
        key = self.prefix + group.encode() + _SEP + id.encode()
        if len(key) > MAX_KEY:
            raise StreamError(f"{call}: stream name, group id and id together are {len(key)} bytes; "
                              f"the limit is {MAX_KEY}")
        return key

    def group_prefix(self, group: str) -> bytes:
        return self.prefix + group.encode() + _SEP

    def item(self, id: str, data: Any, call: str) -> dict:
        """Validate ``data`` against the schema and return it as a stored item (with ``id``)."""
        value = to_builtins(data)
        if self.schema is not None:
            value = self._validated(id, value, call)
        if not isinstance(value, dict):
            raise StreamError(f"{call}: a stream item must be an object (dict, Struct or pydantic model), "
                              f"got {type(value).__name__}")
        if value.get("id") != id:
            value = {**value, "id": id}
        return value

    def _validated(self, id: str, value: Any, call: str) -> Any:
        with_id = {**value, "id": id} if isinstance(value, dict) else value
        try:
            return to_builtins(self.schema.validate(with_id))
        except SchemaError as exc:
            first = exc
        # A schema that does not declare "id" (and forbids extra keys) accepts the item
        # without it; the id is injected afterwards.
        without = {k: v for k, v in value.items() if k != "id"} if isinstance(value, dict) else value
        try:
            return to_builtins(self.schema.validate(without))
        except SchemaError:
            pass
        errors = [e for e in first.errors if e.get("path") != "$.id"] or first.errors
        shown = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise SchemaError(f"{call}: item {id!r} does not match the schema of stream "
                          f"{self.name!r}: {shown}{more}", errors) from None


class Streams:
    """Every declared stream: reads, writes, ``send`` and the live :class:`Hub`.

    Args:
        store: the :class:`~edge.store.Store`.
        definitions: the ``StreamDef`` values discovery found.
        on_change: ``fn(txn, change)`` called inside the write transaction of every change of a
            stream listed in ``triggered`` (the queue service stores trigger messages there).
        triggered: names of the streams some step has a stream trigger on.
    """

    def __init__(self, store, definitions: Iterable = (), *,
                 on_change: Callable[[Any, StreamChange], None] | None = None,
                 triggered: Iterable[str] = (), clock: Callable[[], float] = time.time):
        self.store = store
        triggered = set(triggered)
        self.streams: dict[str, _Stream] = {d.name: _Stream(d, d.name in triggered) for d in definitions}
        self.on_change = on_change
        self.hub = Hub(clock, floor=self._clock_floor(clock), on_ahead=self._save_clock)
        self._view = StreamsView(self)

    # The hub's clock runs ahead of the wall clock in a burst (timestamps strictly increase,
    # in ms), and Motia's clients drop every frame not newer than the last they saw, also
    # across a reconnect: after a restart, frames must start above what was sent.
    def _save_clock(self, ts: int) -> None:
        self.store.write_nowait(lambda txn: txn.put("meta", _CLOCK_KEY, ts.to_bytes(8, "big")))

    def _clock_floor(self, clock) -> int:
        raw = self.store.read(lambda txn: txn.get("meta", _CLOCK_KEY))
        saved = int.from_bytes(raw, "big") if raw else 0
        # the last lead saved is up to AHEAD_REPORT_MS (and one commit) behind what was sent
        return saved + CLOCK_MARGIN_MS if saved > int(clock() * 1000) else 0

    def left_behind(self) -> dict[str, int]:
        """Items stored for streams no definition names any more (renamed or removed), by
        stream name: kept, and readable again under that name."""
        def count(txn):
            out = {}
            for name in txn.groups("streams", b"", sep=_SEP):
                if name.decode(errors="replace") not in self.streams:
                    out[name.decode(errors="replace")] = txn.count_prefix("streams", name + _SEP)
            return out
        return self.store.read(count)

    def health(self) -> dict:
        """For ``GET /__edge/health``: streams, rooms, frames sent (the server adds its sockets)."""
        return {"streams": sorted(self.streams), "rooms": len(self.hub.rooms), "published": self.hub.published}

    # -- lookup ---------------------------------------------------------------------------

    def view(self, ctx=None) -> "StreamsView":
        """``ctx.streams``."""
        return self._view

    def get_stream(self, name: str, call: str = "ctx.streams") -> _Stream:
        stream = self.streams.get(name)
        if stream is None:
            known = ", ".join(sorted(self.streams)) or "none (add a *_stream.py file under steps/)"
            raise StreamError(f"{call}: no stream named {name!r}; known streams: {known}")
        return stream

    def handle(self, name: str) -> "StreamHandle":
        """``ctx.streams.<name>``."""
        self.get_stream(name, f"ctx.streams.{name}")
        return StreamHandle(self, name)

    # -- reads (synchronous under the hood) -------------------------------------------------

    def get_nowait(self, name: str, group: str, id: str, call: str | None = None) -> Any:
        """The item now (None: there is none); ``call`` names what errors say was called (a
        ``set`` reads the old item first: its errors name the set)."""
        call = call or f"ctx.streams.{name}.get"
        stream = self.get_stream(name, call)
        _check_name(group, "group id", call)
        _check_name(id, "id", call)
        key = stream.key(group, id, call)
        if stream.memory is not None:
            return _copy(stream.memory.get(group, {}).get(id))
        raw = self.store.read(lambda t: t.get("streams", key))
        return None if raw is None else _unpack.decode(raw)

    def get_group_nowait(self, name: str, group: str) -> list[Any]:
        call = f"ctx.streams.{name}.get_group"
        stream = self.get_stream(name, call)
        _check_name(group, "group id", call)
        if stream.memory is not None:
            return _copy(list(stream.memory.get(group, {}).values()))
        prefix = stream.group_prefix(group)
        return self.store.read(lambda t: [_unpack.decode(v) for _, v in t.scan("streams", prefix)])

    def list_groups_nowait(self, name: str) -> list[str]:
        stream = self.get_stream(name, f"ctx.streams.{name}.list_groups")
        if stream.memory is not None:
            return [g for g, items in stream.memory.items() if items]
        return self.store.read(lambda t: [g.decode() for g in t.groups("streams", stream.prefix, sep=_SEP)])

    # -- writes -----------------------------------------------------------------------------

    # set/update/delete work from async code (asyncio or trio: ``await`` them) and from a sync
    # handler's thread (they return the result). The write is queued at call time, so it
    # happens even if not awaited; the boundary waits for it before answering.

    def set(self, name: str, group: str, id: str, data: Any) -> dict:
        """Store ``data`` as item ``id`` of ``group`` (validated, ``id`` injected); return the item."""
        return self._perform(self._plan_set(name, group, id, data))

    def update(self, name: str, group: str, id: str, ops) -> dict:
        """Apply update ops (as ``ctx.state.update``) atomically; the result is validated; return it."""
        return self._perform(self._plan_update(name, group, id, ops))

    def delete(self, name: str, group: str, id: str) -> Any:
        """Remove an item; return it (None when there was none, and then nothing is published)."""
        return self._perform(self._plan_delete(name, group, id))

    async def send(self, name: str, channel: dict, event: dict) -> int:
        """Push a custom event; see :meth:`send_nowait`."""
        receivers = self.send_nowait(name, channel, event)
        await checkpoint()  # as in _execute: let the writers run between events
        return receivers

    def send_nowait(self, name: str, channel: dict, event: dict) -> int:
        """Push a custom event ``{type, data}`` to ``channel`` ``{groupId, id?}``; returns receivers.

        Events are not stored and fire no triggers; with an ``id`` they reach the item's and
        the group's subscribers, without one the group's.
        """
        call = f"ctx.streams.{name}.send"
        self.get_stream(name, call)
        if not isinstance(channel, dict):
            raise StreamError(f'{call}: channel must be {{"groupId": ..., "id"?: ...}}, got {channel!r}')
        group = _check_name(channel.get("groupId", channel.get("group_id")), 'channel["groupId"]', call)
        id = channel.get("id")
        if id is not None:
            _check_name(id, 'channel["id"]', call)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not event["type"]:
            raise StreamError(f'{call}: event must be {{"type": "<name>", "data": ...}}, got {event!r}')
        custom = {"type": event["type"], "data": to_builtins(event.get("data"))}
        return self.hub.publish(name, group, id, {"type": "event", "event": custom})

    # Synchronous forms (the CLI, tests): they block until the write is durable.
    def set_sync(self, name: str, group: str, id: str, data: Any) -> dict:
        return self._execute_blocking(self._plan_set(name, group, id, data))

    def update_sync(self, name: str, group: str, id: str, ops) -> dict:
        return self._execute_blocking(self._plan_update(name, group, id, ops))

    def delete_sync(self, name: str, group: str, id: str) -> Any:
        return self._execute_blocking(self._plan_delete(name, group, id))

    # -- write plans ------------------------------------------------------------------------
    # A plan is (stream, change, op): ``op(txn)`` for LMDB streams, or ``op(old) -> new item``
    # (None: delete) for memory streams.

    def _plan_set(self, name, group, id, data):
        call = f"ctx.streams.{name}.set"
        stream, change = self._prepare(name, group, id, call)
        item = stream.item(id, data, call)
        # Both kinds: a memory item keeps the limits of a stored one, checked before anything changes.
        packed = encode_value(item, f"{call}: item {id!r}")
        if stream.memory is not None:
            return stream, change, lambda old: item
        key = stream.key(group, id, call)

        def op(t):
            old = t.get("streams", key)
            t.put("streams", key, packed)
            change.kind = CREATE if old is None else UPDATE
            change.data = item
            self._committing(t, stream, change)
            return item

        op.copy = lambda: _unpack.decode(packed)  # as state's set op (edge._state): answered before the commit
        return stream, change, op

    def _plan_update(self, name, group, id, ops):
        call = f"ctx.streams.{name}.update"
        stream, change = self._prepare(name, group, id, call)
        try:
            ops = check_ops(ops)
        except StateError as exc:
            raise StreamError(str(exc).replace("state.update", call)) from None

        def new_item(old):
            try:
                new = apply_ops(old, ops)
            except StateError as exc:  # (the ops' errors are state's: name this call)
                raise StreamError(str(exc).replace("state.update", call)) from None
            return stream.item(id, new, call)

        if stream.memory is not None:
            def checked(old):  # as set: refused before it is stored
                item = new_item(old)
                encode_value(item, f"{call}: item {id!r}")
                return item

            return stream, change, checked
        key = stream.key(group, id, call)

        def op(t):
            raw = t.get("streams", key)
            old = None if raw is None else _unpack.decode(raw)
            item = new_item(old)
            t.put("streams", key, encode_value(item, f"{call}: item {id!r}"))
            change.kind = CREATE if raw is None else UPDATE
            change.data, change.old = item, old
            self._committing(t, stream, change)
            return item

        return stream, change, op

    def _plan_delete(self, name, group, id):
        call = f"ctx.streams.{name}.delete"
        stream, change = self._prepare(name, group, id, call)
        change.kind = DELETE
        if stream.memory is not None:
            return stream, change, None
        key = stream.key(group, id, call)

        def op(t):
            raw = t.get("streams", key)
            if raw is None:
                return None
            t.delete("streams", key)
            change.data = change.old = _unpack.decode(raw)
            self._committing(t, stream, change)
            return change.data

        return stream, change, op

    def _prepare(self, name, group, id, call) -> tuple[_Stream, StreamChange]:
        stream = self.get_stream(name, call)
        _check_name(group, "group id", call)
        _check_name(id, "id", call)
        stream.key(group, id, call)  # the same limits whatever the storage type
        trace_id, parent = current_caller()
        return stream, StreamChange(name, group, id, trace_id=trace_id, parent=parent)

    def _committing(self, txn, stream: _Stream, change: StreamChange) -> None:
        """Last step of every LMDB stream write op, inside its transaction."""
        if self._fires(stream):
            self.on_change(txn, change)
        txn.after_commit(lambda: self._publish_change(change))

    def _perform(self, plan) -> Any:
        stream, change, op = plan
        if not in_async():
            return self._execute_blocking(plan)
        if stream.memory is None:
            done = self.store.submit(op)
            track(done)
            return Pending(done)
        if self._apply_memory(stream, change, op) and self._fires(stream):
            answer = _copy(change.data)

            # Memory items are not durable, but the triggers they fire are.
            def fire(t):
                self.on_change(t, change)
                return answer

            done = self.store.submit(fire)
            track(done)
            return Pending(done)
        # Awaiting lets the sockets' writers run: a handler setting items in a loop must not
        # fill every subscriber's queue before any of them had a chance to send.
        return _Yielding(_copy(change.data))

    def _perform_soon(self, plan) -> tuple[Any, Completion | None]:
        """Start a set ``plan`` (as :meth:`_perform`) and answer the item now, without waiting:
        ``(item, completion)``, the item a copy of what is stored, the completion blockable
        (``Store.submit``), or None when there is nothing to store (a memory stream no trigger
        watches). For Motia 1.0.4's synchronous calls on the loop thread (``motia._streams``)."""
        stream, change, op = plan
        if stream.memory is None:
            return op.copy(), self.store.submit(op, blockable=True)
        fires = self._apply_memory(stream, change, op) and self._fires(stream)
        done = self.store.submit(lambda t: self.on_change(t, change), blockable=True) if fires else None
        return _copy(change.data), done

    def _execute_blocking(self, plan) -> Any:
        stream, change, op = plan
        if stream.memory is None:
            # A copy: the writer wakes this thread before the loop publishes the item.
            return _copy(self.store.write_blocking(op))
        if self._apply_memory(stream, change, op) and self._fires(stream):
            self.store.write_blocking(lambda t: self.on_change(t, change))
        return _copy(change.data)

    def _fires(self, stream: _Stream) -> bool:
        """Whether changes of ``stream`` call ``on_change`` (some step has a trigger on it)."""
        return stream.triggered and self.on_change is not None

    def _apply_memory(self, stream: _Stream, change: StreamChange, new_item) -> bool:
        """Apply a change to a memory stream now (no await in between) and publish it; False: no-op."""
        items = stream.memory.setdefault(change.group, {})
        old = items.get(change.id)
        if new_item is None:  # delete
            if old is not None:
                del items[change.id]
            if not items:
                del stream.memory[change.group]
            if old is None:
                return False
            change.data = change.old = old
        else:
            try:
                item = new_item(old)
            except BaseException:
                if not items:
                    del stream.memory[change.group]
                raise
            items[change.id] = item
            change.kind = CREATE if old is None else UPDATE
            change.data, change.old = item, old
        self._publish_change(change)
        return True

    def _publish_change(self, change: StreamChange) -> None:
        self.hub.publish(change.stream, change.group, change.id, {"type": change.kind, "data": change.data})

    # -- for the WebSocket layer ----------------------------------------------------------------

    def sync_event(self, name: str, group: str, id: str | None) -> dict:
        """The ``sync`` event a join answers with: the item (or null), or the group's items."""
        if id is None:
            return {"type": "sync", "data": self.get_group_nowait(name, group)}
        return {"type": "sync", "data": self.get_nowait(name, group, id)}


class _Yielding:
    """An awaitable that gives the loop a turn, then returns ``value``."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield from checkpoint().__await__()
        return self.value
