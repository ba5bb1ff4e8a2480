"""Turning handler results and errors into ``(status, headers, body)`` triples."""

from __future__ import annotations

from typing import Any

import msgspec

from .._format import clip
from ..api import ApiResponse, check_headers
from ..errors import BadResult

__all__ = ["build_response", "error_response", "json_body", "json_payload", "storage_full", "STATUS_TEXT"]

STATUS_TEXT = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large", 415: "Unsupported Media Type",
    421: "Misdirected Request", 422: "Unprocessable Entity", 500: "Internal Server Error",
    503: "Service Unavailable", 504: "Gateway Timeout", 507: "Insufficient Storage",
}

JSON = "application/json"


def _enc_hook(obj: Any) -> Any:
    from ..schema import to_builtins

    value = to_builtins(obj)
    if value is obj:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")
    return value


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def json_body(value: Any) -> bytes:
    return _encoder.encode(value)


def error_response(status: int, **fields: Any) -> tuple[int, list, bytes]:
    body = {"error": fields.pop("error", STATUS_TEXT.get(status, "Error")), **fields}
    return status, [("content-type", JSON)], _encoder.encode(body)


def storage_full(exc, **fields: Any) -> tuple[int, list, bytes]:
    """507: the disk holding the data directory is full (nothing was written)."""
    return error_response(507, error=f"the disk holding {exc.path} is full", detail=str(exc), **fields)


#: How deep _unencodable looks for what failed (it recurses once a level).
MAX_DEPTH = 200


def _unencodable(value: Any, path: str = "$", within: tuple = ()) -> str | None:
    """The JSON path of the first value in ``value`` that cannot be encoded, as ``"type at
    path"``. ``within``: the ids of the containers above (a dict that contains itself)."""
    try:
        _encoder.encode(value)
        return None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # RecursionError: a tuple key
        reason = exc
    if isinstance(value, (dict, list, tuple)):
        if id(value) in within:
            return f"{type(value).__name__} that contains itself at {path}"
        if len(within) >= MAX_DEPTH:
            return f"{type(value).__name__} nested more than {MAX_DEPTH} deep at {clip(path)}"
        within = (*within, id(value))
    if isinstance(value, str):  # a lone surrogate ("\ud800"): no UTF-8 for it
        return f"text with {_no_utf8(reason)} at {path}"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float)):
                return f"key of type {type(key).__name__} at {path}"
            if type(key) is str and not key.isascii():
                try:
                    key.encode()
                except UnicodeEncodeError as exc:
                    return f"key with {_no_utf8(exc)} at {path}"
            found = _unencodable(item, f"{path}.{key}", within)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _unencodable(item, f"{path}[{i}]", within)
            if found:
                return found
    if isinstance(reason, OverflowError) or (isinstance(value, int) and "range" in str(reason)):
        return f"integer out of range ({value if isinstance(value, int) else '?'}) at {path}"
    return f"{type(value).__name__} at {path}"


def _no_utf8(exc: BaseException) -> str:
    if not isinstance(exc, UnicodeEncodeError):
        return "no JSON form"
    return f"no UTF-8 form ({exc.object[exc.start:exc.end]!r} at character {exc.start})"


def json_payload(body: Any) -> bytes:
    """``body`` as JSON bytes; BadResult saying what (and where) cannot be encoded."""
    try:
        return _encoder.encode(body)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise BadResult(f"body is not JSON-encodable: {_unencodable(body)}") from None


def _envelope(result: dict) -> bool:
    """Whether a dict with a ``status`` key is ``{"status", "body"?, "headers"?}`` and not a
    record that has a ``status`` field of its own (``{"id": 1, "status": "open"}``, sent as
    the body): its status is an int, or it has a ``body`` or ``headers`` key (then a status
    that is no status is the handler's error)."""
    status = result.get("status", result.get("status_code"))
    return (type(status) is int) or "body" in result or "headers" in result


def build_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """``{"status", "body", "headers"?}`` / ``ApiResponse`` / bare body -> a response triple."""
    if type(result) is dict and "status" in result and (type(result["status"]) is int or _envelope(result)):
        # the common case first
        status, body = result["status"], result.get("body")
        if (type(body) is dict or type(body) is list) and type(status) is int and 200 <= status <= 599 \
                and "headers" not in result:  # the commonest: a JSON body, no headers
            return status, [("content-type", JSON)], json_payload(body)
        headers = result.get("headers")
    elif isinstance(result, ApiResponse):
        status, body, headers = result.status, result.body, result.headers
    elif isinstance(result, dict) and ("status" in result or "status_code" in result) and _envelope(result):
        status = result.get("status", result.get("status_code"))
        body = result.get("body")
        headers = result.get("headers")
    elif result is None:
        return 204, [], b""
    else:
        status, body, headers = 200, result, None
    if type(status) is not int or not 200 <= status <= 599:  # a 1xx is never a final answer
        raise BadResult(f"handler returned status {status!r}; expected an int between 200 and 599")
    if not headers:  # the common case
        out, has_type = [], False
    else:
        out = check_headers(headers)
        has_type = any(k == "content-type" for k, _ in out)
    if body is None:
        payload = b""
    elif isinstance(body, bytes):
        payload = body
        if not has_type:
            out.append(("content-type", "application/octet-stream"))
    elif isinstance(body, str):
        try:
            payload = body.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800"): no UTF-8 for it
            raise BadResult(f"body is not valid text: {exc.object[exc.start:exc.end]!r} at character "
                            f"{exc.start} has no UTF-8 form") from None
        if not has_type:
            out.append(("content-type", "text/plain; charset=utf-8"))
    else:  # dicts, lists, numbers, Structs, models: JSON
        payload = json_payload(body)
        if not has_type:
            out.append(("content-type", JSON))
    return status, out, payload
