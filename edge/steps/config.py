"""Step and stream config normalisation: the user's dict in, validated Step fields out.

Two dialects are read into the same model:

* native / Motia 1.0: ``{"name", "triggers": [...], "enqueues", ...}``
* Motia 0.x: ``{"type": "api"|"event"|"cron"|"noop", "subscribes", "emits", ...}``
* transitional (the published ``motia create`` templates): ``triggers`` with
  ``{"type": "api"|"event", ...}`` entries next to 0.x's ``emits`` / ``virtualEmits``

Keys are accepted in camelCase and snake_case at every level. Every problem raises
:class:`edge.errors.ConfigError` with one line ``<file>: <field path>: <what>; <fix>``,
where the field path uses the user's own spelling (``triggers[0].config.maxRetries``).
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from .model import (
    HTTP_METHODS,
    TRIGGER_TYPES,
    CronTrigger,
    Enqueue,
    HttpTrigger,
    QueryParam,
    QueueConfig,
    QueueTrigger,
    StateTrigger,
    StreamTrigger,
    Trigger,
)

__all__ = ["parse_step_config", "parse_stream_config", "normalise_path", "snake_case", "camel_case"]

_STEP_KEYS = (
    "name", "description", "triggers", "enqueues", "virtual_enqueues", "virtual_subscribes",
    "flows", "include_files", "infrastructure", "runtime",
    "emits", "virtual_emits",  # the transitional dialect's names for enqueues / virtualEnqueues
)
#: Where a step's async handler runs: asyncio (the default: the Python async ecosystem) or trio.
RUNTIMES = ("asyncio", "trio")
# Every key a Motia 0.x config may carry; keys another type uses are ignored, as Motia did
# (0.x projects often carry "subscribes": [] on api steps). timezone/missed are edge's.
_LEGACY_KEYS = (
    "type", "name", "description", "subscribes", "emits", "virtual_emits", "virtual_subscribes",
    "flows", "include_files", "method", "path", "body_schema", "response_schema", "query_params",
    "middleware", "input", "infrastructure", "cron", "timezone", "missed", "runtime",
)
_LEGACY_TYPES = ("api", "event", "cron", "noop")
_TRIGGER_KEYS = {
    "http": ("type", "method", "path", "body_schema", "response_schema", "query_params", "middleware", "condition",
             "timeout"),
    "queue": ("type", "topic", "input", "config", "infrastructure", "condition"),
    "cron": ("type", "expression", "timezone", "missed", "condition"),
    "state": ("type", "group", "key", "condition"),
    "stream": ("type", "stream_name", "group_id", "item_id", "condition"),
}
# Older trigger type names that mean the same thing (Motia's deprecated api() helper).
_TRIGGER_ALIASES = {"api": "http", "event": "queue"}
_QUEUE_CONFIG_KEYS = (
    "type", "max_retries", "backoff_type", "backoff_delay_ms", "visibility_timeout",
    "delay_seconds", "concurrency", "timeout",
)
_INFRA_KEYS = ("queue", "handler")
_INFRA_QUEUE_KEYS = tuple(k for k in _QUEUE_CONFIG_KEYS if k != "timeout")
_INFRA_HANDLER_KEYS = ("timeout", "ram", "cpu")  # ram/cpu: Motia cloud sizing, ignored here
_ENQUEUE_KEYS = ("topic", "label", "conditional")
_QUERY_PARAM_KEYS = ("name", "description")
_STREAM_KEYS = ("name", "description", "schema", "base_config", "can_access", "on_join", "on_leave")
_BASE_CONFIG_KEYS = ("storage_type",)

# Accepted but never suggested nor listed (the transitional dialect's 0.x names).
_QUIET_KEYS = ("emits", "virtual_emits")
# Keys from the other dialect (or common slips) that difflib cannot guess.
_KEY_HINTS = {
    "emits": ("enqueues", '"emits" is the Motia 0.x name'),
    "virtual_emits": ("virtualEnqueues", '"virtualEmits" is the Motia 0.x name'),
    "subscribes": ("triggers", 'Motia 0.x "subscribes" became queue triggers: edge.queue("topic")'),
    "cron": ("expression", None),
    "schedule": ("expression", None),
}

# Cron macros croniter knows but edge does not take; the error shows the 5-field form.
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BRACE_PARAM = re.compile(r"\{([^{}]*)\}\Z")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")
_MAX_SHOWN = 60  # characters of a bad value shown in an error


# -- small pure helpers ---------------------------------------------------------------------

def snake_case(key: str) -> str:
    """``"maxRetries"`` -> ``"max_retries"``; snake_case keys come back unchanged."""
    return _CAMEL_HUMP.sub(r"_\1", key).lower()


def camel_case(key: str) -> str:
    """``"max_retries"`` -> ``"maxRetries"``."""
    first, *rest = key.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _show(value: Any) -> str:
    """A bad value as the error shows it: JSON where it can be, else a short repr."""
    if isinstance(value, type):
        text = f"<class {value.__qualname__}>"
    elif callable(value) and hasattr(value, "__qualname__"):
        text = f"<function {value.__qualname__}>"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _one_of(options: Sequence[str]) -> str:
    """``one of "a", "b"`` for error messages."""
    return "one of " + ", ".join(f'"{o}"' for o in options)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _error(file: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{file}: {path}: {message}" if path else f"{file}: {message}")


def _as_mapping(value: Any, file: str, path: str, what: str = "dict") -> Mapping[str, Any]:
    """Accept a dict, or a pydantic model (Motia's own trigger/config objects)."""
    if isinstance(value, Mapping):
        return value
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(by_alias=True, exclude_none=True)
    raise _error(file, path, f"expected {what}, got {_show(value)}")


def normalise_path(path: str) -> str:
    """``/todos/{id}/`` -> ``/todos/:id``. Raises ValueError with the reason.

    Parameters are whole segments, ``:name`` or ``{name}``; a trailing "/" is dropped
    (the router treats ``/todos/`` as ``/todos``).
    """
    if not path.startswith("/"):
        raise ValueError(f'must start with "/", got {_show(path)}; write {_show("/" + path)}')
    segments = path.split("/")
    out, seen = [], set()
    for segment in segments:
        brace = _BRACE_PARAM.match(segment)
        if brace:
            segment = ":" + brace.group(1)
        elif "{" in segment or "}" in segment:
            raise ValueError(f"a path parameter must be a whole segment, like /todos/:id; got {_show(path)}")
        if segment.startswith(":"):
            name = segment[1:]
            if not _PARAM_NAME.match(name):
                raise ValueError(f'bad parameter name {_show(name)} in {_show(path)}; use letters, digits and "_"')
            if name in seen:
                raise ValueError(f"parameter {_show(name)} appears twice in {_show(path)}")
            seen.add(name)
        out.append(segment)
    result = "/".join(out)
    if len(result) > 1 and result.endswith("/"):
        result = result.rstrip("/") or "/"
    return result


def _schema_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a schema, or None. Schemas stay raw; edge.schema compiles them."""
    if value is None or isinstance(value, (dict, type)):
        return None
    if isinstance(value, (str, bytes, int, float, bool, list, tuple)):
        return f"expected a JSON Schema dict, a msgspec.Struct class or a pydantic model class, got {_show(value)}"
    if hasattr(value, "model_dump"):
        return f"got a pydantic model instance ({_show(value)}); pass the class itself"
    if callable(value) and getattr(value, "__name__", "") == "model_json_schema":
        return "got the method model_json_schema; call it (Model.model_json_schema()) or pass the class"
    return None  # e.g. list[Item]: a type expression msgspec understands


# -- reading one config object --------------------------------------------------------------

class _Obj:
    """One config object: keys normalised to snake_case, unknown and doubled keys rejected."""

    def __init__(self, raw: Any, file: str, path: str, allowed: Sequence[str], *, what: str = "dict"):
        self.file, self.path = file, path
        mapping = _as_mapping(raw, file, path, what)
        self.values: dict[str, Any] = {}
        self.spelled: dict[str, str] = {}
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise _error(file, path, f"keys must be strings, got {_show(key)}")
            canon = snake_case(key)
            if canon not in allowed:
                raise self._unknown(key, allowed)
            if canon in self.values:
                raise _error(file, _join(path, key), f'given twice (as "{self.spelled[canon]}" and "{key}"); keep one')
            self.values[canon] = value
            self.spelled[canon] = key

    def _unknown(self, key: str, allowed: Sequence[str]) -> ConfigError:
        style = snake_case if "_" in key else camel_case  # answer in the user's own style
        where = _join(self.path, key)
        hint = _KEY_HINTS.get(snake_case(key))
        if hint and snake_case(hint[0]) in allowed:
            note = f" ({hint[1]})" if hint[1] else ""
            return _error(self.file, where, f'unknown key; did you mean "{style(snake_case(hint[0]))}"?{note}')
        if "config" in allowed and snake_case(key) in _QUEUE_CONFIG_KEYS and snake_case(key) != "type":
            return _error(self.file, where, f'unknown key; queue settings go under "config": {{"{key}": ...}}')
        allowed = [k for k in allowed if k not in _QUIET_KEYS]
        squash = {k.replace("_", ""): k for k in allowed}
        close = _close_matches(key.replace("_", "").lower(), list(squash), n=1, cutoff=0.75)
        if close:
            return _error(self.file, where, f'unknown key; did you mean "{style(squash[close[0]])}"?')
        return _error(self.file, where, f'unknown key "{key}"; valid keys: {", ".join(style(k) for k in allowed)}')

    def has(self, key: str) -> bool:
        return self.values.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def where(self, key: str) -> str:
        return _join(self.path, self.spelled.get(key, camel_case(key)))

    def fail(self, key: str, message: str) -> ConfigError:
        return _error(self.file, self.where(key), message)

    def expected(self, key: str, what: str) -> ConfigError:
        return self.fail(key, f"expected {what}, got {_show(self.values.get(key))}")

    # typed readers; each returns the default when the key is absent or None

    def required(self, key: str, hint: str) -> Any:
        if self.values.get(key) is None:
            raise self.fail(key, f"required; {hint}")
        return self.values[key]

    def text(self, key: str, default: Any = None, *, required: str | None = None, empty: bool = False) -> Any:
        value = self.required(key, required) if required else self.values.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.expected(key, "str")
        if not empty and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.expected(key, "int")
        if value < minimum:
            raise self.expected(key, f"an int >= {minimum}")
        return value

    def number(self, key: str, default: Any, *, positive: bool = False) -> Any:
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.expected(key, "number")
        if value < 0 or (positive and value == 0):
            raise self.expected(key, "a number > 0" if positive else "a number >= 0")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.values.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.expected(key, "bool")
        return value

    def choice(self, key: str, options: Sequence[str], default: Any) -> Any:
        value = self.values.get(key)
        if value is None:
            return default
        if value not in options:
            raise self.expected(key, _one_of(options))
        return value

    def function(self, key: str, what: str) -> Any:
        value = self.values.get(key)
        if value is not None and not callable(value):
            raise self.expected(key, what)
        return value

    def items(self, key: str) -> list[Any]:
        value = self.values.get(key)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise self.expected(key, "list")
        return list(value)

    def texts(self, key: str) -> tuple[str, ...]:
        items = self.items(key)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise _error(self.file, f"{self.where(key)}[{i}]", f"expected str, got {_show(item)}")
        return tuple(items)

    def schema(self, key: str) -> Any:
        value = self.values.get(key)
        problem = _schema_problem(value)
        if problem:
            raise self.fail(key, problem)
        return value


# -- pieces shared by both dialects ---------------------------------------------------------

_CONDITION = "a function (input, ctx) -> bool"


def _enqueues(obj: _Obj, key: str) -> tuple[Enqueue, ...]:
    out = []
    for i, item in enumerate(obj.items(key)):
        where = f"{obj.where(key)}[{i}]"
        if isinstance(item, str):
            if not item:
                raise _error(obj.file, where, "expected a topic, got \"\"")
            out.append(Enqueue(item))
            continue
        if not isinstance(item, Mapping) and not hasattr(item, "model_dump"):
            raise _error(obj.file, where, f'expected a topic or {{"topic", "label"?, "conditional"?}}, got {_show(item)}')
        e = _Obj(item, obj.file, where, _ENQUEUE_KEYS)
        out.append(Enqueue(
            e.text("topic", required='e.g. {"topic": "todo.created"}'),
            label=e.text("label"),
            conditional=e.flag("conditional", False),
        ))
    return tuple(out)


def _queue_config(trigger: _Obj, step_infra: Any) -> QueueConfig:
    """Merge step-level infrastructure, trigger infrastructure and trigger config (last wins)."""
    merged: dict[str, Any] = {}
    for infra_raw, infra_path in ((step_infra, "infrastructure"), (trigger.values.get("infrastructure"), trigger.where("infrastructure"))):
        if infra_raw is None:
            continue
        infra = _Obj(infra_raw, trigger.file, infra_path, _INFRA_KEYS)
        if infra.has("queue"):
            merged.update(_read_queue_config(_Obj(infra.raw("queue"), trigger.file, infra.where("queue"), _INFRA_QUEUE_KEYS)))
        if infra.has("handler"):
            handler = _Obj(infra.raw("handler"), trigger.file, infra.where("handler"), _INFRA_HANDLER_KEYS)
            if handler.has("timeout"):
                merged["timeout"] = handler.number("timeout", None, positive=True)
    if trigger.has("config"):
        merged.update(_read_queue_config(_Obj(trigger.raw("config"), trigger.file, trigger.where("config"), _QUEUE_CONFIG_KEYS)))
    return QueueConfig(**merged)


def _read_queue_config(c: _Obj) -> dict[str, Any]:
    """Only the keys the user gave, validated; defaults come from QueueConfig."""
    readers = {
        "type": lambda: c.choice("type", ("standard", "fifo"), None),
        "max_retries": lambda: c.integer("max_retries", 0),
        "backoff_type": lambda: c.choice("backoff_type", ("exponential", "fixed"), None),
        "backoff_delay_ms": lambda: c.integer("backoff_delay_ms", 0),
        "visibility_timeout": lambda: c.number("visibility_timeout", None, positive=True),
        "delay_seconds": lambda: c.number("delay_seconds", 0),
        "concurrency": lambda: c.integer("concurrency", 1, minimum=1),
        "timeout": lambda: c.number("timeout", None, positive=True),
    }
    return {key: readers[key]() for key in c.values if c.values[key] is not None and key in readers}


def _http_trigger(t: _Obj, index: int, method_hint: str, path_hint: str) -> HttpTrigger:
    method = t.required("method", method_hint)
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise t.expected("method", _one_of(HTTP_METHODS))
    path = t.text("path", required=path_hint)
    try:
        path = normalise_path(path)
    except ValueError as exc:
        raise t.fail("path", str(exc)) from None
    return HttpTrigger(
        index=index,
        method=method.upper(),
        path=path,
        body_schema=t.schema("body_schema"),
        response_schema=_response_schema(t),
        query_params=_query_params(t),
        middleware=_middleware(t),
        condition=t.function("condition", _CONDITION),
        timeout=t.number("timeout", None, positive=True),
    )


def _response_schema(t: _Obj) -> dict[int, Any] | None:
    raw = t.values.get("response_schema")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise t.expected("response_schema", '{status: schema}, e.g. {200: Todo, 404: {"type": "object"}}')
    out = {}
    for status, schema in raw.items():
        where = f"{t.where('response_schema')}[{_show(status)}]"
        code = int(status) if isinstance(status, str) and status.isdigit() else status
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise _error(t.file, where, "expected an HTTP status code (100-599) as the key")
        problem = _schema_problem(schema)
        if problem:
            raise _error(t.file, where, problem)
        out[code] = schema
    return out


def _query_params(t: _Obj) -> tuple[QueryParam, ...]:
    out = []
    for i, item in enumerate(t.items("query_params")):
        where = f"{t.where('query_params')}[{i}]"
        if isinstance(item, str) and item:
            out.append(QueryParam(item))
            continue
        if not isinstance(item, Mapping) and not hasattr(item, "model_dump"):
            raise _error(t.file, where, f'expected {{"name", "description"}}, got {_show(item)}')
        q = _Obj(item, t.file, where, _QUERY_PARAM_KEYS)
        out.append(QueryParam(q.text("name", required='e.g. {"name": "limit", "description": "max items"}'), q.text("description", "", empty=True)))
    return tuple(out)


def _middleware(t: _Obj) -> tuple[Any, ...]:
    items = t.items("middleware")
    for i, fn in enumerate(items):
        if not callable(fn):
            raise _error(t.file, f"{t.where('middleware')}[{i}]", f"expected a function (req, ctx, next), got {_show(fn)}")
    return tuple(items)


def _cron_fields(t: _Obj, key: str, hint: str) -> tuple[str, str | None, str]:
    expression = t.text(key, required=hint)
    macro = _CRON_MACROS.get(expression.strip().lower())
    if macro:
        raise t.fail(key, f'macros are not supported, got {_show(expression)}; write {_show(macro)}')
    fields = expression.split()
    if not 5 <= len(fields) <= 7:
        raise t.fail(key, f"expected 5, 6 or 7 fields (6 and 7 start with seconds), got {len(fields)}: {_show(expression)}")
    timezone = t.text("timezone")
    if timezone is not None:
        _check_timezone(t, timezone)
    missed = t.choice("missed", ("skip", "once"), "skip")
    expression = " ".join(fields)
    # Field values, ranges and impossible dates: refused here, at discovery, naming the step.
    from .._cron import CronSchedule

    CronSchedule.parse(expression, timezone, where=f"{t.file}: {t.path or 'config'}",
                       expression_key=key)
    return expression, timezone, missed


def _check_timezone(t: _Obj, name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
        return
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    close = _close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
    fix = f'did you mean "{close[0]}"?' if close else 'use an IANA name such as "Europe/Berlin" or "UTC"'
    raise t.fail("timezone", f"unknown time zone {_show(name)}; {fix}")


# -- triggers (native dialect) --------------------------------------------------------------

def _trigger(raw: Any, index: int, file: str, step_infra: Any) -> Trigger:
    path = f"triggers[{index}]"
    mapping = _as_mapping(raw, file, path, 'a trigger dict with "type", e.g. edge.http("GET", "/todos")')
    kind = mapping.get("type")
    if kind is None:
        raise _error(file, f"{path}.type", "required; " + _one_of(TRIGGER_TYPES)
                     + ', or build the trigger with edge.http(...), edge.queue(...), edge.cron(...), edge.state(...), edge.stream(...)')
    kind = _TRIGGER_ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in _TRIGGER_KEYS:
        raise _error(file, f"{path}.type", f"expected {_one_of(TRIGGER_TYPES)}, got {_show(mapping['type'])}")
    t = _Obj(mapping, file, path, _TRIGGER_KEYS[kind])
    if kind == "http":
        return _http_trigger(t, index, 'e.g. "method": "GET"', 'e.g. "path": "/todos/:id"')
    if kind == "queue":
        return QueueTrigger(
            index=index,
            topic=t.text("topic", required='e.g. "topic": "todo.created"'),
            input=t.schema("input"),
            config=_queue_config(t, step_infra),
            condition=t.function("condition", _CONDITION),
        )
    if kind == "cron":
        expression, timezone, missed = _cron_fields(t, "expression", 'e.g. "expression": "0 3 * * *" (every day at 03:00)')
        return CronTrigger(index=index, expression=expression, timezone=timezone, missed=missed,
                           condition=t.function("condition", _CONDITION))
    if kind == "state":
        return StateTrigger(index=index, group=t.text("group"), key=t.text("key"),
                            condition=t.function("condition", _CONDITION))
    return StreamTrigger(
        index=index,
        stream_name=t.text("stream_name", required='the name of a stream defined in a *_stream.py file, e.g. "streamName": "todos"'),
        group_id=t.text("group_id"),
        item_id=t.text("item_id"),
        condition=t.function("condition", _CONDITION),
    )


# -- public entry points --------------------------------------------------------------------

def _find_key(mapping: Mapping[str, Any], canon: str) -> str | None:
    return next((k for k in mapping if isinstance(k, str) and snake_case(k) == canon), None)


def parse_step_config(raw: Any, *, file: str) -> dict[str, Any]:
    """Validate a step's ``config`` and return the fields of a :class:`~edge.steps.Step`.

    Args:
        raw: the module's ``config`` (a dict, or a pydantic model with ``model_dump``).
        file: the step file relative to the project, used in error messages.

    Returns:
        ``name, description, triggers, enqueues, virtual_enqueues, virtual_subscribes,
        flows, include_files, dialect`` (handler, file, module, path are added by discovery).

    Raises:
        ConfigError: one line naming the file, the field path, the problem and the fix.
    """
    mapping = _as_mapping(raw, file, "config")
    triggers_key, type_key = _find_key(mapping, "triggers"), _find_key(mapping, "type")
    if triggers_key is not None and type_key is not None:
        raise _error(file, type_key, f'Motia 0.x "type" next to "{triggers_key}"; remove "type" and describe the step with triggers only')
    if type_key is not None:
        return _parse_legacy(_Obj(mapping, file, "", _LEGACY_KEYS))
    c = _Obj(mapping, file, "", _STEP_KEYS)
    name = c.text("name", required='add "name": "a-unique-name" to config')
    triggers_raw = c.required(
        "triggers",
        'add "triggers": [edge.http("GET", "/hello")] (or a Motia 0.x "type": "api" | "event" | "cron" | "noop")',
    )
    if not isinstance(triggers_raw, (list, tuple)):
        raise c.expected("triggers", 'a list of triggers, e.g. [edge.queue("todo.created")]')
    if not triggers_raw:
        raise c.fail("triggers", 'must not be empty; add at least one trigger, e.g. edge.http("GET", "/hello"), or use "type": "noop" for a step only drawn in the flow diagram')
    step_infra = c.values.get("infrastructure")
    if step_infra is not None:
        _Obj(step_infra, file, c.where("infrastructure"), _INFRA_KEYS)  # reject typos even without queue triggers
    triggers = tuple(_trigger(t, i, file, step_infra) for i, t in enumerate(triggers_raw))
    keys = {"enqueues_key": "enqueues", "virtual_key": "virtual_enqueues"}
    for key, new, old in (("enqueues_key", "enqueues", "emits"), ("virtual_key", "virtual_enqueues", "virtual_emits")):
        if old in c.values:
            if new in c.values:
                raise c.fail(old, f'given together with "{c.spelled[new]}"; keep one ("{c.spelled[old]}" is '
                                  f'the Motia 0.x name of "{camel_case(new)}")')
            keys[key] = old
    # Written for Motia's 0.x runtime: 0.x's names for enqueues, or its trigger type names.
    transitional = (keys["enqueues_key"] == "emits" or keys["virtual_key"] == "virtual_emits"
                    or any(isinstance(t, Mapping) and t.get("type") in _TRIGGER_ALIASES for t in triggers_raw))
    return _step_fields(c, name, triggers, **keys, dialect="transitional" if transitional else "1.0")


def _parse_legacy(c: _Obj) -> dict[str, Any]:
    """Motia 0.x: one step type per file; normalised into triggers."""
    kind = c.values["type"]
    if kind not in _LEGACY_TYPES:
        hint = ' (edge and Motia 1.0 steps use "triggers": [...] instead of "type")' if kind in TRIGGER_TYPES else ""
        raise c.fail("type", f"expected {_one_of(_LEGACY_TYPES)}, got {_show(kind)}{hint}")
    name = c.text("name", required='add "name": "a-unique-name" to config')
    triggers: tuple[Trigger, ...] = ()
    if kind == "api":
        triggers = (_http_trigger(c, 0, 'e.g. "method": "GET"', 'e.g. "path": "/todos/:id"'),)
    elif kind == "event":
        c.required("subscribes", 'e.g. "subscribes": ["todo.created"]')
        topics = c.texts("subscribes")
        if not topics:
            raise c.fail("subscribes", 'must list at least one topic, e.g. ["todo.created"]')
        queue_config = _queue_config(c, None)
        schema = c.schema("input")
        triggers = tuple(QueueTrigger(index=i, topic=topic, input=schema, config=queue_config) for i, topic in enumerate(topics))
    elif kind == "cron":
        expression, timezone, missed = _cron_fields(c, "cron", 'e.g. "cron": "0 3 * * *" (every day at 03:00)')
        triggers = (CronTrigger(index=0, expression=expression, timezone=timezone, missed=missed),)
    return _step_fields(c, name, triggers, enqueues_key="emits", virtual_key="virtual_emits", dialect="0.x")


def _step_fields(c: _Obj, name: str, triggers: tuple[Trigger, ...], *, enqueues_key: str, virtual_key: str,
                 dialect: str) -> dict[str, Any]:
    """The Step fields both dialects share; only the enqueue keys' names differ (0.x: "emits")."""
    return {
        "name": name,
        "description": c.text("description", empty=True),
        "triggers": triggers,
        "enqueues": _enqueues(c, enqueues_key),
        "virtual_enqueues": _enqueues(c, virtual_key),
        "virtual_subscribes": c.texts("virtual_subscribes"),
        "flows": c.texts("flows"),
        "include_files": c.texts("include_files"),
        "dialect": dialect,
        "runtime": c.choice("runtime", RUNTIMES, "asyncio"),
    }


def parse_stream_config(raw: Any, *, file: str) -> dict[str, Any]:
    """Validate a ``*_stream.py`` ``config``; returns the fields of a :class:`~edge.steps.StreamDef`.

    Keys: ``name`` (required), ``schema``, ``baseConfig: {storageType: "default"|"memory"}``,
    ``canAccess: fn(subscription, auth_context) -> bool``, ``description``, ``onJoin``, ``onLeave``.
    """
    c = _Obj(raw, file, "", _STREAM_KEYS, what="dict")
    storage_type = "default"
    if c.has("base_config"):
        base = _Obj(c.raw("base_config"), file, c.where("base_config"), _BASE_CONFIG_KEYS)
        storage_type = base.choice("storage_type", ("default", "memory"), "default")
    return {
        "name": c.text("name", required='add "name": "todos" to config (the name used in ctx.streams.todos)'),
        "description": c.text("description", empty=True),
        "schema": c.schema("schema"),
        "storage_type": storage_type,
        "can_access": c.function("can_access", "a function (subscription, auth_context) -> bool"),
        "on_join": c.function("on_join", "a function"),
        "on_leave": c.function("on_leave", "a function"),
    }


def _close_matches(word, possibilities, n=3, cutoff=0.6):
    """difflib's suggestions, imported only when a message needs one (it is rarely needed)."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=n, cutoff=cutoff)
