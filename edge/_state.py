"""State: a grouped key-value store in LMDB (``group``, ``key`` -> JSON value, stored as msgpack).

Every change can be observed inside its own write transaction (``on_change``), so the state
triggers it fires are stored atomically with it: a change is never committed without them.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import msgspec

from ._loops import Pending, answer, current_caller, in_async, track
from .errors import INT_OUT_OF_RANGE, EdgeError
from .records import Record

__all__ = ["StateStore", "StateEvent", "apply_ops", "check_ops", "StateError"]

_SEP = b"\x00"
_pack = msgspec.msgpack.Encoder()
_unpack = msgspec.msgpack.Decoder()
#: LMDB's largest key in bytes; ``group NUL key`` must fit.
MAX_KEY = 511

#: ``on_change(txn, event_type, group, key, old, new, trace_id=..., parent=...)`` runs in the
#: writer's transaction; ``trace_id`` and ``parent`` are the trace and the span of the
#: invocation that made the change (None for changes from outside a handler).
ChangeHook = Callable[..., None]


class StateEvent(Record):
    """A state trigger's input: ``group_id``, ``item_id``, ``old_value``, ``new_value``,
    ``event_type`` ("created" | "updated" | "deleted"); read by attribute or key, with the
    snake_case names, their camelCase forms, or Motia's ``scope`` / ``key``.
    """

    __slots__ = ()
    _ALIASES = {
        "groupId": "group_id", "scope": "group_id", "group": "group_id",
        "itemId": "item_id", "key": "item_id",
        "oldValue": "old_value", "newValue": "new_value",
        "eventType": "event_type", "type": "event_type",
    }


class StateError(EdgeError):
    """A state call had bad arguments (empty group, a bad update op)."""


def _key(group: str, key: str) -> bytes:
    if not isinstance(group, str) or not group:
        raise StateError(f"state group must be a non-empty string, got {group!r}")
    if not isinstance(key, str) or not key:
        raise StateError(f"state key must be a non-empty string, got {key!r}")
    if "\x00" in group:
        raise StateError(f"state group must not contain NUL: {group!r}")
    out = group.encode() + _SEP + key.encode()
    if len(out) > MAX_KEY:
        raise StateError(f"state group and key together are {len(out)} bytes (UTF-8); the limit is "
                         f"{MAX_KEY - 1} bytes for both (shorten the key, e.g. use a hash of it)")
    return out


def encode_value(value: Any, what: str = "state value") -> bytes:
    """msgpack bytes of a JSON-able value; a StateError that says what cannot be stored."""
    try:
        return _pack.encode(value)
    except OverflowError:
        raise StateError(f"{what}: {INT_OUT_OF_RANGE}") from None
    except TypeError as exc:
        raise StateError(f"{what}: {exc}") from None




def _to_builtins(value: Any) -> Any:
    from .schema import to_builtins

    return to_builtins(value)


class StateStore:
    """``ctx.state``'s storage. Reads are synchronous under the hood; writes are group-committed."""

    def __init__(self, store, on_change: ChangeHook | None = None):
        self.store = store
        self.on_change = on_change

    # -- reads ----------------------------------------------------------------------------

    def get_nowait(self, group: str, key: str) -> Any:
        raw = self.store.read(lambda t: t.get("state", _key(group, key)))
        return None if raw is None else _unpack.decode(raw)

    def get_group_nowait(self, group: str) -> list[Any]:
        prefix = _key(group, "x")[:-1]
        return self.store.read(lambda t: [_unpack.decode(v) for _, v in t.scan("state", prefix)])

    def items_nowait(self, group: str) -> list[tuple[str, Any]]:
        prefix = _key(group, "x")[:-1]
        return self.store.read(
            lambda t: [(k[len(prefix):].decode(), _unpack.decode(v)) for k, v in t.scan("state", prefix)]
        )

    def list_groups_nowait(self) -> list[str]:
        return self.store.read(lambda t: [g.decode() for g in t.groups("state", sep=_SEP)])

    # Every call below works from async code (asyncio or trio: ``await`` it) and from a sync
    # handler's thread (it returns the value). Reads are synchronous under the hood; a write
    # is queued for the next group commit at call time, so it happens even if not awaited.

    def get(self, group: str, key: str) -> Any:
        return answer(self.get_nowait(group, key))

    def get_group(self, group: str) -> list[Any]:
        return answer(self.get_group_nowait(group))

    def list_groups(self) -> list[str]:
        return answer(self.list_groups_nowait())

    # The names Motia's dialects use for the same calls (``ctx.state`` is this store).
    getGroup = get_group
    list = get_group
    listGroups = list_groups

    # -- writes ---------------------------------------------------------------------------

    def _set_op(self, group, key, value):
        k = _key(group, key)
        trace, parent = current_caller()
        value = _to_builtins(value)
        packed = encode_value(value)

        def op(t):
            old = t.get("state", k)
            t.put("state", k, packed)
            if self.on_change is not None:
                old_value = None if old is None else _unpack.decode(old)
                self.on_change(t, "created" if old is None else "updated", group, key, old_value, value,
                               trace_id=trace, parent=parent)
            return value

        # Known before the commit: Motia 1.0.4's synchronous set answers a copy at once (a copy:
        # what the caller does to it must not change what the commit stores or triggers see).
        op.copy = lambda: _unpack.decode(packed)
        return op

    def _delete_op(self, group, key):
        k = _key(group, key)
        trace, parent = current_caller()

        def op(t):
            old = t.get("state", k)
            if old is None:
                return None
            t.delete("state", k)
            old_value = _unpack.decode(old)
            if self.on_change is not None:
                self.on_change(t, "deleted", group, key, old_value, None, trace_id=trace, parent=parent)
            return old_value

        return op

    def _clear_op(self, group):
        prefix = _key(group, "x")[:-1]
        trace, parent = current_caller()

        def op(t):
            items = list(t.scan("state", prefix))
            for k, v in items:
                t.delete("state", k)
                if self.on_change is not None:
                    self.on_change(t, "deleted", group, k[len(prefix):].decode(), _unpack.decode(v), None,
                                   trace_id=trace, parent=parent)
            return len(items)

        return op

    def _update_op(self, group, key, ops):
        k = _key(group, key)
        ops = check_ops(ops)
        trace, parent = current_caller()

        def op(t):
            raw = t.get("state", k)
            old = None if raw is None else _unpack.decode(raw)
            new = apply_ops(old, ops)
            t.put("state", k, encode_value(new))
            if self.on_change is not None:
                self.on_change(t, "created" if raw is None else "updated", group, key, old, new,
                               trace_id=trace, parent=parent)
            return new

        return op

    def set(self, group: str, key: str, value: Any) -> Any:
        """Store ``value`` (JSON-able, a Struct or a pydantic model); return it as stored."""
        return self._write(self._set_op(group, key, value))

    def delete(self, group: str, key: str) -> Any:
        """Remove a key; return its old value (None when there was none)."""
        return self._write(self._delete_op(group, key))

    def clear(self, group: str) -> int:
        """Remove every key of ``group``; return how many there were."""
        return self._write(self._clear_op(group))

    def update(self, group: str, key: str, ops: list[dict] | dict) -> Any:
        """Apply update ops atomically (in the writer's transaction); return the new value."""
        return self._write(self._update_op(group, key, ops))

    def _write(self, op):
        if in_async():
            done = self.store.submit(op)
            track(done)
            return Pending(done)
        return self.store.write_blocking(op)

    # Synchronous forms, for the CLI (no writer thread) and Motia's un-awaited 0.x calls.
    def set_sync(self, group, key, value):
        return self.store.write_blocking(self._set_op(group, key, value))


_OPS = ("set", "merge", "increment", "decrement", "remove")


def check_ops(ops) -> list[dict]:
    if isinstance(ops, dict):
        ops = [ops]
    if not isinstance(ops, list) or not ops:
        raise StateError("state.update: ops must be a non-empty list of {type, path, value|by}")
    checked = []
    for i, op in enumerate(ops):
        kind = op.get("type") if isinstance(op, dict) else None
        if kind not in _OPS:
            raise StateError(
                f"state.update: ops[{i}].type: expected one of {', '.join(_OPS)}, got {kind!r}"
            )
        path = op.get("path")
        if path is None or path == "":
            parts = []
        elif isinstance(path, str):
            parts = path.split(".")
        elif isinstance(path, (list, tuple)):
            parts = [str(p) for p in path]
        else:
            raise StateError(f"state.update: ops[{i}].path: expected a dotted string, got {path!r}")
        checked.append({**op, "path": parts, "value": _to_builtins(op.get("value"))})
    return checked


def apply_ops(value: Any, ops: list[dict]) -> Any:
    """Apply update ops to a copy of ``value`` and return it (pure; used inside the write txn).

    A path walks objects by key and lists by index (``tags.0``). Objects missing on the way are
    created. A path that runs into anything else (a number, a string, an index a list does not
    have) is a :class:`StateError`: an update never replaces data it was not told to. A
    ``remove`` of what is not there changes nothing."""
    root = {"v": copy.deepcopy(value)}
    for i, op in enumerate(ops):
        kind, path = op["type"], op["path"]
        parts = ["v", *path]
        parent: Any = root
        try:
            for depth, part in enumerate(parts[:-1]):
                child = _child(parent, part, op, i, parts[1:depth + 1])
                if child is None:
                    if kind == "remove":
                        break  # nothing there to remove
                    child = parent[part] = {}
                parent = child
            else:
                _apply(parent, parts[-1], op, i, parts[1:-1])
        except StateError:
            if kind != "remove":
                raise  # a remove of what is not there changes nothing
    return root.get("v")


def _child(container: Any, part: str, op: dict, i: int, where: list[str]) -> Any:
    """``container[part]`` on the way down a path (None: a missing object key); ``where`` is
    the path to the child."""
    if isinstance(container, dict):
        child = container.get(part)
    else:  # a list: every container on the way is an object or a list
        child = container[_index(container, part, op, i, where[:-1])]
    if child is not None and not isinstance(child, (dict, list)):
        raise _not_a_container(child, op, i, where)
    return child


def _index(items: list, part: str, op: dict, i: int, where: list[str]) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    raise StateError(f"state.update: ops[{i}] {op['type']} at {'.'.join(op['path'])}: "
                     f"{'.'.join(where) or '(root)'} is a list of {len(items)}; {part!r} is not one of its indexes")


def _not_a_container(value: Any, op: dict, i: int, where: list[str]) -> StateError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return StateError(f"state.update: ops[{i}] {op['type']} at {'.'.join(op['path'])}: "
                      f"{'.'.join(where) or '(root)'} is {type(value).__name__} {shown}, not an object or a "
                      "list; set it whole instead")


def _apply(parent: Any, leaf: str, op: dict, i: int, where: list[str]) -> None:
    kind = op["type"]  # ``parent`` is an object or a list: the root, or what _child let through
    if isinstance(parent, list):
        key: Any = _index(parent, leaf, op, i, where)
        current = parent[key]
    else:
        key, current = leaf, parent.get(leaf)
    # The op's value is copied in: a later op of the update may change what it put there (set
    # a = {"c": 1}, then increment a.c), and the ops must stay as given, since the store may
    # run the update again (another write of its batch failed; the map grew).
    if kind == "set":
        value = op["value"]
        parent[key] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
    elif kind == "merge":
        if not isinstance(op["value"], dict):
            raise StateError(f"state.update: ops[{i}] merge: value must be an object, got {op['value']!r}")
        parent[key] = {**(current if isinstance(current, dict) else {}), **copy.deepcopy(op["value"])}
    elif kind in ("increment", "decrement"):
        by = op.get("by", op.get("value"))
        by = 1 if by is None else by
        current = 0 if current is None else current
        if not all(isinstance(n, (int, float)) and type(n) is not bool for n in (current, by)):
            raise StateError(
                f"state.update: ops[{i}] {kind} at {'.'.join(op['path']) or '(root)'}: "
                f"needs numbers, found {current!r} and by={by!r}"
            )
        parent[key] = current + by if kind == "increment" else current - by
    elif kind == "remove":
        if isinstance(parent, list):
            del parent[key]
        else:
            parent.pop(key, None)
