"""Motia projects run on edge unchanged: one fixture project per dialect (tests/fixtures/projects),
each served by a real ``edge start`` and driven over HTTP and WebSocket, asserting what a Motia
user would notice: status codes, bodies, that queue steps ran and wrote state, stream frames,
the SSE bytes."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from .conftest import EdgeServer, rss_mib, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "projects"


def serve(tmp_path: Path, name: str, **kw) -> EdgeServer:
    """Copy a fixture project (as a user copies their steps/) and start edge on it."""
    project = tmp_path / name
    shutil.copytree(FIXTURES / name, project)
    return EdgeServer(project, tmp_path / "data", **kw).start()


def state_item(client: httpx.Client, group: str, key: str):
    answer = client.get("/__edge/state", params={"group": group, "key": key})
    return answer.json().get("value") if answer.status_code == 200 else None


def ws_frames(url: str, joins: list[dict], count: int, action=None, timeout: float = 10) -> list[dict]:
    """Join streams over a WebSocket, run ``action``, collect ``count`` frames (the joins' sync
    frames first)."""
    frames: list[dict] = []
    with connect(url.replace("http://", "ws://") + "/", open_timeout=timeout) as ws:
        for i, join in enumerate(joins):
            ws.send(json.dumps({"type": "join", "data": {"subscriptionId": f"s{i}", **join}}))
        for _ in joins:
            frames.append(json.loads(ws.recv(timeout)))
        if action is not None:
            action()
        while len(frames) < count:
            frames.append(json.loads(ws.recv(timeout)))
    return frames


# -- Motia 1.0.4 ---------------------------------------------------------------------------------

@pytest.fixture
def motia_104(tmp_path):
    server = serve(tmp_path, "motia_1_0_4", env={"ALREADY_SET": "from-shell"})
    yield server
    server.kill()


def test_motia_104_steps_load_without_a_word_about_workbench_files(motia_104):
    assert "todo.step.tsx" not in motia_104.output
    assert "ModuleNotFoundError" not in motia_104.output


def test_motia_104_env_file_is_loaded_without_overriding_the_shell(motia_104):
    with motia_104.client() as client:
        answer = client.get("/hello")
    assert answer.status_code == 200
    assert answer.json() == {"greeting": "hello from .env", "already_set": "from-shell"}
    assert answer.headers["x-greeting"] == "yes"


def test_motia_104_sync_module_level_calls_state_stream_queue_and_triggers(motia_104):
    with motia_104.client() as client:
        created = client.post("/todo", json={"description": "buy milk", "n": 1})
        assert created.status_code == 201, created.text
        assert created.json() == {
            "todo": {"id": "todo-1", "description": "buy milk", "processed": False},
            "was": None, "trigger": "http", "path": "/todo",
        }
        assert client.post("/todo", json={"n": 2}).json() == {"error": "Description is required"}
        assert client.get("/todo/nope").status_code == 404

        # the queue step ran: it updated state, saw its own write, and updated the stream
        done = wait_for(lambda: client.get("/todo/todo-1").json().get("checks"))
        assert done == {"saw_own_write": True, "data": {"id": "todo-1"}}
        assert client.get("/todo/todo-1").json()["todo"]["processed"] is True
        # the state trigger counted the creation and the update
        audit = wait_for(lambda: (a := state_item(client, "audit", "todo-1")) and a.get("updated") and a)
        assert audit == {"created": 1, "updated": 1}
        # the stream trigger saw the create and the update, with input.event.type / .data
        created_event = wait_for(lambda: state_item(client, "stream-events", "todo-1:create"))
        updated_event = wait_for(lambda: state_item(client, "stream-events", "todo-1:update"))
    assert created_event == {"stream": "todo", "group": "inbox",
                             "data": {"id": "todo-1", "description": "buy milk", "processed": False}}
    assert updated_event["data"]["processed"] is True


def test_motia_104_match_across_http_and_cron(motia_104):
    with motia_104.client() as client:
        client.post("/todo", json={"description": "a", "n": 7})
        summary = wait_for(lambda: (s := client.get("/todo-summary").json())["cron"] and s)
    assert summary["count"] == 1 and summary["is_api"] is True
    assert summary["cron"]["is_cron"] is True and summary["cron"]["expression"] == "* * * * * *"


def test_motia_104_stream_without_a_stream_file_is_live_over_websocket(motia_104):
    def create():
        with motia_104.client() as client:
            assert client.post("/todo", json={"description": "ws", "n": 3}).status_code == 201

    frames = ws_frames(motia_104.url, [{"streamName": "todo", "groupId": "inbox"}], 3, create)
    assert frames[0]["event"] == {"type": "sync", "data": []}
    assert [f["event"]["type"] for f in frames[1:]] == ["create", "update"]
    assert frames[1]["event"]["data"] == {"id": "todo-3", "description": "ws", "processed": False}
    assert frames[2]["event"]["data"]["processed"] is True


def test_motia_104_streaming_handler_sends_server_sent_events(motia_104):
    with motia_104.client() as client, client.stream(
        "POST", "/sse", content=b"b=2&a=1", headers={"content-type": "application/x-www-form-urlencoded"},
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/event-stream"
        assert answer.headers["cache-control"] == "no-cache"
        assert answer.headers["x-trace-id"]
        body = b"".join(answer.iter_bytes())
    assert body == (b'event: item\ndata: {"i": 0, "a": "1"}\n\n'
                    b'event: item\ndata: {"i": 1, "b": "2"}\n\n'
                    b'event: done\ndata: {"total": 2}\n\n')


def test_motia_104_streaming_handler_reads_a_chunked_body(motia_104):
    def chunks():
        yield b"x=1&"
        yield b"y=2"

    with motia_104.client() as client:
        answer = client.post("/sse", content=chunks())
    assert answer.status_code == 200
    assert answer.text.endswith('event: done\ndata: {"total": 2}\n\n')


# -- Motia 1.0 release candidates ---------------------------------------------------------------

@pytest.fixture
def motia_rc(tmp_path):
    server = serve(tmp_path, "motia_rc")
    yield server
    server.kill()


ORDER = {"id": "o-1", "items": [{"sku": "tea", "qty": 2, "price": 3}, {"sku": "mug", "qty": 1, "price": 5}]}


def test_motia_rc_awaited_ctx_and_module_level_calls(motia_rc):
    with motia_rc.client() as client:
        assert client.post("/orders", json=ORDER).json() == {"error": "Unauthorized"}
        bad = client.post("/orders", json={"id": "o-2"}, headers={"x-user": "ana"})
        assert bad.status_code == 400 and bad.json()["error"] == "Invalid request body"
        assert client.get("/orders/o-1").status_code == 404

        created = client.post("/orders", json=ORDER, headers={"x-user": "ana", "x-trace-id": "trace-rc-1"})
        assert created.status_code == 201
        assert created.json() == {"id": "o-1", "total": 11, "traceId": "trace-rc-1"}

        order = wait_for(lambda: (o := client.get("/orders/o-1").json())["result"] and o)
    assert order["order"]["status"] == "processed" and order["order"]["user"] == "ana"
    assert order["result"] == {
        "stream_old": None, "stream_new": {"status": "processing", "total": 11, "id": "o-1"},
        "state_old_status": "new", "state_new_status": "processed", "topic": "order.created", "is_queue": True,
    }
    assert order["live"] == {"status": "processing", "total": 11, "id": "o-1"}


def test_motia_rc_multi_trigger_builder_and_condition(motia_rc):
    with motia_rc.client() as client:
        quiet = client.post("/ping", json={"volume": "quiet"})
        assert quiet.status_code == 422
        assert quiet.json() == {"error": "Request condition not met", "skipped": True}
        loud = client.post("/ping", json={}, headers={"x-trace-id": "ping-1"})
        assert loud.status_code == 202 and loud.json() == {"queued": True}
        ping = wait_for(lambda: state_item(client, "pings", "ping-1"))
    assert ping == {"data": {"from": "http"}, "trigger": "queue"}


def test_motia_rc_awaited_stream_writes_reach_websocket_subscribers(motia_rc):
    def order():
        with motia_rc.client() as client:
            assert client.post("/orders", json=ORDER, headers={"x-user": "ana"}).status_code == 201

    frames = ws_frames(motia_rc.url, [{"streamName": "orders", "groupId": "all", "id": "o-1"}], 2, order)
    assert frames[0]["event"] == {"type": "sync", "data": None}
    assert frames[1]["id"] == "o-1"
    assert frames[1]["event"] == {"type": "create", "data": {"status": "processing", "total": 11, "id": "o-1"}}


# -- the transitional dialect (the published `motia create` templates) ----------------------------

def test_motia_transitional_template_runs(tmp_path):
    server = serve(tmp_path, "motia_transitional")
    try:
        with server.client() as client:
            hello = client.post("/hello", json={"name": "Ada"}, headers={"x-trace-id": "t-hello"})
            assert hello.status_code == 200
            assert hello.json() == {"message": "hello queued for Ada", "traceId": "t-hello"}
            assert client.get("/greetings/nobody").json() == {"error": "no greeting yet"}
            greeting = wait_for(lambda: (g := client.get("/greetings/t-hello")).status_code == 200 and g.json())
    finally:
        server.kill()
    assert greeting == {"greeting": "Hello, Ada!"}


# -- Motia 0.x ------------------------------------------------------------------------------------

def test_motia_0x_project_runs_unchanged(tmp_path):
    server = serve(tmp_path, "motia_0x")
    try:
        def place():
            with server.client() as client:
                assert client.post("/orders", json={"id": "o-9"}).json() == {"error": "Unauthorized"}
                placed = client.post("/orders", json={"id": "o-9"}, headers={"x-user": "bo"})
                assert placed.status_code == 200, placed.text
                # the middleware's req["user"] reached the handler; the API step waited in state
                # for the worker sharing its name, which answered with asyncio results
                assert placed.json() == {"user": {"name": "bo"}, "receipt": {"id": "o-9", "price": 7, "stock": 3}}

        frames = ws_frames(server.url, [{"streamName": "pets", "groupId": "orders"}], 2, place)
        assert frames[1]["event"] == {"type": "create", "data": {"name": "order for bo", "id": "o-9"}}

        with server.client() as client:
            assert state_item(client, "counters", "orders") == 1
            pet = client.post("/basic-tutorial", json={"name": "Rex", "photoUrl": "http://x/rex.png"})
            assert pet.status_code == 200 and pet.json()["id"] == "pet-rex"
            order = wait_for(lambda: state_item(client, "orders", "pet-rex"))
            assert order == {"id": "pet-rex"}
        # logs show the name the user wrote, not the identity edge gave the second file
        placing = wait_for(lambda: [r for r in server.logs() if r.get("msg") == "placing order"])
    finally:
        server.kill()
    assert placing[0]["step"] == "PlaceOrder"


# -- details a Motia user would run into ---------------------------------------------------------

DETAILS = {
    "steps/details_step.py": """
        import asyncio
        from typing import Any

        from motia import ApiRequest, ApiResponse, FlowContext, MotiaHttpArgs, Stream, http, queue, stateManager

        notes: Stream[dict[str, Any]] = Stream("notes")

        config = {"name": "Details", "triggers": [http("POST", "/details"), queue("details")], "enqueues": ["details"]}

        async def handler(input: Any, ctx: FlowContext[Any]) -> Any:
            if ctx.is_queue():
                return await ctx.match({"default": lambda data: stateManager.set("details", "queue", data)})
            # not awaited, together: each answer is awaitable too
            results = await asyncio.gather(notes.set("g", "a", {"n": 1}), notes.set("g", "b", {"n": 2}))
            await ctx.enqueue({"topic": "details", "data": ctx.get_data()})
            return ApiResponse(status=200, body={"new": [r["new_value"] for r in results]})
    """,
    "steps/sync_step.py": """
        from motia import ApiResponse, http, stateManager

        config = {"name": "Sync", "triggers": [http("PUT", "/sync/:key")], "enqueues": []}

        def handler(request, ctx):  # a sync handler runs in a thread: calls block and answer values
            result = stateManager.set("sync", request.path_params["key"], request.body)
            return ApiResponse(status=200, body={"stored": result["new_value"],
                                                 "read": stateManager.get("sync", request.path_params["key"])})
    """,
    "steps/undeclared_step.py": """
        from motia import Stream, http

        config = {"name": "Undeclared", "triggers": [http("GET", "/undeclared")], "enqueues": []}

        async def handler(request, ctx):
            return {"status": 200, "body": await Stream("ghost").get("g", "1")}
    """,
    "steps/ticker_step.py": """
        import asyncio
        from typing import Any

        from motia import MotiaHttpArgs, http, stateManager

        config = {"name": "Ticker", "triggers": [http("GET", "/ticks")], "enqueues": []}

        async def handler(args: MotiaHttpArgs[Any], ctx) -> None:  # an endless event stream
            await args.response.headers({"content-type": "text/event-stream"})
            i = 0
            try:
                while True:
                    args.response.writer.stream.write(f"data: {i}\\n\\n")
                    i += 1
                    await asyncio.sleep(0.02)
            finally:
                stateManager.set("ticker", "ended", {"after": i})
    """,
    "steps/flood_step.py": """
        from typing import Any

        from motia import MotiaHttpArgs, http, stateManager

        config = {"name": "Flood", "triggers": [http("GET", "/flood")], "enqueues": []}

        async def handler(args: MotiaHttpArgs[Any], ctx) -> None:  # sends as fast as it can
            sent = 0
            try:
                while True:
                    await args.response.send(b"x" * 10_000)
                    sent += 1
            finally:
                stateManager.set("flood", "ended", {"sent": sent})
    """,
    "steps/gush_step.py": """
        import asyncio
        from typing import Any

        from motia import MotiaHttpArgs, http, stateManager

        config = {"name": "Gush", "triggers": [http("GET", "/gush")], "enqueues": []}

        async def handler(args: MotiaHttpArgs[Any], ctx) -> None:  # writes, never waits for the client
            written = 0
            try:
                while True:
                    args.response.writer.stream.write(b"x" * 100_000)
                    written += 1
                    await asyncio.sleep(0)
            except ConnectionError as exc:
                stateManager.set("gush", "ended", {"written": written, "error": str(exc)})
                raise
    """,
    "steps/stream_fail_step.py": """
        from typing import Any

        from motia import MotiaHttpArgs, http

        config = {"name": "StreamFail", "triggers": [http("GET", "/stream-fail/:when"), http("POST", "/stream-fail/:when")],
                  "enqueues": []}

        async def handler(args: MotiaHttpArgs[Any], ctx):
            if args.path_params["when"] == "before":
                raise RuntimeError("broken before the first byte")
            if args.path_params["when"] == "header":
                await args.response.headers({"x y": "1"})
            if args.path_params["when"] == "informational":
                await args.response.status(103)
            if args.path_params["when"] == "plain":
                return {"status": 202, "body": {"plain": True, "body": args.request.body}}
            await args.response.status(207)
            args.response.writer.stream.write("partial")
            raise RuntimeError("broken after the first byte")
    """,
}


def test_motia_details_gather_get_data_match_default_sync_handlers(edge_server):
    server = edge_server(DETAILS)
    with server.client() as client:
        answer = client.post("/details", json={"x": 1})
        assert answer.status_code == 200
        assert answer.json() == {"new": [{"n": 1, "id": "a"}, {"n": 2, "id": "b"}]}
        assert wait_for(lambda: state_item(client, "details", "queue")) == {"x": 1}

        synced = client.put("/sync/k", json={"v": 2})
        assert synced.status_code == 200 and synced.json() == {"stored": {"v": 2}, "read": {"v": 2}}

        ghost = client.get("/undeclared")
        assert ghost.status_code == 500
    wait_for(lambda: "Stream('ghost')" in server.output)
    assert ("Stream('ghost').get: no stream named 'ghost' was declared when the steps were loaded; create "
            "Stream('ghost') at module level in a step file (or in a module a step imports), or add a "
            "ghost_stream.py file") in server.output


def test_motia_streaming_handler_failures(edge_server):
    server = edge_server(DETAILS)
    with server.client() as client:
        before = client.get("/stream-fail/before")
        assert before.status_code == 500 and before.json()["error_id"]
        plain = client.get("/stream-fail/plain")
        assert (plain.status_code, plain.json()) == (202, {"plain": True, "body": None})
        latin = client.post("/stream-fail/plain", content="café".encode("latin-1"),
                            headers={"content-type": "text/plain; charset=iso-8859-1"})  # its charset is read
        assert (latin.status_code, latin.json()) == (202, {"plain": True, "body": "café"})
        # Failing after the first byte: the status and what was written are sent, then the
        # connection is cut without the last chunk (an app with a streaming step is served
        # through ASGI), so the client cannot take the part for the whole.
        with client.stream("GET", "/stream-fail/after") as after:
            assert after.status_code == 207
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                after.read()
        for when in ("header", "informational"):  # the streaming headers get the same checks
            bad = client.get(f"/stream-fail/{when}")
            assert bad.status_code == 500 and bad.json()["error_id"]
    wait_for(lambda: "broken after the first byte" in server.output)  # logged with its traceback
    assert "StreamFail: handler returned a header name that is no header name: 'x y'" in server.output
    assert "ValueError: response.status(): expected an HTTP status code (200-599), got 103" in server.output


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_motia_streaming_handler_stops_when_the_client_leaves(edge_server, interface):
    server = edge_server(DETAILS, env={"EDGE_SERVER_INTERFACE": interface})
    with server.client() as client:
        with client.stream("GET", "/ticks") as answer:
            seen = b""
            for chunk in answer.iter_bytes():
                seen += chunk
                if seen.count(b"\n\n") >= 3:
                    break
        assert seen.startswith(b"data: 0\n\ndata: 1\n\ndata: 2\n\n")
        ended = wait_for(lambda: state_item(client, "ticker", "ended"))
    assert ended["after"] >= 3


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_a_handler_that_sends_in_a_loop_starves_nobody_and_stops_when_the_client_leaves(edge_server, interface):
    # Before: `await send()` never suspended, so the loop ran nothing else (other requests timed
    # out, the disconnect was never seen) and memory grew by gigabytes after the client left.
    server = edge_server(DETAILS, env={"EDGE_SERVER_INTERFACE": interface})
    with server.client() as client, server.client() as other:
        with client.stream("GET", "/flood") as answer:
            seen = 0
            for chunk in answer.iter_bytes():
                seen += len(chunk)
                if seen >= 200_000:
                    break
            assert other.get("/__edge/health", timeout=5).json()["status"] == "ok"
        ended = wait_for(lambda: state_item(other, "flood", "ended"))
    assert ended["sent"] >= 20


def _never_read(server: EdgeServer, path: str, seconds: float) -> list[float]:
    """Ask for ``path`` on a raw socket and read nothing for ``seconds``; the server's RSS
    (MiB) sampled meanwhile."""
    samples = []
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(rss_mib(server.proc.pid))
            time.sleep(0.1)
    return samples


def test_a_client_that_never_reads_holds_a_streaming_handler_at_a_bounded_cost(edge_server):
    # Before: served through RSGI, whose stream buffers what the client has not read without a
    # bound: `await send()` never waited, and RSS grew by hundreds of MiB a second.
    server = edge_server(DETAILS)  # no EDGE_SERVER_INTERFACE: streaming steps choose ASGI
    with server.client() as client:
        assert client.get("/__edge/health").json()["interface"] == "asgi"
        before = rss_mib(server.proc.pid)
        samples = _never_read(server, "/flood", 2)
        ended = wait_for(lambda: state_item(client, "flood", "ended"))
    assert max(samples) - before < 40, (before, samples)
    assert ended["sent"] * 10_000 < 16 * 1024 * 1024  # what the socket buffers and Granian's 4 chunks hold


def test_writes_that_never_wait_for_a_client_that_never_reads_fail_at_8_mib(edge_server):
    # `writer.stream.write()` does not wait (Motia's spelling): edge queued without a bound.
    server = edge_server(DETAILS)
    with server.client() as client:
        before = rss_mib(server.proc.pid)
        samples = _never_read(server, "/gush", 1)
        ended = wait_for(lambda: state_item(client, "gush", "ended"))
    assert ended["error"] == (
        "response.writer.stream.write(): 8 MiB written are still waiting for a client that reads slower "
        "than this handler writes; use await args.response.send(data), which waits for it")
    assert ended["written"] * 100_000 < 16 * 1024 * 1024  # 8 MiB queued, the rest sent into buffers
    assert max(samples) - before < 40, (before, samples)
    wait_for(lambda: "Gush failed: ConnectionError" in server.output)


def test_motia_streaming_response_through_the_asgi_interface(tmp_path):
    server = serve(tmp_path, "motia_1_0_4", env={"EDGE_SERVER_INTERFACE": "asgi"})
    try:
        with server.client() as client:
            answer = client.post("/sse", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
            health = client.get("/__edge/health").json()
    finally:
        server.kill()
    assert health["interface"] == "asgi"
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/event-stream"
    assert answer.content == b'event: item\ndata: {"i": 0, "a": "1"}\n\nevent: done\ndata: {"total": 1}\n\n'
