"""The pieces behind Motia compatibility, one at a time: the ``motia`` package's names and
types, the 0.x request dict, ``.env`` files, discovery of both namings, declared streams and
shared 0.x names, and how a call tells ``await`` from a plain call."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

import motia
from edge._legacy import as_0x
from edge._loops import Ready
from edge.api import ApiRequest, ApiResponse
from edge.context import Context
from edge.steps import discover
from edge.steps.dotenv import load_dotenv, parse_dotenv
from edge.streams.records import StreamEvent
from motia._runtime import MotiaError, awaited
from motia._state import motia_ops

from .conftest import write_project

# -- the names of the motia package ---------------------------------------------------------------

PUBLIC_1_0_4 = ("http", "api", "queue", "cron", "state", "stream", "ApiRequest", "ApiResponse", "FlowContext",
                "MotiaHttpArgs", "StateTriggerInput", "StreamTriggerInput", "QueueConfig", "logger", "enqueue",
                "stateManager", "Stream", "step", "multi_trigger_step")


def test_every_name_real_projects_import_is_there():
    missing = [name for name in PUBLIC_1_0_4 if not hasattr(motia, name)]
    assert missing == []
    assert set(PUBLIC_1_0_4) <= set(motia.__all__)


def test_generic_types_are_subscriptable_at_import():
    assert motia.ApiRequest[Any] is not None and motia.ApiResponse[dict] is not None
    assert motia.FlowContext[Any] is not None and motia.MotiaHttpArgs[Any] is not None
    assert motia.Stream[dict[str, Any]]("todo").stream_name == "todo"


def test_motia_types_are_edges_own():
    assert motia.ApiRequest is ApiRequest and motia.ApiResponse is ApiResponse
    assert issubclass(Context, motia.FlowContext)
    response = motia.ApiResponse(status=201, body={"id": 1})
    assert (response.status, response.body, response.headers) == (201, {"id": 1}, {})
    assert response.model_dump() == {"status": 201, "body": {"id": 1}, "headers": {}}


def test_trigger_helpers_take_motia_arguments():
    assert motia.http("POST", "/todo", body_schema={"type": "object"}) == {
        "type": "http", "method": "POST", "path": "/todo", "body_schema": {"type": "object"}}
    assert motia.api("GET", "/x") == {"type": "http", "method": "GET", "path": "/x"}
    assert motia.queue("t", infrastructure={"queue": {"maxRetries": 1}}) == {
        "type": "queue", "topic": "t", "infrastructure": {"queue": {"maxRetries": 1}}}
    assert motia.queue("t", config=motia.QueueConfig(type="fifo")).get("config").model_dump(
        by_alias=True, exclude_none=True) == {"type": "fifo", "maxRetries": 3, "visibilityTimeout": 30,
                                              "delaySeconds": 0}
    assert motia.stream("todo", group_id="inbox") == {"type": "stream", "stream_name": "todo", "group_id": "inbox"}
    assert motia.cron("0 0 5 * * *") == {"type": "cron", "expression": "0 0 5 * * *"}


def test_step_builders_return_definitions_discovery_reads():
    async def handle(input, ctx):
        return None

    built = motia.step({"name": "A", "triggers": [motia.queue("a")]}).handle(handle)
    assert (built.config["name"], built.handler) == ("A", handle)
    direct = motia.step({"name": "B", "triggers": []}, handle)
    assert direct.handler is handle
    multi = motia.multi_trigger_step({"name": "M", "triggers": []}).on_queue(handle).handlers()
    assert callable(multi.handler) and multi.config["name"] == "M"


def test_guards_read_trigger_dicts():
    config = {"name": "x", "triggers": [motia.http("GET", "/a"), motia.queue("t"), {"type": "event", "topic": "u"}]}
    assert motia.is_api_step(config) and motia.is_queue_step(config) and not motia.is_cron_step(config)
    assert [t["topic"] for t in motia.get_queue_triggers(config)] == ["t", "u"]


def test_module_level_objects_outside_a_handler_say_where_to_call_them():
    with pytest.raises(MotiaError) as info:
        motia.stateManager.get("todos", "1")
    assert str(info.value) == (
        "motia.stateManager.get: called outside a step handler; call it from inside handler(input, ctx) "
        "(or a function the handler calls), not at import time or from a thread the handler did not start"
    )
    with pytest.raises(MotiaError) as info:
        motia.Stream("todo").set("g", "1", {})
    assert str(info.value).startswith("motia.Stream('todo').set: called outside a step handler")
    motia.logger.info("outside a handler: goes to Python logging")  # never raises


def test_a_call_knows_whether_its_caller_awaits_it():
    def probe():
        return Ready("awaited") if awaited() else "plain"

    async def caller():
        first = await probe()
        second = probe()
        return first, second

    assert asyncio.run(caller()) == ("awaited", "plain")
    assert probe() == "plain"  # no loop at all (a sync handler's thread)


def test_update_ops_in_motias_documented_spelling():
    assert motia_ops([{"op": "set", "path": "/status", "value": "done"}]) == [
        {"type": "set", "path": "status", "value": "done"}]
    assert motia_ops({"type": "increment", "path": "a.b", "by": 2}) == [{"type": "increment", "path": "a.b", "by": 2}]


# -- what handlers receive ----------------------------------------------------------------------

def test_the_request_is_a_mutable_dict_for_0x_code():
    req = ApiRequest("POST", "/orders", {"id": "1"}, {}, {"x-user": "bo"}, {"n": 1}, b'{"n": 1}')
    assert req["body"] == {"n": 1} and req.get("pathParams") == {"id": "1"} and req["rawBody"] == b'{"n": 1}'
    req["user"] = {"name": "bo"}  # a middleware writes a key
    assert req["user"] == {"name": "bo"} and req.user == {"name": "bo"} and "user" in req
    assert req.get("missing", 5) == 5
    req["body"] = {"n": 2}  # a key with a meaning is the attribute
    assert req.body == {"n": 2}
    assert list(req) == ["body", "pathParams", "queryParams", "headers", "rawBody", "user"]
    del req["user"]
    assert "user" not in req
    with pytest.raises(KeyError) as info:
        del req["body"]
    assert info.value.args[0] == "'body' is part of every request and cannot be removed; set it to None instead"
    with pytest.raises(AttributeError):
        req.user


def test_requests_can_be_built_by_keyword_as_motia_tests_do():
    req = motia.ApiRequest(body={"a": 1}, path_params={"id": "7"})
    assert (req.method, req.body, req.path_params, req.query_params, req.headers) == ("GET", {"a": 1}, {"id": "7"}, {}, {})


def test_stream_trigger_input_reads_event_type_and_data_as_attributes():
    event = StreamEvent({"streamName": "todo", "groupId": "inbox", "id": "1",
                         "event": {"type": "update", "data": {"done": True}}})
    assert (event.stream_name, event.group_id, event.id) == ("todo", "inbox", "1")
    assert (event.event.type, event.event.data) == ("update", {"done": True})
    assert event["event"]["type"] == "update"


def test_0x_state_get_answers_as_the_0x_runtime_did():
    assert as_0x(None) == {"data": None}
    assert as_0x({"a": 1}) == {"data": {"a": 1}}
    assert as_0x({"data": 1, "b": 2}) == {"data": 1, "b": 2}
    assert as_0x([1, 2]) == [1, 2] and as_0x(3) == 3 and as_0x("s") == "s"


# -- .env -----------------------------------------------------------------------------------------

def test_dotenv_format():
    text = ('# comment\nA=1\nexport B="two words"\nC=\'lit $x\\n\'\nD=plain # trailing comment\n'
            'E="line\\nbreak"\nnot an assignment\nF=\n')
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "lit $x\\n", "D": "plain",
                                  "E": "line\nbreak", "F": ""}


def test_dotenv_never_overrides_what_is_set(tmp_path):
    (tmp_path / ".env").write_text("EDGE_TEST_X=from-file\nEDGE_TEST_Y=file\n")
    environ = {"EDGE_TEST_Y": "shell"}
    assert load_dotenv(tmp_path, environ) == ["EDGE_TEST_X"]
    assert environ == {"EDGE_TEST_X": "from-file", "EDGE_TEST_Y": "shell"}
    assert load_dotenv(tmp_path / "nowhere", environ) == []


# -- discovery ----------------------------------------------------------------------------------

def test_discovery_reads_both_namings_and_skips_workbench_files(tmp_path):
    write_project(tmp_path, {
        "steps/a_step.py": 'config = {"name": "A", "triggers": [{"type": "queue", "topic": "a"}]}\n'
                           "async def handler(i, ctx): pass\n",
        "steps/b-thing.step.py": 'config = {"name": "B", "triggers": [{"type": "queue", "topic": "b"}]}\n'
                                 "async def handler(i, ctx): pass\n",
        "steps/start.step.tsx": "export default () => null\n",
        "steps/legacy.step.ts": "export const config = {}\n",
    })
    found = discover(tmp_path)
    assert [s.name for s in found.steps] == ["A", "B"]
    assert found.unsupported == ("steps/legacy.step.ts",)


def test_stream_objects_declare_their_streams(tmp_path):
    write_project(tmp_path, {
        "steps/shared/streams.py": "from motia import Stream, StreamConfig\n"
                                   "todo = Stream('todo')\n"
                                   "live = Stream(StreamConfig(name='live', base_config={'storageType': 'memory'}))\n",
        "steps/use_step.py": "from motia import queue, Stream\nfrom steps.shared.streams import todo\n"
                             "pets = Stream('pets')\n"
                             'config = {"name": "Use", "triggers": [queue("t")]}\n'
                             "async def handler(i, ctx): pass\n",
        "steps/pets_stream.py": 'config = {"name": "pets", "schema": {"type": "object"}}\n',
    })
    found = discover(tmp_path)
    assert found.errors == ()
    streams = {s.name: (s.file, s.storage_type) for s in found.streams}
    assert streams == {"pets": ("steps/pets_stream.py", "default"), "todo": ("steps/shared/streams.py", "default"),
                       "live": ("steps/shared/streams.py", "memory")}


def test_0x_files_may_share_a_name_other_steps_may_not(tmp_path):
    write_project(tmp_path, {
        "steps/api_step.py": 'config = {"type": "api", "name": "Order", "method": "POST", "path": "/o"}\n'
                             "async def handler(req, ctx): pass\n",
        "steps/worker_step.py": 'config = {"type": "event", "name": "Order", "subscribes": ["o"]}\n'
                                "async def handler(i, ctx): pass\n",
        "steps/x_step.py": 'config = {"name": "X", "triggers": [{"type": "queue", "topic": "x"}]}\n'
                           "async def handler(i, ctx): pass\n",
        "steps/y_step.py": 'config = {"type": "event", "name": "X", "subscribes": ["y"]}\n'
                           "async def handler(i, ctx): pass\n",
    })
    found = discover(tmp_path)
    assert [(s.name, s.display_name) for s in found.steps] == [
        ("Order (steps/api_step.py)", "Order"), ("Order (steps/worker_step.py)", "Order")]
    assert [e.message for e in found.errors] == [
        'steps/y_step.py: name: duplicate step name "X", also used by steps/x_step.py; step names must be unique']


def test_streaming_handlers_are_found_by_their_annotation(tmp_path):
    write_project(tmp_path, {
        "steps/sse_step.py": "from __future__ import annotations\nfrom typing import Any\n"
                             "from motia import MotiaHttpArgs, http\n"
                             'config = {"name": "S", "triggers": [http("GET", "/s")]}\n'
                             "async def handler(args: MotiaHttpArgs[Any], ctx): pass\n",
        "steps/plain_step.py": "from typing import Any\nfrom motia import ApiRequest, http\n"
                               'config = {"name": "P", "triggers": [http("GET", "/p")]}\n'
                               "async def handler(req: ApiRequest[Any], ctx): pass\n",
        "steps/native_step.py": "from edge.api import HttpStreamArgs\n"
                                'config = {"name": "N", "triggers": [{"type": "http", "method": "GET", "path": "/n"}]}\n'
                                "async def handler(args: HttpStreamArgs, ctx): pass\n",
    })
    found = discover(tmp_path)
    assert {s.name: s.http_stream for s in found.steps} == {"N": True, "P": False, "S": True}


def test_transitional_dialect_is_told_apart(tmp_path):
    write_project(tmp_path, {
        "steps/t_step.py": 'config = {"name": "T", "triggers": [{"type": "event", "topic": "a"}], "emits": ["b"],'
                           ' "virtualEmits": ["c"]}\nasync def handler(i, ctx): pass\n',
        "steps/n_step.py": 'config = {"name": "N", "triggers": [{"type": "queue", "topic": "a"}], "enqueues": ["b"]}\n'
                           "async def handler(i, ctx): pass\n",
    })
    found = discover(tmp_path)
    t, n = found.step("T"), found.step("N")
    assert (t.dialect, [e.topic for e in t.enqueues], [e.topic for e in t.virtual_enqueues]) == (
        "transitional", ["b"], ["c"])
    assert (n.dialect, n.legacy, t.legacy) == ("1.0", False, True)


def test_env_file_is_read_before_steps_import(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_TEST_TOKEN", "unset afterwards")  # so monkeypatch removes what .env sets
    monkeypatch.delenv("EDGE_TEST_TOKEN")
    write_project(tmp_path, {
        ".env": "EDGE_TEST_TOKEN=abc\n",
        "steps/e_step.py": "import os\nTOKEN = os.environ['EDGE_TEST_TOKEN']\n"
                           'config = {"name": "E", "triggers": [{"type": "queue", "topic": "a"}]}\n'
                           "async def handler(i, ctx): pass\n",
    })
    found = discover(tmp_path)
    assert found.errors == () and os.environ["EDGE_TEST_TOKEN"] == "abc"


# -- in-process, as Motia users test handlers -------------------------------------------------------

async def test_motia_project_under_edge_testing(tmp_path):
    import shutil

    from edge.testing import App

    from .test_motia import FIXTURES, ORDER

    shutil.copytree(FIXTURES / "motia_rc", tmp_path / "app")
    async with App(tmp_path / "app") as app:
        created = await app.http("POST", "/orders", json=ORDER, headers={"x-user": "ana"})
        assert created.status == 201 and created.json["total"] == 11
        assert app.enqueued("order.created") == [{"id": "o-1"}]
        await app.drain()
        got = await app.http("GET", "/orders/o-1")
    assert got.json["order"]["status"] == "processed"
    assert got.json["result"]["stream_new"] == {"status": "processing", "total": 11, "id": "o-1"}


# -- Motia 1.0.4's synchronous writes on the loop thread --------------------------------------------

SYNC_WRITES = {
    "steps/todo_step.py": '''
        import os
        from pathlib import Path

        from motia import Stream, http, stateManager

        todo_stream = Stream("todo")
        config = {"name": "CreateTodo", "triggers": [http("POST", "/todo")]}

        async def handler(request, ctx):
            todo_id = f"t-{request.body['n']}"
            stored = todo_stream.set("inbox", todo_id, {"description": "milk"})  # synchronous in 1.0.4
            was = stateManager.set("todos", todo_id, {"description": "milk"})
            Path(os.environ["EDGE_TEST_MARK"]).touch()  # both sets have returned
            return {"status": 201, "body": {"todo": stored["new_value"], "was": was["old_value"]}}
    ''',
    "steps/read_step.py": '''
        from motia import Stream, http, stateManager

        todo_stream = Stream("todo")
        config = {"name": "ReadTodo", "triggers": [http("GET", "/todo/:id")]}

        async def handler(request, ctx):
            return {"status": 200, "body": {"item": todo_stream.get("inbox", request.path_params["id"]),
                                            "state": stateManager.get("todos", request.path_params["id"])}}
    ''',
    "steps/rw_step.py": '''
        from motia import Stream, http, stateManager

        notes = Stream("notes")
        config = {"name": "ReadOwnWrites", "triggers": [http("POST", "/rw")]}

        async def handler(request, ctx):
            notes.set("g", "k", {"v": 1})
            item, group = notes.get("g", "k"), notes.get_group("g")
            again = notes.set("g", "k", {"v": 2})
            stateManager.set("scope", "k", {"v": 1})
            value, values = stateManager.get("scope", "k"), stateManager.list("scope")
            changed = stateManager.update("scope", "k", [{"type": "increment", "path": "v", "by": 1}])
            return {"status": 200, "body": {"item": item, "group": group, "old": again["old_value"],
                                            "value": value, "values": values, "changed": changed}}
    ''',
    "steps/ping_step.py": '''
        config = {"name": "Ping", "triggers": [{"type": "http", "method": "GET", "path": "/ping"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"pong": True}}
    ''',
}


async def test_a_synchronous_set_does_not_stop_other_requests_while_it_waits_for_the_disk(tmp_path, monkeypatch):
    import threading

    import trio

    from edge.testing import App

    mark = tmp_path / "sets-returned"
    monkeypatch.setenv("EDGE_TEST_MARK", str(mark))
    write_project(tmp_path / "app", SYNC_WRITES)
    async with App(tmp_path / "app") as app:
        disk = threading.Event()  # a slow card: the writer is inside a commit until this is set
        app.runtime.store.write_nowait(lambda txn: disk.wait(30))
        answers = {}

        async def create():
            answers["created"] = await app.http("POST", "/todo", json={"n": 1})

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(create)
                with trio.fail_after(10):  # the sets return at once: they do not wait for the commit
                    while not mark.exists():
                        await trio.sleep(0.01)
                    ping = await app.http("GET", "/ping")  # the loop serves others meanwhile
                assert ping.status == 200 and ping.json == {"pong": True}
                assert "created" not in answers  # its answer waits until the sets are durable
                disk.set()
        finally:
            disk.set()
        created = answers["created"]
        assert created.status == 201
        assert created.json == {"todo": {"description": "milk", "id": "t-1"}, "was": None}
        stored = await app.http("GET", "/todo/t-1")
    assert stored.json == {"item": {"description": "milk", "id": "t-1"}, "state": {"description": "milk"}}


async def test_a_synchronous_read_sees_the_sets_made_just_before_it(tmp_path):
    from edge.testing import App

    write_project(tmp_path / "app", SYNC_WRITES)
    async with App(tmp_path / "app") as app:
        answer = await app.http("POST", "/rw")
    assert answer.json == {
        "item": {"v": 1, "id": "k"}, "group": [{"v": 1, "id": "k"}], "old": {"v": 1, "id": "k"},
        "value": {"v": 1}, "values": [{"v": 1}], "changed": {"old_value": {"v": 1}, "new_value": {"v": 2}},
    }


SYNC_MORE = {
    "steps/many_step.py": '''
        from motia import Stream, http, stateManager

        notes = Stream("notes")
        config = {"name": "Many", "triggers": [http("POST", "/many")]}

        async def handler(request, ctx):
            n = request.body["n"]
            for i in range(n):  # each set first looks up the item's old value: a settle per call
                notes.set("g", f"k{i}", {"i": i})
                stateManager.set("many", f"k{i}", {"i": i})
            return {"status": 200, "body": {"items": len(notes.get_group("g")), "keys": len(stateManager.list("many"))}}
    ''',
    "steps/caller_step.py": '''
        import os
        from pathlib import Path

        from motia import Stream, http, stateManager

        notes = Stream("notes")
        config = {"name": "Caller", "triggers": [http("POST", "/caller")]}

        async def handler(request, ctx):
            notes.set("g", "mine", {"by": "caller"})
            stateManager.set("s", "mine", {"by": "caller"})
            Path(os.environ["EDGE_TEST_MARK"]).touch()  # the sets are queued, the disk is held
            seen = await ctx.invoke("Callee", {})
            return {"status": 200, "body": {"callee_saw": seen, "caller_sees": notes.get("g", "theirs")}}
    ''',
    "steps/callee_step.py": '''
        from motia import Stream, queue, stateManager

        notes = Stream("notes")
        config = {"name": "Callee", "triggers": [queue("callee.never")]}

        async def handler(data, ctx):
            notes.set("g", "theirs", {"by": "callee"})
            return {"item": notes.get("g", "mine"), "state": stateManager.get("s", "mine")}
    ''',
    "steps/fresh_caller_step.py": '''
        import asyncio
        import os
        from pathlib import Path

        from motia import Stream, http

        notes = Stream("notes")
        config = {"name": "FreshCaller", "triggers": [http("POST", "/fresh-caller")]}

        async def handler(request, ctx):  # writes nothing itself before the callee does
            callee = asyncio.ensure_future(ctx.invoke("FreshCallee", {}))
            while not Path(os.environ["EDGE_TEST_MARK"]).exists():  # the callee's set is queued
                await asyncio.sleep(0.01)
            seen = notes.get("g", "fresh")  # the disk is still held: this read must wait for it
            await callee
            return {"status": 200, "body": {"caller_saw": seen}}
    ''',
    "steps/fresh_callee_step.py": '''
        import os
        from pathlib import Path

        from motia import Stream, queue

        notes = Stream("notes")
        config = {"name": "FreshCallee", "triggers": [queue("fresh.never")]}

        async def handler(data, ctx):
            notes.set("g", "fresh", {"by": "callee"})
            Path(os.environ["EDGE_TEST_MARK"]).touch()
    ''',
    "steps/mutate_step.py": '''
        import os
        from pathlib import Path

        from motia import Stream, http, stateManager

        notes = Stream("notes")
        config = {"name": "Mutate", "triggers": [http("POST", "/mutate")]}

        async def handler(request, ctx):
            stored = notes.set("watched", "k", {"v": 1})
            stored["new_value"]["v"] = 99  # the caller's copy: not what is stored, not what triggers see
            was = stateManager.set("watched", "k", {"v": 1})
            was["new_value"]["v"] = 99
            Path(os.environ["EDGE_TEST_MARK"]).touch()
            return {"status": 200, "body": {"mine": [stored["new_value"], was["new_value"]]}}
    ''',
    "steps/watch_state_step.py": '''
        from motia import state, stateManager

        config = {"name": "WatchState", "triggers": [state()]}

        async def handler(event, ctx):
            if event.group_id == "watched":
                stateManager.set("seen", "state", event.new_value)
    ''',
    "steps/watch_stream_step.py": '''
        from motia import stateManager, stream

        config = {"name": "WatchStream", "triggers": [stream("notes", group_id="watched")]}

        async def handler(event, ctx):
            stateManager.set("seen", "stream", event.event.data)
    ''',
}


async def test_a_long_loop_of_synchronous_sets_costs_each_set_the_same(tmp_path):
    # Each set settles (looks for queued writes of its item) before it reads the old value. That
    # look is one dict lookup: when it walked every write queued so far, 20,000 sets took
    # minutes (quadratic), and this limit, ten times what they take now, was far exceeded.
    import trio

    from edge.testing import App

    write_project(tmp_path / "app", SYNC_MORE)
    async with App(tmp_path / "app") as app:
        with trio.fail_after(60):
            answer = await app.http("POST", "/many", json={"n": 20_000})
    assert answer.status == 200 and answer.json == {"items": 20_000, "keys": 20_000}


async def _post_on_a_slow_card(tmp_path, monkeypatch, path: str):
    """``POST path`` of the SYNC_MORE app while the store's writer is held inside a commit, from
    before the request until a moment after the step touched EDGE_TEST_MARK (its sets are
    queued then): the other side of a ctx.invoke reads them while they are not durable yet."""
    import threading
    import time

    from edge.testing import App

    mark = tmp_path / "sets-queued"
    monkeypatch.setenv("EDGE_TEST_MARK", str(mark))
    write_project(tmp_path / "app", SYNC_MORE)
    async with App(tmp_path / "app") as app:
        disk = threading.Event()  # a slow card
        app.runtime.store.write_nowait(lambda txn: disk.wait(30))

        def card():  # the card finishes its commit a moment after the sets were queued
            deadline = time.monotonic() + 30
            while not mark.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            disk.set()

        threading.Thread(target=card, daemon=True).start()
        try:
            return await app.http("POST", path)
        finally:
            disk.set()


async def test_a_step_called_with_ctx_invoke_reads_its_callers_synchronous_sets(tmp_path, monkeypatch):
    answer = await _post_on_a_slow_card(tmp_path, monkeypatch, "/caller")
    assert answer.json == {"callee_saw": {"item": {"by": "caller", "id": "mine"}, "state": {"by": "caller"}},
                           "caller_sees": {"by": "callee", "id": "theirs"}}


async def test_a_caller_that_wrote_nothing_yet_reads_what_its_running_callee_set(tmp_path, monkeypatch):
    # Before: the queued writes were kept per invocation, made at its first set, and a callee
    # shared them only if its caller had written already; this caller read None.
    answer = await _post_on_a_slow_card(tmp_path, monkeypatch, "/fresh-caller")
    assert answer.json == {"caller_saw": {"by": "callee", "id": "fresh"}}


async def test_changing_what_a_synchronous_set_answered_changes_neither_the_store_nor_the_triggers(
        tmp_path, monkeypatch):
    import threading

    import trio

    from edge.testing import App

    mark = tmp_path / "answers-changed"
    monkeypatch.setenv("EDGE_TEST_MARK", str(mark))
    write_project(tmp_path / "app", SYNC_MORE)
    async with App(tmp_path / "app") as app:
        disk = threading.Event()  # the sets commit only after the handler changed what they answered
        app.runtime.store.write_nowait(lambda txn: disk.wait(30))
        answers = {}

        async def mutate():
            answers["mutate"] = await app.http("POST", "/mutate")

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(mutate)
                with trio.fail_after(10):
                    while not mark.exists():
                        await trio.sleep(0.01)
                disk.set()
        finally:
            disk.set()
        await app.drain()
        stored = await app.state.get("watched", "k"), app.runtime.streams.get_nowait("notes", "watched", "k")
        seen = await app.state.get("seen", "state"), await app.state.get("seen", "stream")
    assert answers["mutate"].json == {"mine": [{"v": 99, "id": "k"}, {"v": 99}]}
    assert stored == ({"v": 1}, {"v": 1, "id": "k"})
    assert seen == ({"v": 1}, {"v": 1, "id": "k"})


LONG_RUNNING = {
    "steps/slow_card_step.py": '''
        import threading

        from motia import http, stateManager
        from motia._runtime import runtime_of

        config = {"name": "SlowCard", "triggers": [http("POST", "/slow-card")]}

        def hold(started, until):  # a write that takes until `until` (a slow card)
            def op(txn):
                started.set()
                until.wait(30)
            return op

        async def handler(request, ctx):
            store = runtime_of(ctx).store
            busy, writing, card1, card2, card3 = (threading.Event() for _ in range(5))
            store.write_nowait(hold(busy, card1))
            busy.wait(30)  # the writer is busy: the next writes go in one batch
            for i in range(10):
                stateManager.set("r", f"k{i}", {"i": i})
            store.write_nowait(hold(writing, card2))  # ... with this one
            card1.set()
            writing.wait(30)  # that batch is being written; what comes next is a later batch
            store.write_nowait(hold(threading.Event(), card3))
            stateManager.set("r", "k10", {"i": 10})  # queued while k0..k9 are not durable
            card2.set()
            stateManager.get("r", "k9")  # waits until k0..k9 are durable; k10 is not
            stateManager.set("r", "k11", {"i": 11})
            kept = sorted(key for key in ctx.writes_soon.latest if len(key) == 3)
            card3.set()
            return {"status": 200, "body": {"kept": kept, "k11": stateManager.get("r", "k11")}}
    ''',
    "steps/awaited_step.py": '''
        from motia import http

        config = {"name": "Awaited", "triggers": [http("POST", "/awaited")]}

        async def handler(request, ctx):
            for i in range(5000):
                await ctx.state.set("awaited", f"k{i}", i)
            return {"status": 200, "body": {"pending": len(ctx.pending)}}
    ''',
}


async def test_a_long_running_handler_keeps_only_its_writes_in_flight(tmp_path):
    # Before: the table of queued writes was cleared only when the newest was durable, so a
    # handler writing for hours with a write always in flight kept every key it ever set
    # (5,003 entries after 5,000 sets), and ctx.pending kept every write it ever made.
    from edge.testing import App

    write_project(tmp_path / "app", LONG_RUNNING)
    async with App(tmp_path / "app") as app:
        queued = await app.http("POST", "/slow-card")
        awaited = await app.http("POST", "/awaited")
    assert queued.json == {"kept": [["state", "r", "k10"], ["state", "r", "k11"]], "k11": {"i": 11}}
    assert awaited.status == 200 and awaited.json["pending"] <= 64
