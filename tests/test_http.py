"""HTTP triggers end to end: a real `edge start` process on port 0, real sockets."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from .conftest import served

PROJECT = {
    "steps/echo_step.py": """
        config = {
            "name": "Echo",
            "flows": ["demo"],
            "triggers": [{
                "type": "http", "method": "POST", "path": "/echo",
                "bodySchema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "count": {"type": "integer", "minimum": 1},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["name"],
                },
            }],
        }

        async def handler(req, ctx):
            ctx.logger.info("echo", {"name": req.body["name"]})
            return {"status": 200, "body": {"got": req.body, "trace": ctx.trace_id}}
    """,
    "steps/items/get_item_step.py": """
        config = {
            "name": "GetItem",
            "triggers": [{"type": "http", "method": "GET", "path": "/items/{id}/parts/:part"}],
        }

        def handler(req, ctx):   # a sync handler
            return {
                "status": 200,
                "body": {
                    "params": req.path_params, "query": req.query_params,
                    "agent": req.headers.get("x-agent"), "zero_x": req["pathParams"]["id"],
                    "trigger": ctx.trigger,
                },
            }
    """,
    "steps/items/put_item_step.py": """
        config = {"name": "PutItem", "triggers": [{"type": "http", "method": "PUT", "path": "/items/:id/parts/:part"}]}

        async def handler(req):   # one-argument handler
            return {"status": 204}
    """,
    "steps/kinds_step.py": """
        from edge.api import ApiResponse

        config = {"name": "Kinds", "triggers": [{"type": "http", "method": "POST", "path": "/kinds/:kind"}]}

        async def handler(req, ctx):
            kind = req.path_params["kind"]
            if kind == "text":
                return {"status": 200, "body": "plain " + req.body}
            if kind == "bytes":
                return ApiResponse(201, bytes(reversed(req.raw_body)), {"x-made-by": "edge"})
            if kind == "created":
                return {"status_code": 201, "body": [1, 2, 3]}
            return {"status": 200, "body": {"type": type(req.body).__name__}}
    """,
    "steps/boom_step.py": """
        config = {"name": "Boom", "triggers": [{"type": "http", "method": "GET", "path": "/boom"}]}

        async def handler(req, ctx):
            raise RuntimeError("database password is hunter2")
    """,
    "steps/guarded_step.py": """
        def only_admins(req, ctx):
            return req.headers.get("x-role") == "admin"

        async def stamp(req, ctx, next):
            response = await next()
            response["headers"] = {"x-middleware": "yes"}
            return response

        config = {
            "name": "Guarded",
            "triggers": [{"type": "http", "method": "GET", "path": "/guarded",
                          "condition": only_admins, "middleware": [stamp]}],
        }

        async def handler(req, ctx):
            return {"status": 200, "body": {"ok": True}}
    """,
    "steps/counter_step.py": """
        config = {"name": "Counter", "triggers": [{"type": "http", "method": "POST", "path": "/counter/:name"}]}

        async def handler(req, ctx):
            value = await ctx.state.update("counters", req.path_params["name"], [{"type": "increment", "path": "n"}])
            await ctx.state.set("seen", req.path_params["name"], {"at": 1})
            return {"status": 200, "body": value}
    """,
    "steps/update_step.py": """
        config = {"name": "Update", "triggers": [{"type": "http", "method": "POST", "path": "/update/:key"}]}

        async def handler(req, ctx):
            key = req.path_params["key"]
            if "reset" in req.body:
                await ctx.state.set("docs", key, req.body["reset"])
            try:
                value = await ctx.state.update("docs", key, req.body.get("ops", []))
            except Exception as exc:
                return {"status": 400, "body": {"error": str(exc), "kept": await ctx.state.get("docs", key)}}
            return {"status": 200, "body": value}
    """,
    "steps/slow_step.py": """
        import trio

        # A trio-written handler, by the documented route.
        config = {"name": "Slow", "runtime": "trio", "triggers": [{"type": "http", "method": "GET", "path": "/slow"}]}

        async def handler(req, ctx):
            await trio.sleep(float(req.query_params.get("s", "1")))
            return {"status": 200, "body": {"slept": True}}
    """,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory, "http", PROJECT, args=["--max-body", "1k"],
                env={"EDGE_CORS_ORIGINS": "http://dash.local"}) as srv:
        yield srv


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


def test_json_echo_with_trace_id(client):
    r = client.post("/echo", json={"name": "ada", "count": 2}, headers={"x-trace-id": "trace-abc"})
    assert r.status_code == 200
    assert r.json() == {"got": {"name": "ada", "count": 2}, "trace": "trace-abc"}
    assert r.headers["x-trace-id"] == "trace-abc"


def test_traceparent_sets_trace_id(client):
    r = client.post("/echo", json={"name": "x"},
                    headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert r.json()["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_record_with_a_status_field_of_its_own_is_sent_as_the_body():
    # Before: `return await ctx.state.get("todos", id)` with {"status": "open"} answered 500
    # ("handler returned status 'open'").
    from edge.server.responses import BadResult, build_response

    todo = {"id": "1", "title": "milk", "status": "open"}
    assert build_response(todo) == (200, [("content-type", "application/json")],
                                    b'{"id":"1","title":"milk","status":"open"}')
    assert build_response({"status": True})[0] == 200  # a bool is no status either
    assert build_response({"status": 201, "body": todo})[0] == 201
    assert build_response({"status_code": 202})[0] == 202
    for envelope in ({"status": "OK", "body": {}}, {"status": "OK", "headers": {"x": "1"}}, {"status": 99}):
        with pytest.raises(BadResult):  # an envelope with a status that is no status: the handler's error
            build_response(envelope)


def test_every_response_has_a_trace_id(client):
    r = client.get("/nope")
    assert len(r.headers["x-trace-id"]) == 32


def test_schema_errors_list_every_path(client):
    r = client.post("/echo", json={"count": 0, "tags": ["a", 3]})
    assert r.status_code == 400
    assert r.json() == {
        "error": "Invalid request body",
        "errors": [
            {"path": "$.count", "message": "must be >= 1, got 0"},
            {"path": "$.tags[1]", "message": "expected string, got integer"},
            {"path": "$.name", "message": 'missing required property "name"'},
        ],
    }


def test_malformed_json(client):
    r = client.post("/echo", content=b'{"name": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"error": "Malformed JSON", "detail": "Input data was truncated"}


def test_json_with_a_lone_surrogate_escape_says_so(client):
    # msgspec's own words were "Input data was truncated", for a whole document
    r = client.post("/echo", content=b'{"name": "ada \\ud800"}', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"error": "Malformed JSON", "detail": "\\ud800 (byte 14) is half of a UTF-16 surrogate "
                                                             "pair without its other half: it stands for no character"}
    r = client.post("/echo", content=b'{"name": "ada \\\\ud800"}', headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["got"]["name"] == "ada \\ud800"  # an escaped backslash, then text


def test_wrong_content_type_for_schema(client):
    r = client.post("/echo", content=b"name=ada", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json() == {"error": "Unsupported Media Type", "detail":
                        "this endpoint takes application/json or application/x-www-form-urlencoded, got text/plain"}


def test_body_over_max_body(client):
    r = client.post("/echo", json={"name": "x" * 2000})
    assert r.status_code == 413
    assert r.json() == {
        "error": "Payload Too Large",
        "detail": "request body is over the 1024-byte limit (--max-body / EDGE_MAX_BODY)",
        "limit": 1024,
    }


def test_body_over_max_body_without_content_length(client):
    def chunks():
        for _ in range(10):
            yield b"x" * 200

    r = client.post("/kinds/json", content=chunks())
    assert r.status_code == 413


def test_path_params_both_syntaxes_query_and_headers(client):
    r = client.get("/items/a%20b/parts/7?x=1&x=2&y=", headers={"x-agent": "curl"})
    assert r.status_code == 200
    assert r.json() == {
        "params": {"id": "a b", "part": "7"},
        "query": {"x": ["1", "2"], "y": ""},
        "agent": "curl",
        "zero_x": "a b",
        "trigger": {"type": "http", "index": 0, "path": "/items/:id/parts/:part", "method": "GET"},
    }


def test_a_path_param_is_decoded_once(client):
    # Granian gives the app the decoded path; edge decoded the parameters a second time, so
    # "%2541" (a literal "%41") arrived as "A".
    r = client.get("/items/100%25%2541/parts/%E2%82%AC")
    assert r.json()["params"] == {"id": "100%%41", "part": "\u20ac"}


def test_unknown_path_is_404(client):
    r = client.get("/missing")
    assert r.status_code == 404
    assert r.json() == {"error": "Not Found", "path": "/missing"}


def test_wrong_method_is_405_with_allow(client):
    r = client.delete("/items/1/parts/2")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, PUT"
    assert r.json() == {"error": "Method Not Allowed", "allowed": ["GET", "PUT"]}


def test_one_argument_handler_and_204(client):
    r = client.put("/items/1/parts/2")
    assert r.status_code == 204
    assert r.content == b""


def test_text_bytes_and_status_code_bodies(client):
    r = client.post("/kinds/text", content=b"hello", headers={"content-type": "text/plain"})
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "plain hello", "text/plain; charset=utf-8")
    r = client.post("/kinds/bytes", content=b"\x01\x02\x03", headers={"content-type": "application/octet-stream"})
    assert (r.status_code, r.content, r.headers["x-made-by"]) == (201, b"\x03\x02\x01", "edge")
    r = client.post("/kinds/created")
    assert (r.status_code, r.json()) == (201, [1, 2, 3])


def test_handler_error_is_500_with_error_id_and_no_leak(client, server):
    r = client.get("/boom")
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"error", "error_id"}
    assert body["error"] == "Internal Server Error"
    assert "hunter2" not in r.text
    time.sleep(0.2)
    logged = [rec for rec in server.logs() if rec.get("data", {}).get("error_id") == body["error_id"]]
    assert logged and "RuntimeError: database password is hunter2" in logged[0]["data"]["traceback"]


def test_false_condition_is_422(client):
    r = client.get("/guarded")
    assert r.status_code == 422
    assert r.json() == {"error": "Request condition not met", "skipped": True}


def test_middleware_wraps_handler(client):
    r = client.get("/guarded", headers={"x-role": "admin"})
    assert r.status_code == 200
    assert r.headers["x-middleware"] == "yes"


def test_cors_preflight_and_simple_request(client):
    r = client.options("/echo", headers={"origin": "http://dash.local", "access-control-request-method": "POST",
                                         "access-control-request-headers": "content-type"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "http://dash.local"
    assert "POST" in r.headers["access-control-allow-methods"]
    r = client.post("/echo", json={"name": "a"}, headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_state_update_is_atomic_under_concurrency(client, server):
    def hit():
        with server.client() as c:
            for _ in range(20):
                assert c.post("/counter/hits").status_code == 200

    threads = [threading.Thread(target=hit) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r = client.get("/__edge/state", params={"group": "counters", "key": "hits"})
    assert r.json()["value"] == {"n": 100}


@pytest.mark.parametrize("ops, status, answer", [
    # Before, each of the refused ones answered 200 and replaced data it was not told to touch
    # (a scalar or a list became {}), and a remove of a missing path created objects.
    ([{"type": "remove", "path": "a.b.c"}], 200, {"top": 3, "tags": ["x", "y"]}),
    ([{"type": "remove", "path": "top.nope"}], 200, {"top": 3, "tags": ["x", "y"]}),
    ([{"type": "remove", "path": "tags.0"}], 200, {"top": 3, "tags": ["y"]}),
    ([{"type": "set", "path": "tags.1", "value": 9}], 200, {"top": 3, "tags": ["x", 9]}),
    ([{"type": "set", "path": "new.deep", "value": 1}], 200, {"top": 3, "tags": ["x", "y"], "new": {"deep": 1}}),
    ([{"type": "increment", "path": "top.nope"}], 400,
     "state.update: ops[0] increment at top.nope: top is int 3, not an object or a list; set it whole instead"),
    ([{"type": "set", "path": "tags.5", "value": 9}], 400,
     "state.update: ops[0] set at tags.5: tags is a list of 2; '5' is not one of its indexes"),
    ([{"type": "set", "path": "tags.x", "value": 9}], 400,
     "state.update: ops[0] set at tags.x: tags is a list of 2; 'x' is not one of its indexes"),
])
def test_state_update_ops_never_replace_data_they_were_not_told_to(client, ops, status, answer):
    r = client.post("/update/doc", json={"reset": {"top": 3, "tags": ["x", "y"]}, "ops": ops})
    assert r.status_code == status
    if status == 200:
        assert r.json() == answer
    else:
        assert r.json() == {"error": answer, "kept": {"top": 3, "tags": ["x", "y"]}}


def test_state_update_of_a_flag_or_a_list_value_is_refused(client):
    r = client.post("/update/flag", json={"reset": {"flag": True}, "ops": [{"type": "increment", "path": "flag"}]})
    assert r.json()["error"] == "state.update: ops[0] increment at flag: needs numbers, found True and by=1"
    r = client.post("/update/list", json={"reset": [1, 2, 3], "ops": [{"type": "increment", "path": "n"}]})
    assert r.json() == {"error": "state.update: ops[0] increment at n: (root) is a list of 3; 'n' is not one of "
                                 "its indexes", "kept": [1, 2, 3]}


def test_health_and_openapi(client):
    health = client.get("/__edge/health").json()
    assert health["status"] == "ok"
    assert health["steps"] == len(PROJECT)
    doc = client.get("/__edge/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    echo = doc["paths"]["/echo"]["post"]
    assert echo["requestBody"]["content"]["application/json"]["schema"]["required"] == ["name"]
    # a form body is taken and checked against the same schema
    assert echo["requestBody"]["content"]["application/x-www-form-urlencoded"] == echo["requestBody"]["content"]["application/json"]
    assert echo["tags"] == ["demo"]
    params = doc["paths"]["/items/{id}/parts/{part}"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["id", "part"]


def test_spans_recorded_for_invocations(client, server):
    client.post("/echo", json={"name": "span"}, headers={"x-trace-id": "span-trace"})
    time.sleep(1.3)  # spans are flushed to the store once a second
    spans = client.get("/__edge/traces", params={"trace_id": "span-trace"}).json()["spans"]
    assert [(s["step"], s["trigger"], s["status"]) for s in spans] == [("Echo", "http", "ok")]


def test_token_guards_runtime_endpoints(edge_server):
    srv = edge_server({"steps/a_step.py": PROJECT["steps/boom_step.py"]}, env={"EDGE_TOKEN": "s3cret"})
    with srv.client() as c:
        r = c.get("/__edge/logs")
        assert r.status_code == 401
        assert r.json()["detail"] == "this endpoint needs the token in EDGE_TOKEN: send 'Authorization: Bearer <token>'"
        assert c.get("/__edge/logs", headers={"authorization": "Bearer s3cret"}).status_code == 200
        # health stays public, minimal; its details need the token (tests/test_security.py)
        assert c.get("/__edge/health").json() == {"status": "ok"}
        assert "uptime_s" in c.get("/__edge/health", headers={"authorization": "Bearer s3cret"}).json()
        # a foreign Host gets 421 on what the token does not guard too: the console's files and
        # preflights (they answered 200 and the allowed methods)
        assert c.get("/__edge/", headers={"host": "evil.example"}).status_code == 421
        assert c.get("/__edge/").status_code == 200
        preflight = {"origin": "http://evil.example", "access-control-request-method": "GET"}
        assert c.options("/__edge/logs", headers={**preflight, "host": "evil.example"}).status_code == 421
        assert c.options("/__edge/logs", headers=preflight).status_code == 204
    assert srv.stop() == 0


def test_sigterm_finishes_inflight_then_503_and_exit_0(edge_server):
    srv = edge_server({"steps/slow_step.py": PROJECT["steps/slow_step.py"]})
    results = {}

    def slow():
        with srv.client() as c:
            results["slow"] = c.get("/slow", params={"s": "1"})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with srv.client() as c:
        try:
            late = c.get("/slow", params={"s": "0"})
            assert late.status_code == 503
        except httpx.TransportError:
            pass  # the listener may already be closed: refused is also a correct answer
    t.join()
    assert results["slow"].status_code == 200
    assert srv.proc.wait(15) == 0
    assert "panicked" not in srv.output


NAP_STEP = """
    import asyncio

    config = {"name": "Nap", "triggers": [{"type": "http", "method": "GET", "path": "/slow"}]}

    async def handler(req, ctx):
        await asyncio.sleep(float(req.query_params.get("s", "1")))
        return {"status": 200}
"""


@pytest.mark.parametrize("step", [PROJECT["steps/slow_step.py"], NAP_STEP], ids=["trio-handler", "asyncio-handler"])
def test_grace_period_bounds_inflight(edge_server, step):
    srv = edge_server({"steps/slow_step.py": step}, env={"EDGE_GRACE": "0.5"})
    results = {}

    def slow():
        with srv.client() as c:
            results["slow"] = c.get("/slow", params={"s": "30"})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert srv.stop() == 0
    t.join()
    assert time.monotonic() - started < 5  # the 0.5 s grace, not the 10 s default
    assert results["slow"].status_code == 503
    assert results["slow"].json() == {"error": "Service Unavailable",
                                      "detail": "edge stopped before the handler finished; retry"}
