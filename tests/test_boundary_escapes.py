"""What a handler can do that got past the boundary before (a tester's findings): cancel its
own task, raise a trio.Cancelled it kept, raise an exception whose str() fails, start a task
that raises SystemExit, swallow the cancellation of its HTTP timeout. Each is that
invocation's outcome; the server goes on serving. Real server, real sockets."""

from __future__ import annotations

import time

import pytest

from .conftest import served, wait_for

PROJECT = {
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


def dead_letter(client, step: str) -> dict:
    return wait_for(lambda: next((d for d in client.get("/__edge/dlq").json()["dead_letters"]
                                  if d["step"] == step), None), timeout=15)


def test_a_handler_that_cancels_its_own_task_fails_alone(client, server):
    # Before: HTTP answered 503 "edge stopped before the handler finished" with nothing logged;
    # on a queue the CancelledError reached trio's nursery and the server exited 1.
    answer = client.get("/self-cancel")
    assert answer.status_code == 500
    error_id = answer.json()["error_id"]
    assert logged(server, error_id)["msg"] == f"SelfCancel failed: CancelledError (error_id {error_id})"
    assert client.post("/__edge/emit", json={"topic": "self.cancel", "data": {}}).status_code == 202
    letter = dead_letter(client, "SelfCancel")
    assert (letter["attempts"], letter["error"]) == (1, "CancelledError")
    still_serving(client, server)


def test_a_trio_handler_raising_a_cancelled_it_kept_fails_alone(client, server):
    # Before: HTTP answered 503 and the server exited 1 without saying why; on a queue the
    # subscription's worker died silently and later messages were never delivered.
    answer = client.get("/stray-cancelled")
    assert answer.status_code == 500
    error_id = answer.json()["error_id"]
    said = "Cancelled: cancelled due to deadline"  # trio's words for the scope it came from
    assert logged(server, error_id)["msg"] == f"StrayCancelled failed: {said} (error_id {error_id})"
    for n in range(2):  # the second one too: the worker lives on
        assert client.post("/__edge/emit", json={"topic": "stray.cancelled", "data": {"n": n}}).status_code == 202
    letters = wait_for(lambda: (found := [d for d in client.get("/__edge/dlq").json()["dead_letters"]
                                          if d["step"] == "StrayCancelled"]) and len(found) == 2 and found, timeout=15)
    assert sorted((d["data"]["n"], d["attempts"], d["error"]) for d in letters) == [(0, 1, said), (1, 1, said)]
    still_serving(client, server)


def test_an_exception_whose_str_fails_is_still_the_handlers_failure(client, server):
    # Before: describing it raised inside the boundary; a queue message was redelivered about
    # once a second for ever (never counted, never dead-lettered), and HTTP logged it as
    # "edge failed on GET /bad-str", edge's fault, with no step.
    answer = client.get("/bad-str")
    assert answer.status_code == 500
    error_id = answer.json()["error_id"]
    record = logged(server, error_id)
    assert record["msg"] == f"BadStr failed: Unprintable: <str() of the exception failed> (error_id {error_id})"
    assert record["step"] == "BadStr"
    assert client.post("/__edge/emit", json={"topic": "bad.str", "data": {}}).status_code == 202
    letter = dead_letter(client, "BadStr")
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
