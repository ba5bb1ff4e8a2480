"""Steps with several triggers: ctx.trigger says which fired; conditions on every trigger type;
a condition that raises is logged as a failure and never stops the scheduler."""

from __future__ import annotations

from .conftest import EdgeServer, wait_for, write_project

PROJECT = {
    "steps/multi_step.py": """
        import time
        from edge import cron, http, queue, state

        def not_too_often(input, ctx):
            return True

        config = {
            "name": "Multi",
            "triggers": [
                http("POST", "/multi"),
                queue("multi.go"),
                cron("* * * * * *", condition=not_too_often),
                state(group="multi-in"),
            ],
            "enqueues": ["multi.go"],
        }

        async def handler(input, ctx):
            kind = ctx.trigger["type"]
            await ctx.state.set("seen", kind, {"trigger": ctx.trigger})
            if kind == "http":
                await ctx.enqueue({"topic": "multi.go", "data": {"n": 1}})
                await ctx.state.set("multi-in", "x", {"v": 1})
                return {"status": 202, "body": {"index": ctx.trigger["index"]}}
    """,
    "steps/faulty_condition_step.py": """
        def explode(input, ctx):
            raise ValueError("sensor offline")

        config = {"name": "Faulty", "triggers": [
            {"type": "cron", "expression": "* * * * * *", "condition": explode}]}

        async def handler(input, ctx):
            await ctx.state.set("faulty", "ran", True)
    """,
}


def test_each_trigger_reports_itself_and_a_raising_condition_is_contained(tmp_path):
    project = write_project(tmp_path / "app", PROJECT)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as c:
            assert c.post("/multi").json() == {"index": 0}

            def seen():
                items = c.get("/__edge/state", params={"group": "seen"}).json()["items"]
                return items if len(items) == 4 else None

            items = wait_for(seen, timeout=10)
            assert {k: v["trigger"] for k, v in items.items()} == {
                "http": {"type": "http", "index": 0, "path": "/multi", "method": "POST"},
                "queue": {"type": "queue", "index": 1, "topic": "multi.go"},
                "cron": {"type": "cron", "index": 2, "expression": "* * * * * *"},
                "state": {"type": "state", "index": 3, "group": "multi-in"},
            }
            # The raising condition: logged as a failure with its error, the handler never ran,
            # and the scheduler kept going (the Multi cron trigger fired meanwhile).
            failures = wait_for(lambda: [r for r in server.logs() if r.get("step") == "Faulty"
                                         and r.get("level") == "error"], timeout=5)
            assert "ValueError: sensor offline" in failures[0]["data"]["traceback"]
            assert c.get("/__edge/state", params={"group": "faulty", "key": "ran"}).status_code == 404
            assert c.get("/__edge/health").json()["status"] == "ok"
    finally:
        assert server.stop() == 0


RC_MATCH = {
    "steps/triple_trigger_step.py": """
        from motia import cron, http, queue, stateManager

        config = {"name": "Triple", "triggers": [http("POST", "/test/triple"), queue("triple"), cron("0 * * * *")],
                  "enqueues": []}

        async def handler(input, ctx):
            # Motia 1.0's release candidates called match handlers with ctx too, cron ones with ctx only
            async def _api_handler(request, ctx):
                return {"status": 200, "body": {"via": "api", "trace": ctx.trace_id == ctx.traceId}}

            async def _queue_handler(data, ctx):
                await stateManager.set("triple", "queue", data)

            async def _cron_handler(ctx):
                await stateManager.set("triple", "cron", {"expression": ctx.trigger.expression})

            return await ctx.match({"http": _api_handler, "queue": _queue_handler, "cron": _cron_handler})
    """,
}


async def test_match_handlers_of_the_release_candidates_get_ctx(tmp_path):
    # Before: TypeError: _api_handler() missing 1 required positional argument: 'ctx'.
    from edge.testing import App

    async with App(write_project(tmp_path / "app", RC_MATCH)) as app:
        answer = await app.http("POST", "/test/triple", json={})
        assert (answer.status, answer.json) == (200, {"via": "api", "trace": True})
        await app.emit("triple", {"n": 1})
        await app.drain()
        app.clock.advance(hours=1)
        await app.tick_cron()
        assert await app.state.get("triple", "queue") == {"n": 1}
        assert await app.state.get("triple", "cron") == {"expression": "0 * * * *"}
