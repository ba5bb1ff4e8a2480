"""Durable queues: in-process on a real LMDB (timing on trio's MockClock), then a real server
for `POST /__edge/emit`, `edge emit` and `edge dlq`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

from edge.errors import EnqueueError, Retry, SchemaError
from edge.queues import NotFound
from edge.queues.dlq import list_dead
from edge.runtime import Runtime
from edge.settings import Settings
from edge.steps import Discovery, Step, parse_step_config, prepare_handler

from .conftest import EdgeServer, wait_for, write_project

#: The wall clock the tests give the queue service: virtual trio time after this instant.
EPOCH = 1_700_000_000.0


def wall() -> float:
    """EPOCH + trio's (virtual) time; off the trio thread (the store's writer) the last value."""
    try:
        wall.last = EPOCH + trio.current_time()
    except RuntimeError:
        pass
    return wall.last


wall.last = EPOCH


def make_step(config: dict, handler, file: str | None = None) -> Step:
    file = file or f"steps/{config['name'].lower()}_step.py"
    fields = parse_step_config(config, file=file)
    return Step(**fields, handler=handler, file=file, module="steps.x", call=prepare_handler(handler))


def queue_step(name: str, topic: str, handler, *, config: dict | None = None, input=None, **extra) -> Step:
    trigger = {"type": "queue", "topic": topic}
    if config:
        trigger["config"] = config
    if input is not None:
        trigger["input"] = input
    return make_step({"name": name, "triggers": [trigger], **extra}, handler)


class App:
    def __init__(self, runtime: Runtime, out: io.StringIO):
        self.runtime = runtime
        self.queues = runtime.queues
        self.out = out

    async def emit(self, topic, data, *, group=None, trace_id="trace-1"):
        return await self.queues.emit(topic, data, group=group, trace_id=trace_id)

    def logs(self, level: str | None = None) -> list[dict]:
        lines = [json.loads(line) for line in self.out.getvalue().splitlines() if line.startswith("{")]
        return [r for r in lines if level is None or r["level"] == level]

    def dead(self) -> list[dict]:
        return list_dead(self.runtime.store)

    def depth(self) -> int:
        return self.queues.health()["depth"]


@asynccontextmanager
async def running(tmp_path: Path, *steps: Step, writer: bool = False, **options):
    """The runtime with its queue service, on ``tmp_path/data``.

    Without ``writer`` the store writes on the event loop thread, so virtual time never
    advances while a commit is in flight (MockClock jumps whenever every task is blocked).
    """
    settings = Settings.from_env(env={}, dir=tmp_path, data_dir=tmp_path / "data")
    out = io.StringIO()
    if "window" in options:
        options["queue_window"] = options.pop("window")
    runtime = Runtime.open(settings, Discovery(project_dir=tmp_path, steps=tuple(steps)), out=out,
                           wall_clock=wall, **options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.serve if writer else runtime.queues.serve)
            yield App(runtime, out)
            nursery.cancel_scope.cancel()
    finally:
        runtime.close()


async def settle(app: App, *, until=None, limit: float = 1000) -> None:
    """Sleep (virtual time) until ``until()`` is true, or nothing is stored any more."""
    deadline = trio.current_time() + limit
    while trio.current_time() < deadline:
        if until() if until is not None else (app.depth() == 0 and not app.queues.committer.batch):
            return
        await trio.sleep(0.01)
    raise AssertionError("queue did not settle")


# -- delivery -------------------------------------------------------------------------------

async def test_every_subscriber_gets_its_own_copy_in_the_producers_trace(tmp_path, autojump_clock):
    got = []

    async def produce(req, ctx):
        await ctx.enqueue({"topic": "reading", "data": {"celsius": 21.5}})
        return {"status": 202}

    async def store_it(data, ctx):
        got.append(("store", data, ctx.trace_id, ctx.trigger))

    async def alert(data, ctx):
        got.append(("alert", data, ctx.trace_id, ctx.trigger))

    producer = make_step({"name": "Ingest", "triggers": [{"type": "http", "method": "POST", "path": "/r"}],
                          "enqueues": ["reading"]}, produce)
    async with running(tmp_path, producer, queue_step("Store", "reading", store_it),
                       queue_step("Alert", "reading", alert)) as app:
        await app.runtime.invoke(producer, producer.triggers[0], None, trace_id="trace-42")
        assert app.depth() == 2  # one copy per subscriber, durable when the enqueue returned
        await settle(app)
    assert sorted(got, key=lambda g: g[0]) == [
        ("alert", {"celsius": 21.5}, "trace-42", {"type": "queue", "index": 0, "topic": "reading"}),
        ("store", {"celsius": 21.5}, "trace-42", {"type": "queue", "index": 0, "topic": "reading"}),
    ]


async def test_a_struct_schema_hands_the_handler_an_instance(tmp_path, autojump_clock):
    class Reading(msgspec.Struct):
        sensor: str
        celsius: float

    got = []
    async with running(tmp_path, queue_step("S", "r", lambda data: got.append(data), input=Reading)) as app:
        await app.emit("r", {"sensor": "a", "celsius": 3})
        await settle(app)
    assert got == [Reading("a", 3.0)]


async def test_a_false_condition_acks_without_running_the_handler(tmp_path, autojump_clock):
    ran = []
    step = make_step({"name": "Hot", "triggers": [{
        "type": "queue", "topic": "r", "condition": lambda data, ctx: data["celsius"] > 30}]},
        lambda data: ran.append(data))
    async with running(tmp_path, step) as app:
        await app.emit("r", {"celsius": 10})
        await app.emit("r", {"celsius": 40})
        await settle(app)
        assert app.dead() == []
    assert ran == [{"celsius": 40}]


# -- retries, timeouts, delays (virtual time) ---------------------------------------------

async def test_exponential_backoff_then_dead_letter(tmp_path, autojump_clock):
    attempts = []

    async def flaky(data, ctx):
        attempts.append(trio.current_time() - start)
        raise ValueError("sensor offline")

    step = queue_step("Upload", "reading", flaky, config={"maxRetries": 3, "backoffDelayMs": 1000})
    async with running(tmp_path, step) as app:
        start = trio.current_time()
        await app.emit("reading", {"v": 1}, trace_id="trace-7")
        await settle(app)
        dead = app.dead()
    assert attempts == [0, 1, 3, 7]  # first try, then 1 s, 2 s, 4 s of backoff
    [entry] = dead
    assert entry["error_id"] and len(entry["error_id"]) == 12
    del entry["error_id"]
    assert entry == {
        "id": 1, "topic": "reading", "step": "Upload", "data": {"v": 1},
        "error": "ValueError: sensor offline", "attempts": 4, "failed_at": EPOCH + start + 7,
        "trace_id": "trace-7", "enqueued_at": EPOCH + start,
    }
    retries = [r["msg"] for r in app.logs("warn")]
    assert retries == ["Upload: attempt 1 of 4 failed; retrying in 1 s",
                       "Upload: attempt 2 of 4 failed; retrying in 2 s",
                       "Upload: attempt 3 of 4 failed; retrying in 4 s"]
    assert app.logs("error")[-1]["msg"] == (
        "Upload: message moved to the dead-letter queue after 4 attempt(s): ValueError: sensor offline; "
        "`edge dlq list` shows it, `edge dlq redrive` retries it")


async def test_fixed_backoff(tmp_path, autojump_clock):
    attempts = []

    def fail(data):
        attempts.append(trio.current_time())
        raise RuntimeError("no")

    step = queue_step("F", "t", fail, config={"maxRetries": 2, "backoffType": "fixed", "backoffDelayMs": 500})
    async with running(tmp_path, step) as app:
        start = trio.current_time()
        await app.emit("t", 1)
        await settle(app)
        assert app.dead()[0]["attempts"] == 3
    assert [t - start for t in attempts] == [0, 0.5, 1.0]


async def test_retry_exception_sets_the_delay_and_is_not_an_error(tmp_path, autojump_clock):
    attempts = []

    async def poll(data, ctx):
        attempts.append(trio.current_time() - start)
        if len(attempts) == 1:
            raise Retry(delay=30)

    async with running(tmp_path, queue_step("Poll", "job", poll)) as app:
        start = trio.current_time()
        await app.emit("job", {})
        await settle(app)
        assert app.logs("error") == [] and app.dead() == []
        [line] = app.logs("info")
        assert line["msg"] == "Poll: attempt 1 of 4 failed; retrying in 30 s"
    assert attempts == [0, 30]


async def test_a_handler_that_never_returns_times_out(tmp_path, autojump_clock):
    starts = []

    async def hang(data, ctx):
        starts.append(trio.current_time() - start)
        await trio.sleep_forever()

    step = queue_step("Hang", "t", hang, config={"timeout": 2, "maxRetries": 1, "backoffType": "fixed"})
    async with running(tmp_path, step) as app:
        start = trio.current_time()
        await app.emit("t", {})
        await settle(app)
        [dead] = app.dead()
        assert dead["error"] == "TimeoutError: the handler did not finish within 2 s"
        assert dead["attempts"] == 2 and dead["failed_at"] == EPOCH + start + 5
        assert [r["msg"] for r in app.logs("error")][0] == "Hang: TimeoutError: the handler did not finish within 2 s"
    assert starts == [0, 3]  # 2 s timeout + 1 s backoff


async def test_delay_seconds_holds_each_message_back(tmp_path, autojump_clock):
    handled = []
    step = queue_step("Later", "t", lambda data: handled.append((data, trio.current_time() - start)),
                      config={"delaySeconds": 10})
    async with running(tmp_path, step) as app:
        start = trio.current_time()
        await app.emit("t", "a")
        await trio.sleep(4)
        await app.emit("t", "b")
        await settle(app)
    assert handled == [("a", 10), ("b", 14)]


# -- FIFO ---------------------------------------------------------------------------------

async def test_fifo_keeps_order_per_group_and_a_failure_holds_back_only_its_group(tmp_path, autojump_clock):
    log = []
    failed = set()

    async def handle(data, ctx):
        log.append(("start", data, trio.current_time() - start))
        await trio.sleep(1)
        if data == "A2" and data not in failed:
            failed.add(data)
            raise RuntimeError("A2 fails once")
        log.append(("done", data, trio.current_time() - start))

    step = queue_step("Ordered", "o", handle, config={
        "type": "fifo", "concurrency": 5, "backoffType": "fixed", "backoffDelayMs": 5000})
    async with running(tmp_path, step) as app:
        start = trio.current_time()
        for i in range(1, 5):
            for group in "AB":
                await app.emit("o", f"{group}{i}", group=group)
        await settle(app)
    done = [(d, t) for kind, d, t in log if kind == "done"]
    assert [d for d, _ in done if d[0] == "A"] == ["A1", "A2", "A3", "A4"]
    assert [d for d, _ in done if d[0] == "B"] == ["B1", "B2", "B3", "B4"]
    assert dict(done) == {"A1": 1, "B1": 1, "B2": 2, "B3": 3, "B4": 4,  # B never waits for A
                          "A2": 8, "A3": 9, "A4": 10}  # A2 failed at 2, retried at 7


async def test_fifo_without_groups_is_one_at_a_time(tmp_path, autojump_clock):
    running_now, most = [0], [0]

    async def handle(data, ctx):
        running_now[0] += 1
        most[0] = max(most[0], running_now[0])
        await trio.sleep(0.1)
        running_now[0] -= 1
        order.append(data)

    order = []
    async with running(tmp_path, queue_step("One", "o", handle, config={"type": "fifo", "concurrency": 8})) as app:
        for i in range(20):
            await app.emit("o", i)
        await settle(app)
    assert order == list(range(20)) and most == [1]


async def test_standard_queue_runs_up_to_concurrency_at_once(tmp_path, autojump_clock):
    running_now, most = [0], [0]

    async def handle(data, ctx):
        running_now[0] += 1
        most[0] = max(most[0], running_now[0])
        await trio.sleep(1)
        running_now[0] -= 1

    async with running(tmp_path, queue_step("Par", "p", handle, config={"concurrency": 3})) as app:
        start = trio.current_time()
        for i in range(9):
            await app.emit("p", i)
        await settle(app)
        assert trio.current_time() - start == pytest.approx(3, abs=0.05)
    assert most == [3]


async def test_backlog_beyond_the_window_keeps_fifo_order(tmp_path, autojump_clock):
    order = []
    step = queue_step("Big", "b", lambda d: order.append(d), config={"type": "fifo"})
    async with running(tmp_path, step, window=16) as app:
        for i in range(300):
            await app.emit("b", i)
        await settle(app)
    assert order == list(range(300))


async def test_a_message_stored_behind_the_windows_back_is_delivered_before_the_next_commit(tmp_path, autojump_clock):
    # A committed batch goes to the window from memory; a message some other writer stored
    # in between (another process, a trigger run staged by a state change) must not be
    # skipped by that, nor delivered out of FIFO order.
    from edge.queues import records as R

    order = []
    step = queue_step("Seq", "s", lambda d: order.append(d), config={"type": "fifo"})
    async with running(tmp_path, step) as app:
        await app.emit("s", 1)
        await settle(app)  # the window has read everything stored
        out = app.queues.outgoing("s", 2, None, "trace-2")

        def another_writer(txn):  # what `edge emit` in another process writes; nobody is told
            seq = R.next_seq(txn, R.SEQ_KEY, 1)
            for sub, record in out.records:
                txn.put("queue", sub.prefix + seq.to_bytes(8, "big"), record)

        app.runtime.store.write_sync(another_writer)
        await app.emit("s", 3)
        await settle(app)
    assert order == [1, 2, 3]


async def test_a_blocked_group_with_a_backlog_beyond_the_window_does_not_starve_others(tmp_path, autojump_clock):
    handled = []

    async def handle(data, ctx):
        if data == "A0" and not handled:
            handled.append(("A0-failed", trio.current_time() - start))
            raise RuntimeError("first A fails")
        handled.append((data, trio.current_time() - start))

    step = queue_step("Fair", "f", handle, config={
        "type": "fifo", "concurrency": 2, "maxRetries": 1, "backoffType": "fixed", "backoffDelayMs": 100_000})
    async with running(tmp_path, step, window=8) as app:
        start = trio.current_time()
        for i in range(40):
            await app.emit("f", f"A{i}", group="A")
        for i in range(3):
            await app.emit("f", f"B{i}", group="B")
        await trio.sleep(50)
        assert [d for d, _ in handled] == ["A0-failed", "B0", "B1", "B2"]  # B ran during A's backoff
        await settle(app)
    assert [d for d, _ in handled if d.startswith("A")] == ["A0-failed"] + [f"A{i}" for i in range(40)]
    assert dict(handled)["A0"] == 100


# -- the outbox ---------------------------------------------------------------------------

async def test_enqueues_of_a_failed_attempt_are_never_delivered(tmp_path, autojump_clock):
    attempts, downstream = [], []

    async def relay(data, ctx):
        attempts.append(data)
        await ctx.enqueue({"topic": "out", "data": {"attempt": len(attempts)}})
        if len(attempts) == 1:
            raise RuntimeError("crash after enqueueing")

    async with running(tmp_path, queue_step("Relay", "in", relay, enqueues=["out"]),
                       queue_step("Sink", "out", lambda d: downstream.append(d))) as app:
        await app.emit("in", "x")
        await settle(app)
    assert len(attempts) == 2
    assert downstream == [{"attempt": 2}]


async def test_messages_and_their_attempts_survive_a_restart(tmp_path, autojump_clock):
    calls = []

    async def fail(data, ctx):
        calls.append(data)
        raise RuntimeError(f"fail {len(calls)}")

    step = queue_step("Fail", "t", fail, config={"maxRetries": 1, "backoffDelayMs": 60_000})
    settings = Settings.from_env(env={}, dir=tmp_path, data_dir=tmp_path / "data")
    # 1. stored while nothing consumes (the service is not serving: a plain durable write)
    runtime = Runtime.open(settings, Discovery(project_dir=tmp_path, steps=(step,)), out=io.StringIO(),
                           wall_clock=wall)
    service = runtime.queues
    await service.emit("t", "m1", trace_id="t1")
    await service.emit("t", "m2", trace_id="t2")
    runtime.close()
    # 2. both delivered, both fail once; stopped during the backoff
    async with running(tmp_path, step) as app:
        await trio.sleep(1)
        assert calls == ["m1", "m2"] and app.depth() == 2
    # 3. the retry keeps its due time (60 s after the failure, 1 s of which passed before
    #    the restart) and its attempt count: it fails once more and is dead
    async with running(tmp_path, step) as app:
        start = trio.current_time()
        await settle(app)
        assert trio.current_time() - start == pytest.approx(59, abs=0.05)
        assert [(d["data"], d["attempts"], d["error"]) for d in app.dead()] == [
            ("m1", 2, "RuntimeError: fail 3"), ("m2", 2, "RuntimeError: fail 4")]


async def test_a_retry_keeps_the_delay_it_asked_for_across_a_restart(tmp_path, autojump_clock):
    # Before: on reload the wait was capped at the configured backoff (1 s here), so a restart
    # turned "retry in 10 minutes" into a retry at once.
    calls = []

    async def later(data, ctx):
        calls.append(trio.current_time())
        if len(calls) == 1:
            raise Retry(delay=600)

    step = queue_step("Later", "t", later, config={"backoffDelayMs": 1_000})
    async with running(tmp_path, step) as app:
        await app.emit("t", "m1")
        await trio.sleep(5)
        assert len(calls) == 1 and app.depth() == 1
    async with running(tmp_path, step) as app:
        start = trio.current_time()
        await settle(app)
        assert len(calls) == 2 and app.depth() == 0
        assert calls[1] - start == pytest.approx(595, abs=0.05)  # 600 s after the Retry, 5 of them before


# -- dead letters ---------------------------------------------------------------------------

async def test_poison_message_to_dead_letters_then_redrive(tmp_path, autojump_clock):
    broken = [True]
    handled = []

    def handle(data):
        if broken[0]:
            raise ValueError(f"cannot parse {data['raw']!r}")
        handled.append(data)

    step = queue_step("Parse", "raw", handle, config={"maxRetries": 0})
    async with running(tmp_path, step) as app:
        await app.emit("raw", {"raw": "??"}, trace_id="trace-p")
        await settle(app)
        [dead] = app.dead()
        assert (dead["id"], dead["error"], dead["attempts"], dead["trace_id"]) == (1, "ValueError: cannot parse '??'", 1, "trace-p")
        assert app.queues.health()["dead_letters"] == 1

        with pytest.raises(NotFound) as info:
            await app.queues.redrive(dlq_id=99)
        assert str(info.value) == "no dead letter with id 99; `edge dlq list` shows the ids"

        broken[0] = False
        with pytest.raises(NotFound) as info:  # it answered "redriven: 0" as for a known step
            await app.queues.redrive(step="Other")
        assert str(info.value) == ("no dead letters of step 'Other', and no step of that name has a queue trigger "
                                   "(steps that do: Parse); `edge dlq list` shows whose dead letters there are")
        assert await app.queues.redrive(dlq_id=1) == {"count": 1, "redriven": [1], "skipped_count": 0, "skipped": []}
        await settle(app)
        assert app.dead() == [] and handled == [{"raw": "??"}]
        assert app.queues.health()["dead_letters"] == 0


async def test_a_cancelled_error_a_handler_raises_under_plain_trio_is_its_failure(tmp_path, autojump_clock):
    # No asyncio loop at all (this harness): telling edge's cancellations from the handler's
    # own must not fail (it raised RuntimeError inside the boundary and the message stuck).
    import asyncio

    def handle(data):
        raise asyncio.CancelledError()

    async with running(tmp_path, queue_step("Cancels", "c", handle, config={"maxRetries": 0})) as app:
        await app.emit("c", {"n": 1})
        await settle(app)
        assert [(d["step"], d["error"]) for d in app.dead()] == [("Cancels", "CancelledError")]


async def test_two_redrives_of_one_dead_letter_in_one_batch_report_one_move(tmp_path, autojump_clock):
    # Both reach the open batch before it commits; the letter moves once and one of them says so
    # (both answered "redriven" when the batch's moved keys were shared).
    def handle(data):
        raise ValueError("still broken")

    async with running(tmp_path, queue_step("Parse", "raw", handle, config={"maxRetries": 0})) as app:
        await app.emit("raw", {"raw": "??"})
        await settle(app)
        assert [d["id"] for d in app.dead()] == [1]
        answers = []

        async def redrive():
            try:
                answers.append(await app.queues.redrive(dlq_id=1))
            except NotFound as exc:
                answers.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(redrive)
            nursery.start_soon(redrive)
        assert sorted(map(str, answers)) == sorted(map(str, [
            {"count": 1, "redriven": [1], "skipped_count": 0, "skipped": []}, "no dead letter with id 1; `edge dlq list` shows the ids"]))


# -- enqueue errors -----------------------------------------------------------------------

async def test_enqueue_errors_name_the_problem_and_store_nothing(tmp_path, autojump_clock):
    problems = []

    async def produce(req, ctx):
        for event in req:
            try:
                await ctx.enqueue(event)
            except (EnqueueError, SchemaError) as exc:
                problems.append((type(exc).__name__, str(exc), getattr(exc, "errors", None)))

    schema = {"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["title"]}
    producer = make_step({"name": "Create", "triggers": [{"type": "http", "method": "POST", "path": "/c"}],
                          "enqueues": ["todo.created", "todo.other"]}, produce, file="steps/create_step.py")
    async with running(tmp_path, producer, queue_step("Process", "todo.created", lambda d: None, input=schema)) as app:
        _, ctx = await app.runtime.invoke(producer, producer.triggers[0], [
            {"topic": "todo.deleted", "data": {}},
            {"topic": "todo.created", "data": {"title": 5, "n": "x"}},
            {"topic": "todo.created", "data": {"title": "ok"}, "groupId": "g"},
            {"data": {}},
            "todo.created",
            {"topic": "todo.created", "data": {"title": "ok"}, "messageGroupId": 7},
            {"topic": "todo.created", "data": {"title": object()}},
        ], trace_id="t")
        assert app.depth() == 0
    assert problems == [
        ("EnqueueError", 'steps/create_step.py: step "Create" enqueued to topic "todo.deleted", which is not in its '
                         'enqueues ["todo.created", "todo.other"]; add "todo.deleted" to config["enqueues"] or enqueue to a declared topic', None),
        ("SchemaError", 'ctx.enqueue("todo.created"): data does not match the input schema of step "Process" '
                        '(steps/process_step.py): $.title: expected string, got integer; $.n: expected integer, got string',
         [{"path": "$.title", "message": "expected string, got integer"}, {"path": "$.n", "message": "expected integer, got string"}]),
        ("EnqueueError", 'ctx.enqueue: unknown key "groupId"; did you mean "messageGroupId"? the keys are "topic", '
                         '"data" and "messageGroupId"', None),
        ("EnqueueError", 'ctx.enqueue: "topic" is required, e.g. {"topic": "todo.created", "data": {...}}', None),
        ("EnqueueError", 'ctx.enqueue: expected a dict like {"topic": "todo.created", "data": {...}}, got "todo.created"', None),
        ("EnqueueError", 'ctx.enqueue: "messageGroupId": expected a string, got 7', None),
        ("EnqueueError", 'ctx.enqueue("todo.created"): data: cannot convert a value of type object to JSON; use dict, list, str, '
                         'int, float, bool, None, a msgspec.Struct or a pydantic model', None),
    ]


async def test_a_topic_nobody_subscribes_to_is_dropped_with_one_warning(tmp_path, autojump_clock):
    async def produce(req, ctx):
        await ctx.enqueue({"topic": "nobody.listens", "data": 1})
        await ctx.enqueue({"topic": "nobody.listens", "data": 2})

    producer = make_step({"name": "P", "triggers": [{"type": "http", "method": "POST", "path": "/p"}]}, produce)
    async with running(tmp_path, producer) as app:
        await app.runtime.invoke(producer, producer.triggers[0], None, trace_id="t")
        assert app.depth() == 0
        assert [r["msg"] for r in app.logs("warn")] == [
            'step "P" enqueued to topic "nobody.listens", which no step subscribes to; the message was dropped '
            "(counted under queues.unrouted in /__edge/health)"]
        assert app.queues.health()["unrouted"] == {"nobody.listens": 2}


# -- stream triggers ride the same machinery ------------------------------------------------

@pytest.mark.parametrize("writer", [False, True], ids=["inline-writes", "writer-thread"])
async def test_stream_trigger_invocations_are_durable_retried_and_in_order(tmp_path, autojump_clock, writer):
    from edge.steps import StreamDef

    seen = []

    async def on_change(event, ctx):
        seen.append((event.event["type"], event.id, event.event["data"]["v"], ctx.trigger["type"]))
        if len(seen) == 1:
            raise RuntimeError("first delivery fails")

    step = make_step({"name": "Watch", "triggers": [{"type": "stream", "streamName": "sensors", "groupId": "g"}]},
                     on_change)
    settings = Settings.from_env(env={}, dir=tmp_path, data_dir=tmp_path / "data")
    runtime = Runtime(settings, Discovery(project_dir=tmp_path, steps=(step,), streams=(StreamDef(name="sensors"),)),
                      *_store_and_tracer(settings), wall_clock=wall)
    service = runtime.queues
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.serve if writer else service.serve)
            await runtime.streams.set("sensors", "g", "a", {"v": 1})
            await runtime.streams.set("sensors", "g", "a", {"v": 2})
            await runtime.streams.set("sensors", "other", "b", {"v": 3})  # not this trigger's group
            # Virtual time jumps while the writer thread commits: wait for the outcome itself.
            for _ in range(2000):
                if len(seen) >= 3 and service.health()["depth"] == 0 and not service.committer.batch:
                    break
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert service.health()["depth"] == 0
    finally:
        runtime.close()
    # the failed first change is retried before the second one runs (FIFO per item)
    assert seen == [("create", "a", 1, "stream"), ("create", "a", 1, "stream"), ("update", "a", 2, "stream")]


async def test_a_stored_state_run_for_a_group_the_trigger_no_longer_watches_is_skipped(tmp_path, autojump_clock):
    # Before: the trigger's group was changed from "old" to "new" while a run for a change of
    # group "old" was stored; the handler got it anyway at the next start.
    seen = []

    def watch(group: str) -> Step:
        return make_step({"name": "Watch", "triggers": [{"type": "state", "group": group}]},
                         lambda event: seen.append((event.group_id, event.item_id)))

    settings = Settings.from_env(env={}, dir=tmp_path, data_dir=tmp_path / "data")
    runtime = Runtime.open(settings, Discovery(project_dir=tmp_path, steps=(watch("old"),)), out=io.StringIO())
    await runtime.state.set("old", "k1", 1)  # stored, not delivered: the queues do not run
    runtime.close()
    async with running(tmp_path, watch("new")) as app:
        await app.runtime.state.set("new", "k2", 2)
        await settle(app)
        assert seen == [("new", "k2")]
        assert [line["msg"] for line in app.logs("info") if "skipped" in line["msg"]] == [
            'Watch: a stored run for the state change of group "old" key "k1" was skipped: triggers[0] no '
            "longer watches it"]


def _store_and_tracer(settings):
    from edge.store import Store
    from edge.tracing import Tracer

    store = Store.open(settings.data_dir)
    return store, Tracer(store, out=io.StringIO())


# -- health, group commit -------------------------------------------------------------------

async def test_health_shows_depth_in_flight_and_dead_letters(tmp_path, autojump_clock):
    gate = trio.Event()

    async def slow(data, ctx):
        if data == "poison":
            raise ValueError("bad")
        await gate.wait()

    async with running(tmp_path, queue_step("Slow", "s", slow, config={"concurrency": 2, "maxRetries": 0})) as app:
        for data in ("poison", "a", "b", "c"):
            await app.emit("s", data)
        await trio.sleep(1)
        health = app.runtime.health()["queues"]
        assert (health["depth"], health["in_flight"], health["dead_letters"]) == (3, 2, 1)
        assert health["subscriptions"] == [{"step": "Slow", "topic": "s", "type": "standard", "depth": 3,
                                            "in_flight": 2, "retrying": 0, "handled": 0, "failed_attempts": 1}]
        gate.set()
        await settle(app)
        assert app.queues.health()["depth"] == 0


async def test_acks_and_enqueues_share_group_commits(tmp_path):
    handled = []
    async with running(tmp_path, queue_step("Count", "c", lambda d: handled.append(d)), writer=True) as app:
        async def producer(k):
            for i in range(k, 3000, 50):
                await app.emit("c", i)

        async with trio.open_nursery() as nursery:
            for k in range(50):
                nursery.start_soon(producer, k)
        with trio.fail_after(10):
            await settle(app, until=lambda: len(handled) == 3000)
        commits = app.runtime.store.commits
    assert sorted(handled) == list(range(3000))
    assert commits < 3000 / 20, f"{commits} commits for 3000 messages: not batched"


# -- over a real server ---------------------------------------------------------------------

SERVER_PROJECT = {
    "steps/record_step.py": """
        config = {
            "name": "Record",
            "triggers": [{"type": "queue", "topic": "jobs", "input": {
                "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}],
        }

        async def handler(data, ctx):
            await ctx.state.set("jobs", data["id"], {"trace": ctx.trace_id})
    """,
    "steps/poison_step.py": """
        config = {
            "name": "Poison",
            "triggers": [{"type": "queue", "topic": "poison", "config": {"maxRetries": 0}}],
        }

        async def handler(data, ctx):
            if not (ctx.state and await ctx.state.get("fixed", "poison")):
                raise ValueError("still broken")
            await ctx.state.set("jobs", data["id"], {"trace": ctx.trace_id})
    """,
}


def edge_cli(*args, data_dir: Path, project: Path, port: int | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edge", *args, "--dir", str(project), "--data-dir", str(data_dir),
           "--port", str(port or 9)]  # port 9 (discard): nothing listens, so the CLI opens --data-dir
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def state_of(server: EdgeServer, group: str) -> dict:
    with server.client() as client:
        return client.get("/__edge/state", params={"group": group}).json()["items"]


def test_emit_endpoint_cli_and_dlq_over_a_real_server(tmp_path):
    project = write_project(tmp_path / "app", SERVER_PROJECT)
    data = tmp_path / "data"
    server = EdgeServer(project, data).start()
    try:
        with server.client() as client:
            r = client.post("/__edge/emit", json={"topic": "jobs", "data": {"id": "h1"}}, headers={"x-trace-id": "trace-h1"})
            assert (r.status_code, r.json()) == (202, {"topic": "jobs", "steps": ["Record"], "trace_id": "trace-h1"})
            r = client.post("/__edge/emit", json={"topic": "nope", "data": {}})
            assert r.status_code == 404
            assert r.json()["detail"] == ('no step subscribes to topic "nope"; nothing was stored '
                                          '(topics with subscribers: "jobs", "poison")')
            r = client.post("/__edge/emit", json={"topic": "jobs", "data": {"id": 5}})
            assert r.status_code == 400
            assert r.json()["errors"] == [{"path": "$.id", "message": "expected string, got integer"}]
            r = client.post("/__edge/emit", json={"topic": "jobs"})
            assert r.status_code == 400
        wait_for(lambda: "h1" in state_of(server, "jobs"))
        assert state_of(server, "jobs")["h1"] == {"trace": "trace-h1"}

        out = edge_cli("emit", "--topic", "jobs", "--message", '{"id": "c1"}', data_dir=data, project=project, port=server.port)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith('enqueued to "jobs" for Record (trace ')
        wait_for(lambda: "c1" in state_of(server, "jobs"))

        out = edge_cli("emit", "--topic", "jobs", "--message", "{id: 1}", data_dir=data, project=project, port=server.port)
        assert out.returncode == 2
        assert out.stderr == ("edge emit: --message must be JSON, e.g. --message '{\"id\": 1}': "
                              "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n")

        out = edge_cli("emit", "--topic", "poison", "--message", '{"id": "p1"}', data_dir=data, project=project, port=server.port)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: server.client().get("/__edge/health").json()["queues"]["dead_letters"] == 1)
        out = edge_cli("dlq", "list", "--json", data_dir=data, project=project, port=server.port)
        [entry] = [json.loads(line) for line in out.stdout.splitlines()]
        assert {k: entry[k] for k in ("id", "topic", "step", "data", "error", "attempts")} == {
            "id": 1, "topic": "poison", "step": "Poison", "data": {"id": "p1"},
            "error": "ValueError: still broken", "attempts": 1}
        assert set(entry) >= {"failed_at", "trace_id"}

        out = edge_cli("dlq", "redrive", "--id", "7", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stderr) == (1, "edge dlq: no dead letter with id 7; `edge dlq list` shows the ids\n")

        with server.client() as client:
            client.post("/__edge/state", json={"group": "fixed", "key": "poison", "value": True})
        out = edge_cli("dlq", "redrive", "--step", "Poison", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout) == (0, "redriven: 1\n")
        wait_for(lambda: "p1" in state_of(server, "jobs"))
        assert state_of(server, "jobs")["p1"] == {"trace": entry["trace_id"]}  # same trace after redrive
    finally:
        server.kill()



def test_emit_endpoint_takes_a_list_stored_all_or_none(tmp_path):
    from edge.queues.endpoints import MAX_EMIT

    project = write_project(tmp_path / "app", SERVER_PROJECT)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as client:
            r = client.post("/__edge/emit", json=[{"topic": "jobs", "data": {"id": "b1"}},
                                                  {"topic": "jobs", "data": {"id": "b2"}, "messageGroupId": "g"}])
            assert r.status_code == 202
            answer = r.json()
            assert answer["accepted"] == 2
            assert [(m["topic"], m["steps"]) for m in answer["messages"]] == [("jobs", ["Record"])] * 2
            traces = [m["trace_id"] for m in answer["messages"]]
            assert len(set(traces)) == 2  # each event its own trace
            wait_for(lambda: {"b1", "b2"} <= set(state_of(server, "jobs")))
            assert [state_of(server, "jobs")[id]["trace"] for id in ("b1", "b2")] == traces

            r = client.post("/__edge/emit", json=[{"topic": "jobs", "data": {"id": "t1"}}] * 2,
                            headers={"x-trace-id": "trace-batch"})
            assert [m["trace_id"] for m in r.json()["messages"]] == ["trace-batch"] * 2

            # one bad event: a 400 (or 404) that names it, and none of the others is stored
            r = client.post("/__edge/emit", json=[{"topic": "jobs", "data": {"id": "n1"}},
                                                  {"topic": "jobs", "data": {"id": 5}}])
            assert (r.status_code, r.json()) == (400, {
                "error": 'emit[1]("jobs"): data does not match the input schema of step "Record" '
                         '(steps/record_step.py): $.id: expected string, got integer; none of the 2 events was stored',
                "errors": [{"path": "$.id", "message": "expected string, got integer"}]})
            r = client.post("/__edge/emit", json=[{"topic": "jobs", "data": {"id": "n2"}},
                                                  {"topic": "nope", "data": {}}])
            assert r.status_code == 404
            assert r.json()["detail"] == ('emit[1]: no step subscribes to topic "nope"; none of the 2 events was '
                                          'stored (topics with subscribers: "jobs", "poison")')
            r = client.post("/__edge/emit", json=[{"topic": "jobs", "data": {"id": "n3"}}, {"data": {}}])
            assert (r.status_code, r.json()["detail"]) == (
                400, 'emit[1]: "topic" is required, e.g. {"topic": "todo.created", "data": {...}}; '
                     'none of the 2 events was stored')

            r = client.post("/__edge/emit", json=[])
            assert (r.status_code, r.json()["detail"]) == (400, f"POST /__edge/emit takes a list of 1 to {MAX_EMIT} "
                                                                "events, got 0")
            r = client.post("/__edge/emit", json=[{"topic": "jobs", "data": {"id": "n4"}}] * (MAX_EMIT + 1))
            assert (r.status_code, r.json()["detail"]) == (
                400, f"POST /__edge/emit takes a list of 1 to {MAX_EMIT} events, got {MAX_EMIT + 1}; "
                     "send them in several requests")

            # what was refused never arrives: a last good emit is handled after all of them
            client.post("/__edge/emit", json={"topic": "jobs", "data": {"id": "last"}})
            wait_for(lambda: "last" in state_of(server, "jobs"))
            assert set(state_of(server, "jobs")) == {"b1", "b2", "t1", "last"}
    finally:
        server.kill()

async def test_the_testing_kit_records_an_emitted_list_only_once_it_is_stored(tmp_path):
    # Before: app.enqueued("jobs") listed the first event of a list that was refused whole.
    from edge.testing import App

    async with App(write_project(tmp_path / "app", SERVER_PROJECT)) as app:
        refused = await app.http("POST", "/__edge/emit", json=[{"topic": "jobs", "data": {"id": "n1"}},
                                                               {"topic": "jobs", "data": {"id": 5}}])
        assert (refused.status, app.enqueued("jobs")) == (400, [])
        await app.http("POST", "/__edge/emit", json=[{"topic": "jobs", "data": {"id": "a"}},
                                                     {"topic": "jobs", "data": {"id": "b"}}])
        assert app.enqueued("jobs") == [{"id": "a"}, {"id": "b"}]


def dead_poison(tmp_path: Path, id: str, *, fixed: bool = False) -> tuple[Path, Path]:
    """SERVER_PROJECT with one dead letter of step Poison (``fixed``: and Poison then mended);
    ``(project, data dir)``, no server running."""
    project = write_project(tmp_path / "app", SERVER_PROJECT)
    data = tmp_path / "data"
    server = EdgeServer(project, data).start()
    with server.client() as client:
        client.post("/__edge/emit", json={"topic": "poison", "data": {"id": id}})
        wait_for(lambda: client.get("/__edge/health").json()["queues"]["dead_letters"] == 1)
        if fixed:
            client.post("/__edge/state", json={"group": "fixed", "key": "poison", "value": True})
    assert server.stop() == 0
    return project, data


def test_a_redrive_that_skips_everything_it_was_asked_for_exits_1(tmp_path):
    # Before: `redriven: 0`, the reason on stderr, and exit code 0 (a script saw success).
    project, data = dead_poison(tmp_path, "p3")
    step = project / "steps" / "poison_step.py"
    step.write_text(step.read_text().replace('"name": "Poison"', '"name": "Antidote"'))
    server = EdgeServer(project, data).start()
    try:
        out = edge_cli("dlq", "redrive", "--id", "1", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout, out.stderr) == (
            1, "redriven: 0\n", 'skipped 1: step "Poison" no longer subscribes to "poison"; redrive it to the step '
                                 'that handles it now with --to STEP, or delete it (edge dlq delete --id 1)\n')
    finally:
        server.kill()


def test_emit_and_dlq_without_a_server_work_on_the_data_dir(tmp_path):
    project, data = dead_poison(tmp_path, "p2", fixed=True)

    out = edge_cli("dlq", "list", data_dir=data, project=project)
    assert out.returncode == 0 and "Poison" in out.stdout and "ValueError: still broken" in out.stdout
    out = edge_cli("emit", "--topic", "jobs", "--message", '{"id": "offline"}', data_dir=data, project=project)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('stored for "jobs" (Record) in ')
    out = edge_cli("emit", "--topic", "nope", "--message", "{}", data_dir=data, project=project)
    assert (out.returncode, out.stderr) == (1, 'edge emit: no step subscribes to topic "nope"; nothing was stored '
                                               '(topics with subscribers: "jobs", "poison")\n')
    out = edge_cli("emit", "--topic", "jobs", "--message", '{"id": 1}', data_dir=data, project=project)
    assert (out.returncode, out.stderr) == (1, 'edge emit: emit("jobs"): data does not match the input schema of step '
                                               '"Record" (steps/record_step.py): $.id: expected string, got integer\n')
    out = edge_cli("dlq", "redrive", data_dir=data, project=project)
    assert (out.returncode, out.stdout) == (0, "redriven: 1\n")

    server = EdgeServer(project, data).start()
    try:
        wait_for(lambda: {"offline", "p2"} <= set(state_of(server, "jobs")))
        health = server.client().get("/__edge/health").json()["queues"]
        assert (health["depth"], health["dead_letters"]) == (0, 0)
    finally:
        server.kill()


async def test_messages_stored_under_a_delay_the_step_dropped_are_due_at_once(tmp_path):
    # delaySeconds 3600 removed from the step while delayed messages are stored: the loader
    # waited min(due - now, 0) = 0 s at a time, rescanning LMDB ~12,000 times a second on the
    # loop thread for the hour, and delivered nothing until then. (Real clock: that spin never
    # lets a virtual one advance.)
    got = []
    delayed = queue_step("D", "d", lambda d: got.append(d), config={"delaySeconds": 3600})
    settings = Settings.from_env(env={}, dir=tmp_path, data_dir=tmp_path / "data")
    runtime = Runtime.open(settings, Discovery(project_dir=tmp_path, steps=(delayed,)), out=io.StringIO())
    await runtime.queues.emit("d", 1, trace_id="t")
    runtime.close()
    plain = queue_step("D", "d", lambda d: got.append(d))  # the same step, without delaySeconds
    async with running(tmp_path, plain):
        with trio.move_on_after(10):
            while not got:
                await trio.sleep(0.01)
    assert got == [1]
