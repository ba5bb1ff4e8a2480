"""One validation interface over JSON Schema dicts, msgspec Structs and pydantic models.

A step's schema is compiled once with `compile_schema` and then used per request or per
message. Every kind reports *every* error with a msgspec-style JSON path (``$.items[0].name``),
which is why JSON Schema is checked by our own small validator (``edge/_jsonschema.py``) rather than by msgspec
(first error only) or the ``jsonschema`` package (+5.3 MiB RSS; see docs/schemas.md).

How each kind validates:

- dict: compiled into nested closures (``check(value) -> errors | None``); the data itself
  is returned. ``$ref``s are resolved and regexes compiled at compile time.
- Struct: ``msgspec.convert`` first (fast path); only when it fails is the data checked
  against ``msgspec.json.schema(cls)`` to list every error.
- pydantic: ``model_validate``; the error ``loc``s are mapped to JSON paths. pydantic is
  never imported here unless the user's schema is a pydantic class.

An error is built as ``[message, innermost segment, ..., outermost segment]``: a container
appends its key as the error travels up, so the success path builds no paths at all.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._jsonschema import (
    _MSGSPEC_AT, _TYPE_OF, MAX_ERRORS, PatternGaveUp, _Compiler, _count, _or, _path, _render, _show, _type_name,
)
from ._json import explained, may_be_deep
from ._json import decode as _decode_json
from .errors import ConfigError, MalformedJSON, SchemaError

__all__ = ["Schema", "compile_schema", "to_builtins"]

# --- public interface -----------------------------------------------------------------


def compile_schema(spec: Any, *, where: str = "") -> Schema | None:
    """Compile a step's schema once, for validating many values.

    Args:
        spec: a JSON Schema dict, a ``msgspec.Struct`` subclass, a pydantic model class, or None.
        where: names the schema in error messages, e.g. ``"steps/x.py: triggers[0].bodySchema"``.

    Returns:
        A `Schema`, or None when ``spec`` is None.

    Raises:
        ConfigError: ``spec`` is none of the three kinds, or the JSON Schema is invalid
            (unknown type, unresolvable ``$ref``, bad regex, misspelt keyword, ...).
    """
    if spec is None:
        return None
    if isinstance(spec, Schema):
        return spec
    label = where or "schema"
    if isinstance(spec, dict):
        return _JsonSchema(spec, _Compiler(spec, label).compile_root())
    if isinstance(spec, type):
        if issubclass(spec, msgspec.Struct):
            try:
                as_json_schema = msgspec.json.schema(spec)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{label}: cannot build a JSON Schema for {spec.__name__}: {exc}") from None
            check = _Compiler(as_json_schema, label, msgspec_rules=True).compile_root()
            return _StructSchema(spec, check, as_json_schema)
        if _is_pydantic_model(spec):
            return _PydanticSchema(spec)
        got = f"class {spec.__name__}"
    elif isinstance(spec, msgspec.Struct) or _is_pydantic_model(type(spec)):
        got = f"a {type(spec).__name__} instance; pass the class {type(spec).__name__} itself"
    else:
        got = type(spec).__name__
    raise ConfigError(
        f"{label}: expected a JSON Schema dict, a msgspec.Struct class or a pydantic model class, got {got}"
    )


class Schema:
    """A compiled schema. ``kind`` is "json", "struct" or "pydantic"."""

    __slots__ = ("spec",)
    kind: str = ""

    def validate(self, data: Any) -> Any:
        """Validate decoded JSON (builtins).

        Returns:
            The data itself for a JSON Schema dict; an instance for a Struct or pydantic class.

        Raises:
            SchemaError: with ``errors``, every problem as ``{"path", "message"}`` in document order.
        """
        raise NotImplementedError

    def decode_json(self, raw: bytes) -> Any:
        """Parse JSON bytes, then `validate`; malformed JSON raises SchemaError too."""
        return self.validate(_decode(raw))

    def json_schema(self) -> dict:
        """The JSON Schema (for OpenAPI)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        name = getattr(self.spec, "__name__", "dict")
        return f"<Schema kind={self.kind!r} {name}>"


def to_builtins(value: Any) -> Any:
    """Turn Struct and pydantic instances (also nested in lists and dicts) into JSON-able builtins.

    Builtins come back equal (datetimes, UUIDs, sets and the like become their JSON forms).
    Used before a value is stored or sent.

    Raises:
        TypeError: a value of a type that has no JSON form.
    """
    if type(value) in _TYPE_OF and type(value) not in (dict, list, tuple):
        return value
    return msgspec.to_builtins(value, enc_hook=_encode_other)


# --- the three kinds ------------------------------------------------------------------


class _JsonSchema(Schema):
    __slots__ = ("_check", "_fast")
    kind = "json"

    def __init__(self, spec: dict, check):
        self.spec = spec
        self._check = check
        self._fast = _fast_type(spec)

    def validate(self, data):
        fast = self._fast
        if fast is not None:
            # msgspec accepts a subset of what the schema accepts: a pass is a pass, in C; on a
            # failure the full validator runs and reports every error with its path.
            try:
                msgspec.convert(data, fast)
                return data
            except msgspec.ValidationError:
                pass
        errors = _run(self._check, data)
        if errors:
            raise _schema_error(_render(errors))
        return data

    def json_schema(self):
        return self.spec


#: Keywords the fast path understands (anything else: the full validator only).
_FAST_OBJECT_KEYS = frozenset(("type", "properties", "required", "additionalProperties", "title", "description"))
_FAST_SCALAR_KEYS = frozenset(("type", "title", "description", "minLength", "maxLength", "minimum", "maximum",
                               "exclusiveMinimum", "exclusiveMaximum"))
_FAST_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}


def _fast_type(spec: dict):
    """A msgspec Struct that accepts only values ``spec`` accepts, for the common shape of a
    request body (an object of plain scalar properties); None when ``spec`` is anything else."""
    if not isinstance(spec, dict) or spec.get("type") != "object" or not set(spec) <= _FAST_OBJECT_KEYS:
        return None
    properties = spec.get("properties") or {}
    required = spec.get("required") or []
    extra = spec.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list) or extra not in (True, False):
        return None
    if not set(required) <= set(properties):
        return None
    fields, rename = [], {}
    for i, (name, sub) in enumerate(properties.items()):
        kind = _fast_scalar(sub)
        if kind is None or not isinstance(name, str):
            return None
        attr = f"f{i}"
        rename[attr] = name
        if name in required:
            fields.append((attr, kind))
        else:
            fields.append((attr, kind | msgspec.UnsetType, msgspec.UNSET))
    try:
        return msgspec.defstruct("_FastBody", fields, kw_only=True, rename=rename,
                                 forbid_unknown_fields=extra is False)
    except (TypeError, ValueError):
        return None


def _fast_scalar(sub):
    from typing import Annotated

    if not isinstance(sub, dict) or not set(sub) <= _FAST_SCALAR_KEYS:
        return None
    kind = _FAST_TYPES.get(sub.get("type")) if isinstance(sub.get("type"), str) else None
    if kind is None:
        return None
    bounds = {}
    for key, meta in (("minLength", "min_length"), ("maxLength", "max_length")):
        if key in sub:
            if kind is not str or type(sub[key]) is not int:
                return None
            bounds[meta] = sub[key]
    for key, meta in (("minimum", "ge"), ("maximum", "le"), ("exclusiveMinimum", "gt"), ("exclusiveMaximum", "lt")):
        if key in sub:
            if kind not in (int, float) or type(sub[key]) not in (int, float) or (
                    kind is int and type(sub[key]) is not int):
                return None  # (draft-4 boolean exclusiveMinimum included)
            bounds[meta] = sub[key]
    return Annotated[kind, msgspec.Meta(**bounds)] if bounds else kind


class _StructSchema(Schema):
    __slots__ = ("_check", "_json_schema")
    kind = "struct"

    def __init__(self, cls: type, check, as_json_schema: dict):
        self.spec = cls
        self._check = check
        self._json_schema = as_json_schema

    def validate(self, data):
        if isinstance(data, self.spec):
            data = msgspec.to_builtins(data)
        try:
            return msgspec.convert(data, self.spec)
        except msgspec.ValidationError as exc:
            raise self._explain(data, exc) from None

    def decode_json(self, raw):
        if may_be_deep(raw):
            return self.validate(_decode(raw))  # may be too deep: decode with the depth limit first
        try:
            return msgspec.json.decode(raw, type=self.spec)
        except msgspec.ValidationError as exc:
            first_error = exc
        except msgspec.DecodeError as exc:
            raise _malformed(explained(exc, raw)) from None
        raise self._explain(_decode(raw), first_error)

    def _explain(self, data, exc: msgspec.ValidationError) -> SchemaError:
        # msgspec stops at the first error; our validator lists them all. Some checks exist
        # only in msgspec (e.g. datetime parsing), so its error is kept when ours misses it.
        errors = _render(_run(self._check, data) or [])
        match = _MSGSPEC_AT.match(str(exc))
        message, path = (match[1], match[2]) if match else (str(exc), "$")
        # msgspec puts "unknown field" and "missing field" on the object, we on the property
        if not any(e["path"] == path or e["path"].startswith((path + ".", path + "[")) for e in errors):
            errors.append({"path": path, "message": message[:1].lower() + message[1:]})
        return _schema_error(errors)

    def json_schema(self):
        return self._json_schema


class _PydanticSchema(Schema):
    __slots__ = ("_validation_error", "_json_schema")
    kind = "pydantic"

    def __init__(self, model: type):
        from pydantic import ValidationError  # already imported: the user's model exists

        self.spec = model
        self._validation_error = ValidationError
        self._json_schema = None

    def validate(self, data):
        try:
            return self.spec.model_validate(data)
        except self._validation_error as exc:
            raise _schema_error(_pydantic_errors(exc, data)) from None

    def json_schema(self):
        if self._json_schema is None:
            self._json_schema = self.spec.model_json_schema()
        return self._json_schema


def _is_pydantic_model(cls: type) -> bool:
    # Detected by name so that edge never imports pydantic for users who do not use it.
    return (
        isinstance(cls, type)
        and hasattr(cls, "model_validate")
        and any(c.__name__ == "BaseModel" and c.__module__.startswith("pydantic") for c in cls.__mro__)
    )


def _encode_other(obj):
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True)
    raise TypeError(
        f"cannot convert a value of type {type(obj).__name__} to JSON; use dict, list, str, int, float, bool, "
        "None, a msgspec.Struct or a pydantic model"
    )


# --- errors ---------------------------------------------------------------------------


def _decode(raw: bytes):
    """JSON bytes to builtins; MalformedJSON (JSONTooDeep past edge._json.MAX_DEPTH) if not."""
    try:
        return _decode_json(raw)
    except msgspec.DecodeError as exc:
        raise _malformed(exc) from None


def _malformed(exc: Exception) -> SchemaError:
    message = str(exc).removeprefix("JSON is malformed: ")
    return MalformedJSON(f"Malformed JSON: {message}", [{"path": "$", "message": message}])


def _run(check, data):
    try:
        return check(data)
    except RecursionError:
        return [["nested too deeply"]]
    except PatternGaveUp as exc:  # one is enough: the body is refused (a hostile one has thousands)
        return [[str(exc)]]


def _schema_error(errors: list[dict]) -> SchemaError:
    n = len(errors)
    if n >= MAX_ERRORS:
        del errors[MAX_ERRORS:]
        message = f"at least {MAX_ERRORS} validation errors (the first {MAX_ERRORS} are listed)"
    else:
        message = f"{n} validation error{'' if n == 1 else 's'}"
    return SchemaError(message, errors)


def _pydantic_errors(exc, data) -> list[dict]:
    items = []  # (document order, path, expected type or None, message)
    for err in exc.errors(include_url=False):
        segments, order = _walk_loc(err["loc"], data)
        expected = _PYDANTIC_TYPES.get(err["type"])
        path = _path(segments)
        if expected and items and items[-1][1] == path and items[-1][2]:
            items[-1][2].append(expected)  # a union: both members' type errors at one path
            continue
        items.append([order, path, [expected] if expected else None, _pydantic_message(err, segments)])
    items.sort(key=lambda item: item[0])
    return [
        {"path": path, "message": f"expected {_or(expected)}, {message}" if expected else message}
        for _, path, expected, message in items
    ]


def _walk_loc(loc, data):
    """Map a pydantic loc onto the data: union member tags in loc are not keys, so skip them."""
    segments, order, current = [], [], data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and isinstance(part, str):
            if part in current:
                order.append(list(current).index(part))
                current = current[part]
            elif i == len(loc) - 1:  # a missing property
                order.append(len(current))
            else:
                continue
        elif isinstance(current, (list, tuple)) and isinstance(part, int) and 0 <= part < len(current):
            order.append(part)
            current = current[part]
        else:
            continue
        segments.append(part)
    return segments, order


_PYDANTIC_TYPES = {
    "string_type": "string", "int_type": "integer", "int_parsing": "integer",
    "int_from_float": "integer", "float_type": "number", "float_parsing": "number",
    "bool_type": "boolean", "bool_parsing": "boolean", "list_type": "array",
    "tuple_type": "array", "set_type": "array", "dict_type": "object", "model_type": "object",
    "model_attributes_type": "object", "none_required": "null",
}
_PYDANTIC_BOUNDS = {
    "greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"), "less_than": ("<", "lt"),
}


def _pydantic_message(err: dict, segments: list) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    name = _show(segments[-1]) if segments else '""'
    if kind in _PYDANTIC_TYPES:
        return f"got {_type_name(value)}"  # prefixed with "expected ..." by the caller
    if kind == "missing":
        return f"missing required property {name}"
    if kind == "extra_forbidden":
        return f"unknown property {name}"
    if kind in _PYDANTIC_BOUNDS:
        op, key = _PYDANTIC_BOUNDS[kind]
        return f"must be {op} {_show(ctx[key])}, got {_show(value)}"
    if kind == "multiple_of":
        return f"must be a multiple of {_show(ctx['multiple_of'])}, got {_show(value)}"
    if kind == "string_too_short":
        return f"must be at least {_count(ctx['min_length'], 'character')} long, got {len(value)}"
    if kind == "string_too_long":
        return f"must be at most {_count(ctx['max_length'], 'character')} long, got {len(value)}"
    if kind == "too_short":
        return f"must have at least {_count(ctx['min_length'], 'item')}, got {ctx['actual_length']}"
    if kind == "too_long":
        return f"must have at most {_count(ctx['max_length'], 'item')}, got {ctx['actual_length']}"
    if kind == "string_pattern_mismatch":
        return f"must match pattern {_show(ctx['pattern'])}, got {_show(value)}"
    if kind in ("literal_error", "enum"):
        return f"must be {ctx['expected'].replace(chr(39), chr(34))}, got {_show(value)}"  # 'a' -> "a"
    return err["msg"]


