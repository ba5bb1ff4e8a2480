"""The optional OTLP export of spans (EDGE_OTLP_ENDPOINT, edge/_otlp.py), to a collector on loopback.

The collector is a plain HTTP server in this process that decodes what the real OpenTelemetry
exporter sends (OTLP/HTTP, protobuf) with the OTLP protocol's own message classes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import EdgeServer, wait_for, write_project

pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                         reason="the test extra installs opentelemetry-exporter-otlp-proto-http")

PROJECT = {
    "steps/place_order_step.py": """
        config = {"name": "PlaceOrder", "triggers": [{"type": "http", "method": "POST", "path": "/orders"}],
                  "enqueues": ["order.placed"]}

        async def handler(req, ctx):
            await ctx.enqueue({"topic": "order.placed", "data": {"id": req.body["id"]}})
            return {"status": 202, "body": {"ok": True}}
    """,
    "steps/ship_order_step.py": """
        config = {"name": "ShipOrder", "triggers": [{"type": "queue", "topic": "order.placed"}]}

        async def handler(data, ctx):
            pass
    """,
    "steps/boom_step.py": """
        config = {"name": "Boom", "triggers": [{"type": "http", "method": "GET", "path": "/boom"}]}

        async def handler(req, ctx):
            raise RuntimeError("the sensor is unplugged")
    """,
}


class Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1; ``answer`` is the status it replies with."""

    def __init__(self):
        self.spans: list[tuple] = []  # (resource attributes, span)
        self.requests = 0
        self.answer = 200
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                collector.requests += 1
                if self.path == "/v1/traces" and collector.answer == 200:
                    request = pb.ExportTraceServiceRequest.FromString(body)
                    for resource_spans in request.resource_spans:
                        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                        for scope_spans in resource_spans.scope_spans:
                            collector.spans.extend((resource, span) for span in scope_spans.spans)
                    reply = pb.ExportTraceServiceResponse().SerializeToString()
                else:
                    reply = b""
                self.send_response(collector.answer)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_trace(self, trace_id: str) -> dict:
        """Spans of one trace, by name."""
        return {span.name: (resource, span) for resource, span in self.spans if span.trace_id.hex() == trace_id}

    def close(self):
        self.server.shutdown()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def attributes(span) -> dict:
    return {a.key: a.value.string_value for a in span.attributes}


def test_spans_go_to_the_collector_with_edges_trace_ids(tmp_path, collector):
    project = write_project(tmp_path / "shop", PROJECT)
    server = EdgeServer(project, tmp_path / "data", env={"EDGE_OTLP_ENDPOINT": collector.url,
                                                        "OTEL_SERVICE_NAME": "greenhouse"}).start()
    try:
        with server.client() as http:
            trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            assert http.post("/orders", json={"id": "o1"}, headers={"x-trace-id": trace_id}).status_code == 202
            spans = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(collector.of_trace(trace_id)), timeout=15)
            resource, placed = spans["PlaceOrder"]
            _, shipped = spans["ShipOrder"]
            assert resource["service.name"] == "greenhouse"
            assert placed.kind == placed.SPAN_KIND_SERVER and shipped.kind == shipped.SPAN_KIND_CONSUMER
            assert attributes(placed) == {"edge.step": "PlaceOrder", "edge.trigger": "http", "edge.status": "ok",
                                          "edge.trace_id": trace_id}
            assert placed.end_time_unix_nano > placed.start_time_unix_nano
            # A failed run is an ERROR span that carries the error and the error id of the 500.
            r = http.get("/boom")
            boom_trace = r.headers["x-trace-id"]
            _, boom = wait_for(lambda: collector.of_trace(boom_trace).get("Boom"), timeout=15)
            assert boom.status.code == boom.status.STATUS_CODE_ERROR
            assert boom.status.message == "RuntimeError: the sensor is unplugged"
            assert attributes(boom)["edge.error_id"] == r.json()["error_id"]
            # A trace id a client chose that is not 32 hex digits is hashed; the original is kept.
            http.get("/boom", headers={"x-trace-id": "order-17"})
            chosen = wait_for(lambda: next((span for _, span in collector.spans
                                            if attributes(span).get("edge.trace_id") == "order-17"), None), timeout=15)
            assert len(chosen.trace_id) == 16 and chosen.trace_id != b"\0" * 16
            # (the collector has the spans before edge hears its answer: wait for the count)
            health = wait_for(lambda: (lambda h: h if h["exported"] >= 4 else None)(
                http.get("/__edge/health").json()["otlp"]), timeout=15)
            assert health["endpoint"] == collector.url + "/v1/traces" and health["failed"] == 0
    finally:
        server.kill()


def test_a_collector_that_refuses_costs_spans_not_requests_and_is_said_once(tmp_path, collector):
    collector.answer = 400  # refused (a collector that is down is retried by the exporter first: slower)
    project = write_project(tmp_path / "shop", PROJECT)
    server = EdgeServer(project, tmp_path / "data", env={"EDGE_OTLP_ENDPOINT": collector.url}).start()
    try:
        with server.client() as http:
            failed = 0
            for _ in range(3):  # three failed exports in a row
                refused = collector.requests
                assert http.post("/orders", json={"id": "o2"}).status_code == 202
                wait_for(lambda: collector.requests > refused, timeout=30)
                failed = wait_for(lambda: (lambda n: n if n > failed else None)(
                    http.get("/__edge/health").json()["otlp"]["failed"]), timeout=30)
            collector.answer = 200
            assert http.post("/orders", json={"id": "o3"}).status_code == 202
            back = f"OTLP export to {collector.url}/v1/traces works again"
            wait_for(lambda: any(r.get("msg") == back for r in server.logs()), timeout=30)
            # stdout keeps order: every line before "works again" has been read by now
            said = [r["msg"] for r in server.logs() if "OTLP export" in r.get("msg", "")]
            assert said == [f"OTLP export to {collector.url}/v1/traces failed (the collector refused or did "
                            "not answer); spans are dropped until the collector answers (counted in "
                            "/__edge/health)", back]
            assert http.get("/__edge/health").json()["otlp"]["exported"] >= 1
    finally:
        server.kill()


def test_otlp_without_the_exporter_installed_says_what_to_install(tmp_path):
    # An `opentelemetry` package that cannot be imported stands in for one not installed.
    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    project = write_project(tmp_path / "shop", PROJECT)
    out = subprocess.run([sys.executable, "-m", "edge", "start", "--dir", str(project), "--data-dir",
                          str(tmp_path / "data"), "--port", "0", "--host", "127.0.0.1"],
                         env={**__import__("os").environ, "EDGE_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                              "PYTHONPATH": str(shadow.parent)},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "edge start: EDGE_OTLP_ENDPOINT is set, but the OTLP exporter is not installed: pip install "
        "'edge[otlp]' (opentelemetry-exporter-otlp-proto-http), or unset EDGE_OTLP_ENDPOINT")


def test_an_otlp_endpoint_that_is_no_url_is_a_usage_error(tmp_path):
    project = write_project(tmp_path / "shop", PROJECT)
    out = subprocess.run([sys.executable, "-m", "edge", "start", "--dir", str(project), "--port", "0"],
                         env={**__import__("os").environ, "EDGE_OTLP_ENDPOINT": "collector:4318"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip() == ('edge start: EDGE_OTLP_ENDPOINT: expected the http:// or https:// address of an '
                                  'OTLP/HTTP collector (e.g. http://127.0.0.1:4318), got "collector:4318"')
