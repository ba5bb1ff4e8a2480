"""The boundary: whatever a handler, middleware, condition or endpoint raises or returns becomes
that invocation's outcome, and the server goes on serving. One real `edge start` process,
real sockets; every fault is followed by a request that must still be answered.

Also: where handlers run — asyncio code on every trigger type, a trio handler by the
documented route, sync handlers in threads (a blocking one stalls nobody, one past its
timeout is a failed attempt).
"""

from __future__ import annotations

import threading
import time

import pytest

from .conftest import served, state_value, wait_for, write_project

PROJECT = {
    "steps/faults_step.py": """
        import asyncio

        async def cond_raises(req, ctx):
            raise ValueError("condition exploded")

        async def mw_raises(req, ctx, next):
            raise LookupError("middleware exploded")

        config = {"name": "Faults", "triggers": [
            {"type": "http", "method": "GET", "path": "/garbage/body"},
            {"type": "http", "method": "GET", "path": "/garbage/status"},
            {"type": "http", "method": "GET", "path": "/garbage/headers"},
            {"type": "http", "method": "GET", "path": "/garbage/informational"},
            {"type": "http", "method": "GET", "path": "/garbage/header-name"},
            {"type": "http", "method": "GET", "path": "/garbage/header-object"},
            {"type": "http", "method": "GET", "path": "/garbage/header-nul"},
            {"type": "http", "method": "GET", "path": "/garbage/tuple-key"},
            {"type": "http", "method": "GET", "path": "/garbage/recursive"},
            {"type": "http", "method": "GET", "path": "/garbage/surrogate"},
            {"type": "http", "method": "GET", "path": "/garbage/header-surrogate"},
            {"type": "http", "method": "GET", "path": "/garbage/surrogate-key"},
            {"type": "http", "method": "GET", "path": "/garbage/surrogate-value"},
            {"type": "http", "method": "GET", "path": "/raises"},
            {"type": "http", "method": "GET", "path": "/cond", "condition": cond_raises},
            {"type": "http", "method": "GET", "path": "/mw", "middleware": [mw_raises]},
            {"type": "http", "method": "GET", "path": "/state/bigint"},
            {"type": "http", "method": "GET", "path": "/state/longkey"},
        ]}

        async def handler(req, ctx):
            kind = req.path
            if kind == "/garbage/body":
                return {"status": 200, "body": {"when": object()}}
            if kind == "/garbage/status":
                return {"status": "OK", "body": {}}
            if kind == "/garbage/headers":
                return {"status": 200, "body": {}, "headers": {"x-evil": "a\\r\\nSet-Cookie: b"}}
            if kind == "/garbage/informational":
                return {"status": 103, "body": {}}
            if kind == "/garbage/header-name":
                return {"status": 200, "body": {}, "headers": {"x y": "1"}}
            if kind == "/garbage/header-object":  # was sent as "x-a: <object object at 0x...>"
                return {"status": 200, "body": {}, "headers": {"x-a": object()}}
            if kind == "/garbage/header-nul":  # was dropped without a word
                return {"status": 200, "body": {}, "headers": {"x-a": "a\\x00b"}}
            if kind == "/garbage/tuple-key":
                return {"status": 200, "body": {"a": {(1, 2): 3}}}
            if kind == "/garbage/recursive":
                looped = {}
                looped["d"] = looped
                return {"status": 200, "body": looped}
            if kind == "/garbage/surrogate":
                return {"status": 200, "body": "\\ud800"}
            if kind == "/garbage/surrogate-key":  # was "dict at $"
                return {"status": 200, "body": {"ok": 1, "a\\ud800": 2}}
            if kind == "/garbage/surrogate-value":  # was "str at $.a[1]"
                return {"status": 200, "body": {"a": ["fine", "x\\udc00"]}}
            if kind == "/garbage/header-surrogate":  # was a 500 with no body and nothing logged
                return {"status": 200, "body": {}, "headers": {"x-a": "caf\\xe9 \\ud800"}}
            if kind == "/state/bigint":
                await ctx.state.set("g", "k", {"n": 2 ** 70})
            if kind == "/state/longkey":
                await ctx.state.set("g", "k" * 600, 1)
            raise RuntimeError("handler exploded")
    """,
    "steps/enqueue_then_raise_step.py": """
        config = {"name": "EnqueueThenRaise", "triggers": [{"type": "http", "method": "POST", "path": "/order"}],
                  "enqueues": ["order.placed"]}

        async def handler(req, ctx):
            await ctx.enqueue({"topic": "order.placed", "data": {"id": req.body["id"]}})
            raise RuntimeError("the answer failed after the enqueue")
    """,
    "steps/order_worker_step.py": """
        config = {"name": "OrderWorker", "triggers": [{"type": "queue", "topic": "order.placed"}]}

        async def handler(data, ctx):
            await ctx.state.set("orders", data["id"], {"placed": True})
    """,
    "steps/proxy_step.py": """
        config = {"name": "Proxy", "triggers": [{"type": "http", "method": "GET", "path": "/proxy"}]}

        async def handler(req, ctx):  # headers copied from an upstream answer, body decompressed
            return {"status": 200, "body": "abc", "headers": {
                "Content-Length": req.query_params["length"], "Transfer-Encoding": "chunked",
                "Connection": "close", "X-Trace-Id": "upstream", "Set-Cookie": ["a=1", "b=2"]}}
    """,
    "steps/big_log_step.py": """
        config = {"name": "BigLog", "triggers": [{"type": "http", "method": "GET", "path": "/biglog"}]}

        async def handler(req, ctx):
            ctx.logger.info("m" * 5_000_000)
            ctx.logger.info("with data", {"blob": "d" * 1_000_000 + "END"})
            return {"status": 200, "body": {"logged": True}}
    """,
    "steps/ok_step.py": """
        config = {"name": "Ok", "triggers": [{"type": "http", "method": "GET", "path": "/ok"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"ok": True}}
    """,
    # asyncio on every trigger type; each records what it saw in state, read back over HTTP.
    "steps/aio_http_step.py": """
        import asyncio

        def blocking(x):
            return x * 2

        config = {"name": "AioHttp", "triggers": [{"type": "http", "method": "POST", "path": "/aio"}],
                  "enqueues": ["aio.work"]}

        async def handler(req, ctx):
            await asyncio.sleep(0.01)
            a, b = await asyncio.gather(asyncio.sleep(0.01, "a"), asyncio.sleep(0.02, "b"))
            c = await asyncio.wait_for(asyncio.sleep(0.01, "c"), timeout=2)
            async with asyncio.timeout(2):
                d = await asyncio.to_thread(blocking, 21)
            e = await asyncio.get_running_loop().run_in_executor(None, blocking, 5)
            await ctx.enqueue({"topic": "aio.work", "data": {"id": req.body["id"]}})
            return {"status": 200, "body": [a, b, c, d, e]}
    """,
    "steps/aio_queue_step.py": """
        import asyncio

        config = {"name": "AioQueue", "triggers": [{"type": "queue", "topic": "aio.work"}]}

        async def handler(data, ctx):
            results = await asyncio.gather(*(asyncio.sleep(0.01, i) for i in range(3)))
            await asyncio.wait_for(ctx.state.set("aio", data["id"], {"queue": results}), timeout=5)
    """,
    "steps/aio_state_step.py": """
        import asyncio

        config = {"name": "AioState", "triggers": [{"type": "state", "group": "aio"}]}

        async def handler(event, ctx):
            if event.event_type != "created":
                return
            async with asyncio.timeout(5):
                await asyncio.sleep(0.01)
            await ctx.streams.aiolog.set("g", event.item_id, {"from": "state", "value": event.new_value})
    """,
    "steps/aio_stream_step.py": """
        import asyncio

        config = {"name": "AioStream", "triggers": [{"type": "stream", "streamName": "aiolog"}]}

        async def handler(event, ctx):
            await asyncio.sleep(0.01)
            await ctx.state.set("aio-done", event.id, {"stream": event.event["type"]})
    """,
    "steps/aiolog_stream.py": """
        config = {"name": "aiolog"}
    """,
    "steps/aio_cron_step.py": """
        import asyncio

        config = {"name": "AioCron", "triggers": [{"type": "cron", "expression": "* * * * * *"}]}

        async def handler(input, ctx):
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: None)
            await ctx.state.set("cron", "ran", {"at": loop.time()})
    """,
    "steps/trio_queue_step.py": """
        import trio

        config = {"name": "TrioQueue", "runtime": "trio",
                  "triggers": [{"type": "http", "method": "POST", "path": "/trio"},
                               {"type": "queue", "topic": "trio.work"}],
                  "enqueues": ["trio.work"]}

        async def handler(input, ctx):
            await trio.sleep(0.01)
            if ctx.trigger.type == "http":
                await ctx.enqueue({"topic": "trio.work", "data": input.body})
                return {"status": 202, "body": {"accepted": True}}
            await trio.to_thread.run_sync(lambda: None)
            await ctx.state.set("trio", input["id"], {"ran": "trio"})
    """,
    "steps/forgot_trio_step.py": """
        import trio

        config = {"name": "ForgotTrio", "triggers": [{"type": "http", "method": "GET", "path": "/forgot-trio"}]}

        async def handler(req, ctx):
            await trio.sleep(0.01)
    """,

    "steps/asyncio_on_trio_step.py": """
        import asyncio

        config = {"name": "AsyncioOnTrio", "runtime": "trio",
                  "triggers": [{"type": "http", "method": "GET", "path": "/asyncio-on-trio"}]}

        async def handler(req, ctx):
            await asyncio.sleep(0)
    """,    # sync handlers run in threads: one that blocks stalls nobody
    "steps/blocking_step.py": """
        import time

        config = {"name": "Blocking", "triggers": [{"type": "http", "method": "GET", "path": "/block"}]}

        def handler(req, ctx):
            ctx.state.set("sync", "started", True)
            time.sleep(float(req.query_params["s"]))
            ctx.state.set("sync", "slept", {"s": req.query_params["s"]})   # returns the value here
            return {"status": 200, "body": {"slept": ctx.state.get("sync", "slept")}}
    """,
    "steps/slow_sync_step.py": """
        import time

        config = {"name": "SlowSync", "triggers": [{"type": "queue", "topic": "slow",
                  "config": {"timeout": 0.2, "maxRetries": 1, "backoffDelayMs": 10}}]}

        def handler(data, ctx):
            time.sleep(1.0)
    """,
    "steps/slow_http_step.py": """
        import asyncio
        import time

        config = {"name": "SlowHttp", "triggers": [
            {"type": "http", "method": "GET", "path": "/slow-http", "timeout": 0.2},
            {"type": "http", "method": "GET", "path": "/slow-http-mw", "timeout": 0.2, "middleware": [
                lambda req, ctx, next: next()]}]}

        async def handler(req, ctx):
            try:
                await asyncio.sleep(float(req.query_params["s"]))
            except asyncio.CancelledError:
                ctx.state.set("http-timeout", req.query_params["id"], "cancelled")  # queued at call time
                raise
            return {"status": 200, "body": {"slept": req.query_params["s"]}}
    """,
    "steps/slow_http_trio_step.py": """
        import trio

        config = {"name": "SlowHttpTrio", "runtime": "trio", "triggers": [
            {"type": "http", "method": "GET", "path": "/slow-http-trio", "timeout": 0.2}]}

        async def handler(req, ctx):
            try:
                await trio.sleep(3600)
            except trio.Cancelled:
                ctx.state.set("http-timeout", "trio", "cancelled")  # queued at call time
                raise
    """,
    "steps/slow_http_sync_step.py": """
        import time

        config = {"name": "SlowHttpSync", "triggers": [
            {"type": "http", "method": "GET", "path": "/slow-http-sync", "timeout": 0.2}]}

        def handler(req, ctx):
            time.sleep(1.0)  # its thread cannot be stopped: it ends in the background
            ctx.state.set("http-timeout", "sync", "finished")
            return {"status": 200, "body": {}}
    """,
    # BaseExceptions a handler raises are its outcome too (the server must not stop)
    "steps/base_raises_step.py": """
        import asyncio

        def raise_kind(kind):
            if kind == "cancel":
                raise asyncio.CancelledError()
            raise {"exit": SystemExit(3), "interrupt": KeyboardInterrupt(), "genexit": GeneratorExit(),
                   "base": BaseException("bare")}[kind]

        config = {"name": "BaseRaises", "triggers": [{"type": "http", "method": "GET", "path": "/base/:kind"}]}

        async def handler(req, ctx):
            raise_kind(req.path_params["kind"])
    """,
    "steps/base_queue_step.py": """
        from steps.base_raises_step import raise_kind

        config = {"name": "BaseQueue", "triggers": [{"type": "queue", "topic": "base.work",
                  "config": {"maxRetries": 1, "backoffDelayMs": 10}}]}

        async def handler(data, ctx):
            raise_kind(data["kind"])
    """,
    "steps/base_sync_queue_step.py": """
        from steps.base_raises_step import raise_kind

        config = {"name": "BaseSyncQueue", "triggers": [{"type": "queue", "topic": "base.sync",
                  "config": {"maxRetries": 0}}]}

        def handler(data, ctx):
            raise_kind(data["kind"])
    """,
    "steps/cron_cancel_step.py": """
        import asyncio

        config = {"name": "CronCancel", "triggers": [{"type": "cron", "expression": "* * * * * *"}]}
        runs = {"n": 0}

        async def handler(input, ctx):
            runs["n"] += 1
            if runs["n"] == 1:  # awaiting a task it cancelled itself: CancelledError, its own
                task = asyncio.ensure_future(asyncio.sleep(10))
                task.cancel()
                await task
            await ctx.state.set("cron-cancel", "runs", runs["n"])
    """,
    "steps/sync_invoker_step.py": """
        import time

        config = {"name": "SyncInvoker", "triggers": [{"type": "http", "method": "GET", "path": "/invoke-sync/:callee"}]}

        def handler(req, ctx):  # a sync handler, in the pool's thread: ctx calls answer directly
            return {"status": 200, "body": ctx.invoke(req.path_params["callee"], {"x": 2})}
    """,
    "steps/sync_callee_step.py": """
        import time

        config = {"name": "SyncCallee", "triggers": [{"type": "queue", "topic": "sync.callee.in"}]}

        def handler(data, ctx):
            time.sleep(0.2)
            return {"sync": True, "data": data}
    """,
    "steps/late_step.py": """
        import asyncio
        import time

        config = {"name": "Late", "triggers": [{"type": "queue", "topic": "late",
                  "config": {"timeout": 0.2, "maxRetries": 1, "backoffDelayMs": 10}}]}

        async def handler(data, ctx):
            if data["how"] == "blocks":
                time.sleep(0.5)  # blocks the loop: the timeout cannot cancel it
            else:
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    pass  # swallows the cancellation and returns
    """,
    "steps/invoker_step.py": """
        config = {"name": "Invoker", "triggers": [{"type": "http", "method": "GET", "path": "/invoke"}]}

        async def handler(req, ctx):
            seen = await ctx.invoke("Callee", {"x": 1})
            return {"status": 200, "body": seen}
    """,
    "steps/callee_step.py": """
        config = {"name": "Callee", "triggers": [{"type": "queue", "topic": "callee.in"}]}

        async def handler(data, ctx):
            return {"trigger_type": ctx.trigger.type, "topic": ctx.trigger.topic, "key": ctx.trigger["topic"],
                    "data": data}
    """,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory, "boundary", PROJECT, args=["--threads", "4"]) as srv:
        yield srv


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


def still_serving(client) -> None:
    assert client.get("/ok").json() == {"ok": True}
    assert client.get("/__edge/health").json()["status"] == "ok"


def logged(server, error_id: str) -> dict:
    return wait_for(lambda: next((r for r in server.logs() if error_id in r.get("msg", "")), None))


@pytest.mark.parametrize("path, message", [
    ("/garbage/body", "Faults: body is not JSON-encodable: object at $.when"),
    ("/garbage/status", "Faults: handler returned status 'OK'; expected an int between 200 and 599"),
    ("/garbage/informational", "Faults: handler returned status 103; expected an int between 200 and 599"),
    ("/garbage/header-name", "Faults: handler returned a header name that is no header name: 'x y'"),
    ("/garbage/header-object", "Faults: handler returned a header value of type object for 'x-a'; "
                               "expected a str (or a number)"),
    ("/garbage/header-nul", "Faults: handler returned a header value with a control character: 'a\\x00b'"),
    ("/garbage/tuple-key", "Faults: body is not JSON-encodable: key of type tuple at $.a"),  # was RecursionError
    # were "Faults failed: RecursionError: maximum recursion depth exceeded ..." / "UnicodeEncodeError"
    ("/garbage/recursive", "Faults: body is not JSON-encodable: dict that contains itself at $.d"),
    ("/garbage/surrogate", "Faults: body is not valid text: '\\ud800' at character 0 has no UTF-8 form"),
    ("/garbage/surrogate-key", "Faults: body is not JSON-encodable: key with no UTF-8 form ('\\ud800' at "
                               "character 1) at $"),
    ("/garbage/surrogate-value", "Faults: body is not JSON-encodable: text with no UTF-8 form ('\\udc00' at "
                                 "character 1) at $.a[1]"),
    ("/garbage/header-surrogate", "Faults: handler returned a header value that is not valid text for 'x-a': "
                                  "'\\ud800' at character 5 has no UTF-8 form"),
    ("/garbage/headers", "Faults: handler returned a header value with a line break: 'a\\r\\nSet-Cookie: b'"),
])
def test_a_garbage_result_is_a_500_that_says_what_was_wrong(client, server, path, message):
    r = client.get(path)
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"error", "error_id"} and body["error"] == "Internal Server Error"
    record = logged(server, body["error_id"])
    assert record["msg"] == f"{message} (error_id {body['error_id']})"
    assert "set-cookie" not in {k.lower() for k in r.headers}
    still_serving(client)


def test_headers_that_frame_the_response_are_edges_not_the_handlers(server):
    # Before: content-length 1 with a 3-byte body left "bc" on the keep-alive connection, read
    # as the start of the next response; content-length 100 made the client wait for ever.
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for length in ("1", "100", "abc"):
            sock.sendall(f"GET /proxy?length={length} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 4 or not data.endswith(b'{"ok":true}'):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 4
    for answer in answers[:3]:
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode().lower().split("\r\n")
        assert body == b"abc" and lines[0] == "200 ok"
        assert "content-length: 3" in lines and "transfer-encoding: chunked" not in lines
        assert "connection: close" not in lines
        assert [line for line in lines if line.startswith("set-cookie")] == ["set-cookie: a=1", "set-cookie: b=2"]
        trace_ids = [line for line in lines if line.startswith("x-trace-id")]
        assert len(trace_ids) == 1 and trace_ids != ["x-trace-id: upstream"]
    assert answers[3].endswith(b'{"ok":true}')


@pytest.mark.parametrize("path, exc, said", [
    ("/raises", "RuntimeError", "handler exploded"), ("/cond", "ValueError", "condition exploded"),
    ("/mw", "LookupError", "middleware exploded"),
])
def test_a_raising_handler_condition_or_middleware_is_a_500_with_error_id(client, server, path, exc, said):
    r = client.get(path)
    assert r.status_code == 500
    error_id = r.json()["error_id"]
    record = logged(server, error_id)
    # the headline says what went wrong (before: the type alone; the message was at the end of the traceback)
    assert record["msg"] == f"Faults failed: {exc}: {said} (error_id {error_id})"
    assert f"{exc}: " in record["data"]["traceback"]
    still_serving(client)


def test_a_huge_log_record_is_cut_on_stdout_and_in_the_store(client, server):
    # Before: 41 calls of a 5 MB message grew data.mdb by 205 MB and RSS to 337 MB.
    r = client.get("/biglog")
    assert r.status_code == 200
    trace = r.headers["x-trace-id"]
    stored = client.get("/__edge/logs", params={"trace_id": trace}).json()["logs"]
    printed = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        [rec for rec in server.logs() if rec.get("trace_id") == trace]))
    for records in (stored, printed):
        message, with_data = records
        assert message["msg"] == "m" * 4096 + f"... ({5_000_000 - 4096} more characters)"
        assert with_data["msg"] == "with data"
        assert with_data["data"]["truncated"] == "1000014 characters of data, cut to 4096"
        assert with_data["data"]["data"] == '{"blob":"' + "d" * 2039 + " ... " + "d" * 2043 + 'END"}'
    still_serving(client)


def test_unstorable_state_from_a_handler_is_its_error_not_the_servers(client, server):
    r = client.get("/state/bigint")
    assert r.status_code == 500
    tb = logged(server, r.json()["error_id"])["data"]["traceback"]
    assert ("StateError: state value: an integer is out of range (stored integers must fit in "
            "-2**63 .. 2**64-1; send big numbers as strings)") in tb
    r = client.get("/state/longkey")
    assert r.status_code == 500
    tb = logged(server, r.json()["error_id"])["data"]["traceback"]
    assert "StateError: state group and key together are 602 bytes (UTF-8); the limit is 510 bytes" in tb
    still_serving(client)


def test_bad_input_to_the_runtime_endpoints_is_a_400_with_the_reason(client):
    r = client.post("/__edge/state", json={"group": "g", "key": "k" * 600, "value": 1})
    assert r.status_code == 400
    assert r.json()["detail"] == ("state group and key together are 602 bytes (UTF-8); the limit is 510 bytes "
                                  "for both (shorten the key, e.g. use a hash of it)")
    r = client.post("/__edge/state", content=b'{"group": "g", "key": "k", "value": 36893488147419103232}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"] == ("state value: an integer is out of range (stored integers must fit in "
                                  "-2**63 .. 2**64-1; send big numbers as strings)")
    r = client.post("/__edge/emit", content=b'{"topic": "aio.work", "data": {"n": 36893488147419103232}}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"] == ('emit("aio.work"): data: an integer is out of range (stored integers must fit '
                                  'in -2**63 .. 2**64-1; send big numbers as strings)')
    r = client.post("/__edge/state", json={"group": 1, "key": "k", "value": 1})
    assert r.status_code == 400
    assert r.json()["detail"] == 'POST /__edge/state: "group" and "key" must be strings, got int and str'
    # ids and limits that are no ids or limits: 3.9 redrove letter 3, true letter 1, limit=0 answered rows
    for body, detail in (({"id": 3.9}, "id: expected an integer, got 3.9"), ({"id": True}, "id: expected an integer, got True")):
        r = client.post("/__edge/dlq/redrive", json=body)
        assert (r.status_code, r.json()["detail"]) == (400, detail)
    for path in ("/__edge/dlq", "/__edge/logs", "/__edge/traces"):
        r = client.get(path, params={"limit": "0"})
        assert (r.status_code, r.json()["detail"]) == (400, "limit: expected an integer of at least 1, got 0")
    still_serving(client)


def test_asyncio_code_works_on_every_trigger_type(client):
    r = client.post("/aio", json={"id": "a1"})
    assert r.status_code == 200
    assert r.json() == ["a", "b", "c", 42, 10]
    # HTTP -> queue (gather, wait_for) -> state trigger (timeout) -> stream trigger (sleep)
    assert wait_for(lambda: state_value(client, "aio-done", "a1")) == {"stream": "create"}
    assert state_value(client, "aio", "a1") == {"queue": [0, 1, 2]}
    # cron, every second, with run_in_executor: it stored the loop's time
    ran = wait_for(lambda: state_value(client, "cron", "ran"))
    assert isinstance(ran["at"], float) and ran["at"] > 0


def test_an_http_handler_that_enqueues_then_raises_still_delivers(client):
    # Motia's semantics (docs/architecture.md): an HTTP step's enqueue is durable once awaited,
    # so the worker runs even though the request itself failed afterwards.
    r = client.post("/order", json={"id": "o-17"})
    assert r.status_code == 500 and r.json()["error"] == "Internal Server Error"
    assert wait_for(lambda: state_value(client, "orders", "o-17")) == {"placed": True}


def test_a_queued_run_names_the_run_that_enqueued_it_as_its_parent(client):
    trace = "0af7651916cd43dd8448eb211c80319c"
    client.post("/order", json={"id": "o-18"}, headers={"x-trace-id": trace})
    assert wait_for(lambda: state_value(client, "orders", "o-18")) == {"placed": True}
    spans = {s["step"]: s for s in wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        client.get("/__edge/traces", params={"trace_id": trace}).json()["spans"]))}
    assert spans["OrderWorker"]["parent"] == spans["EnqueueThenRaise"]["span_id"]
    assert spans["OrderWorker"]["trigger"] == "queue"


def test_runs_fired_by_state_and_stream_changes_name_the_run_that_made_the_change(client):
    # HTTP -> queue -> state trigger -> stream trigger: each run's parent is the span before it
    trace = "5b8efff798038103d269b633813fc60c"
    client.post("/aio", json={"id": "p1"}, headers={"x-trace-id": trace})
    assert wait_for(lambda: state_value(client, "aio-done", "p1")) == {"stream": "create"}
    spans = {s["step"]: s for s in wait_for(lambda: (lambda found: found if len(found) == 4 else None)(
        client.get("/__edge/traces", params={"trace_id": trace}).json()["spans"]))}
    chain = [(spans[name]["trigger"], spans[name].get("parent")) for name in ("AioHttp", "AioQueue", "AioState", "AioStream")]
    assert chain == [("http", None), ("queue", spans["AioHttp"]["span_id"]),
                     ("state", spans["AioQueue"]["span_id"]), ("stream", spans["AioState"]["span_id"])]


def test_a_message_stored_before_parents_were_recorded_still_decodes():
    import msgspec

    from edge.queues.records import Message, decode_message, encode_message

    old = msgspec.msgpack.encode(["t" * 32, msgspec.Raw(msgspec.msgpack.encode({"a": 1})), 5, "g", 2, 9, "boom"])
    assert decode_message(old) == Message("t" * 32, msgspec.Raw(msgspec.msgpack.encode({"a": 1})), 5, "g", 2, 9, "boom")
    assert decode_message(old).parent is None
    fresh = Message("t" * 32, msgspec.Raw(msgspec.msgpack.encode(1)), 5)
    assert encode_message(fresh) == msgspec.msgpack.encode(["t" * 32, msgspec.Raw(msgspec.msgpack.encode(1)), 5])
    child = msgspec.structs.replace(fresh, parent="ab" * 8)
    assert decode_message(encode_message(child)) == child


def test_a_trio_handler_runs_by_the_documented_route_on_http_and_queue(client):
    r = client.post("/trio", json={"id": "t1"})
    assert r.status_code == 202 and r.json() == {"accepted": True}
    assert wait_for(lambda: state_value(client, "trio", "t1")) == {"ran": "trio"}


def test_trio_code_in_an_asyncio_handler_gets_a_hint(client, server):
    r = client.get("/forgot-trio")
    assert r.status_code == 500
    record = logged(server, r.json()["error_id"])
    assert record["data"]["hint"] == ('this handler calls trio, but async handlers run on asyncio: add '
                                      '"runtime": "trio" to the config of steps/forgot_trio_step.py, or use asyncio')


def test_asyncio_code_in_a_trio_handler_gets_a_hint(client, server):
    # Before: a bare "TypeError: trio.run received unrecognized yield message" and no hint.
    r = client.get("/asyncio-on-trio")
    assert r.status_code == 500
    record = logged(server, r.json()["error_id"])
    assert record["data"]["hint"] == ('this handler awaits asyncio, but its config says "runtime": "trio": remove '
                                      'that from steps/asyncio_on_trio_step.py (handlers run on asyncio by default), '
                                      'or use trio')


def test_a_blocking_sync_handler_stalls_nobody(server):
    results = {}

    def slow():
        with server.client() as c:
            results["slow"] = c.get("/block", params={"s": "1.5"})

    t = threading.Thread(target=slow)
    t.start()
    with server.client() as c:
        wait_for(lambda: state_value(c, "sync", "started"))  # the sync handler is now sleeping
        started = time.monotonic()
        for _ in range(5):
            assert c.get("/ok").status_code == 200
        quick = time.monotonic() - started
    t.join()
    assert quick < 1.0, f"5 requests took {quick:.2f}s while a sync handler slept"
    assert results["slow"].status_code == 200
    assert results["slow"].json() == {"slept": {"s": "1.5"}}


def test_a_sync_handler_past_its_timeout_is_retried_then_dead_lettered(client, server):
    r = client.post("/__edge/emit", json={"topic": "slow", "data": {"n": 1}})
    assert r.status_code == 202
    dead = wait_for(lambda: client.get("/__edge/dlq").json()["dead_letters"], timeout=15)
    assert dead[0]["step"] == "SlowSync" and dead[0]["attempts"] == 2
    assert dead[0]["error"] == "TimeoutError: the handler did not finish within 0.2 s"
    still_serving(client)


@pytest.mark.parametrize("kind, exc", [
    ("exit", "SystemExit: 3"), ("interrupt", "KeyboardInterrupt"), ("genexit", "GeneratorExit"),
    ("base", "BaseException: bare"), ("cancel", "CancelledError"),
])
def test_a_base_exception_from_an_http_handler_is_a_500_with_error_id(client, server, kind, exc):
    r = client.get(f"/base/{kind}")
    assert r.status_code == 500
    error_id = r.json()["error_id"]
    record = logged(server, error_id)
    assert record["msg"] == f"BaseRaises failed: {exc} (error_id {error_id})"
    spans = client.get("/__edge/traces", params={"trace_id": r.headers["x-trace-id"]}).json()["spans"]
    assert [(s["status"], s["error_id"]) for s in spans] == [("error", error_id)]
    still_serving(client)


def test_a_base_exception_from_a_queue_handler_is_retried_then_dead_lettered(client, server):
    # Before: the exception reached the runtime's nursery, the server exited 1, and the message,
    # still stored, stopped every restart the same way.
    kinds = {"exit": "SystemExit: 3", "interrupt": "KeyboardInterrupt", "genexit": "GeneratorExit",
             "base": "BaseException: bare", "cancel": "CancelledError"}
    for kind in kinds:
        assert client.post("/__edge/emit", json={"topic": "base.work", "data": {"kind": kind}}).status_code == 202
        assert client.post("/__edge/emit", json={"topic": "base.sync", "data": {"kind": kind}}).status_code == 202

    def dead():
        found = [d for d in client.get("/__edge/dlq").json()["dead_letters"] if d["step"].startswith("Base")]
        return found if len(found) == 2 * len(kinds) else None

    letters = wait_for(dead, timeout=15)
    assert sorted((d["step"], d["data"]["kind"], d["attempts"], d["error"]) for d in letters) == sorted(
        [("BaseQueue", kind, 2, error) for kind, error in kinds.items()]
        + [("BaseSyncQueue", kind, 1, error) for kind, error in kinds.items()])
    still_serving(client)


def test_a_cron_handler_that_awaits_a_task_it_cancelled_fails_that_run_alone(client, server):
    assert wait_for(lambda: (state_value(client, "cron-cancel", "runs") or 0) >= 2, timeout=10)
    record = wait_for(lambda: next((r for r in server.logs() if r.get("msg", "").startswith("CronCancel failed")), None))
    assert record["msg"].startswith("CronCancel failed: CancelledError (error_id ")
    still_serving(client)


def test_an_http_handler_past_its_timeout_is_cancelled_and_answers_504(client, server):
    for path, id in (("/slow-http", "a"), ("/slow-http-mw", "b")):
        answer = client.get(path, params={"s": "3600", "id": id})
        error_id = answer.json().get("error_id")
        assert (answer.status_code, answer.json()) == (504, {
            "error": "Gateway Timeout", "detail": "the handler did not answer within 0.2 s (its timeout)",
            "error_id": error_id})
        assert logged(server, error_id)["msg"] == (
            f"SlowHttp: TimeoutError: the handler did not answer within 0.2 s (its timeout); it was cancelled "
            f"and the client got 504 (error_id {error_id})")
        assert wait_for(lambda: state_value(client, "http-timeout", id)) == "cancelled"  # its task was cancelled
    answer = client.get("/slow-http-trio")  # a trio handler is cancelled in trio
    assert (answer.status_code, answer.json()["detail"]) == (504, "the handler did not answer within 0.2 s (its timeout)")
    assert wait_for(lambda: state_value(client, "http-timeout", "trio")) == "cancelled"
    answer = client.get("/slow-http", params={"s": "0", "id": "c"})  # within its timeout: answered as usual
    assert (answer.status_code, answer.json()) == (200, {"slept": "0"})

    answer = client.get("/slow-http-sync")
    assert (answer.status_code, answer.json()["detail"]) == (504, "the handler did not answer within 0.2 s (its timeout)")
    still_serving(client)  # while the sync handler's thread sleeps on
    assert wait_for(lambda: state_value(client, "http-timeout", "sync")) == "finished"


def test_an_async_handler_that_returns_past_its_timeout_failed_the_attempt(client, server):
    # Before: both were acked as handled (2001 ms "ok"), so the timeout meant nothing to them.
    for how in ("blocks", "swallows"):
        assert client.post("/__edge/emit", json={"topic": "late", "data": {"how": how}}).status_code == 202

    def dead():
        found = [d for d in client.get("/__edge/dlq").json()["dead_letters"] if d["step"] == "Late"]
        return found if len(found) == 2 else None

    letters = wait_for(dead, timeout=15)
    assert sorted((d["data"]["how"], d["attempts"], d["error"]) for d in letters) == [
        ("blocks", 2, "TimeoutError: the handler did not finish within 0.2 s"),
        ("swallows", 2, "TimeoutError: the handler did not finish within 0.2 s")]
    for letter in letters:  # each attempt's span says it failed too
        spans = client.get("/__edge/traces", params={"trace_id": letter["trace_id"]}).json()["spans"]
        assert [(s["status"], s.get("error")) for s in spans] == [("error", "returned after its timeout")] * 2
    still_serving(client)


def test_a_runtime_stopping_under_an_asyncio_caller_is_a_cancellation_not_its_error():
    # An asyncio task awaiting a trio step (Host.run_trio) when the runtime's nursery is
    # cancelled: nobody cancelled the asyncio task, yet it is edge's cancellation, not the
    # caller's error (it was logged as "failed: CancelledError" and answered 500).
    import asyncio

    import trio

    from edge._boundary import Host, RuntimeStopping, cancelled_from_outside

    async def main():
        loop = asyncio.get_running_loop()
        host, ready, done = Host(loop), loop.create_future(), loop.create_future()

        async def runtime():
            async with trio.open_nursery() as nursery:
                host.nursery = nursery
                ready.set_result(nursery)
                await trio.sleep_forever()

        trio.lowlevel.start_guest_run(runtime, run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                                      run_sync_soon_not_threadsafe=loop.call_soon,
                                      done_callback=done.set_result, host_uses_signal_set_wakeup_fd=False)
        nursery = await ready
        caller = asyncio.ensure_future(host.run_trio(trio.sleep_forever))
        await asyncio.sleep(0)  # the caller is waiting on the trio task
        nursery.cancel_scope.cancel()
        try:
            await caller
        except BaseException as exc:  # noqa: B036 (what the boundary sees)
            seen = exc
        await done
        return seen

    seen = asyncio.run(main())
    assert type(seen) is RuntimeStopping and str(seen) == "the runtime is stopping"
    assert cancelled_from_outside(seen) is True
    assert cancelled_from_outside(asyncio.CancelledError()) is False  # no loop, no cancel: the handler's


def test_ctx_invoke_callee_sees_its_first_trigger_with_attributes(client):
    r = client.get("/invoke")
    assert r.status_code == 200
    assert r.json() == {"trigger_type": "queue", "topic": "callee.in", "key": "callee.in", "data": {"x": 1}}


def test_ctx_invoke_from_a_sync_handler_answers_the_result(client):
    # Before: it returned a coroutine, and the answer failed with "body is not JSON-encodable"
    r = client.get("/invoke-sync/Callee")
    assert r.status_code == 200
    assert r.json() == {"trigger_type": "queue", "topic": "callee.in", "key": "callee.in", "data": {"x": 2}}
    spans = client.get("/__edge/traces", params={"trace_id": r.headers["x-trace-id"]}).json()["spans"]
    by_step = {s["step"]: s for s in spans}
    assert by_step["Callee"]["parent"] == by_step["SyncInvoker"]["span_id"]


def test_sync_handlers_invoking_sync_steps_never_exhaust_the_thread_pool(server):
    # 6 callers on a 4-thread pool, each waiting in its thread for a sync callee: the callees
    # took the same pool and every caller waited for ever (with --threads 1, a single request).
    import concurrent.futures

    import httpx

    def call(_):
        return httpx.get(f"{server.url}/invoke-sync/SyncCallee", timeout=10)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(call, range(6)))
    assert [(r.status_code, r.json()) for r in answers] == [(200, {"sync": True, "data": {"x": 2}})] * 6


# -- smaller defects found on the way ---------------------------------------------------------

def test_discover_twice_in_one_process_keeps_the_edge_helpers(tmp_path):
    import edge
    from edge.steps import discover

    write_project(tmp_path, {"steps/nightly_step.py": """
        from edge import cron, state

        config = {"name": "Nightly", "triggers": [cron("0 3 * * *"), state(group="todos")]}

        async def handler(input, ctx):
            pass
    """})
    for _ in range(2):
        found = discover(tmp_path)
        assert [e.message for e in found.errors] == []
        assert [t.type for t in found.step("Nightly").triggers] == ["cron", "state"]
    import edge.runtime  # noqa: F401  (imports the implementation modules)
    assert edge.cron("* * * * *") == {"type": "cron", "expression": "* * * * *"}
    assert edge.state(group="g") == {"type": "state", "group": "g"}


@pytest.mark.parametrize("value", ["inf", "-1k", "nan"])
def test_max_body_that_is_no_size_is_a_usage_error(tmp_path, value):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "edge", "start", "--dir", str(tmp_path), f"--max-body={value}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f'edge start: --max-body: expected a size such as 1048576, 512k or 4m, got "{value}"\n'


def test_multiple_of_with_a_huge_number_is_a_schema_error_not_an_overflow():
    from edge.errors import SchemaError
    from edge.schema import compile_schema

    schema = compile_schema({"type": "object", "properties": {"price": {"type": "number", "multipleOf": 0.01}}})
    with pytest.raises(SchemaError) as info:
        schema.validate({"price": 1e308})
    assert info.value.errors == [{"path": "$.price", "message": "must be a multiple of 0.01, got 1e308"}]


async def test_a_raising_timer_callback_is_logged_and_the_timers_go_on(autojump_clock):
    import trio

    from edge.queues.timers import Timers

    errors, ran = [], []
    timers = Timers(on_error=lambda message, exc: errors.append(message))

    def boom():
        raise KeyError("gone")

    async with trio.open_nursery() as nursery:
        await nursery.start(timers.serve)
        timers.at(1, boom)
        timers.at(2, ran.append, "next")
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert errors == ["edge: a queue timer callback failed: KeyError: 'gone'"]
    assert ran == ["next"]
