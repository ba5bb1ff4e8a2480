"""`edge backup` and `edge compact`: a consistent copy of the store while edge serves, and a
data.mdb that shrinks back to its live data (LMDB's file never shrinks by itself: a burst of
messages, or a dead reader holding old pages, leaves it at its biggest for good). Real LMDB
in ``tmp_path``, the real CLI and server in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from edge._state import encode_value
from edge.store import Store

from .conftest import EdgeServer, write_project

PROJECT = {
    "steps/put_step.py": """
        config = {"name": "Put", "triggers": [{"type": "http", "method": "PUT", "path": "/items/:key"}]}

        async def handler(req, ctx):
            await ctx.state.set("items", req.path_params["key"], req.body)
            return {"status": 201, "body": {"key": req.path_params["key"]}}
    """,
}


def edge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, cwd=str(cwd),
                          stdin=subprocess.DEVNULL, timeout=60)


def grown_store(data: Path, keep: int = 50, churn: int = 3000, size: int = 100) -> dict[bytes, bytes]:
    """A store whose file grew with ``churn`` 4 KiB values that were then deleted, holding
    ``keep`` values of about ``size`` bytes; returns what it holds."""
    store = Store.open(data)
    try:
        kept = {f"keep{i:03d}".encode(): encode_value({"i": i, "pad": os.urandom(size // 2).hex()}) for i in range(keep)}

        def fill(txn):
            for i in range(churn):
                txn.put("state", b"items\x00tmp%05d" % i, os.urandom(4096))
            for key, value in kept.items():
                txn.put("state", b"items\x00" + key, value)

        def churned(txn):
            for i in range(churn):
                txn.delete("state", b"items\x00tmp%05d" % i)

        store.write_sync(fill)
        store.write_sync(churned)
    finally:
        store.close()
    return kept


def contents(data: Path) -> dict[bytes, bytes]:
    store = Store.open(data)
    try:
        return store.read(lambda t: {k[len(b"items\x00"):]: v for k, v in t.scan("state", b"items\x00")})
    finally:
        store.close()


def test_compact_shrinks_the_file_and_keeps_every_value(tmp_path):
    data = tmp_path / "data"
    kept = grown_store(data)
    before = (data / "data.mdb").stat().st_size
    assert before > 10 << 20  # the churn's pages stay in the file

    done = edge("compact", "--data-dir", str(data), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    after = (data / "data.mdb").stat().st_size
    assert after < before / 20
    assert done.stdout == f"compacted {data}: data.mdb {before / (1 << 20):.1f} MiB -> {after / 1024:.0f} KiB\n"
    assert contents(data) == kept
    assert not (data / ".compact").exists()
    # and a server runs on it: reads what was kept, writes more
    write_project(tmp_path / "app", PROJECT)
    server = EdgeServer(tmp_path / "app", data).start()
    try:
        with server.client() as client:
            assert client.get("/__edge/state", params={"group": "items", "key": "keep007"}).status_code == 200
            assert client.put("/items/new", json={"n": 1}).status_code == 201
    finally:
        server.stop()
    assert set(contents(data)) == set(kept) | {b"new"}


def test_compact_refuses_while_edge_serves_the_data_directory(tmp_path):
    data = tmp_path / "data"
    write_project(tmp_path / "app", PROJECT)
    server = EdgeServer(tmp_path / "app", data).start()
    try:
        before = (data / "data.mdb").stat()
        done = edge("compact", "--data-dir", str(data), cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr == (f"edge compact: {data} is in use by another edge process (pid {server.proc.pid}); "
                               "stop it first: compact needs the data directory to itself\n")
        assert (data / "data.mdb").stat().st_ino == before.st_ino  # not swapped under the server
        assert not (data / ".compact").exists()
    finally:
        server.stop()


def test_compact_refuses_while_another_process_reads_the_store(tmp_path):
    """An offline `edge dlq list` in another shell holds LMDB's environment open without the
    data directory's lock: swapping the file under it would leave it reading the old one."""
    data = tmp_path / "data"
    kept = grown_store(data, churn=200)
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys; from edge.store import Store; s = Store.open(sys.argv[1]); "
                               "print('open', flush=True); sys.stdin.read()", str(data)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "open\n"
        before = (data / "data.mdb").stat()
        done = edge("compact", "--data-dir", str(data), cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr == (f"edge compact: another process has the store in {data} open (an edge command in "
                               "another shell?); let it finish, then compact again. Nothing was changed\n")
        assert (data / "data.mdb").stat().st_ino == before.st_ino
        assert not (data / ".compact").exists()
    finally:
        reader.stdin.close()
        reader.wait(10)
    assert edge("compact", "--data-dir", str(data), cwd=tmp_path).returncode == 0  # once it is gone
    assert contents(data) == kept


def test_compact_after_one_killed_halfway(tmp_path):
    """SIGKILL during the copy: the store is the old one, whole, and the next compact works."""
    data = tmp_path / "data"
    kept = grown_store(data, keep=6000, churn=2000, size=8192)  # ~50 MiB live: a copy to kill in
    proc = subprocess.Popen([sys.executable, "-m", "edge", "compact", "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path))
    partial = data / ".compact" / "data.mdb"
    while proc.poll() is None and not (partial.exists() and partial.stat().st_size > 0):
        time.sleep(0.001)
    assert proc.poll() is None, "the copy finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert partial.exists()  # killed halfway through the copy
    assert contents(data) == kept
    done = edge("compact", "--data-dir", str(data), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert contents(data) == kept
    assert not (data / ".compact").exists()


def test_edge_start_removes_what_a_compact_killed_halfway_left(tmp_path):
    # Before: the partial copy stayed beside data.mdb until the next `edge compact`, megabytes
    # of a card that may be full (a fault tester: 7-18 MB).
    data = tmp_path / "data"
    kept = grown_store(data, keep=10)
    (data / ".compact").mkdir()
    (data / ".compact" / "data.mdb").write_bytes(b"\0" * (3 << 20))  # as a killed copy leaves it
    server = EdgeServer(write_project(tmp_path / "app", PROJECT), data).start()
    try:
        assert not (data / ".compact").exists()
        assert (f"edge start: removed {data / '.compact'} (3.0 MiB), the copy of an edge compact that was "
                "stopped partway; the store was not changed by it") in server.output
    finally:
        server.kill()
    assert contents(data) == kept


def test_backup_while_edge_serves_writes(tmp_path):
    """A copy taken under write load holds every write acknowledged before it began, starts
    as a data directory of its own, and the server never noticed."""
    data, copy = tmp_path / "data", tmp_path / "backup"
    write_project(tmp_path / "app", PROJECT)
    server = EdgeServer(tmp_path / "app", data).start()
    acked: list[str] = []
    stop = threading.Event()
    failures: list[int] = []

    def writer():
        with httpx.Client(base_url=server.url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                answer = client.put(f"/items/k{i}", json={"i": i, "pad": "x" * 500})
                if answer.status_code == 201:
                    acked.append(f"k{i}")
                else:
                    failures.append(answer.status_code)
                i += 1
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(acked) < 200:
            thread.join(0.05)
        before_backup = list(acked)
        done = edge("backup", str(copy), "--data-dir", str(data), cwd=tmp_path)
        while len(acked) < len(before_backup) + 100:  # still serving writes after the copy
            thread.join(0.05)
    finally:
        stop.set()
        thread.join()
        server.stop()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"copied {data} to {copy} (")
    assert failures == []
    assert sorted(os.listdir(copy)) == ["data.mdb"]
    assert set(before_backup) <= {k.decode() for k in contents(copy)}
    restored = EdgeServer(tmp_path / "app", copy).start()
    try:
        with restored.client() as client:
            answer = client.get("/__edge/state", params={"group": "items", "key": before_backup[-1]})
            assert answer.status_code == 200
            assert answer.json()["value"]["i"] == int(before_backup[-1][1:])
    finally:
        restored.stop()


def test_backup_into_a_directory_that_holds_files(tmp_path):
    data, dest = tmp_path / "data", tmp_path / "somewhere"
    grown_store(data, churn=10)
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    done = edge("backup", str(dest), "--data-dir", str(data), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"edge backup: {dest} already exists and is not an empty directory; name a new one\n"
    assert sorted(os.listdir(dest)) == ["notes.txt"]
    inside = data / "copy"
    done = edge("backup", str(inside), "--data-dir", str(data), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"edge backup: {inside} is inside the data directory {data}; "
                                                 "name a directory elsewhere (on another disk, best)\n")
    assert not inside.exists()


# -- a damaged store: one line that says what to do, never a traceback or SIGBUS -----------------

def damaged(data: Path, how: str) -> None:
    """A store of 100 values, then its file cut in half (a copy that did not finish), its
    pages after LMDB's two meta pages zeroed (what a torn `cp` of a running store can hold),
    or all of it zeroed."""
    store = Store.open(data)
    store.write_sync(lambda t: [t.put("state", b"items\x00k%03d" % i, encode_value("x" * 2000)) for i in range(100)])
    store.close()
    size = (data / "data.mdb").stat().st_size
    with open(data / "data.mdb", "r+b") as f:
        if how == "cut":
            f.truncate(size // 2)
        else:
            start = 0 if how == "zeroed" else 2 * 4096
            f.seek(start)
            f.write(bytes(size - start))


def test_edge_start_on_a_damaged_store_says_so_in_one_line(tmp_path):
    write_project(tmp_path / "app", PROJECT)
    expected = {
        "cut": "data.mdb is {half} but its last commit uses {whole}: the file was cut off (a copy that did not "
               "finish, or a full disk while copying)",
        "torn": "its tables cannot be read (mdb_dbi_open: MDB_CORRUPTED: Located page was wrong type)",
        "zeroed": "data.mdb is not a store edge can read ({data}: MDB_INVALID: File is not an LMDB file)",
    }
    for how, problem in expected.items():
        data = tmp_path / how
        damaged(data, how)
        whole = (data / "data.mdb").stat().st_size * 2
        done = subprocess.run([sys.executable, "-m", "edge", "start", "--dir", str(tmp_path / "app"),
                               "--data-dir", str(data), "--port", "0"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
        problem = problem.format(half=f"{whole / 2 / (1 << 20):.1f} MiB", whole=f"{whole / (1 << 20):.1f} MiB",
                                 data=data)
        assert (done.returncode, done.stderr) == (1, (
            f"edge start: the store in {data} is damaged: {problem}. Restore a copy made with `edge backup` "
            f"into {data}, or move {data} aside to start with an empty store\n")), how


def test_compact_and_backup_by_root_keep_the_owner_and_mode_of_the_services_store(tmp_path):
    """`sudo ./todo compact` without `-u todo` handed data.mdb to root (0644), and the service,
    running as todo, then refused to start."""
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root: the store belongs to nobody, compact runs as root")
    nobody = pwd.getpwnam("nobody")
    data = tmp_path / "data"
    grown_store(data, churn=300)
    for name in ("data.mdb", "lock.mdb"):
        os.chown(data / name, nobody.pw_uid, nobody.pw_gid)
    os.chmod(data / "data.mdb", 0o640)
    done = subprocess.run([sys.executable, "-m", "edge", "compact", "--data-dir", str(data)], capture_output=True,
                          text=True, cwd=str(tmp_path), stdin=subprocess.DEVNULL, timeout=60,
                          preexec_fn=lambda: os.umask(0o077))
    assert done.returncode == 0, done.stderr
    st = (data / "data.mdb").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (nobody.pw_uid, nobody.pw_gid, 0o640)
    # and a backup root makes can be put back in place as it is
    done = subprocess.run([sys.executable, "-m", "edge", "backup", str(tmp_path / "bk"), "--data-dir", str(data)],
                          capture_output=True, text=True, cwd=str(tmp_path), stdin=subprocess.DEVNULL, timeout=60,
                          preexec_fn=lambda: os.umask(0o077))
    assert done.returncode == 0, done.stderr
    st = (tmp_path / "bk" / "data.mdb").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (nobody.pw_uid, nobody.pw_gid, 0o640)


@pytest.fixture
def mount_point(tmp_path):
    """``mount(options)`` mounts a small tmpfs (root only), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a read-only filesystem")
    mounted = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)])


def test_backup_and_compact_on_read_only_and_broken_destinations_say_what_is_wrong(tmp_path, mount_point):
    """A tester's tracebacks: DEST on a read-only disk, a dangling link (an unmounted USB
    stick), a file in the way; compact on a card the kernel remounted read-only."""
    data = tmp_path / "data"
    kept = grown_store(data, churn=10)
    ro = mount_point("ro", "size=4m,ro")
    done = edge("backup", str(ro / "b"), "--data-dir", str(data), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, f"edge backup: cannot write the backup to {ro / 'b'}: that "
                                                 "filesystem is mounted read-only\n")
    (tmp_path / "stick").symlink_to(tmp_path / "not-mounted")
    done = edge("backup", str(tmp_path / "stick"), "--data-dir", str(data), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, (
        f"edge backup: cannot write the backup to {tmp_path / 'stick'}: it is a link to {tmp_path / 'not-mounted'}, "
        "which does not exist (a disk that is not mounted?)\n"))
    (tmp_path / "afile").write_text("x")
    done = edge("backup", str(tmp_path / "afile" / "sub"), "--data-dir", str(data), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, (
        f"edge backup: cannot write the backup to {tmp_path / 'afile' / 'sub'}: a file is in the way of that "
        "directory\n"))
    # A card remounted read-only: compact cannot, backup can (and nothing could be writing there).
    card = mount_point("card", "size=16m")
    subprocess.run(["cp", "-a", str(data), str(card / "data")], check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(card)], check=True)
    done = edge("compact", "--data-dir", str(card / "data"), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, (
        f"edge compact: cannot compact the store in {card / 'data'}: that filesystem is mounted read-only; compact "
        "writes its copy beside data.mdb: `edge backup DEST` copies the store to another disk instead\n"))
    done = edge("backup", str(tmp_path / "rescued"), "--data-dir", str(card / "data"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert contents(tmp_path / "rescued") == kept


def test_a_backup_killed_halfway_is_redone_into_the_same_directory(tmp_path):
    data, dest = tmp_path / "data", tmp_path / "bk"
    kept = grown_store(data, churn=10)
    (dest / ".partial").mkdir(parents=True)
    (dest / ".partial" / "data.mdb").write_bytes(b"half a copy")
    done = edge("backup", str(dest), "--data-dir", str(data), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(dest)) == ["data.mdb"]
    assert contents(dest) == kept
