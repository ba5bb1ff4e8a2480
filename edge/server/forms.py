"""Form bodies (``application/x-www-form-urlencoded``) as Motia 0.x's Express parsed them.

Motia 0.x (``packages/core/src/server.ts``) used ``bodyParser.urlencoded({extended: true})``,
body-parser 1.20.4, which hands the body to the ``qs`` module 6.14 with ``{allowPrototypes:
true, arrayLimit: max(100, number of "&"), depth: 32, strictDepth: true, parameterLimit:
1000}``. This is that parser, in Python, down to the order of keys and the odd cases (a
repeated index pushes, an index over the array limit is a key, ...).

Its cost is linear in the body: qs makes ``a[998]`` a sparse JS array, which costs it one
entry, and so does edge (:class:`_Array`, an index -> item mapping). Filled with 998 holes, as
a list, 999 parameters of 31 such levels were 31 M entries to build and merge, 1.9 s of the
event loop's thread for a 161 KiB body.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from .bodies import BadBody, text_codec
from .responses import error_response

__all__ = ["FORM", "FORM_DEPTH", "FORM_PARAMETERS", "parse_form"]

FORM = "application/x-www-form-urlencoded"
#: body-parser's parameterLimit: a form with more parameters is a 413 (it counts the "&"s).
FORM_PARAMETERS = 1000
#: body-parser 1.20's depth for qs, with strictDepth: ``a[b][c]`` is 2 levels; deeper is a 400.
FORM_DEPTH = 32
#: qs's arrayLimit as body-parser sets it (at least this; more when the form has more "&"s):
#: ``a[5]=x`` is a list, ``a[101]=x`` an object with the key "101".
_ARRAY_LIMIT = 100
#: The digits of JS's largest array index, 4294967294. A longer run of digits is a plain key
#: (and must not reach int(): Python refuses strings of over 4300 digits).
_INDEX_DIGITS = 10
_BRACKET = re.compile(r"\[[^[\]]*\]")  # qs: one [segment] of a key
_ENCODED_BRACKET = re.compile(r"%5([BD])", re.IGNORECASE)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_form(raw: bytes, header: str | None) -> dict:
    """An ``application/x-www-form-urlencoded`` body as Motia's ``req.body`` held it.

    What qs does with body-parser's options: ``a=1&a=2`` -> ``{"a": ["1", "2"]}``; ``a[]=1`` ->
    ``{"a": ["1"]}``; ``a[b]=1`` -> ``{"a": {"b": "1"}}``; ``a[1]=x&a[0]=y`` -> ``{"a": ["y", "x"]}``;
    ``+`` is a space; ``flag`` alone is ``""``; an empty key is dropped; a value whose escapes are
    not valid in the charset stays as it came. Values are strings.

    edge decodes the escapes in the declared charset (body-parser refused any but UTF-8 with a 415).

    Raises:
        BadBody: 413 for more than FORM_PARAMETERS parameters, 400 for a key nested deeper than
            FORM_DEPTH, 415 for an unknown charset.
    """
    codec = text_codec(header)
    text = raw.decode(codec, "replace")
    ampersands = text.count("&")
    if ampersands >= FORM_PARAMETERS:
        raise BadBody(error_response(
            413, detail=f"the form has over {FORM_PARAMETERS} parameters; edge accepts at most {FORM_PARAMETERS}"))
    array_limit = max(_ARRAY_LIMIT, ampersands)
    text = _ENCODED_BRACKET.sub(lambda m: "[" if m[1] in "bB" else "]", text)
    values: dict = {}  # qs parseValues: the flat key -> value (an _Array for a repeated key)
    for part in text.split("&"):
        end = part.find("]=")
        pos = part.find("=") if end == -1 else end + 1
        if pos == -1:
            key, value = _unescape(part, codec), ""
        else:
            key, value = _unescape(part[:pos], codec), _unescape(part[pos + 1:], codec)
        values[key] = _combine(values[key], value, array_limit) if key in values else value
    out: dict = {}
    for key in _js_order(values):
        if key:
            out = _merge(out, _nest(_segments(key), values[key], array_limit))
    return _compact(out)


def _unescape(text: str, codec: str) -> str:
    """qs's decoder: "+" is a space, %XX escapes are bytes in the charset; a value with an escape
    that is malformed or not valid in the charset is kept as it came (with its spaces)."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):  # decodeURIComponent throws on it, and qs keeps the text
        return text
    try:
        return unquote(text, encoding=codec, errors="strict")
    except UnicodeDecodeError:
        return text


# qs's structures, in Python: a JS array is an _Array (holes are the indexes it lacks; _compact
# makes it a list at the end), an "overflow object" (a repeated key with more values than the
# array limit) is an _Overflow dict with its keys "0", "1", ...; a JS object is a dict.


def _is_index(key: str) -> bool:
    """Whether JS takes ``key`` for an array index (and so orders it first among an object's keys)."""
    return (key.isascii() and key.isdigit() and len(key) <= _INDEX_DIGITS and (key == "0" or key[0] != "0")
            and int(key) < 4294967295)


def _js_order(obj: dict) -> list:
    """The keys of ``obj`` as JS's Object.keys lists them: indexes ascending, then the others in
    the order they came. qs merges in that order, so it decides which value of a key comes first."""
    keys = list(obj)
    if not any(_is_index(k) for k in keys):
        return keys
    return sorted((k for k in keys if _is_index(k)), key=int) + [k for k in keys if not _is_index(k)]


class _Array(dict):
    """A JS array: int index -> item, without its holes; ``length`` is JS's (highest index + 1)."""

    __slots__ = ("length",)

    def __init__(self, items: dict, length: int):
        super().__init__(items)
        self.length = length


def _push(array: _Array, item) -> None:
    array[array.length] = item
    array.length += 1


class _Overflow(dict):
    """What qs makes of an array past the array limit: an object keyed "0", "1", ...; ``top`` is
    its highest index."""

    __slots__ = ("top",)

    def __init__(self, items: dict, top: int):
        super().__init__(items)
        self.top = top


def _combine(a, b, array_limit: int):
    """qs utils.combine, ``[].concat(a, b)``, an _Overflow past the array limit. An _Array ``a``
    is extended in place: its callers own it (a fresh one, or the flat value of a repeated key)."""
    if isinstance(a, _Overflow):
        a.top += 1
        a[str(a.top)] = b
        return a
    result = a if isinstance(a, _Array) else _Array({0: a}, 1)
    if isinstance(b, _Array):
        base = result.length
        for i, item in b.items():
            result[base + i] = item
        result.length = base + b.length
    else:
        _push(result, b)
    if result.length > array_limit:
        return _Overflow(_as_object(result), result.length - 1)
    return result


def _as_object(array: _Array) -> dict:
    """qs arrayToObject: the items by their index as a string, holes left out."""
    return {str(i): array[i] for i in sorted(array)}


def _segments(key: str) -> list[str]:
    """qs splitKeyIntoSegments: ``a[b][]`` -> ``["a", "[b]", "[]"]``."""
    first = _BRACKET.search(key)
    if first is None:
        return [key]
    out = [key[:first.start()]] if first.start() else []
    for n, segment in enumerate(_BRACKET.finditer(key, first.start())):
        if n == FORM_DEPTH:
            raise BadBody(error_response(400, error="Malformed form body", detail=(
                f"a form key nests deeper than {FORM_DEPTH} levels of [brackets]; edge accepts at most {FORM_DEPTH}")))
        out.append(segment[0])
    return out


def _nest(chain: list[str], leaf, array_limit: int):
    """qs parseObject: the value ``leaf`` at the path ``chain``."""
    for root in reversed(chain):
        if root == "[]":
            obj = leaf if isinstance(leaf, _Overflow) else _combine(_Array({}, 0), leaf, array_limit)
        else:
            bracketed = root[:1] == "[" and root[-1:] == "]"
            name = root[1:-1] if bracketed else root
            if bracketed and _is_index(name) and int(name) <= array_limit:
                obj = _Array({int(name): leaf}, int(name) + 1)  # JS: obj = []; obj[index] = leaf
            elif name != "__proto__":
                obj = {name: leaf}
            else:
                obj = {}
        leaf = obj
    return leaf


def _merge(target, source):
    """qs utils.merge (with allowPrototypes). ``source`` is fresh from _nest; its entries are
    each visited once, and ``target``'s only by index or key, so a whole form merges in time
    linear in its size."""
    if source is None or source == "":
        return target
    if isinstance(source, str):
        if isinstance(target, _Array):
            _push(target, source)
        elif isinstance(target, _Overflow):
            target.top += 1
            target[str(target.top)] = source
        elif isinstance(target, dict):
            target[source] = True
        else:
            return _Array({0: target, 1: source}, 2)
        return target
    if not isinstance(target, dict):  # a string (an _Array and an _Overflow are dicts too)
        if isinstance(source, _Overflow):
            return _Overflow({"0": target, **{str(int(k) + 1): v for k, v in source.items()}}, source.top + 1)
        if isinstance(source, _Array):  # [target].concat(source)
            return _Array({0: target, **{i + 1: v for i, v in source.items()}}, source.length + 1)
        return _Array({0: target, 1: source}, 2)
    if isinstance(target, _Array) and isinstance(source, _Array):
        for i in sorted(source):  # source.forEach: ascending, past the holes
            item = source[i]
            if i in target:
                present = target[i]
                if isinstance(present, dict) and isinstance(item, dict):
                    target[i] = _merge(present, item)
                else:
                    _push(target, item)
            else:
                target[i] = item
                target.length = max(target.length, i + 1)
        return target
    into = _as_object(target) if isinstance(target, _Array) else target
    pairs = _as_object(source) if isinstance(source, _Array) else source
    for key in _js_order(pairs):
        value = pairs[key]
        into[key] = _merge(into[key], value) if key in into else value
    return into


def _compact(value):
    """qs compact: an _Array becomes the list of its items (the holes gone); an _Overflow a plain
    dict; keys come in the order Motia's handler saw them (JSON.stringify's, which is Object.keys')."""
    if isinstance(value, _Array):
        return [_compact(value[i]) for i in sorted(value)]
    if isinstance(value, dict):
        return {k: _compact(value[k]) for k in _js_order(value)}
    return value
