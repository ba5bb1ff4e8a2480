"""What the console's flow diagram draws: steps, their triggers, the topics between them.

Pure functions over the discovered steps (no I/O): :func:`describe_app` for ``GET /__edge/app``
and :func:`cron_in_words` for the cron badges ("every day at 03:00").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

__all__ = ["describe_app", "cron_in_words"]

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NAMES = {name[:3].lower(): i for i, name in enumerate(_DAYS)}


def describe_app(steps: Iterable, streams: Iterable, *, now: datetime) -> dict[str, Any]:
    """``{"flows", "steps", "topics", "streams"}``: everything the diagram and the side panel show.

    ``topics`` maps each topic to the steps that publish it (``enqueues``, or ``virtualEnqueues``
    with ``virtual: true``) and those that receive it (queue triggers, or ``virtualSubscribes``).
    """
    steps = sorted(steps, key=lambda s: s.name)
    topics: dict[str, dict[str, list]] = {}

    def topic(name: str) -> dict[str, list]:
        return topics.setdefault(name, {"publishers": [], "subscribers": []})

    out_steps = []
    for step in steps:
        for e in step.enqueues:
            topic(e.topic)["publishers"].append({"step": step.name, "label": e.label,
                                                 "conditional": e.conditional, "virtual": False})
        for e in step.virtual_enqueues:
            topic(e.topic)["publishers"].append({"step": step.name, "label": e.label,
                                                 "conditional": e.conditional, "virtual": True})
        for t in step.queue_triggers:
            topic(t.topic)["subscribers"].append({"step": step.name, "virtual": False})
        for name in step.virtual_subscribes:
            topic(name)["subscribers"].append({"step": step.name, "virtual": True})
        out_steps.append({
            "name": step.name,
            "description": step.description,
            "file": step.file,
            "flows": list(step.flows),
            "dialect": step.dialect,
            "noop": step.is_noop,
            "triggers": [_trigger(step, t, now) for t in step.triggers],
            "enqueues": [_enqueue(e) for e in step.enqueues],
            "virtualEnqueues": [_enqueue(e) for e in step.virtual_enqueues],
            "virtualSubscribes": list(step.virtual_subscribes),
            "includeFiles": list(step.include_files),
        })
    flows = sorted({f for s in steps for f in s.flows})
    return {
        "flows": flows,
        "steps": out_steps,
        "topics": dict(sorted(topics.items())),
        "streams": [{"name": d.name, "description": d.description, "storage": d.storage_type,
                     "file": d.file, "access": "canAccess" if d.can_access is not None else "open"}
                    for d in sorted(streams, key=lambda d: d.name)],
    }


def _enqueue(e) -> dict[str, Any]:
    return {"topic": e.topic, "label": e.label, "conditional": e.conditional}


def _trigger(step, t, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {"type": t.type, "index": t.index, "condition": t.condition is not None}
    if t.type == "http":
        out.update(method=t.method, path=t.path, body_schema=t.body_schema is not None,
                   middleware=len(t.middleware))
    elif t.type == "queue":
        c = t.config
        out.update(topic=t.topic, config={
            "type": c.type, "maxRetries": c.max_retries, "backoffType": c.backoff_type,
            "backoffDelayMs": c.backoff_delay_ms, "visibilityTimeout": c.visibility_timeout,
            "delaySeconds": c.delay_seconds, "concurrency": c.concurrency, "timeout": c.timeout,
        })
    elif t.type == "cron":
        out.update(expression=t.expression, timezone=t.timezone, missed=t.missed,
                   words=cron_in_words(t.expression), next=_next_fire(step, t, now))
    elif t.type == "state":
        out.update(group=t.group, key=t.key)
    elif t.type == "stream":
        out.update(streamName=t.stream_name, groupId=t.group_id, itemId=t.item_id)
    return out


def _next_fire(step, t, now: datetime) -> float | None:
    from .._cron import CronSchedule, next_fire_after
    from ..errors import EdgeError

    try:
        schedule = CronSchedule.parse(t.expression, t.timezone, where=f"{step.file}: triggers[{t.index}]")
        when = next_fire_after(schedule, now)
    except EdgeError:
        return None
    return None if when is None else when.timestamp()


# -- cron in words ----------------------------------------------------------------------------

def cron_in_words(expression: str) -> str:
    """A short English reading of a cron expression, or the expression itself when it is unusual.

    5 fields are minute-first; 6 and 7 are seconds-first (year last), as edge reads them.

    >>> cron_in_words("0 3 * * *")
    'every day at 03:00'
    >>> cron_in_words("*/5 * * * * *")
    'every 5 seconds'
    """
    fields = expression.split()
    if len(fields) == 5:
        second, (minute, hour, dom, month, dow), year = "0", fields, "*"
    elif len(fields) in (6, 7):
        second, minute, hour, dom, month, dow = fields[:6]
        year = fields[6] if len(fields) == 7 else "*"
    else:
        return expression
    if year not in ("*", "?"):
        return expression
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else dow
    days = _days_phrase(dom, month, dow)
    if days is None:
        return expression
    time = _time_phrase(second, minute, hour)
    if time is None:
        return expression
    if days == "every day":
        return time if time.startswith("every") and not time.startswith("every day") else f"every day {time}"
    if time.startswith("every"):
        return f"{time}, {days}"
    return f"{days} {time}"


def _every(field: str) -> int | None:
    """``*`` -> 1, ``*/n`` or ``0/n`` -> n, anything else -> None."""
    if field == "*":
        return 1
    for head in ("*/", "0/"):
        if field.startswith(head) and field[len(head):].isdigit():
            return int(field[len(head):])
    return None


def _single(field: str) -> int | None:
    return int(field) if field.isdigit() else None


def _time_phrase(second: str, minute: str, hour: str) -> str | None:
    s, m, h = _single(second), _single(minute), _single(hour)
    es, em, eh = _every(second), _every(minute), _every(hour)
    if es is not None and em == 1 and eh == 1:
        return "every second" if es == 1 else f"every {es} seconds"
    if s is None:
        return None
    if em is not None and eh == 1:
        base = "every minute" if em == 1 else f"every {em} minutes"
        return base if s == 0 else f"{base}, at second {s}"
    if m is not None and eh is not None:
        base = "every hour" if eh == 1 else f"every {eh} hours"
        if m == 0 and s == 0:
            return f"{base}, on the hour"
        return f"{base} at minute {m}" + (f", second {s}" if s else "")
    if m is not None and s is not None and h is not None:
        return f"at {h:02d}:{m:02d}" + (f":{s:02d}" if s else "")
    if m is not None and hour.replace(",", "").isdigit():
        hours = [int(x) for x in hour.split(",")]
        return "at " + _join([f"{x:02d}:{m:02d}" for x in hours])
    return None


def _days_phrase(dom: str, month: str, dow: str) -> str | None:
    if month != "*":
        return None
    if dom == "*" and dow == "*":
        return "every day"
    if dom == "*":
        names = _weekdays(dow)
        if names is None:
            return None
        if names == _DAYS[1:6]:
            return "on weekdays"
        return "every " + _join(list(names))
    if dow == "*" and dom.isdigit():
        return f"on day {int(dom)} of every month"
    if dow == "*" and dom == "L":
        return "on the last day of every month"
    return None


def _weekdays(dow: str) -> tuple[str, ...] | None:
    out: list[str] = []
    for part in dow.lower().split(","):
        if "-" in part:
            low, _, high = part.partition("-")
            a, b = _day_number(low), _day_number(high)
            if a is None or b is None or a > b:
                return None
            out.extend(_DAYS[i % 7] for i in range(a, b + 1))
        else:
            n = _day_number(part)
            if n is None:
                return None
            out.append(_DAYS[n % 7])
    return tuple(out)


def _day_number(text: str) -> int | None:
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    return _DAY_NAMES.get(text[:3]) if text[:3] in _DAY_NAMES and len(text) == 3 else None


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
