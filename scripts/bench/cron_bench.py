"""scripts/bench_cron: lateness of an every-second cron step, idle and under HTTP load.

Lateness is the time from the slot (a whole second, UTC) to the handler starting; the step
appends it to a file (no state write, so the measurement is the scheduler, not the disk).
The loaded run drives the same server with wrk on a JSON-echo step at the same time.
The competitor is the same job run by a plain `time.sleep` loop in its own process (what a
systemd timer or a hand-written Python loop gives), measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine, start_edge, stop, wait_http, wrk  # noqa: E402
from http_bench import ECHO_STEP, WRK_POST  # noqa: E402

TICK_STEP = '''
import os, time

OUT = os.environ["EDGE_BENCH_LATENESS"]
config = {"name": "Tick", "triggers": [{"type": "cron", "expression": "* * * * * *", "timezone": "UTC"}]}

async def handler(input, ctx):
    now = time.time()
    with open(OUT, "a") as f:
        f.write(f"{now - int(now):.6f}\\n")
'''
SLEEP_LOOP = '''
import sys, time
out = open(sys.argv[1], "a", buffering=1)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    now = time.time()
    time.sleep(int(now) + 1 - now)
    t = time.time()
    out.write(f"{t - int(t):.6f}\\n")
'''


def percentiles(path: Path) -> tuple[float, float, int]:
    values = sorted(float(x) * 1000 for x in path.read_text().split())
    if not values:
        return float("nan"), float("nan"), 0
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return statistics.median(values), p99, len(values)


def run_edge(tmp: Path, seconds: int, load: bool) -> tuple[float, float, int]:
    out = tmp / ("loaded.txt" if load else "idle.txt")
    port = free_port()
    proc = start_edge(tmp / "app", tmp / f"data-{load}", port, env={"EDGE_BENCH_LATENESS": str(out)})
    try:
        wait_http(f"http://127.0.0.1:{port}/__edge/health")
        time.sleep(1.5)
        out.write_text("")  # drop the first slot (the loop may start just after it)
        if load:
            wrk(f"http://127.0.0.1:{port}/echo", seconds=seconds, connections=64, script=str(tmp / "post.lua"))
        else:
            time.sleep(seconds)
    finally:
        stop(proc)
    return percentiles(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edge-cron-bench-"))
    (tmp / "app" / "steps").mkdir(parents=True)
    (tmp / "app" / "steps" / "tick_step.py").write_text(TICK_STEP)
    (tmp / "app" / "steps" / "echo_step.py").write_text(ECHO_STEP)
    (tmp / "post.lua").write_text(textwrap.dedent(WRK_POST))

    loop_out = tmp / "sleep-loop.txt"
    subprocess.run([sys.executable, "-c", SLEEP_LOOP, str(loop_out), str(args.seconds)], check=True)
    base = percentiles(loop_out)
    idle = run_edge(tmp, args.seconds, load=False)
    loaded = run_edge(tmp, args.seconds, load=True)

    print(f"machine: {machine()}; every-second schedule, {args.seconds} s per run")
    print(f"{'':44} {'p50 ms':>8} {'p99 ms':>8} {'runs':>6}")
    print(f"{'time.sleep loop (competitor), idle':44} {base[0]:>8.2f} {base[1]:>8.2f} {base[2]:>6}")
    print(f"{'edge cron, idle':44} {idle[0]:>8.2f} {idle[1]:>8.2f} {idle[2]:>6}")
    print(f"{'edge cron, under wrk load on an HTTP step':44} {loaded[0]:>8.2f} {loaded[1]:>8.2f} {loaded[2]:>6}")
    print(f"ratio edge/sleep-loop p99, idle: {idle[1] / base[1]:.2f}; target p99 <= 20 ms: "
          f"idle {'ok' if idle[1] <= 20 else 'MISSED'}, loaded {'ok' if loaded[1] <= 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
