"""The console: a single page at ``/__edge/`` and the few endpoints it needs (SPEC §14).

The page is plain ES modules, CSS and SVG under ``edge/server/console/`` (package data, bundled
by ``edge build``). Nothing is read until a browser asks: each file is read on first request and
its bytes kept for the next one (~90 KB for all of them).

Endpoints added here (the rest of what the page uses already exists):

    GET    /__edge/                 the page (index.html); assets under /__edge/console/
    GET    /__edge/app              steps, triggers, topics and streams, for the flow diagram
    GET    /__edge/system           RSS, uptime, data-dir size, free disk, commits
    GET    /__edge/logs/tail        ?after=SEQ&timeout=S&step=&level=&trace_id=&limit=  (long poll)
    GET    /__edge/traces/recent    ?limit=N   one line per recent trace
    DELETE /__edge/state            ?group=G&key=K
    DELETE /__edge/dlq              ?id=N | ?step=S | ?all=true
    GET    /__edge/streams          ?stream=S&group=G   streams, their groups, a group's items

Static files carry no data, so with ``EDGE_TOKEN`` set they are served without it (the page
must load to show its sign-in form); every endpoint that returns data needs the token.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from ..errors import EdgeError
from .._loops import current_library
from .._metrics import statm_rss
from ..tracing import LEVELS, LogRecord, Span, decode_log, read_spans
from .console_model import describe_app

__all__ = ["console_endpoints", "ASSETS", "ASSET_DIR"]

#: Where the page's files live (package data).
ASSET_DIR = Path(__file__).with_name("console")
#: Every file of the page, served at ``/__edge/console/<name>`` (index.html also at ``/__edge/``).
#: Listed rather than globbed: what ships is what is tested (tests/test_console.py, the build).
ASSETS = (
    "index.html", "style.css", "app.js", "util.js", "flows.js", "endpoints.js", "logs.js",
    "traces.js", "state.js", "streams.js", "queues.js", "icon.svg",
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: The page's own headers: no framing by other sites, no inline script from elsewhere.
_SECURITY = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
]
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

#: Longest a ``/__edge/logs/tail`` request waits for new lines (seconds).
MAX_TAIL_WAIT = 30.0
#: How often a waiting tail looks for new lines (seconds): the tracer writes them about once a
#: second; a waiting tail asks it to write sooner, at most this often.
TAIL_POLL = 0.25
#: Spans scanned for ``/__edge/traces/recent`` (the newest ones).
RECENT_SPANS = 2_000
#: Items returned for one state or stream group (the page says when there are more).
MAX_ITEMS = 500
#: Groups listed per stream.
MAX_GROUPS = 500



def console_endpoints() -> dict:
    """``(method, path) -> endpoint`` of the page, its files and the endpoints it adds."""
    assets = _Assets(ASSET_DIR)
    out = {("GET", "/__edge/"): assets.endpoint("index.html")}
    for name in ASSETS:
        out[("GET", f"/__edge/console/{name}")] = assets.endpoint(name)
    out.update({
        ("GET", "/__edge/app"): app_model,
        ("GET", "/__edge/system"): system,
        ("GET", "/__edge/logs/tail"): logs_tail,
        ("GET", "/__edge/traces/recent"): traces_recent,
        ("DELETE", "/__edge/state"): state_delete,
        ("DELETE", "/__edge/dlq"): dlq_delete,
        ("GET", "/__edge/streams"): streams,
    })
    return out


# -- static files ---------------------------------------------------------------------------

class _Assets:
    """The page's files: read on first request, then served from memory."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._cache: dict[str, tuple[bytes, str]] = {}

    def load(self, name: str) -> tuple[bytes, str]:
        cached = self._cache.get(name)
        if cached is None:
            body = (self.folder / name).read_bytes()
            cached = self._cache[name] = (body, '"' + hashlib.sha1(body).hexdigest()[:16] + '"')
        return cached

    def endpoint(self, name: str):
        content_type = _TYPES[Path(name).suffix]

        async def serve(app, request):
            try:
                body, etag = self.load(name)
            except OSError:
                return 404, {"error": "Not Found",
                             "detail": f"the console file {name} is missing from {self.folder}; reinstall edge"}
            # no-cache: the browser revalidates (a 304 costs a few bytes) so an upgraded edge
            # never runs yesterday's script against today's endpoints.
            headers = [("content-type", content_type), ("cache-control", "no-cache"), ("etag", etag), *_SECURITY]
            if name == "index.html":
                headers.append(("content-security-policy", _CSP))
            if request.headers.get("if-none-match") == etag:
                return 304, b"", headers
            return 200, body, headers

        serve.public = True  # carries no data: served without EDGE_TOKEN so sign-in can load
        serve.__doc__ = f"The console's {name}."
        return serve


# -- the app, for the diagram ---------------------------------------------------------------

async def app_model(app, request):
    """Steps, their triggers, the topics between them and the streams (the flow diagram's input)."""
    runtime = app.runtime
    model = describe_app(runtime.steps.values(), runtime.discovery.streams, now=datetime.now(timezone.utc))
    model["project"] = Path(runtime.discovery.project_dir).name
    model["token"] = bool(app.settings.token)
    return 200, model


# -- system figures -------------------------------------------------------------------------

async def system(app, request):
    """What the health strip shows: memory, uptime, disk, commits."""
    runtime = app.runtime
    store = runtime.store
    path = Path(store.path)
    on_disk = apparent = 0
    try:
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                apparent += st.st_size
                on_disk += st.st_blocks * 512
    except OSError:
        pass
    try:
        disk = shutil.disk_usage(path)
        free, total = disk.free, disk.total
    except OSError:
        free = total = None
    return 200, {
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "rss_bytes": statm_rss(),
        "uptime_s": round(time.time() - runtime.started, 1),
        "started_at": runtime.started,
        "data_dir": str(path),
        "data_dir_bytes": on_disk,
        "data_file_bytes": apparent,
        "disk_free_bytes": free,
        "disk_total_bytes": total,
        "durability": store.durability,
        # LMDB syncs once per commit (sync=True in both modes): commits are the fsync rounds.
        "commits": store.commits,
        "fsyncs": store.commits,
        "ops_committed": store.ops_committed,
        "logs_dropped": runtime.tracer.dropped,
    }


# -- logs: recent lines, then a long-poll tail ------------------------------------------------

def _number(request, name: str, default, low, high, kind=int):
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise EdgeError(f"{name}: expected a number, got {raw!r}") from None
    return max(low, min(high, value))


async def logs_tail(app, request):
    """``?after=SEQ``: the lines after SEQ, waiting up to ``timeout`` s for one; without ``after``:
    the last ``limit`` lines. Filters: ``step``, ``level`` (at least), ``trace_id``.

    Returns ``{"logs": [record + "seq"], "last": SEQ}``: pass ``last`` as the next ``after``.
    """
    q = request.query_params
    limit = _number(request, "limit", 200, 1, 1000)
    timeout = _number(request, "timeout", 20.0, 0.0, MAX_TAIL_WAIT, float)
    level = q.get("level") or None
    if level is not None and level not in LEVELS:
        raise EdgeError(f'level: expected one of debug, info, warn, error, got "{level}"')
    match = _log_filter(q.get("step") or None, LEVELS.get(level, 0), q.get("trace_id") or None)
    store, tracer, runtime = app.runtime.store, app.runtime.tracer, app.runtime
    raw_after = q.get("after")
    if raw_after in (None, ""):
        await tracer.stored()
        return 200, store.read(lambda t: _last_logs(t, match, limit))
    after = _number(request, "after", 0, 0, 1 << 63)
    deadline = time.monotonic() + timeout
    while True:
        found = store.read(lambda t: _logs_after(t, after, match, limit))
        if found["logs"] or time.monotonic() >= deadline or runtime.stopping:
            return 200, found
        after = found["last"]
        tracer.flush()  # lines waiting in the tracer's buffer: write them now, not in a second
        await _sleep(min(TAIL_POLL, max(0.0, deadline - time.monotonic())))


def _log_filter(step, level, trace_id):
    def match(record: LogRecord) -> bool:
        return ((step is None or record.step == step)
                and LEVELS.get(record.level, 20) >= level
                and (trace_id is None or record.trace_id == trace_id))
    return match


def _log_dict(seq: int, record: LogRecord) -> dict:
    out = msgspec.to_builtins(record)
    out["seq"] = seq
    return out


def _last_logs(txn, match, limit) -> dict:
    out, last = [], 0
    for key, value in txn.scan("logs", reverse=True):
        seq = int.from_bytes(key, "big")
        last = last or seq
        record = decode_log(value)
        if match(record):
            out.append(_log_dict(seq, record))
            if len(out) >= limit:
                break
    return {"logs": out[::-1], "last": last}


def _logs_after(txn, after, match, limit) -> dict:
    out, last = [], after
    for key, value in txn.scan("logs", start=(after + 1).to_bytes(8, "big")):
        seq = int.from_bytes(key, "big")
        last = seq
        record = decode_log(value)
        if match(record):
            out.append(_log_dict(seq, record))
            if len(out) >= limit:
                break
    return {"logs": out, "last": last}


async def _sleep(seconds: float) -> None:
    if current_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        import asyncio

        await asyncio.sleep(seconds)


# -- traces ---------------------------------------------------------------------------------

async def traces_recent(app, request):
    """One line per recent trace: id, root step and trigger, start, duration, spans, status."""
    limit = _number(request, "limit", 50, 1, 500)
    step = request.query_params.get("step") or None
    await app.runtime.tracer.stored()
    spans = read_spans(app.runtime.store, limit=RECENT_SPANS)[::-1]
    traces: dict[str, list[Span]] = {}
    for span in spans:  # newest first: dict order is most recent trace first
        traces.setdefault(span.trace_id, []).append(span)
    out = []
    for trace_id, group in traces.items():
        if step is not None and all(s.step != step for s in group):
            continue
        out.append(_summary(trace_id, group))
        if len(out) >= limit:
            break
    return 200, {"traces": out, "scanned": len(spans)}



def _summary(trace_id: str, spans: list[Span]) -> dict:
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent is None or s.parent not in ids]
    root = min(roots or spans, key=lambda s: s.start)
    start = min(s.start for s in spans)
    end = max(s.start + s.duration_ms / 1000 for s in spans)
    statuses = {s.status for s in spans}
    status = next((s for s in ("error", "retry", "ok", "skipped") if s in statuses), root.status)
    errors = [s.error for s in spans if s.status == "error" and s.error]
    return {
        "trace_id": trace_id, "root": root.step, "trigger": root.trigger, "start": start,
        "duration_ms": round((end - start) * 1000, 3), "spans": len(spans), "status": status,
        "steps": sorted({s.step for s in spans}), "error": errors[0] if errors else None,
    }


# -- state ----------------------------------------------------------------------------------

async def state_delete(app, request):
    """``?group=G&key=K``: remove one key (state triggers fire with ``deleted``)."""
    q = request.query_params
    group, key = q.get("group"), q.get("key")
    if not group or not key:
        raise EdgeError("DELETE /__edge/state takes ?group=<group>&key=<key>")
    old = await app.runtime.state.delete(group, key)
    if old is None:
        return 404, {"error": "Not Found", "detail": f"no state at group {group!r} key {key!r}"}
    return 200, {"group": group, "key": key, "deleted": True, "old_value": old}


# -- dead letters ---------------------------------------------------------------------------

async def dlq_delete(app, request):
    """``?id=N`` one dead letter, ``?step=S`` all of one step, ``?all=true`` every one."""
    from ..queues.dlq import delete_dead

    q = request.query_params
    raw_id, step, raw_all = q.get("id"), q.get("step") or None, q.get("all")
    if raw_all not in (None, "", "true", "false"):
        raise EdgeError(f"all: expected true or false, got {raw_all!r}")
    given = [name for name, on in (("id", raw_id not in (None, "")), ("step", step is not None),
                                   ("all", raw_all == "true")) if on]
    if len(given) != 1:  # (id=1&all=true deleted id 1 only)
        got = f" (got {' and '.join(given)})" if given else ""
        raise EdgeError(f"DELETE /__edge/dlq takes one of ?id=<id>, ?step=<step> or ?all=true{got}")
    dlq_id = None
    if raw_id not in (None, ""):
        try:
            dlq_id = int(raw_id)
        except ValueError:
            raise EdgeError(f"id: expected an integer, got {raw_id!r}") from None
    # The count, and the first 1000 ids (not all: 20,000 ids were 2 MB of server memory)
    count, deleted = await delete_dead(app.runtime.store, step=step, dlq_id=dlq_id)
    if dlq_id is not None and not count:
        return 404, {"error": "Not Found", "detail": f"no dead letter with id {dlq_id}; `edge dlq list` shows the ids"}
    return 200, {"count": count, "deleted": deleted}


# -- streams --------------------------------------------------------------------------------

async def streams(app, request):
    """No query: every stream with its groups. ``?stream=S&group=G``: that group's items."""
    q = request.query_params
    hub = app.runtime.streams
    name, group = q.get("stream") or None, q.get("group") or None
    if name is None:
        out = []
        for d in sorted(app.runtime.discovery.streams, key=lambda d: d.name):
            groups = hub.list_groups_nowait(d.name)
            out.append({"name": d.name, "description": d.description, "storage": d.storage_type,
                        "file": d.file, "access": "canAccess" if d.can_access is not None else "open",
                        "groups": groups[:MAX_GROUPS], "more_groups": len(groups) > MAX_GROUPS})
        return 200, {"streams": out}
    if group is None:
        groups = hub.list_groups_nowait(name)
        return 200, {"stream": name, "groups": groups[:MAX_GROUPS], "more_groups": len(groups) > MAX_GROUPS}
    items = hub.get_group_nowait(name, group)
    return 200, {"stream": name, "group": group, "items": items[:MAX_ITEMS], "count": len(items)}
