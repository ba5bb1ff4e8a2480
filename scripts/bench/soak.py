"""scripts/soak: minutes of mixed load with SIGKILLs; prints acknowledged vs found and RSS over time.

Writers PUT items (state write + enqueue; 201 = acknowledged), a queue step marks each one
processed and updates a stream item, WebSocket clients join and leave the stream's group, and
every --kill-every seconds the server is killed with SIGKILL and started again on the same data
directory. At the end every acknowledged item must be in state and processed (delivered at
least once), and RSS should stay flat from run to run.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine, rss_mib, start_edge, wait_http  # noqa: E402

PROJECT = {
    "steps/put_step.py": """
        config = {"name": "Put", "triggers": [{"type": "http", "method": "PUT", "path": "/items/:key"}],
                  "enqueues": ["item.saved"]}

        async def handler(req, ctx):
            key = req.path_params["key"]
            await ctx.state.set("items", key, req.body)
            await ctx.enqueue({"topic": "item.saved", "data": {"key": key}})
            return {"status": 201, "body": {"key": key}}
    """,
    "steps/process_step.py": """
        import asyncio

        config = {"name": "Process", "triggers": [{"type": "queue", "topic": "item.saved"}]}

        async def handler(data, ctx):
            await asyncio.sleep(0.001)
            await ctx.state.set("processed", data["key"], True)
            await ctx.streams.live.set("all", data["key"][-2:], {"last": data["key"]})
    """,
    "steps/live_stream.py": """
        config = {"name": "live"}
    """,
}


def write_project(root: Path) -> None:
    for rel, source in PROJECT.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())


class Soak:
    def __init__(self, app: Path, data: Path, writers: int, sockets: int):
        self.app, self.data = app, data
        self.writers, self.sockets = writers, sockets
        self.acked: set[str] = set()
        self.lock = threading.Lock()
        self.port = free_port()
        self.proc = None
        self.running = threading.Event()
        self.stop = threading.Event()
        self.rss: list[tuple[float, float]] = []
        self.errors = {"refused": 0, "5xx": 0, "other": 0}
        self.frames = 0
        self.kills = 0

    def start_server(self) -> None:
        self.proc = start_edge(self.app, self.data, self.port)
        wait_http(f"http://127.0.0.1:{self.port}/__edge/health", timeout=30)
        self.running.set()

    def kill_server(self) -> None:
        self.running.clear()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def writer(self, n: int) -> None:
        seq = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
            while not self.stop.is_set():
                if not self.running.wait(0.2):
                    continue
                key = f"w{n}-{seq:08d}"
                try:
                    r = client.put(f"/items/{key}", json={"n": seq, "pad": "x" * random.randint(10, 400)})
                except httpx.TransportError:
                    self.errors["refused"] += 1  # killed under us: not acknowledged, fine
                    time.sleep(0.05)
                    continue
                seq += 1
                if r.status_code == 201:
                    with self.lock:
                        self.acked.add(key)
                elif r.status_code >= 500:
                    self.errors["5xx"] += 1
                else:
                    self.errors["other"] += 1

    def socket_client(self) -> None:
        from websockets.sync.client import connect

        while not self.stop.is_set():
            if not self.running.wait(0.2):
                continue
            try:
                with connect(f"ws://127.0.0.1:{self.port}/", open_timeout=5) as ws:
                    ws.send(json.dumps({"type": "join", "data": {"streamName": "live", "groupId": "all",
                                                                 "subscriptionId": "s"}}))
                    until = time.monotonic() + random.uniform(1, 5)
                    while time.monotonic() < until and not self.stop.is_set():
                        try:
                            ws.recv(timeout=0.5)
                            self.frames += 1
                        except TimeoutError:
                            pass
            except Exception:  # noqa: BLE001 - the server was killed: join again after restart
                time.sleep(0.2)

    def sample(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.rss.append((time.monotonic(), rss_mib(self.proc.pid)))
            except (OSError, ValueError):
                pass

    def check(self) -> dict:
        """Restart, wait for the queue to drain, look up every acknowledged item."""
        self.start_server()
        base = f"http://127.0.0.1:{self.port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                health = client.get("/__edge/health").json()["queues"]
                if health["depth"] == 0 and health["in_flight"] == 0:
                    break
                time.sleep(0.5)
            items = client.get("/__edge/state", params={"group": "items"}).json()["items"]
            processed = client.get("/__edge/state", params={"group": "processed"}).json()["items"]
            dead = client.get("/__edge/dlq").json()["dead_letters"]
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        missing = sorted(k for k in self.acked if k not in items)
        unprocessed = sorted(k for k in self.acked if k not in processed)
        return {"acknowledged": len(self.acked), "found": len(self.acked) - len(missing), "lost": len(missing),
                "unprocessed": len(unprocessed), "dead_letters": len(dead), "examples": missing[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--sockets", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    write_project(tmp / "app")
    soak = Soak(tmp / "app", tmp / "data", args.writers, args.sockets)
    soak.start_server()
    threads = [threading.Thread(target=soak.writer, args=(i,), daemon=True) for i in range(args.writers)]
    threads += [threading.Thread(target=soak.socket_client, daemon=True) for _ in range(args.sockets)]
    for t in threads:
        t.start()
    started = time.monotonic()
    next_kill = started + args.kill_every * random.uniform(0.5, 1.5)
    per_run: list[list[float]] = [[]]
    while time.monotonic() - started < args.seconds:
        time.sleep(1)
        soak.sample()
        if soak.rss:
            per_run[-1].append(soak.rss[-1][1])
        if time.monotonic() >= next_kill:
            soak.kill_server()
            soak.start_server()
            per_run.append([])
            next_kill = time.monotonic() + args.kill_every * random.uniform(0.5, 1.5)
    soak.stop.set()
    soak.running.clear()
    for t in threads:
        t.join(15)
    soak.kill_server()
    result = soak.check()
    print(f"soak: {args.seconds} s on {machine()}; {args.writers} writers, {args.sockets} WebSocket clients, "
          f"SIGKILL every ~{args.kill_every:g} s ({soak.kills - 1} kills)")
    print(f"acknowledged {result['acknowledged']:,}  found {result['found']:,}  lost {result['lost']}  "
          f"not processed {result['unprocessed']}  dead letters {result['dead_letters']}")
    if result["examples"]:
        print(f"  lost, e.g.: {', '.join(result['examples'])}")
    print(f"requests refused while down: {soak.errors['refused']:,}; 5xx: {soak.errors['5xx']}; "
          f"other non-201: {soak.errors['other']}; stream frames received: {soak.frames:,}")
    print("RSS per run (MiB, first / max / last sample):")
    for i, samples in enumerate(s for s in per_run if s):
        print(f"  run {i + 1:2}: {samples[0]:6.1f} {max(samples):6.1f} {samples[-1]:6.1f}")
    print("0 lost" if result["lost"] == 0 and result["unprocessed"] == 0 else "LOST DATA")
    sys.exit(0 if result["lost"] == 0 and result["unprocessed"] == 0 else 1)


if __name__ == "__main__":
    main()
