"""The store under faults, on a real server: a full disk (a small tmpfs mounted by the test)
and map growth while reads run.

Full disk: every write answers 507 naming the data directory, reads keep answering, the log
says it once and again when space is back, writes succeed as soon as space is freed, queue
messages wait instead of being dead-lettered, and what was acknowledged survives kill -9.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from .conftest import EdgeServer, state_value, wait_for, write_project

FULL_DISK_PROJECT = {
    "steps/put_step.py": """
        from edge import StorageFull

        config = {"name": "Put", "triggers": [{"type": "http", "method": "PUT", "path": "/items/:key"}],
                  "enqueues": ["item.saved"]}

        async def handler(req, ctx):
            key = req.path_params["key"]
            await ctx.state.set("items", key, req.body)
            if req.query_params.get("enqueue"):
                await ctx.enqueue({"topic": "item.saved", "data": {"key": key}})
            return {"status": 201, "body": {"key": key}}
    """,
    "steps/careful_step.py": """
        from edge import StorageFull

        config = {"name": "Careful", "triggers": [{"type": "http", "method": "POST", "path": "/careful"}]}

        async def handler(req, ctx):
            try:
                await ctx.state.set("items", "careful", {"blob": "x" * 200_000})
            except StorageFull as exc:
                return {"status": 200, "body": {"caught": type(exc).__name__}}
            return {"status": 201}
    """,
    "steps/get_step.py": """
        config = {"name": "Get", "triggers": [{"type": "http", "method": "GET", "path": "/items/:key"}]}

        async def handler(req, ctx):
            value = await ctx.state.get("items", req.path_params["key"])
            return {"status": 200 if value is not None else 404, "body": value}
    """,
    "steps/saved_step.py": """
        config = {"name": "Saved", "triggers": [{"type": "queue", "topic": "item.saved",
                  "config": {"maxRetries": 0}}]}

        async def handler(data, ctx):
            await ctx.state.set("saved", data["key"], {"blob": "y" * 100_000})
    """,
}


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs mounted at tmp_path/disk (root only), with a filler file to free later."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for a full disk (mount -t tmpfs): not root")
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_507_reads_go_on_and_writes_come_back(tmp_path, small_disk):
    filler = small_disk / "filler"
    data_dir = small_disk / "data"
    project = write_project(tmp_path / "app", FULL_DISK_PROJECT)
    server = EdgeServer(project, data_dir, args=["--max-body", "2m"]).start()
    acked = []
    try:
        with server.client() as client:
            assert client.put("/items/first", json={"v": 1}).status_code == 201
            acked.append("first")
            # Take most of the disk with a file we can delete later.
            free = shutil.disk_usage(small_disk).free
            filler.write_bytes(b"\0" * (free - 2 * 1024 * 1024))
            blob = {"blob": "z" * 100_000}
            answers = []
            for i in range(60):
                r = client.put(f"/items/k{i}", json=blob, params={"enqueue": "1"})
                answers.append(r.status_code)
                if r.status_code == 201:
                    acked.append(f"k{i}")
                if answers[-3:] == [507, 507, 507]:
                    break
            assert answers[-1] == 507, answers
            full = client.put("/items/late", json=blob)
            assert full.status_code == 507
            body = full.json()
            assert body["error"] == f"the disk holding {data_dir} is full"
            assert set(body) == {"error", "detail"}  # no error_id: nothing is logged per request
            # The runtime's own write endpoints say the same.
            r = client.post("/__edge/state", json={"group": "g", "key": "k", "value": blob})
            assert r.status_code == 507 and r.json()["error"] == f"the disk holding {data_dir} is full"
            # A handler may catch it.
            assert client.post("/careful").json() == {"caught": "StorageFull"}
            # Reads keep answering.
            assert client.get("/items/first").json() == {"v": 1}
            assert client.get("/__edge/health").status_code == 200
            # Said once, not per request. (An ack that met the full disk says so too, in a line
            # of its own, "...; 1 handled message(s) stay stored and will be delivered again",
            # when a queue message happened to finish meanwhile: not this line.)
            full_lines = [r for r in server.logs() if r.get("level") == "error"
                          and "Until then writes answer 507" in r.get("msg", "")]
            assert [r["msg"] for r in full_lines] == [
                f"the disk holding {data_dir} is full; nothing was written. Free space on that disk or "
                "move --data-dir. Until then writes answer 507 and queue messages wait; reads go on"]
            # ... with no traceback per refused request or per queue retry (they filled the
            # journal, often on the same full card: a tester saw 27 MB of log in 20 s)
            assert [r["msg"] for r in server.logs() if "StorageFull" in r.get("msg", "")] == []
            # ... and not taken back while the disk is still full (a small commit that fits on a
            # disk with 0 bytes free is no recovery)
            assert not any("has space again" in r.get("msg", "") for r in server.logs())
            # Space freed: writes succeed again, and the log says so.
            filler.unlink()
            r = wait_for(lambda: (lambda r: r if r.status_code == 201 else None)(
                client.put("/items/after", json={"v": 2})), timeout=10)
            acked.append("after")
            assert r.json() == {"key": "after"}
            wait_for(lambda: any("has space again; writes succeed" in r.get("msg", "") for r in server.logs()))
            # Messages that met the full disk waited: none was dead-lettered for lack of space.
            wait_for(lambda: client.get("/__edge/health").json()["queues"]["depth"] == 0, timeout=30)
            assert client.get("/__edge/dlq").json()["dead_letters"] == []
            # ... and ran once there was space: every acknowledged item was processed
            for key in acked:
                if key.startswith("k"):
                    assert state_value(client, "saved", key) == {"blob": "y" * 100_000}, key
    finally:
        server.kill()  # SIGKILL
    blob = {"blob": "z" * 100_000}
    restarted = EdgeServer(project, data_dir).start()
    try:
        with restarted.client() as client:
            expected = {"first": {"v": 1}, "after": {"v": 2}}
            for key in acked:
                assert client.get(f"/items/{key}").json() == expected.get(key, blob), key
    finally:
        restarted.kill()


GROWTH_PROJECT = {
    "steps/big_step.py": """
        config = {"name": "Big", "triggers": [{"type": "http", "method": "PUT", "path": "/big/:key"}]}

        async def handler(req, ctx):
            await ctx.state.set("big", req.path_params["key"], req.body)
            return {"status": 204}
    """,
    "steps/fill_step.py": """
        config = {"name": "Fill", "triggers": [{"type": "http", "method": "POST", "path": "/fill"}]}

        async def handler(req, ctx):
            for i in range(2000):  # not awaited one by one: queued at once, durable before the answer
                ctx.state.set("small", f"s{i:04d}", {"i": i, "pad": "p" * 200})
            return {"status": 204}
    """,
    "steps/small_step.py": """
        config = {"name": "Small", "triggers": [{"type": "http", "method": "GET", "path": "/small"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": len(await ctx.state.get_group("small"))}
    """,
}


def test_map_growth_while_reads_run_fails_no_read(tmp_path):
    project = write_project(tmp_path / "app", GROWTH_PROJECT)
    server = EdgeServer(project, tmp_path / "data", args=["--max-body", "2m"]).start()
    try:
        with server.client() as client:
            assert client.post("/fill").status_code == 204
            assert client.get("/small").json() == 2000
        stop = threading.Event()
        failures, reads = [], [0]

        def read(path, params=None):
            with server.client() as client:
                while not stop.is_set():
                    try:
                        r = client.get(path, params=params)
                    except Exception as exc:  # noqa: BLE001 - a failed read is what this test looks for
                        failures.append(repr(exc))
                        return
                    if r.status_code != 200:
                        failures.append((path, r.status_code, r.text[:200]))
                    reads[0] += 1

        def write(n):
            value = {"blob": "m" * (1 << 20)}
            with server.client() as client:
                for i in range(n):
                    r = client.put(f"/big/w{threading.get_ident()}-{i}", json=value)
                    if r.status_code != 204:
                        failures.append(("write", r.status_code, r.text[:200]))

        readers = [threading.Thread(target=read, args=("/small",)) for _ in range(3)]
        readers += [threading.Thread(target=read, args=("/__edge/state", {"group": "small"})) for _ in range(3)]
        writers = [threading.Thread(target=write, args=(40,)) for _ in range(4)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in readers:
            t.join()
        assert failures == []
        assert reads[0] > 0
        with server.client() as client:
            info = client.get("/__edge/health").json()["store"]
        assert info["map_size"] > 64 << 20  # it grew (160 MiB of values)
        assert server.proc.poll() is None
    finally:
        server.kill()


def test_a_small_write_that_fits_on_a_disk_with_nothing_free_is_no_recovery(small_disk):
    # LMDB reuses the pages of deleted values: on a disk with 0 bytes free a small write can
    # still succeed while any write that needs a new page fails. That is still a full disk.
    from edge.errors import StorageFull
    from edge.store import Store

    data_dir = small_disk / "data"
    store = Store.open(data_dir)
    notices = []
    store.on_notice = lambda level, message: notices.append((level, message))
    try:
        store.write_sync(lambda t: [t.put("state", b"k%d" % i, b"x" * 100_000) for i in range(10)])
        store.write_sync(lambda t: [t.delete("state", b"k%d" % i) for i in range(10)])
        for n in range(2):  # LMDB reuses a transaction's freed pages two commits later
            store.write_sync(lambda t: t.put("state", b"tick", b"%d" % n))
        filler = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(filler, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(filler)
        assert shutil.disk_usage(small_disk).free == 0
        with pytest.raises(StorageFull):
            store.write_sync(lambda t: t.put("state", b"big", b"y" * 2_000_000))
        store.write_sync(lambda t: t.put("state", b"small", b"z" * 100))  # fits in reused pages
        assert notices == [("error", f"the disk holding {data_dir} is full; nothing was written. Free space on "
                                     "that disk or move --data-dir. Until then writes answer 507 and queue "
                                     "messages wait; reads go on")]
        os.unlink(small_disk / "filler")
        store.write_sync(lambda t: t.put("state", b"after", b"a" * 100))
        assert notices[1:] == [("info", f"the disk holding {data_dir} has space again; writes succeed")]
    finally:
        store.close()


@asynccontextmanager
async def ack_met_full_disk(disk: Path, enqueued: int, left: int):
    """A runtime on ``disk`` whose queue handler enqueues ``enqueued`` bytes with its ack, with
    ``left`` bytes free: one message is handled once and its ack does not fit. Yields
    ``(app, runs, filler)`` then: the handler's runs so far and the file to free space from."""
    from .test_queues import queue_step, running

    runs = []

    async def handler(data, ctx):
        runs.append(data)
        await ctx.enqueue({"topic": "big", "data": "x" * enqueued})  # committed with the ack

    producer = queue_step("A", "a", handler, enqueues=["big"])
    sink = queue_step("B", "big", lambda data: None)
    filler = disk / "filler"
    async with running(disk, producer, sink) as app:
        filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - left))
        await app.emit("a", 1)  # small: stored
        while not any("will be delivered again" in r["msg"] for r in app.logs("error")):
            await trio.sleep(0.1)
        yield app, runs, filler


async def test_a_message_whose_ack_met_a_full_disk_runs_again_once_there_is_space(small_disk, autojump_clock):
    # The ack (and what the handler enqueued with it) did not fit: the message stays stored
    # and "will be delivered again", but it was only once another message came for its queue
    # (or at a restart): the heal every 5 s skipped the subscription whose ack had failed.
    async with ack_met_full_disk(small_disk, enqueued=3_000_000, left=1024 * 1024) as (app, runs, filler):
        await trio.sleep(30)  # six heal intervals: the disk is still full, it does not run again
        assert runs == [1]
        filler.unlink()
        await trio.sleep(30)
        assert runs == [1, 1]
        assert app.depth() == 0


async def test_a_message_whose_ack_met_a_full_disk_runs_again_on_a_disk_that_stays_short_of_room(
        small_disk, autojump_clock):
    # The disk takes writes again but never frees the 2 MiB that end "full" (data.mdb grew into
    # that space): the message waited for good. A tester's 1,000 such messages stayed stored
    # (depth 1000) after writes succeeded again, until another message came for their queue.
    from edge.queues.service import FULL_RETRY

    async with ack_met_full_disk(small_disk, enqueued=600_000, left=300 * 1024) as (app, runs, filler):
        store = app.runtime.store
        await trio.sleep(30)  # the disk is still full: it does not run again
        assert runs == [1]
        with open(filler, "r+b") as f:  # 1.5 MiB free: room for the ack, short of the 2 MiB
            f.truncate(filler.stat().st_size - 1200 * 1024)
        assert shutil.disk_usage(small_disk).free < 2 << 20
        await store.write(lambda t: t.put("state", b"probe", b"1"))  # a write succeeds again
        assert (store.full, store.wrote_while_full) == (True, True)
        await trio.sleep(FULL_RETRY + 10)
        assert runs == [1, 1]  # once more, and its ack fitted
        assert app.depth() == 0


async def test_a_redrive_that_fills_the_disk_says_how_many_it_moved(small_disk, autojump_clock):
    # Before: "the disk holding ... is full; nothing was written", after a first page of 1000
    # had moved (a fault tester: queue depth 1000, 2000 dead letters left).
    from edge.errors import StorageFull

    from .test_dlq_limits import fill_dead
    from .test_queues import queue_step, running

    async def handler(data, ctx):
        await trio.sleep_forever()  # the moved messages wait in flight: no writes of their own

    fill_dead(small_disk / "data", 3000)
    filler = small_disk / "filler"
    async with running(small_disk, queue_step("Poison", "poison", handler)) as app:
        filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 700 * 1024))  # 700 KiB left: not all 3 pages fit
        with pytest.raises(StorageFull) as full:
            await app.queues.redrive()
        moved = app.runtime.store.read(lambda t: t.count("queue"))
        assert 0 < moved < 3000
        assert str(full.value) == (
            f"the disk holding {small_disk / 'data'} is full: {moved} dead letter(s) were moved back to their "
            "queues before it filled, the others stay dead letters; free space on that disk (or move "
            "--data-dir), then redrive them")
        assert len(app.dead()) == 3000 - moved
