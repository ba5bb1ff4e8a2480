"""Spans and log records: printed to stdout, kept (bounded) in LMDB for `edge logs` / `edge traces`.

Records are buffered in memory and flushed to the store once a second in one write: they are
diagnostics, not data, and must not add an fsync or a page write per request.
"""

from __future__ import annotations

import sys
import time
import traceback
from random import getrandbits
from collections import deque
from typing import Any, TextIO

import msgspec
import trio

from ._format import printable

__all__ = ["Tracer", "Span", "LogRecord", "LEVELS", "new_id", "decode_log", "read_logs", "read_spans"]

#: How many log records and spans the store keeps; older ones are trimmed on flush.
MAX_KEPT = 10_000
#: Records kept per flush interval and table; under load older ones are dropped (counted),
#: so memory, CPU and disk writes for diagnostics stay bounded whatever the request rate.
MAX_PENDING = 1_000
FLUSH_INTERVAL = 1.0
#: How long a step's log line may wait in the stdout buffer (one write(2) per batch).
STDOUT_FLUSH_INTERVAL = 0.1
#: Lines held for the next stdout write at most (bounds memory if the flush task is late).
MAX_BUFFERED_LINES = 2_000

#: A log message longer than this (characters) is cut there, and a record whose data makes its
#: line longer than MAX_LINE (bytes) keeps the start and end of the data as text: 10,000 records of
#: at most ~16 KiB bound the store (and the RAM of a flush) whatever handlers log.
MAX_MSG = 4_096
MAX_LINE = 16_384
_DATA_KEPT = 4_096

#: Log levels by name, lowest first (records below the tracer's level are dropped).
LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40}
_COLOURS = {"debug": "\x1b[90m", "info": "\x1b[36m", "warn": "\x1b[33m", "error": "\x1b[31m"}


class LogRecord(msgspec.Struct, omit_defaults=True):
    time: float
    level: str
    msg: str
    trace_id: str | None = None
    step: str | None = None
    flows: tuple[str, ...] = ()
    data: Any = None


class Span(msgspec.Struct, omit_defaults=True):
    trace_id: str
    span_id: str
    step: str
    trigger: str
    start: float
    duration_ms: float
    status: str  # "ok" | "error" | "skipped"
    error: str | None = None
    error_id: str | None = None
    parent: str | None = None


def new_id(nbytes: int = 8) -> str:
    """A random hex id (trace, span, error ids): unique enough, not secret, and cheap
    (``to_bytes().hex()`` costs 60% of ``"%032x" %``; two a request)."""
    return getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()


#: Request headers a log line never shows (Motia's templates log the whole request).
_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


def _as_text(value: Any) -> Any:
    """What a log record shows for data JSON has no form for (a log call never fails on it):
    a model's (or edge's request's) ``model_dump()`` when it has one, else its repr."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            data = dump(mode="json")
        except Exception:  # not pydantic's signature, or a model that cannot dump: its repr
            return repr(value)
        headers = data.get("headers") if type(data) is dict else None
        if type(headers) is dict and _SECRET_HEADERS & headers.keys():
            data["headers"] = {k: ("[hidden]" if k in _SECRET_HEADERS else v) for k, v in headers.items()}
        return data
    return repr(value)


_json = msgspec.json.Encoder(enc_hook=_as_text)
_pack = msgspec.msgpack.Encoder(enc_hook=_as_text)


def _encode_record(encode, record) -> bytes:
    """``encode(record)``; a log record's data it cannot encode even so (an int past 64 bits
    in msgpack) shown as text, and data that makes the line pass :data:`MAX_LINE` cut to its
    first and last characters."""
    try:
        line = encode(record)
    except (TypeError, ValueError, OverflowError):
        if type(record) is not LogRecord:
            raise
        line = encode(msgspec.structs.replace(record, data=repr(record.data)))
    if len(line) > MAX_LINE and type(record) is LogRecord and record.data is not None:
        text = _json.encode(record.data).decode("utf-8", "replace")
        half = _DATA_KEPT // 2  # the start and the end (a traceback's last lines name the error)
        line = encode(msgspec.structs.replace(record, data={
            "truncated": f"{len(text)} characters of data, cut to {_DATA_KEPT}",
            "data": f"{text[:half]} ... {text[-half:]}"}))
    return line


_unpack_log = msgspec.msgpack.Decoder(LogRecord)
_unpack_log_json = msgspec.json.Decoder(LogRecord)
_unpack_span = msgspec.msgpack.Decoder(Span)


class Tracer:
    """Writes log lines and spans; one per runtime."""

    def __init__(self, store=None, *, mode: str = "start", out: TextIO | None = None, level: str = "info"):
        self.store = store
        self.mode = mode
        self.out = out if out is not None else sys.stdout
        self.level = LEVELS.get(level, 20)
        self.colour = mode == "dev" and getattr(self.out, "isatty", lambda: False)()
        # Bounded: under load the oldest records go first (counted in ``dropped``).
        self._logs: deque = deque(maxlen=MAX_PENDING)
        self._spans: deque = deque(maxlen=MAX_PENDING)
        self.dropped = 0
        #: Hook (issue 14): invocations by (step, trigger type, status), for /__edge/metrics.
        self.counts: dict[tuple[str, str, str], int] = {}
        self._outbuf: list = []  # readable lines (edge dev); LogRecords or encoded lines (edge start)
        #: True while serve_flush runs: step lines then wait for its next stdout write;
        #: without the flush task every line is written at once.
        self._batching = False
        self._seq = {"logs": 0, "spans": 0}
        #: The completion of the last flush's write (see :meth:`stored`), or None.
        self._flushing = None
        #: Where kept spans also go (edge._otlp.OTLPExport, EDGE_OTLP_ENDPOINT), or None.
        self.exporter = None
        if store is not None:
            for table in ("logs", "spans"):
                last = store.read(lambda t, table=table: next(t.scan(table, reverse=True), None))
                self._seq[table] = int.from_bytes(last[0], "big") if last else 0

    # -- logs -----------------------------------------------------------------------------

    def log(self, level: str, msg: str, *, trace_id=None, step=None, flows=(), data=None) -> None:
        self.line(level, msg, trace_id, step, flows, data)

    def line(self, level: str, msg: str, trace_id, step, flows, data) -> None:
        """:meth:`log` with the fields positional: what ``ctx.logger`` calls for a step's line."""
        if LEVELS.get(level, 20) < self.level:
            return
        if level == "warning":
            level = "warn"
        if type(msg) is not str:
            msg = str(msg)
        if len(msg) > MAX_MSG:
            msg = f"{msg[:MAX_MSG]}... ({len(msg) - MAX_MSG} more characters)"
        record = LogRecord(time.time(), level, msg, trace_id, step,
                           flows if type(flows) is tuple else tuple(flows), data)
        if self.mode == "dev" or record.level == "error" or step is None or not self._batching:
            line = self._emit(record)
        else:  # a step's line in `edge start`: _emit's batched case, inline (once per line logged)
            if data is None:
                line = None
                self._outbuf.append(record)
            else:
                line = _encode_record(_json.encode, record)
                self._outbuf.append(line + b"\n")
            if len(self._outbuf) >= MAX_BUFFERED_LINES:
                self.flush_stdout()
        if self.store is not None:
            logs = self._logs
            if len(logs) == MAX_PENDING:
                self.dropped += 1
            if data is not None and line is None:  # edge dev
                line = _encode_record(_json.encode, record)
            # with data: kept as the JSON it was at the call (see decode_log), not the live object
            logs.append(record if data is None else line)

    def exception(self, msg: str, exc: BaseException, **fields) -> None:
        """Log an error with its traceback (the traceback goes to stdout and the store)."""
        tb = "".join(traceback.format_exception(exc))
        data = dict(fields.pop("data", None) or {})
        data["traceback"] = tb
        self.log("error", msg, data=data, **fields)

    def _emit(self, record: LogRecord) -> bytes | None:
        # Step lines are collected and written once per STDOUT_FLUSH_INTERVAL: one write(2),
        # and one GIL hand-off, per batch instead of per buffer-full. In `edge start` a record
        # without data is encoded then, with the whole batch in one call; one with data now,
        # as the data is at the log call (the handler may change it afterwards). Errors and
        # the runtime's own lines go out at once (and take what is waiting with them, in order).
        line = None
        if self.mode == "dev":
            self._outbuf.append(self._readable(record))
        elif record.data is None:
            self._outbuf.append(record)
        else:
            line = _encode_record(_json.encode, record)
            self._outbuf.append(line + b"\n")
        if (record.level == "error" or record.step is None or not self._batching
                or len(self._outbuf) >= MAX_BUFFERED_LINES):
            self.flush_stdout()
        return line

    def _readable(self, r: LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(r.time)) + f".{int(r.time * 1000) % 1000:03d}"
        level = r.level.upper().ljust(5)
        if self.colour:
            level = f"{_COLOURS.get(r.level, '')}{level}\x1b[0m"
        where = f" [{printable(r.step)}]" if r.step else ""
        trace = f" ({r.trace_id[:8]})" if r.trace_id else ""
        line = f"{stamp} {level}{where}{trace} {printable(r.msg)}"
        data = r.data
        if data:
            tb = data.get("traceback") if isinstance(data, dict) else None
            rest = {k: v for k, v in data.items() if k != "traceback"} if tb else data
            if rest:
                try:
                    line += " " + printable(_json.encode(rest).decode())
                except TypeError:
                    line += f" {printable(repr(rest))}"
            if tb:  # each line marked: an exception's message may hold a client's line break
                line += "\n" + "\n".join(f"  | {part}" for part in printable(tb.rstrip(), newlines=True).split("\n"))
        return line + "\n"

    # -- spans ----------------------------------------------------------------------------

    def record_span(self, span: Span) -> None:
        key = (span.step, span.trigger, span.status)  # hook (issue 14): /__edge/metrics
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.store is None:
            return
        spans = self._spans
        if len(spans) == MAX_PENDING:
            self.dropped += 1
        spans.append(span)

    # -- persistence ----------------------------------------------------------------------

    def flush(self) -> None:
        """Hand buffered records to the store writer (does not wait for the commit: :meth:`stored`)."""
        if self.store is None or not (self._logs or self._spans):
            return
        batches = []
        for table, buffer in (("logs", self._logs), ("spans", self._spans)):
            if not buffer:
                continue
            records = list(buffer)
            buffer.clear()
            if table == "spans" and self.exporter is not None:
                self.exporter.add(records)
            seq = self._seq[table]
            items = [((seq + i).to_bytes(8, "big"),
                      record if type(record) is bytes else _encode_record(_pack.encode, record))
                     for i, record in enumerate(records, 1)]
            self._seq[table] = seq = seq + len(records)
            batches.append((table, items, seq - MAX_KEPT))
        self._flushing = self.store.submit(lambda t: _append(t, batches))

    async def stored(self) -> None:
        """Flush, and wait until every record logged so far is in the store (the last flush's
        commit): what ``/__edge/logs`` and ``/__edge/traces`` read next includes them. Records
        the store could not take (a full disk: it says so itself) are not waited for."""
        self.flush()
        flushing = self._flushing
        if flushing is not None and not flushing.done:
            try:
                await flushing.wait()
            except Exception:  # (StorageFull, a store error): the reader gets what is stored
                pass

    async def serve_flush(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._batching = True
        task_status.started()
        ticks_per_flush = round(FLUSH_INTERVAL / STDOUT_FLUSH_INTERVAL)
        try:
            tick = 0
            while True:
                await trio.sleep(STDOUT_FLUSH_INTERVAL)
                self.flush_stdout()
                tick += 1
                if tick % ticks_per_flush == 0:
                    self.flush()
        finally:
            self._batching = False
            self.flush_stdout()
            self.flush()

    def flush_stdout(self) -> None:
        lines = self._outbuf
        if not lines:
            return
        self._outbuf = []
        text = "".join(lines) if self.mode == "dev" else _json_lines(lines).decode()
        try:
            self.out.write(text)
            self.out.flush()
        except (ValueError, OSError, TypeError):
            pass  # a closed or broken stdout must not take a handler down


def _json_lines(items: list) -> bytes:
    """JSON lines for ``items``: encoded lines (bytes) as they are, runs of records in one call."""
    out, run = [], []
    for item in items:
        if type(item) is bytes:
            if run:
                out.append(_record_lines(run))
                run = []
            out.append(item)
        else:
            run.append(item)
    if run:
        out.append(_record_lines(run))
    return b"".join(out)


def _record_lines(records: list) -> bytes:
    try:
        return _json.encode_lines(records)
    except (TypeError, ValueError, OverflowError):
        return b"".join(_encode_record(_json.encode, r) + b"\n" for r in records)


def _append(txn, batches) -> None:
    for table, items, keep_after in batches:
        for key, value in items:
            txn.put(table, key, value)
        if keep_after > 0:
            bound = keep_after.to_bytes(8, "big")
            stale = []
            for key, _ in txn.scan(table):  # oldest first: stop at the first key we keep
                if key > bound:
                    break
                stale.append(key)
            for key in stale:
                txn.delete(table, key)


def decode_log(value: bytes) -> LogRecord:
    """A stored log record: JSON for records with data (kept as the data was at the log call,
    in the form stdout showed), msgpack for the others (a msgpack map never starts with "{")."""
    return _unpack_log_json.decode(value) if value[:1] == b"{" else _unpack_log.decode(value)


def read_logs(store, *, limit: int = 100, trace_id: str | None = None, step: str | None = None) -> list[LogRecord]:
    """The most recent log records, oldest first."""
    return _read(store, "logs", decode_log, limit, trace_id, step)


def read_spans(store, *, limit: int = 100, trace_id: str | None = None, step: str | None = None) -> list[Span]:
    return _read(store, "spans", _unpack_span.decode, limit, trace_id, step)


def _read(store, table, decode, limit, trace_id, step):
    def scan(t):
        out = []
        for _, value in t.scan(table, reverse=True):
            record = decode(value)
            if trace_id and record.trace_id != trace_id:
                continue
            if step and record.step != step:
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out[::-1]

    return store.read(scan)
