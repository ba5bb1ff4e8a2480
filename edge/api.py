"""What HTTP handlers receive and may return: ``ApiRequest`` and ``ApiResponse``."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiRequest", "ApiResponse"]

_DICT_KEYS = {
    "body": "body",
    "pathParams": "path_params",
    "path_params": "path_params",
    "queryParams": "query_params",
    "query_params": "query_params",
    "headers": "headers",
    "rawBody": "raw_body",
    "raw_body": "raw_body",
    "method": "method",
    "path": "path",
}


class ApiRequest:
    """An HTTP request: attributes, or dict access with Motia 0.x keys (``req["body"]``)."""

    __slots__ = ("method", "path", "path_params", "query_params", "_headers", "body", "raw_body")

    def __init__(self, method, path, path_params, query_params, headers, body, raw_body):
        self.method = method
        self.path = path
        self.path_params = path_params
        self.query_params = query_params
        self._headers = headers  # a dict, or the server's header map (made a dict when read)
        self.body = body
        self.raw_body = raw_body

    @property
    def headers(self) -> dict:
        """Request headers, lower-case names -> values."""
        headers = self._headers
        if type(headers) is not dict:
            headers = self._headers = dict(headers.items())
        return headers

    @headers.setter
    def headers(self, value: dict) -> None:
        self._headers = value

    @property
    def pathParams(self) -> dict:
        return self.path_params

    @property
    def queryParams(self) -> dict:
        return self.query_params

    @property
    def rawBody(self) -> bytes:
        return self.raw_body

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, _DICT_KEYS[key])
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        name = _DICT_KEYS.get(key)
        return default if name is None else getattr(self, name)

    def __contains__(self, key: str) -> bool:
        return key in _DICT_KEYS

    def keys(self):
        return ["body", "pathParams", "queryParams", "headers", "rawBody"]

    def __repr__(self) -> str:
        return f"ApiRequest({self.method} {self.path})"


class ApiResponse:
    """An HTTP response a handler may return instead of ``{"status", "body", "headers"}``."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int = 200, body: Any = None, headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}

    @property
    def status_code(self) -> int:
        return self.status

    def __repr__(self) -> str:
        return f"ApiResponse({self.status})"
