"""The example app in steps/ (what the README walks through): in-process with edge.testing, and
the live list over a WebSocket of a real `edge start`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

from edge.testing import App

from .conftest import ROOT, EdgeServer


async def test_todo_app_end_to_end(tmp_path):
    async with App(ROOT / "steps", data_dir=tmp_path) as app:
        r = await app.http("POST", "/todos", json={"title": "water the tomatoes", "priority": "high"},
                           headers={"x-trace-id": "readme-trace"})
        assert r.status == 201
        todo = r.json
        assert (todo["title"], todo["priority"], todo["status"]) == ("water the tomatoes", "high", "open")
        assert app.enqueued("todo.created") == [todo]

        await app.drain()
        assert (await app.http("GET", f"/todos/{todo['id']}")).json["status"] == "processed"
        listed = await app.http("GET", "/todos", query={"status": "processed"})
        assert [t["id"] for t in listed.json] == [todo["id"]]

        done = (await app.http("PUT", f"/todos/{todo['id']}/done")).json
        assert done["status"] == "done"
        await app.drain()

        trail = [v for _, v in sorted((await app.http("GET", "/__edge/state", query={"group": "audit"})).json["items"].items())]
        assert [(e["change"], e["status"]) for e in trail] == [
            ("created", "open"), ("updated", "processed"), ("updated", "done")]
        assert trail[0]["trace_id"] == "readme-trace"
        assert [t["status"] for t in await app.stream_items("todos", "all")] == ["done"]
        assert [r["msg"] for r in app.logs if r.get("step") == "ProcessTodo"] == ["todo processed"]

        bad = await app.http("POST", "/todos", json={"titel": 1})
        assert bad.status == 400
        assert bad.json == {"error": "Invalid request body", "errors": [
            {"path": "$.titel", "message": 'unknown property "titel"'},
            {"path": "$.title", "message": 'missing required property "title"'},
        ]}
        assert (await app.http("GET", "/todos/nope")).status == 404


async def test_nightly_clean_up_removes_todos_done_over_a_week_ago(tmp_path):
    start = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    async with App(ROOT / "steps", data_dir=tmp_path, start=start) as app:
        week = 7 * 24 * 3600
        old = {"id": "old", "title": "a", "status": "done", "done_at": time.time() - week - 60}
        recent = {"id": "recent", "title": "b", "status": "done", "done_at": time.time()}
        for todo in (old, recent):
            await app.state.set("todos", todo["id"], todo)
            await app.streams.todos.set("all", todo["id"], todo)
        app.clock.advance(hours=24)  # past 03:00 (machine-local time) once
        assert [step for step, _ in await app.tick_cron()] == ["CleanupTodos"]
        assert [t["id"] for t in await app.state.get_group("todos")] == ["recent"]
        assert [t["id"] for t in await app.stream_items("todos", "all")] == ["recent"]
        assert [r["data"] for r in app.logs if r["msg"] == "clean-up finished"] == [{"removed": 1}]


def test_example_steps_validate():
    out = subprocess.run([sys.executable, "-m", "edge", "steps", "--dir", str(ROOT), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    steps = {s["name"]: s for s in json.loads(out.stdout)["steps"]}
    assert sorted(steps) == ["AuditTodo", "CleanupTodos", "CompleteTodo", "CreateTodo", "GetTodo",
                             "ListTodos", "ProcessTodo"]
    assert steps["ProcessTodo"]["triggers"][0]["topic"] == "todo.created"


def test_live_todo_list_over_websocket(tmp_path):
    from websockets.sync.client import connect

    server = EdgeServer(ROOT, tmp_path / "data").start()
    try:
        with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "join", "data": {
                "streamName": "todos", "groupId": "all", "subscriptionId": "dash"}}))
            assert json.loads(ws.recv(timeout=5))["event"] == {"type": "sync", "data": []}
            with server.client() as c:
                todo = c.post("/todos", json={"title": "feed the cat"}).json()
            events = [json.loads(ws.recv(timeout=5))["event"] for _ in range(2)]
            assert [(e["type"], e["data"]["status"]) for e in events] == [("create", "open"), ("update", "processed")]
            assert events[0]["data"]["id"] == todo["id"]
    finally:
        assert server.stop() == 0
