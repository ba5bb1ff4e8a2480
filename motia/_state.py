"""``stateManager``: Motia 1.0's module-level state API, over edge's state store.

Same methods and arguments as Motia's ``StateManager`` (``get``, ``set``, ``update``,
``delete``, ``list``, ``list_groups``, ``clear``; ``scope`` is edge's group). ``set`` and
``update`` answer what Motia's engine answered, ``{"old_value", "new_value"}``; ``delete`` the
old value. Synchronous (1.0.4) and awaited (release candidates) calls both work: see
``motia._runtime``.
"""

from __future__ import annotations

from typing import Any

from edge._loops import Ready, in_async

from ._runtime import Then, answer, awaited, current, runtime_of, settle, write_soon

__all__ = ["StateManager", "stateManager", "motia_ops"]

_list = list  # StateManager.list shadows the builtin inside the class
_UNSET = object()


def motia_ops(ops: Any) -> Any:
    """Update ops in Motia's documented spellings as edge's: ``{"op": "set", "path": "/a/b"}``
    becomes ``{"type": "set", "path": "a.b"}``; edge's own form passes through."""
    if isinstance(ops, dict):
        ops = [ops]
    if not isinstance(ops, (list, tuple)):
        return ops
    out = []
    for op in ops:
        if hasattr(op, "model_dump") and not isinstance(op, type):
            op = op.model_dump(exclude_none=True)
        if isinstance(op, dict):
            op = dict(op)
            if "type" not in op and "op" in op:
                op["type"] = op.pop("op")
            path = op.get("path")
            if isinstance(path, str) and path.startswith("/"):
                op["path"] = ".".join(p for p in path.split("/") if p)
        out.append(op)
    return out


def _changed(old: Any):
    return lambda new: {"old_value": old, "new_value": new}


class StateManager:
    """Module-level state, acting for the running invocation (``from motia import stateManager``)."""

    def _state(self, what: str, reads: tuple | None = None):
        """The state store, once this invocation's queued sets of what the call ``reads``
        (``(scope, key)``, ``(scope,)``, ``()``: all) are durable (``motia._runtime.settle``).
        Writes that do not read need not wait: the store commits in call order."""
        ctx = current(f"stateManager.{what}")
        if reads is not None:
            settle(ctx, ("state", *reads))
        return runtime_of(ctx).state

    def get(self, scope: str, key: str) -> Any:
        value = self._state("get", (scope, key)).get_nowait(scope, key)
        return Ready(value) if awaited() else answer(value)

    def set(self, scope: str, key: str, value: Any = _UNSET, *, data: Any = _UNSET) -> Any:
        """Store a value; answers ``{"old_value", "new_value"}``. (``data=`` is the release
        candidates' name of ``value``.)"""
        value = data if value is _UNSET else value
        state = self._state("set", (scope, key))
        old = state.get_nowait(scope, key)
        if awaited():
            return Then(state.set(scope, key, value), _changed(old))
        op = state._set_op(scope, key, value)
        if in_async():  # on the loop thread: queued, not waited for (motia._runtime)
            write_soon(state.store.submit(op, blockable=True), ("state", scope, key))
            new = op.copy()
        else:
            new = state.store.write_blocking(op)
        return answer({"old_value": old, "new_value": new})

    def update(self, scope: str, key: str, ops: Any) -> Any:
        """Apply update ops atomically; answers ``{"old_value", "new_value"}``."""
        state = self._state("update", (scope, key))
        ops = motia_ops(ops)
        old = state.get_nowait(scope, key)
        if awaited():
            return Then(state.update(scope, key, ops), _changed(old))
        new = state.store.write_blocking(state._update_op(scope, key, ops))
        return answer({"old_value": old, "new_value": new})

    def delete(self, scope: str, key: str) -> Any:
        """Remove a key; answers its old value (None when there was none)."""
        state = self._state("delete")
        if awaited():
            return state.delete(scope, key)
        return answer(state.store.write_blocking(state._delete_op(scope, key)))

    def list(self, scope: str) -> _list[Any]:
        """Every value of ``scope``."""
        value = self._state("list", (scope,)).get_group_nowait(scope)
        return Ready(value) if awaited() else answer(value)

    get_group = list
    getGroup = list

    def list_groups(self) -> _list[str]:
        value = self._state("list_groups", ()).list_groups_nowait()
        return Ready(value) if awaited() else answer(value)

    def clear(self, scope: str) -> None:
        """Remove every key of ``scope``."""
        state = self._state("clear")
        if awaited():
            return Then(state.clear(scope), lambda _: None)
        state.store.write_blocking(state._clear_op(scope))
        return None

    def __repr__(self) -> str:
        return "<motia.stateManager>"


#: ``from motia import stateManager``.
stateManager = StateManager()
