"""Dead letters and stored messages of a step that was renamed or removed: `edge dlq redrive`
refuses to strand them (and says the fix), `--to STEP` moves them to the step that handles
them now, `edge dlq delete` removes them, `edge dlq orphans [--move]` shows the messages no
command showed and turns them into dead letters. Real LMDB in ``tmp_path``, the real CLI and
servers in subprocesses, through the server and on the data directory."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from edge.queues import records as R
from edge.store import Store

from .conftest import EdgeServer, wait_for, write_project
from .test_dlq_limits import CLI_MARGIN_KB, cli
from .test_queues import SERVER_PROJECT, edge_cli, state_of

#: The step before the rename: every message of "orders" fails at once (a dead letter).
WORKER = """
    config = {
        "name": "Worker",
        "triggers": [{"type": "queue", "topic": "orders", "config": {"type": "fifo", "maxRetries": 0}}],
    }

    async def handler(data, ctx):
        raise ValueError("still broken")
"""
#: The same file after the rename (and the fix): it appends each order to state log/orders,
#: with the trace it ran in.
ORDER_WORKER = """
    config = {
        "name": "OrderWorker",
        "triggers": [{"type": "queue", "topic": "orders", "config": {"type": "fifo"}}],
    }

    async def handler(data, ctx):
        seen = await ctx.state.get("log", "orders") or []
        await ctx.state.set("log", "orders", seen + [{"id": data["id"], "trace": ctx.trace_id}])
"""
#: A step on two topics: --to Audit must say which.
AUDIT = """
    config = {
        "name": "Audit",
        "triggers": [{"type": "queue", "topic": "orders.audit"}, {"type": "queue", "topic": "orders.legacy"}],
    }

    async def handler(data, ctx):
        await ctx.state.set("audit", data["id"], {"trace": ctx.trace_id})
"""
GONE = ('step "Worker" no longer subscribes to "orders"; redrive it to the step that handles it now with '
        "--to STEP, or delete it (edge dlq delete --id {})")


def project_with(tmp_path: Path, worker: str) -> Path:
    return write_project(tmp_path / "app", {"steps/worker_step.py": worker, "steps/audit_step.py": AUDIT})


def rename_worker(project: Path) -> None:
    (project / "steps" / "worker_step.py").write_text(ORDER_WORKER.replace("\n    ", "\n").lstrip())


def dead_orders(tmp_path: Path, *ids: str) -> tuple[Path, Path]:
    """Dead letters 1.. of step Worker on "orders" (one per id, in order), then Worker renamed
    OrderWorker (and fixed); no server running. ``(project, data dir)``."""
    project, data = project_with(tmp_path, WORKER), tmp_path / "data"
    server = EdgeServer(project, data).start()
    try:
        with server.client() as client:
            for n, id in enumerate(ids, 1):
                client.post("/__edge/emit", json={"topic": "orders", "data": {"id": id}},
                            headers={"x-trace-id": f"trace-{id}"})
                wait_for(lambda n=n: client.get("/__edge/health").json()["queues"]["dead_letters"] == n)
    finally:
        assert server.stop() == 0
    rename_worker(project)
    return project, data


def dead_letters(data: Path, project: Path) -> list[dict]:
    out = edge_cli("dlq", "list", "--json", data_dir=data, project=project)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def handled(server: EdgeServer, count: int) -> list[dict]:
    """State log/orders once OrderWorker has handled ``count`` orders."""
    wait_for(lambda: len(state_of(server, "log").get("orders", [])) >= count)
    return state_of(server, "log")["orders"]


# -- 1. a redrive never strands a dead letter -----------------------------------------------

def test_offline_redrive_of_a_renamed_steps_dead_letter_refuses_and_says_the_fix(tmp_path):
    # Before: `redriven: 1`, exit 0, and the message waited under a subscription nobody has,
    # where no command showed it.
    project, data = dead_orders(tmp_path, "a1")
    for args in (("--id", "1"), ("--step", "Worker"), ()):
        out = edge_cli("dlq", "redrive", *args, data_dir=data, project=project)
        assert (out.returncode, out.stdout, out.stderr) == (1, "redriven: 0\n", f"skipped 1: {GONE.format(1)}\n")
    assert [d["id"] for d in dead_letters(data, project)] == [1]  # still a dead letter
    server = EdgeServer(project, data).start()
    try:
        queues = server.client().get("/__edge/health").json()["queues"]
        assert (queues["depth"], queues["dead_letters"], queues["orphaned"]) == (0, 1, {})
        out = edge_cli("dlq", "redrive", "--id", "1", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout, out.stderr) == (1, "redriven: 0\n", f"skipped 1: {GONE.format(1)}\n")
    finally:
        server.kill()


# -- 2. redrive --to STEP -------------------------------------------------------------------

def test_redrive_to_the_renamed_step_offline_and_through_the_server_keeps_data_trace_and_order(tmp_path):
    project, data = dead_orders(tmp_path, "a1", "a2", "a3")
    out = edge_cli("dlq", "redrive", "--id", "2", "--to", "OrderWorker", data_dir=data, project=project)
    assert (out.returncode, out.stdout, out.stderr) == (0, "redriven: 1\n", "")
    assert [d["id"] for d in dead_letters(data, project)] == [1, 3]
    server = EdgeServer(project, data).start()
    try:
        assert handled(server, 1) == [{"id": "a2", "trace": "trace-a2"}]
        out = edge_cli("dlq", "redrive", "--step", "Worker", "--to", "OrderWorker", data_dir=data, project=project,
                       port=server.port)
        assert (out.returncode, out.stdout, out.stderr) == (0, "redriven: 2\n", "")
        assert handled(server, 3) == [{"id": "a2", "trace": "trace-a2"}, {"id": "a1", "trace": "trace-a1"},
                                      {"id": "a3", "trace": "trace-a3"}]
        assert server.client().get("/__edge/health").json()["queues"]["dead_letters"] == 0
    finally:
        server.kill()


def test_redrive_to_a_step_that_cannot_take_them_is_a_usage_error(tmp_path):
    project, data = dead_orders(tmp_path, "a1")
    errors = [
        (("--id", "1", "--to", "Nobody"),
         'edge dlq: --to Nobody: no step named "Nobody" has a queue trigger; steps that do: Audit, OrderWorker\n'),
        (("--id", "1", "--to", "Audit"),
         'edge dlq: --to Audit: step "Audit" subscribes to "orders.audit", "orders.legacy"; say which with '
         "--topic, e.g. --topic orders.audit\n"),
        (("--id", "1", "--to", "Audit", "--topic", "orders"),
         'edge dlq: --topic orders: step "Audit" does not subscribe to "orders"; it subscribes to "orders.audit", '
         '"orders.legacy"\n'),
    ]
    for args, message in errors:  # on the data directory (port 9: nobody listens)
        out = edge_cli("dlq", "redrive", *args, data_dir=data, project=project)
        assert (out.returncode, out.stdout, out.stderr) == (2, "", message)
    server = EdgeServer(project, data).start()
    try:
        for args, message in errors:
            out = edge_cli("dlq", "redrive", *args, data_dir=data, project=project, port=server.port)
            assert (out.returncode, out.stdout, out.stderr) == (2, "", message)
    finally:
        server.kill()
    out = edge_cli("dlq", "redrive", "--to", "OrderWorker", data_dir=data, project=project)
    assert (out.returncode, out.stderr) == (2, "edge dlq: --to moves the dead letters of one --step or one --id; "
                                               "say which, e.g. edge dlq redrive --step OLD --to OrderWorker\n")
    out = edge_cli("dlq", "redrive", "--id", "1", "--to", "Audit", "--topic", "orders.legacy",
                   data_dir=data, project=project)
    assert (out.returncode, out.stdout) == (0, "redriven: 1\n")
    server = EdgeServer(project, data).start()
    try:
        wait_for(lambda: "a1" in state_of(server, "audit"))
        assert state_of(server, "audit")["a1"] == {"trace": "trace-a1"}
    finally:
        server.kill()


# -- 3. edge dlq delete ---------------------------------------------------------------------

def test_delete_by_id_step_or_all_offline_and_through_the_server(tmp_path):
    project, data = dead_orders(tmp_path, "a1", "a2", "a3", "a4")
    for args, message in (((), "say which dead letters: --id N, --step S or --all, exactly one of them"),
                          (("--id", "1", "--all"), "say which dead letters: --id N, --step S or --all, exactly "
                                                   "one of them (got --id and --all)")):
        out = edge_cli("dlq", "delete", *args, data_dir=data, project=project)
        assert (out.returncode, out.stderr) == (2, f"edge dlq: {message}\n")
    out = edge_cli("dlq", "delete", "--id", "2", data_dir=data, project=project)
    assert (out.returncode, out.stdout, out.stderr) == (0, "deleted: 1\n", "")
    out = edge_cli("dlq", "delete", "--id", "2", data_dir=data, project=project)
    assert (out.returncode, out.stderr) == (1, "edge dlq: no dead letter with id 2; `edge dlq list` shows the ids\n")
    out = edge_cli("dlq", "delete", "--step", "Nobody", data_dir=data, project=project)
    assert (out.returncode, out.stdout) == (0, "deleted: 0\n")
    assert [d["id"] for d in dead_letters(data, project)] == [1, 3, 4]

    server = EdgeServer(project, data).start()
    try:
        out = edge_cli("dlq", "delete", "--id", "9", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stderr) == (1, "edge dlq: no dead letter with id 9; `edge dlq list` shows the ids\n")
        out = edge_cli("dlq", "delete", "--id", "3", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout) == (0, "deleted: 1\n")
        out = edge_cli("dlq", "delete", "--step", "Worker", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout) == (0, "deleted: 2\n")
        assert server.client().get("/__edge/health").json()["queues"]["dead_letters"] == 0
    finally:
        server.kill()


# -- 4. orphaned messages -------------------------------------------------------------------

def stored_orders(tmp_path: Path, count: int) -> tuple[Path, Path]:
    """``count`` messages of "orders" stored for Worker by `edge emit` on the data directory
    (no server ran), then Worker renamed OrderWorker: orphans. ``(project, data dir)``."""
    project, data = project_with(tmp_path, WORKER), tmp_path / "data"
    Store.open(data).close()  # (what a first start leaves)
    for i in range(1, count + 1):
        out = edge_cli("emit", "--topic", "orders", "--message", json.dumps({"id": f"o{i}"}),
                       data_dir=data, project=project)
        assert out.returncode == 0, out.stderr
    rename_worker(project)
    return project, data


HINT = ("no step subscribes to these any more; edge dlq orphans --move [--step S] makes them dead letters "
        "(then edge dlq redrive --to STEP or edge dlq delete)\n")
MOVED = ("moved 4 orphaned message(s) to the dead-letter queue; edge dlq list{} shows them, "
         "edge dlq redrive --to STEP or edge dlq delete takes them from there\n")


def test_orphans_are_listed_moved_to_dead_letters_and_redriven_through_the_server(tmp_path):
    project, data = stored_orders(tmp_path, 4)
    server = EdgeServer(project, data).start()
    try:
        warning = ('4 stored message(s) for step "Worker" on topic "orders" wait for a step that no longer '
                   "subscribes to it; they are kept and delivered when it does again. `edge dlq orphans` shows "
                   "them, `edge dlq orphans --move --step Worker` makes them dead letters (then `edge dlq "
                   "redrive --to STEP` or `edge dlq delete`)")
        assert warning in [line.get("msg") for line in server.logs()]
        out = edge_cli("dlq", "orphans", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout) == (0, 'Worker <- orders  4 message(s)  data {"id": "o1"}, '
                                                   '{"id": "o2"}, {"id": "o3"}, ...\n' + HINT)
        out = edge_cli("dlq", "orphans", "--json", data_dir=data, project=project, port=server.port)
        assert json.loads(out.stdout) == {"step": "Worker", "topic": "orders", "count": 4, "at_least": False,
                                          "first": [{"id": "o1"}, {"id": "o2"}, {"id": "o3"}]}
        out = edge_cli("dlq", "orphans", "--step", "OrderWorker", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout) == (0, "no orphaned messages\n")

        out = edge_cli("dlq", "orphans", "--move", "--step", "Worker", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout) == (0, MOVED.format(" --step Worker"))
        queues = server.client().get("/__edge/health").json()["queues"]
        assert (queues["depth"], queues["dead_letters"], queues["orphaned"]) == (0, 4, {})
        dead = dead_letters(data, project)  # (the server answers the list through --data-dir's reader)
        assert [(d["id"], d["step"], d["topic"], d["data"], d["attempts"], d["error"]) for d in dead] == [
            (i, "Worker", "orders", {"id": f"o{i}"}, 0, 'step "Worker" no longer subscribes to "orders" '
                                                        "(renamed or removed?)") for i in range(1, 5)]
        out = edge_cli("dlq", "orphans", data_dir=data, project=project, port=server.port)
        assert (out.returncode, out.stdout) == (0, "no orphaned messages\n")

        out = edge_cli("dlq", "redrive", "--step", "Worker", "--to", "OrderWorker", data_dir=data, project=project,
                       port=server.port)
        assert (out.returncode, out.stdout) == (0, "redriven: 4\n")
        log = handled(server, 4)
        assert [entry["id"] for entry in log] == ["o1", "o2", "o3", "o4"]  # FIFO: in enqueue order
        assert [entry["trace"] for entry in log] == [d["trace_id"] for d in dead]
    finally:
        server.kill()


def test_orphans_offline_and_a_step_that_comes_back_gets_them(tmp_path):
    project, data = stored_orders(tmp_path, 4)
    out = edge_cli("dlq", "orphans", data_dir=data, project=project)
    assert (out.returncode, out.stdout) == (0, 'Worker <- orders  4 message(s)  data {"id": "o1"}, '
                                               '{"id": "o2"}, {"id": "o3"}, ...\n' + HINT)
    # Nothing moves them on its own: named Worker again, the step gets its backlog.
    worker = project / "steps" / "worker_step.py"
    worker.write_text(worker.read_text().replace('"OrderWorker"', '"Worker"'))
    server = EdgeServer(project, data).start()
    try:
        assert [entry["id"] for entry in handled(server, 4)] == ["o1", "o2", "o3", "o4"]
    finally:
        assert server.stop() == 0
    out = edge_cli("dlq", "orphans", data_dir=data, project=project)
    assert (out.returncode, out.stdout) == (0, "no orphaned messages\n")

    for i in range(5, 9):
        out = edge_cli("emit", "--topic", "orders", "--message", json.dumps({"id": f"o{i}"}),
                       data_dir=data, project=project)
        assert out.returncode == 0, out.stderr
    worker.write_text(worker.read_text().replace('"Worker"', '"OrderWorker"'))
    out = edge_cli("dlq", "orphans", "--move", data_dir=data, project=project)
    assert (out.returncode, out.stdout) == (0, MOVED.format(""))
    assert [(d["id"], d["data"]) for d in dead_letters(data, project)] == [(i, {"id": f"o{i + 4}"}) for i in range(1, 5)]
    out = edge_cli("dlq", "orphans", "--move", data_dir=data, project=project)
    assert (out.returncode, out.stdout) == (0, "no orphaned messages\n")


def test_moving_20000_orphans_offline_stays_small(tmp_path):
    # 20,000 stored messages of a removed step (~330 bytes each): listing and moving them
    # read them a subscription's first few / 1000 per transaction, never all at once.
    n = 20_000
    project, data = project_with(tmp_path, ORDER_WORKER), tmp_path / "data"
    store = Store.open(data)
    try:
        for start in range(0, n, 5000):
            def put(txn, start=start):
                [sub_id] = R.register_subscriptions(txn, [("Gone", "orders")]).values()
                seq = R.next_seq(txn, R.SEQ_KEY, 5000)
                for i in range(start, start + 5000):
                    raw = msgspec.Raw(msgspec.msgpack.encode({"id": f"g{i}:" + "x" * 300}))
                    key = sub_id.to_bytes(4, "big") + (seq + i - start).to_bytes(8, "big")
                    txn.put("queue", key, R.encode_message(R.Message(f"{i:032x}", raw, 1_700_000_000_000, "g")))
            store.write_sync(put)
    finally:
        store.close()
    listed = cli("dlq", "orphans", "--json", data=data, project=project)
    assert (listed.returncode, json.loads(listed.stdout)["count"]) == (0, n), listed.stderr
    moved = cli("dlq", "orphans", "--move", data=data, project=project)
    assert (moved.returncode, moved.stdout.split(";")[0]) == (0, f"moved {n} orphaned message(s) to the dead-letter "
                                                                 "queue"), moved.stderr
    assert moved.anon_kb - listed.anon_kb < CLI_MARGIN_KB, (moved.anon_kb, listed.anon_kb)
    store = Store.open(data)
    try:
        assert store.read(lambda t: (t.count("queue"), t.count("dlq"))) == (0, n)
        first, last = store.read(lambda t: [R.decode_dead(t.get("dlq", R.dlq_key(i))) for i in (1, n)])
        assert (first.trace_id, last.trace_id, first.group) == (f"{0:032x}", f"{n - 1:032x}", "g")
    finally:
        store.close()


def test_orphans_are_not_moved_while_a_step_file_is_broken_or_the_project_is_another(tmp_path):
    """A step that fails to load, or a --dir with no steps, makes a live queue look orphaned:
    a move would take its messages out of it (the reviewer's reproduction: 3 messages of a
    step with a bad import were moved, and again from an empty folder)."""
    project, data = stored_orders(tmp_path, 3)
    worker = project / "steps" / "worker_step.py"
    worker.write_text(WORKER.replace("\n    ", "\n").lstrip())  # Worker again: nothing is orphaned...
    broken = worker.read_text()
    worker.write_text("import not_installed_module\n" + broken)  # ...but its file does not load
    out = edge_cli("dlq", "orphans", "--move", data_dir=data, project=project)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        "edge dlq: 1 step file(s) failed to load (steps/worker_step.py); their messages would look orphaned: "
        "fix them (edge steps lists the errors), then move again")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    out = edge_cli("dlq", "orphans", "--move", data_dir=data, project=empty)
    assert (out.returncode, out.stderr.splitlines()[-1]) == (1, (
        f"edge dlq: no steps found in {empty}; every stored message would look orphaned: pass the --dir of the "
        "project that owns the data directory"))
    server = EdgeServer(project, data, command="dev", args=["--no-reload"]).start()  # serves the rest
    try:
        with server.client() as client:
            answer = client.post("/__edge/dlq/orphans/move", json={})
            assert (answer.status_code, answer.json()["error"]) == (409, "Conflict")
            assert answer.json()["detail"].startswith("1 step file(s) failed to load (steps/worker_step.py)")
            assert client.get("/__edge/health").json()["queues"]["dead_letters"] == 0
    finally:
        server.stop()
    worker.write_text(broken)
    assert dead_letters(data, project) == []
    store = Store.open(data)
    try:  # all 3 still wait in Worker's queue
        assert store.read(lambda t: t.count("queue")) == 3
    finally:
        store.close()


def test_redrive_to_a_step_whose_file_does_not_load_says_so(tmp_path):
    project, data = dead_orders(tmp_path, "a1")
    worker = project / "steps" / "worker_step.py"
    worker.write_text("import not_installed_module\n" + worker.read_text())  # OrderWorker's file
    out = edge_cli("dlq", "redrive", "--id", "1", "--to", "OrderWorker", data_dir=data, project=project)
    assert (out.returncode, out.stderr.splitlines()[-1]) == (2, (
        'edge dlq: --to OrderWorker: no step named "OrderWorker" has a queue trigger; steps that do: Audit '
        "(1 step file(s) failed to load: steps/worker_step.py; edge steps lists the errors)"))
    assert [d["id"] for d in dead_letters(data, project)] == [1]


def test_a_data_dir_named_that_the_server_on_the_port_does_not_serve_is_refused(tmp_path):
    # Before: the command went to the server on --port and acted on its data: `edge dlq delete
    # --all --data-dir <a restored copy>` deleted the live server's dead letters, and said
    # `deleted: 1` as if it had acted on the copy.
    from .test_dlq_limits import counts, fill_dead

    project = write_project(tmp_path / "app", SERVER_PROJECT)
    copy = tmp_path / "copy"
    fill_dead(copy, 3)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as client:
            assert client.post("/__edge/emit", json={"topic": "poison", "data": {"id": "p1"}}).status_code == 202
            wait_for(lambda: client.get("/__edge/dlq").json()["total"] == 1)
        for args in (("dlq", "delete", "--all"), ("dlq", "list"), ("dlq", "redrive"), ("logs",)):
            out = edge_cli(*args, data_dir=copy, project=project, port=server.port)
            assert (out.returncode, out.stdout) == (1, ""), (args, out)
            assert out.stderr == (
                f"edge {args[0]}: the edge server on port {server.port} serves the data in "
                f"{server.data_dir}, not --data-dir {copy}; to act on {copy} while that server runs, pass a --port "
                f"nothing listens on (edge then opens {copy} itself), or leave out --data-dir to act through the "
                "server\n"), args
        with server.client() as client:
            assert client.get("/__edge/dlq").json()["total"] == 1  # the server's dead letter is still there
        # the server's own data dir, named: served as before
        out = edge_cli("dlq", "list", data_dir=server.data_dir, project=project, port=server.port)
        assert (out.returncode, out.stdout.count("Poison <- poison")) == (0, 1), out
    finally:
        server.kill()
    assert counts(copy) == (0, 3)  # the copy is untouched


STRICT = """
    config = {
        "name": "Strict",
        "triggers": [{"type": "queue", "topic": "strict",
                      "input": {"type": "object", "properties": {"id": {"enum": ["a1"]}}, "required": ["id"]}}],
    }

    async def handler(data, ctx):
        await ctx.state.set("strict", data["id"], {"trace": ctx.trace_id})
"""


def test_redrive_to_a_step_whose_input_schema_refuses_the_data_skips_it_and_says_why(tmp_path):
    # Before: moved, then a dead letter again at delivery (or, for a JSON-schema step, handed
    # to a handler that cannot take it).
    project, data = dead_orders(tmp_path, "a1", "a2", "a3")
    (project / "steps" / "strict_step.py").write_text(STRICT.replace("\n    ", "\n").lstrip())
    refused = ('skipped {}: its data does not match the input schema of step "Strict" ($.id: must be one of '
               '["a1"], got "a{}"); redrive it to a step that takes it, or delete it (edge dlq delete --id {})')
    out = edge_cli("dlq", "redrive", "--id", "2", "--to", "Strict", data_dir=data, project=project)
    assert (out.returncode, out.stdout, out.stderr) == (1, "redriven: 0\n", refused.format(2, 2, 2) + "\n")
    server = EdgeServer(project, data).start()
    try:
        out = edge_cli("dlq", "redrive", "--step", "Worker", "--to", "Strict", data_dir=data, project=project,
                       port=server.port)
        assert (out.returncode, out.stdout, out.stderr) == (
            0, "redriven: 1\n", refused.format(2, 2, 2) + "\n" + refused.format(3, 3, 3) + "\n")
        wait_for(lambda: state_of(server, "strict").get("a1") == {"trace": "trace-a1"})
        assert [d["id"] for d in server.client().get("/__edge/dlq").json()["dead_letters"]] == [2, 3]
    finally:
        server.kill()


def test_a_skipped_run_of_a_state_or_stream_trigger_is_not_told_to_use_to():
    # Before: "redrive it to the step that handles it now with --to STEP", which refuses any
    # step without a queue trigger.
    from edge.queues.dlq import gone

    def dead(step, topic):
        return R.DeadLetter(step=step, topic=topic, data=msgspec.Raw(msgspec.msgpack.encode({})), error="x",
                            attempts=1, failed_at=0.0, trace_id="t", enqueued_at=0.0)

    assert gone(dead("Watch", "@state:0"), 7) == (
        'step "Watch" no longer has that state trigger (triggers[0]); a run of it cannot go to another step: '
        "delete it (edge dlq delete --id 7)")
    assert gone(dead("Feed", "@stream:1"), 8).startswith('step "Feed" no longer has that stream trigger (triggers[1]);')
    assert gone(dead("Worker", "orders"), 9) == GONE.format(9)


def test_the_start_up_warning_of_orphaned_trigger_runs_does_not_suggest_to():
    from edge.queues.orphans import orphans_warning

    assert orphans_warning(3, "Watch", "@state:0") == (
        '3 stored run(s) of a state trigger of step "Watch" (triggers[0]) wait for a trigger the step no longer '
        "has; they are kept and run when it has it again. `edge dlq orphans` shows them, `edge dlq orphans "
        "--move --step Watch` makes them dead letters (then `edge dlq delete`)")
    assert "redrive --to STEP" in orphans_warning(4, "Worker", "orders")
