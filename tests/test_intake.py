"""Request bodies on their way in (edge.server.intake): one that does not arrive in time is a
408 and its connection is closed; past the budget of bodies being received at once a body is a
503 before any of it is read; a chunked body in too many pieces is a 413. A LAN tester held
600 bodies of 1 MB minus one byte open and took the server from 44 to 774 MiB; 16,384 bodies
of one byte missing held every connection, so nobody else got an answer.

Real server, real sockets (clients on 127.0.0.1 and 127.0.0.2: two addresses of this
machine), both Granian interfaces."""

from __future__ import annotations

import json
import socket
import time

import pytest

from .conftest import served, wait_for

APP = {
    "steps/store_step.py": """
        config = {"name": "Store", "triggers": [{"type": "http", "method": "POST", "path": "/store"}]}

        async def handler(req, ctx):
            await ctx.state.set("bodies", req.query_params["key"], len(req.raw_body))
            return {"status": 201, "body": {"stored": len(req.raw_body)}}
    """,
}
MIB = 1 << 20


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def server(tmp_path_factory, request):
    env = {"EDGE_SERVER_INTERFACE": request.param, "EDGE_IDLE_TIMEOUT": "1"}
    with served(tmp_path_factory, f"intake-{request.param}", APP, env=env) as server:
        yield server


def connect(server, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20, source_address=(source, 0))
    return sock


def head(key: str, length: int) -> bytes:
    return (f"POST /store?key={key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def answer(sock: socket.socket) -> tuple[int, dict, dict]:
    """The status, headers and JSON body of the one answer on ``sock``; then the connection
    must be closed by the server (recv returns b"")."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(rest)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def stored(server, key: str):
    with server.client() as client:
        return client.get("/__edge/state", params={"group": "bodies", "key": key}).json().get("value")


def test_a_body_that_stops_arriving_is_a_408_and_its_connection_is_closed(server):
    with connect(server) as sock:
        sock.sendall(head("late", 20_000) + b"x" * 10_000)  # and never the rest
        started = time.monotonic()
        status, headers, body = answer(sock)
        waited = time.monotonic() - started
        assert (status, body) == (408, {"error": "Request Timeout", "detail": (
            "the request body did not arrive within 2 s (1 s, then at least 16 KiB/s for its 20000 bytes); "
            "the connection is closed")})
        assert 1 <= waited < 5
        assert headers["connection"] == "close"
        assert closed_by_server(sock)
    assert stored(server, "late") is None  # the handler never ran
    with connect(server) as sock:  # and a body that arrives is stored as ever
        sock.sendall(head("whole", 20_000) + b"x" * 20_000)
        assert answer(sock)[:3:2] == (201, {"stored": 20_000})


def test_past_the_budget_of_one_client_a_body_is_a_503_before_it_is_read(server):
    """With --max-body 1m a client may send 16 MiB of bodies at once; the 17th waits for none
    of them: 503 at once, its connection closed. Another address of the LAN is not refused."""
    held = [connect(server) for _ in range(16)]
    try:
        for i, sock in enumerate(held):
            sock.sendall(head(f"held{i}", MIB) + b"x" * 1000)
        with server.client() as client:  # all 16 are being received
            wait_for(lambda: client.get("/__edge/health").json()["bodies_receiving"] == {"count": 16, "bytes": 16 * MIB})
        with connect(server) as sock:
            sock.sendall(head("one-too-many", MIB) + b"x" * 1000)
            status, headers, body = answer(sock)
            assert (status, body) == (503, {"error": "Service Unavailable", "detail": (
                "edge is receiving 16.0 MiB of request bodies from 127.0.0.1 already, and takes at most "
                "16.0 MiB at once from one client; retry shortly")})
            assert (headers["retry-after"], headers["connection"]) == ("2", "close")
            assert closed_by_server(sock)
        with connect(server, source="127.0.0.2") as sock:  # someone else
            sock.sendall(head("other", 5000) + b"y" * 5000)
            assert answer(sock)[:3:2] == (201, {"stored": 5000})
        for sock in held[:8]:  # the held ones still complete when their bytes come
            sock.sendall(b"x" * (MIB - 1000))
        for i, sock in enumerate(held[:8]):
            assert answer(sock)[:3:2] == (201, {"stored": MIB}), i
    finally:
        for sock in held:
            sock.close()
    assert stored(server, "one-too-many") is None
    assert stored(server, "other") == 5000
    with server.client() as client:  # closed ones are let go of
        wait_for(lambda: client.get("/__edge/health").json()["bodies_receiving"] == {"count": 0, "bytes": 0})


def test_a_chunked_body_in_more_than_4096_pieces_is_a_413(server):
    def chunked(key: str, pieces: int) -> tuple[int, dict]:
        with connect(server) as sock:
            sock.sendall(f"POST /store?key={key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n".encode() + b"1\r\nx\r\n" * pieces + b"0\r\n\r\n")
            status, _, body = answer(sock)
            return status, body

    assert chunked("pieces-ok", 4096) == (201, {"stored": 4096})
    assert chunked("pieces-too-many", 4097) == (413, {"error": "Payload Too Large", "detail": (
        "the chunked request body came in more than 4096 pieces; send it in bigger chunks, or with a "
        "Content-Length")})
    assert stored(server, "pieces-too-many") is None


def test_gzip_and_deflate_bodies_are_inflated_as_body_parser_did(server):
    """Motia 0.x ran on Express, whose body-parser inflated gzip and deflate bodies; a tester's
    gzip JSON got `400 Malformed JSON ... invalid character (byte 0)`."""
    import gzip
    import zlib

    import httpx

    text = b'{"name": "ada", "pad": "' + b"x" * 200 + b'"}'

    def post(key, body, coding, **kw):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return client.post(f"/store?key={key}", content=body,
                               headers={"content-type": "application/json", "content-encoding": coding}, **kw)

    assert post("gz", gzip.compress(text), "gzip").json() == {"stored": len(text)}
    assert post("deflate", zlib.compress(text), "deflate").json() == {"stored": len(text)}
    assert post("identity", text, "identity").json() == {"stored": len(text)}
    half = len(text) // 2  # two gzip members, as `cat a.gz b.gz` makes: the whole body, not its first half
    assert post("members", gzip.compress(text[:half]) + gzip.compress(text[half:]), "gzip").json() == {
        "stored": len(text)}
    answer = post("trailing", gzip.compress(text) + b"junk", "gzip")
    assert (answer.status_code, answer.json()["error"]) == (400, "Malformed body")
    bomb = gzip.compress(b"0" * (2 * MIB))  # 2 KiB that inflate past --max-body
    assert len(bomb) < 4096
    answer = post("bomb", bomb, "gzip")
    assert (answer.status_code, answer.json()) == (413, {"error": "Payload Too Large", "detail": (
        f"the gzip body inflates to over {MIB} bytes (--max-body / EDGE_MAX_BODY)"), "limit": MIB})
    answer = post("br", text, "br")
    assert (answer.status_code, answer.json()) == (415, {"error": "Unsupported Media Type", "detail": (
        'unsupported Content-Encoding "br"; edge takes gzip, deflate or identity')})
    answer = post("junk", b"not gzip at all", "gzip")
    assert (answer.status_code, answer.json()["error"]) == (400, "Malformed body")
    assert answer.json()["detail"].startswith("the gzip body cannot be inflated: Error -3 while decompressing data")
    answer = post("cut", gzip.compress(text)[:-12], "gzip")
    assert (answer.status_code, answer.json()) == (400, {"error": "Malformed body", "detail": "the gzip body is cut off"})
    for key in ("bomb", "br", "junk", "cut", "trailing"):
        assert stored(server, key) is None


@pytest.fixture(scope="module")
def patient_server(tmp_path_factory):
    """Bodies get the default 30 s here: the test holds 1,024 of them while it opens more."""
    with served(tmp_path_factory, "intake-patient", APP) as server:
        yield server


def test_tiny_bodies_count_16_kib_each_so_one_client_holds_at_most_1024(patient_server):
    """Bodies of a few bytes, half sent, cost no memory but hold connections: counted at least
    16 KiB each, one address may be sending 1,024 at once (the tester held 16,384 such, and
    nobody else got an answer)."""
    import resource

    server = patient_server

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = []
    try:
        for i in range(1024):
            sock = connect(server)
            sock.sendall(head(f"tiny{i}", 100) + b"x" * 10)
            held.append(sock)
        with server.client() as client:
            wait_for(lambda: client.get("/__edge/health").json()["bodies_receiving"]["count"] == 1024, timeout=30)
        with connect(server) as sock:
            sock.sendall(head("tiny-too-many", 100) + b"x" * 100)
            status, _, body = answer(sock)
            assert (status, body["detail"]) == (503, (
                "edge is receiving 16.0 MiB of request bodies from 127.0.0.1 already, and takes at most 16.0 MiB "
                "at once from one client; retry shortly"))
        with connect(server, source="127.0.0.2") as sock:  # someone else is still served
            sock.sendall(head("other-tiny", 100) + b"y" * 100)
            assert answer(sock)[:3:2] == (201, {"stored": 100})
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


STREAMING_APP = {
    "steps/upload_step.py": """
        from edge.api import HttpStreamArgs

        config = {"name": "Upload", "triggers": [{"type": "http", "method": "POST", "path": "/upload"}]}

        async def handler(args: HttpStreamArgs, ctx):
            await args.response.status(200)
            n = 0
            async for chunk in args.request.request_body.stream:
                n += len(chunk)
            await args.response.send(b"got %d bytes" % n)
    """,
}


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_a_streamed_body_over_max_body_is_a_413_and_no_handler_error(tmp_path_factory, interface):
    """A streaming step reading a chunked body past --max-body answered 500 and logged the
    handler's traceback (anyone could fill the error log that way)."""
    import httpx

    env = {"EDGE_SERVER_INTERFACE": interface, "EDGE_MAX_BODY": "1k"}
    with served(tmp_path_factory, f"streamed-{interface}", STREAMING_APP, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            def chunks(n):
                for _ in range(n):
                    yield b"x" * 100

            assert client.post("/upload", content=chunks(5)).text == "got 500 bytes"
            answer = client.post("/upload", content=chunks(30))
            assert (answer.status_code, answer.json()) == (413, {"error": "Payload Too Large", "detail": (
                "request body is over the 1024-byte limit (--max-body / EDGE_MAX_BODY)")})
        errors = [r for r in server.logs() if r.get("level") == "error"]
        assert errors == []
