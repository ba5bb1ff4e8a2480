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
"""

from __future__ import annotations

from .responses import error_response

__all__ = ["BodyEndedEarly", "ENDED_EARLY", "ended_early", "read_chunked"]

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
