"""The runtime's own endpoints under ``/__edge/`` (guarded by EDGE_TOKEN when it is set)."""

from __future__ import annotations

from ..errors import EdgeError
from ..openapi import build_openapi
from ..queues.endpoints import int_param
from ..tracing import read_logs, read_spans

__all__ = ["core_endpoints"]


def core_endpoints() -> dict:
    """``(method, path) -> endpoint`` of the runtime's core surface."""
    return {
        ("GET", "/__edge/health"): health,
        ("GET", "/__edge/openapi.json"): openapi,
        ("GET", "/__edge/state"): state_get,
        ("POST", "/__edge/state"): state_set,
        ("GET", "/__edge/logs"): logs,
        ("GET", "/__edge/traces"): traces,
    }


async def health(app, request):
    out = app.runtime.health()
    if "streams" in out and app.websocket is not None:  # live sockets, slow clients cut off, idle closed
        out["streams"].update(app.websocket.stats())
    return 200, {**out, "interface": app.interface,
                 "bodies_receiving": {"count": app.intake.bodies, "bytes": app.intake.receiving}}


async def openapi(app, request):
    # The steps do not change while the server runs: build the document (and compile its
    # schemas) once, on first request.
    if app.openapi is None:
        app.openapi = build_openapi(app.runtime.steps.values())
    return 200, app.openapi


async def state_get(app, request):
    """``?group=G&key=K`` -> the value; ``?group=G`` -> {key: value}; no group -> the group list."""
    state = app.runtime.state
    group, key = request.query_params.get("group"), request.query_params.get("key")
    if not group:
        return 200, {"groups": state.list_groups_nowait()}
    if key:
        value = state.get_nowait(group, key)
        if value is None:
            return 404, {"error": "Not Found", "detail": f"no state at group {group!r} key {key!r}"}
        return 200, {"group": group, "key": key, "value": value}
    return 200, {"group": group, "items": dict(state.items_nowait(group))}


async def state_set(app, request):
    body = request.body
    if not isinstance(body, dict) or not {"group", "key", "value"} <= body.keys():
        raise EdgeError('POST /__edge/state takes {"group": ..., "key": ..., "value": ...}')
    group, key = body["group"], body["key"]
    if not isinstance(group, str) or not isinstance(key, str):
        raise EdgeError(f'POST /__edge/state: "group" and "key" must be strings, got {type(group).__name__} '
                        f'and {type(key).__name__}')
    value = await app.runtime.state.set(group, key, body["value"])
    return 200, {"group": group, "key": key, "value": value}


def _limit(request) -> int:
    """``?limit=``: 1 or more (100 when not given; at most 10,000 are answered)."""
    limit = int_param(request.query_params.get("limit"), "limit", low=1)
    return 100 if limit is None else min(10_000, limit)


async def logs(app, request):
    await app.runtime.tracer.stored()  # a record logged a moment ago is in this answer
    q = request.query_params
    records = read_logs(app.runtime.store, limit=_limit(request), trace_id=q.get("trace_id"), step=q.get("step"))
    return 200, {"logs": records}


async def traces(app, request):
    await app.runtime.tracer.stored()  # a record logged a moment ago is in this answer
    q = request.query_params
    spans = read_spans(app.runtime.store, limit=_limit(request), trace_id=q.get("trace_id"), step=q.get("step"))
    return 200, {"spans": spans}
