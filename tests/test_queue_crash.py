"""SIGKILL mid-backlog: every message acknowledged (2xx) to its producer is handled after restart."""

from __future__ import annotations

import threading

import httpx

from .conftest import EdgeServer, wait_for, write_project

PROJECT = {
    "steps/work_step.py": """
        import os

        import asyncio

        #: Seconds per message; the SIGTERM test slows it so a backlog is surely there at the stop.
        PACE = float(os.environ.get("WORK_PACE", "0.003"))

        config = {
            "name": "Work",
            "triggers": [{"type": "queue", "topic": "work", "config": {"concurrency": 2},
                          "input": {"type": "object", "required": ["id"]}}],
            "enqueues": ["work.done"],
        }

        async def handler(data, ctx):
            await asyncio.sleep(PACE)  # slower than the producers: a backlog builds up
            await ctx.enqueue({"topic": "work.done", "data": data})  # committed with the ack
    """,
    "steps/done_step.py": """
        config = {"name": "Done", "triggers": [{"type": "queue", "topic": "work.done"}]}

        async def handler(data, ctx):
            await ctx.state.set("handled", data["id"], True)
    """,
}


def _health(server: EdgeServer) -> dict:
    with server.client() as client:
        return client.get("/__edge/health").json()["queues"]


def test_sigkill_mid_backlog_loses_no_acknowledged_message(tmp_path):
    project = write_project(tmp_path / "app", PROJECT)
    # 2 handlers x 10 ms: at most 200 messages/s, slower than six producers even on a busy
    # machine, so a backlog is waiting at the kill. The restart runs at full pace.
    server = EdgeServer(project, tmp_path / "data", env={"WORK_PACE": "0.01"}).start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def producer(worker: int):
        with httpx.Client(base_url=server.url, timeout=5) as client:
            n = 0
            while not stop.is_set():
                key = f"p{worker}-{n}"
                n += 1
                try:
                    r = client.post("/__edge/emit", json={"topic": "work", "data": {"id": key}})
                except httpx.TransportError:
                    return  # killed mid-request: never acknowledged
                if r.status_code == 202:
                    with lock:
                        acknowledged.append(key)

    threads = [threading.Thread(target=producer, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    try:
        # Kill once a real backlog is waiting (stored, not yet handled).
        wait_for(lambda: len(acknowledged) >= 600 and _health(server)["depth"] >= 200, timeout=30)
    finally:
        server.kill()
        stop.set()
        for t in threads:
            t.join(10)

    restarted = EdgeServer(project, tmp_path / "data").start()
    try:
        backlog = _health(restarted)["depth"]
        assert backlog > 0, "the kill came after the backlog was drained: the test proved nothing"
        wait_for(lambda: _health(restarted)["depth"] == 0, timeout=30)
        with restarted.client() as client:
            handled = client.get("/__edge/state", params={"group": "handled"}).json()["items"]
        missing = [key for key in acknowledged if key not in handled]
        assert missing == [], f"{len(missing)} acknowledged message(s) were never handled"
        assert _health(restarted)["dead_letters"] == 0
    finally:
        restarted.kill()


def test_sigterm_mid_backlog_exits_0_and_the_rest_is_handled_after_restart(tmp_path):
    project = write_project(tmp_path / "app", PROJECT)
    # 2 handlers x 50 ms: at most 40 messages/s, so 300 emits leave a backlog even on a busy machine.
    server = EdgeServer(project, tmp_path / "data", env={"WORK_PACE": "0.05"}).start()
    with server.client() as client:
        for i in range(300):
            assert client.post("/__edge/emit", json={"topic": "work", "data": {"id": f"m{i}"}}).status_code == 202
    wait_for(lambda: 0 < _health(server)["depth"] < 300)  # handlers are running
    assert server.stop() == 0  # SIGTERM: running handlers are cancelled, their messages kept

    restarted = EdgeServer(project, tmp_path / "data").start()
    try:
        wait_for(lambda: _health(restarted)["depth"] == 0, timeout=30)
        with restarted.client() as client:
            handled = client.get("/__edge/state", params={"group": "handled"}).json()["items"]
        assert sorted(handled) == sorted(f"m{i}" for i in range(300))
    finally:
        restarted.kill()
