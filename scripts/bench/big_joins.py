"""scripts/big_joins: what WebSocket clients that join a big stream group and never read cost.

A stream group of ``--items`` items is written into the data directory before edge starts;
then ``--clients`` raw WebSocket clients connect, send one group join each and never read a
byte (their receive buffers are kept small). The server's RSS is printed before the joins and
as it settles after them, and the difference is the figure of issue 10 item 3 (goal: 50
clients on 20,000 items add < 100 MiB).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import free_port, machine, rss_mib, start_edge, stop, wait_http  # noqa: E402

STREAM = 'config = {"name": "big", "baseConfig": {"storageType": "default"}}\n'
STEP = '''
config = {"name": "Count", "triggers": [{"type": "http", "method": "GET", "path": "/count"}]}

async def handler(req, ctx):
    return {"status": 200, "body": {"items": len(await ctx.streams.big.get_group("g"))}}
'''


def fill(data_dir: Path, items: int) -> None:
    """Write the group straight into LMDB, as the stream store lays it out (one transaction)."""
    import msgspec

    from edge.store import Store

    store = Store.open(data_dir)
    pack = msgspec.msgpack.encode

    def write(txn):
        for i in range(items):
            id = f"item-{i:06d}"
            item = {"id": id, "title": f"reading {i} from the sensor on the north wall", "done": False, "n": i}
            txn.put("streams", b"big\x00g\x00" + id.encode(), pack(item))

    store.write_sync(write)
    store.close()


def join_and_never_read(port: int, n: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that never reads
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # byte by byte: read nothing past the handshake
    assert answer.startswith(b"HTTP/1.1 101"), answer
    payload = json.dumps({"type": "join", "data": {"streamName": "big", "groupId": "g",
                                                    "subscriptionId": f"s{n}"}}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to watch RSS after the joins")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, data = Path(tmp) / "app", Path(tmp) / "data"
        (app / "steps").mkdir(parents=True)
        (app / "steps" / "big_stream.py").write_text(STREAM)
        (app / "steps" / "count_step.py").write_text(STEP)
        fill(data, args.items)
        port = free_port()
        proc = start_edge(app, data, port)
        try:
            wait_http(f"http://127.0.0.1:{port}/__edge/health")
            time.sleep(1)
            before = rss_mib(proc.pid)
            print(f"machine: {machine()}")
            print(f"{args.items} items in the group; RSS before the joins: {before:.1f} MiB", flush=True)
            sockets = [join_and_never_read(port, n) for n in range(args.clients)]
            peak, start = before, time.monotonic()
            while time.monotonic() - start < args.settle:
                time.sleep(1)
                now = rss_mib(proc.pid)
                peak = max(peak, now)
                print(f"  t={time.monotonic() - start:4.1f}s RSS {now:.1f} MiB", flush=True)
            import urllib.request

            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/__edge/health", timeout=10).read())
            print(f"{args.clients} clients joined and never read: RSS {before:.1f} -> peak {peak:.1f} MiB "
                  f"(+{peak - before:.1f} MiB, {(peak - before) * 1024 / args.clients:.0f} KiB per client); "
                  f"health streams: {health.get('streams')}")
            for sock in sockets:
                sock.close()
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
