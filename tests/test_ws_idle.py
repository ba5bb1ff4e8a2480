"""Stream sockets that hold no subscription are closed after the idle timeout (edge/server/ws.py).

Real servers with EDGE_IDLE_TIMEOUT=1, real WebSocket clients, under both Granian interfaces.
Run as a script to measure what idle sockets cost (the figure in docs/streams.md):

    .venv/bin/python -m tests.test_ws_idle 1000
"""

from __future__ import annotations

import json
import sys
import time

import pytest
from websockets.exceptions import ConnectionClosed

from .conftest import EdgeServer, rss_mib, served, wait_for, write_project
from .test_ws import error_code, join, raw_ws, recv, ws_connect

APP = {
    "steps/live_stream.py": """
        config = {"name": "live", "baseConfig": {"storageType": "memory"}}
    """,
    "steps/items_step.py": """
        config = {"name": "Items", "triggers": [{"type": "http", "method": "PUT", "path": "/s/:group/:id"}]}

        async def handler(req, ctx):
            p = req.path_params
            return {"status": 200, "body": await ctx.streams.live.set(p["group"], p["id"], req.body)}
    """,
}

IDLE = ("this socket held no subscription for 1 s (EDGE_IDLE_TIMEOUT); join within 1 s of connecting "
        "or of leaving the last subscription")


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def server(request, tmp_path_factory):
    env = {"EDGE_SERVER_INTERFACE": request.param, "EDGE_IDLE_TIMEOUT": "1"}
    with served(tmp_path_factory, "idle", APP, env=env) as srv:
        srv.interface = request.param
        yield srv


def closed_idle(ws, timeout: float = 5.0):
    """Read up to the close: the IDLE_TIMEOUT event, then the close frame. Returns the close."""
    frames = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(json.loads(ws.recv(timeout=timeout)))
    assert [error_code(f) for f in frames] == ["IDLE_TIMEOUT"], frames
    assert frames[0]["event"]["event"]["data"]["message"] == IDLE
    assert closed.value.rcvd is not None, closed.value  # a close frame, not a dropped connection
    return closed.value.rcvd


def expect_policy_code(server, rcvd) -> None:
    """1008 (policy violation), which Granian 2.8's RSGI cannot send (docs/streams.md)."""
    if server.interface == "asgi":
        assert rcvd.code == 1008, rcvd
    elif rcvd.code != 1008:
        assert rcvd.code == 1005, rcvd
        pytest.xfail("close code 1005 under rsgi: RSGI sends a bare close frame (see docs/streams.md)")


def health(server) -> dict:
    return server.client().get("/__edge/health").json()["streams"]


def test_a_socket_that_never_joins_gets_an_error_event_and_a_close_frame(server):
    before = health(server)["closed_idle"]
    with ws_connect(server) as ws:
        opened = time.monotonic()
        rcvd = closed_idle(ws)
        assert 0.9 < time.monotonic() - opened < 3
    wait_for(lambda: health(server)["sockets"] == 0)
    assert health(server)["closed_idle"] == before + 1
    expect_policy_code(server, rcvd)


def test_a_raw_client_that_never_reads_is_closed_too(server):
    sock = raw_ws(server.port)
    try:
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(65536):  # the error event, the close frame, then EOF
            data += chunk
        assert b'"code":"IDLE_TIMEOUT"' in data
    finally:
        sock.close()


def test_refused_joins_and_empty_leaves_do_not_keep_a_socket_open(server):
    with ws_connect(server) as ws:
        opened = time.monotonic()
        join(ws, "nope", "g")
        assert error_code(recv(ws)) == "STREAM_NOT_FOUND"
        frames = []
        with pytest.raises(ConnectionClosed):
            while time.monotonic() - opened < 3:  # a frame every 0.2 s, none of them a subscription
                join(ws, "live", "g", sub="never-joined", kind="leave")
                try:
                    frames.append(recv(ws, timeout=0.2))
                except TimeoutError:
                    pass
        assert [error_code(f) for f in frames] == ["IDLE_TIMEOUT"], frames
        assert 0.9 < time.monotonic() - opened < 2


def test_a_subscribed_socket_stays_open_past_the_timeout(server):
    http = server.client()
    with ws_connect(server) as listener:
        join(listener, "live", "kept")
        assert recv(listener)["event"] == {"type": "sync", "data": []}
        with ws_connect(server) as witness:  # opened after the listener: its timeout ends later
            closed_idle(witness)
        # The listener's timeout would have passed by now; it sent nothing since its join.
        assert http.put("/s/kept/a", json={"n": 1}).status_code == 200
        frame = recv(listener)
        assert (frame["id"], frame["event"]) == ("a", {"type": "create", "data": {"n": 1, "id": "a"}})


def test_leaving_the_last_subscription_starts_the_timeout_again(server):
    with ws_connect(server) as ws:
        join(ws, "live", "a", sub="a")
        join(ws, "live", "b", sub="b")
        assert [recv(ws)["groupId"] for _ in range(2)] == ["a", "b"]
        with ws_connect(server) as witness:
            closed_idle(witness)
        join(ws, "live", "a", sub="a", kind="leave")  # one left: still subscribed
        with ws_connect(server) as witness:
            closed_idle(witness)
        join(ws, "live", "b", sub="b", kind="leave")  # none left: a full timeout from here
        left = time.monotonic()
        closed_idle(ws)
        assert 0.9 < time.monotonic() - left < 3


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_without_the_token_every_join_is_denied_and_the_socket_is_closed(tmp_path, interface):
    env = {"EDGE_SERVER_INTERFACE": interface, "EDGE_IDLE_TIMEOUT": "1",
           "EDGE_STREAMS_REQUIRE_TOKEN": "1", "EDGE_TOKEN": "s3cret"}
    server = EdgeServer(write_project(tmp_path / "app", APP), tmp_path / "data", env=env).start()
    try:
        server.interface = interface
        with ws_connect(server) as ws:
            join(ws, "live", "g")
            assert error_code(recv(ws)) == "STREAM_ACCESS_DENIED"
            closed_idle(ws)
        with ws_connect(server, path="/?authToken=s3cret") as ws:
            join(ws, "live", "g")
            assert recv(ws)["event"] == {"type": "sync", "data": []}
            assert ws.protocol.state.name == "OPEN"
    finally:
        server.kill()


# --- what idle sockets cost (python -m tests.test_ws_idle N) ---------------------------------

def measure(interface: str, n: int, root) -> dict:
    """RSS of a fresh edge before and with ``n`` upgraded sockets that never send a frame,
    and once the idle timeout has closed them."""
    env = {"EDGE_SERVER_INTERFACE": interface, "EDGE_IDLE_TIMEOUT": "20"}
    server = EdgeServer(write_project(root / "app", APP), root / f"data-{interface}", env=env).start()
    socks = []
    try:
        time.sleep(1)
        before = rss_mib(server.proc.pid)
        started = time.monotonic()
        socks = [raw_ws(server.port) for _ in range(n)]
        time.sleep(2)
        held = rss_mib(server.proc.pid)
        assert health(server)["sockets"] == n
        wait_for(lambda: health(server)["sockets"] == 0, timeout=60)
        closed_after = time.monotonic() - started
        time.sleep(2)
        after = rss_mib(server.proc.pid)
    finally:
        for sock in socks:
            sock.close()
        server.kill()
    return {"interface": interface, "sockets": n, "before": before, "held": held,
            "per_socket_kib": (held - before) * 1024 / n, "closed_after_s": closed_after, "after_close": after}


if __name__ == "__main__":
    import resource
    import tempfile
    from pathlib import Path

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 256)), hard))
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("rsgi", "asgi"):
            r = measure(kind, count, Path(tmp))
            print(f"{r['interface']}: {r['sockets']} idle sockets: RSS {r['before']:.1f} -> {r['held']:.1f} MiB "
                  f"(+{r['held'] - r['before']:.1f} MiB, {r['per_socket_kib']:.0f} KiB a socket); all closed "
                  f"{r['closed_after_s']:.0f} s after the first connected, RSS then {r['after_close']:.1f} MiB")
