"""Optional export of spans to an OpenTelemetry collector over OTLP/HTTP; off by default.

Set ``EDGE_OTLP_ENDPOINT`` to a collector's OTLP/HTTP address (``http://127.0.0.1:4318``; edge
appends ``/v1/traces`` unless the URL already ends with it) and install the exporter
(``pip install 'edge[otlp]'``, which is ``opentelemetry-exporter-otlp-proto-http``). Then every
span the tracer keeps (the ones ``edge traces`` shows: at most 1,000 a second under load) goes to
the collector in one request a second, sent from a worker thread: the request path never waits
for the network. The exporter's own variables (``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_EXPORTER_OTLP_COMPRESSION``, certificates) apply as usual.

A collector that is down or slow costs spans, never memory or requests: at most
:data:`MAX_QUEUED` spans wait, older ones are dropped, and ``/__edge/health`` counts what was
exported, failed and dropped. The log says once that the collector stopped answering, and once
that it answers again.

How an edge span maps onto an OpenTelemetry span: the name is the step's name; the trace id is
edge's (a 32-hex-digit id as is, any other ``x-trace-id`` a client chose hashed to 128 bits,
with the original kept in ``edge.trace_id``); kind SERVER for HTTP, CONSUMER for queue, state and
stream triggers, INTERNAL for cron and ``ctx.invoke``; status ERROR with the error for a failed
run; attributes ``edge.step``, ``edge.trigger``, ``edge.status``, ``edge.trace_id`` and
``edge.error_id``.
"""

from __future__ import annotations

import hashlib
from collections import deque

import trio

from .errors import ConfigError

__all__ = ["OTLPExport", "MAX_QUEUED", "EXPORT_INTERVAL"]

#: Spans waiting for the collector at most (older ones are dropped, and counted).
MAX_QUEUED = 10_000
#: Seconds between two exports.
EXPORT_INTERVAL = 1.0
#: How long the last export may take while edge stops.
FINAL_EXPORT = 2.0

_KINDS = {"http": "SERVER", "queue": "CONSUMER", "state": "CONSUMER", "stream": "CONSUMER"}


class OTLPExport:
    """Sends the tracer's spans to ``endpoint``; built by the runtime when EDGE_OTLP_ENDPOINT is set.

    Raises:
        ConfigError: the exporter package is not installed.
    """

    def __init__(self, endpoint: str, service_name: str, log):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
        except ImportError:
            raise ConfigError(
                "EDGE_OTLP_ENDPOINT is set, but the OTLP exporter is not installed: "
                "pip install 'edge[otlp]' (opentelemetry-exporter-otlp-proto-http), or unset EDGE_OTLP_ENDPOINT"
            ) from None
        url = endpoint.rstrip("/")
        self.endpoint = url if url.endswith("/v1/traces") else url + "/v1/traces"
        self._exporter = OTLPSpanExporter(endpoint=self.endpoint, timeout=5)
        self._resource = Resource.create({"service.name": service_name})
        self._log = log
        self._queue: deque = deque(maxlen=MAX_QUEUED)  # past it the oldest go (counted)
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self._failing = False

    def add(self, spans: list) -> None:
        """Queue ``spans`` (edge's :class:`~edge.tracing.Span`) for the next export."""
        self.dropped += max(0, len(self._queue) + len(spans) - MAX_QUEUED)
        self._queue.extend(spans)

    def stats(self) -> dict:
        return {"endpoint": self.endpoint, "exported": self.exported, "failed": self.failed,
                "dropped": self.dropped, "queued": len(self._queue)}

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.sleep(EXPORT_INTERVAL)
                await self.send()
        finally:
            with trio.move_on_after(FINAL_EXPORT) as scope:
                scope.shield = True
                await self.send()

    async def send(self) -> None:
        """Export what is queued (from a worker thread); count and say what happened."""
        if not self._queue:
            return
        batch = list(self._queue)
        self._queue.clear()
        try:
            ok, problem = await trio.to_thread.run_sync(self._export, batch, abandon_on_cancel=True)
        except Exception as exc:  # converting or sending: the spans are lost, edge goes on
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.exported += len(batch)
            if self._failing:
                self._failing = False
                self._log("info", f"OTLP export to {self.endpoint} works again")
            return
        self.failed += len(batch)
        if not self._failing:
            self._failing = True
            self._log("warn", f"OTLP export to {self.endpoint} failed ({problem}); spans are dropped "
                              "until the collector answers (counted in /__edge/health)")

    def _export(self, batch: list) -> tuple[bool, str]:
        """On a worker thread: convert and send one batch."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        spans = _otel_spans(batch, self._resource)
        result = self._exporter.export(spans)
        return result is SpanExportResult.SUCCESS, "the collector refused or did not answer"

    def close(self) -> None:
        self._exporter.shutdown()


def trace_number(trace_id: str) -> int:
    """edge's trace id as OpenTelemetry's 128-bit one."""
    if len(trace_id) == 32:
        try:
            number = int(trace_id, 16)
        except ValueError:
            pass
        else:
            if number:
                return number
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=16).digest(), "big") or 1


def _otel_spans(batch: list, resource) -> list:
    """edge's spans as OpenTelemetry's (the mapping in the module doc)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    flags, scope, ok = TraceFlags(TraceFlags.SAMPLED), InstrumentationScope("edge"), Status(StatusCode.UNSET)
    out = []
    for span in batch:
        trace = trace_number(span.trace_id)
        context = SpanContext(trace, int(span.span_id, 16), is_remote=False, trace_flags=flags)
        parent = SpanContext(trace, int(span.parent, 16), is_remote=False, trace_flags=flags) if span.parent else None
        start = int(span.start * 1e9)
        attributes = {"edge.step": span.step, "edge.trigger": span.trigger, "edge.status": span.status,
                      "edge.trace_id": span.trace_id}
        if span.error_id:
            attributes["edge.error_id"] = span.error_id
        out.append(ReadableSpan(
            name=span.step, context=context, parent=parent, resource=resource, attributes=attributes,
            kind=getattr(SpanKind, _KINDS.get(span.trigger, "INTERNAL")),
            status=Status(StatusCode.ERROR, span.error or "error") if span.status == "error" else ok,
            start_time=start, end_time=start + int(span.duration_ms * 1e6), instrumentation_scope=scope,
        ))
    return out
