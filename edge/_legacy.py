"""What ``ctx.state`` answers to steps written for Motia's 0.x Python runtime.

The 0.x runtime (``motia_rpc_state_manager.py``, the last 0.x release) did not hand a stored
value back as it was: ``state.get`` answered ``{"data": None}`` for a missing key and
``{"data": value}`` for a dict without a ``"data"`` key; anything else (a list, a number, a
string, a dict that has ``"data"``) came back unchanged. ``get_group`` went through the same
rule (a list, so unchanged). 0.x projects were written against that: ``if "data" not in
result``, ``result["data"]``. Steps of either 0.x dialect get this view; everything else is
the state store itself. The 0.x helpers edge's update ops can express are here too
(``increment``, ``decrement``, ``set_field``, ``delete_field``, ``exists``).
"""

from __future__ import annotations

from typing import Any

from ._loops import answer

__all__ = ["LegacyState", "as_0x"]


def as_0x(value: Any) -> Any:
    """A stored value as Motia 0.x's ``state.get`` returned it."""
    if value is None:
        return {"data": None}
    if isinstance(value, dict) and "data" not in value:
        return {"data": value}
    return value


class LegacyState:
    """``ctx.state`` for 0.x steps: the state store, with 0.x's ``get`` and ``get_group``."""

    __slots__ = ("_state",)

    def __init__(self, state):
        self._state = state

    def get(self, group: str, key: str) -> Any:
        value = as_0x(self._state.get_nowait(group, key))
        return answer(value)

    def get_group(self, group: str) -> Any:
        value = as_0x(self._state.get_group_nowait(group))
        return answer(value)

    getGroup = get_group

    # The 0.x runtime's atomic helpers that edge's update ops express.
    def increment(self, group: str, key: str, delta: int = 1) -> Any:
        return self._state.update(group, key, [{"type": "increment", "path": "", "by": delta}])

    def decrement(self, group: str, key: str, delta: int = 1) -> Any:
        return self._state.update(group, key, [{"type": "decrement", "path": "", "by": delta}])

    def set_field(self, group: str, key: str, field: str, value: Any) -> Any:
        return self._state.update(group, key, [{"type": "set", "path": field, "value": value}])

    def delete_field(self, group: str, key: str, field: str) -> Any:
        return self._state.update(group, key, [{"type": "remove", "path": field}])

    def exists(self, group: str, key: str) -> Any:
        found = self._state.get_nowait(group, key) is not None
        return answer(found)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)

    def __repr__(self) -> str:
        return "<state (Motia 0.x answers)>"
