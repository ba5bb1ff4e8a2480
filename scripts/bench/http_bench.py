"""scripts/bench_http: edge serving a JSON-echo step (logging + tracing on) vs bare Granian RSGI.

Both run embedded with one worker, one after the other, loaded by the same wrk settings on
loopback. Also reports the idle RSS of `edge start` serving the example app.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine, rss_mib, start, start_edge, stop, wait_http, wrk  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ECHO_STEP = '''
config = {
    "name": "Echo",
    "triggers": [{
        "type": "http", "method": "POST", "path": "/echo",
        "bodySchema": {"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
                       "required": ["name"]},
    }],
}

async def handler(req, ctx):
    ctx.logger.info("echo", {"name": req.body["name"]})
    return {"status": 200, "body": {"echo": req.body, "trace_id": ctx.trace_id}}
'''
PING_STEP = '''
config = {"name": "Ping", "triggers": [{"type": "http", "method": "GET", "path": "/ping"}]}

async def handler(req, ctx):
    return {"status": 200, "body": {"hello": "world"}}
'''
WRK_POST = '''
wrk.method = "POST"
wrk.body = '{"name": "ada", "count": 3}'
wrk.headers["Content-Type"] = "application/json"
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are printed)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="host loop of both servers (auto: uvloop when installed, as edge picks)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    (tmp / "app" / "steps").mkdir(parents=True)
    (tmp / "app" / "steps" / "echo_step.py").write_text(ECHO_STEP)
    (tmp / "app" / "steps" / "ping_step.py").write_text(PING_STEP)
    script = tmp / "post.lua"
    script.write_text(textwrap.dedent(WRK_POST))
    py = sys.executable

    # The bare server runs on the fastest host loop edge itself would use (uvloop when installed).
    loop = args.loop
    if loop == "auto":
        try:
            import uvloop  # noqa: F401
            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
    # Both servers stay up; the loads alternate (bare, edge, bare, edge, ...) for --rounds
    # rounds, so a noisy neighbour on this machine hits both sides alike. Medians are printed.
    bare_port, body_port, edge_port = free_port(), free_port(), free_port()
    bare = start([py, str(Path(__file__).parent / "granian_hello.py"), str(bare_port), loop])
    # The same hello reading the body first: what any app that takes a POST body can reach here.
    reader = start([py, str(Path(__file__).parent / "granian_hello.py"), str(body_port), loop, "body"])
    log = open(tmp / "edge.log", "w")
    edge = start_edge(tmp / "app", tmp / "data", edge_port, log=log, env={"EDGE_LOOP": loop})
    wait_http(f"http://127.0.0.1:{bare_port}/")
    wait_http(f"http://127.0.0.1:{body_port}/")
    wait_http(f"http://127.0.0.1:{edge_port}/__edge/health")
    bare_url, echo_url, ping_url = (f"http://127.0.0.1:{bare_port}/", f"http://127.0.0.1:{edge_port}/echo",
                                    f"http://127.0.0.1:{edge_port}/ping")
    body_url = f"http://127.0.0.1:{body_port}/"
    for url, lua in ((bare_url, str(script)), (body_url, str(script)), (echo_url, str(script)),
                     (ping_url, None)):  # warm-up
        wrk(url, seconds=2, connections=args.connections, script=lua)
    runs = {"granian": [], "reader": [], "ours": [], "granian_get": [], "ping": []}
    for _ in range(args.rounds):
        # Same load as edge gets: the same POST with the same JSON body (the hello ignores it).
        runs["granian"].append(wrk(bare_url, seconds=args.seconds, connections=args.connections, script=str(script)))
        runs["reader"].append(wrk(body_url, seconds=args.seconds, connections=args.connections, script=str(script)))
        runs["ours"].append(wrk(echo_url, seconds=args.seconds, connections=args.connections, script=str(script)))
        runs["granian_get"].append(wrk(bare_url, seconds=args.seconds, connections=args.connections))
        runs["ping"].append(wrk(ping_url, seconds=args.seconds, connections=args.connections))
    loaded_rss = rss_mib(edge.pid)
    stop(edge)
    stop(bare)
    stop(reader)
    granian, reading, ours, granian_get, ping = (_median(runs[k]) for k in ("granian", "reader", "ours",
                                                                            "granian_get", "ping"))
    post_ratios = sorted(o["rps"] / g["rps"] for o, g in zip(runs["ours"], runs["granian"]))
    ceiling = sorted(r["rps"] / g["rps"] for r, g in zip(runs["reader"], runs["granian"]))
    of_ceiling = sorted(o["rps"] / r["rps"] for o, r in zip(runs["ours"], runs["reader"]))
    get_ratios = sorted(p["rps"] / g["rps"] for p, g in zip(runs["ping"], runs["granian_get"]))

    # Idle RSS of the example app, 3 starts each, on asyncio's loop (what `pip install edge`
    # runs) and on uvloop when installed (`edge[uvloop]`).
    idle_rss = {host: _mid(sorted(_idle_rss(tmp / f"example-{host}-{i}", host) for i in range(3)))
                for host in (("asyncio", "uvloop") if loop == "uvloop" else ("asyncio",))}

    ratio = _mid(post_ratios)
    print(f"machine: {machine()}; wrk -t1 -c{args.connections} -d{args.seconds}s on loopback; "
          f"host loop of both servers: {loop}; {args.rounds} alternating rounds, medians")
    print(f"{'':44} {'req/s':>10} {'p99 ms':>8}")
    print(f"{'bare Granian RSGI hello, POST JSON':44} {granian['rps']:>10.0f} {granian['p99_ms']:>8.2f}")
    print(f"{'edge JSON echo step, POST (schema+log+span)':44} {ours['rps']:>10.0f} {ours['p99_ms']:>8.2f}")
    print(f"ratio edge/granian: {ratio:.2f}  (target >= 0.50; per round {', '.join(f'{r:.2f}' for r in post_ratios)})"
          f"  non-2xx: {sum(r['non2xx'] for r in runs['ours'])}")
    print(f"{'bare Granian RSGI, reads the body, POST JSON':44} {reading['rps']:>10.0f} {reading['p99_ms']:>8.2f}")
    print(f"  reading the body alone: {_mid(ceiling):.2f} of the hello (the most any app that takes a POST body "
          f"reaches here); edge: {_mid(of_ceiling):.2f} of that (per round {', '.join(f'{r:.2f}' for r in of_ceiling)})")
    print(f"{'bare Granian RSGI hello, GET':44} {granian_get['rps']:>10.0f} {granian_get['p99_ms']:>8.2f}")
    print(f"{'edge minimal GET step (the bridge alone)':44} {ping['rps']:>10.0f} {ping['p99_ms']:>8.2f}")
    print(f"ratio edge/granian, GET: {_mid(get_ratios):.2f}  (target >= 0.70; per round "
          f"{', '.join(f'{r:.2f}' for r in get_ratios)})")
    print(f"edge RSS under load: {loaded_rss:.1f} MiB")
    print("idle RSS, edge start serving the example app (median of 3 starts): "
          + "; ".join(f"{v:.1f} MiB on {host}" for host, v in idle_rss.items()) + "  (target <= 40 MiB)")


def _idle_rss(data_dir: Path, loop: str) -> float:
    port = free_port()
    example = start_edge(ROOT, data_dir, port, env={"EDGE_LOOP": loop})
    try:
        wait_http(f"http://127.0.0.1:{port}/__edge/health")
        time.sleep(3)
        return rss_mib(example.pid)
    finally:
        stop(example)


def _median(results: list[dict]) -> dict:
    return sorted(results, key=lambda r: r["rps"])[len(results) // 2]


def _mid(values: list[float]) -> float:
    return values[len(values) // 2]


if __name__ == "__main__":
    main()
