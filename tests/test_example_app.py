"""The example app in steps/ (what the README walks through), served by a real `edge start`."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT, EdgeServer, wait_for


def test_todo_app_end_to_end(tmp_path):
    server = EdgeServer(ROOT, tmp_path / "data").start()
    try:
        with server.client() as c:
            r = c.post("/todos", json={"title": "water the tomatoes", "priority": "high"},
                       headers={"x-trace-id": "readme-trace"})
            assert r.status_code == 201
            todo = r.json()
            assert (todo["title"], todo["priority"], todo["status"]) == ("water the tomatoes", "high", "open")

            processed = wait_for(lambda: c.get(f"/todos/{todo['id']}").json().get("status") == "processed")
            assert processed
            assert [t["id"] for t in c.get("/todos", params={"status": "processed"}).json()] == [todo["id"]]

            done = c.put(f"/todos/{todo['id']}/done").json()
            assert done["status"] == "done"

            def audit():
                items = c.get("/__edge/state", params={"group": "audit"}).json()["items"]
                return items if len(items) >= 3 else None

            trail = [v for _, v in sorted(wait_for(audit).items())]
            assert [(e["change"], e["status"]) for e in trail] == [
                ("created", "open"), ("updated", "processed"), ("updated", "done")]
            assert trail[0]["trace_id"] == "readme-trace"

            bad = c.post("/todos", json={"titel": 1})
            assert bad.status_code == 400
            assert bad.json() == {"error": "Invalid request body", "errors": [
                {"path": "$.titel", "message": 'unknown property "titel"'},
                {"path": "$.title", "message": 'missing required property "title"'},
            ]}
            assert c.get("/todos/nope").status_code == 404
    finally:
        assert server.stop() == 0


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
