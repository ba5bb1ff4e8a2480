"""The intake's deadlines on a virtual clock (edge.server.intake): a body is given
``--idle-timeout`` plus one second per 16 KiB it declares, and the sweep that runs once a
second while bodies are being read cancels the request that is past it, not one second
sooner. tests/test_intake.py drives the same code through a real server and real sockets.

The loop is asyncio's own, with its clock replaced by one the test moves: the intake reads
its deadlines off the loop's clock, and the loop fires its timers by the same clock, so a
30-second deadline is tried in microseconds, and "not yet" is asserted after the sweep has
run (a signal), not after a short sleep."""

from __future__ import annotations

import asyncio

import pytest

from edge.server.intake import MIN_RATE, SWEEP_INTERVAL, BodyIntake

from .asyncio_clock import VirtualClockLoop, until


@pytest.fixture
def run():
    loop = VirtualClockLoop()
    yield loop.run_until_complete
    loop.close()


async def sweeps(intake: BodyIntake, n: int) -> None:
    """Move the clock past the next ``n`` sweeps, waiting for each to run (its next timer is
    then armed past the clock, or none is when no body is left)."""
    loop = asyncio.get_running_loop()
    for _ in range(n):
        due = intake._sweep.when()
        loop.now = due
        await until(lambda: intake._sweep is None or intake._sweep.when() > due)


async def read(intake: BodyIntake, body: asyncio.Future, size: int, client: str = "192.0.2.7:50000"):
    """What the request path does around a body read (``EdgeApp._read_body``): the body, or
    the 408 once the sweep found it late."""
    task = asyncio.current_task()
    assert intake.begin(task, client, size) is None
    try:
        return await body
    except asyncio.CancelledError:
        if not intake.late(task):
            raise
        return intake.timed_out(size, chunked=False)
    finally:
        intake.end(task, client, size)


def test_a_body_is_cancelled_by_the_first_sweep_past_its_deadline_and_answers_408(run):
    async def main():
        intake = BodyIntake(idle_timeout=30, max_body=1 << 20)
        size = 64 * 1024  # 4 s of grace at MIN_RATE: 34 s in all
        assert size / MIN_RATE == 4
        reading = asyncio.get_running_loop().create_future()  # a body that never arrives
        task = asyncio.ensure_future(read(intake, reading, size))
        await asyncio.sleep(0)
        assert (intake.bodies, intake.receiving) == (1, size)
        await sweeps(intake, 33)  # 33 s: one second short of the deadline
        assert not task.done()
        await sweeps(intake, 1)  # 34 s
        await until(task.done)
        status, headers, body = task.result()
        assert (status, ("connection", "close") in headers, body) == (
            408, True, b'{"error":"Request Timeout","detail":"the request body did not arrive within 34 s '
                       b'(30 s, then at least 16 KiB/s for its 65536 bytes); the connection is closed"}')
        assert (intake.bodies, intake.receiving) == (0, 0)
        await sweeps(intake, 1)  # the next finds no body, and arms no other
        assert intake._sweep is None

    run(main())


def test_a_body_that_arrives_in_time_is_not_cancelled_and_the_sweep_stops(run):
    async def main():
        intake = BodyIntake(idle_timeout=30, max_body=1 << 20)
        arrived = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(read(intake, arrived, 100))
        await asyncio.sleep(0)
        await sweeps(intake, 29)
        arrived.set_result(b"the body")
        await until(task.done)
        assert task.result() == b"the body"
        assert intake.late(task) is False
        assert intake.bodies == 0
        await sweeps(intake, 1)  # the next finds no body, and arms no other
        assert intake._sweep is None

    run(main())


def test_the_sweep_runs_once_a_second_for_any_number_of_bodies(run):
    async def main():
        intake = BodyIntake(idle_timeout=1, max_body=1 << 20)
        never = asyncio.get_running_loop().create_future()
        tasks = [asyncio.ensure_future(read(intake, never, 1024, f"192.0.2.{i % 200}:5000")) for i in range(1000)]
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        assert (loop.sweeps_armed, intake._sweep.when()) == (1, loop.now + SWEEP_INTERVAL)  # one timer for all
        await sweeps(intake, 2)  # 1 s of grace + 1024/16384 s: due at the second sweep
        assert loop.sweeps_armed == 3  # one more by each sweep (bodies were left), none per body
        await until(lambda: all(t.done() for t in tasks))
        assert [t.result()[0] for t in tasks] == [408] * 1000
        assert (intake.bodies, intake.receiving) == (0, 0)
        await sweeps(intake, 1)
        assert intake._sweep is None

    run(main())
