"""What a handler can do that got past the boundary before (a tester's findings): cancel its
own task, raise a trio.Cancelled it kept, raise an exception whose str() fails, start a task
that raises SystemExit, swallow the cancellation of its HTTP timeout. Each is that
invocation's outcome; the server goes on serving. Real server, real sockets."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from edge._state import StateStore
from edge.store import Store

from .conftest import EdgeServer, served, wait_for, write_project

PROJECT = {
    "steps/backtracking_step.py": """
        config = {"name": "Backtracking", "triggers": [{"type": "http", "method": "POST", "path": "/backtracking",
                  "bodySchema": {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|aa)+$"}}}}]}

        async def handler(req, ctx):
            return {"status": 200, "body": req.body}
    """,
    "steps/ok_step.py": """
        config = {"name": "Ok", "triggers": [{"type": "http", "method": "GET", "path": "/ok"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"ok": True}}
    """,
    "steps/self_cancel_step.py": """
        import asyncio

        config = {"name": "SelfCancel", "triggers": [
            {"type": "http", "method": "GET", "path": "/self-cancel"},
            {"type": "queue", "topic": "self.cancel", "config": {"maxRetries": 0}}]}

        async def handler(input, ctx):
            asyncio.current_task().cancel()
            await asyncio.sleep(0)
            return {"status": 200, "body": {}}
    """,
    "steps/stray_cancelled_step.py": """
        import trio

        config = {"name": "StrayCancelled", "runtime": "trio", "triggers": [
            {"type": "http", "method": "GET", "path": "/stray-cancelled"},
            {"type": "queue", "topic": "stray.cancelled", "config": {"maxRetries": 0}}]}

        async def handler(input, ctx):
            kept = None
            with trio.move_on_after(0):
                try:
                    await trio.sleep(1)
                except trio.Cancelled as exc:
                    kept = exc
            raise kept
    """,
    "steps/bad_str_step.py": """
        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("str boom")

        config = {"name": "BadStr", "triggers": [
            {"type": "http", "method": "GET", "path": "/bad-str"},
            {"type": "queue", "topic": "bad.str", "config": {"maxRetries": 1, "backoffType": "fixed", "backoffDelayMs": 50}}]}

        async def handler(input, ctx):
            raise Unprintable()
    """,
    "steps/background_exit_step.py": """
        import asyncio

        config = {"name": "BackgroundExit", "triggers": [{"type": "http", "method": "GET", "path": "/exit/:how"}]}
        _kept = set()

        async def _exit():
            await asyncio.sleep(0.05)
            raise SystemExit(9)

        def _boom():
            raise ValueError("callback boom")

        async def handler(req, ctx):
            how = req.path_params["how"]
            if how == "task":
                _kept.add(asyncio.create_task(_exit()))
            elif how == "interrupt":
                asyncio.get_running_loop().call_soon(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
            else:
                asyncio.get_running_loop().call_soon(_boom)
            return {"status": 200, "body": {"started": how}}
    """,
    "steps/slow_callee_step.py": """
        import asyncio

        config = {"name": "SlowCallee", "triggers": [{"type": "queue", "topic": "slow.callee"}]}

        async def handler(data, ctx):
            await asyncio.sleep(30)
    """,
    "steps/invoke_under_step.py": """
        import asyncio

        config = {"name": "InvokeUnder", "triggers": [{"type": "http", "method": "GET", "path": "/invoke-under/:how"}]}

        async def _sibling_fails():
            await asyncio.sleep(0.1)
            raise ValueError("sibling failed")

        async def handler(req, ctx):
            how = req.path_params["how"]
            try:
                if how == "timeout":
                    async with asyncio.timeout(0.2):
                        await ctx.invoke("SlowCallee", {})
                elif how == "wait_for":
                    await asyncio.wait_for(ctx.invoke("SlowCallee", {}), 0.2)
                else:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(ctx.invoke("SlowCallee", {}))
                        group.create_task(_sibling_fails())
            except TimeoutError:
                return {"status": 200, "body": {"caught": "TimeoutError"}}
            except BaseExceptionGroup as failed:
                return {"status": 200, "body": {"caught": [type(e).__name__ for e in failed.exceptions]}}
            return {"status": 200, "body": {"caught": None}}
    """,
    "steps/trio_nursery_step.py": """
        import trio

        config = {"name": "TrioNursery", "runtime": "trio", "triggers": [
            {"type": "queue", "topic": "trio.nursery", "config": {"maxRetries": 0, "timeout": 0.3}}]}

        async def handler(data, ctx):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 5)
                nursery.start_soon(trio.sleep, 5)
    """,
    "steps/sync_late_step.py": """
        import time

        config = {"name": "SyncLate", "triggers": [{"type": "http", "method": "GET", "path": "/sync-late", "timeout": 0.3}]}

        def handler(req, ctx):
            time.sleep(0.8)
            raise ValueError("failed after the 504")
    """,
    "steps/swallow_step.py": """
        import asyncio

        config = {"name": "Swallow", "triggers": [{"type": "http", "method": "GET", "path": "/swallow", "timeout": 0.5}]}

        async def handler(req, ctx):
            try:
                await asyncio.sleep(2)
            except asyncio.CancelledError:
                pass
            await asyncio.sleep(5)
            ctx.state.set("swallow", "finished", True)
            return {"status": 200, "body": {}}
    """,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory, "escapes", PROJECT) as srv:
        yield srv


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


def still_serving(client, server) -> None:
    assert client.get("/ok").json() == {"ok": True}
    assert server.proc.poll() is None


def logged(server, text: str) -> dict:
    return wait_for(lambda: next((r for r in server.logs() if text in r.get("msg", "")), None))


def failed_over_http(client, server, path: str) -> tuple[str, dict]:
    """GET ``path``, which must fail: its error id and the log record under it."""
    answer = client.get(path)
    assert answer.status_code == 500
    error_id = answer.json()["error_id"]
    return error_id, logged(server, error_id)


def dead_letters(client, step: str, count: int = 1) -> list[dict]:
    def found():
        letters = [d for d in client.get("/__edge/dlq").json()["dead_letters"] if d["step"] == step]
        return letters if len(letters) == count else None

    return wait_for(found, timeout=15)


def test_a_handler_that_cancels_its_own_task_fails_alone(client, server):
    # Before: HTTP answered 503 "edge stopped before the handler finished" with nothing logged;
    # on a queue the CancelledError reached trio's nursery and the server exited 1.
    error_id, record = failed_over_http(client, server, "/self-cancel")
    assert record["msg"] == f"SelfCancel failed: CancelledError (error_id {error_id})"
    assert client.post("/__edge/emit", json={"topic": "self.cancel", "data": {}}).status_code == 202
    [letter] = dead_letters(client, "SelfCancel")
    assert (letter["attempts"], letter["error"]) == (1, "CancelledError")
    still_serving(client, server)


def test_a_trio_handler_raising_a_cancelled_it_kept_fails_alone(client, server):
    # Before: HTTP answered 503 and the server exited 1 without saying why; on a queue the
    # subscription's worker died silently and later messages were never delivered.
    error_id, record = failed_over_http(client, server, "/stray-cancelled")
    assert record["msg"].startswith("StrayCancelled failed: Cancelled") and record["msg"].endswith(f"(error_id {error_id})")
    said = record["msg"][len("StrayCancelled failed: "):-len(f" (error_id {error_id})")]  # and trio's words
    for n in range(2):  # the second one too: the worker lives on
        assert client.post("/__edge/emit", json={"topic": "stray.cancelled", "data": {"n": n}}).status_code == 202
    letters = dead_letters(client, "StrayCancelled", 2)
    assert sorted((d["data"]["n"], d["attempts"], d["error"]) for d in letters) == [(0, 1, said), (1, 1, said)]
    still_serving(client, server)


def test_an_exception_whose_str_fails_is_still_the_handlers_failure(client, server):
    # Before: describing it raised inside the boundary; a queue message was redelivered about
    # once a second for ever (never counted, never dead-lettered), and HTTP logged it as
    # "edge failed on GET /bad-str", edge's fault, with no step.
    error_id, record = failed_over_http(client, server, "/bad-str")
    assert record["msg"] == f"BadStr failed: Unprintable: <str() of the exception failed> (error_id {error_id})"
    assert record["step"] == "BadStr"
    assert client.post("/__edge/emit", json={"topic": "bad.str", "data": {}}).status_code == 202
    [letter] = dead_letters(client, "BadStr")
    assert (letter["attempts"], letter["error"]) == (2, "Unprintable: <str() of the exception failed>")
    still_serving(client, server)


@pytest.mark.parametrize("how, said", [
    ("task", "a task or callback a handler started raised SystemExit: 9; edge goes on serving "
             "(a handler cannot stop the server)"),
    ("interrupt", "a task or callback a handler started raised KeyboardInterrupt; edge goes on serving "
                  "(a handler cannot stop the server)"),
    ("callback", "asyncio: Exception in callback"),
])
def test_what_a_handler_starts_on_the_loop_cannot_stop_the_server(client, server, how, said):
    # Before: SystemExit(9) in a task a handler started ended the process with exit code 9 (and
    # KeyboardInterrupt with 130), without a log line; a failing callback was printed by asyncio
    # as plain text on stderr.
    assert client.get(f"/exit/{how}").json() == {"started": how}
    record = logged(server, said)
    assert record["level"] == "error"
    if how == "callback":
        assert record["msg"].endswith(": ValueError: callback boom")
        assert "_boom" in record["data"]["traceback"]
    still_serving(client, server)


def test_an_http_timeout_answers_on_time_even_if_the_handler_swallows_its_cancellation(client, server):
    # Before: the 504 came only when the handler returned, 5.5 s after the request.
    started = time.monotonic()
    answer = client.get("/swallow")
    took = time.monotonic() - started
    assert answer.status_code == 504
    assert answer.json()["detail"] == "the handler did not answer within 0.5 s (its timeout)"
    assert took < 4.0  # the handler itself runs 5 s more
    # It ran on (as a sync handler's thread does) and what it did afterwards still happened.
    wait_for(lambda: client.get("/__edge/state", params={"group": "swallow", "key": "finished"}).json()
             .get("value") is True, timeout=15)
    still_serving(client, server)


def test_an_integer_parameter_of_thousands_of_digits_is_a_400(client):
    # Before: int() refused it past 4,300 digits with a ValueError: a 500.
    for path, name in (("/__edge/traces", "limit"), ("/__edge/logs", "limit"), ("/__edge/dlq", "after")):
        answer = client.get(path, params={name: "9" * 5000})
        assert answer.status_code == 400, path
        assert answer.json()["detail"] == f"{name}: expected an integer, got one of 5000 digits"


def test_an_error_does_not_echo_a_huge_input_back(client):
    # Before: the answer repeated the whole 100,000-character topic (and the 5,000 digits above).
    answer = client.post("/__edge/emit", json={"topic": "t" * 100_000, "data": {}})
    assert answer.status_code == 404
    assert answer.json()["detail"].startswith(f'no step subscribes to topic "{"t" * 57}..."; nothing was stored')
    assert len(answer.content) < 400


@pytest.mark.parametrize("how, caught", [("timeout", "TimeoutError"), ("wait_for", "TimeoutError"),
                                         ("taskgroup", ["ValueError"])])
def test_a_callee_cancelled_by_its_callers_asyncio_code_is_cancelled_not_failed(client, server, how, caught):
    # The caller's asyncio.timeout / wait_for / TaskGroup cancels the task ctx.invoke runs the
    # callee in: the caller must see its own cancellation come back (a review found the callee's
    # run taking it for the callee's failure, "HandlerError: CancelledError").
    answer = client.get(f"/invoke-under/{how}")
    assert answer.json() == {"caught": caught}
    spans = wait_for(lambda: [s for s in client.get("/__edge/traces", params={
        "trace_id": answer.headers["x-trace-id"]}).json()["spans"] if s["step"] == "SlowCallee"] or None)
    assert [(s["status"], s.get("error")) for s in spans] == [("error", "cancelled")]
    still_serving(client, server)


def test_a_trio_handlers_nursery_past_its_timeout_is_a_timeout(client, server):
    # Trio wraps the nursery's Cancelled in a group: it was taken for the handler's failure
    # ("BaseExceptionGroup: Exceptions from Trio nursery (2 sub-exceptions)").
    assert client.post("/__edge/emit", json={"topic": "trio.nursery", "data": {}}).status_code == 202
    [letter] = dead_letters(client, "TrioNursery")
    assert (letter["attempts"], letter["error"]) == (1, "TimeoutError: the handler did not finish within 0.3 s")


def test_integer_parameters_are_ascii_digits(client):
    # "²" is a digit to str.isdigit() and "--5" lost both dashes: int() then failed, a 500.
    for given in ("²", "--5", "1_000"):
        answer = client.get("/__edge/traces", params={"limit": given})
        assert (answer.status_code, answer.json()["detail"]) == (400, f"limit: expected an integer, got {given!r}")


def test_shutdown_waits_for_a_run_that_outlived_its_http_timeout(tmp_path):
    # The client had its 504; the run went on. Shutdown did not wait for it: its clean-up then
    # wrote to a closed store ("StoreError: ... closed/deleted/dropped object" after "edge stopped").
    project = write_project(tmp_path / "app", {"steps/late_step.py": """
        import asyncio

        config = {"name": "Late", "triggers": [{"type": "http", "method": "GET", "path": "/late", "timeout": 0.3}]}

        async def handler(req, ctx):
            try:
                await asyncio.sleep(2)
            except asyncio.CancelledError:
                pass
            await asyncio.sleep(1)
            await ctx.state.set("late", "cleaned-up", True)
            return {"status": 200, "body": {}}
    """})
    server = EdgeServer(project, tmp_path / "data", env={"EDGE_GRACE": "10"}).start()
    try:
        with server.client() as client:
            assert client.get("/late").status_code == 504
    finally:
        code = server.stop()
    assert code == 0
    assert "StoreError" not in server.output
    assert server.output.rstrip().splitlines()[-1].endswith('"msg":"edge stopped"}')
    store = Store.open(tmp_path / "data")
    try:
        assert StateStore(store).get_nowait("late", "cleaned-up") is True
    finally:
        store.close()


def test_a_sync_handler_that_fails_after_its_timeout_says_so(client, server):
    # Before: its thread ran on and its failure vanished (the span said "cancelled", no log line).
    assert client.get("/sync-late").status_code == 504
    record = logged(server, "SyncLate failed in the background")
    assert record["msg"].startswith("SyncLate failed in the background, after its timeout or its caller gave up: "
                                    "ValueError: failed after the 504 (error_id ")
    assert "failed after the 504" in record["data"]["traceback"]


STUBBORN = {
    "steps/stubborn_step.py": """
        import asyncio
        import time

        config = {"name": "Stubborn", "triggers": [{"type": "http", "method": "GET", "path": "/stubborn"},
                                                   {"type": "queue", "topic": "stubborn"}]}

        async def handler(input, ctx):  # goes on whatever cancels it, for a minute
            await ctx.state.set("stubborn", ctx.trigger.type, "started")
            ends = time.monotonic() + 60
            while time.monotonic() < ends:
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    pass
            await ctx.state.set("stubborn", "finished", True)
            return {"status": 200, "body": {"ignored": True}}
    """,
}


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_shutdown_is_bounded_when_handlers_ignore_their_cancellation(tmp_path, interface):
    # Before: SIGTERM waited for the HTTP handler (58 s; the client then got its 200), and a
    # queue handler ran on after "edge stopped", wrote to the closed store and broke the
    # queue's own code at exit ("must be called from async context"). Under Granian's ASGI
    # interface (apps with a canAccess stream or a streaming step) the 503 waited for the
    # handler too.
    project = write_project(tmp_path / "app", STUBBORN)
    server = EdgeServer(project, tmp_path / "data", env={"EDGE_GRACE": "1", "EDGE_SERVER_INTERFACE": interface}).start()
    answers = []
    with httpx.Client(base_url=server.url, timeout=90) as client:
        assert client.post("/__edge/emit", json={"topic": "stubborn", "data": {}}).status_code == 202
        asking = threading.Thread(target=lambda: answers.append(client.get("/stubborn")))
        asking.start()
        wait_for(lambda: client.get("/__edge/state", params={"group": "stubborn"}).json()["items"]
                 == {"queue": "started", "http": "started"}, timeout=15)
        started = time.monotonic()
        code = server.stop(sig=signal.SIGTERM, timeout=40)
        took = time.monotonic() - started
        asking.join(30)
    assert code == 0
    assert took < 20  # grace 1 s, then 5 s for the cancelled to end, then 5 s for what is left
    assert [(a.status_code, a.json()["detail"]) for a in answers] == [
        (503, "edge stopped before the handler finished; retry")]
    assert "request(s) went on after being cancelled; answered 503" in server.output
    for broken in ("StoreError", "must be called from async context", "Traceback"):
        assert broken not in server.output
    assert server.output.rstrip().splitlines()[-1].endswith('"msg":"edge stopped"}')


def test_a_pattern_that_backtracks_without_end_is_a_400_and_the_server_serves_on(client, server):
    # A tester: the match held the loop thread for good; every other request, and SIGTERM, waited.
    answer = client.post("/backtracking", json={"s": "a" * 60 + "!"})
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert error["path"] == "$"
    assert error["message"].startswith('must match pattern "^(a|aa)+$"; matching "aaaa')
    assert error["message"].endswith(" gave up after 50 ms (the pattern backtracks too much: simplify it, "
                                     "or bound the length with maxLength)")
    assert client.post("/backtracking", json={"s": "aaa"}).json() == {"s": "aaa"}
    still_serving(client, server)
