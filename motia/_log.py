"""Module-level ``logger`` and ``enqueue``: they act for the invocation that is running."""

from __future__ import annotations

import logging
from typing import Any

from edge.context import current_context

from ._runtime import awaited, current

__all__ = ["logger", "enqueue", "Logger"]

_fallback = logging.getLogger("motia")


class Logger:
    """``from motia import logger``: ``logger.info("msg", {"data": ...})``. Inside a handler it
    is that invocation's ``ctx.logger`` (trace id, step, flows); elsewhere (import time) it logs
    through Python's ``logging`` as ``motia``."""

    def _log(self, level: str, message: Any, data: Any, extra: dict) -> None:
        ctx = current_context.get()
        if ctx is not None:
            getattr(ctx.logger, level)(message, data, **extra)
            return
        py_level = {"warn": logging.WARNING}.get(level, getattr(logging, level.upper(), logging.INFO))
        _fallback.log(py_level, "%s%s", message, "" if data is None else f" {data!r}")

    def info(self, message: Any, data: Any = None, **extra: Any) -> None:
        self._log("info", message, data, extra)

    def warn(self, message: Any, data: Any = None, **extra: Any) -> None:
        self._log("warn", message, data, extra)

    warning = warn

    def error(self, message: Any, data: Any = None, **extra: Any) -> None:
        self._log("error", message, data, extra)

    def debug(self, message: Any, data: Any = None, **extra: Any) -> None:
        self._log("debug", message, data, extra)

    def __repr__(self) -> str:
        return "<motia.logger>"


logger = Logger()


def enqueue(event: dict[str, Any]) -> Any:
    """Publish ``{"topic", "data", "messageGroupId"?}`` for the running invocation (its
    ``ctx.enqueue``). Awaited or not, it is durable before the response or the ack; from an
    HTTP or cron handler, ``await enqueue(...)`` returns once the message is stored."""
    result = current("enqueue").enqueue(event)
    return result if awaited() else None
