"""``Record``: a dict whose keys also answer their other spelling, as keys and as attributes.

Trigger inputs (state and stream events), stream subscriptions and auth contexts are handed to
handlers written in either Motia dialect: ``event["groupId"]``, ``event["group_id"]``,
``event.groupId`` and ``event.group_id`` all read the same value. They stay plain dicts, so
they store and encode as JSON objects.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Record"]


class Record(dict):
    __slots__ = ()
    #: alternative name -> the dict key it reads.
    _ALIASES: dict[str, str] = {}

    def __getitem__(self, name: str) -> Any:
        return dict.__getitem__(self, self._ALIASES.get(name, name))

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, self._ALIASES.get(name, name), default)

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, self._ALIASES.get(name, name) if isinstance(name, str) else name)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
