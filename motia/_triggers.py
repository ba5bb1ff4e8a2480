"""Motia 1.0's trigger helpers: ``http``, ``api``, ``queue``, ``cron``, ``state``, ``stream``.

Same names and arguments as the ``motia`` package (1.0.4 and the release candidates); they
return edge's trigger dicts (``edge.steps.helpers``), which discovery validates like any
hand-written trigger. Differences that do not change behaviour: ``api`` does not warn, and
``queue`` takes both 1.0.4's ``config=`` and the release candidates' ``infrastructure=``.
"""

from __future__ import annotations

from typing import Any

from edge.steps import helpers

__all__ = ["http", "api", "queue", "cron", "state", "stream"]


def http(method: str, path: str, *, body_schema: Any | None = None, response_schema: dict[int, Any] | None = None,
         query_params: list[Any] | None = None, middleware: list[Any] | None = None,
         condition: Any | None = None) -> dict[str, Any]:
    """An HTTP trigger: ``http("POST", "/todo", body_schema=Todo)``."""
    return helpers.http(method, path, body_schema=body_schema, response_schema=response_schema,
                        query_params=query_params, middleware=middleware, condition=condition)


def api(method: str, path: str, *, body_schema: Any | None = None, response_schema: dict[int, Any] | None = None,
        query_params: list[Any] | None = None, middleware: list[Any] | None = None,
        condition: Any | None = None) -> dict[str, Any]:
    """The release candidates' name of :func:`http`."""
    return http(method, path, body_schema=body_schema, response_schema=response_schema,
                query_params=query_params, middleware=middleware, condition=condition)


def queue(topic: str, *, input: Any | None = None, config: Any | None = None, condition: Any | None = None,
          infrastructure: Any | None = None) -> dict[str, Any]:
    """A queue trigger: ``queue("todo.created", input=Todo, config=QueueConfig(max_retries=5))``."""
    return helpers.queue(topic, input=input, config=config, infrastructure=infrastructure, condition=condition)


def cron(expression: str, *, condition: Any | None = None) -> dict[str, Any]:
    """A cron trigger; 6 fields start with seconds (``"0 */5 * * * *"``), as in Motia 1.0."""
    return helpers.cron(expression, condition=condition)


def state(*, condition: Any | None = None) -> dict[str, Any]:
    """A trigger on every state change (``condition`` filters: ``lambda input, ctx: ...``)."""
    return helpers.state(condition=condition)


def stream(stream_name: str, *, group_id: str | None = None, item_id: str | None = None,
           condition: Any | None = None) -> dict[str, Any]:
    """A trigger on changes of a stream's items (optionally one group / one item)."""
    return helpers.stream(stream_name, group_id=group_id, item_id=item_id, condition=condition)
