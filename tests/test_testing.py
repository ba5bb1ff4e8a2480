"""edge.testing: the App test kit, under trio (this suite's default) and, where marked, asyncio.

Tests marked ``anyio`` run once per backend (see conftest.py); the rest are plain trio tests.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone

import pytest

from edge.errors import ConfigError, SchemaError
from edge.testing import App, DrainTimeout, InjectedFailure, Skipped

from .conftest import ROOT, write_project

BOTH = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])

MAILER = {
    "steps/send_email_step.py": """
        config = {
            "name": "SendEmail",
            "triggers": [{"type": "queue", "topic": "email.requested",
                          "input": {"type": "object", "properties": {"to": {"type": "string"}},
                                    "required": ["to"]}}],
            "enqueues": ["email.sent"],
        }

        async def handler(data, ctx):
            await ctx.enqueue({"topic": "email.sent", "data": {"to": data["to"]}})
            ctx.logger.info("sent", {"to": data["to"]})
    """,
    "steps/count_sent_step.py": """
        config = {"name": "CountSent", "triggers": [{"type": "queue", "topic": "email.sent"}]}

        async def handler(data, ctx):
            await ctx.state.update("stats", "sent", [{"type": "increment", "path": "n", "by": 1}])
    """,
}


def doc_examples() -> list[str]:
    text = (ROOT / "docs" / "testing.md").read_text()
    return re.findall(r"^```python\n(.*?)```", text, re.S | re.M)  # top-level blocks (not those in a list)


def load(source: str, name: str):
    namespace: dict = {}
    exec(compile(source, f"docs/testing.md ({name})", "exec"), namespace)
    return namespace[name]


# -- the documented examples ---------------------------------------------------------------------

@pytest.mark.anyio
@BOTH
async def test_the_documented_example(tmp_path, monkeypatch, anyio_backend):
    monkeypatch.chdir(ROOT)  # the example names the steps folder relative to the project
    await load(doc_examples()[0], "test_create_todo")(tmp_path)


@pytest.mark.anyio
@BOTH
async def test_the_documented_retry_example(tmp_path, monkeypatch, anyio_backend):
    monkeypatch.chdir(write_project(tmp_path / "app", MAILER))
    await load(doc_examples()[1], "test_a_flaky_mail_server")(tmp_path / "data")


# -- queues, retries, dead letters, time ----------------------------------------------------------

async def test_retries_skip_exactly_the_backoff_and_discarded_enqueues_are_not_listed(tmp_path):
    async with App(write_project(tmp_path / "app", MAILER)) as app:
        start = app.clock.time()
        app.fail("SendEmail", times=2)
        await app.emit("email.requested", {"to": "a@example.com"})
        await app.drain()
        # Default backoff: 1 s after the first failure, 2 s after the second; nothing else.
        assert app.clock.time() - start == 3.0
        assert [(i.outcome, i.error) for i in app.invocations("SendEmail")] == [
            ("error", "InjectedFailure: injected by app.fail('SendEmail', times=2)")] * 2 + [("ok", None)]
        assert app.enqueued("email.sent") == [{"to": "a@example.com"}]
        assert await app.state.get("stats", "sent") == {"n": 1}
        warnings = [r["msg"] for r in app.logs if r["level"] == "warn"]
        assert warnings == ["SendEmail: attempt 1 of 4 failed; retrying in 1 s",
                            "SendEmail: attempt 2 of 4 failed; retrying in 2 s"]


async def test_a_handler_that_fails_after_enqueueing_has_its_messages_discarded(tmp_path):
    files = {**MAILER, "steps/send_email_step.py": """
        config = {"name": "SendEmail", "triggers": [{"type": "queue", "topic": "email.requested"}]}
        attempts = []

        async def handler(data, ctx):
            await ctx.enqueue({"topic": "email.sent", "data": {"attempt": len(attempts)}})
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("smtp down")
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.emit("email.requested", {"to": "a"})
        await app.drain()
        assert app.enqueued("email.sent") == [{"attempt": 1}]  # the first attempt's was discarded
        assert await app.state.get("stats", "sent") == {"n": 1}
        assert [e.step for e in app.enqueued()] == [None, "SendEmail"]  # the emit, then the kept one


async def test_always_failing_ends_in_the_dead_letter_queue(tmp_path):
    async with App(write_project(tmp_path / "app", MAILER)) as app:
        app.fail("SendEmail", times=None, error=TimeoutError("smtp timed out"))
        await app.emit("email.requested", {"to": "a@example.com"})
        await app.drain()
        [dead] = await app.dead_letters()
        assert (dead["step"], dead["topic"], dead["data"], dead["attempts"], dead["error"]) == (
            "SendEmail", "email.requested", {"to": "a@example.com"}, 4, "TimeoutError: smtp timed out")
        assert app.enqueued("email.sent") == []


async def test_drain_without_skipping_time_leaves_the_retry_waiting(tmp_path):
    async with App(write_project(tmp_path / "app", MAILER)) as app:
        app.fail("SendEmail")
        await app.emit("email.requested", {"to": "a"})
        await app.drain(skip_time=False)
        assert [i.outcome for i in app.invocations("SendEmail")] == ["error"]
        app.clock.advance(0.999)
        await app.drain(skip_time=False)
        assert len(app.invocations("SendEmail")) == 1
        app.clock.advance(0.001)
        await app.drain(skip_time=False)
        assert [i.outcome for i in app.invocations("SendEmail")] == ["error", "ok"]


async def test_a_hanging_handler_times_out_on_the_virtual_clock(tmp_path):
    files = {"steps/slow_step.py": """
        import asyncio
        config = {"name": "Slow", "triggers": [{"type": "queue", "topic": "t",
                                                 "config": {"timeout": 3600, "maxRetries": 0}}]}

        async def handler(data, ctx):
            await asyncio.Event().wait()
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.emit("t", {})
        with pytest.raises(DrainTimeout) as caught:
            await app.drain(timeout=0.2)
        assert str(caught.value) == ('app.drain: still busy after 0.2 s: step "Slow" (topic "t"): '
                                     '1 handler(s) running')
        # An hour of virtual time: were the timeout on the real clock, this drain would give up
        # after its 5 s (it did: the bound ran on asyncio's real-time loop).
        app.clock.advance(3600)
        await app.drain(timeout=5)
        [dead] = await app.dead_letters()
        assert dead["error"] == "TimeoutError: the handler did not finish within 3600 s"


async def test_started_lets_a_test_move_the_clock_past_a_running_handlers_timeout(tmp_path):
    # The pattern of docs/testing.md: drain() does not jump to a running handler's timeout.
    files = {"steps/hang_step.py": """
        import asyncio
        config = {"name": "Hang", "triggers": [{"type": "queue", "topic": "hang",
                                                 "config": {"timeout": 5, "maxRetries": 0}}]}

        async def handler(data, ctx):
            await asyncio.sleep(3600)
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.emit("hang", {})
        running = await app.started("Hang")
        assert (running.step, running.outcome) == ("Hang", "running")
        app.clock.advance(6)
        await app.drain()
        [dead] = await app.dead_letters()
        assert dead["error"] == "TimeoutError: the handler did not finish within 5 s"
        assert app.clock.elapsed() == 6
        with pytest.raises(DrainTimeout) as caught:
            await app.started("Nobody", timeout=0.05)
        assert str(caught.value) == "app.started: no handler of step 'Nobody' ran within 0.05 s"



async def test_invocations_report_a_timed_out_attempt_as_a_timeout(tmp_path):
    # Before: the record said "CancelledError: " (what the handler saw), not why the attempt failed.
    files = {"steps/hang_step.py": """
        import asyncio
        config = {"name": "Hang", "triggers": [{"type": "queue", "topic": "hang",
                                                 "config": {"timeout": 5, "maxRetries": 1}}],
                  "enqueues": ["after"]}
        attempts = []

        async def handler(data, ctx):
            attempts.append(1)
            await ctx.enqueue({"topic": "after", "data": {"attempt": len(attempts)}})
            if len(attempts) == 1:
                await asyncio.sleep(3600)
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.emit("hang", {})
        await app.started("Hang")
        app.clock.advance(5)
        await app.drain()  # the retry, 1 s later, returns at once
        assert [(i.outcome, i.error) for i in app.invocations("Hang")] == [
            ("error", "TimeoutError: the handler did not finish within 5 s"), ("ok", None)]
        assert [r["msg"] for r in app.logs if r["level"] == "error"] == [
            "Hang: TimeoutError: the handler did not finish within 5 s"]
        assert app.enqueued("after") == [{"attempt": 2}]  # the timed-out attempt's was discarded
        assert app.clock.elapsed() == 6


async def test_a_sync_handler_that_outlives_its_timeout_stays_a_timed_out_attempt(tmp_path):
    # A sync handler's thread cannot be cancelled: it runs on after the attempt failed. Before,
    # its record said "running" until the thread returned, and then "ok".
    files = {"steps/block_step.py": """
        import threading
        config = {"name": "Block", "triggers": [{"type": "queue", "topic": "block",
                                                  "config": {"timeout": 5, "maxRetries": 0}}]}
        GATE = threading.Event()

        def handler(data, ctx):
            GATE.wait(30)
    """}
    async with App(write_project(tmp_path / "app", files), threads=1) as app:
        await app.emit("block", {"n": 1})
        await app.started("Block")
        app.clock.advance(5)
        await app.drain()
        timed_out = ("error", "TimeoutError: the handler did not finish within 5 s")
        assert [(i.outcome, i.error) for i in app.invocations("Block")] == [timed_out]
        [dead] = await app.dead_letters()
        assert dead["error"] == timed_out[1]

        step_module = next(m for m in list(sys.modules.values())
                           if (getattr(m, "__file__", None) or "").endswith("block_step.py"))
        step_module.GATE.set()  # the first thread returns now
        await app.emit("block", {"n": 2})  # one thread: this runs once the first one is done
        await app.drain()
        assert [(i.input, i.outcome, i.error) for i in app.invocations("Block")] == [
            ({"n": 1}, *timed_out), ({"n": 2}, "ok", None)]


# -- cron --------------------------------------------------------------------------------------------

async def test_tick_cron_fires_every_slot_in_order_and_only_when_asked(tmp_path):
    files = {"steps/hourly_step.py": """
        config = {"name": "Hourly", "triggers": [{"type": "cron", "expression": "0 * * * *",
                                                   "timezone": "UTC"}]}

        async def handler(input, ctx):
            ctx.logger.info("tick")
    """}
    start = datetime(2026, 6, 1, 9, 30, tzinfo=timezone.utc)
    async with App(write_project(tmp_path / "app", files), start=start) as app:
        assert await app.tick_cron() == []
        app.clock.advance(hours=3)
        assert app.invocations() == []  # advancing alone fires nothing
        fired = await app.tick_cron()
        assert [(step, slot.hour) for step, slot in fired] == [("Hourly", 10), ("Hourly", 11), ("Hourly", 12)]
        assert [r["msg"] for r in app.logs if r.get("step") == "Hourly"] == ["tick"] * 3
        assert await app.tick_cron() == []


# -- one handler ---------------------------------------------------------------------------------------

async def test_run_calls_one_handler_with_the_input_its_trigger_delivers(tmp_path):
    async with App(ROOT / "steps", data_dir=tmp_path) as app:
        created = await app.run("CreateTodo", {"body": {"title": "buy milk"}})
        assert created["status"] == 201 and created["body"]["title"] == "buy milk"
        todo = created["body"]
        await app.drain()  # CreateTodo's message is processed by the queue meanwhile
        assert app.enqueued("todo.created") == [todo]
        got = await app.run("GetTodo", {"path_params": {"id": todo["id"]}})
        assert got == {"status": 200, "body": await app.state.get("todos", todo["id"])}
        assert got["body"]["status"] == "processed"
        # One handler, called directly, on an item the test wrote itself:
        other = {**todo, "id": "t2"}
        await app.state.set("todos", "t2", other)
        assert await app.run("ProcessTodo", other) is None
        assert (await app.state.get("todos", "t2"))["status"] == "processed"
        assert [t["status"] for t in await app.stream_items("todos", "all")] == ["processed", "processed"]
        assert (await app.streams.todos.get("all", "t2"))["status"] == "processed"
        await app.run("AuditTodo", {"group_id": "todos", "item_id": todo["id"], "old_value": None,
                                    "new_value": todo, "event_type": "created"})
        with pytest.raises(SchemaError) as caught:
            await app.run("ProcessTodo", {"title": 1})
        assert {"path": "$.id", "message": 'missing required property "id"'} in caught.value.errors


async def test_run_raises_what_the_handler_raised_and_skipped_for_a_false_condition(tmp_path):
    files = {"steps/picky_step.py": """
        config = {"name": "Picky", "triggers": [
            {"type": "queue", "topic": "t", "condition": lambda data, ctx: data.get("ok")}]}

        async def handler(data, ctx):
            raise KeyError("boom")
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        with pytest.raises(KeyError):
            await app.run("Picky", {"ok": True})
        with pytest.raises(Skipped):
            await app.run("Picky", {"ok": False})
        with pytest.raises(ConfigError) as caught:
            await app.run("Pikcy", {})
        assert str(caught.value) == "app.run: no step named 'Pikcy'; the steps are Picky"
        with pytest.raises(ConfigError) as caught:
            app.fail("Pikcy")
        assert str(caught.value) == "app.fail: no step named 'Pikcy'; the steps are Picky"


# -- HTTP through the real app --------------------------------------------------------------------

async def test_http_answers_are_the_servers_own(tmp_path):
    async with App(ROOT / "steps", data_dir=tmp_path) as app:
        bad = await app.http("POST", "/todos", json={"titel": 1})
        assert bad.status == 400
        assert bad.json == {"error": "Invalid request body", "errors": [
            {"path": "$.titel", "message": 'unknown property "titel"'},
            {"path": "$.title", "message": 'missing required property "title"'},
        ]}
        missing = await app.http("GET", "/todos/nope")
        assert (missing.status, missing.json) == (404, {"error": "no todo nope"})
        wrong = await app.http("DELETE", "/todos")
        assert (wrong.status, wrong.headers["allow"]) == (405, "GET, POST")
        traced = await app.http("GET", "/todos?status=open", headers={"x-trace-id": "t-1"})
        assert (traced.status, traced.json, traced.headers["x-trace-id"]) == (200, [], "t-1")
        health = await app.http("GET", "/__edge/health")
        assert health.status == 200 and health.json["steps"] == 7


# -- where handlers run ---------------------------------------------------------------------------

ASYNCIO_STEP = {"steps/wait_step.py": """
    import asyncio
    import sniffio

    config = {"name": "Wait", "triggers": [{"type": "http", "method": "GET", "path": "/wait"},
                                            {"type": "queue", "topic": "wait"}]}

    async def handler(input, ctx):
        await asyncio.sleep(0.01)  # real asyncio: works whatever loop the test runs on
        await asyncio.gather(asyncio.sleep(0), asyncio.to_thread(sum, [1, 2]))
        ctx.logger.info("waited", {"library": sniffio.current_async_library()})
        return {"status": 200, "body": {"library": sniffio.current_async_library()}}
"""}


@pytest.mark.anyio
@BOTH
async def test_asyncio_handlers_run_under_both_test_loops(tmp_path, anyio_backend):
    async with App(write_project(tmp_path / "app", ASYNCIO_STEP)) as app:
        r = await app.http("GET", "/wait")
        assert (r.status, r.json) == (200, {"library": "asyncio"})
        await app.emit("wait", {})
        await app.drain()
        assert [r["data"] for r in app.logs if r["msg"] == "waited"] == [{"library": "asyncio"}] * 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_two_apps_at_once_on_one_asyncio_loop(tmp_path, anyio_backend):
    async with App(write_project(tmp_path / "a", ASYNCIO_STEP)) as one:
        async with App(write_project(tmp_path / "b", MAILER)) as two:
            assert (await one.http("GET", "/wait")).status == 200
            await two.emit("email.requested", {"to": "x"})
            await two.drain()
            assert two.enqueued("email.sent") == [{"to": "x"}]


async def test_sync_and_trio_runtime_handlers(tmp_path):
    files = {
        "steps/blocking_step.py": """
            import time
            config = {"name": "Blocking", "triggers": [{"type": "queue", "topic": "b"}]}

            def handler(data, ctx):
                time.sleep(0.01)
                ctx.state.set("seen", "blocking", data)
        """,
        "steps/trio_step.py": """
            import trio
            config = {"name": "InTrio", "runtime": "trio",
                      "triggers": [{"type": "http", "method": "GET", "path": "/trio"}]}

            async def handler(req, ctx):
                await trio.sleep(0)
                return {"status": 200, "body": {"ok": True}}
        """,
    }
    async with App(write_project(tmp_path / "app", files)) as app:
        app.fail("Blocking", times=1, error=InjectedFailure)
        await app.emit("b", {"n": 1})
        await app.drain()
        assert await app.state.get("seen", "blocking") == {"n": 1}
        assert [i.outcome for i in app.invocations("Blocking")] == ["error", "ok"]
        assert (await app.http("GET", "/trio")).json == {"ok": True}


# -- Motia projects and problems ------------------------------------------------------------------

async def test_a_motia_0x_project_runs_unchanged(tmp_path):
    async with App(ROOT / "tests" / "fixtures" / "projects" / "motia_0x", data_dir=tmp_path) as app:
        r = await app.http("POST", "/basic-tutorial", json={"name": "Rex", "photoUrl": "x.png"})
        assert (r.status, r.json["id"]) == (200, "pet-rex")
        assert app.enqueued("process-food-order") == [{"id": "pet-rex"}]
        await app.drain()
        assert await app.state.get("orders", "pet-rex") == {"id": "pet-rex"}
        app.clock.advance(minutes=10)
        assert [step for step, _ in await app.tick_cron()] == ["StateAuditJob", "StateAuditJob"]
        assert [r["data"] for r in app.logs if r["msg"] == "audit"] == [{"count": 1}] * 2


async def test_a_broken_step_file_or_a_missing_folder_is_said_at_once(tmp_path):
    with pytest.raises(ConfigError) as caught:
        async with App(tmp_path / "nope"):
            pass
    assert str(caught.value) == (
        f"App({str(tmp_path / 'nope')!r}): no such folder; pass the project folder or its steps folder "
        "(e.g. App(Path(__file__).parent.parent / 'steps'))")
    project = write_project(tmp_path / "app", {"steps/bad_step.py": "config = {'name': 'Bad'}\n"})
    with pytest.raises(ConfigError) as caught:
        async with App(project):
            pass
    assert str(caught.value).startswith("edge.testing: 1 step file(s) failed to load:\nsteps/bad_step.py: ")


async def test_app_http_decodes_the_path_once_as_the_server_does(tmp_path):
    files = {"steps/item_step.py": """
        config = {"name": "Item", "triggers": [{"type": "http", "method": "GET", "path": "/items/:id"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"id": req.path_params["id"]}}
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        assert (await app.http("GET", "/items/a%20b")).json == {"id": "a b"}
        assert (await app.http("GET", "/items/100%25%2541")).json == {"id": "100%%41"}


def _resolve_every_ref(document: dict) -> list[str]:
    """Every ``$ref`` of ``document``, each resolved as a JSON pointer from its root (raises
    KeyError when one dangles, as Swagger UI and client generators fail)."""
    refs = []

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target = document
                for part in ref.removeprefix("#/").split("/"):
                    target = target[part]
                refs.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return refs


async def test_openapi_hoists_nested_models_so_every_ref_resolves(tmp_path):
    # Before: pydantic's "$defs" stayed inside each requestBody, and "#/$defs/Item" dangled.
    files = {
        "steps/models.py": """
            from pydantic import BaseModel, Field

            class Item(BaseModel):
                sku: str
                qty: int = Field(ge=1)

            class Order(BaseModel):
                customer: str
                items: list[Item]
        """,
        "steps/order_step.py": """
            from steps.models import Order
            config = {"name": "PlaceOrder", "triggers": [{"type": "http", "method": "POST", "path": "/orders",
                      "bodySchema": Order, "responseSchema": {201: Order.model_json_schema()}}]}

            async def handler(req, ctx):
                return {"status": 201, "body": req.body}
        """,
        "steps/other_step.py": """
            from pydantic import BaseModel
            class Item(BaseModel):  # the same name, another shape
                label: str
            class Basket(BaseModel):
                items: list[Item]
            config = {"name": "Basket", "triggers": [{"type": "http", "method": "POST", "path": "/basket",
                      "bodySchema": Basket}]}

            async def handler(req, ctx):
                return {"status": 200, "body": {}}
        """,
    }
    async with App(write_project(tmp_path / "app", files)) as app:
        document = (await app.http("GET", "/__edge/openapi.json")).json
        placed = await app.http("POST", "/orders", json={"customer": "ada", "items": [{"sku": "a", "qty": 0}]})
    assert sorted(set(_resolve_every_ref(document))) == ["#/components/schemas/Item", "#/components/schemas/Item2"]
    schemas = document["components"]["schemas"]  # steps in name order: Basket's Item first
    assert schemas["Item"]["required"] == ["label"]
    assert schemas["Item2"]["properties"]["qty"] == {"minimum": 1, "title": "Qty", "type": "integer"}
    body = document["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "$defs" not in body and body["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Item2"}
    answer = document["paths"]["/orders"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert answer["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Item2"}  # the same model: one entry
    assert placed.status == 400  # validation still sees the nested model


async def test_a_step_that_declares_options_answers_its_own_preflights(tmp_path):
    # Before: edge answered the preflight itself (the step never ran) with "allow: OPTIONS, OPTIONS".
    files = {"steps/opts_step.py": """
        config = {"name": "Opts", "triggers": [{"type": "http", "method": "OPTIONS", "path": "/thing"},
                                                {"type": "http", "method": "GET", "path": "/thing"}]}

        async def handler(req, ctx):
            return {"status": 204, "headers": {"access-control-allow-methods": "GET", "x-by": "step"}}
    """, "steps/plain_step.py": """
        config = {"name": "Plain", "triggers": [{"type": "http", "method": "POST", "path": "/plain"}]}

        async def handler(req, ctx):
            return {}
    """}
    preflight = {"origin": "http://dash.local", "access-control-request-method": "GET"}
    async with App(write_project(tmp_path / "app", files), cors_origins=("http://dash.local",)) as app:
        own = await app.http("OPTIONS", "/thing", headers=preflight)
        edges = await app.http("OPTIONS", "/plain", headers=preflight)
    assert (own.status, own.headers["x-by"], own.headers["access-control-allow-methods"]) == (204, "step", "GET")
    assert (edges.status, edges.headers["allow"], edges.headers["access-control-allow-methods"]) == (
        204, "POST, OPTIONS", "POST, OPTIONS")


async def test_logging_the_request_shows_what_it_carries_without_its_credentials(tmp_path):
    # Motia's 0.x template logs the request itself; edge showed "ApiRequest(POST /hello)".
    files = {"steps/hello_step.py": """
        config = {"name": "Hello", "triggers": [{"type": "http", "method": "POST", "path": "/hello/:who"}]}

        async def handler(req, ctx):
            ctx.logger.info("Processing hello", req)
            return {"status": 200, "body": {}}
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.http("POST", "/hello/ada?x=1", json={"n": 1}, headers={"authorization": "Bearer s3cret", "x-a": "b"})
        [line] = [r for r in app.logs if r["msg"] == "Processing hello"]
    assert line["data"] == {
        "method": "POST", "path": "/hello/ada", "path_params": {"who": "ada"}, "query_params": {"x": "1"},
        "headers": {"authorization": "[hidden]", "x-a": "b", "content-type": "application/json",
                    "content-length": "7", "host": "localhost"},
        "body": {"n": 1}}


async def test_enqueued_keeps_the_messages_of_every_successful_attempt(tmp_path):
    # Failed attempts were remembered by id(ctx) alone; CPython reused those ids for later
    # contexts, whose enqueues then went missing: 271 of 300 listed.
    files = {
        "steps/a_step.py": """
            config = {"name": "A", "triggers": [{"type": "queue", "topic": "in",
                      "config": {"maxRetries": 3, "backoffType": "fixed", "backoffDelayMs": 10}}],
                      "enqueues": ["out"]}
            seen = set()

            async def handler(data, ctx):
                if data["n"] not in seen:
                    seen.add(data["n"])
                    raise ValueError("the first attempt fails before it enqueues anything")
                await ctx.enqueue({"topic": "out", "data": data})
        """,
        "steps/b_step.py": """
            config = {"name": "B", "triggers": [{"type": "queue", "topic": "out"}]}

            async def handler(data, ctx):
                pass
        """,
    }
    async with App(write_project(tmp_path / "app", files)) as app:
        for n in range(300):
            await app.emit("in", {"n": n})
        await app.drain()
        assert len(app.invocations("B")) == 300
        assert sorted(d["n"] for d in app.enqueued("out")) == list(range(300))


# -- a test's own cancellation ---------------------------------------------------------------------

SLOW_STEP = {"steps/slow_step.py": """
    import asyncio
    config = {"name": "Slow", "triggers": [{"type": "http", "method": "GET", "path": "/slow"},
                                           {"type": "http", "method": "GET", "path": "/fast"}]}

    async def handler(req, ctx):
        if req.path == "/fast":
            return {"status": 200, "body": {"fast": True}}
        try:
            await asyncio.Event().wait()  # until the test gives up
        finally:
            ctx.logger.info("cleaned up")
"""}


def _said_about_slow(app) -> list[str]:
    return [f"{r['level']} {r['msg']}" for r in app.logs if r.get("step") == "Slow"]


@pytest.mark.anyio
@BOTH
async def test_a_test_that_gives_up_on_app_http_gets_its_own_timeout(tmp_path, anyio_backend):
    """The test's asyncio.timeout / trio.fail_after is the test's: it gets its TimeoutError (it
    got a 500 and the log blamed the handler: 'Slow failed: CancelledError'), the handler sees
    a cancellation and has cleaned up by then, and the app serves the next request."""
    async with App(write_project(tmp_path / "app", SLOW_STEP)) as app:
        given_up = []
        if anyio_backend == "asyncio":
            import asyncio

            async def call():
                async with asyncio.timeout(None) as scope:
                    given_up.append(lambda: scope.reschedule(asyncio.get_running_loop().time()))
                    return await app.http("GET", "/slow")

            task = asyncio.create_task(call())
            await app.started("Slow")
            given_up[0]()
            with pytest.raises(TimeoutError):
                await task
        else:
            import trio

            outcome = []

            async def call():
                try:
                    with trio.fail_after(3600) as scope:
                        given_up.append(lambda: setattr(scope, "deadline", -float("inf")))
                        outcome.append(await app.http("GET", "/slow"))
                except trio.TooSlowError:
                    outcome.append("TooSlowError")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                await app.started("Slow")
                given_up[0]()
            assert outcome == ["TooSlowError"]
        assert _said_about_slow(app) == ["info cleaned up"]
        assert (await app.http("GET", "/fast")).json == {"fast": True}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_test_that_cancels_app_http_gets_its_cancellation(tmp_path, anyio_backend):
    import asyncio

    async with App(write_project(tmp_path / "app", SLOW_STEP)) as app:
        task = asyncio.create_task(app.http("GET", "/slow"))
        await app.started("Slow")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _said_about_slow(app) == ["info cleaned up"]
        assert [i.outcome for i in app.invocations("Slow")] == ["error"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_second_app_on_one_loop_is_given_up_on_the_same_way(tmp_path, anyio_backend):
    import asyncio

    async with App(write_project(tmp_path / "a", MAILER)):
        async with App(write_project(tmp_path / "b", SLOW_STEP)) as app:  # its runtime runs in a thread
            task = asyncio.create_task(asyncio.wait_for(app.http("GET", "/slow"), 3600))
            await app.started("Slow")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _said_about_slow(app) == ["info cleaned up"]
            assert (await app.http("GET", "/fast")).json == {"fast": True}


async def test_a_callee_of_a_sync_handler_past_its_timeout_is_cancelled(tmp_path):
    """A sync handler's thread cannot be stopped, but the async callee it waits for in
    ctx.invoke can: once the attempt timed out, the callee is cancelled (it waited on for good,
    holding the handler's thread), the thread's ctx.invoke raises, and that is logged as the
    late failure it is; a ctx.invoke the thread makes after that starts nothing."""
    files = {
        "steps/outer_step.py": """
            config = {"name": "Outer", "triggers": [{"type": "queue", "topic": "outer",
                                                      "config": {"timeout": 5, "maxRetries": 0}}]}

            def handler(data, ctx):
                try:
                    ctx.invoke("Inner", {})
                finally:
                    try:
                        ctx.invoke("Inner", {"again": True})
                    except Exception as exc:
                        ctx.logger.info("second invoke", {"error": f"{type(exc).__name__}: {exc}"})
        """,
        "steps/inner_step.py": """
            import asyncio
            config = {"name": "Inner", "triggers": [{"type": "queue", "topic": "inner"}]}

            async def handler(data, ctx):
                if data.get("again"):
                    ctx.logger.info("started again")
                    return
                try:
                    await asyncio.Event().wait()
                finally:
                    ctx.logger.info("inner cleaned up")
        """,
    }
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.emit("outer", {})
        await app.started("Inner")
        app.clock.advance(6)  # past Outer's timeout of 5 s
        await app.drain(timeout=10)
        [dead] = await app.dead_letters()
        assert dead["error"] == "TimeoutError: the handler did not finish within 5 s"
        said = {r["msg"]: r.get("data") for r in app.logs if r.get("step") in ("Outer", "Inner")}
        gave_up = ("ctx.invoke('Inner'): the caller of this handler stopped waiting for it (its timeout, "
                   "or the runtime stopping); the callee")
        assert "inner cleaned up" in said  # cancelled: before, it waited until the App stopped
        assert "started again" not in said
        assert said["second invoke"] == {"error": f"TimeoutError: {gave_up} was not started"}
        [late] = [msg for msg in said if msg.startswith("Outer failed in the background")]
        assert late.startswith("Outer failed in the background, after its timeout or its caller gave up: "
                               f"TimeoutError: {gave_up} was cancelled (error_id ")
        assert [i.outcome for i in app.invocations("Inner")] == ["error"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_call_given_up_before_it_started_never_runs(tmp_path, anyio_backend):
    # A review: with the runtime's loop busy, the call was queued there when the test gave up;
    # cancelling its future let the handler start anyway, then cancelled it unmarked ("Slow
    # failed: CancelledError"), after the test had gone on.
    import asyncio
    import threading

    async with App(write_project(tmp_path / "a", MAILER)):
        async with App(write_project(tmp_path / "b", SLOW_STEP)) as app:  # its runtime runs in a thread
            busy = threading.Event()
            app._loop.call_soon_threadsafe(busy.wait, 30)  # the runtime's loop is held
            task = asyncio.create_task(app.http("GET", "/slow"))
            for _ in range(3):
                await asyncio.sleep(0)  # app.http has handed its call over, and waits
            task.cancel()
            await asyncio.sleep(0)  # (the give-up is queued behind the call)
            busy.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await app.http("GET", "/fast")).json == {"fast": True}
            assert [i.step for i in app.invocations()] == ["Slow"]  # /fast alone ran
            assert _said_about_slow(app) == []


CLEAN_UP_FAILS = {"steps/s_step.py": """
    import asyncio
    config = {"name": "S", "triggers": [{"type": "queue", "topic": "s"}]}

    async def handler(data, ctx):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a clean-up that takes a moment, then fails
            ctx.logger.info("cleaned up")
            raise ValueError("clean-up failed")
"""}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_test_cancelled_twice_still_waits_for_the_clean_up(tmp_path, anyio_backend):
    # A review: a second cancel (an enclosing timeout) cut the grace short, and the clean-up's
    # error was never retrieved ("Task exception was never retrieved").
    import asyncio
    import gc

    seen = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context.get("message")))
    async with App(write_project(tmp_path / "a", CLEAN_UP_FAILS)) as app:
        task = asyncio.create_task(app.run("S", {}))
        await app.started("S")
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [r["msg"] for r in app.logs if r.get("step") == "S"][:1] == ["cleaned up"]
    gc.collect()
    await asyncio.sleep(0)
    assert seen == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_given_up_sync_handlers_callee_is_waited_for_and_its_error_said(tmp_path, anyio_backend):
    # A review: the callee's task was cancelled through its future, so nobody took its outcome
    # ("Task exception was never retrieved") and the thread went on before its clean-up ran.
    # Under anyio's asyncio backend, too: sniffio's variable came into the handler's thread and
    # its ctx.invoke returned a coroutine.
    import asyncio
    import gc

    seen = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context.get("message")))
    files = {
        **CLEAN_UP_FAILS,
        "steps/outer_step.py": """
            config = {"name": "Outer", "triggers": [{"type": "queue", "topic": "outer",
                                                      "config": {"timeout": 5, "maxRetries": 0}}]}

            def handler(data, ctx):
                ctx.invoke("S", {})
        """,
    }
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.emit("outer", {})
        await app.started("S")
        app.clock.advance(6)
        await app.drain(timeout=10)

        def said():
            return [r["msg"] for r in app.logs if r.get("step") in ("S", "Outer")]

        for _ in range(1000):  # the thread's failure comes after the drain, once the callee has ended
            if any(msg.startswith("Outer failed in the background") for msg in said()):
                break
            await asyncio.sleep(0.01)
        said = said()
        cleaned = said.index("cleaned up")
        [late] = [i for i, msg in enumerate(said) if msg.startswith("Outer failed in the background")]
        assert cleaned < late
        assert said[late].startswith("Outer failed in the background, after its timeout or its caller gave up: "
                                     "HandlerError: ValueError: clean-up failed (error_id ")
    gc.collect()
    await asyncio.sleep(0)
    assert seen == []


SYNC_GATES = {
    "steps/gated_step.py": """
        import time

        def require_token(req, ctx, next):  # sync middleware: ctx calls answer values
            if not ctx.state.get("tokens", req.headers.get("x-token", "none")):
                return {"status": 403, "body": {"error": "forbidden"}}
            return next()

        def not_blocked(req, ctx):  # sync condition
            return ctx.state.get("blocklist", req.headers.get("x-client", "?")) is None

        def slow_check(req, ctx):
            ctx.state.set("gates", "entered", True)
            time.sleep(1)
            return True

        config = {"name": "Gated", "triggers": [
            {"type": "http", "method": "GET", "path": "/admin", "middleware": [require_token]},
            {"type": "http", "method": "GET", "path": "/open", "condition": not_blocked},
            {"type": "http", "method": "GET", "path": "/slow-check", "condition": slow_check, "timeout": 0.5},
            {"type": "http", "method": "GET", "path": "/quick"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"path": req.path}}
    """,
    "steps/careless_step.py": """
        async def careless(req, ctx, next):  # async, but forgets to await its read
            if not ctx.state.get("tokens", "x"):
                return {"status": 403, "body": {}}
            return await next()

        config = {"name": "Careless", "triggers": [{"type": "http", "method": "GET", "path": "/careless",
                                                    "middleware": [careless]}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"secret": True}}
    """,
}


@pytest.mark.anyio
@BOTH
async def test_sync_middleware_and_conditions_get_values_from_ctx_and_block_nobody(tmp_path, anyio_backend):
    # A tester: they ran on the loop thread, where ctx.state.get gave an awaitable (always
    # true: the token check let everyone in, the blocklist check refused everyone), a slow one
    # stalled every request and outlived its trigger's timeout.
    import anyio

    async with App(write_project(tmp_path / "app", SYNC_GATES)) as app:
        await app.state.set("tokens", "good", True)
        assert (await app.http("GET", "/admin")).status == 403
        assert (await app.http("GET", "/admin", headers={"x-token": "good"})).json == {"path": "/admin"}
        await app.state.set("blocklist", "mallory", True)
        assert (await app.http("GET", "/open", headers={"x-client": "alice"})).json == {"path": "/open"}
        assert (await app.http("GET", "/open", headers={"x-client": "mallory"})).status == 422

        done = []

        async def ask(path):
            done.append(((await app.http("GET", path)).status, path))

        async with anyio.create_task_group() as group:
            group.start_soon(ask, "/slow-check")
            while not await app.state.get("gates", "entered"):  # its condition sleeps now
                await anyio.sleep(0.005)
            group.start_soon(ask, "/quick")
        assert done == [(200, "/quick"), (504, "/slow-check")]

        careless = await app.http("GET", "/careless")
        assert careless.status == 500
        [line] = [r for r in app.logs if r.get("step") == "Careless"]
        assert line["msg"].startswith("Careless failed: TypeError: a ctx call in async code returns an awaitable, "
                                      "not its value: `await` it")


@pytest.mark.anyio
@BOTH
async def test_ctx_calls_are_coroutines_for_create_task_and_start_soon(tmp_path, anyio_backend):
    # A tester: asyncio.create_task(ctx.enqueue(...)) failed with "a coroutine was expected, got
    # <edge._loops.Pending ...>" (a 500, though the write had started).
    files = {
        "steps/tasks_step.py": """
            import asyncio
            config = {"name": "Tasks", "triggers": [{"type": "http", "method": "POST", "path": "/tasks"}],
                      "enqueues": ["tasks.done"]}

            async def handler(req, ctx):
                sent = asyncio.create_task(ctx.enqueue({"topic": "tasks.done", "data": {"x": 1}}))
                async with asyncio.TaskGroup() as group:
                    group.create_task(ctx.state.set("tasks", "a", 1))
                    read = group.create_task(ctx.state.get("tasks", "missing"))
                await asyncio.gather(sent)
                return {"status": 201, "body": {"read": read.result()}}
        """,
        "steps/trio_tasks_step.py": """
            import trio
            config = {"name": "TrioTasks", "runtime": "trio",
                      "triggers": [{"type": "http", "method": "POST", "path": "/trio-tasks"}]}

            async def handler(req, ctx):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ctx.state.set, "tasks", "b", 2)
                return {"status": 201, "body": {}}
        """,
    }
    async with App(write_project(tmp_path / "app", files)) as app:
        answer = await app.http("POST", "/tasks")
        assert (answer.status, answer.json) == (201, {"read": None})
        assert (await app.http("POST", "/trio-tasks")).status == 201
        assert app.enqueued("tasks.done") == [{"x": 1}]
        assert (await app.state.get("tasks", "a"), await app.state.get("tasks", "b")) == (1, 2)


@pytest.mark.anyio
@BOTH
async def test_a_handler_that_returns_a_coroutine_without_awaiting_it_has_it_awaited(tmp_path, anyio_backend):
    # A tester: on a queue the coroutine was never run and the message acked as done (its work
    # lost, a RuntimeWarning on stderr); over HTTP it was a 500.
    files = {"steps/forgot_step.py": """
        config = {"name": "Forgot", "triggers": [{"type": "queue", "topic": "forgot"},
                                                 {"type": "http", "method": "GET", "path": "/forgot"}]}

        async def work(ctx):
            await ctx.state.set("forgot", ctx.trigger.type, "done")
            return {"status": 200, "body": {"done": True}}

        async def handler(input, ctx):
            return work(ctx)
    """}
    async with App(write_project(tmp_path / "app", files)) as app:
        await app.emit("forgot", {})
        await app.drain()
        assert (await app.http("GET", "/forgot")).json == {"done": True}
        assert (await app.state.get("forgot", "queue"), await app.state.get("forgot", "http")) == ("done", "done")


MIDDLEWARE_SHAPES = {"steps/shapes_step.py": """
    def logged(fn):  # a sync decorator around an async middleware (no functools.wraps)
        def wrapper(req, ctx, next):
            return fn(req, ctx, next)  # the coroutine, awaited on the loop
        return wrapper

    @logged
    async def auth(req, ctx, next):
        return await next()

    def outer(req, ctx, next):
        return next()

    def inner(req, ctx, next):
        return next()

    config = {"name": "Shapes", "triggers": [
        {"type": "http", "method": "GET", "path": "/wrapped", "middleware": [auth]},
        {"type": "http", "method": "GET", "path": "/two-sync", "middleware": [outer, inner]}]}

    def handler(req, ctx):
        return {"status": 200, "body": {"path": req.path}}
"""}


@pytest.mark.anyio
@BOTH
async def test_middleware_of_every_shape_answers_with_one_pool_thread(tmp_path, anyio_backend):
    # A review: the wrapped async middleware's next() blocked the loop thread for good (it ran
    # on the loop, and next() waited for the loop); two sync middleware and a sync handler
    # with --threads 1 waited for each other's pool thread.
    async with App(write_project(tmp_path / "app", MIDDLEWARE_SHAPES), threads=1) as app:
        for path in ("/wrapped", "/two-sync"):
            assert (await app.http("GET", path)).json == {"path": path}


FORGETFUL = {"steps/forgetful_step.py": """
    async def audit(req, ctx, next):
        await next()  # forgot the return

    def timing(req, ctx, next):
        next()  # forgot the return

    config = {"name": "Forgetful", "triggers": [
        {"type": "http", "method": "GET", "path": "/async", "middleware": [audit]},
        {"type": "http", "method": "GET", "path": "/sync", "middleware": [timing]}]}

    async def handler(req, ctx):
        return {"status": 200, "body": {"path": req.path}}
"""}


@pytest.mark.anyio
@BOTH
async def test_a_middleware_that_drops_the_handlers_answer_is_told_once(tmp_path, anyio_backend):
    # Before: the client got 204 No Content and nothing said why.
    async with App(write_project(tmp_path / "app", FORGETFUL)) as app:
        for name, path in (("audit", "/async"), ("timing", "/sync")):
            for _ in range(2):
                assert (await app.http("GET", path)).status == 204
            said = [r["msg"] for r in app.logs if r["level"] == "warn"]
            assert said.count(
                f"Forgetful: middleware {name} called next() but returned None, so the client got 204 No "
                f"Content instead of the handler's answer (status 200); return what next() returns: "
                f"`return await next()` in an async middleware, `return next()` in a sync one") == 1, said
