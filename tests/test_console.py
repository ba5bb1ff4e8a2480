"""The console at /__edge/: its files and endpoints over HTTP, then every view in a real headless
browser (Debian's chromium driven by Playwright) against a real server, as a user would see it.

Screenshots of each view land in the test's tmp dir (``console-*.png``).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import httpx
import pytest

from edge.server.console import ASSET_DIR, ASSETS
from edge.server.console_model import cron_in_words

from .conftest import EdgeServer, served, wait_for, write_project

CHROMIUM = "/usr/bin/chromium"
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
HAVE_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None

APP = {
    "steps/place_order_step.py": """
        config = {
            "name": "PlaceOrder",
            "description": "Take an order and queue it for shipping",
            "flows": ["shop"],
            "triggers": [{"type": "http", "method": "POST", "path": "/orders",
                          "bodySchema": {"type": "object", "properties": {"item": {"type": "string"}},
                                         "required": ["item"]}}],
            "enqueues": ["order.placed"],
        }

        async def handler(req, ctx):
            order = {"id": f"o-{req.body['item']}", "item": req.body["item"]}
            await ctx.streams.orders.set("all", order["id"], order)
            await ctx.enqueue({"topic": "order.placed", "data": order})
            ctx.logger.info(f"order placed for {req.body['item']}")
            return {"status": 201, "body": order}
    """,
    "steps/ship_order_step.py": """
        config = {
            "name": "ShipOrder",
            "description": "Ship an order (fails while config/shipping is down)",
            "flows": ["shop"],
            "triggers": [{"type": "queue", "topic": "order.placed", "config": {"maxRetries": 0}}],
            "virtualEnqueues": [{"topic": "parcel.sent", "label": "courier"}],
        }

        async def handler(order, ctx):
            if await ctx.state.get("config", "shipping") == "down":
                raise RuntimeError(f"shipping is down, cannot ship {order['id']}")
            ctx.logger.info(f"shipped {order['id']}")
    """,
    "steps/courier_step.py": """
        config = {"name": "Courier", "type": "noop", "flows": ["shop"], "virtualSubscribes": ["parcel.sent"]}
    """,
    "steps/nightly_step.py": """
        config = {"name": "NightlyReport", "flows": ["shop"],
                  "triggers": [{"type": "cron", "expression": "0 3 * * *"}]}

        async def handler(input, ctx):
            ctx.logger.info("report")
    """,
    "steps/config_step.py": """
        config = {"name": "GetConfig", "flows": ["shop"],
                  "triggers": [{"type": "http", "method": "GET", "path": "/config/:key"}]}

        async def handler(req, ctx):
            value = await ctx.state.get("config", req.path_params["key"])
            return {"status": 404 if value is None else 200, "body": {"value": value}}
    """,
    "steps/orders_stream.py": """
        config = {"name": "orders", "description": "Orders, live", "schema": {"type": "object"}}
    """,
}


# -- without a browser ------------------------------------------------------------------------------

def test_every_asset_ships_and_all_of_them_stay_under_300_kb():
    files = sorted(p.name for p in ASSET_DIR.iterdir())
    assert files == sorted(ASSETS)
    total = sum((ASSET_DIR / name).stat().st_size for name in ASSETS)
    assert total <= 300_000, f"the console's files weigh {total} bytes"


def test_cron_in_words():
    assert cron_in_words("0 3 * * *") == "every day at 03:00"
    assert cron_in_words("*/15 * * * *") == "every 15 minutes"
    assert cron_in_words("0 * * * *") == "every hour, on the hour"
    assert cron_in_words("0 9 * * 1-5") == "on weekdays at 09:00"
    assert cron_in_words("5 4 * * sun") == "every Sunday at 04:05"
    assert cron_in_words("0 0 1 * *") == "on day 1 of every month at 00:00"
    assert cron_in_words("*/5 * * * * *") == "every 5 seconds"
    assert cron_in_words("0 30 2 * * *") == "every day at 02:30"
    assert cron_in_words("15 8,20 * * *") == "every day at 08:15 and 20:15"
    assert cron_in_words("0 0 12 * JAN *") == "0 0 12 * JAN *"  # unusual: shown as written


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory, "console", APP) as srv:
        yield srv


def test_page_files_and_endpoints_over_http(server):
    with server.client() as http:
        page = http.get("/__edge/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="/__edge/console/app.js">' in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        again = http.get("/__edge/", headers={"if-none-match": page.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
        js = http.get("/__edge/console/flows.js")
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        assert http.get("/__edge/console/style.css").headers["content-type"] == "text/css; charset=utf-8"
        assert http.get("/__edge/console/nope.js").status_code == 404

        model = http.get("/__edge/app").json()
        ship = next(s for s in model["steps"] if s["name"] == "ShipOrder")
        assert ship["triggers"][0]["topic"] == "order.placed" and ship["file"] == "steps/ship_order_step.py"
        assert model["topics"]["order.placed"] == {
            "publishers": [{"step": "PlaceOrder", "label": None, "conditional": False, "virtual": False}],
            "subscribers": [{"step": "ShipOrder", "virtual": False}]}
        assert model["topics"]["parcel.sent"]["subscribers"] == [{"step": "Courier", "virtual": True}]
        cron = next(s for s in model["steps"] if s["name"] == "NightlyReport")["triggers"][0]
        assert cron["words"] == "every day at 03:00" and cron["next"] > time.time()
        assert next(s for s in model["steps"] if s["name"] == "Courier")["noop"] is True

        system = http.get("/__edge/system").json()
        assert system["rss_bytes"] > 10 << 20 and system["data_dir_bytes"] > 0 and system["disk_free_bytes"] > 0
        assert system["commits"] == system["fsyncs"] > 0

        bad = http.get("/__edge/logs/tail", params={"level": "loud"})
        assert bad.status_code == 400
        assert bad.json()["detail"] == 'level: expected one of debug, info, warn, error, got "loud"'
        assert http.delete("/__edge/dlq").json()["detail"] == "DELETE /__edge/dlq takes one of ?id=<id>, ?step=<step> or ?all=true"
        both = http.delete("/__edge/dlq", params={"id": 1, "all": "true"})  # it deleted id 1 only
        assert (both.status_code, both.json()["detail"]) == (
            400, "DELETE /__edge/dlq takes one of ?id=<id>, ?step=<step> or ?all=true (got id and all)")
        assert http.delete("/__edge/dlq", params={"all": "yes"}).json()["detail"] == "all: expected true or false, got 'yes'"
        assert http.delete("/__edge/dlq", params={"id": 999}).status_code == 404
        assert http.delete("/__edge/state", params={"group": "config"}).json()["detail"] == \
            "DELETE /__edge/state takes ?group=<group>&key=<key>"


def test_log_tail_waits_for_the_next_line(server):
    with server.client() as http:
        last = http.get("/__edge/logs/tail", params={"limit": 1}).json()["last"]
        started = time.monotonic()
        empty = http.get("/__edge/logs/tail", params={"after": last, "timeout": 0.5, "step": "PlaceOrder"}).json()
        assert empty["logs"] == [] and 0.4 < time.monotonic() - started < 5
        http.post("/orders", json={"item": "tail"})
        got = http.get("/__edge/logs/tail", params={"after": last, "timeout": 10, "step": "PlaceOrder"}).json()
        assert [r["msg"] for r in got["logs"]] == ["order placed for tail"]
        assert got["last"] >= got["logs"][0]["seq"] > last


# -- in a browser -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does it when run as root)")
    if not HAVE_PLAYWRIGHT:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1360, "height": 880})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(10_000)
    yield page
    page.screenshot(path=str(tmp_path / "console-last.png"))
    context.close()
    assert errors == [], errors


def shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"console-{name}.png"))


def test_flows_show_steps_triggers_and_topics(server, page, tmp_path):
    from playwright.sync_api import expect

    page.goto(f"{server.url}/__edge/#/flows")
    diagram = page.locator("svg.flow")
    for name in ("PlaceOrder", "ShipOrder", "Courier", "NightlyReport", "GetConfig"):
        expect(diagram.locator(f'g.node[data-step="{name}"]')).to_be_visible()
    expect(diagram.locator('g.node[data-step="PlaceOrder"]')).to_contain_text("POST /orders")
    expect(diagram.locator('g.node[data-step="ShipOrder"]')).to_contain_text("order.placed")
    expect(diagram.locator('g.node[data-step="NightlyReport"]')).to_contain_text("every day at 03:00")
    expect(diagram.locator('g.node[data-step="Courier"]')).to_contain_text("noop")
    expect(diagram.locator(".edge-label")).to_have_text(["order.placed", "courier"])
    expect(diagram.locator('path.edge.virtual[data-topic="parcel.sent"]')).to_have_count(1)
    expect(diagram.locator('path.edge:not(.virtual)[data-topic="order.placed"]')).to_have_count(1)
    expect(page.locator("#health")).to_contain_text("RSS")
    shot(page, tmp_path, "flows")

    diagram.locator('g.node[data-step="ShipOrder"]').click()
    panel = page.locator("aside.panel")
    expect(panel).to_contain_text("steps/ship_order_step.py")
    expect(panel).to_contain_text('"maxRetries": 0')
    expect(panel.locator(".runs")).to_be_visible()
    assert page.url.endswith("#/flows/shop/ShipOrder")


def test_endpoint_form_sends_a_request_and_links_its_trace(server, page, tmp_path):
    from playwright.sync_api import expect

    page.goto(f"{server.url}/__edge/#/endpoints")
    card = page.locator('details.endpoint[data-op="PlaceOrder"]')
    card.locator("summary").click()
    expect(card).to_contain_text('"required"')  # the body schema from openapi.json
    card.locator("textarea").first.fill('{"item": "lamp"}')
    card.locator("button[type=submit]").click()
    expect(card.locator(".status-code")).to_have_text("201 Created")
    expect(card.locator(".result pre")).to_contain_text('"o-lamp"')
    shot(page, tmp_path, "endpoints")

    card.locator(".result a.trace-link").click()
    waterfall = page.locator(".waterfall")
    expect(waterfall.locator('.wf-row[data-step="PlaceOrder"]')).to_contain_text("http", timeout=15_000)
    expect(waterfall.locator('.wf-row[data-step="ShipOrder"]')).to_contain_text("queue", timeout=15_000)
    expect(page.locator(".view")).to_contain_text("order placed for lamp")
    shot(page, tmp_path, "trace")

    page.goto(f"{server.url}/__edge/#/traces")
    expect(page.locator("table.traces")).to_contain_text("PlaceOrder")


def test_logs_show_a_line_a_request_just_caused(server, page, tmp_path):
    from playwright.sync_api import expect

    page.goto(f"{server.url}/__edge/#/logs")
    expect(page.locator(".live")).to_have_text("live")
    with server.client() as http:
        trace = http.post("/orders", json={"item": "kettle"}).headers["x-trace-id"]
    row = page.locator("table.logs tr", has_text="order placed for kettle")
    expect(row).to_be_visible(timeout=10_000)
    expect(row.locator("a.trace-link")).to_have_attribute("href", f"#/traces/{trace}")
    shot(page, tmp_path, "logs")

    page.locator("select[name=step]").select_option("ShipOrder")
    expect(page.locator("table.logs")).to_contain_text("shipped o-kettle")
    expect(page.locator("table.logs")).not_to_contain_text("order placed for")


def test_dead_letter_fixed_by_a_state_edit_and_redriven(server, page, tmp_path):
    from playwright.sync_api import expect

    with server.client() as http:
        http.post("/__edge/state", json={"group": "config", "key": "shipping", "value": "down"})
        http.post("/orders", json={"item": "chair"})
        wait_for(lambda: http.get("/__edge/dlq").json()["dead_letters"], timeout=15)

    page.goto(f"{server.url}/__edge/#/queues")
    dead = page.locator("table.dead")
    expect(dead).to_contain_text("RuntimeError: shipping is down, cannot ship o-chair")
    expect(page.locator('table.subs tr[data-step="ShipOrder"]')).to_contain_text("order.placed")
    shot(page, tmp_path, "queues")

    # fix the cause in the state view: the app then serves the new value over HTTP
    page.goto(f"{server.url}/__edge/#/state/config/shipping")
    editor = page.locator(".editor")
    expect(editor).to_contain_text('"down"')
    editor.locator("textarea").fill('"up"')
    editor.locator("button.primary").click()
    expect(editor.locator(".form-msg")).to_have_text("saved")
    shot(page, tmp_path, "state")
    with server.client() as http:
        assert http.get("/config/shipping").json() == {"value": "up"}

    page.goto(f"{server.url}/__edge/#/queues")
    expect(dead).to_contain_text("o-chair")
    page.get_by_role("button", name="Redrive all").click()
    expect(page.locator(".form-msg")).to_contain_text("redriven 1")
    expect(dead).to_contain_text("No dead letters.")
    with server.client() as http:
        wait_for(lambda: any(r["msg"] == "shipped o-chair"
                             for r in http.get("/__edge/logs", params={"step": "ShipOrder"}).json()["logs"]))


def test_state_delete_and_dead_letter_delete(server, page, tmp_path):
    from playwright.sync_api import expect

    with server.client() as http:
        http.post("/__edge/state", json={"group": "config", "key": "colour", "value": {"name": "teal"}})
        http.post("/__edge/state", json={"group": "config", "key": "shipping", "value": "down"})
        http.post("/orders", json={"item": "desk"})
        wait_for(lambda: http.get("/__edge/dlq").json()["dead_letters"], timeout=15)
        http.post("/__edge/state", json={"group": "config", "key": "shipping", "value": "up"})

    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{server.url}/__edge/#/state/config/colour")
    expect(page.locator(".editor")).to_contain_text('"teal"')
    page.locator(".editor button.danger").click()
    expect(page.locator("table")).not_to_contain_text("colour")
    with server.client() as http:
        assert http.get("/config/colour").status_code == 404

    page.goto(f"{server.url}/__edge/#/queues")
    row = page.locator("table.dead tr", has_text="o-desk")
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("table.dead")).to_contain_text("No dead letters.")
    with server.client() as http:
        assert http.get("/__edge/dlq").json()["dead_letters"] == []

        http.post("/__edge/state", json={"group": "config", "key": "shipping", "value": "down"})
        http.post("/orders", json={"item": "chair"})
        http.post("/orders", json={"item": "lamp"})
        wait_for(lambda: http.get("/__edge/dlq").json()["total"] == 2, timeout=30)
        http.post("/__edge/state", json={"group": "config", "key": "shipping", "value": "up"})
    expect(page.locator("table.dead")).to_contain_text("o-lamp")
    page.get_by_role("button", name="Delete all").click()
    expect(page.locator(".form-msg")).to_have_text("deleted 2")  # the count the answer carries
    expect(page.locator("table.dead")).to_contain_text("No dead letters.")


def test_stream_group_live_view(server, page, tmp_path):
    from playwright.sync_api import expect

    with server.client() as http:
        http.post("/orders", json={"item": "first"})
    page.goto(f"{server.url}/__edge/#/streams/orders/all")
    expect(page.locator(".live")).to_have_text("live")
    expect(page.locator('tr[data-id="o-first"]')).to_be_visible()
    with server.client() as http:
        http.post("/orders", json={"item": "second"})
    expect(page.locator('tr[data-id="o-second"]')).to_be_visible()
    expect(page.locator("ol.events")).to_contain_text("create")
    shot(page, tmp_path, "streams")


def test_with_a_token_the_page_asks_for_it(browser, tmp_path):
    from playwright.sync_api import expect

    project = write_project(tmp_path / "app", {"steps/config_step.py": APP["steps/config_step.py"]})
    srv = EdgeServer(project, tmp_path / "data", env={"EDGE_TOKEN": "s3cret-token"}).start()
    try:
        assert httpx.get(f"{srv.url}/__edge/").status_code == 200  # the page itself holds no data
        assert httpx.get(f"{srv.url}/__edge/app").status_code == 401
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{srv.url}/__edge/#/flows")
        form = page.locator("#signin")
        expect(form).to_be_visible()
        expect(form).to_contain_text("EDGE_TOKEN")
        shot(page, tmp_path, "signin")
        page.locator("#signin-token").fill("s3cret-token")
        page.locator("#signin-form button").click()
        expect(page.locator('g.node[data-step="GetConfig"]')).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('edge-token')") == "s3cret-token"
        context.close()
    finally:
        srv.kill()


RENAMED_BEFORE = {
    "steps/old_step.py": """
        config = {"name": "Old", "triggers": [{"type": "queue", "topic": "jobs", "config": {"maxRetries": 0}}]}

        async def handler(data, ctx):
            raise RuntimeError(f"cannot do job {data['n']}")
    """,
    "steps/slow_step.py": """
        config = {"name": "Slow", "triggers": [{"type": "queue", "topic": "later", "config": {"delaySeconds": 3600}}]}

        async def handler(data, ctx):
            pass
    """,
}
RENAMED_AFTER = {
    "steps/new_step.py": """
        config = {"name": "New", "triggers": [{"type": "queue", "topic": "jobs"}]}

        async def handler(data, ctx):
            await ctx.state.set("done", str(data["n"]), True)
    """,
}


def test_work_of_a_renamed_step_is_moved_and_redriven_to_the_new_one(page, tmp_path):
    # Before: the console could only redrive a dead letter back to its own step, which is gone
    # (skipped), and showed the orphaned messages with no way to take them (the CLI could).
    from playwright.sync_api import expect

    data = tmp_path / "data"
    before = EdgeServer(write_project(tmp_path / "before", RENAMED_BEFORE), data).start()
    try:
        with before.client() as http:
            assert http.post("/__edge/emit", json={"topic": "jobs", "data": {"n": 1}}).status_code == 202
            wait_for(lambda: http.get("/__edge/dlq").json()["total"] == 1, timeout=15)
            assert http.post("/__edge/emit", json={"topic": "later", "data": {"n": 2}}).status_code == 202
    finally:
        before.kill()  # Old and Slow are renamed and removed: one dead letter and one message are left behind
    server = EdgeServer(write_project(tmp_path / "after", RENAMED_AFTER), data).start()
    try:
        page.goto(f"{server.url}/__edge/#/queues")
        orphaned = page.locator("p.warn-text", has_text="Stored for steps that no longer subscribe")
        expect(orphaned).to_contain_text("Slow <- later")
        expect(page.locator('table.dead tr[data-id="1"]')).to_contain_text("Old")
        shot(page, tmp_path, "queues-renamed")
        orphaned.get_by_role("button", name="Move to dead letters").click()
        expect(page.locator(".form-msg")).to_have_text("moved 1 to the dead letters")
        for dlq_id, step in ((1, "Old"), (2, "Slow")):
            row = page.locator(f'table.dead tr[data-id="{dlq_id}"]')
            expect(row).to_contain_text(step)
            expect(row.locator("select[name=to] option")).to_have_text(["New ← jobs"])
            row.get_by_role("button", name="Redrive to").click()
            expect(page.locator(".form-msg")).to_have_text(f"redriven #{dlq_id} to New")
        expect(page.locator("table.dead")).to_contain_text("No dead letters.")
        with server.client() as http:
            for n in ("1", "2"):
                wait_for(lambda n=n: http.get("/__edge/state", params={"group": "done", "key": n}).status_code == 200)
    finally:
        server.kill()
