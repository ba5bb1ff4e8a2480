"""A stream socket without a subscription is closed after the idle timeout (edge/server/ws.py),
on a virtual clock: the socket's real handler (``StreamSockets.serve_client``) with a real
runtime's streams, fed frames by the test, on asyncio's own loop whose clock the test moves.
tests/test_ws_idle.py drives the same through a real server and real WebSocket clients."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from edge.runtime import Runtime
from edge.server.ws import CLOSE_GRACE, POLICY, Client, StreamSockets
from edge.settings import Settings
from edge.steps.discovery import discover

from .asyncio_clock import VirtualClockLoop, until
from .conftest import write_project

IDLE = ("this socket held no subscription for 30 s (EDGE_IDLE_TIMEOUT); join within 30 s of connecting "
        "or of leaving the last subscription")


class Proto:
    """What Granian's WebSocket protocol is to the handler here: the close it was asked for."""

    def __init__(self):
        self.closed_with = None

    def close(self, code):
        self.closed_with = code


@pytest.fixture
def socket(tmp_path):
    """``(loop, client, inbox, sent, proto, task)``: one socket being served on a virtual clock."""
    project = write_project(tmp_path / "app", {
        "steps/live_stream.py": 'config = {"name": "live", "baseConfig": {"storageType": "memory"}}\n'})
    settings = Settings.from_env(env={}, dir=project, data_dir=tmp_path / "data")
    runtime = Runtime.open(settings, discover(project), out=io.StringIO())
    loop = VirtualClockLoop()
    sockets = StreamSockets(runtime.streams, runtime.tracer, idle_timeout=30)
    client = Client(sockets, Proto(), None, peer="192.0.2.7:50000")
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []
    client.proto.reading = True  # False: a peer that reads nothing (a send never returns)

    async def send(frame):
        if not client.proto.reading:
            await loop.create_future()
        sent.append(json.loads(frame))

    task = loop.create_task(sockets.serve_client(client, inbox.get, send))
    yield loop, client, inbox, sent, task
    if not task.done():
        inbox.put_nowait(None)
        loop.run_until_complete(task)
    loop.close()
    runtime.close()


def errors(sent):
    return [f["event"]["event"]["data"] for f in sent if f.get("event", {}).get("event", {}).get("type") == "error"]


def frame(kind, sub="s1", group="g"):
    return json.dumps({"type": kind, "data": {"streamName": "live", "groupId": group, "subscriptionId": sub}})


async def at(loop, seconds):
    """Move the clock to ``seconds`` after the socket connected (1000.0) and let due timers run."""
    loop.now = 1000.0 + seconds
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_socket_that_never_joins_gets_the_event_at_the_timeout_then_the_close(socket):
    loop, client, inbox, sent, task = socket

    async def main():
        await at(loop, 29.9)
        assert (errors(sent), client.proto.closed_with) == ([], None)
        await at(loop, 30)
        await until(lambda: errors(sent))
        assert errors(sent) == [{"code": "IDLE_TIMEOUT", "message": IDLE}]  # the event, then at once
        await until(lambda: client.proto.closed_with is not None)
        assert client.proto.closed_with == POLICY  # the close frame, 1008
        await until(task.done)
        assert client.sockets.closed_idle == 1

    loop.run_until_complete(main())


def test_a_socket_whose_peer_reads_nothing_is_closed_a_grace_after_the_event(socket):
    loop, client, inbox, sent, task = socket
    client.proto.reading = False

    async def main():
        await at(loop, 30)
        await until(lambda: client.closing)  # the event is queued; it cannot go out
        await at(loop, 30 + CLOSE_GRACE - 0.1)
        assert client.proto.closed_with is None
        await at(loop, 30 + CLOSE_GRACE)
        await until(lambda: client.proto.closed_with is not None)
        assert client.proto.closed_with == POLICY
        await until(task.done)

    loop.run_until_complete(main())


def test_a_socket_with_a_subscription_stays_however_quiet_and_the_clock_restarts_when_it_leaves(socket):
    loop, client, inbox, sent, task = socket

    async def main():
        await at(loop, 29)
        inbox.put_nowait(frame("join"))
        await until(lambda: sent)
        assert sent[0]["event"] == {"type": "sync", "data": []}
        await at(loop, 7 * 24 * 3600)  # a week without a frame: it holds a subscription
        assert (errors(sent), client.proto.closed_with) == ([], None)
        inbox.put_nowait(frame("leave"))
        await until(lambda: not client.subs)
        left = 7 * 24 * 3600
        await at(loop, left + 29.9)
        assert errors(sent) == []
        await at(loop, left + 30)
        await until(lambda: errors(sent))
        assert errors(sent) == [{"code": "IDLE_TIMEOUT", "message": IDLE}]

    loop.run_until_complete(main())
