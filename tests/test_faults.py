"""Faults a device meets unattended (issue 10): each test reproduces one, against a real server.

Real LMDB in tmp, real sockets, real processes (tests/conftest.py's EdgeServer).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import EdgeServer, free_port, rss_mib, served, wait_for, write_project
from tests.test_ws import NodeClient, masked_text, node_client_dir, raw_ws, ws_connect  # noqa: F401 (fixture)

DEEP = 50_000


def nested(depth: int, leaf: str = "1") -> bytes:
    """A JSON document of ``depth`` objects inside each other."""
    return ('{"a":' * depth + leaf + "}" * depth).encode()


TOO_DEEP = {"error": "Malformed JSON",
            "detail": "JSON nested deeper than 128 levels; edge accepts at most 128 levels of arrays and objects"}

DEEP_APP = {
    "steps/things_step.py": """
        config = {"name": "Things", "triggers": [{"type": "http", "method": "POST", "path": "/things",
                  "bodySchema": {"type": "object"}}], "enqueues": []}

        async def handler(req, ctx):
            await ctx.state.set("things", "last", req.body)
            return {"status": 201, "body": {"ok": True}}
    """,
    "steps/plain_step.py": """
        config = {"name": "Plain", "triggers": [{"type": "http", "method": "POST", "path": "/plain"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"type": type(req.body).__name__}}
    """,
    "steps/build_step.py": """
        config = {"name": "BuildDeep", "triggers": [{"type": "http", "method": "POST", "path": "/build-deep"}]}

        async def handler(req, ctx):
            value = 1
            for _ in range(50_000):
                value = {"a": value}
            await ctx.state.set("things", "built", value)
            return {"status": 201, "body": {"ok": True}}
    """,
    "steps/odd_log_step.py": """
        config = {"name": "OddLog", "triggers": [{"type": "http", "method": "POST", "path": "/odd-log"}]}

        class Sensor:
            def __repr__(self):
                return "<Sensor 7>"

        async def handler(req, ctx):
            ctx.logger.info("odd data", {"sensor": Sensor()})
            ctx.logger.info("huge number", {"n": 2 ** 70})
            reading = {"i": 0}
            for i in range(3):  # logged as it is at each call, though the handler changes it
                reading["i"] = i
                ctx.logger.info("count", reading)
            return {"status": 200, "body": {"ok": True}}
    """,
    "steps/worker_step.py": """
        config = {"name": "Worker", "triggers": [{"type": "queue", "topic": "deep"}]}

        async def handler(data, ctx):
            pass
    """,
}


@pytest.fixture(scope="module")
def deep_server(tmp_path_factory):
    with served(tmp_path_factory, "deep", DEEP_APP) as server:
        yield server


def test_deep_json_is_a_400_naming_the_limit(deep_server):
    with deep_server.client(headers={"content-type": "application/json"}) as http:
        for path in ("/things", "/plain", "/__edge/emit"):
            body = nested(DEEP) if path != "/__edge/emit" else b'{"topic": "deep", "data": ' + nested(DEEP) + b"}"
            r = http.post(path, content=body)
            assert (path, r.status_code, r.json()) == (path, 400, TOO_DEEP)
        # The limit is exact: 128 levels are accepted (and stored), 129 are not.
        assert http.post("/things", content=nested(127, "{}")).status_code == 201
        assert http.post("/things", content=nested(128, "{}")).status_code == 400
        assert http.post("/plain", content=b"[" * 128 + b"]" * 128).json() == {"type": "list"}
        assert http.post("/plain", content=b"[" * 129 + b"]" * 129).status_code == 400
        # A string full of brackets is not nesting.
        assert http.post("/plain", content=b'["' + b"[" * 1000 + b'"]').json() == {"type": "list"}
        assert http.get("/__edge/state", params={"group": "things", "key": "last"}).json()["value"] == (
            json.loads(nested(127, "{}")))  # the 128-level body that was accepted is what was stored


def test_a_handler_storing_deep_data_fails_alone(deep_server):
    with deep_server.client() as http:
        r = http.post("/build-deep")
        assert r.status_code == 500 and set(r.json()) == {"error", "error_id"}
        assert r.json()["error"] == "Internal Server Error"
        assert http.get("/__edge/health").json()["status"] == "ok"
        assert http.post("/things", json={"after": True}).status_code == 201


def test_log_data_json_has_no_form_for_is_shown_as_text_and_fails_nothing(deep_server):
    with deep_server.client() as http:
        assert http.post("/odd-log").json() == {"ok": True}
        odd = wait_for(lambda: (lambda lines: lines if len(lines) == 5 else None)(
            [r for r in deep_server.logs() if r.get("step") == "OddLog"]))
        assert [(r["msg"], r["data"]) for r in odd] == [
            ("odd data", {"sensor": "<Sensor 7>"}), ("huge number", {"n": 2 ** 70}),
            ("count", {"i": 0}), ("count", {"i": 1}), ("count", {"i": 2})]
        # ... and kept in the store (edge logs) as they were at each call too
        kept = wait_for(lambda: [(r["msg"], r["data"]) for r in
                                 http.get("/__edge/logs", params={"step": "OddLog"}).json()["logs"]] or None,
                        timeout=5)
        assert kept == [(r["msg"], r["data"]) for r in odd]
        assert http.get("/__edge/health").json()["status"] == "ok"


# -- a second instance on one data directory (item 7) ----------------------------------------

HELLO_APP = {
    "steps/hello_step.py": """
        config = {"name": "Hello", "triggers": [{"type": "http", "method": "GET", "path": "/hello"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"pid": __import__("os").getpid()}}
    """,
}


def test_a_second_edge_on_the_same_data_dir_refuses_to_start(tmp_path):
    project = write_project(tmp_path / "app", HELLO_APP)
    data = tmp_path / "data"
    first = EdgeServer(project, data).start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "edge", "start", "--dir", str(project), "--data-dir", str(data),
             "--port", "0", "--host", "127.0.0.1"],
            capture_output=True, text=True, timeout=30, cwd=str(project))
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"edge start: the data directory {data} is in use by another edge (pid {first.proc.pid}); "
            "stop that one first, or pass another --data-dir (or EDGE_DATA_DIR)")
        assert "listening" not in second.stdout + second.stderr
        with first.client() as http:  # the first one is untouched
            assert http.get("/hello").json() == {"pid": first.proc.pid}
    finally:
        assert first.stop() == 0
    # Once the holder is gone (even by SIGKILL) the directory is free again.
    third = EdgeServer(project, data).start()
    third.kill()
    fourth = EdgeServer(project, data).start()
    assert fourth.stop() == 0


@pytest.mark.parametrize("holder", ["another-edge", "another-program"])
def test_a_port_in_use_is_exit_1_with_a_message_never_a_shared_port(tmp_path, holder):
    import socket

    project = write_project(tmp_path / "app", HELLO_APP)
    first = other = None
    if holder == "another-edge":
        first = EdgeServer(project, tmp_path / "data1").start()
        port = first.port
    else:
        other = socket.socket()
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
    try:
        second = subprocess.run(
            [sys.executable, "-m", "edge", "start", "--dir", str(project), "--data-dir", str(tmp_path / "data2"),
             "--port", str(port), "--host", "127.0.0.1"],
            capture_output=True, text=True, timeout=30, cwd=str(project))
        assert second.returncode == 1
        assert second.stderr == f"edge: port {port} on 127.0.0.1 is in use; pick another --port (or EDGE_PORT)\n"
        assert "listening" not in second.stdout and "panicked" not in second.stdout + second.stderr
        if first is not None:  # every request still reaches the first one
            # a new connection each time: the kernel would spread them over two listeners
            pids = {httpx.get(f"{first.url}/hello", headers={"connection": "close"}).json()["pid"] for _ in range(20)}
            assert pids == {first.proc.pid}
    finally:
        if first is not None:
            assert first.stop() == 0
        if other is not None:
            other.close()


# -- big stream joins and bad frames (item 3) -----------------------------------------------

STREAMS_APP = {
    "steps/big_stream.py": """
        config = {"name": "big"}
    """,
    "steps/live_stream.py": """
        config = {"name": "live", "baseConfig": {"storageType": "memory"}}
    """,
    "steps/items_step.py": """
        import asyncio

        config = {"name": "Items", "triggers": [
            {"type": "http", "method": "PUT", "path": "/s/:stream/:group/:id"},
            {"type": "http", "method": "DELETE", "path": "/s/:stream/:group/:id"},
            {"type": "http", "method": "POST", "path": "/fill/:stream/:group/:n"},
        ]}

        async def handler(req, ctx):
            p = req.path_params
            stream = ctx.streams[p["stream"]]
            if "n" in p:  # n items of ~110 bytes, written concurrently (group-committed)
                n = int(p["n"])
                for start in range(0, n, 2000):
                    await asyncio.gather(*(stream.set(p["group"], f"item-{i:06d}", {
                        "title": f"reading {i} from the sensor on the north wall", "done": False, "n": i})
                        for i in range(start, min(n, start + 2000))))
                return {"status": 204}
            if req.method == "PUT":
                return {"status": 200, "body": await stream.set(p["group"], p["id"], req.body)}
            return {"status": 200, "body": await stream.delete(p["group"], p["id"])}
    """,
}


@pytest.fixture(scope="module")
def streams_server(tmp_path_factory):
    with served(tmp_path_factory, "streams", STREAMS_APP) as server:
        yield server


def ws_join(ws, stream, group, id=None, sub="s1"):
    data = {"streamName": stream, "groupId": group, "subscriptionId": sub}
    if id is not None:
        data["id"] = id
    ws.send(json.dumps({"type": "join", "data": data}))


def next_frame(ws, timeout=10):
    return json.loads(ws.recv(timeout=timeout))


def error_of(frame):
    assert frame["event"]["type"] == "event" and frame["event"]["event"]["type"] == "error", frame
    return frame["event"]["event"]["data"]


@pytest.mark.parametrize("stream", ["big", "live"])
def test_over_long_ids_and_deep_frames_get_error_events_and_the_socket_survives(streams_server, stream):
    long = "x" * 600
    with ws_connect(streams_server) as ws, streams_server.client() as http:
        ws_join(ws, stream, "room")
        assert next_frame(ws)["event"] == {"type": "sync", "data": []}
        ws_join(ws, stream, "room", id=long, sub="s2")
        assert error_of(next_frame(ws)) == {
            "code": "ID_TOO_LONG",
            "message": f"streamName, groupId and id together are {len(stream) + 4 + 600 + 2} bytes; "
                       "the limit is 511 (LMDB's key size)"}
        ws_join(ws, stream, long, sub="s3")
        assert error_of(next_frame(ws)) == {
            "code": "ID_TOO_LONG",
            "message": f"streamName, groupId and id together are {len(stream) + 600 + 2} bytes; "
                       "the limit is 511 (LMDB's key size)"}
        ws.send('{"type": "join", "data": ' + "[" * 30_000 + "]" * 30_000 + "}")
        assert error_of(next_frame(ws)) == {
            "code": "MALFORMED_FRAME",
            "message": "not JSON: JSON nested deeper than 128 levels; edge accepts at most 128 levels of "
                       "arrays and objects"}
        # The socket and its first subscription are still there.
        assert http.put(f"/s/{stream}/room/a", json={"title": "still here"}).status_code == 200
        frame = next_frame(ws)
        assert (frame["id"], frame["event"]) == ("a", {"type": "create", "data": {"title": "still here", "id": "a"}})


def client_view(ws, first, until_items: int, timeout=30):
    """Apply frames after the ``first`` sync as Motia's group client does (sync replaces, create
    appends an id it does not have, update replaces one it has, delete removes)."""
    items = {item["id"]: item for item in first["event"]["data"]}
    frames, deadline = [], time.monotonic() + timeout
    while len(items) < until_items:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        frames.append(frame)
        event = frame["event"]
        if event["type"] == "sync":
            items = {item["id"]: item for item in event["data"]}
        elif event["type"] == "create":
            items.setdefault(event["data"]["id"], event["data"])
        elif event["type"] == "update":
            if event["data"]["id"] in items:
                items[event["data"]["id"]] = event["data"]
        elif event["type"] == "delete":
            items.pop(event["data"]["id"], None)
    return items, frames


@pytest.mark.parametrize("stream", ["big", "live"])
def test_a_big_group_join_is_sent_in_bounded_pieces(streams_server, stream):
    n = 3000  # ~340 kB of items
    with httpx.Client(base_url=streams_server.url, timeout=60) as http:
        assert http.post(f"/fill/{stream}/many/{n}").status_code == 204
        with ws_connect(streams_server, max_size=None) as ws:
            ws_join(ws, stream, "many")
            first = next_frame(ws)
            assert first["event"]["type"] == "sync" and "id" not in first
            assert 0 < len(first["event"]["data"]) < n
            # A change made while the pieces are on their way is not lost or undone.
            assert http.put(f"/s/{stream}/many/item-002999", json={"title": "changed"}).status_code == 200
            assert http.delete(f"/s/{stream}/many/item-002998").status_code == 200
            items, frames = client_view(ws, first, n - 1)
            assert sorted(items) == [f"item-{i:06d}" for i in range(n) if i != 2998]
            assert items["item-002999"] == {"title": "changed", "id": "item-002999"}
            sizes = [len(json.dumps(f, separators=(",", ":"))) for f in [first, *frames]]
            assert max(sizes) < 64 * 1024 + 1000  # 64 KiB pieces (plus one item and the envelope)


def test_clients_that_join_a_big_group_and_never_read_cost_a_bounded_amount(tmp_path):
    # The figure of issue 10: 50 clients on a 20,000-item group added 215-460 MiB.
    server = EdgeServer(write_project(tmp_path / "app", STREAMS_APP), tmp_path / "data").start()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.post("/fill/big/huge/20000").status_code == 204
    server.stop()
    server.start()  # a fresh process: what filling the group allocated does not hide the cost
    try:
        time.sleep(0.5)
        before = rss_mib(server.proc.pid)
        clients = [raw_ws(server.port) for _ in range(50)]
        for n, sock in enumerate(clients):
            sock.sendall(masked_text(json.dumps(
                {"type": "join", "data": {"streamName": "big", "groupId": "huge", "subscriptionId": f"{n}"}})))
        peak, samples = before, []
        while len(samples) < 6 or max(samples[-6:]) - min(samples[-6:]) > 1:  # settled for 3 s
            time.sleep(0.5)
            samples.append(rss_mib(server.proc.pid))
            peak = max(peak, samples[-1])
            assert len(samples) < 120, samples
        with server.client() as http:
            assert http.get("/__edge/health").json()["streams"]["sockets"] == 50
        for sock in clients:
            sock.close()
    finally:
        server.kill()
    assert peak - before < 100, f"RSS {before:.0f} -> {peak:.0f} MiB"


def test_motias_node_client_gets_a_big_group_whole(streams_server, node_client_dir):
    n = 3000
    with httpx.Client(base_url=streams_server.url, timeout=60) as http:
        assert http.post(f"/fill/big/node/{n}").status_code == 204
        client = NodeClient(node_client_dir)
        try:
            client("connect", url=f"ws://127.0.0.1:{streams_server.port}/")
            client("group", name="g", stream="big", group="node")
            client.wait("g", lambda s: len(s["state"] or []) == n, timeout=30)
            assert sorted(item["id"] for item in client("state", name="g")["state"]) == [f"item-{i:06d}" for i in range(n)]
            assert http.put("/s/big/node/item-000001", json={"title": "live"}).status_code == 200
            client.wait("g", lambda s: {"title": "live", "id": "item-000001"} in s["state"])
        finally:
            client.close()


# -- smaller (item 9) ---------------------------------------------------------------------------

POISON_APP = {
    "steps/poison_step.py": """
        config = {"name": "Poison", "triggers": [{"type": "queue", "topic": "jobs", "config": {"maxRetries": 0}}]}

        async def handler(data, ctx):
            runs = (await ctx.state.get("runs", "count") or 0) + 1
            await ctx.state.set("runs", "count", runs)
            if runs == 1:
                raise RuntimeError("first run fails")
    """,
}


def test_concurrent_redrives_of_one_dead_letter_report_the_one_that_moved_it(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import wait_for

    server = EdgeServer(write_project(tmp_path / "app", POISON_APP), tmp_path / "data").start()
    try:
        with server.client() as http:
            assert http.post("/__edge/emit", json={"topic": "jobs", "data": {"n": 1}}).status_code == 202
            (dead,) = wait_for(lambda: http.get("/__edge/dlq").json()["dead_letters"])
            with ThreadPoolExecutor(5) as pool:
                answers = list(pool.map(lambda _: server.client().post("/__edge/dlq/redrive", json={"id": dead["id"]}),
                                        range(5)))
            results = sorted((r.status_code, r.json().get("redriven")) for r in answers)
            assert results == [(200, [dead["id"]])] + [(404, None)] * 4, results
            assert {r.json()["detail"] for r in answers if r.status_code == 404} == {
                f"no dead letter with id {dead['id']}; `edge dlq list` shows the ids"}
            wait_for(lambda: http.get("/__edge/state", params={"group": "runs", "key": "count"}).json().get("value") == 2)
            # moved once: with the queue drained there is nothing left to run it again
            wait_for(lambda: http.get("/__edge/health").json()["queues"]["depth"] == 0)
            assert http.get("/__edge/state", params={"group": "runs", "key": "count"}).json()["value"] == 2
            assert http.get("/__edge/dlq").json()["dead_letters"] == []
    finally:
        server.kill()


@pytest.mark.parametrize("interface", [None, "rsgi", "asgi"])
def test_edge_dev_reload_closes_websockets_with_a_close_frame(tmp_path, interface):
    # None: the interface edge dev picks for a project with a stream (ASGI, for the close code)
    from websockets.exceptions import ConnectionClosed

    from tests.conftest import wait_for

    files = {**HELLO_APP, "steps/live_stream.py": 'config = {"name": "live", "baseConfig": {"storageType": "memory"}}\n'}
    project = write_project(tmp_path / "app", files)
    port = free_port()
    env = {"EDGE_SERVER_INTERFACE": interface} if interface else {}
    server = EdgeServer(project, tmp_path / "data", command="dev", args=["--port", str(port)], env=env).start()
    try:
        server.port = port
        with server.client() as client:
            assert client.get("/__edge/health").json()["interface"] == (interface or "asgi")
        with ws_connect(server) as ws:
            ws_join(ws, "live", "g")
            assert next_frame(ws)["event"] == {"type": "sync", "data": []}
            step = project / "steps" / "hello_step.py"
            step.write_text(step.read_text() + "\n# changed\n")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=20)
        # The old child stopped gracefully (SIGTERM): a close frame, not a dropped connection...
        assert closed.value.rcvd is not None, closed.value
        # ...and the new child serves the same port (the data-dir lock was handed over).
        wait_for(lambda: "reloading" in server.output and server.output.count("edge listening") == 2, timeout=30)
        with ws_connect(server) as ws:
            ws_join(ws, "live", "g")
            assert next_frame(ws)["event"] == {"type": "sync", "data": []}
        # RSGI loses the close code: Granian closes an accepted socket with a bare close frame
        # (the status of close() is ignored once accepted); clients see 1005 instead of 1001.
        if interface != "rsgi":
            assert closed.value.rcvd.code == 1001, closed.value
        elif closed.value.rcvd.code != 1001:
            pytest.xfail(f"close code {closed.value.rcvd.code}, not 1001: Granian 2.8 drops it (see docs/streams.md)")
    finally:
        server.stop()


# -- truncated bodies (item 5) -----------------------------------------------------------------

BODY_APP = {
    "steps/store_step.py": """
        config = {"name": "Store", "triggers": [{"type": "http", "method": "POST", "path": "/store"}]}

        async def handler(req, ctx):
            await ctx.state.set("bodies", req.query_params["key"], req.raw_body.decode("latin-1"))
            return {"status": 201, "body": {"stored": len(req.raw_body)}}
    """,
}


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def body_server(tmp_path_factory, request):
    with served(tmp_path_factory, "bodies", BODY_APP, env={"EDGE_SERVER_INTERFACE": request.param}) as server:
        yield server


def raw_request(port: int, head: str, body: bytes, *, half_close: bool = True) -> tuple[int, dict | None]:
    """Send ``head`` and ``body`` on a fresh connection, half-close it, and read the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if not answer:
        return 0, None
    status = int(answer.split(b" ", 2)[1])
    payload = answer.split(b"\r\n\r\n", 1)[1]
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, {"raw": payload.decode("latin-1")}


ENDED_EARLY = {"error": "request body ended early"}


@pytest.mark.parametrize("head, body", [
    # The client half-closes before the final 0-chunk.
    ("POST /store HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", b'7\r\n{"a":1}\r\n'),
    # A bad chunk size after a good chunk.
    ("POST /store HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
     b'7\r\n{"a":1}\r\nzz\r\nxx\r\n0\r\n\r\n'),
    # A Content-Length longer than what arrives.
    ("POST /store HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n", b'{"a":1}'),
], ids=["chunked-half-closed", "bad-chunk-size", "short-content-length"])
def test_a_truncated_body_is_a_400_and_never_reaches_the_handler(body_server, head, body, request):
    key = request.node.callspec.id.replace("-", "_")
    status, answer = raw_request(body_server.port, head.replace("/store", f"/store?key={key}"), body)
    assert (status, answer) == (400, ENDED_EARLY)
    with body_server.client() as http:
        assert http.get("/__edge/state", params={"group": "bodies", "key": key}).status_code == 404
    # A whole body still works, chunked or not.
    whole = b'{"a":1}' if "Content-Length" in head else b'7\r\n{"a":1}\r\n0\r\n\r\n'
    head = head.replace("Content-Length: 100", "Content-Length: 7").replace("/store", "/store?key=whole")
    # (not half-closed: Granian answers nothing to a client that shuts down its side, body whole or not)
    assert raw_request(body_server.port, head + "Connection: close\r\n", whole, half_close=False) == (201, {"stored": 7})


# -- idle connections and the open-files limit (item 4) ---------------------------------------


def start_with_soft_nofile(server: EdgeServer, soft: int) -> EdgeServer:
    """Start ``server`` under a soft RLIMIT_NOFILE of ``soft`` (what systemd gives a service)."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if before[1] != resource.RLIM_INFINITY and before[1] < 2048:
        pytest.skip(f"the hard open-files limit here is {before[1]}; the test needs 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        return server.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def open_files_limit(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_1100_idle_connections_do_not_lock_out_other_clients(tmp_path):
    import resource
    import socket

    project = write_project(tmp_path / "app", HELLO_APP)
    server = start_with_soft_nofile(EdgeServer(project, tmp_path / "data", env={"EDGE_LOG_LEVEL": "debug"}), 1024)
    idle = []
    try:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert open_files_limit(server.proc.pid) == (hard, hard), open_files_limit(server.proc.pid)  # raised
        assert any(f"raised the open-files limit from 1024 to {hard}" in line.get("msg", "")
                   for line in server.logs()), server.output
        for _ in range(1100):  # connect and never send a byte
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        with httpx.Client(base_url=server.url, timeout=3) as http:
            started = time.monotonic()
            assert http.get("/__edge/health").status_code == 200
            assert time.monotonic() - started < 1.5
    finally:
        for sock in idle:
            sock.close()
        server.kill()


def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path):
    import socket

    project = write_project(tmp_path / "app", HELLO_APP)
    server = EdgeServer(project, tmp_path / "data", env={"EDGE_IDLE_TIMEOUT": "2"}).start()
    try:
        never = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        kept = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        kept.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert never.recv(1) == b""  # closed by the server, never having sent a request...
        assert kept.recv(1) == b""   # ...and idle after its keep-alive response
        assert 1.5 < time.monotonic() - started < 5
    finally:
        server.kill()
