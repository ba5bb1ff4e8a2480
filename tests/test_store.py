import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from edge.errors import StoreError
from edge.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "data")
    yield s
    s.close()


async def test_group_commit_shares_transactions(store):
    store.start_writer()

    async def put(i):
        await store.write(lambda t: t.put("state", b"k%05d" % i, b"v"))

    async with trio.open_nursery() as nursery:
        for i in range(500):
            nursery.start_soon(put, i)
    assert store.read(lambda t: t.count("state")) == 500
    assert store.commits < 500 / 5, "writes from concurrent tasks were not batched"


async def test_failing_write_is_rolled_back_alone(store):
    store.start_writer()

    def bad(t):
        t.put("state", b"bad", b"1")
        raise ValueError("boom")

    async def good():
        await store.write(lambda t: t.put("state", b"good", b"1"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(good)
        with pytest.raises(ValueError, match="boom"):
            await store.write(bad)
    assert store.read(lambda t: (t.get("state", b"bad"), t.get("state", b"good"))) == (None, b"1")


async def test_a_failing_write_in_a_shared_batch_leaves_the_others_of_its_batch_written(store):
    # The writer runs a batch in one transaction; when an op raises, it runs the batch again
    # with a child transaction per op, so the op fails alone and the rest of its batch commits.
    store.start_writer()
    failed = []

    def bad(t):
        t.put("state", b"bad", b"1")
        raise ValueError("boom")

    async def good(i):
        await store.write(lambda t: t.put("state", b"g%03d" % i, b"v"))

    async def write_bad():
        try:
            await store.write(bad)
        except ValueError as exc:
            failed.append(str(exc))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(good, i)
            if i == 100:
                nursery.start_soon(write_bad)
    assert failed == ["boom"]
    assert store.read(lambda t: t.get("state", b"bad")) is None
    assert store.read(lambda t: t.count("state")) == 200
    assert store.commits < 200 / 5, "the writes were not batched: the test shows nothing"


def test_a_batch_run_again_for_a_failing_write_writes_the_others_as_once(store):
    # When one write of a batch raises, the writer runs the batch again with a child
    # transaction per write: the others must come out as if run once. A state update that sets
    # an object and then increments inside it changed its own ops on the first run (the value
    # set was the op's own dict), so the second run stored {"a": {"c": 3}}.
    from edge._state import StateStore
    from edge.store import _Op

    state = StateStore(store)
    update = _Op(state._update_op("g", "k", [{"type": "set", "path": "a", "value": {"c": 1}},
                                            {"type": "increment", "path": "a.c"}]))

    def hooked(t):
        t.put("state", b"hooked", b"1")
        t.after_commit(lambda: None)

    def bad(t):
        t.put("state", b"bad", b"1")
        raise ValueError("boom")

    hook, failing = _Op(hooked), _Op(bad)
    store._commit([update, hook, failing])
    assert (update.error, hook.error, str(failing.error)) == (None, None, "boom")
    assert state.get_nowait("g", "k") == {"a": {"c": 2}}
    assert update.result == {"a": {"c": 2}}
    assert len(hook.after) == 1  # its after-commit hook, once
    assert store.read(lambda t: (t.get("state", b"bad"), t.get("state", b"hooked"))) == (None, b"1")


def test_update_ops_are_left_as_given_so_running_them_again_gives_the_same_value():
    from edge._state import apply_ops, check_ops

    ops = check_ops([{"type": "set", "path": "a", "value": {"c": [1]}}, {"type": "increment", "path": "a.n"},
                     {"type": "merge", "path": "b", "value": {"d": {"e": 1}}}, {"type": "increment", "path": "b.d.e"}])
    first = apply_ops({"x": 1}, ops)
    assert first == apply_ops({"x": 1}, ops) == {"x": 1, "a": {"c": [1], "n": 1}, "b": {"d": {"e": 2}}}
    assert ops[0]["value"] == {"c": [1]} and ops[2]["value"] == {"d": {"e": 1}}


async def test_map_grows_by_itself(tmp_path):
    store = Store.open(tmp_path / "d")
    store.start_writer()
    size = store.info()["map_size"]
    blob = os.urandom(1 << 20)
    for i in range(80):
        await store.write(lambda t, i=i: t.put("state", b"%d" % i, blob))
    assert store.info()["map_size"] > size
    assert store.read(lambda t: t.count("state")) == 80
    store.close()


def test_scan_prefix_forward_and_reverse(store):
    def fill(t):
        for k in (b"a/1", b"a/2", b"a/3", b"ab/1", b"b/1"):
            t.put("state", k, k)

    store.write_sync(fill)
    assert [k for k, _ in store.read(lambda t: list(t.scan("state", b"a/")))] == [b"a/1", b"a/2", b"a/3"]
    assert [k for k, _ in store.read(lambda t: list(t.scan("state", b"a/", reverse=True)))] == [b"a/3", b"a/2", b"a/1"]
    assert [k for k, _ in store.read(lambda t: list(t.scan("state", b"b/", reverse=True)))] == [b"b/1"]


def test_unwritable_data_dir_names_the_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() == 0:
        # root writes anywhere; a path under a regular file cannot be created by anyone
        target = tmp_path / "file"
        target.write_text("x")
        with pytest.raises(StoreError) as info:
            Store.open(target / "data")
        assert str(info.value) == (
            f"cannot write to the data directory {target / 'data'}: Not a directory; "
            "pass --data-dir (or EDGE_DATA_DIR) naming a writable directory"
        )
        return
    with pytest.raises(StoreError, match="cannot write to the data directory"):
        Store.open(ro / "data")


@pytest.fixture
def nobody_dir():
    """A folder the unprivileged user ``nobody`` can reach (pytest's tmp_path is root's, 0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: files of another user are made by root, then opened as nobody")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this machine has no user nobody to run edge as")
    folder = Path(tempfile.mkdtemp(prefix="edge-store-perm-"))
    folder.chmod(0o755)
    yield folder, nobody
    shutil.rmtree(folder)


def _run_as(user: pwd.struct_passwd, data: Path, imports: str, body: str) -> str:
    """``body`` (Python, ``sys.argv[1]`` is ``data``) in a real subprocess running as ``user``;
    what it prints, or the StoreError it raised.

    The child starts as root and drops to ``user`` with setuid after its imports: this
    Python lives under /root, which nobody may read, so nobody could not start it.
    """
    code = (f"import os, sys\nfrom edge.errors import StoreError\n{imports}\n"
            "os.setgroups([]); os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[2]))\n"
            "try:\n" + "".join(f"    {line}\n" for line in body.splitlines())
            + "except StoreError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(data), str(user.pw_uid), str(user.pw_gid)],
                          cwd=data.parent, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.rstrip("\n")


def _open_as(user: pwd.struct_passwd, data: Path) -> str:
    """Store.open(data) as ``user``; the StoreError it says."""
    return _run_as(user, data, "from edge.store import Store", "Store.open(sys.argv[1]).close()")


def test_store_files_of_another_user_are_named_with_the_chown(nobody_dir):
    # `sudo edge start` once, then the service runs as nobody: the folder is nobody's (it can
    # write there), the files root made are not.
    folder, nobody = nobody_dir
    data = folder / "data"
    Store.open(data).close()
    for name in ("data.mdb", "lock.mdb"):
        (data / name).chmod(0o644)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    assert _open_as(nobody, data) == (
        f"cannot open the store in {data}: {data}/data.mdb and {data}/lock.mdb belong to root, and edge runs "
        f"as nobody, who may not write them; give the data directory to nobody (sudo chown -R nobody {data}) "
        "or run edge as root")


def test_a_read_only_store_file_is_named_with_the_chmod(nobody_dir):
    folder, nobody = nobody_dir
    data = folder / "data"
    Store.open(data).close()
    for path in (data, data / "data.mdb", data / "lock.mdb"):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    (data / "data.mdb").chmod(0o400)
    assert _open_as(nobody, data) == (
        f"cannot open the store in {data}: {data}/data.mdb is read-only (mode 0400); "
        f"make it writable (chmod u+rw {data}/data.mdb)")


def test_groups_lists_each_group_once_in_order(store):
    def fill(t):
        for k in (b"a\x00k1", b"a\x00k2", b"ab\x00k", b"s/x\x00g1\x00i", b"s/x\x00g1\x00j", b"s/x\x00g2\x00i", b"s/y\x00g3\x00i"):
            t.put("state", k, b"1")

    store.write_sync(fill)
    assert store.read(lambda t: list(t.groups("state"))) == [b"a", b"ab", b"s/x", b"s/y"]
    assert store.read(lambda t: list(t.groups("state", b"s/x\x00"))) == [b"g1", b"g2"]


def _lock_twice_as(user: pwd.struct_passwd, data: Path) -> str:
    """As ``user``: take the data dir's lock, then try again (as a second edge would); what
    the second attempt says."""
    return _run_as(user, data, "from edge._lock import DataDirLock",
                   "first = DataDirLock.acquire(sys.argv[1])\nsecond = DataDirLock.acquire(sys.argv[1])\n"
                   "print('first', first is not None, 'second', second is not None)")


def test_a_lock_file_root_made_still_keeps_a_second_edge_out(nobody_dir):
    # `sudo edge state set ...` once made edge.lock (root's, 0644); the service runs as nobody.
    # It could not open the file for writing and served without the lock: two of them both
    # delivered every message and fired every cron slot.
    from edge._lock import DataDirLock

    folder, nobody = nobody_dir
    data = folder / "data"
    DataDirLock.acquire(data).release()
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    assert _lock_twice_as(nobody, data) == (
        f"the data directory {data} is in use by another edge (pid unknown); "
        "stop that one first, or pass another --data-dir (or EDGE_DATA_DIR)")


def test_a_lock_file_edge_may_not_read_is_named_with_the_chown(nobody_dir):
    from edge._lock import DataDirLock

    folder, nobody = nobody_dir
    data = folder / "data"
    DataDirLock.acquire(data).release()
    (data / "edge.lock").chmod(0o600)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    assert _lock_twice_as(nobody, data) == (
        f"cannot open the lock file {data}/edge.lock: it belongs to root (mode 0600) and edge runs as nobody; "
        f"give it to nobody (sudo chown nobody {data}/edge.lock) or delete it while no edge runs")


def test_a_process_killed_while_reading_no_longer_makes_the_file_grow(tmp_path):
    # `kill -9` (or the OOM killer) during an offline `edge dlq list` left its reader slot in
    # lock.mdb: LMDB reused no page freed after that snapshot, and data.mdb grew by every
    # write (a tester: 31 MB -> 1.17 GB in 60 s) until the server restarted.
    data = tmp_path / "data"
    store = Store.open(data)
    notices = []
    store.on_notice = lambda level, message: notices.append((level, message))
    store.reader_check_interval = 0.0  # look before every commit (5 s in a server)
    store.write_sync(lambda t: t.put("state", b"big", b"v" * 65536))
    code = ("import lmdb, sys, time\nenv = lmdb.open(sys.argv[1], max_dbs=16)\ntxn = env.begin()\n"
            "txn.get(b'x')\nprint('reading', flush=True)\ntime.sleep(60)\n")
    reader = subprocess.Popen([sys.executable, "-c", code, str(data)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "reading\n"
    reader.kill()
    reader.wait()
    before = (data / "data.mdb").stat().st_size
    for i in range(300):
        value = bytes([i % 256]) * 65536
        store.write_sync(lambda t: t.put("state", b"big", value))
    grown = (data / "data.mdb").stat().st_size - before
    store.close()
    assert grown < 1 << 20, f"data.mdb grew by {grown} bytes for 300 overwrites of one 64 KiB value"
    assert notices == [("warn", f"{data}: cleared 1 read slot(s) left by a process that died while reading the store "
                                "(killed during an `edge` command?); until then no space freed since it began was "
                                "reused, so data.mdb grew with every write")]


def test_a_data_dir_edge_may_not_enter_is_the_stores_message_not_a_traceback(nobody_dir):
    from edge._lock import DataDirLock

    folder, nobody = nobody_dir
    data = folder / "data"
    DataDirLock.acquire(data).release()
    data.chmod(0o700)  # root's, and nobody may not even look inside
    assert _lock_twice_as(nobody, data) == "first False second False"  # no lock: Store.open says why
    assert _open_as(nobody, data) == (
        f"cannot write to the data directory {data}: Permission denied; pass --data-dir (or EDGE_DATA_DIR) "
        "naming a writable directory")


def test_count_prefix_counts_the_prefix_alone_and_stops_at_the_limit(store):
    store.write_sync(lambda t: [t.put("queue", b"%c%04d" % (c, i), b"v") for c in b"abc" for i in range(50)])
    counts = store.read(lambda t: [t.count_prefix("queue", p, 1000) for p in (b"a", b"b", b"c", b"d", b"")])
    assert counts == [50, 50, 50, 0, 150]
    assert store.read(lambda t: t.count_prefix("queue", b"b", 20)) == 20


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the writer's death
def test_a_caller_blocked_on_a_write_is_told_when_the_writer_thread_died(store):
    # Motia 1.0.4's synchronous calls block the loop thread until the writer commits; if the
    # writer thread is gone that must be an error, not a server hung for ever.
    store.start_writer(notify=lambda callback, *args: None)

    def kills_the_writer(txn):
        raise SystemExit  # not an Exception: nothing in the writer catches it

    store.write_nowait(kills_the_writer)
    with pytest.raises(StoreError) as caught:
        store.write_blocking(lambda t: t.put("state", b"k", b"v"))
    assert str(caught.value) == f"the store's writer thread for {store.path} stopped before the write was committed"
