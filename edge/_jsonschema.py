"""The JSON Schema validator behind :mod:`edge.schema`: compiles a schema dict into nested
closures (``check(value) -> errors | None``) that collect *every* error with its path.

Private: use :func:`edge.schema.compile_schema`. Covers what pydantic's
``model_json_schema()`` emits (``$ref``/``$defs``, ``anyOf``/``oneOf``/``allOf``/``not``,
type lists, ``enum``/``const``, bounds, lengths, patterns, ``properties``/``required``/
``additionalProperties``/``patternProperties``, ``items``/``prefixItems``, light ``format``
checks) and refuses the rest at compile time instead of silently ignoring it.

An error is built as ``[message, innermost segment, ..., outermost segment]``: a container
appends its key as the error travels up, so the success path builds no paths at all.
"""

from __future__ import annotations

import math

import datetime
import decimal
import re
import uuid
from typing import Any

import msgspec

from .errors import ConfigError

#: Longest a schema's ``pattern`` (or a ``patternProperties`` name) may take to match one value,
#: in seconds. Python's ``re`` backtracks without bound: ``"^(a|aa)+$"`` against 60 characters
#: held the loop thread for good (a tester: one request hung every other, SIGTERM included).
#: Patterns run on the ``regex`` package, whose matching takes a timeout.
PATTERN_TIMEOUT = 0.05

# Validation stops collecting after this many errors, so a hostile 1 MiB body of
# wrong items cannot build a million error dicts (memory budget is 40 MiB).
MAX_ERRORS = 100

# Longest rendering of a value inside an error message before it is cut with "...".
_SHOW_MAX = 40

_TYPE_OF = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    dict: "object",
    list: "array",
    tuple: "array",
}
_JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")

# Keywords the validator implements, and keywords it reads past (annotations).
_KEYWORDS = frozenset(
    "type enum const properties required additionalProperties patternProperties propertyNames "
    "items prefixItems additionalItems contains minContains maxContains minimum maximum "
    "exclusiveMinimum exclusiveMaximum multipleOf minLength maxLength pattern minItems maxItems "
    "uniqueItems minProperties maxProperties allOf anyOf oneOf not if then else $ref $defs "
    "definitions format discriminator nullable".split()
)
_ANNOTATIONS = frozenset(
    "title description examples example default deprecated readOnly writeOnly $schema $id "
    "$comment $anchor contentEncoding contentMediaType".split()
)
_UNSUPPORTED = frozenset(
    "unevaluatedProperties unevaluatedItems dependentRequired dependentSchemas dependencies "
    "$dynamicRef $dynamicAnchor $recursiveRef $recursiveAnchor".split()
)

# "format" values checked lightly (parsed by msgspec); any other format is only an annotation.
_FORMAT_TYPES = {
    "date-time": datetime.datetime,
    "date": datetime.date,
    "time": datetime.time,
    "duration": datetime.timedelta,
    "uuid": uuid.UUID,
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_MSGSPEC_AT = re.compile(r"^(.*) - at `(\$[^`]*)`$", re.S)


def _render(errors: list[list]) -> list[dict]:
    return [{"path": _path(e[:0:-1]), "message": e[0]} for e in errors]


def _path(segments) -> str:
    parts = ["$"]
    for s in segments:
        if isinstance(s, int):
            parts.append(f"[{s}]")
        elif _IDENTIFIER.match(s):
            parts.append(f".{s}")
        else:
            parts.append(f"[{_show(s)}]")
    return "".join(parts)


def _show(value) -> str:
    """A value as JSON, cut short for messages."""
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _type_name(value) -> str:
    name = _TYPE_OF.get(type(value))
    if name is not None:
        return name
    for cls, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                      (dict, "object"), ((list, tuple), "array")):
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _count(n, noun: str, plural: str = "") -> str:
    return f"{_show(n)} {noun if n == 1 else plural or noun + 's'}"


def _json_equal(a, b) -> bool:
    ta, tb = _type_name(a), _type_name(b)
    if ta in ("integer", "number") and tb in ("integer", "number"):
        return a == b
    if ta != tb:
        return False
    if ta == "array":
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if ta == "object":
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return a == b


def _freeze(value):
    """A hashable key equal for JSON-equal values (true != 1, 1 == 1.0)."""
    name = _type_name(value)
    if name == "array":
        return ("a", tuple(map(_freeze, value)))
    if name == "object":
        return ("o", frozenset((k, _freeze(v)) for k, v in value.items()))
    if name in ("integer", "number"):
        return ("n", value)
    return (name, value) if value.__hash__ is not None else (name, id(value))


# --- the JSON Schema compiler ---------------------------------------------------------


def _accept(value):
    return None


def _reject(value):
    return [["no value is allowed here"]]


def _chain(fns: list):
    """One check running several, concatenating their errors (None when empty)."""
    fns = [fn for fn in fns if fn is not None]
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def chained(value):
        errors = None
        for fn in fns:
            found = fn(value)
            if found:
                if errors is None:
                    errors = found
                else:
                    errors.extend(found)
        return errors

    return chained


def _prefix(errors, found, key):
    """Add the errors of child ``key`` to ``errors``; return the list."""
    for e in found:
        e.append(key)
    if errors is None:
        return found
    errors.extend(found)
    return errors


class _Compiler:
    """Turns one JSON Schema document into a check function, raising ConfigError on a bad one."""

    def __init__(self, root: dict, label: str, *, msgspec_rules: bool = False):
        self.root = root
        self.label = label
        # For Structs follow msgspec: 1.0 is not an int, and a list with repeats fills a set.
        self.msgspec_rules = msgspec_rules
        self.done: dict[int, Any] = {}
        self.pending: dict[int, list] = {}

    def compile_root(self):
        return self.compile(self.root, "")

    def fail(self, loc: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.label}.{loc}: {problem}" if loc else f"{self.label}: {problem}")

    def compile(self, schema, loc: str):
        if schema is True:
            return _accept
        if schema is False:
            return _reject
        if isinstance(schema, type):
            raise self.fail(loc, _python_type_hint(schema))
        if not isinstance(schema, dict):
            raise self.fail(loc, f"expected a schema (an object, true or false), got {_show(schema)}")
        key = id(schema)
        if key in self.done:
            return self.done[key]
        if key in self.pending:  # a recursive $ref: bind late
            box = self.pending[key]
            return lambda value: box[0](value)
        self.pending[key] = box = [None]
        self._check_keywords(schema, loc)
        check = self._build(schema, loc)
        box[0] = self.done[key] = check
        del self.pending[key]
        return check

    def _check_keywords(self, schema: dict, loc: str) -> None:
        for key, value in schema.items():
            if isinstance(value, type):
                raise self.fail(_join(loc, key), _python_type_hint(value))
            if key in _KEYWORDS or key in _ANNOTATIONS or str(key).startswith("x-"):
                continue
            if key in _UNSUPPORTED:
                raise self.fail(loc, f'"{key}" is not supported by edge\'s validator')
            import difflib

            close = difflib.get_close_matches(str(key), _KEYWORDS, n=1, cutoff=0.8)
            if close:
                raise self.fail(loc, f'unknown keyword "{key}"; did you mean "{close[0]}"?')

    def _build(self, s: dict, loc: str):
        allowed = self._types(s, loc)
        by_type: dict[str, list] = {}

        def add(names, fn):
            for name in names:
                by_type.setdefault(name, []).append(fn)

        add(("integer", "number"), self._numbers(s, loc))
        add(("string",), self._strings(s, loc))
        add(("array",), self._array_counts(s, loc))
        add(("array",), self._array_items(s, loc))
        add(("object",), self._object(s, loc))
        generic = [self._enum(s, loc), self._const(s), self._ref(s, loc), *self._combinators(s, loc)]
        generic = [fn for fn in generic if fn is not None]
        by_type = {name: _chain(fns) for name, fns in by_type.items()}
        by_type = {name: fn for name, fn in by_type.items() if fn is not None}
        if set(s) & _KEYWORDS - {"$defs", "definitions"} == {"$ref"}:
            return generic[0]  # a bare {"$ref": ...}, maybe with annotations: no wrapper
        check = _assemble(allowed, by_type, _chain(generic), self.msgspec_rules)
        check.types = allowed
        return check

    def _types(self, s: dict, loc: str):
        if "type" not in s:
            return None
        names = s["type"]
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise self.fail(_join(loc, "type"), f"expected a type name or a list of them, got {_show(s['type'])}")
        for name in names:
            if name not in _JSON_TYPES:
                import difflib

                close = difflib.get_close_matches(name, _JSON_TYPES, n=1, cutoff=0.6)
                hint = f'did you mean "{close[0]}"?' if close else "expected one of " + ", ".join(
                    f'"{t}"' for t in _JSON_TYPES)
                raise self.fail(_join(loc, "type"), f'unknown type "{name}"; {hint}')
        if s.get("nullable") is True and "null" not in names:
            names = [*names, "null"]  # OpenAPI 3.0 style
        return tuple(names)

    def _number(self, s, loc, key, *, positive=False):
        value = s.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and value <= 0):
            need = "a number > 0" if positive else "a number"
            raise self.fail(_join(loc, key), f"expected {need}, got {_show(value)}")
        return value

    def _size(self, s, loc, key):
        value = s.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(_join(loc, key), f"expected an integer >= 0, got {_show(value)}")
        return value

    def _numbers(self, s, loc):
        fns = []
        for key, op, fails in (
            ("minimum", ">=", lambda v, b: v < b),
            ("maximum", "<=", lambda v, b: v > b),
            ("exclusiveMinimum", ">", lambda v, b: v <= b),
            ("exclusiveMaximum", "<", lambda v, b: v >= b),
        ):
            bound = self._number(s, loc, key)
            if bound is not None:
                fns.append(_bound_check(op, bound, fails))
        step = self._number(s, loc, "multipleOf", positive=True)
        if step is not None:

            exact_step = _exact(step)

            def multiple_of(value, step=step):
                if isinstance(value, int) and isinstance(step, int):
                    ok = value % step == 0
                else:  # in decimal, as the JSON wrote it: 0.3 is a multiple of 0.1, 1234567891.5 not of 1
                    ok = isinstance(value, int) or math.isfinite(value)
                    if ok:
                        exact = _exact(value)
                        # a quotient past 1e308 (1e308 / 0.01, a 400-digit integer / 0.5) is too
                        # large to be checked: not a multiple (and no OverflowError)
                        ok = (exact.is_zero() or exact.adjusted() - exact_step.adjusted() < QUOTIENT_DIGITS) \
                            and _EXACT.remainder(exact, exact_step).is_zero()
                return None if ok else [[f"must be a multiple of {_show(step)}, got {_show(value)}"]]

            fns.append(multiple_of)
        return _chain(fns)

    def _strings(self, s, loc):
        low, high = self._size(s, loc, "minLength"), self._size(s, loc, "maxLength")
        fns = [_length_check(low, high, "be", "character", suffix=" long")]
        if "pattern" in s:
            pattern = s["pattern"]
            search = self._regex(pattern, _join(loc, "pattern"))

            def matches(value):
                if search(value):
                    return None
                return [[f"must match pattern {_show(pattern)}, got {_show(value)}"]]

            fns.append(matches)
        fmt = s.get("format")
        if fmt in _FORMAT_TYPES or fmt == "email":
            target = _FORMAT_TYPES.get(fmt)

            def formatted(value):
                if target is None:
                    ok = _EMAIL.match(value) is not None
                else:
                    try:
                        msgspec.convert(value, target)
                        ok = True
                    except msgspec.ValidationError:
                        ok = False
                return None if ok else [[f"must be a valid {fmt}, got {_show(value)}"]]

            fns.append(formatted)
        return _chain(fns)

    def _array_counts(self, s, loc):
        low, high = self._size(s, loc, "minItems"), self._size(s, loc, "maxItems")
        if s.get("items") is False and isinstance(s.get("prefixItems"), list):
            # a tuple: extra items are reported once, as a length error
            n = len(s["prefixItems"])
            high = n if high is None else min(high, n)
        fns = [_length_check(low, high, "have", "item")]
        if s.get("uniqueItems") is True and not self.msgspec_rules:

            def unique(value):
                seen = set()
                for item in value:
                    key = _freeze(item)
                    if key in seen:
                        return [[f"must have unique items, got {_show(item)} more than once"]]
                    seen.add(key)
                return None

            fns.append(unique)
        if "contains" in s:
            contains = self.compile(s["contains"], _join(loc, "contains"))
            least = self._size(s, loc, "minContains")
            least = 1 if least is None else least
            most = self._size(s, loc, "maxContains")

            def contains_check(value):
                n = sum(1 for item in value if not contains(item))
                if n < least:
                    return [[f"must contain at least {_count(least, 'matching item')}, got {n}"]]
                if most is not None and n > most:
                    return [[f"must contain at most {_count(most, 'matching item')}, got {n}"]]
                return None

            fns.append(contains_check)
        return _chain(fns)

    def _array_items(self, s, loc):
        items, prefix = s.get("items"), s.get("prefixItems", ())
        rest_key = "items"
        if isinstance(items, list):  # draft 2019 and older: items as a list is a tuple
            prefix, items, rest_key = items, s.get("additionalItems"), "additionalItems"
        if not isinstance(prefix, (list, tuple)):
            raise self.fail(_join(loc, "prefixItems"), f"expected a list of schemas, got {_show(prefix)}")
        prefix = [self.compile(p, f"{_join(loc, 'prefixItems')}[{i}]") for i, p in enumerate(prefix)]
        if items is False and prefix:
            items = None  # checked as a length in _array_counts
        rest = None if items is None or items is True else self.compile(items, _join(loc, rest_key))
        if not prefix and rest is None:
            return None
        n_prefix = len(prefix)

        def check_items(value):
            errors = None
            for i in range(min(n_prefix, len(value))):
                found = prefix[i](value[i])
                if found:
                    errors = _prefix(errors, found, i)
            if rest is not None:
                for i in range(n_prefix, len(value)):
                    found = rest(value[i])
                    if found:
                        errors = _prefix(errors, found, i)
                        if len(errors) >= MAX_ERRORS:
                            break
            return errors

        return check_items

    def _object(self, s, loc):
        low, high = self._size(s, loc, "minProperties"), self._size(s, loc, "maxProperties")
        fns = [_length_check(low, high, "have", "property", "properties")]
        if "propertyNames" in s:
            names = self.compile(s["propertyNames"], _join(loc, "propertyNames"))

            def check_names(value):
                errors = None
                for key in value:
                    found = names(key)
                    if found:
                        for e in found:
                            e[0] = f"invalid property name: {e[0]}"
                        errors = _prefix(errors, found, key)
                return errors

            fns.append(check_names)
        properties = self._schema_map(s, loc, "properties")
        patterns = [
            (self._regex(pattern, _join(_join(loc, "patternProperties"), pattern)), check)
            for pattern, check in self._schema_map(s, loc, "patternProperties").items()
        ]
        extra = s.get("additionalProperties", True)
        extra = None if extra is True else False if extra is False else self.compile(
            extra, _join(loc, "additionalProperties"))
        required = s.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.fail(_join(loc, "required"), f"expected a list of property names, got {_show(required)}")
        if properties or patterns or extra is not None or required:
            fns.append(_object_check(properties, patterns, extra, tuple(required)))
        return _chain(fns)

    def _schema_map(self, s, loc, key) -> dict:
        value = s.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(_join(loc, key), f"expected an object of schemas, got {_show(value)}")
        return {name: self.compile(sub, _join(_join(loc, key), name)) for name, sub in value.items()}

    def _regex(self, pattern, loc):
        """``search(text)``: True or False; :class:`PatternGaveUp` past :data:`PATTERN_TIMEOUT`
        (which ends the whole validation: inside ``not`` or ``anyOf`` a give-up read as "no
        match" let the value through, and each one cost another 50 ms)."""
        import regex  # (only for schemas with patterns: it is 1.3 MiB of memory)

        try:
            compiled = regex.compile(pattern)
        except (regex.error, TypeError) as exc:
            raise self.fail(loc, f"invalid regular expression {_show(pattern)}: {exc}") from None

        def search(text):
            try:
                return compiled.search(text, timeout=PATTERN_TIMEOUT) is not None
            except TimeoutError:
                raise PatternGaveUp(_gave_up(pattern, text)) from None

        return search

    def _enum(self, s, loc):
        if "enum" not in s:
            return None
        choices = s["enum"]
        if not isinstance(choices, list):
            raise self.fail(_join(loc, "enum"), f"expected a list of values, got {_show(choices)}")
        shown = "[" + ", ".join(_show(c) for c in choices) + "]"
        strings = frozenset(c for c in choices if type(c) is str)

        def enum(value):
            if type(value) is str and value in strings:
                return None
            if type(value) is not str and any(_json_equal(value, c) for c in choices):
                return None
            return [[f"must be one of {shown}, got {_show(value)}"]]

        return enum

    def _const(self, s):
        if "const" not in s:
            return None
        const = s["const"]

        def check_const(value):
            if _json_equal(value, const):
                return None
            return [[f"must be {_show(const)}, got {_show(value)}"]]

        return check_const

    def _ref(self, s, loc):
        if "$ref" not in s:
            return None
        return self.compile(self.resolve(s["$ref"], _join(loc, "$ref")), _pointer_loc(s["$ref"]))

    def resolve(self, ref, loc):
        if not isinstance(ref, str) or not ref.startswith("#") or (len(ref) > 1 and ref[1] != "/"):
            raise self.fail(loc, f"cannot resolve {_show(ref)}; only references into this schema "
                                 'such as "#/$defs/Name" are supported')
        target = self.root
        for part in ref[2:].split("/") if len(ref) > 1 else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if "%" in part:
                from urllib.parse import unquote

                part = unquote(part)
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                known = ", ".join(f'"{k}"' for k in target) if isinstance(target, dict) else ""
                hint = f" (it has {known})" if known else ""
                raise self.fail(loc, f'cannot resolve "{ref}": no "{part}"{hint}')
        return target

    def _combinators(self, s, loc):
        fns = []
        for key in ("allOf", "anyOf", "oneOf"):
            if key not in s:
                continue
            subs = s[key]
            if not isinstance(subs, list) or not subs:
                raise self.fail(_join(loc, key), f"expected a non-empty list of schemas, got {_show(subs)}")
            branches = [self.compile(sub, f"{_join(loc, key)}[{i}]") for i, sub in enumerate(subs)]
            if key == "allOf":
                fns.append(_chain(branches))
            else:
                fns.append(_union(branches, key == "oneOf", self._discriminator(s, loc)))
        if "not" in s:
            negated = self.compile(s["not"], _join(loc, "not"))
            fns.append(lambda v: [['must not match the schema in "not"']] if not negated(v) else None)
        if "if" in s:
            condition = self.compile(s["if"], _join(loc, "if"))
            then = self.compile(s.get("then", True), _join(loc, "then"))
            otherwise = self.compile(s.get("else", True), _join(loc, "else"))
            fns.append(lambda v: otherwise(v) if condition(v) else then(v))
        return fns

    def _discriminator(self, s, loc):
        """{tag value: check} from an OpenAPI discriminator with a mapping (pydantic, msgspec)."""
        spec = s.get("discriminator")
        if not isinstance(spec, dict) or not isinstance(spec.get("mapping"), dict):
            return None
        where = _join(loc, "discriminator")
        mapping = {tag: self.compile(self.resolve(ref, where), _pointer_loc(ref))
                   for tag, ref in spec["mapping"].items()}
        return spec.get("propertyName"), mapping


def _python_type_hint(cls: type) -> str:
    return (
        f"got the Python type {cls.__name__}; a JSON Schema dict holds JSON values, e.g. "
        '{"type": "object", "properties": {"title": {"type": "string"}}}, '
        "or use a msgspec.Struct or pydantic model class"
    )


def _join(loc: str, key) -> str:
    return f"{loc}.{key}" if loc else str(key)


def _pointer_loc(ref) -> str:
    return ".".join(ref[2:].split("/")) if isinstance(ref, str) else ""


def _length_check(low, high, verb: str, noun: str, plural: str = "", suffix: str = ""):
    """minLength/maxLength, minItems/maxItems, minProperties/maxProperties (None: no bound)."""
    if low is None and high is None:
        return None
    low = low or 0
    high = float("inf") if high is None else high

    def check(value):
        n = len(value)
        if low <= n <= high:
            return None
        bound, word = (low, "at least") if n < low else (high, "at most")
        return [[f"must {verb} {word} {_count(bound, noun, plural)}{suffix}, got {n}"]]

    return check


#: The largest quotient ``multipleOf`` decides has this many digits (past it: not a multiple).
QUOTIENT_DIGITS = 308
#: Enough digits for any quotient below 10^QUOTIENT_DIGITS: remainders are exact.
_EXACT = decimal.Context(prec=QUOTIENT_DIGITS + 40)


def _exact(number) -> decimal.Decimal:
    """``number`` in decimal: an int as it is, a float as its shortest repr (what JSON wrote)."""
    return decimal.Decimal(number if isinstance(number, int) else repr(number))


def _bound_check(op: str, bound, fails):
    shown = _show(bound)

    def check(value):
        if fails(value, bound):
            return [[f"must be {op} {shown}, got {_show(value)}"]]
        return None

    return check


class PatternGaveUp(Exception):
    """A pattern's match gave up (:data:`PATTERN_TIMEOUT`): the value is refused, and the
    validation ends there (``edge.schema`` makes it the one error)."""


def _gave_up(pattern: str, value: str) -> str:
    return (f"must match pattern {_show(pattern)}; matching {_show(value)} gave up after "
            f"{PATTERN_TIMEOUT * 1000:g} ms (the pattern backtracks too much: simplify it, or bound "
            f"the length with maxLength)")


def _object_check(properties: dict, patterns: list, extra, required: tuple):
    """properties / patternProperties / additionalProperties (None: allowed, False: refused) / required."""
    get = properties.get

    def check_object(value):
        errors = None
        for key, item in value.items():
            sub = get(key)
            found = None if sub is None else sub(item)
            matched = sub is not None
            for search, check in patterns:
                if search(key):
                    matched = True
                    more = check(item)
                    if more:
                        found = more if found is None else found + more
            if not matched:
                if extra is None:
                    continue
                found = [[f"unknown property {_show(key)}"]] if extra is False else extra(item)
            if found:
                errors = _prefix(errors, found, key)
                if len(errors) >= MAX_ERRORS:
                    return errors
        for name in required:
            if name not in value:
                if errors is None:
                    errors = []
                errors.append([f"missing required property {_show(name)}", name])
        return errors

    return check_object


def _union(branches: list, one_of: bool, discriminator):
    """anyOf / oneOf. A failure reports the branch the value fits best, not every branch."""
    tag, mapping = discriminator or (None, None)

    def check_union(value):
        if mapping is not None and type(value) is dict and tag in value:
            chosen = mapping.get(value[tag]) if type(value[tag]) is str else None
            if chosen is None:
                shown = "[" + ", ".join(_show(t) for t in mapping) + "]"
                return [[f"must be one of {shown}, got {_show(value[tag])}", tag]]
            return chosen(value)
        failures = []
        passed = 0
        for branch in branches:
            found = branch(value)
            if not found:
                if not one_of:
                    return None
                passed += 1
            else:
                failures.append((branch, found))
        if passed == 1:
            return None
        if passed > 1:
            return [[f"must match exactly one schema in oneOf, matched {passed}"]]
        return _best_failure(failures, value)

    return check_union


def _best_failure(failures: list, value):
    name = _type_name(value)
    fitting = []
    for branch, found in failures:
        types = getattr(branch, "types", None)
        if types is None or name in types or (name == "integer" and "number" in types):
            fitting.append(found)
    if fitting:
        return min(fitting, key=len)
    expected = []
    for branch, _ in failures:
        for t in branch.types:
            if t not in expected:
                expected.append(t)
    return [[f"expected {_or(expected)}, got {name}"]]


def _assemble(allowed, by_type: dict, generic, msgspec_rules: bool):
    """The check for one schema node: its type, then per-type keywords, then the rest."""
    ok_names = set(_JSON_TYPES) if allowed is None else set(allowed)
    if "number" in ok_names:
        ok_names.add("integer")
    floats_as_int = "integer" in ok_names and "number" not in ok_names and not msgspec_rules
    expected = _or(list(allowed)) if allowed else ""
    get = by_type.get

    def check(value):
        name = _TYPE_OF.get(type(value))
        if name not in ok_names:
            name = _type_name(value)
            if name == "number" and floats_as_int and value.is_integer():
                pass
            elif name not in ok_names and allowed is not None:
                return [[f"expected {expected}, got {name}"]]
        fn = get(name)
        errors = None if fn is None else fn(value)
        if generic is not None:
            more = generic(value)
            if more:
                errors = more if errors is None else errors + more
        return errors

    if generic is not None or allowed is None:
        return check
    fns = {get(name) for name in ok_names}
    exact = frozenset(t for t, name in _TYPE_OF.items() if name in ok_names)
    if fns == {None}:

        def check_type(value):
            return None if type(value) in exact else check(value)

        return check_type
    if len(fns) == 1:
        (only,) = fns

        def check_fast(value):
            return only(value) if type(value) in exact else check(value)

        return check_fast
    return check

