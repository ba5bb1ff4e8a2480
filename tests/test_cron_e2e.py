"""Cron in a real server: fires on time, records slots, never fires a slot twice across a restart."""

from __future__ import annotations

import time

from .conftest import EdgeServer, wait_for, write_project

PROJECT = {
    "steps/tick_step.py": """
        import time

        config = {"name": "Tick", "triggers": [{"type": "cron", "expression": "* * * * * *", "timezone": "UTC"}]}

        async def handler(input, ctx):
            slot = int(time.time())
            await ctx.state.update("ticks", str(slot), [
                {"type": "increment", "path": "runs"},
                {"type": "set", "path": "trigger", "value": ctx.trigger},
                {"type": "set", "path": "input", "value": input},
            ])
    """,
    "steps/legacy_cron_step.py": """
        config = {"type": "cron", "name": "Legacy", "cron": "* * * * * *"}

        async def handler(context):   # Motia 0.x: one-argument cron handlers get the context
            await context.state.set("legacy", "ran", {"trace": bool(context.trace_id)})
    """,
}


def test_every_second_cron_fires_and_survives_restart(tmp_path):
    project = write_project(tmp_path / "app", PROJECT)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as client:
            def ticks():
                items = client.get("/__edge/state", params={"group": "ticks"}).json()["items"]
                return items if len(items) >= 3 else None

            items = wait_for(ticks, timeout=10)
            first = next(iter(items.values()))
            assert first == {"runs": 1, "trigger": {"type": "cron", "index": 0, "expression": "* * * * * *"}, "input": None}
            assert client.get("/__edge/state", params={"group": "legacy", "key": "ran"}).json()["value"] == {"trace": True}
    finally:
        assert server.stop() == 0
    time.sleep(0.2)
    restarted = EdgeServer(project, tmp_path / "data").start()
    try:
        time.sleep(2.5)
        with restarted.client() as client:
            items = client.get("/__edge/state", params={"group": "ticks"}).json()["items"]
        # One run per slot, before and after the restart: no slot fired twice.
        assert len(items) >= 5
        assert {key: value["runs"] for key, value in items.items() if value["runs"] != 1} == {}
        spans = [line for line in restarted.logs() if "Tick" in str(line.get("step"))]
        assert not [s for s in spans if s.get("level") == "error"]
    finally:
        restarted.kill()
