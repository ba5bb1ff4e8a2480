"""Reading a request body whole, or not at all: a body that ends early is a 400.

A client that half-closes in the middle of a chunked body (``7\\r\\n{"a":1}\\r\\n`` and no final
0-chunk), sends a bad chunk size after a good chunk, or sends fewer bytes than its
``Content-Length`` must not reach a handler with part of its body (SPEC §5). How Granian 2.8
tells RSGI apps about it (granian ``src/rsgi/io.rs``):

* ``await proto()`` (used with a ``Content-Length``) raises ``RSGIProtocolClosed`` ("RSGI
  transport is closed") when hyper's body fails: short, or cut off;
* ``async for chunk in proto`` (chunked) maps a body error to an *empty chunk* and then ends
  with one more empty chunk: a whole body is ``data..., b""``, a broken one ``data..., b"", b""``.
  (A chunked body with trailers looks the same, since the trailers frame also becomes
  ``b""``: edge refuses those too; no common HTTP client sends request trailers.)

The ASGI adapter (``edge.server.asgi``) raises :class:`BodyEndedEarly` itself when Granian
reports ``http.disconnect`` before the last ``http.request`` message.

Then what a whole body becomes for the handler, where it is more than bytes: text in its
declared charset (:func:`decode_text`), and forms (:func:`parse_form`) parsed as Motia 0.x's
Express parsed them (``packages/core/src/server.ts``: ``bodyParser.urlencoded({extended:
true})``, body-parser 1.20.4, which hands the body to the ``qs`` module 6.14 with
``{allowPrototypes: true, arrayLimit: max(100, number of "&"), depth: 32, strictDepth: true,
parameterLimit: 1000}``). Neither is on the JSON path.
"""

from __future__ import annotations

import codecs
import re
from urllib.parse import unquote

from .responses import error_response

__all__ = ["BodyEndedEarly", "BadBody", "ENDED_EARLY", "FORM", "FORM_DEPTH", "FORM_PARAMETERS", "charset_of",
           "decode_text", "ended_early", "parse_form", "read_chunked"]

ENDED_EARLY = "request body ended early"


class BodyEndedEarly(ConnectionError):
    """The connection ended (or broke) before the end of the request body."""


def ended_early():
    return error_response(400, error=ENDED_EARLY)


async def read_chunked(proto, max_body: int, too_large):
    """A chunked body within ``max_body``: ``(body, None)``, ``(b"", too_large())`` or ``(b"", 400)``."""
    chunks, size, empty = [], 0, False
    try:
        async for chunk in proto:
            if not chunk:
                if empty:  # the second empty chunk: Granian's sign of a broken body (see above)
                    return b"", ended_early()
                empty = True
                continue
            size += len(chunk)
            if size > max_body:
                return b"", too_large()
            chunks.append(chunk)
    except Exception:
        return b"", ended_early()
    return b"".join(chunks), None


# -- what a body becomes ------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"
#: body-parser's parameterLimit: a form with more parameters is a 413 (it counts the "&"s).
FORM_PARAMETERS = 1000
#: body-parser 1.20's depth for qs, with strictDepth: ``a[b][c]`` is 2 levels; deeper is a 400.
FORM_DEPTH = 32
#: qs's arrayLimit as body-parser sets it (at least this; more when the form has more "&"s):
#: ``a[5]=x`` is a list, ``a[101]=x`` an object with the key "101".
_ARRAY_LIMIT = 100
#: Python codecs that decode bytes to text but are no charset a client could mean.
_NOT_CHARSETS = frozenset(("unicode-escape", "raw-unicode-escape", "idna", "punycode"))
_BRACKET = re.compile(r"\[[^[\]]*\]")  # qs: one [segment] of a key
_ENCODED_BRACKET = re.compile(r"%5([BD])", re.IGNORECASE)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadBody(Exception):
    """A body that cannot be handed to the handler; ``response`` is the answer."""

    def __init__(self, response):
        self.response = response


def charset_of(header: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header, as given (quotes removed), or None."""
    if not header or ";" not in header:
        return None
    for param in header.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').strip() or None
    return None


def _codec(header: str | None) -> str:
    """The Python codec of the header's charset ("utf-8" when none); raises BadBody (415)."""
    charset = charset_of(header)
    if charset is None:
        return "utf-8"
    try:
        name = codecs.lookup(charset).name
        b"x".decode(name, "ignore")  # LookupError for a codec of no text (base64, rot13, zlib)
    except (LookupError, UnicodeError):  # UnicodeError: Python's "undefined", which decodes nothing
        name = None
    if name is None or name in _NOT_CHARSETS:
        # 415, as RFC 9110 has it for a Content-Type the server does not take, and as
        # body-parser answered (`unsupported charset "X"`); verbatim, so the sender can find it.
        raise BadBody(error_response(415, detail=f'unsupported charset "{charset}" (Content-Type: {header})'))
    return name


def decode_text(raw: bytes, header: str | None) -> str:
    """A text body in its declared charset (UTF-8 when it declares none); bytes that are not
    valid in it become U+FFFD, as Express's iconv-lite did. Raises BadBody (415) for a charset
    no codec knows."""
    return raw.decode(_codec(header), "replace")


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
    codec = _codec(header)
    text = raw.decode(codec, "replace")
    ampersands = text.count("&")
    if ampersands >= FORM_PARAMETERS:
        raise BadBody(error_response(
            413, detail=f"the form has over {FORM_PARAMETERS} parameters; edge accepts at most {FORM_PARAMETERS}"))
    array_limit = max(_ARRAY_LIMIT, ampersands)
    text = _ENCODED_BRACKET.sub(lambda m: "[" if m[1] in "bB" else "]", text)
    values: dict = {}  # qs parseValues: the flat key -> value (a list for a repeated key)
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


# qs's structures, in Python: a JS array with holes is a list with _HOLE in them (compacted at
# the end), an "overflow object" (a repeated key with more values than the array limit) is an
# _Overflow dict with its keys "0", "1", ...


def _is_index(key: str) -> bool:
    """Whether JS takes ``key`` for an array index (and so orders it first among an object's keys)."""
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 4294967295


def _js_order(obj: dict) -> list:
    """The keys of ``obj`` as JS's Object.keys lists them: indexes ascending, then the others in
    the order they came. qs merges in that order, so it decides which value of a key comes first."""
    keys = list(obj)
    if not any(_is_index(k) for k in keys):
        return keys
    return sorted((k for k in keys if _is_index(k)), key=int) + [k for k in keys if not _is_index(k)]


class _Hole:
    __slots__ = ()


_HOLE = _Hole()


class _Overflow(dict):
    __slots__ = ("top",)


def _overflow(items: dict, top: int) -> _Overflow:
    out = _Overflow(items)
    out.top = top
    return out


def _combine(a, b, array_limit: int):
    if isinstance(a, _Overflow):
        a.top += 1
        a[str(a.top)] = b
        return a
    result = (a if isinstance(a, list) else [a]) + (b if isinstance(b, list) else [b])
    if len(result) > array_limit:
        return _overflow(_as_object(result), len(result) - 1)
    return result


def _as_object(items: list) -> dict:
    return {str(i): v for i, v in enumerate(items) if v is not _HOLE}


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
            obj = leaf if isinstance(leaf, _Overflow) else _combine([], leaf, array_limit)
        else:
            bracketed = root[:1] == "[" and root[-1:] == "]"
            name = root[1:-1] if bracketed else root
            if bracketed and _is_index(name) and int(name) <= array_limit:
                obj = [_HOLE] * int(name) + [leaf]
            elif name != "__proto__":
                obj = {name: leaf}
            else:
                obj = {}
        leaf = obj
    return leaf


def _merge(target, source):
    """qs utils.merge (with allowPrototypes)."""
    if source is None or source == "":
        return target
    if isinstance(source, str):
        if isinstance(target, list):
            target.append(source)
        elif isinstance(target, _Overflow):
            target.top += 1
            target[str(target.top)] = source
        elif isinstance(target, dict):
            target[source] = True
        else:
            return [target, source]
        return target
    if not isinstance(target, (list, dict)):
        if isinstance(source, _Overflow):
            return _overflow({"0": target, **{str(int(k) + 1): v for k, v in source.items()}}, source.top + 1)
        return [target, *source] if isinstance(source, list) else [target, source]
    if isinstance(target, list) and isinstance(source, list):
        for i, item in enumerate(source):
            if item is _HOLE:
                continue
            if i < len(target) and target[i] is not _HOLE:
                present = target[i]
                if isinstance(present, (list, dict)) and isinstance(item, (list, dict)):
                    target[i] = _merge(present, item)
                else:
                    target.append(item)
            elif i < len(target):
                target[i] = item
            else:
                target.extend([_HOLE] * (i - len(target)))
                target.append(item)
        return target
    into = _as_object(target) if isinstance(target, list) else target
    pairs = _as_object(source) if isinstance(source, list) else source
    for key in _js_order(pairs):
        value = pairs[key]
        into[key] = _merge(into[key], value) if key in into else value
    return into


def _compact(value):
    """qs compact: holes leave the lists; an _Overflow becomes a plain dict; keys come in the
    order Motia's handler saw them (JSON.stringify's, which is Object.keys')."""
    if isinstance(value, list):
        return [_compact(v) for v in value if v is not _HOLE]
    if isinstance(value, dict):
        return {k: _compact(value[k]) for k in _js_order(value)}
    return value
