"""edge.schema: one validation interface over JSON Schema dicts, msgspec Structs and pydantic."""

from __future__ import annotations

import datetime
import subprocess
import sys
from typing import Annotated, Literal

import msgspec
import pytest

from edge.errors import ConfigError, SchemaError
from edge.schema import MAX_ERRORS, Schema, compile_schema, to_builtins

TODO = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "priority": {"enum": ["low", "high"]},
        "estimate": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title"],
    "additionalProperties": False,
}


def errors_of(schema: Schema, data) -> list[dict]:
    with pytest.raises(SchemaError) as info:
        schema.validate(data)
    return info.value.errors


def messages(schema: Schema, data) -> list[tuple[str, str]]:
    return [(e["path"], e["message"]) for e in errors_of(schema, data)]


# --- JSON Schema dicts ----------------------------------------------------------------


def test_valid_data_is_returned_as_is():
    schema = compile_schema(TODO)
    data = {"title": "buy milk", "priority": "low", "estimate": 2, "tags": ["home"]}
    assert schema.kind == "json"
    assert schema.validate(data) is data


def test_every_error_is_reported_with_its_path_in_document_order():
    schema = compile_schema(TODO)
    bad = {"titel": "x", "priority": "urgent", "estimate": 0, "tags": ["a", 1, None]}
    with pytest.raises(SchemaError) as info:
        schema.validate(bad)
    assert str(info.value) == "6 validation errors"
    assert info.value.errors == [
        {"path": "$.titel", "message": 'unknown property "titel"'},
        {"path": "$.priority", "message": 'must be one of ["low", "high"], got "urgent"'},
        {"path": "$.estimate", "message": "must be >= 1, got 0"},
        {"path": "$.tags[1]", "message": "expected string, got integer"},
        {"path": "$.tags[2]", "message": "expected string, got null"},
        {"path": "$.title", "message": 'missing required property "title"'},
    ]


def test_one_error_is_singular():
    with pytest.raises(SchemaError) as info:
        compile_schema(TODO).validate([])
    assert str(info.value) == "1 validation error"
    assert info.value.errors == [{"path": "$", "message": "expected object, got array"}]


def test_nested_paths_and_keys_that_are_not_identifiers():
    schema = compile_schema({
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            }},
            "first name": {"type": "string"},
        },
    })
    assert messages(schema, {"items": [{"name": "a"}, {"name": 3}, {}], "first name": 1}) == [
        ("$.items[1].name", "expected string, got integer"),
        ("$.items[2].name", 'missing required property "name"'),
        ('$["first name"]', "expected string, got integer"),
    ]


def test_any_of_nullable_reports_the_branch_that_fits():
    schema = compile_schema({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]})
    assert schema.validate(None) is None
    assert schema.validate(3) == 3
    assert messages(schema, "3") == [("$", "expected integer or null, got string")]
    assert messages(schema, -1) == [("$", "must be >= 0, got -1")]


def test_type_lists_and_openapi_nullable():
    assert messages(compile_schema({"type": ["string", "integer", "null"]}), 1.5) == [
        ("$", "expected string, integer or null, got number")
    ]
    nullable = compile_schema({"type": "string", "nullable": True})
    assert nullable.validate(None) is None
    assert messages(nullable, 1) == [("$", "expected string or null, got integer")]


def test_numbers():
    integer = compile_schema({"type": "integer"})
    assert integer.validate(2.0) == 2.0  # JSON Schema: 2.0 is an integer
    assert messages(integer, 2.5) == [("$", "expected integer, got number")]
    assert messages(integer, True) == [("$", "expected integer, got boolean")]
    bounded = compile_schema({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5})
    assert bounded.validate(9.5) == 9.5
    assert messages(bounded, 0) == [("$", "must be > 0, got 0")]
    assert messages(bounded, 10) == [("$", "must be < 10, got 10")]
    assert messages(bounded, 0.7) == [("$", "must be a multiple of 0.5, got 0.7")]
    assert messages(compile_schema({"maximum": 3}), 4) == [("$", "must be <= 3, got 4")]


def test_multiple_of_is_decided_in_decimal_at_any_size():
    # Before: a tolerance relative to value/step let 1234567891.5 pass as a multiple of 1, and
    # 4000000000.3 of 0.5; 1e-320 passed for 0.01 and 1e308 (an integer) for 3.
    whole, half, cents = ({"type": "number", "multipleOf": step} for step in (1, 0.5, 0.01))
    assert messages(compile_schema(whole), 1234567891.5) == [("$", "must be a multiple of 1, got 1234567891.5")]
    assert messages(compile_schema(half), 4000000000.3) == [("$", "must be a multiple of 0.5, got 4000000000.3")]
    assert messages(compile_schema(cents), 1e-320) == [("$", "must be a multiple of 0.01, got 1e-320")]
    assert messages(compile_schema({"type": "integer", "multipleOf": 3}), 1e308) == [
        ("$", "must be a multiple of 3, got 1e308")]
    huge = 10 ** 400  # JSON's integers are Python's: value / step overflowed to an OverflowError (a 500)
    assert messages(compile_schema(half), huge)[0][1].startswith("must be a multiple of 0.5, got 1000")
    for schema, value in ((half, 4000000000.5), (cents, 19.99), (cents, 1.1), ({"multipleOf": 0.1}, 0.3),
                          ({"multipleOf": 0.1}, 1e20), (whole, 2.0**60)):
        assert compile_schema(schema).validate(value) == value


def test_strings_and_formats():
    schema = compile_schema({"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"})
    assert messages(schema, "ABCD") == [
        ("$", "must be at most 3 characters long, got 4"),
        ("$", 'must match pattern "^[a-z]+$", got "ABCD"'),
    ]
    when = compile_schema({"type": "string", "format": "date-time"})
    assert when.validate("2024-05-01T10:00:00Z") == "2024-05-01T10:00:00Z"
    assert messages(when, "tomorrow") == [("$", 'must be a valid date-time, got "tomorrow"')]
    assert messages(compile_schema({"format": "email"}), "bob") == [("$", 'must be a valid email, got "bob"')]
    assert messages(compile_schema({"format": "uuid"}), "x") == [("$", 'must be a valid uuid, got "x"')]
    assert compile_schema({"type": "string", "format": "hostname"}).validate("!") == "!"  # unknown: annotation


def test_arrays():
    pair = compile_schema({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False})
    assert pair.validate([1, "a"]) == [1, "a"]
    assert messages(pair, ["a", "b", "c"]) == [
        ("$", "must have at most 2 items, got 3"),
        ("$[0]", "expected integer, got string"),
    ]
    tags = compile_schema({"type": "array", "minItems": 1, "uniqueItems": True})
    assert messages(tags, []) == [("$", "must have at least 1 item, got 0")]
    assert messages(tags, [1, True, 1.0]) == [("$", "must have unique items, got 1.0 more than once")]
    has_admin = compile_schema({"contains": {"const": "admin"}})
    assert messages(has_admin, ["user"]) == [("$", "must contain at least 1 matching item, got 0")]


def test_objects():
    counts = compile_schema({
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "propertyNames": {"pattern": "^[a-z]+$"},
        "minProperties": 1,
    })
    assert messages(counts, {}) == [("$", "must have at least 1 property, got 0")]
    assert messages(counts, {"a": 1, "B": 2, "c": "3"}) == [
        ("$.B", 'invalid property name: must match pattern "^[a-z]+$", got "B"'),
        ("$.c", "expected integer, got string"),
    ]


def test_pattern_properties_and_additional_properties():
    schema = compile_schema({"patternProperties": {"^n_": {"type": "integer"}}, "additionalProperties": False})
    assert messages(schema, {"n_a": "1", "other": 2}) == [
        ("$.n_a", "expected integer, got string"),
        ("$.other", 'unknown property "other"'),
    ]


def test_enum_and_const_compare_as_json():
    flags = compile_schema({"enum": [1, "a", None]})
    assert flags.validate(1.0) == 1.0
    assert messages(flags, True) == [("$", 'must be one of [1, "a", null], got true')]
    assert messages(compile_schema({"const": {"v": [1]}}), {"v": [2]}) == [("$", 'must be {"v":[1]}, got {"v":[2]}')]


def test_all_of_one_of_not_and_if_then_else():
    assert messages(compile_schema({"allOf": [{"minimum": 2}, {"multipleOf": 3}]}), 1) == [
        ("$", "must be >= 2, got 1"),
        ("$", "must be a multiple of 3, got 1"),
    ]
    assert messages(compile_schema({"oneOf": [{"type": "integer"}, {"minimum": 0}]}), 5) == [
        ("$", "must match exactly one schema in oneOf, matched 2")
    ]
    assert messages(compile_schema({"not": {"type": "null"}}), None) == [("$", 'must not match the schema in "not"')]
    conditional = compile_schema({
        "if": {"properties": {"kind": {"const": "email"}}},
        "then": {"required": ["address"]},
        "else": {"required": ["phone"]},
    })
    assert messages(conditional, {"kind": "email"}) == [("$.address", 'missing required property "address"')]
    assert messages(conditional, {"kind": "sms"}) == [("$.phone", 'missing required property "phone"')]


def test_discriminated_union_checks_only_the_tagged_branch():
    schema = compile_schema({
        "$defs": {
            "Cat": {"type": "object", "properties": {"kind": {"const": "cat"}, "meow": {"type": "integer"}},
                    "required": ["kind", "meow"]},
            "Dog": {"type": "object", "properties": {"kind": {"const": "dog"}, "bark": {"type": "integer"}},
                    "required": ["kind", "bark"]},
        },
        "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
        "discriminator": {"propertyName": "kind", "mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}},
    })
    assert schema.validate({"kind": "dog", "bark": 1}) == {"kind": "dog", "bark": 1}
    assert messages(schema, {"kind": "dog"}) == [("$.bark", 'missing required property "bark"')]
    assert messages(schema, {"kind": "cow"}) == [("$.kind", 'must be one of ["cat", "dog"], got "cow"')]


def test_recursive_ref():
    tree = compile_schema({
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        }}},
    })
    good = {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}
    assert tree.validate(good) is good
    assert messages(tree, {"children": [{"children": [{"value": "x"}, 4]}]}) == [
        ("$.children[0].children[0].value", "expected integer, got string"),
        ("$.children[0].children[1]", "expected object, got integer"),
    ]
    deep: dict = {}
    for _ in range(5000):
        deep = {"children": [deep]}
    assert messages(tree, deep) == [("$", "nested too deeply")]


def test_error_count_is_capped():
    schema = compile_schema({"type": "array", "items": {"type": "string"}})
    with pytest.raises(SchemaError) as info:
        schema.validate(list(range(1000)))
    assert str(info.value) == f"at least {MAX_ERRORS} validation errors (the first {MAX_ERRORS} are listed)"
    assert len(info.value.errors) == MAX_ERRORS
    assert info.value.errors[-1] == {"path": f"$[{MAX_ERRORS - 1}]", "message": "expected string, got integer"}


def test_decode_json():
    schema = compile_schema(TODO)
    assert schema.decode_json(b'{"title": "x"}') == {"title": "x"}
    with pytest.raises(SchemaError) as info:
        schema.decode_json(b'{"title": "x",}')
    assert str(info.value) == "Malformed JSON: trailing comma in object (byte 14)"
    assert info.value.errors == [{"path": "$", "message": "trailing comma in object (byte 14)"}]
    with pytest.raises(SchemaError) as info:
        schema.decode_json(b"")
    assert str(info.value) == "Malformed JSON: Input data was truncated"
    with pytest.raises(SchemaError) as info:
        schema.decode_json(b'{"title": 1}')
    assert info.value.errors == [{"path": "$.title", "message": "expected string, got integer"}]


def test_json_schema_of_a_dict_is_the_dict():
    assert compile_schema(TODO).json_schema() is TODO
    assert compile_schema(None) is None


WHERE = "steps/create_step.py: triggers[0].bodySchema"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (42, f"{WHERE}: expected a JSON Schema dict, a msgspec.Struct class or a pydantic model class, got int"),
        (int, f"{WHERE}: expected a JSON Schema dict, a msgspec.Struct class or a pydantic model class, got class int"),
        ({"type": "strnig"}, f'{WHERE}.type: unknown type "strnig"; did you mean "string"?'),
        ({"properties": {"a": {"type": "banana"}}},
         f'{WHERE}.properties.a.type: unknown type "banana"; expected one of "array", "boolean", "integer", '
         '"null", "number", "object", "string"'),
        ({"type": 1}, f"{WHERE}.type: expected a type name or a list of them, got 1"),
        ({"items": {"$ref": "#/$defs/Item"}, "$defs": {"Other": {}}},
         f'{WHERE}.items.$ref: cannot resolve "#/$defs/Item": no "Item" (it has "Other")'),
        ({"$ref": "https://example.com/item.json"},
         f'{WHERE}.$ref: cannot resolve "https://example.com/item.json"; only references into this schema '
         'such as "#/$defs/Name" are supported'),
        ({"type": "string", "pattern": "(["},
         f'{WHERE}.pattern: invalid regular expression "([": unterminated character set at position 2'),
        ({"properties": {"title": {"type": "string", "maxLenght": 3}}},
         f'{WHERE}.properties.title: unknown keyword "maxLenght"; did you mean "maxLength"?'),
        ({"title": str, "done": bool},
         f'{WHERE}.title: got the Python type str; a JSON Schema dict holds JSON values, e.g. '
         '{"type": "object", "properties": {"title": {"type": "string"}}}, or use a msgspec.Struct or pydantic '
         "model class"),
        ({"unevaluatedProperties": False}, f"{WHERE}: \"unevaluatedProperties\" is not supported by edge's validator"),
        ({"required": "title"}, f'{WHERE}.required: expected a list of property names, got "title"'),
        ({"minLength": -1}, f"{WHERE}.minLength: expected an integer >= 0, got -1"),
        ({"anyOf": []}, f"{WHERE}.anyOf: expected a non-empty list of schemas, got []"),
        ({"properties": {"a": 3}}, f"{WHERE}.properties.a: expected a schema (an object, true or false), got 3"),
    ],
)
def test_config_errors_name_the_place_and_the_fix(spec, message):
    with pytest.raises(ConfigError) as info:
        compile_schema(spec, where=WHERE)
    assert str(info.value) == message


def test_config_error_without_where():
    with pytest.raises(ConfigError) as info:
        compile_schema("string")
    assert str(info.value) == (
        "schema: expected a JSON Schema dict, a msgspec.Struct class or a pydantic model class, got str"
    )


# --- msgspec Structs ------------------------------------------------------------------


class Item(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    qty: Annotated[int, msgspec.Meta(ge=1)] = 1


class Todo(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    due: datetime.datetime | None = None
    priority: Literal["low", "high"] = "low"
    items: list[Item] = []
    tags: set[str] = set()


def test_struct_validate_and_decode_return_instances():
    schema = compile_schema(Todo)
    assert schema.kind == "struct"
    assert schema.validate({"title": "t", "items": [{"name": "a"}]}) == Todo("t", items=[Item("a")])
    decoded = schema.decode_json(b'{"title": "t", "due": "2024-05-01T10:00:00Z", "tags": ["a", "a"]}')
    assert decoded == Todo("t", due=datetime.datetime(2024, 5, 1, 10, tzinfo=datetime.timezone.utc), tags={"a"})
    assert schema.validate(Todo("t", items=[Item("a")])) == Todo("t", items=[Item("a")])
    assert schema.json_schema() == msgspec.json.schema(Todo)


def test_struct_reports_every_error_not_just_the_first():
    schema = compile_schema(Todo)
    with pytest.raises(SchemaError) as info:
        schema.decode_json(b'{"titel": 1, "priority": "urgent", "items": [{"name": "", "qty": 0}, 5]}')
    assert str(info.value) == "6 validation errors"
    assert info.value.errors == [
        {"path": "$.titel", "message": 'unknown property "titel"'},
        {"path": "$.priority", "message": 'must be one of ["high", "low"], got "urgent"'},  # msgspec sorts
        {"path": "$.items[0].name", "message": "must be at least 1 character long, got 0"},
        {"path": "$.items[0].qty", "message": "must be >= 1, got 0"},
        {"path": "$.items[1]", "message": "expected object, got integer"},
        {"path": "$.title", "message": 'missing required property "title"'},
    ]


def test_struct_keeps_msgspec_only_errors_and_msgspec_rules():
    schema = compile_schema(Todo)
    # datetime parsing is not in the JSON Schema: msgspec's own error is kept
    assert messages(schema, {"title": "t", "due": "soon"}) == [("$.due", "invalid RFC3339 encoded datetime")]
    assert messages(schema, {"title": "t", "items": [{"name": "a", "qty": 1.0}]}) == [
        ("$.items[0].qty", "expected integer, got number")
    ]
    with pytest.raises(SchemaError) as info:
        schema.decode_json(b'{"title": "t"')
    assert str(info.value) == "Malformed JSON: Input data was truncated"


def test_struct_instance_given_as_schema_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        compile_schema(Item("a"), where=WHERE)
    assert str(info.value) == (
        f"{WHERE}: expected a JSON Schema dict, a msgspec.Struct class or a pydantic model class, "
        "got a Item instance; pass the class Item itself"
    )


def test_to_builtins_converts_nested_structs():
    todo = Todo("t", due=datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc), items=[Item("a", 2)])
    assert to_builtins({"todos": [todo], "n": 1}) == {
        "todos": [{"title": "t", "due": "2024-05-01T00:00:00Z", "priority": "low",
                   "items": [{"name": "a", "qty": 2}], "tags": []}],
        "n": 1,
    }
    plain = {"a": [1, 2.5, "x", None, True]}
    assert to_builtins(plain) == plain
    assert to_builtins("x") == "x"
    with pytest.raises(TypeError) as info:
        to_builtins({"a": object()})
    assert str(info.value) == (
        "cannot convert a value of type object to JSON; use dict, list, str, int, float, bool, None, "
        "a msgspec.Struct or a pydantic model"
    )


# --- pydantic -------------------------------------------------------------------------


def test_importing_edge_schema_does_not_import_pydantic():
    code = "import sys, edge.schema; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def pydantic_models():
    pydantic = pytest.importorskip("pydantic")

    class PItem(pydantic.BaseModel):
        name: str = pydantic.Field(min_length=1)
        qty: int = pydantic.Field(1, ge=1)

    class Cat(pydantic.BaseModel):
        kind: Literal["cat"]
        meow: int

    class Dog(pydantic.BaseModel):
        kind: Literal["dog"]
        bark: int

    class PTodo(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        title: str
        priority: Literal["low", "high"] = "low"
        items: list[PItem] = []
        size: int | str = 1
        pet: Annotated[Cat | Dog, pydantic.Field(discriminator="kind")] | None = None
        parent: PTodo | None = None

    return PTodo, PItem


BAD_TODO = {
    "titel": 1,
    "priority": "urgent",
    "items": [{"name": "", "qty": 0}, 5],
    "size": [1],
    "pet": {"kind": "cat"},
    "parent": {"title": 3},
}


def test_pydantic_model_validates_to_an_instance(pydantic_models):
    PTodo, PItem = pydantic_models
    schema = compile_schema(PTodo)
    assert schema.kind == "pydantic"
    todo = schema.decode_json(b'{"title": "t", "items": [{"name": "a"}]}')
    assert isinstance(todo, PTodo) and todo.items == [PItem(name="a")]
    assert schema.json_schema() == PTodo.model_json_schema()
    assert to_builtins([todo]) == [{"title": "t", "priority": "low", "items": [{"name": "a", "qty": 1}],
                                    "size": 1, "pet": None, "parent": None}]


def test_pydantic_errors_map_to_json_paths_in_document_order(pydantic_models):
    PTodo, _ = pydantic_models
    with pytest.raises(SchemaError) as info:
        compile_schema(PTodo).validate(BAD_TODO)
    assert str(info.value) == "9 validation errors"
    assert info.value.errors == [
        {"path": "$.titel", "message": 'unknown property "titel"'},
        {"path": "$.priority", "message": 'must be "low" or "high", got "urgent"'},
        {"path": "$.items[0].name", "message": "must be at least 1 character long, got 0"},
        {"path": "$.items[0].qty", "message": "must be >= 1, got 0"},
        {"path": "$.items[1]", "message": "expected object, got integer"},
        {"path": "$.size", "message": "expected integer or string, got array"},  # union tags dropped, merged
        {"path": "$.pet.meow", "message": 'missing required property "meow"'},  # discriminator tag dropped
        {"path": "$.parent.title", "message": "expected string, got integer"},
        {"path": "$.title", "message": 'missing required property "title"'},
    ]
    with pytest.raises(SchemaError) as info:
        compile_schema(PTodo).decode_json(b"{")
    assert str(info.value) == "Malformed JSON: Input data was truncated"


def test_model_json_schema_as_a_dict_gives_the_same_errors(pydantic_models):
    """A real model_json_schema() ($defs, $ref, anyOf null, discriminator) through our validator."""
    PTodo, _ = pydantic_models
    as_dict = compile_schema(PTodo.model_json_schema())
    from_model = compile_schema(PTodo)
    paths = [e["path"] for e in errors_of(as_dict, BAD_TODO)]
    assert paths == [e["path"] for e in errors_of(from_model, BAD_TODO)]
    assert messages(as_dict, {"title": "t", "pet": {"kind": "cow"}, "parent": None}) == [
        ("$.pet.kind", 'must be one of ["cat", "dog"], got "cow"')
    ]


def test_the_fast_path_never_accepts_what_the_full_validator_refuses():
    """Object bodies of plain scalars are checked by msgspec first; it must only ever be stricter."""
    import itertools

    from edge.schema import _fast_type

    schemas = [
        {"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 5},
                                          "count": {"type": "integer", "minimum": 1, "exclusiveMaximum": 10}},
         "required": ["name"]},
        {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0}, "ok": {"type": "boolean"}},
         "additionalProperties": False},
        {"type": "object", "properties": {"first-name": {"type": "string"}}, "required": ["first-name"]},
    ]
    values = [None, 1, "s", True, 0, -1, 3, 9, 10, 1.0, 2.5, 0.0, 1e308, "", "abcdef", "abc", [], {}, False]
    keys = ["name", "count", "x", "ok", "first-name", "other"]
    for spec in schemas:
        assert _fast_type(spec) is not None
        fast, full = compile_schema(spec), compile_schema(spec)
        full._fast = None
        for k1, k2 in itertools.product(keys, repeat=2):
            for v1, v2 in itertools.product(values, repeat=2):
                body = {k1: v1, k2: v2}
                verdicts = []
                for schema in (fast, full):
                    try:
                        schema.validate(body)
                        verdicts.append(True)
                    except SchemaError as exc:
                        verdicts.append(exc.errors)
                assert verdicts[0] == verdicts[1], (spec, body, verdicts)
    assert _fast_type({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}) is None
    assert _fast_type({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1.5}}}) is None


def test_a_pattern_that_backtracks_without_end_gives_up_on_that_value_alone():
    # A tester: "^(a|aa)+$" against 60 characters held the loop thread for good (every other
    # request and SIGTERM waited); Python's re has no time limit. A review: inside `not` (or
    # anyOf) a give-up read as "no match" let the value through, and each cost 50 ms more:
    # the first give-up now ends the validation.
    hostile = "a" * 60 + "!"
    gave_up = (f'must match pattern "^(a|aa)+$"; matching "{"a" * 36}... gave up after 50 ms (the pattern '
               'backtracks too much: simplify it, or bound the length with maxLength)')
    for spec, data in (
        ({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|aa)+$"}}}, {"s": hostile}),
        ({"patternProperties": {"^(a|aa)+$": {"type": "integer"}}}, {hostile: 1}),
        ({"type": "object", "properties": {"s": {"not": {"pattern": "^(a|aa)+$"}}}}, {"s": hostile}),
        ({"type": "array", "items": {"anyOf": [{"type": "string", "pattern": "^(a|aa)+$"}, {"type": "string"}]}},
         [hostile] * 200),
    ):
        assert messages(compile_schema(spec), data) == [("$", gave_up)], spec
    schema = compile_schema({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|aa)+$"}}})
    assert schema.validate({"s": "aaaa"}) == {"s": "aaaa"}
    assert messages(schema, {"s": "ab"}) == [("$.s", 'must match pattern "^(a|aa)+$", got "ab"')]
