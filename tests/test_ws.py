"""The stream WebSocket end to end: a real `edge start`, real WebSocket clients.

Python clients use the `websockets` package; Motia's published Node client
(`@motiadev/stream-client-node`) is installed with npm into a temp directory and driven by
tests/node_client/driver.mjs.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import EdgeServer, served, wait_for, write_project

NODE_CLIENT = Path(__file__).parent / "node_client"

PROJECT = {
    "steps/todos_stream.py": """
        config = {
            "name": "todos",
            "schema": {
                "type": "object",
                "properties": {"title": {"type": "string", "minLength": 1}, "done": {"type": "boolean"}},
                "required": ["title"],
            },
        }
    """,
    "steps/live_stream.py": """
        config = {"name": "live", "baseConfig": {"storageType": "memory"}}
    """,
    "steps/secret_stream.py": """
        def can_access(subscription, auth_context):
            return auth_context is not None and auth_context.token == "letmein" and subscription.group_id == "mine"

        config = {"name": "secret", "canAccess": can_access}
    """,
    "steps/async_secret_stream.py": """
        import asyncio

        async def can_access(subscription, auth_context):
            await asyncio.sleep(0.05)   # user code runs on asyncio
            return auth_context is not None and auth_context["token"] == "letmein"

        config = {"name": "asecret", "canAccess": can_access}
    """,
    "steps/broken_stream.py": """
        def can_access(subscription, auth_context):
            raise RuntimeError("auth service down")

        config = {"name": "broken", "canAccess": can_access}
    """,
    "steps/untellable_stream.py": """
        class Untellable:  # as a numpy array: its truth cannot be told
            def __bool__(self):
                raise ValueError("the truth value of an array is ambiguous")

        def can_access(subscription, auth_context):
            return Untellable() if subscription.group_id == "untellable" else True

        config = {"name": "untellable", "canAccess": can_access}
    """,
    "steps/async_untellable_stream.py": """
        from steps.untellable_stream import Untellable

        async def can_access(subscription, auth_context):
            return Untellable() if subscription.group_id == "untellable" else True

        config = {"name": "auntellable", "canAccess": can_access}
    """,
    "steps/slow_check_stream.py": """
        import os
        import time

        def can_access(subscription, auth_context):  # a sync check that takes its time (a database)
            go = os.path.join(os.path.dirname(__file__), "go-" + subscription.group_id)
            deadline = time.monotonic() + 20
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.01)
            return True

        config = {"name": "slowcheck", "canAccess": can_access}
    """,
    "steps/items_step.py": """
        import asyncio

        from edge.errors import SchemaError

        config = {"name": "Items", "triggers": [
            {"type": "http", "method": "PUT", "path": "/s/:stream/:group/:id"},
            {"type": "http", "method": "PATCH", "path": "/s/:stream/:group/:id"},
            {"type": "http", "method": "DELETE", "path": "/s/:stream/:group/:id"},
            {"type": "http", "method": "POST", "path": "/send/:stream/:group"},
            {"type": "http", "method": "POST", "path": "/flood/:stream/:group/:n"},
        ]}

        async def handler(req, ctx):
            p = req.path_params
            stream = ctx.streams[p["stream"]]
            try:
                if "n" in p:  # 60 kB items at ~4 MB/s: a reading client keeps up, even on a busy machine
                    for i in range(int(p["n"])):
                        await stream.set(p["group"], f"f{i}", {"title": "x" * 60_000, "n": i})
                        await asyncio.sleep(0.015)
                    return {"status": 204}
                if req.method == "PUT":
                    return {"status": 200, "body": await stream.set(p["group"], p["id"], req.body)}
                if req.method == "PATCH":
                    return {"status": 200, "body": await stream.update(p["group"], p["id"], req.body)}
                if req.method == "DELETE":
                    return {"status": 200, "body": await stream.delete(p["group"], p["id"])}
                channel = {"groupId": p["group"], **({"id": req.body["id"]} if "id" in req.body else {})}
                await stream.send(channel, {"type": req.body["type"], "data": req.body.get("data")})
                return {"status": 204}
            except SchemaError as exc:
                return {"status": 400, "body": {"error": str(exc), "errors": exc.errors}}
    """,
}


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def server(request, tmp_path_factory):
    """The test app under each Granian interface edge can use (RSGI is the default)."""
    with served(tmp_path_factory, "ws", PROJECT, env={"EDGE_SERVER_INTERFACE": request.param}) as srv:
        srv.interface = request.param
        yield srv


def rsgi_cannot_echo(request, server):
    if server.interface == "rsgi":
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "Granian's RSGI accept() cannot echo a subprotocol (granian 2.8); "
            "EDGE_SERVER_INTERFACE=asgi can, see docs/streams.md")))


# --- helpers ---------------------------------------------------------------------------------


def ws_connect(server, path="/", **kw):
    return connect(f"ws://127.0.0.1:{server.port}{path}", open_timeout=10, **kw)


def join(ws, stream, group, id=None, sub="s1", kind="join"):
    data = {"streamName": stream, "groupId": group, "subscriptionId": sub}
    if id is not None:
        data["id"] = id
    ws.send(json.dumps({"type": kind, "data": data}))


def recv(ws, timeout=5.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def nothing_more(ws, wait=0.3) -> bool:
    try:
        ws.recv(timeout=wait)
    except TimeoutError:
        return True
    return False


def error_code(message) -> str:
    assert message["event"]["type"] == "event", message
    assert message["event"]["event"]["type"] == "error", message
    return message["event"]["event"]["data"]["code"]


# --- the protocol with a Python client ----------------------------------------------------------


def test_group_and_item_subscribers_see_sync_then_every_change(server):
    http = server.client()
    http.put("/s/todos/g1/old", json={"title": "was here before"})
    with ws_connect(server) as group_ws, ws_connect(server, "/any/path") as item_ws:
        join(group_ws, "todos", "g1")
        sync = recv(group_ws)
        assert sync["type"] == "stream" and sync["streamName"] == "todos" and sync["groupId"] == "g1"
        assert "id" not in sync  # a group sync carries no id
        assert sync["event"] == {"type": "sync", "data": [{"title": "was here before", "id": "old"}]}
        join(item_ws, "todos", "g1", id="a")
        assert recv(item_ws)["event"] == {"type": "sync", "data": None}

        assert http.put("/s/todos/g1/a", json={"title": "milk"}).json() == {"title": "milk", "id": "a"}
        http.patch("/s/todos/g1/a", json=[{"type": "set", "path": "done", "value": True}])
        http.put("/s/todos/g1/b", json={"title": "bread"})
        http.delete("/s/todos/g1/a")
        http.put("/s/todos/other/a", json={"title": "another group"})

        group_events = [recv(group_ws) for _ in range(4)]
        assert [(m["id"], m["event"]["type"]) for m in group_events] == [
            ("a", "create"), ("a", "update"), ("b", "create"), ("a", "delete")]
        assert group_events[1]["event"]["data"] == {"title": "milk", "id": "a", "done": True}
        assert group_events[3]["event"]["data"] == {"title": "milk", "id": "a", "done": True}
        item_events = [recv(item_ws) for _ in range(3)]
        assert [m["event"]["type"] for m in item_events] == ["create", "update", "delete"]
        stamps = [sync["timestamp"]] + [m["timestamp"] for m in group_events]
        assert all(a < b for a, b in zip(stamps, stamps[1:])), stamps
        assert nothing_more(group_ws) and nothing_more(item_ws)


def test_late_joiner_gets_current_items_and_a_socket_in_both_rooms_gets_each_frame_once(server):
    http = server.client()
    for i in range(3):
        http.put(f"/s/todos/late/t{i}", json={"title": f"todo {i}"})
    with ws_connect(server) as ws:
        join(ws, "todos", "late", sub="group")
        assert sorted(i["id"] for i in recv(ws)["event"]["data"]) == ["t0", "t1", "t2"]
        join(ws, "todos", "late", id="t1", sub="item")
        assert recv(ws)["event"] == {"type": "sync", "data": {"title": "todo 1", "id": "t1"}}
        http.put("/s/todos/late/t1", json={"title": "changed"})
        message = recv(ws)
        assert (message["id"], message["event"]["type"]) == ("t1", "update")
        assert nothing_more(ws), "a socket in the group and the item room must get one frame"


def test_custom_events_reach_item_and_group_subscribers(server):
    http = server.client()
    with ws_connect(server) as group_ws, ws_connect(server) as item_ws:
        join(group_ws, "live", "room")
        recv(group_ws)
        join(item_ws, "live", "room", id="dev1")
        recv(item_ws)
        assert http.post("/send/live/room", json={"id": "dev1", "type": "progress", "data": {"pct": 50}}).status_code == 204
        http.post("/send/live/room", json={"type": "announce", "data": "hello all"})
        first = recv(group_ws)
        assert first["id"] == "dev1"
        assert first["event"] == {"type": "event", "event": {"type": "progress", "data": {"pct": 50}}}
        assert recv(item_ws)["event"]["event"]["type"] == "progress"
        second = recv(group_ws)
        assert "id" not in second and second["event"]["event"] == {"type": "announce", "data": "hello all"}
        assert nothing_more(item_ws), "a group-wide event has no id: item subscribers do not get it"


def test_joins_are_idempotent_per_subscription_and_leave_stops_events(server):
    http = server.client()
    with ws_connect(server) as ws:
        join(ws, "live", "idem", sub="x")
        join(ws, "live", "idem", sub="x")  # again: a second sync, not a second subscription
        assert recv(ws)["event"]["type"] == "sync" and recv(ws)["event"]["type"] == "sync"
        http.put("/s/live/idem/a", json={"v": 1})
        assert recv(ws)["event"]["type"] == "create"
        assert nothing_more(ws)
        join(ws, "live", "idem", sub="x", kind="leave")
        join(ws, "live", "idem", sub="never-joined", kind="leave")  # harmless
        http.put("/s/live/idem/a", json={"v": 2})
        assert nothing_more(ws)
        # Frames are handled in order: a join right after a leave of the same room works.
        join(ws, "live", "idem", sub="y", kind="leave")
        join(ws, "live", "idem", sub="y")
        assert recv(ws)["event"] == {"type": "sync", "data": [{"v": 2, "id": "a"}]}
        # Joining again under a subscription id in use moves it: the old room goes quiet.
        join(ws, "live", "moved", sub="y")
        assert recv(ws)["event"] == {"type": "sync", "data": []}
        http.put("/s/live/idem/a", json={"v": 3})
        assert nothing_more(ws)
        http.put("/s/live/moved/b", json={"v": 4})
        assert recv(ws)["event"] == {"type": "create", "data": {"v": 4, "id": "b"}}


def test_bad_frames_get_error_events_and_the_socket_survives(server):
    http = server.client()
    with ws_connect(server, max_size=None) as ws:
        join(ws, "live", "bad")
        recv(ws)
        ws.send("this is not json")
        assert error_code(recv(ws)) == "MALFORMED_FRAME"
        ws.send(json.dumps({"type": "subscribe", "data": {"streamName": "live", "groupId": "bad"}}))
        message = recv(ws)
        assert error_code(message) == "UNKNOWN_MESSAGE_TYPE"
        assert message["streamName"] == "live" and message["groupId"] == "bad"  # routed to the room
        ws.send(json.dumps({"type": "join", "data": {"streamName": "live"}}))
        assert recv(ws)["event"]["event"]["data"] == {
            "code": "MALFORMED_FRAME", "message": "data.groupId must be a non-empty string without NUL characters, got None"}
        ws.send(json.dumps([1, 2]))
        assert error_code(recv(ws)) == "MALFORMED_FRAME"
        join(ws, "nope", "g")
        message = recv(ws)
        assert error_code(message) == "STREAM_NOT_FOUND"
        assert ("known streams: asecret, auntellable, broken, live, secret, slowcheck, todos, untellable"
                in message["event"]["event"]["data"]["message"])
        ws.send(json.dumps({"type": "join", "data": {"pad": "x" * 100_000}}))
        assert error_code(recv(ws)) == "FRAME_TOO_LARGE"
        ws.send(b"\xff\xfe binary garbage")
        assert error_code(recv(ws)) == "MALFORMED_FRAME"
        http.put("/s/live/bad/a", json={"still": "subscribed"})
        assert recv(ws)["event"] == {"type": "create", "data": {"still": "subscribed", "id": "a"}}


def test_items_failing_the_schema_are_refused_and_not_published(server):
    http = server.client()
    with ws_connect(server) as ws:
        join(ws, "todos", "schema")
        recv(ws)
        response = http.put("/s/todos/schema/a", json={"title": ""})
        assert response.status_code == 400
        assert response.json()["error"] == (
            "ctx.streams.todos.set: item 'a' does not match the schema of stream 'todos': "
            "$.title: must be at least 1 character long, got 0")
        assert nothing_more(ws)


def test_thousands_of_joins_on_one_socket_are_capped(server):
    from edge.server.ws import MAX_SUBSCRIPTIONS

    with ws_connect(server) as ws:
        for i in range(MAX_SUBSCRIPTIONS + 50):
            join(ws, "live", f"g{i}", sub=f"s{i}")
        messages = [recv(ws) for _ in range(MAX_SUBSCRIPTIONS + 50)]
        assert [m["event"]["type"] for m in messages[:MAX_SUBSCRIPTIONS]] == ["sync"] * MAX_SUBSCRIPTIONS
        assert {error_code(m) for m in messages[MAX_SUBSCRIPTIONS:]} == {"TOO_MANY_SUBSCRIPTIONS"}
        join(ws, "live", "g0", sub="s0", kind="leave")
        join(ws, "live", "again", sub="new")  # room freed by the leave
        assert recv(ws)["event"]["type"] == "sync"


def test_can_access_gets_the_token_from_the_query_or_the_subprotocol(server):
    with ws_connect(server) as anonymous:
        join(anonymous, "secret", "mine")
        denied = recv(anonymous)
        assert denied["streamName"] == "secret" and denied["groupId"] == "mine"
        assert denied["event"] == {"type": "event", "event": {"type": "error", "data": {
            "code": "STREAM_ACCESS_DENIED", "message": "canAccess denied this subscription"}}}
    with ws_connect(server, "/?authToken=letmein") as ws:
        join(ws, "secret", "mine")
        assert recv(ws)["event"]["type"] == "sync"
        join(ws, "secret", "yours", sub="s2")  # canAccess sees the subscription too
        assert error_code(recv(ws)) == "STREAM_ACCESS_DENIED"
    with ws_connect(server, subprotocols=["Authorization", "letmein"]) as ws:
        join(ws, "secret", "mine")
        assert recv(ws)["event"]["type"] == "sync"
        join(ws, "asecret", "any", sub="s2")
        assert recv(ws)["event"]["type"] == "sync"
    with ws_connect(server, "/?authToken=wrong") as ws:
        join(ws, "asecret", "any")
        assert error_code(recv(ws)) == "STREAM_ACCESS_DENIED"


def test_a_can_access_that_raises_denies_and_is_logged(server):
    with ws_connect(server) as ws:
        join(ws, "broken", "g")
        assert error_code(recv(ws)) == "STREAM_ACCESS_DENIED"
    wait_for(lambda: "steps/broken_stream.py: canAccess raised RuntimeError: auth service down" in server.output)


@pytest.mark.parametrize("stream", ["untellable", "auntellable"])
def test_a_can_access_whose_answer_has_no_truth_value_denies_that_join_alone(server, stream):
    # Before: from an async canAccess it closed the whole socket (1001, its other subscriptions
    # gone) without a log line; from a sync one it was edge's INTERNAL_ERROR, for no room.
    with ws_connect(server) as ws:
        join(ws, stream, "fine", sub="s1")
        assert recv(ws)["event"]["type"] == "sync"
        join(ws, stream, "untellable", sub="s2")
        denied = recv(ws)
        assert (denied["streamName"], denied["groupId"], error_code(denied)) == (
            stream, "untellable", "STREAM_ACCESS_DENIED")
        join(ws, stream, "fine", sub="s1")  # the socket and its first subscription carry on
        assert recv(ws)["event"]["type"] == "sync"
    wait_for(lambda: f"canAccess raised ValueError: the truth value of an array is ambiguous; the join is denied"
             in server.output)


def test_a_slow_sync_can_access_stalls_nobody_else(server):
    # Before: a sync canAccess ran on the loop: while one slept, no HTTP request and no other
    # socket was served (a peer could stall the server 3 s per join it sent).
    group = f"g-{server.interface}"
    with ws_connect(server) as ws:
        join(ws, "slowcheck", group)
        with httpx.Client(timeout=5) as http:  # answered while the check is still waiting
            assert http.get(f"{server.url}/__edge/health").status_code == 200
        with ws_connect(server) as other:
            join(other, "live", "g")
            assert recv(other)["event"]["type"] == "sync"
        (server.project / "steps" / f"go-{group}").write_text("")
        assert recv(ws, timeout=10)["event"]["type"] == "sync"


def test_the_accepted_subprotocol_is_echoed(request, server):
    rsgi_cannot_echo(request, server)
    with ws_connect(server, subprotocols=["Authorization", "letmein"]) as ws:
        assert ws.subprotocol == "Authorization"


def raw_ws(port: int, rcvbuf: int = 4096) -> socket.socket:
    """A WebSocket client that never reads: a handshake, then silence."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_a_client_that_never_reads_is_cut_off_and_others_are_unaffected(server):
    http = httpx.Client(base_url=server.url, timeout=60)
    slow = raw_ws(server.port)
    slow.sendall(masked_text(json.dumps({"type": "join", "data": {"streamName": "live", "groupId": "flood"}})))
    with ws_connect(server, max_size=None, max_queue=None) as healthy:
        join(healthy, "live", "flood")
        recv(healthy)
        time.sleep(0.2)
        n = 300  # 300 x 60 kB = 18 MB: more than the kernel buffers plus MAX_BUFFER
        started = time.monotonic()
        assert http.post(f"/flood/live/flood/{n}").status_code == 204
        got = [recv(healthy, timeout=20)["event"]["data"]["n"] for _ in range(n)]
        assert got == list(range(n))
        assert time.monotonic() - started < 30  # not held up by the slow client
    wait_for(lambda: "disconnected: it did not read" in server.output)
    health = lambda: server.client().get("/__edge/health").json()["streams"]  # noqa: E731
    wait_for(lambda: health()["sockets"] == 0)  # the slow one is gone although it never closed
    assert health()["disconnected_slow"] >= 1
    slow.close()


# --- Motia's Node client ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_client_dir(tmp_path_factory):
    """npm-install @motiadev/stream-client-node (version pinned in package.json) into a temp dir."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed to run Motia's published stream client")
    target = tmp_path_factory.mktemp("node_client")
    for name in ("package.json", "driver.mjs"):
        shutil.copy(NODE_CLIENT / name, target / name)
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install @motiadev/stream-client-node timed out (no registry access?)")
    if done.returncode != 0:
        pytest.skip("npm could not fetch @motiadev/stream-client-node: " + (done.stderr or done.stdout)[-500:])
    return target


class NodeClient:
    """Motia's client in a node process, driven one JSON command at a time."""

    def __init__(self, directory: Path):
        self.proc = subprocess.Popen(["node", "driver.mjs"], cwd=directory, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.answers: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.next_id = 0

    def _read(self):
        for line in self.proc.stdout:
            self.answers.put(json.loads(line))

    def __call__(self, cmd: str, **args):
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, "cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self.answers.get(timeout=10)
        assert "error" not in answer, answer["error"]
        return answer["result"]

    def wait(self, name, predicate, timeout=10):
        last = None

        def check():
            nonlocal last
            last = self("state", name=name)
            return predicate(last)

        try:
            return wait_for(check, timeout=timeout, interval=0.05)
        except AssertionError:
            raise AssertionError(f"node client state never matched: {last}; stderr: {''.join(self.stderr)}")

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _ids(state):
    return sorted(item["id"] for item in state["state"] or [])


def test_motias_node_client_subscribes_receives_and_reconnects(tmp_path, node_client_dir):
    project = write_project(tmp_path / "app", PROJECT)
    first = EdgeServer(project, tmp_path / "data").start()
    port = first.port
    http = first.client()
    http.put("/s/todos/all/t1", json={"title": "before anyone joined"})
    client = NodeClient(node_client_dir)
    late = None
    try:
        client("connect", url=f"ws://127.0.0.1:{port}/")
        client("group", name="all", stream="todos", group="all", sortKey="id")
        client("item", name="t2", stream="todos", group="all", item="t2")
        client("listen", name="all", type="ping")
        client("listen", name="t2", type="ping")
        client.wait("all", lambda s: _ids(s) == ["t1"])

        http.put("/s/todos/all/t2", json={"title": "second"})
        client.wait("t2", lambda s: s["state"] == {"title": "second", "id": "t2"})
        http.patch("/s/todos/all/t2", json={"type": "set", "path": "done", "value": True})
        client.wait("all", lambda s: {"title": "second", "id": "t2", "done": True} in s["state"])
        client.wait("t2", lambda s: s["state"] == {"title": "second", "id": "t2", "done": True})

        http.post("/send/todos/all", json={"id": "t2", "type": "ping", "data": {"n": 1}})
        client.wait("t2", lambda s: s["events"] == [{"type": "ping", "data": {"n": 1}}])
        client.wait("all", lambda s: s["events"] == [{"type": "ping", "data": {"n": 1}}])

        http.delete("/s/todos/all/t1")
        client.wait("all", lambda s: _ids(s) == ["t2"])

        # A late joiner (its own socket) starts from the current items.
        late = NodeClient(node_client_dir)
        late("connect", url=f"ws://127.0.0.1:{port}/")
        late("group", name="all", stream="todos", group="all")
        late.wait("all", lambda s: _ids(s) == ["t2"])

        # Restart the server on the same port: the client reconnects (after 2 s), joins again
        # and syncs, including what changed while it was away (the stream is in LMDB).
        assert first.stop() == 0
        client.wait(None, lambda s: s["closes"] >= 1 and not s["open"])
        second = EdgeServer(project, tmp_path / "data", args=["--port", str(port)]).start()
        second.client().put("/s/todos/all/t3", json={"title": "added while the client was away"})
        client.wait(None, lambda s: s["opens"] >= 2 and s["open"], timeout=15)
        client.wait("all", lambda s: _ids(s) == ["t2", "t3"])
        second.client().delete("/s/todos/all/t2")
        client.wait("t2", lambda s: s["state"] is None)
        client.wait("all", lambda s: _ids(s) == ["t3"])

        # Unsubscribing one subscription (a leave) leaves the others working.
        client("unsubscribe", name="t2")
        second.client().put("/s/todos/all/t2", json={"title": "back"})
        client.wait("all", lambda s: _ids(s) == ["t2", "t3"])
        second.stop()
    finally:
        client.close()
        if late is not None:
            late.close()


def test_motias_node_client_is_denied_without_the_token(server, node_client_dir):
    client = NodeClient(node_client_dir)
    try:
        client("connect", url=f"ws://127.0.0.1:{server.port}/?authToken=letmein")
        client("group", name="mine", stream="secret", group="mine")
        client("group", name="yours", stream="secret", group="yours", listen=["error"])
        client.wait("yours", lambda s: s["events"] == [{"type": "error", "data": {
            "code": "STREAM_ACCESS_DENIED", "message": "canAccess denied this subscription"}}])
        server.client().put("/s/secret/mine/a", json={"x": 1})
        client.wait("mine", lambda s: s["state"] == [{"x": 1, "id": "a"}])
    finally:
        client.close()


def test_motias_node_client_sends_its_token_as_a_subprotocol(request, server, node_client_dir):
    # Without the echo, node's ws refuses the handshake: "Server sent no subprotocol".
    rsgi_cannot_echo(request, server)
    client = NodeClient(node_client_dir)
    try:
        client("connect", url=f"ws://127.0.0.1:{server.port}/", token="letmein")
        client("group", name="mine", stream="secret", group="mine")
        client.wait(None, lambda s: s["open"] and s["protocol"] == "Authorization", timeout=4)
        server.client().put("/s/secret/mine/b", json={"y": 2})
        client.wait("mine", lambda s: {"y": 2, "id": "b"} in s["state"])
    finally:
        client.close()


def test_shutdown_sends_close_frames(edge_server):
    server = edge_server(PROJECT)
    with ws_connect(server) as ws:
        join(ws, "live", "bye")
        recv(ws)
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        # A close frame, not a dropped connection. Its code (1001) is lost under Granian's RSGI
        # interface, which sends close frames without a status (1005); see docs/streams.md.
        assert closed.value.rcvd is not None, closed.value
    assert server.proc.wait(20) == 0


def test_the_token_comes_from_the_subprotocols_or_the_query():
    from edge.server.ws import client_token

    assert client_token({"sec-websocket-protocol": "Authorization, abc"}, "") == ("abc", "Authorization")
    assert client_token({"sec-websocket-protocol": "Authorization"}, "authToken=q") == ("q", "Authorization")
    assert client_token({}, "x=1&authToken=t%20k") == ("t k", None)
    assert client_token({"sec-websocket-protocol": "graphql-ws"}, "") == (None, None)


def test_interface_is_asgi_when_a_stream_checks_access(tmp_path):
    """Without EDGE_SERVER_INTERFACE, a stream with canAccess makes edge serve through ASGI,
    so Motia clients that send their token as a subprotocol get it echoed; else RSGI."""
    guarded = EdgeServer(write_project(tmp_path / "a", PROJECT), tmp_path / "da").start()
    plain_files = {k: PROJECT[k] for k in ("steps/items_step.py", "steps/todos_stream.py", "steps/live_stream.py")}
    plain = EdgeServer(write_project(tmp_path / "b", plain_files), tmp_path / "db").start()
    try:
        assert httpx.get(f"{guarded.url}/__edge/health").json()["interface"] == "asgi"
        assert httpx.get(f"{plain.url}/__edge/health").json()["interface"] == "rsgi"
        with ws_connect(guarded, "/", subprotocols=["Authorization", "let-me-in"]) as ws:
            assert ws.subprotocol == "Authorization"
    finally:
        guarded.kill()
        plain.kill()
