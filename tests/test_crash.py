"""SIGKILL under writes: every item that got a 2xx is on disk after restart."""

from __future__ import annotations

import threading
import time

import httpx

from .conftest import EdgeServer, write_project

PROJECT = {
    "steps/put_step.py": """
        config = {"name": "Put", "triggers": [{"type": "http", "method": "POST", "path": "/readings/:id"}]}

        async def handler(req, ctx):
            await ctx.state.set("readings", req.path_params["id"], req.body)
            return {"status": 201, "body": {"stored": req.path_params["id"]}}
    """,
    "steps/get_step.py": """
        config = {"name": "Get", "triggers": [{"type": "http", "method": "GET", "path": "/readings/:id"}]}

        async def handler(req, ctx):
            value = await ctx.state.get("readings", req.path_params["id"])
            return {"status": 200 if value is not None else 404, "body": value}
    """,
}


def test_sigkill_loses_nothing_that_was_acknowledged(tmp_path):
    project = write_project(tmp_path / "app", PROJECT)
    server = EdgeServer(project, tmp_path / "data").start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int):
        with httpx.Client(base_url=server.url, timeout=5) as client:
            n = 0
            while not stop.is_set():
                key = f"w{worker}-{n}"
                n += 1
                try:
                    r = client.post(f"/readings/{key}", json={"value": n, "worker": worker})
                except httpx.TransportError:
                    return  # the server died mid-request: this one was never acknowledged
                if r.status_code == 201:
                    with lock:
                        acknowledged.append(key)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL while writers are still sending
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 300, "the server acknowledged too few writes to make the test meaningful"

    restarted = EdgeServer(project, tmp_path / "data").start()
    try:
        with restarted.client() as client:
            items = client.get("/__edge/state", params={"group": "readings"}).json()["items"]
        missing = [key for key in acknowledged if key not in items]
        assert missing == []
        worker, n = acknowledged[-1].removeprefix("w").split("-")
        assert items[acknowledged[-1]] == {"value": int(n) + 1, "worker": int(worker)}
    finally:
        restarted.kill()
