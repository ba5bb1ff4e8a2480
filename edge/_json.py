"""Decoding JSON that arrives from outside (request bodies, frames): msgspec, with a depth limit.

msgspec's decoder recurses in C, guarded by Python's recursion limit *minus the current stack*:
a body nested 50,000 deep raises ``RecursionError`` (a 500), and how deep a body may go depends
on how deep the stack happened to be. Everything downstream recurses too: the JSON Schema
validator (up to five Python frames per level for ``anyOf`` schemas), ``to_builtins``, the
msgpack encoder of the store, ``copy.deepcopy`` and ``json.dumps`` in user code. So edge refuses
JSON nested deeper than :data:`MAX_DEPTH` as it decodes it, with a message naming the limit.

The check costs nothing for a body under 257 bytes, which cannot hold 129 levels, and two
``bytes.count`` calls for nearly every other: a document with fewer opening brackets than the
limit cannot be nested deeper. Bodies with more are decoded first
(a body too deep for msgspec raises ``RecursionError``, which is the same answer), then their
containers are walked level by level: about a fifth of the decode's own time.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .errors import MalformedJSON

__all__ = ["MAX_DEPTH", "JSONTooDeep", "decode", "explained", "may_be_deep", "too_deep", "depth_error"]

#: Deepest nesting of arrays and objects accepted (serde_json's default too). Real documents
#: rarely pass 20; at 128 the validator's worst case stays well inside Python's 1000 frames.
MAX_DEPTH = 128

_decode = msgspec.json.decode


class JSONTooDeep(MalformedJSON):
    """JSON nested deeper than :data:`MAX_DEPTH` (refused, never handed on)."""


def depth_error(limit: int = MAX_DEPTH) -> JSONTooDeep:
    message = f"JSON nested deeper than {limit} levels; edge accepts at most {limit} levels of arrays and objects"
    return JSONTooDeep(f"Malformed JSON: {message}", [{"path": "$", "message": message}])


def decode(raw: bytes | str, limit: int = MAX_DEPTH) -> Any:
    """``msgspec.json.decode`` with the depth limit.

    Raises:
        JSONTooDeep: nested deeper than ``limit``.
        msgspec.DecodeError: not JSON.
    """
    try:
        value = _decode(raw)
    except RecursionError:  # far deeper than the limit: msgspec ran out of stack
        raise depth_error(limit) from None
    except msgspec.DecodeError as exc:
        raise explained(exc, raw) from None
    if may_be_deep(raw, limit) and too_deep(value, limit):
        raise depth_error(limit)
    return value


#: A ``\\uXXXX`` escape of a UTF-16 surrogate that has no other half next to it (after an even
#: run of backslashes: ``\\\\ud800`` is a backslash and text).
_LONE_SURROGATE = re.compile(
    rb"(?:^|[^\\])(?:\\\\)*(\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<![\\]u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def explained(exc: msgspec.DecodeError, raw: bytes | str) -> msgspec.DecodeError:
    """``exc``, or one that names the cause when msgspec's words mislead: it says "Input data
    was truncated" for a complete document with an escaped lone surrogate (``"\\ud800"``)."""
    if str(exc) != "Input data was truncated":
        return exc
    found = _LONE_SURROGATE.search(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if found is None:
        return exc
    escape = found.group(1).decode()
    return msgspec.DecodeError(f"{escape} (byte {found.start(1)}) is half of a UTF-16 surrogate pair without its "
                               "other half: it stands for no character")


def may_be_deep(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text ``raw`` could nest deeper than ``limit`` (False: it cannot). Nesting
    deeper takes over ``limit`` opening and closing brackets each."""
    if len(raw) <= 2 * limit:
        return False
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > limit
    return raw.count(b"[") + raw.count(b"{") > limit


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether decoded JSON ``value`` nests lists/dicts deeper than ``limit`` (no recursion)."""
    if type(value) not in _CONTAINERS:
        return False
    level, depth = [value], 1
    while level:
        if depth > limit:
            return True
        below = []
        for container in level:
            for child in (container.values() if type(container) is dict else container):
                if type(child) in _CONTAINERS:
                    below.append(child)
        level, depth = below, depth + 1
    return False


_CONTAINERS = frozenset((dict, list))
