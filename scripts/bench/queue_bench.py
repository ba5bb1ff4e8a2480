"""scripts/bench_queue: durable queue end to end (enqueue -> handler -> ack), edge vs Huey.

Each side runs in its own process (so its fsyncs and disk writes are its own), one after
the other, on the same disk:

- edge: the runtime with its store writer thread and queue service, one no-op queue step.
  ``--producers`` concurrent trio tasks each enqueue and wait until the message is durable
  (what ``POST /__edge/emit`` or an HTTP step does). Timed until every message has been
  handled and its ack committed (queue depth 0 on disk).
- Huey: ``SqliteHuey`` with its durable defaults (WAL, synchronous=FULL), one consumer with
  one thread worker in the same process, one producer thread calling the task. Polling is
  set short (initial_delay 0.01 s, max 0.1 s) so Huey never sleeps on an idle poll.

Both handle the same ~100-byte message. fsyncs are counted with ``strace -f -c`` (fsync,
fdatasync, msync; --seccomp-bpf so other syscalls run at full speed); bytes written come
from ``/proc/<pid>/io`` write_bytes over the timed part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = {"sensor": "greenhouse-1", "celsius": 21.5, "humidity": 0.61, "battery": 3.71, "seq": 0}
SYNC_CALLS = ("fsync", "fdatasync", "msync", "sync_file_range")


def write_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


# -- the two children ----------------------------------------------------------------------

def child_edge(n: int, producers: int, workdir: Path) -> dict:
    import trio

    sys.path.insert(0, str(ROOT))
    from edge.runtime import Runtime
    from edge.settings import Settings
    from edge.steps import Discovery, Step, parse_step_config, prepare_handler
    from edge.tracing import new_id

    handled = [0]
    done = None

    async def handler(data):  # async: it runs on the asyncio host loop, as under `edge start`
        handled[0] += 1
        if handled[0] == n:
            done.set()

    fields = parse_step_config({"name": "Sink", "triggers": [{"type": "queue", "topic": "bench"}]},
                               file="steps/sink_step.py")
    step = Step(**fields, handler=handler, file="steps/sink_step.py", module="steps.sink",
                call=prepare_handler(handler))
    settings = Settings.from_env(env={}, dir=workdir, data_dir=workdir / "edge-data")
    runtime = Runtime.open(settings, Discovery(project_dir=workdir, steps=(step,)), out=open(os.devnull, "w"))
    service = runtime.queues
    result = {}

    import asyncio
    import functools

    from edge._boundary import Host
    from edge.server.bridge import loop_factory

    async def main(host):
        nonlocal done
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(runtime.serve, host=host))
            commits0, bytes0 = runtime.store.commits, write_bytes()
            t0 = time.perf_counter()

            async def produce(k):
                for i in range(k, n, producers):
                    await service.emit("bench", {**PAYLOAD, "seq": i}, trace_id=new_id(16))

            async with trio.open_nursery() as inner:
                for k in range(producers):
                    inner.start_soon(produce, k)
            await done.wait()
            while service.health()["depth"] or service.committer.batch:  # every ack durable
                await trio.sleep(0.002)
            seconds = time.perf_counter() - t0
            result.update(seconds=seconds, write_bytes=write_bytes() - bytes0,
                          commits=runtime.store.commits - commits0)
            nursery.cancel_scope.cancel()

    async def hosted():
        # The server's shape: trio (queues, committer) as a guest on the host loop, where handlers run.
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        trio.lowlevel.start_guest_run(
            main, Host(loop), run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon, done_callback=finished.set_result,
            host_uses_signal_set_wakeup_fd=False)
        (await finished).unwrap()

    factory, loop_name = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(hosted())
    runtime.close()
    result["loop"] = loop_name
    return result


def child_huey(n: int, workdir: Path) -> dict:
    import threading

    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(workdir / "huey.db"))  # durable defaults
    handled = [0]
    done = threading.Event()

    @huey.task()
    def sink(data):
        handled[0] += 1
        if handled[0] == n:
            done.set()

    synchronous = huey.storage.conn.execute("pragma synchronous").fetchone()[0]
    journal = huey.storage.conn.execute("pragma journal_mode").fetchone()[0]
    consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=False,
                                    initial_delay=0.01, max_delay=0.1, check_worker_health=False)
    import logging

    logging.disable(logging.CRITICAL)
    consumer.start()
    bytes0 = write_bytes()
    t0 = time.perf_counter()

    def produce():
        for i in range(n):
            sink({**PAYLOAD, "seq": i})

    producer = threading.Thread(target=produce)
    producer.start()
    done.wait()
    seconds = time.perf_counter() - t0
    producer.join()
    result = {"seconds": seconds, "write_bytes": write_bytes() - bytes0,
              "sqlite": f"journal_mode={journal}, synchronous={synchronous}"}
    consumer.stop(graceful=True)
    return result


def http_ingest(workdir: Path, seconds: int, connections: int, batches: tuple[int, ...]) -> list[dict]:
    """``POST /__edge/emit`` through a real ``edge start``, loaded by wrk, one event per request
    and then lists of ``batch`` events per request: for each, messages accepted (202, durable)
    per second and disk bytes the server wrote per accepted message."""
    import textwrap

    from common import free_port, start_edge, stop, wait_http, wrk

    app = workdir / "emit-app"
    (app / "steps").mkdir(parents=True)
    (app / "steps" / "sink_step.py").write_text(textwrap.dedent("""
        config = {"name": "Sink", "triggers": [{"type": "queue", "topic": "bench"}]}

        async def handler(data, ctx):
            pass
    """))
    port = free_port()
    proc = start_edge(app, workdir / "emit-data", port)
    results = []
    try:
        wait_http(f"http://127.0.0.1:{port}/__edge/health")
        url = f"http://127.0.0.1:{port}/__edge/emit"
        for batch in batches:
            event = {"topic": "bench", "data": PAYLOAD}
            body = json.dumps(event if batch == 1 else [event] * batch).replace("'", "\\'")
            script = workdir / f"emit-{batch}.lua"
            script.write_text(f"wrk.method = 'POST'\nwrk.body = '{body}'\n"
                              "wrk.headers['Content-Type'] = 'application/json'\n")
            wrk(url, seconds=2, connections=connections, script=str(script))  # warm-up
            before = _proc_write_bytes(proc.pid)
            load = wrk(url, seconds=seconds, connections=connections, script=str(script))
            written = _proc_write_bytes(proc.pid) - before
            accepted = (round(load["rps"] * seconds) - load["non2xx"]) * batch
            results.append({"batch": batch, "rate": accepted / seconds, "messages": accepted, "write_bytes": written,
                            "non2xx": load["non2xx"], "connections": connections})
    finally:
        stop(proc)
    return results


def _proc_write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


# -- the parent ------------------------------------------------------------------------------

def run_child(kind: str, n: int, producers: int, workdir: Path, use_strace: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--messages", str(n), "--producers", str(producers),
           "--workdir", str(workdir)]
    trace_file = workdir / f"{kind}.strace"
    if use_strace:
        cmd = ["strace", "-f", "-c", "--seccomp-bpf", "-e", "trace=" + ",".join(SYNC_CALLS),
               "-o", str(trace_file)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} benchmark failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["fsyncs"] = _count_syncs(trace_file) if use_strace else None
    result["rate"] = n / result["seconds"]
    result["messages"] = n
    return result


def _count_syncs(path: Path) -> int:
    total = 0
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in SYNC_CALLS:
            total += int(parts[3])  # % time, seconds, usecs/call, calls, [errors,] syscall
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="edge messages (default 100000)")
    parser.add_argument("--huey-messages", type=int, default=5_000, help="Huey tasks (default 5000)")
    parser.add_argument("--producers", type=int, default=64, help="concurrent edge producers (default 64)")
    parser.add_argument("--workdir", help="directory on the disk to measure (default: a temp dir under the repo)")
    parser.add_argument("--no-strace", action="store_true", help="do not count fsyncs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--http-seconds", type=int, default=10,
                        help="seconds of POST /__edge/emit load through a real server (0: skip)")
    parser.add_argument("--http-connections", type=int, default=256,
                        help="concurrent HTTP clients for that load (each waits for its message to be durable)")
    parser.add_argument("--http-batch", type=int, default=50,
                        help="events per request in the second HTTP row (a list; 1: skip that row)")
    parser.add_argument("--child", choices=("edge", "huey"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        workdir = Path(args.workdir)
        result = child_edge(args.messages, args.producers, workdir) if args.child == "edge" else child_huey(args.messages, workdir)
        print(json.dumps(result))
        return

    use_strace = not args.no_strace and shutil.which("strace") is not None
    base = Path(args.workdir) if args.workdir else ROOT
    workdir = Path(tempfile.mkdtemp(prefix=".bench-queue-", dir=base))
    try:
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(workdir)], capture_output=True, text=True).stdout.strip()
        if fs in ("tmpfs", "ramfs"):
            print(f"warning: {workdir} is on {fs}: fsyncs and disk writes are free there; pass --workdir", file=sys.stderr)
        edge = run_child("edge", args.messages, args.producers, workdir, use_strace)
        huey = run_child("huey", args.huey_messages, 1, workdir, use_strace)
        batches = (1,) if args.http_batch <= 1 else (1, args.http_batch)
        ingest = http_ingest(workdir, args.http_seconds, args.http_connections, batches) if args.http_seconds else []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps({"edge": edge, "huey": huey, "http_ingest": ingest, "machine": machine()}))
        return

    def per(result, key):
        value = result.get(key)
        return None if value is None else value / result["messages"]

    rows = [
        ("messages/s", f"{edge['rate']:,.0f}", f"{huey['rate']:,.0f}", f"{edge['rate'] / huey['rate']:.1f}x"),
        ("fsyncs/message", _fmt(per(edge, "fsyncs"), "{:.4f}"), _fmt(per(huey, "fsyncs"), "{:.2f}"), ""),
        ("bytes written/message", _bytes(per(edge, "write_bytes")), _bytes(per(huey, "write_bytes")), ""),
        ("messages", f"{edge['messages']:,}", f"{huey['messages']:,}", ""),
        ("LMDB commits", f"{edge['commits']:,}", "", ""),
    ]
    print(f"durable queue, enqueue -> handler -> ack ({machine()}, fs {fs})")
    print(f"edge: {args.producers} concurrent producers, async handler on the {edge['loop']} host loop (trio guest); "
          f"Huey SqliteHuey ({huey['sqlite']}), 1 thread worker")
    print(f"{'':24}{'edge':>14}{'huey':>14}{'ratio':>9}")
    for name, a, b, c in rows:
        print(f"{name:24}{a:>14}{b:>14}{c:>9}")
    targets = [
        ("edge >= 10,000 messages/s", edge["rate"] >= 10_000),
        ("edge >= 15x Huey", edge["rate"] >= 15 * huey["rate"]),
        ("edge <= 0.1 fsync/message", None if per(edge, "fsyncs") is None else per(edge, "fsyncs") <= 0.1),
        ("edge <= 2 KiB written/message", per(edge, "write_bytes") <= 2048),
    ]
    for row in ingest:
        per_msg = row["write_bytes"] / max(1, row["messages"])
        what = "one event per request" if row["batch"] == 1 else f"lists of {row['batch']} events"
        print(f"POST /__edge/emit through `edge start`, {what}, wrk -c{row['connections']}: "
              f"{row['rate']:,.0f} messages/s accepted (durable), {_bytes(per_msg)} written/message, "
              f"non-2xx {row['non2xx']}")
        if row["batch"] == 1:  # the target is for one message per request
            targets += [("emit over HTTP >= 10,000/s", row["rate"] >= 10_000),
                        ("emit over HTTP <= 2 KiB/message", per_msg <= 2048)]
    verdict = {True: "ok", False: "MISSED", None: "not measured"}
    print("targets: " + ", ".join(f"{name}: {verdict[ok]}" for name, ok in targets))


def _fmt(value, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def _bytes(value) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1024:.2f} KiB" if value >= 1024 else f"{value:.0f} B"


if __name__ == "__main__":
    main()
