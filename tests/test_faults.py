"""Faults a device meets unattended (issue 10): each test reproduces one, against a real server.

Real LMDB in tmp, real sockets, real processes (tests/conftest.py's EdgeServer).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import EdgeServer, write_project

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
    "steps/worker_step.py": """
        config = {"name": "Worker", "triggers": [{"type": "queue", "topic": "deep"}]}

        async def handler(data, ctx):
            pass
    """,
}


@pytest.fixture(scope="module")
def deep_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    server = EdgeServer(write_project(root / "app", DEEP_APP), root / "data").start()
    yield server
    server.kill()


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
        assert http.get("/__edge/state", params={"group": "things", "key": "last"}).status_code == 200


def test_a_handler_storing_deep_data_fails_alone(deep_server):
    with deep_server.client() as http:
        r = http.post("/build-deep")
        assert r.status_code == 500 and "error_id" in r.json()
        assert http.get("/__edge/health").json()["status"] == "ok"
        assert http.post("/things", json={"after": True}).status_code == 201


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
