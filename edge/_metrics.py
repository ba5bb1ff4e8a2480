"""``GET /__edge/metrics``: the runtime's figures in the Prometheus text format (version 0.0.4).

Almost everything is read at scrape time from counters the runtime keeps anyway: the store's
commits, each queue subscription's depth / in flight / retrying / handled / failed attempts, the
tracer's invocation counts, the app's open WebSockets, and the process's own RSS, disk writes
and TCP connections from ``/proc``. The one thing recorded per request is
:meth:`RequestMetrics.observe`: one dict lookup, one bisect and two list updates, keyed by the raw path; paths
are folded into their route (``/todos/:id``) at scrape time, or when too many distinct paths
have piled up, so the request path never matches a route twice.
"""

from __future__ import annotations

import os
import resource
from bisect import bisect_left
from typing import Any, Callable, Iterable

__all__ = ["RequestMetrics", "metrics_endpoints", "render", "LATENCY_BUCKETS", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Distinct (method, path, status) keys kept before they are folded into routes (bounds memory
#: whatever paths clients send: ids in paths, scanners probing for files).
MAX_RAW_KEYS = 2048
#: Methods counted by name; any other a client makes up is counted as "OTHER" (each new one
#: was a series of its own: 1,500 long made-up methods made one scrape take 600 MB).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Dead letters counted per subscription at most; past this only the total is given (a scrape
#: must stay cheap however large the dead-letter queue grew).
MAX_DEAD_SCAN = 10_000
#: The route label of requests that matched no route and no endpoint (one series for all of them).
UNMATCHED = "unmatched"

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class RequestMetrics:
    """HTTP requests by method, route and status, with a latency histogram.

    Args:
        app: the :class:`~edge.server.app.EdgeApp` (its router and endpoints name the routes).
    """

    __slots__ = ("_app", "_raw", "_routes")

    def __init__(self, app):
        self._app = app
        #: (method, path, status) -> [requests per latency bucket..., seconds in total]
        self._raw: dict[tuple, list] = {}
        #: (method, route, status) -> the same, folded.
        self._routes: dict[tuple, list] = {}

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """One answered request (the hot path: one dict lookup, one bisect, two list updates)."""
        if method not in METHODS:
            method = "OTHER"
        entry = self._raw.get((method, path, status))
        if entry is None:
            if len(self._raw) >= MAX_RAW_KEYS:
                self.fold()
            entry = self._raw[(method, path, status)] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]
        entry[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        entry[-1] += seconds

    def fold(self) -> None:
        """Move the per-path counts into per-route ones."""
        raw, self._raw = self._raw, {}
        routes: dict[tuple[str, str], str] = {}
        for (method, path, status), counts in raw.items():
            route = routes.get((method, path))
            if route is None:
                route = routes[(method, path)] = self.route(method, path)
            entry = self._routes.get((method, route, status))
            if entry is None:
                self._routes[(method, route, status)] = counts
            else:
                for i, n in enumerate(counts):
                    entry[i] += n

    def route(self, method: str, path: str) -> str:
        """The route a request was served by: the trigger's declared path, an endpoint's path,
        or ``unmatched``."""
        app = self._app
        if path.startswith("/__edge/"):
            return path if app._endpoint_methods(path) else UNMATCHED
        match, allowed = app.router.match(method, path)
        if match is None and allowed:  # 405 or OPTIONS: still that route
            match, _ = app.router.match(allowed[0], path)
        return match.trigger.path if match is not None else UNMATCHED

    def series(self) -> Iterable[tuple[tuple[str, str, int], list[int], float]]:
        """``((method, route, status), bucket counts, seconds)`` per series, after folding."""
        self.fold()
        for key, entry in sorted(self._routes.items(), key=lambda item: (item[0][1], item[0][0], item[0][2])):
            yield key, entry[:-1], entry[-1]


# -- rendering --------------------------------------------------------------------------------------

class _Out:
    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help: str) -> None:
        self.lines.append(f"# HELP {name} {help}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, Any] | None = None) -> None:
        if labels:
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{shown}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(app) -> str:
    """The metrics of ``app`` (an EdgeApp) and its runtime, as Prometheus text."""
    runtime = app.runtime
    out = _Out()
    _requests(out, app)
    _invocations(out, runtime)
    _queues(out, runtime)
    _store(out, runtime)
    _process(out, app)
    return "\n".join(out.lines) + "\n"


def _requests(out: _Out, app) -> None:
    out.family("edge_http_requests_total", "counter", "HTTP requests answered, by method, route and status.")
    series = list(app.metrics.series())
    for (method, route, status), counts, _ in series:
        out.sample("edge_http_requests_total", sum(counts), {"method": method, "route": route, "status": status})
    out.family("edge_http_request_duration_seconds", "histogram",
               "Time from the request reaching edge to its answer, by method and route.")
    merged: dict[tuple[str, str], list] = {}
    for (method, route, _), counts, seconds in series:
        entry = merged.setdefault((method, route), [[0] * len(counts), 0.0])
        entry[0] = [a + b for a, b in zip(entry[0], counts)]
        entry[1] += seconds
    for (method, route), (counts, seconds) in merged.items():
        labels = {"method": method, "route": route}
        running = 0
        for bound, n in zip(LATENCY_BUCKETS, counts):
            running += n
            out.sample("edge_http_request_duration_seconds_bucket", running, {**labels, "le": repr(bound)})
        running += counts[-1]
        out.sample("edge_http_request_duration_seconds_bucket", running, {**labels, "le": "+Inf"})
        out.sample("edge_http_request_duration_seconds_sum", seconds, labels)
        out.sample("edge_http_request_duration_seconds_count", running, labels)
    out.family("edge_http_requests_in_flight", "gauge", "HTTP requests being handled now.")
    out.sample("edge_http_requests_in_flight", app.inflight)


def _invocations(out: _Out, runtime) -> None:
    out.family("edge_invocations_total", "counter",
               "Handler runs, by step, trigger type and outcome (ok, error, skipped, retry).")
    for (step, trigger, status), n in sorted(runtime.tracer.counts.items()):
        out.sample("edge_invocations_total", n, {"step": step, "trigger": trigger, "outcome": status})
    out.family("edge_log_records_dropped_total", "counter",
               "Log records and spans not kept because more arrived in one flush interval than are kept.")
    out.sample("edge_log_records_dropped_total", runtime.tracer.dropped)


def _queues(out: _Out, runtime) -> None:
    queues = runtime.queues
    subs = queues.subscriptions
    dead = _dead_letters(runtime.store)
    gauges = (
        ("edge_queue_depth", "Messages stored for the subscription (waiting, running or retrying).", "stored"),
        ("edge_queue_in_flight", "Messages whose handler runs now.", "in_flight"),
        ("edge_queue_retrying", "Messages waiting for their next attempt after a failure.", "waiting"),
    )
    for name, help, attr in gauges:
        out.family(name, "gauge", help)
        for sub in subs:
            out.sample(name, getattr(sub, attr), {"step": sub.step.name, "topic": sub.topic})
    out.family("edge_queue_handled_total", "counter", "Messages acknowledged (handler succeeded or condition false).")
    for sub in subs:
        out.sample("edge_queue_handled_total", sub.handled, {"step": sub.step.name, "topic": sub.topic})
    out.family("edge_queue_failed_attempts_total", "counter",
               "Attempts that failed (each one is followed by a retry or, after the last, a dead letter).")
    for sub in subs:
        out.sample("edge_queue_failed_attempts_total", sub.failed, {"step": sub.step.name, "topic": sub.topic})
    out.family("edge_queue_dead_letters", "gauge",
               f"Messages in the dead-letter queue, by subscription (when there are at most {MAX_DEAD_SCAN}).")
    total, by_sub = dead
    if by_sub is not None:
        for (step, topic), n in sorted(by_sub.items()):
            out.sample("edge_queue_dead_letters", n, {"step": step, "topic": topic})
    out.family("edge_queue_dead_letters_all", "gauge", "Messages in the dead-letter queue.")
    out.sample("edge_queue_dead_letters_all", total)
    out.family("edge_queue_unrouted_total", "counter", "Messages enqueued to a topic no step subscribes to (dropped).")
    for topic, n in sorted(queues.unrouted.items()):
        out.sample("edge_queue_unrouted_total", n, {"topic": topic})
    out.family("edge_queue_commits_total", "counter", "Queue transactions (each holds every queue change of its round).")
    out.sample("edge_queue_commits_total", queues.committer.commits)


def _dead_letters(store) -> tuple[int, dict | None]:
    from .queues.records import decode_dead

    def scan(t):
        total = t.count("dlq")
        if total > MAX_DEAD_SCAN:
            return total, None
        by_sub: dict[tuple[str, str], int] = {}
        for _, value in t.scan("dlq"):
            dead = decode_dead(value)
            key = (dead.step, dead.topic)
            by_sub[key] = by_sub.get(key, 0) + 1
        return total, by_sub

    return store.read(scan)


def _store(out: _Out, runtime) -> None:
    store = runtime.store
    out.family("edge_store_commits_total", "counter", "LMDB write transactions committed (group commits).")
    out.sample("edge_store_commits_total", store.commits)
    out.family("edge_store_fsyncs_total", "counter", "Disk syncs: LMDB syncs once per commit (durable mode: "
               "the data pages, then the meta page through a synchronous write).")
    out.sample("edge_store_fsyncs_total", store.commits)
    out.family("edge_store_ops_committed_total", "counter",
               "Write operations committed; divided by commits, the average batch size.")
    out.sample("edge_store_ops_committed_total", store.ops_committed)
    out.family("edge_store_batch_size_average", "gauge", "Write operations per commit since start.")
    out.sample("edge_store_batch_size_average", store.ops_committed / store.commits if store.commits else 0.0)
    out.family("edge_store_file_bytes", "gauge", "Size of the LMDB data file.")
    try:
        size = os.stat(os.path.join(store.path, "data.mdb")).st_size
    except OSError:
        size = 0
    out.sample("edge_store_file_bytes", size)


def _process(out: _Out, app) -> None:
    out.family("edge_process_resident_memory_bytes", "gauge", "Resident set size of the process.")
    out.sample("edge_process_resident_memory_bytes", _rss())
    out.family("edge_process_max_resident_memory_bytes", "gauge", "Largest resident set size so far.")
    out.sample("edge_process_max_resident_memory_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    written = _proc_io().get("write_bytes")
    if written is not None:
        out.family("edge_process_disk_written_bytes_total", "counter",
                   "Bytes the process caused to be written to storage (/proc/self/io write_bytes; 0 on tmpfs).")
        out.sample("edge_process_disk_written_bytes_total", written)
    fds, sockets = _open_fds()
    out.family("edge_process_open_fds", "gauge", "Open file descriptors.")
    out.sample("edge_process_open_fds", fds)
    out.family("edge_uptime_seconds", "gauge", "Seconds since the runtime started.")
    import time

    out.sample("edge_uptime_seconds", round(time.time() - app.runtime.started, 3))
    connections = _server_connections(sockets)
    if connections is not None:
        out.family("edge_http_connections", "gauge",
                   "TCP connections clients hold open to edge's listening port(s), WebSockets included.")
        out.sample("edge_http_connections", connections)
    out.family("edge_websockets_open", "gauge", "Stream WebSockets connected now.")
    out.sample("edge_websockets_open", app.websockets_open)
    out.family("edge_websockets_total", "counter", "Stream WebSockets accepted since start.")
    out.sample("edge_websockets_total", app.websockets_served)


def statm_rss() -> int | None:
    """Resident bytes of this process now (``/proc/self/statm``), or None where there is none."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _rss() -> int:
    rss = statm_rss()
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_io() -> dict[str, int]:
    try:
        with open("/proc/self/io") as f:
            return {k: int(v) for k, v in (line.split(": ") for line in f.read().splitlines())}
    except (OSError, ValueError):
        return {}


def _open_fds() -> tuple[int, set[str]]:
    """How many file descriptors are open, and the inodes of those that are sockets (one
    listing of /proc/self/fd; 0 and none where /proc is not there)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return 0, set()
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return len(fds), inodes


def _server_connections(mine: set[str]) -> int | None:
    """Established TCP connections of this process (``mine``: its socket inodes) whose local
    port is one it listens on (None where /proc is not there)."""
    listening: set[str] = set()
    established: list[str] = []
    seen_any = False
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                rows = [line.split() for line in f]
        except (OSError, StopIteration):
            continue
        seen_any = True
        for row in rows:
            # sl local_address rem_address st ... inode (10th column)
            if len(row) < 10 or row[9] not in mine:
                continue
            port = row[1].rsplit(":", 1)[1]
            if row[3] == "0A":
                listening.add(port)
            elif row[3] == "01":
                established.append(port)
    if not seen_any:
        return None
    return sum(1 for port in established if port in listening)


async def metrics(app, request):
    return 200, render(app), [("content-type", CONTENT_TYPE)]


def metrics_endpoints() -> dict[tuple[str, str], Callable]:
    """``GET /__edge/metrics`` (the runtime's own surface, guarded as the other endpoints)."""
    return {("GET", "/__edge/metrics"): metrics}
