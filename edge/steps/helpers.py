"""Trigger helpers: ``http``, ``queue``, ``cron``, ``state``, ``stream``.

They have the names and arguments of Motia 1.0's ``motia`` helpers (plus a few edge
extensions, keyword-only) and return plain dicts with ``"type"``, exactly what a user could
write by hand; ``edge.steps.config`` validates them together with hand-written triggers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["http", "api", "queue", "cron", "state", "stream"]


def _trigger(type: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type}
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out


def http(
    method: str,
    path: str,
    *,
    body_schema: Any = None,
    response_schema: dict[int, Any] | None = None,
    query_params: list[Any] | None = None,
    middleware: list[Any] | None = None,
    condition: Any = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """An HTTP trigger: ``http("POST", "/todos", body_schema=Todo)``.

    Args:
        method: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS (any case).
        path: ``/todos/:id`` (``/todos/{id}`` is accepted too).
        body_schema: JSON Schema dict, msgspec.Struct class or pydantic class.
        response_schema: ``{status: schema}``, for OpenAPI.
        query_params: ``[{"name", "description"}]``, for OpenAPI.
        middleware: ``[async fn(req, ctx, next)]``, outermost first.
        condition: ``fn(input, ctx) -> bool``; false answers 422.
        timeout: seconds the handler may take; past them it is cancelled and the client gets 504.
    """
    return _trigger(
        "http",
        method=method,
        path=path,
        body_schema=body_schema,
        response_schema=response_schema,
        query_params=query_params,
        middleware=middleware,
        condition=condition,
        timeout=timeout,
    )


def api(method: str, path: str, **kw: Any) -> dict[str, Any]:
    """Motia's older name for :func:`http`."""
    return http(method, path, **kw)


def queue(
    topic: str,
    *,
    input: Any = None,
    config: dict[str, Any] | None = None,
    infrastructure: dict[str, Any] | None = None,
    condition: Any = None,
) -> dict[str, Any]:
    """A queue trigger: ``queue("todo.created", input=Todo, config={"maxRetries": 5})``.

    Args:
        topic: the topic to subscribe to.
        input: schema of the message data.
        config: ``type`` ("standard"|"fifo"), ``maxRetries``, ``backoffType``,
            ``backoffDelayMs``, ``visibilityTimeout``, ``delaySeconds``, ``concurrency``,
            ``timeout`` (camelCase or snake_case).
        infrastructure: the Motia form ``{"queue": {...}, "handler": {"timeout": s}}``.
        condition: ``fn(input, ctx) -> bool``; false acks the message without running.
    """
    return _trigger(
        "queue", topic=topic, input=input, config=config,
        infrastructure=infrastructure, condition=condition,
    )


def cron(
    expression: str,
    *,
    timezone: str | None = None,
    missed: str | None = None,
    condition: Any = None,
) -> dict[str, Any]:
    """A cron trigger: ``cron("0 3 * * *", timezone="Europe/Berlin")``.

    Args:
        expression: 5 fields (minute first), or 6/7 fields (seconds first; 7th is the year).
        timezone: IANA zone name; default the machine's local zone.
        missed: "skip" (default) or "once": after downtime, fire once for missed slots.
        condition: ``fn(input, ctx) -> bool``.
    """
    return _trigger("cron", expression=expression, timezone=timezone, missed=missed, condition=condition)


def state(*, group: str | None = None, key: str | None = None, condition: Any = None) -> dict[str, Any]:
    """A state trigger: every state change, or only those in ``group`` (and ``key``)."""
    return _trigger("state", group=group, key=key, condition=condition)


def stream(
    stream_name: str,
    *,
    group_id: str | None = None,
    item_id: str | None = None,
    condition: Any = None,
) -> dict[str, Any]:
    """A stream trigger: changes to items of ``stream_name`` (optionally one group / item)."""
    return _trigger("stream", stream_name=stream_name, group_id=group_id, item_id=item_id, condition=condition)
