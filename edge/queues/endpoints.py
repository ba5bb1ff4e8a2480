"""The queue endpoints of the runtime's own API (what `edge emit` and `edge dlq` call).

    POST /__edge/emit            {"topic", "data", "messageGroupId"?}  -> 202 once durable
                                 [event, ...] (at most MAX_EMIT)       -> 202 once all are durable (or none)
    GET  /__edge/dlq             ?step=S&limit=N&after=ID               -> {"dead_letters": [...], "total",
                                                                            "more", "next_after"}
    POST /__edge/dlq/redrive     {"step"?, "id"?, "to"?, "topic"?}      -> {"count", "redriven", "skipped_count", "skipped"}
    GET  /__edge/dlq/orphans     ?step=S                                -> {"orphans": [{"step", "topic",
                                                                            "count", "first"}]}
    POST /__edge/dlq/orphans/move {"step"?}                             -> {"moved": N}

(``DELETE /__edge/dlq`` is the console's, edge/server/console.py; ``edge dlq delete`` calls it.)
"""

from __future__ import annotations

import re

from .._format import clip
from ..errors import EdgeError, SchemaError
from ..tracing import new_id
from .dlq import DEFAULT_LIMIT, MAX_LIMIT, list_page
from .enqueue import parse_event
from .orphans import failed_files, moving_refused
from .service import BadRedrive, NotFound

__all__ = ["queue_endpoints", "int_param", "MAX_EMIT"]

_TRACE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Events one ``POST /__edge/emit`` may carry as a list.
MAX_EMIT = 1000


def queue_endpoints() -> dict:
    """``(method, path) -> endpoint`` of the queue part of the runtime's surface."""
    return {
        ("POST", "/__edge/emit"): emit,
        ("GET", "/__edge/dlq"): dlq_list,
        ("POST", "/__edge/dlq/redrive"): dlq_redrive,
        ("GET", "/__edge/dlq/orphans"): dlq_orphans,
        ("POST", "/__edge/dlq/orphans/move"): dlq_orphans_move,
    }


async def emit(app, request):
    service = app.runtime.queues
    body = request.body
    given = request.header("x-trace-id")
    given = given if given and _TRACE_ID.match(given) else None
    if isinstance(body, list):
        return await _emit_list(service, body, given)
    where = "emit"
    if not isinstance(body, dict):
        raise EdgeError('POST /__edge/emit takes a JSON object {"topic": "...", "data": ..., "messageGroupId"?: "..."}, '
                        f"or a list of up to {MAX_EMIT} of them")
    topic, data, group = parse_event(body, where)
    if topic not in service.by_topic:
        return _not_found(service.no_subscribers(topic), topics=service.topics)
    trace_id = given or new_id(16)
    out = await service.emit(topic, data, group=group, trace_id=trace_id, where=where)
    return 202, {"topic": topic, "steps": out.steps, "trace_id": trace_id}


async def _emit_list(service, events: list, given: str | None):
    """Many events in one request: all are checked first, then stored in one commit (all of
    them or, on any error, none). Each gets its own trace id, unless the request names one."""
    if not events or len(events) > MAX_EMIT:
        raise EdgeError(f"POST /__edge/emit takes a list of 1 to {MAX_EMIT} events, got {len(events)}"
                        + ("; send them in several requests" if events else ""))
    stored = f"none of the {len(events)} events was stored"
    outs, checked = [], []
    try:
        for i, event in enumerate(events):
            where = f"emit[{i}]"
            topic, data, group = parse_event(event, where)
            if topic not in service.by_topic:
                return _not_found(f"{where}: {service.no_subscribers(topic, stored)}", topics=service.topics)
            trace_id = given or new_id(16)
            outs.append(service.outgoing(topic, data, group, trace_id, where=where, record=False))
            checked.append((data, group, trace_id))
    except SchemaError as exc:
        raise SchemaError(f"{exc}; {stored}", exc.errors) from None
    except EdgeError as exc:
        raise EdgeError(f"{exc}; {stored}") from None
    await service.commit(outs)
    if service.on_outgoing is not None:  # hook (edge.testing): what was stored, once it was
        for out, (data, group, trace_id) in zip(outs, checked):
            service.on_outgoing(out, data, group, trace_id)
    return 202, {"accepted": len(outs),
                 "messages": [{"topic": out.topic, "steps": out.steps, "trace_id": trace_id}
                              for out, (_, _, trace_id) in zip(outs, checked)]}


#: Digits an integer parameter may have (ids and limits need 20 at most).
MAX_DIGITS = 40
_INTEGER = re.compile(r"-?[0-9]+")


def int_param(value, name: str, low: int | None = None) -> int | None:
    """An integer from a query string or a JSON body (not a float, not a bool: 3.9 was 3);
    None when not given. Raises EdgeError (a 400) naming ``name``."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):  # ASCII digits ("²" is a digit to isdigit)
        digits = len(value.strip().lstrip("-"))
        if digits > MAX_DIGITS:  # (int() refuses 4,300 digits with a ValueError: was a 500)
            raise EdgeError(f"{name}: expected an integer, got one of {digits} digits")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EdgeError(f"{name}: expected an integer, got {clip(repr(value))}")
    if low is not None and value < low:
        raise EdgeError(f"{name}: expected an integer of at least {low}, got {value}")
    return value


async def dlq_list(app, request):
    """A page of dead letters, oldest first: ``limit`` (default 100, at most 1000) after id
    ``after``, with ``total`` (of ``step``), ``more`` (after this page) and ``next_after`` (the
    ``after`` of the next page, None on the last)."""
    q = request.query_params
    limit = int_param(q.get("limit"), "limit", low=1)
    if limit is not None and limit > MAX_LIMIT:
        raise EdgeError(f"limit: expected an integer of at most {MAX_LIMIT}, got {limit} "
                        "(page on with after=<the last id>)")
    after = int_param(q.get("after"), "after", low=0)
    return 200, list_page(app.runtime.store, step=q.get("step") or None, limit=limit or DEFAULT_LIMIT, after=after)


async def dlq_redrive(app, request):
    body = request.body if request.body is not None else {}
    if not isinstance(body, dict) or not set(body) <= {"step", "id", "to", "topic"}:
        raise EdgeError('POST /__edge/dlq/redrive takes {"step"?: "...", "id"?: 17, "to"?: "...", "topic"?: "..."}')
    step, dlq_id, to, topic = body.get("step"), int_param(body.get("id"), "id"), body.get("to"), body.get("topic")
    if to is not None and step is None and dlq_id is None:
        raise EdgeError('"to" moves the dead letters of one "step" or one "id"; give one of them too')
    if topic is not None and to is None:
        raise EdgeError('"topic" says which topic of step "to" they go to; give "to" too')
    try:
        result = await app.runtime.queues.redrive(step=step, dlq_id=dlq_id, to=to, topic=topic)
    except NotFound as exc:
        return _not_found(str(exc))
    except BadRedrive as exc:  # `--to` a step whose file does not load: say so (edge dev serves the rest)
        raise BadRedrive(str(exc) + failed_files(app.runtime.discovery)) from None
    return 200, result


async def dlq_orphans(app, request):
    """Messages stored for a (step, topic) no step subscribes to any more, per subscription."""
    return 200, {"orphans": app.runtime.queues.orphans(request.query_params.get("step") or None)}


async def dlq_orphans_move(app, request):
    """Turn those messages (of ``step``) into dead letters."""
    body = request.body if request.body is not None else {}
    if not isinstance(body, dict) or not set(body) <= {"step"} or not isinstance(body.get("step", ""), str):
        raise EdgeError('POST /__edge/dlq/orphans/move takes {"step"?: "..."}')
    refused = moving_refused(app.runtime.discovery, app.settings.dir)
    if refused is not None:
        return 409, {"error": "Conflict", "detail": refused}
    return 200, {"moved": await app.runtime.queues.move_orphans(body.get("step"))}


def _not_found(detail: str, **extra):
    return 404, {"error": "Not Found", "detail": detail, **extra}
