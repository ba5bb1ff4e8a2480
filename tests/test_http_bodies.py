"""Request bodies as handlers see them: forms parsed as Motia's Express did, declared charsets,
and what the runtime's own endpoints answer to a body they do not take. A real `edge start` on
port 0, real sockets.
"""

from __future__ import annotations

import encodings
import json
import sys
import time

import pytest

from edge.server.bodies import BadBody, decode_text
from edge.server.forms import parse_form

from .conftest import served

PROJECT = {
    "steps/body_step.py": """
        config = {"name": "Body", "triggers": [{"type": "http", "method": "POST", "path": "/body"}]}

        async def handler(req, ctx):
            body = req.body
            return {"status": 200, "body": {"type": type(body).__name__,
                                            "body": list(body) if isinstance(body, bytes) else body}}
    """,
    # Motia 0.x: the request is a dict; a Slack slash command reads req["body"]["command"].
    "steps/slash.step.py": """
        config = {"type": "api", "name": "Slash", "path": "/slack/weather", "method": "POST", "emits": []}

        async def handler(req, context):
            form = req["body"]
            return {"status": 200, "body": {"text": f"{form['command']} {form['text']} for {form['user_name']}"}}
    """,
    "steps/signup_step.py": """
        config = {
            "name": "Signup",
            "triggers": [{
                "type": "http", "method": "POST", "path": "/signup",
                "bodySchema": {
                    "type": "object",
                    "properties": {"email": {"type": "string", "minLength": 3}, "plan": {"type": "string"}},
                    "required": ["email"],
                },
            }],
        }

        async def handler(req, ctx):
            return {"status": 201, "body": {"type": type(req.body).__name__, "got": req.body}}
    """,
    "steps/typed_step.py": """
        import pydantic

        class Order(pydantic.BaseModel):
            item: str
            qty: int

        config = {"name": "Typed", "triggers": [{"type": "http", "method": "POST", "path": "/order",
                                                  "bodySchema": Order}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"type": type(req.body).__name__, "qty": req.body.qty}}
    """,
    "steps/worker_step.py": """
        config = {"name": "Worker", "triggers": [{"type": "queue", "topic": "jobs"}]}

        async def handler(data, ctx):
            pass
    """,
}

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory, "bodies", PROJECT) as srv:
        yield srv


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


def post(client, path, content, content_type):
    return client.post(path, content=content, headers={"content-type": content_type})


# -- forms ------------------------------------------------------------------------------------

def test_a_slack_slash_command_reaches_a_0x_handler_as_a_dict(client):
    # What Slack sends (api.slack.com/interactivity/slash-commands), byte for byte in form.
    body = ("token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&channel_id=C2147483705"
            "&channel_name=test&user_id=U2147483697&user_name=Steve&command=%2Fweather&text=94070"
            "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678"
            "&trigger_id=13345224609.738474920.8088930838d88f008e0")
    r = client.post("/slack/weather", content=body, headers=FORM)
    assert (r.status_code, r.json()) == (200, {"text": "/weather 94070 for Steve"})
    r = client.post("/body", content=body, headers=FORM)
    assert r.json() == {"type": "dict", "body": {
        "token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0001", "team_domain": "example",
        "channel_id": "C2147483705", "channel_name": "test", "user_id": "U2147483697", "user_name": "Steve",
        "command": "/weather", "text": "94070", "response_url": "https://hooks.slack.com/commands/1234/5678",
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
    }}


def test_a_form_is_parsed_as_body_parser_extended_parsed_it(client):
    # Motia 0.x: bodyParser.urlencoded({extended: true}), i.e. the qs module: repeated keys
    # give a list, brackets nest, "+" is a space, a key without "=" is "".
    body = ("a=1&a=2&tags[]=x&tags[]=y&user[name]=Ada&user[langs][]=py&user%5Bcity%5D=Paris"
            "&q=a+b%21&empty=&flag&n[1]=second&n[0]=first&sparse[200]=far&bad=%E9%ZZ&caf%C3%A9=cr%C3%A8me")
    r = client.post("/body", content=body, headers=FORM)
    assert r.json() == {"type": "dict", "body": {
        "a": ["1", "2"],
        "tags": ["x", "y"],
        "user": {"name": "Ada", "langs": ["py"], "city": "Paris"},
        "q": "a b!",
        "empty": "",
        "flag": "",
        "n": ["first", "second"],
        "sparse": {"200": "far"},  # an index over qs's arrayLimit (100) is a key
        "bad": "%E9%ZZ",  # not UTF-8 once decoded: qs keeps the text as it came
        "café": "crème",
    }}


def test_an_empty_form_field_list_and_plain_text_keys(client):
    r = client.post("/body", content=b"=nokey&&x=1", headers=FORM)
    assert r.json() == {"type": "dict", "body": {"x": "1"}}  # qs drops an empty key


def test_a_form_nested_deeper_than_body_parser_allowed_is_400(client):
    deep = "a" + "[b]" * 33 + "=1"
    r = client.post("/body", content=deep, headers=FORM)
    assert r.status_code == 400
    assert r.json() == {"error": "Malformed form body",
                        "detail": "a form key nests deeper than 32 levels of [brackets]; edge accepts at most 32"}
    r = client.post("/body", content="a" + "[b]" * 32 + "=1", headers=FORM)
    assert r.status_code == 200


def test_a_form_with_too_many_parameters_is_413(client):
    r = client.post("/body", content="&".join(f"k{i}=v" for i in range(1000)), headers=FORM)
    assert r.status_code == 200 and len(r.json()["body"]) == 1000
    r = client.post("/body", content="&".join(f"k{i}=v" for i in range(1001)), headers=FORM)
    assert r.status_code == 413
    assert r.json() == {"error": "Payload Too Large",
                        "detail": "the form has over 1000 parameters; edge accepts at most 1000"}


def test_a_form_body_is_validated_against_the_body_schema(client):
    r = client.post("/signup", content="email=ada%40example.com&plan=pro", headers=FORM)
    assert (r.status_code, r.json()) == (201, {"type": "dict", "got": {"email": "ada@example.com", "plan": "pro"}})
    r = client.post("/signup", content="plan=pro&email=", headers=FORM)
    assert r.status_code == 400
    assert r.json() == {"error": "Invalid request body", "errors": [
        {"path": "$.email", "message": "must be at least 3 characters long, got 0"},
    ]}
    # a pydantic model converts the form's strings as it would JSON's ("2" -> 2)
    r = client.post("/order", content="item=tea&qty=2", headers=FORM)
    assert (r.status_code, r.json()) == (200, {"type": "Order", "qty": 2})


def test_sparse_indexes_are_placed_as_qs_places_them(client):
    # qs: a[5] and a[2] make a sparse array, compacted in index order; a repeated index pushes.
    for body, expected in [
        ("a[5]=x&a[2]=y", {"a": ["y", "x"]}),
        ("a[5]=x&a[2]=y&a[]=z&a[2]=w", {"a": ["z", ["y", "w"], "x"]}),
        ("a[2][b]=1&a[2][c]=2&a[1]=q&a=s", {"a": ["q", {"b": "1", "c": "2"}, "s"]}),
        ("a[998][998]=x", {"a": {"998": {"998": "x"}}}),  # over the array limit (100): keys
    ]:
        r = client.post("/body", content=body, headers=FORM)
        assert r.json() == {"type": "dict", "body": expected}, body
    # with 998 "&"s the array limit is 998, so a[998] is an index (qs: [['x']], not 998 holes)
    r = client.post("/body", content="a[998][998]=x&" + "&".join(f"k{i}=1" for i in range(998)), headers=FORM)
    assert r.json()["body"] == {"a": [["x"]], **{f"k{i}": "1" for i in range(998)}}


class _OverBudget(BaseException):  # not an Exception: nothing in the parser may catch it
    pass


def _parsed_within(body: bytes, lines: int):
    """``parse_form(body)``, with at most ``lines`` lines of the form parser's module run (a
    measure of its work, not of time): raises _OverBudget as soon as it runs more."""
    module = sys.modules[parse_form.__module__].__file__
    ran = 0

    def count(frame, event, arg):
        nonlocal ran
        if event == "line":
            ran += 1
            if ran > lines:
                raise _OverBudget(f"the parser ran over {lines} lines for a {len(body)}-byte form")
        return count

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: count if frame.f_code.co_filename == module else None)
    try:
        return parse_form(body, None)
    finally:
        sys.settrace(previous)


def test_parsing_a_form_is_linear_in_its_size_whatever_its_indexes():
    # qs makes a[998] a sparse JS array at no cost; filled with 998 holes per bracket level and
    # merged hole by hole, this 161 KiB form (999 parameters x 31 levels) took 1.9 s of CPU on
    # the event loop thread (31 M entries). The bound: a few lines of parser per byte.
    body = "&".join(f"a{'[998]' * 31}[x{i}]=x" for i in range(999)).encode()
    parsed = _parsed_within(body, lines=10 * len(body))  # it runs 6 a byte (the holes: 567)
    expected = {f"x{i}": "x" for i in range(999)}
    for _ in range(31):
        expected = [expected]
    assert parsed == {"a": expected}


def test_a_numeric_key_of_thousands_of_digits_is_a_plain_key(server, client):
    # Python's int() refuses strings of over 4300 digits (a 500 with a traceback); such a key is
    # no array index, for qs (over its array limit) or for JS's key order.
    big = "9" * 5000
    seen = len(server.lines)
    r = client.post("/body", content=f"{big}=x&a[{big}]=y&a[0]=z", headers=FORM)
    assert (r.status_code, r.json()) == (200, {"type": "dict", "body": {big: "x", "a": {"0": "z", big: "y"}}})
    time.sleep(0.2)  # the server's log is read by a thread
    logged = [json.loads(line) for line in server.lines[seen:] if line.startswith("{")]
    assert [rec for rec in logged if rec.get("level") == "error"] == []


def test_a_body_schema_takes_json_or_a_form_and_says_so(client):
    r = post(client, "/signup", b"email=ada", "text/plain")
    assert r.status_code == 415
    assert r.json() == {"error": "Unsupported Media Type",
                        "detail": "this endpoint takes application/json or application/x-www-form-urlencoded, "
                                  "got text/plain"}


# -- charsets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type, raw, text", [
    ("text/plain; charset=iso-8859-1", "café".encode("latin-1"), "café"),
    ("text/plain; charset=windows-1252", "€ 5 – ok".encode("cp1252"), "€ 5 – ok"),
    ("text/plain;charset=UTF-16", "héllo wörld".encode("utf-16"), "héllo wörld"),
    ('text/csv; charset="shift_jis"', "名前,値".encode("shift_jis"), "名前,値"),
    ("text/plain", "naïve".encode(), "naïve"),
])
def test_text_is_decoded_with_its_declared_charset(client, content_type, raw, text):
    r = post(client, "/body", raw, content_type)
    assert r.json() == {"type": "str", "body": text}


def test_a_form_is_decoded_with_its_declared_charset(client):
    # an HTML form on an ISO-8859-1 page percent-encodes é as %E9
    r = post(client, "/body", b"name=Jos%E9&city=K%F6ln&raw=\xe9t\xe9",
             "application/x-www-form-urlencoded; charset=ISO-8859-1")
    assert r.json() == {"type": "dict", "body": {"name": "José", "city": "Köln", "raw": "été"}}


@pytest.mark.parametrize("content_type, charset", [
    ("text/plain; charset=klingon", "klingon"),
    ("application/x-www-form-urlencoded; charset=x-Unknown-8", "x-Unknown-8"),
    ("text/plain; charset=base64", "base64"),  # a Python codec, but no charset
])
def test_an_unknown_charset_is_415_naming_it(client, content_type, charset):
    r = post(client, "/body", b"a=1", content_type)
    assert r.status_code == 415
    assert r.json() == {"error": "Unsupported Media Type",
                        "detail": f'unsupported charset "{charset}" (Content-Type: {content_type})'}


def test_charsets_that_name_no_codec_are_refused_without_a_codec_lookup():
    # codecs.lookup() keeps every name it was asked for in encodings._cache, a miss too (and
    # tries to import encodings.<name> for it): 20,000 requests with distinct 1 KB charsets kept
    # 21 MiB of the server's memory. Only names of real codecs are looked up now.
    from edge.server.app import _parse_body

    decode_text(b"x", "text/plain; charset=utf-8")
    parse_form(b"x=1", f"{FORM['content-type']}; charset=iso-8859-1")
    before = len(encodings._cache)
    for i in range(500):
        junk = f"x-junk-{i}-" + "k" * 1000
        for header, call in [(f"text/plain; charset={junk}", decode_text),
                             (f"{FORM['content-type']}; charset={junk}", parse_form)]:
            with pytest.raises(BadBody) as refused:
                call(b"a=1", header)
            status, _, content = refused.value.response
            assert (status, json.loads(content)) == (415, {
                "error": "Unsupported Media Type", "detail": f'unsupported charset "{junk}" (Content-Type: {header})'})
        # JSON that is not UTF-8 and declares a UTF-16-looking charset
        with pytest.raises(BadBody) as refused:
            _parse_body(b'{"a": \xff', "application/json", None, f"application/json; charset=utf-16-{junk}")
        assert refused.value.response[0] == 400
        # spellings of a real charset are one codec, not one cache entry each
        assert decode_text(b"caf\xe9", f"text/plain; charset=ISO{'-' * (i + 1)}8859-1") == "café"
    assert len(encodings._cache) == before


def test_json_is_utf8_whatever_charset_it_declares_but_utf16_is_decoded(client):
    # RFC 8259: JSON is UTF-8 and a charset parameter has no effect...
    r = post(client, "/body", '{"name": "Zoë"}'.encode(), "application/json; charset=iso-8859-1")
    assert r.json() == {"type": "dict", "body": {"name": "Zoë"}}
    # ...but Express (body-parser.json) decoded a declared UTF-16/32, so edge does too
    r = post(client, "/body", '{"name": "Zoë"}'.encode("utf-16"), "application/json; charset=utf-16")
    assert r.json() == {"type": "dict", "body": {"name": "Zoë"}}
    r = post(client, "/signup", '{"email": "zoë@example.com"}'.encode("utf-32"), "application/json; charset=utf-32")
    assert r.json() == {"type": "dict", "got": {"email": "zoë@example.com"}}
    r = post(client, "/body", b'{"name": ', "application/json; charset=utf-16")
    assert (r.status_code, r.json()["error"]) == (400, "Malformed JSON")


# -- the runtime's own endpoints --------------------------------------------------------------

@pytest.mark.parametrize("path, body", [
    ("/__edge/emit", b'{"topic": "jobs", "data": {}}'),
    ("/__edge/dlq/redrive", b'{"step": "Worker"}'),
    ("/__edge/state", b'{"group": "g", "key": "k", "value": 1}'),
])
def test_a_runtime_endpoint_says_which_content_type_it_takes(client, path, body):
    r = post(client, path, body, "text/plain")
    assert r.status_code == 415
    assert r.json() == {"error": "Unsupported Media Type",
                        "detail": f"POST {path} takes application/json, got text/plain"}
    # `curl -d` sends a form content type unless told otherwise
    r = post(client, path, body, "application/x-www-form-urlencoded")
    assert r.status_code == 415
    assert r.json() == {"error": "Unsupported Media Type",
                        "detail": f"POST {path} takes application/json, got application/x-www-form-urlencoded "
                                  "(curl -d sends that: add -H 'content-type: application/json')"}
    assert post(client, path, body, "application/json").status_code in (200, 202)
