"""Many dead letters: `edge dlq list`, `GET /__edge/dlq`, `DELETE /__edge/dlq?all=true` and
`edge dlq redrive` keep their memory bounded (a handler failing for weeks makes tens of
thousands of them, and the device has 512 MB). Real LMDB in ``tmp_path``, the real CLI and
server in subprocesses; peak memory from ``wait4`` (the CLI) and ``/proc/PID/status`` (the
server)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from edge.queues import dlq as dlq_module
from edge.queues import records as R
from edge.store import Store

from .conftest import EdgeServer, wait_for, write_project
from .test_queues import SERVER_PROJECT

#: failed_at of dead letter 1 (2023-11-14 22:13:20 UTC); each next one a second later.
T0 = 1_700_000_000.0
N = 20_000
#: Growth of a CLI run's peak anonymous memory over one of `edge dlq list --limit 1` allowed
#: with N dead letters (before: +40 MB for `list`, +31 MB for `redrive`, +27 MB for `list`
#: through the server; now under 2 MB).
CLI_MARGIN_KB = 8_000
#: Growth allowed of the server's VmHWM for one GET (before: +63 MB) and of its RssAnon for
#: one DELETE of all N (before: +12 MB, for good, with every id in the answer; now the count
#: and the first 1000 ids).
SERVER_MARGIN_KB = 5_000


def pad(i: int) -> str:
    return f"p{i}:" + "x" * 300  # ~the size of a real message's data


def fill_dead(data: Path, n: int, *, record_every: int = 0) -> None:
    """``n`` dead letters of step Poison (every ``record_every``-th one of step Record instead),
    ids 1..n, written straight into the store (as the server writes them)."""
    store = Store.open(data)
    try:
        for start in range(0, n, 5000):
            def put(txn, start=start):
                first = R.next_seq(txn, R.DLQ_SEQ_KEY, min(5000, n - start))
                for i in range(first, first + min(5000, n - start)):
                    record = record_every and i % record_every == 0
                    dead = R.DeadLetter(
                        step="Record" if record else "Poison", topic="jobs" if record else "poison",
                        data=msgspec.Raw(msgspec.msgpack.encode({"id": pad(i)})),
                        error="ValueError: still broken", attempts=1, failed_at=T0 + i - 1,
                        trace_id=f"{i:032x}", enqueued_at=T0 + i - 2)
                    txn.put("dlq", R.dlq_key(i), R.encode_dead(dead))
            store.write_sync(put)
    finally:
        store.close()


def counts(data: Path) -> tuple[int, int]:
    """``(messages queued, dead letters)`` in the store."""
    store = Store.open(data)
    try:
        return store.read(lambda t: (t.count("queue"), t.count("dlq")))
    finally:
        store.close()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    anon_kb: int  # the process's peak anonymous memory (RssAnon, sampled)
    peak_kb: int  # its peak resident set (VmHWM, including LMDB file pages)


#: ``python -m edge`` that writes its peak RssAnon (kB, sampled every 2 ms) and VmHWM to
#: $EDGE_TEST_HWM on exit. Anonymous memory is what runs a 512 MB device out of memory; VmHWM
#: also counts the pages of the LMDB file that a read touched (page cache, reclaimable, as
#: large as the table). Not wait4's ru_maxrss: on Linux that starts at the parent's RSS.
_MEASURED = """
import atexit, os, runpy, sys, threading, time

def status():
    with open("/proc/self/status") as f:
        return {x.split(":")[0]: int(x.split()[1]) for x in f if x.startswith(("RssAnon:", "VmHWM:"))}

peak = [0]

def sample():
    while True:
        peak[0] = max(peak[0], status()["RssAnon"])
        time.sleep(0.002)

def report():
    now = status()
    with open(os.environ["EDGE_TEST_HWM"], "w") as out:
        out.write(f"{max(peak[0], now['RssAnon'])} {now['VmHWM']}")

threading.Thread(target=sample, daemon=True).start()
atexit.register(report)
sys.argv[0] = "edge"
runpy.run_module("edge", run_name="__main__", alter_sys=True)
"""


def cli(*args, data: Path, project: Path, port: int | None = None) -> Run:
    """``edge ARGS`` in a subprocess (TZ=UTC: the timestamps it prints are fixed)."""
    cmd = [sys.executable, "-c", _MEASURED, *args, "--dir", str(project), "--data-dir", str(data),
           "--port", str(port or 9)]  # port 9 (discard): nothing listens, so the CLI opens --data-dir
    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "hwm"
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "TZ": "UTC", "EDGE_TEST_HWM": str(hwm)})
        anon, peak = map(int, hwm.read_text().split())
        return Run(out.returncode, out.stdout, out.stderr, anon, peak)


def line(i: int, step: str = "Poison", topic: str = "poison") -> str:
    """What `edge dlq list` prints for dead letter ``i`` of :func:`fill_dead` (see the first one
    spelled out in :func:`test_list_shows_the_first_100_and_says_how_to_see_the_rest`)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 + i - 1))
    data = ('{"id": "' + pad(i))[:57]
    return f"{i:>6}  {stamp}  {step} <- {topic}  attempts 1  ValueError: still broken  data {data}...  trace {i:032x}"


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """``(project, data dir)`` with N dead letters of Poison; no server. Tests that change the
    store copy it first."""
    root = tmp_path_factory.mktemp("many")
    project = write_project(root / "app", SERVER_PROJECT)
    fill_dead(root / "data", N)
    return project, root / "data"


def copy_of(data: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "data"
    dest.mkdir()
    for f in data.iterdir():
        if f.is_file():
            (dest / f.name).write_bytes(f.read_bytes())
    return dest


# -- edge dlq list, on the data directory ---------------------------------------------------

def test_list_shows_the_first_100_and_says_how_to_see_the_rest(many):
    project, data = many
    small = cli("dlq", "list", "--limit", "1", data=data, project=project)
    out = cli("dlq", "list", data=data, project=project)  # before: all 20,000 (+40 MB)
    assert out.anon_kb - small.anon_kb < CLI_MARGIN_KB, (out.anon_kb, small.anon_kb)

    assert line(1) == ('     1  2023-11-14 22:13:20  Poison <- poison  attempts 1  ValueError: still broken  '
                       'data {"id": "p1:' + "x" * 46 + '...  trace 00000000000000000000000000000001')
    assert (small.returncode, small.stderr) == (0, "")
    assert small.stdout.splitlines() == [
        line(1), "... and 19,999 more (20,000 in all): edge dlq list --after 1 --limit 1 shows the next 1, "
                 "edge dlq list --all every one"]
    assert (out.returncode, out.stderr) == (0, "")
    lines = out.stdout.splitlines()
    assert lines[:100] == [line(i) for i in range(1, 101)]
    assert lines[100:] == [
        "... and 19,900 more (20,000 in all): edge dlq list --after 100 shows the next 100, "
        "edge dlq list --all every one"]


def test_list_after_an_id_and_the_last_page(many):
    project, data = many
    out = cli("dlq", "list", "--after", "19997", data=data, project=project)
    assert (out.returncode, out.stdout, out.stderr) == (0, "\n".join(line(i) for i in (19998, 19999, 20000)) + "\n", "")
    out = cli("dlq", "list", "--after", "20000", data=data, project=project)
    assert (out.returncode, out.stdout) == (0, "no dead letters after id 20000 (20,000 in all)\n")
    out = cli("dlq", "list", "--after", "x", data=data, project=project)
    assert (out.returncode, out.stderr) == (
        2, 'edge dlq: --after: expected a dead-letter id such as 17 (see `edge dlq list`), got "x"\n')
    out = cli("dlq", "list", "--limit", "0", data=data, project=project)
    assert (out.returncode, out.stderr) == (2, "edge dlq: --limit: expected at least 1, got 0 (--all shows every one)\n")
    out = cli("dlq", "list", "--all", "--limit", "5", data=data, project=project)
    assert (out.returncode, out.stderr) == (2, "edge dlq: --all shows every dead letter; leave out --limit\n")


def test_list_json_keeps_stdout_json_lines_and_says_the_rest_on_stderr(many):
    project, data = many
    out = cli("dlq", "list", "--json", "--limit", "2", data=data, project=project)
    assert out.returncode == 0
    entries = [msgspec.json.decode(x) for x in out.stdout.splitlines()]
    assert [e["id"] for e in entries] == [1, 2]
    assert entries[0] == {"id": 1, "topic": "poison", "step": "Poison", "data": {"id": pad(1)},
                          "error": "ValueError: still broken", "attempts": 1, "failed_at": T0,
                          "trace_id": f"{1:032x}", "enqueued_at": T0 - 1}
    assert out.stderr == ("... and 19,998 more (20,000 in all): edge dlq list --after 2 --limit 2 shows the next 2, "
                          "edge dlq list --all every one\n")


def test_list_all_streams_page_by_page(many):
    project, data = many
    small = cli("dlq", "list", "--limit", "1", data=data, project=project)
    out = cli("dlq", "list", "--all", "--json", data=data, project=project)
    assert (out.returncode, out.stderr) == (0, "")
    ids = [msgspec.json.decode(x)["id"] for x in out.stdout.splitlines()]
    assert ids == list(range(1, N + 1))
    assert out.anon_kb - small.anon_kb < CLI_MARGIN_KB, (out.anon_kb, small.anon_kb)


def test_a_step_filter_counts_without_decoding_every_entry(tmp_path, monkeypatch):
    fill_dead(tmp_path / "data", 2000, record_every=10)
    store = Store.open(tmp_path / "data")
    decoded = []
    real = dlq_module.decode_dead
    monkeypatch.setattr(dlq_module, "decode_dead", lambda raw: decoded.append(1) or real(raw))
    try:
        page = dlq_module.list_page(store, step="Record", limit=3)
        assert [d["id"] for d in page["dead_letters"]] == [10, 20, 30]
        assert {k: page[k] for k in ("total", "more", "next_after")} == {"total": 200, "more": 197, "next_after": 30}
        assert len(decoded) == 3  # the 3 it returns, not the 2,000 it counted
        page = dlq_module.list_page(store, step="Record", limit=3, after=1990)
        assert ([d["id"] for d in page["dead_letters"]], page["total"], page["more"], page["next_after"]) == (
            [2000], 200, 0, None)
        page = dlq_module.list_page(store, limit=3, after=1995)
        assert ([d["id"] for d in page["dead_letters"]], page["total"], page["more"]) == ([1996, 1997, 1998], 2000, 2)
        monkeypatch.setattr(dlq_module, "MAX_PAGE_BYTES", 1000)  # ~370 bytes each: a page of 2
        page = dlq_module.list_page(store, limit=100)
        assert ([d["id"] for d in page["dead_letters"]], page["more"], page["next_after"]) == ([1, 2], 1998, 2)
    finally:
        store.close()


async def test_delete_counts_all_and_keeps_the_first_ids(tmp_path):
    fill_dead(tmp_path / "data", 2500, record_every=10)  # 3 transactions of up to 1000
    store = Store.open(tmp_path / "data")
    try:
        assert await dlq_module.delete_dead(store, step="Record", keep=3) == (250, [10, 20, 30])
        assert await dlq_module.delete_dead(store, dlq_id=11, step="Record") == (0, [])
        assert await dlq_module.delete_dead(store, keep=2) == (2250, [1, 2])
        assert await dlq_module.delete_dead(store) == (0, [])
        assert store.read(lambda t: t.count("dlq")) == 0
    finally:
        store.close()


# -- edge dlq redrive, on the data directory ------------------------------------------------

def test_redrive_of_every_dead_letter_moves_each_once_in_bounded_memory(many, tmp_path):
    project, data = many
    data = copy_of(data, tmp_path)
    small = cli("dlq", "list", "--limit", "1", data=data, project=project)
    out = cli("dlq", "redrive", data=data, project=project)
    assert (out.returncode, out.stdout, out.stderr) == (0, "redriven: 20000\n", "")
    assert counts(data) == (N, 0)  # each moved once: N messages queued, none left
    assert out.anon_kb - small.anon_kb < CLI_MARGIN_KB, (out.anon_kb, small.anon_kb)


def test_redrive_of_one_step_on_the_data_directory(tmp_path):
    project = write_project(tmp_path / "app", SERVER_PROJECT)
    fill_dead(tmp_path / "data", 3000, record_every=10)
    out = cli("dlq", "redrive", "--step", "Record", data=tmp_path / "data", project=project)
    assert (out.returncode, out.stdout, out.stderr) == (0, "redriven: 300\n", "")
    assert counts(tmp_path / "data") == (300, 2700)
    out = cli("dlq", "list", "--step", "Record", data=tmp_path / "data", project=project)
    assert (out.returncode, out.stdout) == (0, "no dead letters\n")


def gone_line(i: int) -> str:
    return (f'skipped {i}: step "Poison" no longer subscribes to "poison"; redrive it to the step that handles it '
            f"now with --to STEP, or delete it (edge dlq delete --id {i})")


def without_poison(root: Path) -> Path:
    """SERVER_PROJECT after its step Poison was removed: its dead letters are orphans."""
    return write_project(root / "app-renamed", {k: v for k, v in SERVER_PROJECT.items() if "poison" not in k})


def test_redrive_that_skips_every_one_lists_the_first_100_and_counts_the_rest(many, tmp_path):
    _, data = many
    project, data = without_poison(tmp_path), copy_of(data, tmp_path)
    small = cli("dlq", "list", "--limit", "1", data=data, project=project)
    out = cli("dlq", "redrive", "--step", "Poison", data=data, project=project)  # before: 20,000 lines (3.3 MB), +9.3 MB
    assert (out.returncode, out.stdout) == (1, "redriven: 0\n")
    assert out.stderr.splitlines() == [gone_line(i) for i in range(1, 101)] + [
        "... and 19,900 more skipped (20,000 in all); `edge dlq list` shows them"]
    assert counts(data) == (0, N)  # nothing moved
    assert out.anon_kb - small.anon_kb < CLI_MARGIN_KB, (out.anon_kb, small.anon_kb)


# -- over a real server ---------------------------------------------------------------------

def status(pid: int) -> dict[str, int]:
    """The server's VmHWM and RssAnon (kB)."""
    with open(f"/proc/{pid}/status") as f:
        return {x.split(":")[0]: int(x.split()[1]) for x in f if x.startswith(("VmHWM:", "RssAnon:"))}


@pytest.fixture
def warm(many, tmp_path):
    """A real server on a copy of the N dead letters, and a client, once a first small GET
    has warmed it up (what is measured after that is the request under test)."""
    project, data = many
    data = copy_of(data, tmp_path)
    server = EdgeServer(project, data).start()
    try:
        with server.client() as client:
            assert client.get("/__edge/dlq", params={"limit": 1}).status_code == 200
            yield server, client, project, data
    finally:
        server.kill()


def test_the_endpoint_pages_and_counts_and_the_server_stays_small(warm):
    server, client, project, data = warm
    before = status(server.proc.pid)["VmHWM"]
    body = client.get("/__edge/dlq").json()  # before: all 20,000 (a 10 MB body, VmHWM +63 MB)
    grown = status(server.proc.pid)["VmHWM"] - before
    assert grown < SERVER_MARGIN_KB, grown
    assert [d["id"] for d in body["dead_letters"]] == list(range(1, 101))
    assert body["dead_letters"][0] == {
        "id": 1, "topic": "poison", "step": "Poison", "data": {"id": pad(1)},
        "error": "ValueError: still broken", "attempts": 1, "failed_at": T0,
        "trace_id": f"{1:032x}", "enqueued_at": T0 - 1}
    assert {k: body[k] for k in ("total", "more", "next_after")} == {"total": N, "more": N - 100, "next_after": 100}

    body = client.get("/__edge/dlq", params={"limit": 200}).json()  # what the console asks
    assert (len(body["dead_letters"]), body["more"]) == (200, N - 200)
    body = client.get("/__edge/dlq", params={"after": 19_998}).json()
    assert ([d["id"] for d in body["dead_letters"]], body["total"], body["more"], body["next_after"]) == (
        [19_999, 20_000], N, 0, None)
    r = client.get("/__edge/dlq", params={"limit": 1001})
    assert (r.status_code, r.json()["detail"]) == (
        400, "limit: expected an integer of at most 1000, got 1001 (page on with after=<the last id>)")
    r = client.get("/__edge/dlq", params={"after": "x"})
    assert (r.status_code, r.json()["detail"]) == (400, "after: expected an integer, got 'x'")

    # the CLI through the server: same answer, same bounded memory
    small = cli("dlq", "list", "--limit", "1", data=data, project=project, port=server.port)
    out = cli("dlq", "list", "--all", data=data, project=project, port=server.port)
    assert (out.returncode, out.stderr) == (0, "")
    lines = out.stdout.splitlines()
    assert (len(lines), lines[0], lines[-1]) == (N, line(1), line(N))
    assert out.anon_kb - small.anon_kb < CLI_MARGIN_KB, (out.anon_kb, small.anon_kb)
    out = cli("dlq", "list", "--json", "--limit", "1500", data=data, project=project, port=server.port)
    assert [msgspec.json.decode(x)["id"] for x in out.stdout.splitlines()] == list(range(1, 1501))
    assert (out.returncode, out.stderr) == (0, (
        "... and 18,500 more (20,000 in all): edge dlq list --after 1500 --limit 1500 shows the next 1,500, "
        "edge dlq list --all every one\n"))


def test_deleting_every_dead_letter_holds_ids_not_entries(warm):
    server, client = warm[:2]
    before = status(server.proc.pid)["RssAnon"]
    r = client.delete("/__edge/dlq", params={"all": "true"})
    grown = status(server.proc.pid)["RssAnon"] - before  # before: +12 MB, for good
    assert grown < SERVER_MARGIN_KB, grown
    assert r.status_code == 200
    assert r.json() == {"count": N, "deleted": list(range(1, 1001))}  # the count, and the first ids
    assert client.get("/__edge/dlq").json() == {"dead_letters": [], "total": 0, "more": 0, "next_after": None}
    assert client.get("/__edge/health").json()["queues"]["dead_letters"] == 0
    assert client.delete("/__edge/dlq", params={"all": "true"}).json() == {"count": 0, "deleted": []}


def test_redrive_through_the_server_moves_every_one_once_in_pages(warm):
    server, client = warm[:2]
    before = status(server.proc.pid)["RssAnon"]
    r = client.post("/__edge/dlq/redrive", json={"step": "Poison"}, timeout=120)
    grown = status(server.proc.pid)["RssAnon"] - before  # before: +56 MB (all read, one batch); now ~9 MB
    assert r.status_code == 200
    # The count, and the first 1000 ids (not all of them)
    assert r.json() == {"count": N, "redriven": list(range(1, 1001)), "skipped_count": 0, "skipped": []}
    assert grown < 3 * SERVER_MARGIN_KB, grown
    # They fail again (Poison is still broken) and come back with new ids, which this
    # redrive did not take again: each moved once.
    def settled():
        body = client.get("/__edge/dlq", params={"limit": 1}).json()
        return body if body["total"] == N and body["dead_letters"][0]["id"] > N else None
    assert wait_for(settled, timeout=120)["dead_letters"][0]["id"] == N + 1


def test_redrive_through_the_server_that_skips_every_one_answers_a_count_and_the_first_100(many, tmp_path):
    _, data = many
    server = EdgeServer(without_poison(tmp_path), copy_of(data, tmp_path)).start()
    try:
        with server.client() as client:
            assert client.get("/__edge/dlq", params={"limit": 1}).status_code == 200
            before = status(server.proc.pid)["RssAnon"]
            r = client.post("/__edge/dlq/redrive", json={"step": "Poison"}, timeout=120)
            grown = status(server.proc.pid)["RssAnon"] - before  # before: +10 MB, a 3.5 MB answer
            assert r.status_code == 200
            body = r.json()
            assert {k: body[k] for k in ("count", "redriven", "skipped_count")} == {
                "count": 0, "redriven": [], "skipped_count": N}
            assert [f"skipped {s['id']}: {s['reason']}" for s in body["skipped"]] == [gone_line(i) for i in range(1, 101)]
            assert grown < SERVER_MARGIN_KB, grown
            out = cli("dlq", "redrive", "--step", "Poison", data=server.data_dir, project=server.project,
                      port=server.port)
            assert (out.returncode, out.stdout) == (1, "redriven: 0\n")
            assert out.stderr.splitlines()[100:] == [
                "... and 19,900 more skipped (20,000 in all); `edge dlq list` shows them"]
    finally:
        server.kill()
