"""What a request body is before a handler sees it: whole, or not at all (a body that ends
early is a 400; ``edge.server.intake`` reads it, within its deadline and budget), inflated
(``Content-Encoding``), and the text its charset says.

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

Then the charset a whole body is text in (:func:`text_codec`, :func:`decode_text`; forms, in
``edge.server.forms``, decode their escapes with it too). Neither is on the JSON path.
"""

from __future__ import annotations

import codecs
import zlib
from encodings import normalize_encoding
from encodings.aliases import aliases

from ..errors import RequestBodyError
from .responses import error_response

__all__ = ["ENDED_EARLY", "BadBody", "BodyEndedEarly", "BodyTooLarge", "charset_codec", "charset_of", "decode_text",
           "ended_early", "inflated", "text_codec"]

ENDED_EARLY = "request body ended early"


class BodyEndedEarly(ConnectionError, RequestBodyError):
    """The connection ended (or broke) before the end of the request body."""


class BodyTooLarge(ValueError, RequestBodyError):
    """A streamed request body went over --max-body."""

    status = 413


def ended_early():
    return error_response(400, error=ENDED_EARLY)


# -- Content-Encoding ---------------------------------------------------------------------------

#: Content codings Express's body-parser (Motia 0.x) inflated, and zlib's window bits for each.
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflated(raw: bytes, coding: str, max_body: int):
    """``(body, None)`` for a body sent with ``Content-Encoding: coding``, or ``(b"", error)``:
    gzip and deflate are inflated (``--max-body`` limits what they inflate to, so a small
    bomb stays small), identity is the body as it is, anything else is a 415."""
    name = coding.strip().lower()
    if name == "identity":
        return raw, None
    bits = _CODINGS.get(name)
    if bits is None:
        return b"", error_response(415, detail=f'unsupported Content-Encoding "{coding}"; edge takes gzip, '
                                                "deflate or identity")
    body, data = b"", raw
    while data:  # gzip: one member after another, as node's gunzip reads them
        room = max_body + 1 - len(body)
        inflater = zlib.decompressobj(bits)
        try:
            body += inflater.decompress(data, room) if room > 0 else b""
            if room > 0 and not inflater.unconsumed_tail:
                body += inflater.flush()
        except zlib.error as exc:
            return b"", error_response(400, error="Malformed body", detail=f"the {name} body cannot be inflated: {exc}")
        if room <= 0 or len(body) > max_body or inflater.unconsumed_tail:
            return b"", error_response(413, detail=f"the {name} body inflates to over {max_body} bytes "
                                                   "(--max-body / EDGE_MAX_BODY)", limit=max_body)
        if not inflater.eof:
            return b"", error_response(400, error="Malformed body", detail=f"the {name} body is cut off")
        data = inflater.unused_data
        if data and name == "deflate":
            return b"", error_response(400, error="Malformed body",
                                       detail=f"the deflate body has {len(data)} bytes after its end")
    return body, None


# -- the charset of a body ----------------------------------------------------------------------

#: Python's codecs of text that no alias names (encodings.aliases maps every other charset name
#: to a codec module, and those modules' names are its values). Left out: charmap, undefined,
#: unicode_escape, raw_unicode_escape, idna, punycode (no charset a client could mean) and oem
#: (Windows only).
_UNALIASED_CODECS = ("cp720", "cp737", "cp856", "cp874", "cp875", "cp1006", "koi8_t", "koi8_u",
                     "mac_arabic", "mac_croatian", "mac_farsi", "mac_romanian", "palmos", "utf_8_sig")
#: Every charset name that can resolve to a codec of Python's, normalized as codecs.lookup
#: normalizes it ("ISO-8859-1" -> "iso_8859_1"). Only these are looked up: codecs.lookup()
#: keeps every name it is asked for in encodings._cache, an unknown one too, after trying to
#: import encodings.<name> for it (20,000 requests with distinct 1 KB charsets kept 21 MiB).
_CHARSET_NAMES = frozenset(aliases) | frozenset(aliases.values()) | frozenset(_UNALIASED_CODECS)


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


def charset_codec(charset: str) -> str | None:
    """The Python codec that decodes text in ``charset`` ("ISO-8859-1" -> "iso8859-1"), or None
    when there is none (an unknown name, or a codec of no text: base64, rot13, zlib)."""
    name = normalize_encoding(charset).lower()  # what codecs.lookup looks up for it
    # the second form: encodings.search_function tries an alias with its dots as underscores
    if name not in _CHARSET_NAMES and name.replace(".", "_") not in aliases:
        return None
    try:
        codec = codecs.lookup(name).name
        b"x".decode(codec, "ignore")  # LookupError for a codec of no text (base64, rot13, zlib)
    except (LookupError, UnicodeError):
        return None
    return codec


def text_codec(header: str | None) -> str:
    """The Python codec of the header's charset ("utf-8" when none); raises BadBody (415)."""
    charset = charset_of(header)
    if charset is None:
        return "utf-8"
    codec = charset_codec(charset)
    if codec is None:
        # 415, as RFC 9110 has it for a Content-Type the server does not take, and as
        # body-parser answered (`unsupported charset "X"`); verbatim, so the sender can find it.
        raise BadBody(error_response(415, detail=f'unsupported charset "{charset}" (Content-Type: {header})'))
    return codec


def decode_text(raw: bytes, header: str | None) -> str:
    """A text body in its declared charset (UTF-8 when it declares none); bytes that are not
    valid in it become U+FFFD, as Express's iconv-lite did. Raises BadBody (415) for a charset
    no codec knows."""
    return raw.decode(text_codec(header), "replace")
