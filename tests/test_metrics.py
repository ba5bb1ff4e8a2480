"""GET /__edge/metrics: Prometheus text, parsed with prometheus_client's own parser."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from edge._metrics import CONTENT_TYPE, MAX_RAW_KEYS

from .conftest import ROOT, EdgeServer
from edge.testing import App


def parse(text: str) -> dict:
    """``{(sample name, frozenset(labels)): value}`` and the families' types."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return {"samples": samples, "types": types}


def value(parsed, name, **labels):
    return parsed["samples"].get((name, frozenset((k, str(v)) for k, v in labels.items())))


async def scrape(app):
    r = await app.http("GET", "/__edge/metrics")
    assert r.status == 200
    assert r.headers["content-type"] == CONTENT_TYPE
    return parse(r.text)


async def test_requests_invocations_queues_and_the_store(tmp_path):
    async with App(ROOT / "steps", data_dir=tmp_path) as app:
        ids = [(await app.http("POST", "/todos", json={"title": t})).json["id"] for t in ("a", "b")]
        for todo_id in ids:
            assert (await app.http("GET", f"/todos/{todo_id}")).status == 200
        assert (await app.http("GET", "/todos/nope")).status == 404
        assert (await app.http("GET", "/no/such/page")).status == 404
        assert (await app.http("DELETE", "/todos")).status == 405
        await app.drain()
        app.fail("ProcessTodo", times=None)
        await app.http("POST", "/todos", json={"title": "c"})
        await app.drain()  # 6 attempts (maxRetries 5), then a dead letter
        m = await scrape(app)

    assert m["types"]["edge_http_requests"] == "counter"
    assert m["types"]["edge_http_request_duration_seconds"] == "histogram"
    requests = {(dict(k[1])["method"], dict(k[1])["route"], dict(k[1])["status"]): v
                for k, v in m["samples"].items() if k[0] == "edge_http_requests_total"}
    assert requests == {
        ("POST", "/todos", "201"): 3.0,
        ("GET", "/todos/:id", "200"): 2.0,
        ("GET", "/todos/:id", "404"): 1.0,
        ("GET", "unmatched", "404"): 1.0,
        ("DELETE", "/todos", "405"): 1.0,
    }
    assert value(m, "edge_http_request_duration_seconds_count", method="GET", route="/todos/:id") == 3.0
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m["samples"].items()
                     if k[0] == "edge_http_request_duration_seconds_bucket"
                     and dict(k[1])["route"] == "/todos" and dict(k[1])["method"] == "POST")
    assert buckets[-1] == (float("inf"), 3.0)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert value(m, "edge_http_request_duration_seconds_sum", method="POST", route="/todos") > 0

    assert value(m, "edge_invocations_total", step="CreateTodo", trigger="http", outcome="ok") == 3.0
    assert value(m, "edge_invocations_total", step="ProcessTodo", trigger="queue", outcome="ok") == 2.0
    assert value(m, "edge_invocations_total", step="ProcessTodo", trigger="queue", outcome="error") == 6.0
    assert value(m, "edge_invocations_total", step="GetTodo", trigger="http", outcome="ok") == 3.0

    sub = {"step": "ProcessTodo", "topic": "todo.created"}
    assert value(m, "edge_queue_depth", **sub) == 0.0
    assert value(m, "edge_queue_in_flight", **sub) == 0.0
    assert value(m, "edge_queue_retrying", **sub) == 0.0
    assert value(m, "edge_queue_handled_total", **sub) == 2.0
    assert value(m, "edge_queue_failed_attempts_total", **sub) == 6.0
    assert value(m, "edge_queue_dead_letters", **sub) == 1.0
    assert value(m, "edge_queue_dead_letters_all") == 1.0
    audit = {"step": "AuditTodo", "topic": "@state:0"}  # the state trigger's own subscription
    assert value(m, "edge_queue_handled_total", **audit) == 5.0  # 3 created, 2 processed

    commits = value(m, "edge_store_commits_total")
    assert commits > 0 and value(m, "edge_store_fsyncs_total") == commits
    assert value(m, "edge_store_ops_committed_total") >= commits
    assert value(m, "edge_store_batch_size_average") >= 1.0
    assert value(m, "edge_store_file_bytes") > 0
    assert value(m, "edge_process_resident_memory_bytes") > 10 << 20
    assert value(m, "edge_websockets_open") == 0.0
    assert value(m, "edge_http_requests_in_flight") == 1.0  # the scrape itself


async def test_many_distinct_paths_fold_into_their_route_and_memory_stays_bounded(tmp_path):
    async with App(ROOT / "steps", data_dir=tmp_path) as app:
        metrics = app.server.metrics
        for i in range(3 * MAX_RAW_KEYS):
            metrics.observe("GET", f"/todos/{i}", 404, 0.002)
            metrics.observe("GET", f"/probe/{i}.php", 404, 0.0001)
        assert len(metrics._raw) <= MAX_RAW_KEYS
        m = await scrape(app)
    assert value(m, "edge_http_requests_total", method="GET", route="/todos/:id", status=404) == 3 * MAX_RAW_KEYS
    assert value(m, "edge_http_requests_total", method="GET", route="unmatched", status=404) == 3 * MAX_RAW_KEYS
    assert value(m, "edge_http_request_duration_seconds_bucket", method="GET", route="/todos/:id", le="0.001") == 0
    assert value(m, "edge_http_request_duration_seconds_bucket", method="GET", route="/todos/:id",
                 le="0.0025") == 3 * MAX_RAW_KEYS


async def test_made_up_methods_are_counted_as_one_and_memory_stays_bounded(tmp_path):
    # Each method a client made up was a series of its own, never folded: 1,500 long ones made
    # one scrape take 600 MB.
    async with App(ROOT / "steps", data_dir=tmp_path) as app:
        metrics = app.server.metrics
        for i in range(3000):
            metrics.observe(f"M{i:06d}" + "x" * 100, "/todos/1", 405, 0.001)
        metrics.observe("GET", "/todos/1", 200, 0.001)
        assert {key[0] for key in metrics._raw} == {"OTHER", "GET"}
        m = await scrape(app)
    assert value(m, "edge_http_requests_total", method="OTHER", route="/todos/:id", status=405) == 3000


def test_a_real_server_counts_its_connections_and_websockets(tmp_path):
    import httpx
    from websockets.sync.client import connect

    server = EdgeServer(ROOT, tmp_path / "data").start()
    try:
        with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "join", "data": {"streamName": "todos", "groupId": "all",
                                                         "subscriptionId": "s"}}))
            ws.recv(timeout=5)
            with httpx.Client(base_url=server.url, timeout=10) as c:  # one keep-alive connection
                assert c.post("/todos", json={"title": "x"}).status_code == 201
                r = c.get("/__edge/metrics")
        assert r.status_code == 200
        m = parse(r.text)
        assert value(m, "edge_websockets_open") == 1.0
        assert value(m, "edge_websockets_total") == 1.0
        assert value(m, "edge_http_connections") == 2.0  # the WebSocket and the HTTP client
        assert value(m, "edge_http_requests_total", method="POST", route="/todos", status=201) == 1.0
        assert value(m, "edge_process_resident_memory_bytes") > 10 << 20
    finally:
        assert server.stop() == 0
