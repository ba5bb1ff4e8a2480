"""scripts/bench_build: `edge build` of the example app, onefile and onedir.

For each: build time (fresh work folder), binary size, cold start to the first 200 (median of
N runs; a new process and a new data directory each time, page cache warm), idle RSS of the
whole process tree (onefile: bootloader parent + app child), and what a onefile binary unpacks
into $TMPDIR per start (RAM when $TMPDIR is a tmpfs). `edge start` from source is measured in
the same run as the reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGET_SIZE_MB = 20
TARGET_START_S = 1.0
TARGET_RSS_MIB = 40
PROBE = "/todos"  # an HTTP step of the example app that answers 200


def build(tmp: Path, kind: str) -> tuple[Path, float, int]:
    out, work = tmp / f"dist-{kind}", tmp / f"work-{kind}"
    cmd = [sys.executable, "-m", "edge", "build", "--dir", str(ROOT), "--name", "todo",
           "--out", str(out), "--work-dir", str(work)] + (["--onedir"] if kind == "onedir" else [])
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"edge build failed:\n{proc.stdout}{proc.stderr}")
    if kind == "onedir":
        size = sum(p.stat().st_size for p in (out / "todo").rglob("*") if p.is_file() and not p.is_symlink())
        return out / "todo" / "todo", took, size
    return out / "todo", took, (out / "todo").stat().st_size


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found += [int(entry), *children(int(entry))]
    return found


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_once(cmd: list[str], tmp: Path, idle: float, extra: list[str], loop: str | None = None) -> dict:
    """Start, time the first 200, let it idle, measure RSS and the unpacked size, stop."""
    port = free_port()
    data = Path(tempfile.mkdtemp(dir=tmp, prefix="data-"))
    extract = Path(tempfile.mkdtemp(dir=tmp, prefix="tmpdir-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env["TMPDIR"] = str(extract)
    if loop is not None:
        env["EDGE_LOOP"] = loop
    log = open(data.with_suffix(".log"), "w+")
    started = time.perf_counter()
    proc = subprocess.Popen([*cmd, "start", *extra, "--port", str(port), "--host", "127.0.0.1", "--data-dir", str(data)],
                            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}{PROBE}"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            pass
        if proc.poll() is not None or time.perf_counter() - started > 30:
            proc.kill()
            log.seek(0)
            raise SystemExit(f"{' '.join(cmd)} did not answer 200 on {PROBE}:\n{log.read()[-3000:]}")
        time.sleep(0.005)
    first_200 = time.perf_counter() - started
    for _ in range(20):
        urllib.request.urlopen(url, timeout=2).read()
    time.sleep(idle)
    pids = [proc.pid, *children(proc.pid)]
    rss = sum(rss_kib(p) for p in pids) / 1024
    unpacked = du(extract)
    proc.terminate()
    code = proc.wait(30)
    log.close()
    if code != 0:
        raise SystemExit(f"{cmd[0]} exited {code} on SIGTERM")
    return {"start": first_200, "rss": rss, "procs": len(pids), "unpacked": unpacked}


def measure(cmd: list[str], tmp: Path, runs: int, idle: float, extra: list[str] = (), loop: str | None = None) -> dict:
    results = [run_once(cmd, tmp, idle, list(extra), loop) for _ in range(runs)]
    return {
        "start": statistics.median(r["start"] for r in results),
        "rss": statistics.median(r["rss"] for r in results),
        "procs": results[0]["procs"],
        "unpacked": max(r["unpacked"] for r in results),
    }


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="starts per variant (median)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before reading RSS")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"),
                        help="EDGE_LOOP for every start (default: edge's choice, uvloop when bundled)")
    args = parser.parse_args()
    import PyInstaller

    print(f"edge build benchmark: example app (steps/), {machine()}, Python {sys.version.split()[0]}, "
          f"PyInstaller {PyInstaller.__version__}; {args.runs} starts each, RSS after {args.idle:g} s idle"
          + (f"; EDGE_LOOP={args.loop}" if args.loop else ""))
    with tempfile.TemporaryDirectory(prefix="edge-bench-build-") as tmp_name:
        tmp = Path(tmp_name)
        rows = {}
        for kind in ("onefile", "onedir"):
            binary, took, size = build(tmp, kind)
            rows[kind] = {"build": took, "size": size, **measure([str(binary)], tmp, args.runs, args.idle, loop=args.loop)}
        rows["source"] = {"build": None, "size": None,
                          **measure([sys.executable, "-m", "edge"], tmp, args.runs, args.idle, ["--dir", str(ROOT)],
                                    loop=args.loop)}

    def cell(kind, key, fmt):
        value = rows[kind][key]
        return "-" if value is None else fmt(value)

    lines = [
        ("binary size", "size", lambda v: f"{v / 1e6:.1f} MB", f"<= {TARGET_SIZE_MB} MB (onefile)",
         rows["onefile"]["size"] <= TARGET_SIZE_MB * 1e6),
        ("build time (fresh work dir)", "build", lambda v: f"{v:.1f} s", "", None),
        (f"cold start to first 200 (median of {args.runs})", "start", lambda v: f"{v:.2f} s",
         f"<= {TARGET_START_S:g} s", max(rows[k]["start"] for k in ("onefile", "onedir")) <= TARGET_START_S),
        ("idle RSS, all processes (median)", "rss", lambda v: f"{v:.1f} MiB", f"<= {TARGET_RSS_MIB} MiB",
         max(rows[k]["rss"] for k in ("onefile", "onedir")) <= TARGET_RSS_MIB),
        ("processes", "procs", str, "", None),
        ("unpacked into $TMPDIR per start", "unpacked", lambda v: f"{v / 1e6:.1f} MB", "", None),
    ]
    print(f"{'':44} {'onefile':>10} {'onedir':>10} {'from source':>12}   target")
    for label, key, fmt, target, ok in lines:
        verdict = "" if ok is None else f"  {mark(ok)}"
        print(f"{label:44} {cell('onefile', key, fmt):>10} {cell('onedir', key, fmt):>10} "
              f"{cell('source', key, fmt):>12}   {target}{verdict}")
    src = rows["source"]
    for kind in ("onefile", "onedir"):
        print(f"{kind} vs from source: cold start x{rows[kind]['start'] / src['start']:.2f}, "
              f"idle RSS x{rows[kind]['rss'] / src['rss']:.2f}")
    print("onedir size is the whole folder; a onefile binary also holds what it unpacks in RAM for the whole "
          "run when $TMPDIR is a tmpfs (see docs/deploy.md).")


if __name__ == "__main__":
    main()
