"""State triggers end to end: created/updated/deleted payloads, filters, conditions, trace ids,
durable delivery (retries) through the queue machinery."""

from __future__ import annotations

from .conftest import EdgeServer, wait_for, write_project

PROJECT = {
    "steps/write_step.py": """
        config = {"name": "Write", "triggers": [
            {"type": "http", "method": "PUT", "path": "/kv/:group/:key"},
            {"type": "http", "method": "DELETE", "path": "/kv/:group/:key"},
        ]}

        async def handler(req, ctx):
            group, key = req.path_params["group"], req.path_params["key"]
            if req.method == "DELETE":
                await ctx.state.delete(group, key)
            else:
                await ctx.state.set(group, key, req.body)
            return {"status": 200, "body": {"trace": ctx.trace_id}}
    """,
    "steps/audit_step.py": """
        config = {"name": "Audit", "triggers": [{"type": "state", "group": "devices"}]}

        async def handler(event, ctx):
            n = await ctx.state.update("meta", "audit_seq", [{"type": "increment", "path": "n"}])
            await ctx.state.set("audit", f"{n['n']:04d}", {
                "event_type": event.event_type, "group": event["groupId"], "key": event.item_id,
                "old": event.old_value, "new": event["newValue"], "scope": event.scope,
                "trace": ctx.trace_id, "trigger": ctx.trigger,
            })
    """,
    "steps/pump_step.py": """
        def turned_on(event, ctx):
            return bool((event.new_value or {}).get("on"))

        config = {"name": "PumpWatch", "triggers": [
            {"type": "state", "group": "devices", "key": "pump", "condition": turned_on}]}

        attempts = {"n": 0}

        async def handler(event, ctx):
            attempts["n"] += 1
            if attempts["n"] == 1:
                raise RuntimeError("flaky relay")   # retried by the queue machinery
            await ctx.state.set("pump", "started", {"attempt": attempts["n"]})
    """,
}


def test_state_trigger_payloads_filters_conditions_and_retry(tmp_path):
    project = write_project(tmp_path / "app", PROJECT)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as c:
            trace = c.put("/kv/devices/fan", json={"on": False}, headers={"x-trace-id": "t-1"}).json()["trace"]
            c.put("/kv/devices/fan", json={"on": True})
            c.delete("/kv/devices/fan")
            c.put("/kv/other/x", json=1)           # another group: Audit's filter skips it
            c.put("/kv/devices/pump", json={"on": False})  # condition false: not run
            c.put("/kv/devices/pump", json={"on": True})   # condition true: fails once, retried

            def audit():
                items = c.get("/__edge/state", params={"group": "audit"}).json()["items"]
                return items if len(items) >= 5 else None

            items = wait_for(audit, timeout=10)
            events = [items[k] for k in sorted(items)]
            fan = [e for e in events if e["key"] == "fan"]
            assert [(e["event_type"], e["old"], e["new"]) for e in fan] == [
                ("created", None, {"on": False}),
                ("updated", {"on": False}, {"on": True}),
                ("deleted", {"on": True}, None),
            ]
            assert fan[0]["group"] == fan[0]["scope"] == "devices"
            assert fan[0]["trace"] == trace == "t-1"
            assert fan[0]["trigger"] == {"type": "state", "index": 0, "group": "devices"}
            assert {e["key"] for e in events} == {"fan", "pump"}

            started = wait_for(lambda: c.get("/__edge/state", params={"group": "pump", "key": "started"}).json().get("value"))
            assert started == {"attempt": 2}
    finally:
        assert server.stop() == 0
