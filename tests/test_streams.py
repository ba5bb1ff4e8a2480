"""Stream storage, ``ctx.streams`` and the fan-out hub, in-process on a real LMDB."""

from __future__ import annotations

import json
import threading
import time

import msgspec
import pytest
import trio

from edge._state import StateError
from edge.errors import SchemaError
from edge.steps.model import StreamDef, StreamTrigger
from edge.store import Store
from edge.streams import Hub, StreamChange, StreamError, Streams, matching_triggers

TODO_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string", "minLength": 1}, "done": {"type": "boolean"}},
    "required": ["title"],
    "additionalProperties": False,
}


class Sub:
    """A hub subscriber that keeps the messages it was pushed."""

    def __init__(self):
        self.messages = []

    def push(self, frame: str) -> None:
        self.messages.append(json.loads(frame))

    def types(self):
        return [m["event"]["type"] for m in self.messages]


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "data")
    yield s
    s.close()


def make_streams(store, *, on_change=None, triggered=(), clock=None):
    defs = [
        StreamDef(name="todos", schema=TODO_SCHEMA, file="steps/todos_stream.py"),
        StreamDef(name="live", storage_type="memory"),
    ]
    kw = {"clock": clock} if clock else {}
    return Streams(store, defs, on_change=on_change, triggered=triggered, **kw)


@pytest.mark.parametrize("name", ["todos", "live"])
async def test_items_round_trip_with_their_id(store, name):
    store.start_writer()
    todos = make_streams(store).view()[name]
    item = await todos.set("inbox", "t1", {"title": "milk"})
    assert item == {"title": "milk", "id": "t1"}
    await todos.set("inbox", "t2", {"title": "eggs", "id": "ignored"})
    await todos.set("work", "t3", {"title": "report"})
    assert await todos.get("inbox", "t1") == {"title": "milk", "id": "t1"}
    assert await todos.get("inbox", "t2") == {"title": "eggs", "id": "t2"}  # the id is the key's
    assert await todos.get("inbox", "nope") is None
    assert sorted(i["id"] for i in await todos.get_group("inbox")) == ["t1", "t2"]
    assert await todos.getGroup("work") == await todos.list("work") == [{"title": "report", "id": "t3"}]
    assert sorted(await todos.list_groups()) == sorted(await todos.listGroups()) == ["inbox", "work"]
    assert await todos.update("inbox", "t1", [{"type": "set", "path": "done", "value": True}]) == {
        "title": "milk", "id": "t1", "done": True}
    assert await todos.delete("inbox", "t1") == {"title": "milk", "id": "t1", "done": True}
    assert await todos.delete("inbox", "t1") is None
    assert [i["id"] for i in await todos.get_group("inbox")] == ["t2"]
    await todos.delete("work", "t3")
    assert await todos.list_groups() == ["inbox"]


async def test_default_streams_survive_a_reopen_and_memory_streams_do_not(tmp_path):
    store = Store.open(tmp_path / "d")
    store.start_writer()
    streams = make_streams(store)
    await streams.view().todos.set("g", "a", {"title": "kept"})
    await streams.view().live.set("g", "a", {"v": 1})
    store.close()
    store = Store.open(tmp_path / "d")
    streams = make_streams(store)
    assert await streams.view().todos.get("g", "a") == {"title": "kept", "id": "a"}
    assert await streams.view().live.get("g", "a") is None
    store.close()


async def test_items_failing_the_schema_are_refused_with_every_path(store):
    store.start_writer()
    streams = make_streams(store)
    with pytest.raises(SchemaError) as caught:
        await streams.view().todos.set("g", "a", {"title": "", "colour": "red"})
    assert str(caught.value) == (
        "ctx.streams.todos.set: item 'a' does not match the schema of stream 'todos': "
        '$.title: must be at least 1 character long, got 0; $.colour: unknown property "colour"'
    )
    assert await streams.view().todos.get("g", "a") is None
    # An update whose result breaks the schema is refused too; the item stays as it was.
    await streams.view().todos.set("g", "a", {"title": "ok"})
    with pytest.raises(SchemaError, match=r"\$.done: expected boolean"):
        await streams.view().todos.update("g", "a", {"type": "set", "path": "done", "value": "yes"})
    assert await streams.view().todos.get("g", "a") == {"title": "ok", "id": "a"}


async def test_bad_calls_say_what_is_wrong(store):
    streams = make_streams(store)
    view = streams.view()
    with pytest.raises(AttributeError, match=r"ctx.streams.todo: no stream named 'todo'; known streams: live, todos"):
        view.todo
    with pytest.raises(StreamError, match=r"no stream named 'x'"):
        view["x"]
    with pytest.raises(StreamError, match=r"ctx.streams.live.set: group id must be a non-empty string, got ''"):
        await view.live.set("", "a", {})
    with pytest.raises(StreamError, match=r"ctx.streams.live.set: a stream item must be an object .* got int"):
        await view.live.set("g", "a", 3)
    with pytest.raises(StreamError, match=r"ctx.streams.live.update: ops\[0\].type: expected one of"):
        await view.live.update("g", "a", [{"type": "add"}])
    await view.live.set("g", "a", {"title": "x"})
    with pytest.raises(StreamError, match=r"ctx.streams.live.update: ops\[0\] set at title.x: title is str "):
        await view.live.update("g", "a", [{"type": "set", "path": "title.x", "value": 5}])  # said state.update
    with pytest.raises(StreamError, match=r'ctx.streams.live.send: event must be \{"type": "<name>", "data": ...\}'):
        await view.live.send({"groupId": "g"}, {"data": 1})
    with pytest.raises(StreamError, match=r"the limit is 511"):
        await view.live.get("g" * 300, "i" * 300)
    assert "todos" in view and "nope" not in view and list(view) == ["live", "todos"]


async def test_structs_are_stored_as_plain_items(store):
    class Reading(msgspec.Struct):
        value: float
        unit: str = "C"

    streams = Streams(store, [StreamDef(name="sensors", schema=Reading, storage_type="memory")])
    item = await streams.view().sensors.set("kitchen", "t", Reading(21.5))
    assert item == {"value": 21.5, "unit": "C", "id": "t"}
    with pytest.raises(SchemaError):
        await streams.view().sensors.set("kitchen", "t", {"value": "warm"})


@pytest.mark.parametrize("name", ["todos", "live"])
async def test_changes_reach_item_and_group_subscribers_once(store, name):
    store.start_writer()
    streams = make_streams(store)
    group, item, both, other = Sub(), Sub(), Sub(), Sub()
    hub = streams.hub
    hub.add((name, "g", None), group)
    hub.add((name, "g", "a"), item)
    hub.add((name, "g", None), both)
    hub.add((name, "g", "a"), both)
    hub.add((name, "other", None), other)
    s = streams.view()[name]
    await s.set("g", "a", {"title": "one"})
    await s.set("g", "a", {"title": "two"})
    await s.set("g", "b", {"title": "bee"})
    await s.delete("g", "a")
    await s.send({"groupId": "g", "id": "a"}, {"type": "ping", "data": {"n": 1}})
    await s.send({"groupId": "g"}, {"type": "all", "data": None})
    assert group.types() == ["create", "update", "create", "delete", "event", "event"]
    assert both.messages == group.messages  # one frame each, although it is in both rooms
    assert item.types() == ["create", "update", "delete", "event"]
    assert other.messages == []
    first, delete, ping = group.messages[0], group.messages[3], group.messages[4]
    assert first["streamName"] == name and first["groupId"] == "g" and first["id"] == "a"
    assert first["event"] == {"type": "create", "data": {"title": "one", "id": "a"}}
    assert delete["event"] == {"type": "delete", "data": {"title": "two", "id": "a"}}
    assert ping["event"] == {"type": "event", "event": {"type": "ping", "data": {"n": 1}}}
    assert "id" not in group.messages[5]
    stamps = [m["timestamp"] for m in group.messages]
    assert stamps == sorted(set(stamps)), "timestamps must strictly increase"


def test_timestamps_strictly_increase_per_group_even_when_the_clock_stands_still():
    hub = Hub(clock=lambda: 1000.0)
    a = [json.loads(hub.frame("s", "g", None, {}))["timestamp"] for _ in range(3)]
    b = json.loads(hub.frame("s", "other", None, {}))["timestamp"]
    assert a == [1_000_000, 1_000_001, 1_000_002]
    assert b == 1_000_000  # groups have their own clocks, so a busy group does not drift others


def test_after_a_restart_timestamps_start_above_a_burst_that_ran_ahead_of_the_clock(tmp_path):
    # Motia's clients drop frames not newer than the last they saw, across a reconnect too.
    # Before: a burst ran the group's clock 300 ms ahead; after a restart frames started at the
    # wall clock again, and clients dropped every one of them until it caught up.
    clock = lambda: 1000.0  # noqa: E731 (the wall clock stands still: every frame is ahead)
    store = Store.open(tmp_path / "data")
    streams = make_streams(store, clock=clock)
    burst = [json.loads(streams.hub.frame("live", "g", None, {}))["timestamp"] for _ in range(300)]
    store.close()  # no writer thread: the lead was saved as it grew (a kill -9 keeps it)
    store = Store.open(tmp_path / "data")
    after = make_streams(store, clock=clock).hub
    again = json.loads(after.frame("live", "g", None, {}))["timestamp"]
    other = json.loads(after.frame("todos", "x", None, {}))["timestamp"]
    store.close()
    assert burst[-1] == 1_000_299
    assert again > burst[-1] and other > burst[-1]  # 1 s above the last lead saved (1_000_200)
    assert again == 1_000_200 + 1_000 + 1


def test_frames_that_share_a_millisecond_save_nothing(tmp_path):
    # A lead under AHEAD_REPORT_MS is gone before a restart is done: no write for it (a write
    # per collision would be a commit, and an fsync, every 100 ms of a busy stream).
    store = Store.open(tmp_path / "data")
    streams = make_streams(store, clock=lambda: 1000.0)
    stamps = [json.loads(streams.hub.frame("live", "g", None, {}))["timestamp"] for _ in range(50)]
    saved = store.read(lambda txn: txn.get("meta", b"streams.clock"))
    store.close()
    assert stamps[-1] == 1_000_049 and saved is None


async def test_concurrent_writes_are_published_in_commit_order(store):
    """200 tasks increment one item at once; subscribers must see 1, 2, ..., 200 in that order."""
    store.start_writer()
    streams = make_streams(store)
    sub = Sub()
    streams.hub.add(("todos", "g", "a"), sub)
    todos = streams.view().todos
    await todos.set("g", "a", {"title": "count", "done": False})
    sub.messages.clear()

    async def bump():
        await todos.update("g", "a", [{"type": "set", "path": "title", "value": "c"},
                                      {"type": "increment", "path": "n", "by": 1}])

    streams.streams["todos"].schema = None  # allow the counter field for this test
    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(bump)
    seen = [m["event"]["data"]["n"] for m in sub.messages]
    assert seen == list(range(1, 201))
    assert store.commits < 150, "the updates were not group-committed"


async def test_on_change_runs_inside_the_write_and_can_veto_it(store):
    store.start_writer()
    seen = []

    def on_change(txn, change):
        seen.append((change.kind, change.stream, change.group, change.id, change.data))
        txn.put("queue", b"trigger/" + change.id.encode(), b"1")  # stored atomically with the change
        if change.data and change.data.get("title") == "veto":
            raise RuntimeError("queue full")

    streams = make_streams(store, on_change=on_change, triggered={"todos", "live"})
    sub = Sub()
    streams.hub.add(("todos", "g", None), sub)
    todos = streams.view().todos
    await todos.set("g", "a", {"title": "ok"})
    with pytest.raises(RuntimeError, match="queue full"):
        await todos.set("g", "b", {"title": "veto"})
    await todos.delete("g", "a")
    await streams.view().live.set("g", "m", {"x": 1})
    assert [s[0] for s in seen] == ["create", "create", "delete", "create"]
    assert store.read(lambda t: [k for k, _ in t.scan("queue", b"trigger/")]) == [b"trigger/a", b"trigger/m"]
    assert await todos.get("g", "b") is None
    assert sub.types() == ["create", "delete"]  # the vetoed change was never published


async def test_untriggered_streams_do_not_call_on_change(store):
    store.start_writer()
    calls = []
    streams = make_streams(store, on_change=lambda t, c: calls.append(c), triggered={"live"})
    await streams.view().todos.set("g", "a", {"title": "x"})
    await streams.view().live.set("g", "a", {"x": 1})
    assert [c.stream for c in calls] == ["live"]


@pytest.mark.parametrize("name", ["todos", "live"])
async def test_answers_are_the_callers_copies(store, name):
    # Before: a memory stream answered its live item, so changing an answer changed the
    # stream (and the trigger message the writer had yet to store).
    store.start_writer()
    seen = []
    streams = make_streams(store, on_change=lambda t, c: seen.append(msgspec.json.decode(msgspec.json.encode(c.data))),
                           triggered={name})
    s = streams.view()[name]
    (await s.set("g", "a", {"title": "one"}))["title"] = "changed"
    (await s.get("g", "a"))["title"] = "changed"
    (await s.get_group("g"))[0]["title"] = "changed"
    (await s.update("g", "a", {"type": "set", "path": "done", "value": True}))["title"] = "changed"
    assert await s.get("g", "a") == {"title": "one", "id": "a", "done": True}
    (await s.delete("g", "a"))["title"] = "changed"
    assert [item["title"] for item in seen] == ["one", "one", "one"]
    assert streams.set_sync(name, "g", "b", {"title": "two"}) is not streams.set_sync(name, "g", "b", {"title": "two"})
    streams.set_sync(name, "g", "b", {"title": "two"})["title"] = "changed"
    assert await s.get("g", "b") == {"title": "two", "id": "b"}


async def test_a_threads_answer_is_its_own_before_the_loop_publishes_the_item(store):
    # A sync handler's write returns once committed; the loop publishes it afterwards. Before,
    # the thread got the very item being published: its change went out to the subscribers.
    store.start_writer()
    streams = make_streams(store)
    sub = Sub()
    streams.hub.add(("todos", "g", None), sub)
    changed = threading.Event()

    def handler_thread():
        streams.set_sync("todos", "g", "a", {"title": "mine"})["title"] = "changed"
        changed.set()

    thread = threading.Thread(target=handler_thread)
    thread.start()
    assert changed.wait(10)  # the loop thread is held here: it publishes after the change
    thread.join()
    with trio.fail_after(5):
        while not sub.messages:
            await trio.sleep(0.01)
    assert sub.messages[0]["event"]["data"] == {"title": "mine", "id": "a"}


async def test_a_memory_item_past_the_stored_limits_is_refused_before_it_is_kept(store):
    # Before: a memory stream kept and published 2**70, then its trigger message failed to store.
    store.start_writer()
    streams = make_streams(store, on_change=lambda t, c: None, triggered={"live"})
    sub = Sub()
    streams.hub.add(("live", "g", None), sub)
    live = streams.view().live
    with pytest.raises(StateError) as caught:
        await live.set("g", "a", {"n": 2 ** 70})
    assert str(caught.value) == ("ctx.streams.live.set: item 'a': an integer is out of range (stored integers "
                                 "must fit in -2**63 .. 2**64-1; send big numbers as strings)")
    assert await live.get("g", "a") is None
    await live.set("g", "a", {"n": 1})
    with pytest.raises(StateError, match=r"^ctx.streams.live.update: item 'a': an integer is out of range"):
        await live.update("g", "a", {"type": "set", "path": "n", "value": 2 ** 70})
    assert await live.get("g", "a") == {"n": 1, "id": "a"}
    assert sub.types() == ["create"]


def test_sync_calls_work_without_the_writer(store):
    streams = make_streams(store)
    sub = Sub()
    streams.hub.add(("todos", "g", None), sub)
    assert streams.set_sync("todos", "g", "a", {"title": "t"}) == {"title": "t", "id": "a"}
    assert streams.update_sync("todos", "g", "a", {"type": "set", "path": "done", "value": True})["done"] is True
    assert streams.delete_sync("todos", "g", "a")["id"] == "a"
    assert streams.set_sync("live", "g", "a", {"v": 1}) == {"v": 1, "id": "a"}
    assert sub.types() == ["create", "update", "delete"]


def test_matching_triggers_filters_by_stream_group_and_item():
    class Step:
        def __init__(self, name, *triggers):
            self.name = name
            self.triggers = triggers

    steps = [
        Step("any", StreamTrigger(index=0, stream_name="todos")),
        Step("group", StreamTrigger(index=0, stream_name="todos", group_id="g")),
        Step("item", StreamTrigger(index=0, stream_name="todos", group_id="g", item_id="b")),
        Step("other", StreamTrigger(index=0, stream_name="live")),
    ]
    names = lambda change: [s.name for s, _ in matching_triggers(steps, change)]  # noqa: E731
    assert names(StreamChange("todos", "g", "a")) == ["any", "group"]
    assert names(StreamChange("todos", "g", "b")) == ["any", "group", "item"]
    assert names(StreamChange("todos", "h", "b")) == ["any"]
    event = StreamChange("todos", "g", "b", "update", {"id": "b"}).event()
    assert event.stream_name == event["streamName"] == "todos"
    assert event.group_id == "g" and event.id == "b" and event.event == {"type": "update", "data": {"id": "b"}}


# --- stream triggers, end to end (durable, through the queue machinery) -----------------------

TRIGGER_PROJECT = {
    "steps/todos_stream.py": """
        config = {"name": "todos"}
    """,
    "steps/live_stream.py": """
        config = {"name": "live", "baseConfig": {"storageType": "memory"}}
    """,
    "steps/write_step.py": """
        config = {"name": "Write", "triggers": [
            {"type": "http", "method": "PUT", "path": "/s/:stream/:group/:id"},
            {"type": "http", "method": "DELETE", "path": "/s/:stream/:group/:id"},
        ]}

        async def handler(req, ctx):
            p = req.path_params
            stream = ctx.streams[p["stream"]]
            if req.method == "DELETE":
                await stream.delete(p["group"], p["id"])
            else:
                await stream.set(p["group"], p["id"], req.body)
            return {"status": 200, "body": {"trace": ctx.trace_id}}
    """,
    "steps/watch_step.py": """
        import edge.steps

        def not_a_draft(event, ctx):
            return not (event.event["data"] or {}).get("draft")

        config = {"name": "Watch", "triggers": [
            edge.steps.stream("todos", group_id="inbox", condition=not_a_draft),
            {"type": "stream", "streamName": "live", "itemId": "door"},
        ]}

        async def handler(event, ctx):
            n = await ctx.state.update("meta", "seq", [{"type": "increment", "path": "n"}])
            await ctx.state.set("seen", f"{n['n']:04d}", {
                "stream": event.stream_name, "group": event["groupId"], "id": event.id,
                "type": event.event["type"], "data": event["event"]["data"],
                "trace": ctx.trace_id, "is_stream": ctx.is_stream(),
            })
    """,
}


def test_stream_triggers_fire_durably_with_filters_conditions_and_the_writers_trace(tmp_path):
    from .conftest import EdgeServer, wait_for, write_project

    project = write_project(tmp_path / "app", TRIGGER_PROJECT)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as c:
            c.put("/s/todos/inbox/a", json={"title": "milk"}, headers={"x-trace-id": "trace-a"})
            c.put("/s/todos/inbox/b", json={"title": "plan", "draft": True})  # condition false
            c.put("/s/todos/work/c", json={"title": "report"})                 # another group
            c.put("/s/todos/inbox/a", json={"title": "oat milk"})
            c.delete("/s/todos/inbox/a")
            c.put("/s/live/house/window", json={"open": True})                 # another item
            c.put("/s/live/house/door", json={"open": True})

            def seen():
                items = c.get("/__edge/state", params={"group": "seen"}).json()["items"]
                return items if len(items) >= 4 else None

            items = wait_for(seen, timeout=10)
            events = [items[k] for k in sorted(items)]
            todos = [e for e in events if e["stream"] == "todos"]
            assert [(e["type"], e["id"], e["data"]) for e in todos] == [
                ("create", "a", {"title": "milk", "id": "a"}),
                ("update", "a", {"title": "oat milk", "id": "a"}),
                ("delete", "a", {"title": "oat milk", "id": "a"}),
            ]
            assert todos[0]["trace"] == "trace-a" and todos[0]["group"] == "inbox" and todos[0]["is_stream"]
            live = [e for e in events if e["stream"] == "live"]
            assert [(e["group"], e["id"], e["type"]) for e in live] == [("house", "door", "create")]
            time.sleep(0.3)
            assert len(c.get("/__edge/state", params={"group": "seen"}).json()["items"]) == 4
    finally:
        assert server.stop() == 0


def test_items_of_a_renamed_stream_are_kept_and_said_once_at_start(tmp_path):
    """A tester renamed feed -> news: the items stayed in the store with no word about them."""
    from .conftest import EdgeServer, write_project

    files = {
        "steps/feed_stream.py": 'config = {"name": "feed"}\n',
        "steps/write_step.py": TRIGGER_PROJECT["steps/write_step.py"],
    }
    project = write_project(tmp_path / "app", files)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as c:
            for group, id in (("a", "1"), ("a", "2"), ("b", "3")):
                assert c.put(f"/s/feed/{group}/{id}", json={"n": id}).status_code == 200
    finally:
        assert server.stop() == 0
    assert not [r for r in server.logs() if "belong to no stream" in r.get("msg", "")]
    (project / "steps" / "feed_stream.py").unlink()
    (project / "steps" / "news_stream.py").write_text('config = {"name": "news"}\n')
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as c:
            assert c.get("/__edge/health").status_code == 200
    finally:
        assert server.stop() == 0
    warned = [(r["level"], r["msg"]) for r in server.logs() if "belong to no stream" in r.get("msg", "")]
    assert warned == [("warn", '3 stored item(s) of stream "feed" belong to no stream of the project any more '
                               '(renamed or removed?); they are kept, and a stream named "feed" sees them again')]
