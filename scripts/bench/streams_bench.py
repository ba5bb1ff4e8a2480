"""scripts/bench_streams: one stream group, N WebSocket subscribers; set -> receipt latency and RSS.

Three servers are measured one after the other with the same subscriber processes:

- edge (``edge start``): an HTTP step calls ``ctx.streams.bench.set("room", ...)`` (durable,
  group-committed), every subscriber of group "room" gets the ``create``/``update`` frame;
- the competitor, a bare ``websockets`` broadcast server (asyncio, ``websockets.broadcast``):
  a control message makes it broadcast one JSON frame to every socket;
- the floor, bare Granian RSGI doing the same broadcast: what Granian's WebSocket stack alone
  costs in memory, whatever runs on top of it.

Latency is measured from the moment the driver sends the trigger (HTTP POST for edge, a
control frame for the others; the send time travels in the payload) to the moment each
subscriber process has the frame, on the same machine clock. Subscribers run in several
processes so that their own decoding does not dominate the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine, rss_mib, start, start_edge, stop, wait_http  # noqa: E402

STREAM = '''
config = {"name": "bench", "baseConfig": {"storageType": "%s"}}
'''
SET_STEP = '''
config = {"name": "Set", "triggers": [{"type": "http", "method": "POST", "path": "/set/:id"}]}

async def handler(req, ctx):
    await ctx.streams.bench.set("room", req.path_params["id"], req.body)
    return {"status": 204}
'''

# --- the two reference servers ---------------------------------------------------------------

WEBSOCKETS_SERVER = r'''
import asyncio, sys
from websockets.asyncio.server import serve, broadcast

clients = set()

async def handler(ws):
    clients.add(ws)
    try:
        async for message in ws:
            if message.startswith('{"set"'):   # the driver's trigger
                broadcast(clients, message)
            else:                              # a join: answer like a sync
                await ws.send('{"type":"stream","event":{"type":"sync","data":[]}}')
    finally:
        clients.discard(ws)

async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None, max_queue=None):
        print("ready", flush=True)
        await asyncio.Future()

asyncio.run(main())
'''

GRANIAN_SERVER = r'''
import asyncio, os, sys
from granian.constants import Interfaces
from granian.server.embed import Server

clients = {}

async def app(scope, proto):
    if scope.proto != "ws":
        proto.response_bytes(200, [], b"ok")
        return
    transport = await proto.accept()
    queue = asyncio.Queue()
    clients[transport] = queue

    async def writer():
        while True:
            await transport.send_str(await queue.get())

    task = asyncio.create_task(writer())
    try:
        while True:
            message = await transport.receive()
            if message.kind == 0:
                break
            if message.data.startswith('{"set"'):
                for q in clients.values():
                    q.put_nowait(message.data)
            else:
                queue.put_nowait('{"type":"stream","event":{"type":"sync","data":[]}}')
    except Exception:
        pass
    finally:
        clients.pop(transport, None)
        task.cancel()

async def main():
    server = Server(app, address="127.0.0.1", port=int(sys.argv[1]), interface=Interfaces.RSGI,
                    websockets=True, log_enabled=False, backlog=2048)
    await server.serve()

asyncio.run(main())
os._exit(0)
'''

JOIN = json.dumps({"type": "join", "data": {"streamName": "bench", "groupId": "room", "subscriptionId": "s"}})


# --- subscriber worker -------------------------------------------------------------------------


async def subscriber_worker(url: str, count: int) -> None:
    """Open ``count`` subscribed sockets; record receipt latencies until stdin says "stop"."""
    from websockets.asyncio.client import connect

    latencies: list[float] = []

    async def one(ws):
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            sent = _sent_at(message)
            if sent is not None:
                latencies.append((now - sent) * 1000)

    sockets = []
    for _ in range(count):
        ws = await connect(url, compression=None, max_queue=None, open_timeout=30, ping_interval=None)
        await ws.send(JOIN)
        await ws.recv()  # the sync
        sockets.append(ws)
    tasks = [asyncio.create_task(one(ws)) for ws in sockets]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.sleep(0.5)
    for task in tasks:
        task.cancel()
    print(json.dumps(latencies), flush=True)
    for ws in sockets:
        ws.transport.abort()


def _sent_at(message) -> float | None:
    if "set" in message:
        return message["set"]
    event = message.get("event") or {}
    data = event.get("data")
    if isinstance(data, dict) and "set" in data:
        return data["set"]
    return None


# --- the driver -----------------------------------------------------------------------------------


class Subscribers:
    def __init__(self, url: str, total: int, procs: int):
        per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
        self.procs = [
            subprocess.Popen([sys.executable, __file__, "--worker", url, str(n)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
            for n in per if n
        ]
        for proc in self.procs:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"a subscriber process failed to connect to {url}")

    def finish(self) -> list[float]:
        out: list[float] = []
        for proc in self.procs:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        for proc in self.procs:
            out += json.loads(proc.stdout.readline())
            proc.wait(30)
        return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_edge(tmp: Path, args, storage: str, interface: str = "rsgi") -> dict:
    import httpx

    app = tmp / f"edge-{storage}-{interface}"
    (app / "steps").mkdir(parents=True)
    (app / "steps" / "bench_stream.py").write_text(STREAM % storage)
    (app / "steps" / "set_step.py").write_text(SET_STEP)
    port = free_port()
    log = open(tmp / f"edge-{storage}-{interface}.log", "w")
    server = start_edge(app, tmp / f"data-{storage}-{interface}", port, env={"EDGE_SERVER_INTERFACE": interface}, log=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/__edge/health")
        idle = rss_mib(server.pid)
        subs = Subscribers(f"ws://127.0.0.1:{port}/", args.subscribers, args.procs)
        connected = rss_mib(server.pid)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for i in range(args.updates):
                response = client.post(f"/set/item{i % 10}", json={"set": time.time(), "n": i})
                assert response.status_code == 204, response.text
                time.sleep(args.interval)
        after = rss_mib(server.pid)
        latencies = subs.finish()
        return {"idle": idle, "rss": max(connected, after), "lat": latencies}
    finally:
        stop(server, 20)


def run_reference(tmp: Path, args, source: str, name: str) -> dict:
    from websockets.sync.client import connect

    script = tmp / f"{name}.py"
    script.write_text(source)
    port = free_port()
    server = start([sys.executable, str(script), str(port)])
    try:
        _wait_ws(port)
        idle = rss_mib(server.pid)
        subs = Subscribers(f"ws://127.0.0.1:{port}/", args.subscribers, args.procs)
        connected = rss_mib(server.pid)
        with connect(f"ws://127.0.0.1:{port}/", compression=None) as control:
            for i in range(args.updates):
                control.send(json.dumps({"set": time.time(), "n": i}))
                time.sleep(args.interval)
        after = rss_mib(server.pid)
        latencies = subs.finish()
        return {"idle": idle, "rss": max(connected, after), "lat": latencies}
    finally:
        stop(server, 20)


def _wait_ws(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between updates")
    parser.add_argument("--procs", type=int, default=4, help="subscriber processes")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(subscriber_worker(args.worker[0], int(args.worker[1])))
        return

    tmp = Path(tempfile.mkdtemp(prefix="edge-bench-streams-"))
    rows = [
        ("edge, default (LMDB) stream", run_edge(tmp, args, "default")),
        ("edge, memory stream", run_edge(tmp, args, "memory")),
        ("edge, default stream, ASGI interface", run_edge(tmp, args, "default", "asgi")),
        ("websockets broadcast (competitor)", run_reference(tmp, args, WEBSOCKETS_SERVER, "websockets_server")),
        ("bare Granian RSGI broadcast (floor)", run_reference(tmp, args, GRANIAN_SERVER, "granian_server")),
    ]
    expected = args.subscribers * args.updates
    print(f"machine: {machine()}; {args.subscribers} subscribers on one group in {args.procs} processes, "
          f"{args.updates} updates {args.interval * 1000:.0f} ms apart, loopback")
    print(f"{'':38} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'received':>10} {'RSS MiB':>8} {'idle MiB':>9}")
    for name, r in rows:
        lat = r["lat"]
        print(f"{name:38} {pct(lat, .5):>8.1f} {pct(lat, .99):>8.1f} {max(lat, default=float('nan')):>8.1f} "
              f"{len(lat):>5}/{expected:<5}{r['rss']:>8.1f} {r['idle']:>9.1f}")
    edge, competitor, floor = rows[0][1], rows[3][1], rows[4][1]
    p99 = pct(edge["lat"], .99)
    print(f"edge/websockets: p99 {p99 / pct(competitor['lat'], .99):.2f}x, RSS {edge['rss'] / competitor['rss']:.2f}x; "
          f"edge RSS over bare Granian: {edge['rss'] - floor['rss']:+.1f} MiB")
    print(f"targets (SPEC 13): p99 <= 100 ms -> {'met' if p99 <= 100 else 'NOT met'} ({p99:.1f}); "
          f"RSS <= 80 MiB with {args.subscribers} connections -> "
          f"{'met' if edge['rss'] <= 80 else 'NOT met'} ({edge['rss']:.1f})")



if __name__ == "__main__":
    main()
