"""Cron: parsing, DST maths, plan(), and the loop on trio's MockClock with a driven wall clock."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from functools import partial
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing
from croniter import croniter

from edge._cron import (
    GRACE,
    CronJob,
    CronLoop,
    CronSchedule,
    local_timezone,
    next_fire_after,
    plan,
    prev_fire_at_or_before,
    serve_cron,
)
from edge.errors import ConfigError

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
WHERE = "steps/cleanup_step.py: triggers[0]"


def sched(expression: str, tz: str | None = "Europe/Berlin") -> CronSchedule:
    return CronSchedule.parse(expression, tz, where=WHERE)


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def slots_between(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """Every fire instant in [start, end) by repeated next_fire_after."""
    out, t = [], start - timedelta(microseconds=1)
    while (t := next_fire_after(schedule, t)) is not None and t < end:
        out.append(t)
    return out


def local_day(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), BERLIN)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), BERLIN)
    return start.astimezone(UTC), end.astimezone(UTC)


def shown(moments: list[datetime]) -> list[str]:
    return [m.astimezone(BERLIN).strftime("%H:%M:%S%z") for m in moments]


# -- parsing --------------------------------------------------------------------------------

def test_five_fields_are_minute_first():
    s = sched("30 2 * * *", "UTC")
    assert next_fire_after(s, datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 2, 30, tzinfo=UTC)


def test_six_fields_are_seconds_first_unlike_croniter():
    s = sched("5 10 2 * * *", "UTC")
    assert next_fire_after(s, datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 2, 10, 5, tzinfo=UTC)
    # croniter alone reads the same text with seconds last: 10:05 on the 2nd.
    assert croniter("5 10 2 * * *", datetime(2026, 1, 1)).get_next(datetime) == datetime(2026, 1, 2, 10, 5)


def test_seven_fields_have_the_year_last():
    s = sched("0 0 12 1 1 * 2030", "UTC")
    first = next_fire_after(s, datetime(2026, 6, 1, tzinfo=UTC))
    assert first == datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert next_fire_after(s, first) is None  # the year is over: never again
    every = sched("*/20 * * * * * *", "UTC")
    assert slots_between(every, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, tzinfo=UTC)) == [
        datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in (0, 20, 40)
    ]


def test_a_year_in_the_past_never_fires():
    s = sched("0 0 0 1 1 * 2020", "UTC")
    assert next_fire_after(s, datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert plan(s, None, datetime(2026, 1, 1, tzinfo=UTC)).next_slot is None


@pytest.mark.parametrize("expression", [
    "*/7 * * * *", "0 9-17/2 * * mon-fri", "0 0 L * *", "0 0 * * fri#2", "0 0 15W * *",
    "30 0 1,15 * 5", "*/13 */7 * * * *", "0 0 0 29 2 * *", "0 30 6 ? * sun 2026-2028",
])
def test_in_utc_slots_match_croniter(expression):
    s = sched(expression, "UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    it = croniter(expression, start, second_at_beginning=len(expression.split()) > 5)
    t, ours, theirs = start, [], []
    while len(ours) < 200 and (t := next_fire_after(s, t)) is not None:
        ours.append(t)
        theirs.append(it.get_next(datetime))
    assert ours == theirs and len(ours) >= 100


def test_bad_field_count_shows_the_accepted_forms():
    with pytest.raises(ConfigError) as e:
        sched("0 3 * *")
    assert str(e.value) == (
        'steps/cleanup_step.py: triggers[0].expression: "0 3 * *" has 4 fields; '
        'use 5 fields "minute hour day month weekday" (e.g. "30 2 * * *"), '
        '6 with seconds first "second minute hour day month weekday" (e.g. "*/10 * * * * *") '
        'or 7 with the year last "second minute hour day month weekday year" (e.g. "0 30 2 * * * 2027")'
    )


@pytest.mark.parametrize("expression, message", [
    pytest.param("0 61 * * * *", 'minute "61" is not valid (0-59); use 5 fields "minute hour day month weekday"',
                 id="named-with-its-range"),
    # croniter's own 6-field order puts seconds last; here the 6th field is the weekday.
    pytest.param("*/5 * * * * 30", 'weekday "30" is not valid (0-7 or SUN-SAT, 0 and 7 are Sunday; FRI#2, L5); '
                 "use 5 fields", id="seconds-written-last-caught-by-the-weekday"),
])
def test_bad_field_is_named(expression, message):
    with pytest.raises(ConfigError) as e:
        sched(expression)
    assert str(e.value).startswith(f'steps/cleanup_step.py: triggers[0].expression: "{expression}": {message}')


def test_a_date_that_never_exists_is_refused():
    with pytest.raises(ConfigError) as e:
        sched("0 0 30 2 *")
    assert str(e.value) == (
        'steps/cleanup_step.py: triggers[0].expression: "0 0 30 2 *" never matches: '
        'no date from 1970 to 2099 fits day "30" and month "2"; check the day, month and year fields'
    )
    with pytest.raises(ConfigError) as e:
        sched("0 0 0 31 4 * 2030")
    assert str(e.value) == (
        'steps/cleanup_step.py: triggers[0].expression: "0 0 0 31 4 * 2030" never matches: '
        'no date from 1970 to 2099 fits day "31", month "4" and year "2030"; check the day, month and year fields'
    )


def test_macros_hashes_and_non_strings_are_refused():
    with pytest.raises(ConfigError) as e:
        sched("@daily")
    assert str(e.value) == (
        'steps/cleanup_step.py: triggers[0].expression: macros are not supported, got "@daily"; write "0 0 * * *"'
    )
    with pytest.raises(ConfigError) as e:
        sched("H 3 * * *")
    assert str(e.value) == (
        'steps/cleanup_step.py: triggers[0].expression: "H 3 * * *": minute "H": hashed (H) and random (R) '
        'values are not supported; write the minute as a number (0-59)'
    )
    with pytest.raises(ConfigError) as e:
        CronSchedule.parse(5, None, where="steps/old_step.py: config", expression_key="cron")
    assert str(e.value) == 'steps/old_step.py: config.cron: expected a cron expression such as "30 2 * * *", got 5'


def test_unknown_time_zone_suggests_the_nearest():
    with pytest.raises(ConfigError) as e:
        sched("0 3 * * *", "Europe/Berln")
    assert str(e.value) == (
        'steps/cleanup_step.py: triggers[0].timezone: unknown time zone "Europe/Berln"; did you mean "Europe/Berlin"?'
    )
    with pytest.raises(ConfigError) as e:  # the case wrong: the zone it names (no suggestion before)
        sched("0 3 * * *", "utc")
    assert str(e.value) == 'steps/cleanup_step.py: triggers[0].timezone: unknown time zone "utc"; did you mean "UTC"?'
    with pytest.raises(ConfigError) as e:
        sched("0 3 * * *", "+01:00")
    assert str(e.value) == (
        'steps/cleanup_step.py: triggers[0].timezone: unknown time zone "+01:00"; '
        'use an IANA name such as "Europe/Berlin" or "UTC"'
    )


def test_local_timezone_sources(tmp_path, monkeypatch):
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/America/New_York")
    tzfile = tmp_path / "timezone"
    tzfile.write_text("Asia/Tokyo\n")
    missing = str(tmp_path / "missing")
    assert local_timezone({"TZ": ":Europe/Berlin"}, str(link), str(tzfile)) == "Europe/Berlin"
    assert local_timezone({"TZ": "CET-1CEST,M3.5.0,M10.5.0/3"}, str(link), str(tzfile)) == "America/New_York"
    assert local_timezone({}, missing, str(tzfile)) == "Asia/Tokyo"
    assert local_timezone({}, missing, missing) == "UTC"
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    tokyo = sched("0 3 * * *", None)
    assert tokyo.timezone == "Asia/Tokyo"
    # 03:00 in Tokyo (UTC+9) is 18:00 UTC the day before.
    assert next_fire_after(tokyo, datetime(2026, 1, 1, 12, tzinfo=timezone.utc)) == datetime(
        2026, 1, 1, 18, tzinfo=timezone.utc)


# -- DST ------------------------------------------------------------------------------------

def test_spring_forward_day_in_berlin():
    start, end = local_day(date(2026, 3, 29))  # 02:00 CET -> 03:00 CEST
    assert shown(slots_between(sched("30 2 * * *"), start, end)) == ["03:00:00+0200"]
    assert shown(slots_between(sched("*/15 2 * * *"), start, end)) == ["03:00:00+0200"]
    assert shown(slots_between(sched("0 * * * *"), start, end))[:4] == [
        "00:00:00+0100", "01:00:00+0100", "03:00:00+0200", "04:00:00+0200"]
    assert len(slots_between(sched("0 * * * *"), start, end)) == 23
    assert len(slots_between(sched("*/15 * * * *"), start, end)) == 92
    assert len(slots_between(sched("* * * * *"), start, end)) == 23 * 60


def test_fall_back_day_in_berlin():
    start, end = local_day(date(2026, 10, 25))  # 03:00 CEST -> 02:00 CET
    assert shown(slots_between(sched("30 2 * * *"), start, end)) == ["02:30:00+0200"]
    assert shown(slots_between(sched("0 30 2 * * *"), start, end)) == ["02:30:00+0200"]
    assert shown(slots_between(sched("*/15 2 * * *"), start, end)) == [
        "02:00:00+0200", "02:15:00+0200", "02:30:00+0200", "02:45:00+0200"]
    assert shown(slots_between(sched("0 * * * *"), start, end))[1:5] == [
        "01:00:00+0200", "02:00:00+0200", "02:00:00+0100", "03:00:00+0100"]
    assert len(slots_between(sched("0 * * * *"), start, end)) == 25
    assert len(slots_between(sched("*/15 * * * *"), start, end)) == 100
    # croniter with a zone-aware start fires the daily job twice that day:
    it = croniter("30 2 * * *", berlin(2026, 10, 24, 12))
    assert [it.get_next(datetime).hour for _ in range(2)] == [2, 2]


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 * * * *", "*/15 2 * * *", "*/20 * * * *", "45 1-3 * * *"])
def test_prev_agrees_with_next_across_dst(expression):
    s = sched(expression)
    for day in (date(2026, 3, 29), date(2026, 10, 25)):
        start, end = local_day(day)
        slots = slots_between(s, start - timedelta(days=1), end)
        t = start
        while t < end:
            expected = max(x for x in slots if x <= t)
            assert prev_fire_at_or_before(s, t) == expected, t
            t += timedelta(minutes=5)


def brute_force(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The documented DST rules, applied minute by minute to every UTC minute in [start, end)."""
    every_hour = CronSchedule.parse(expression, zone.key, where="x").every_hour
    walls, it = set(), croniter(expression, (start - timedelta(days=1)).astimezone(zone).replace(tzinfo=None))
    while (w := it.get_next(datetime)) < end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1):
        walls.add(w)
    out, u, before = [], start, None
    while u < end:
        local = u.astimezone(zone)
        wall = local.replace(tzinfo=None, fold=0)
        if before is not None and local.utcoffset() > before.utcoffset():  # a gap ended at u
            skipped = before.replace(tzinfo=None) + timedelta(minutes=1)
            if any(skipped + timedelta(minutes=i) in walls for i in range(int((wall - skipped).total_seconds() // 60))):
                out.append(u)
        if wall in walls and (local.fold == 0 or every_hour) and u not in out:
            out.append(u)
        before, u = local, u + timedelta(minutes=1)
    return out


@pytest.mark.parametrize("zone, day", [
    ("Europe/Berlin", date(2026, 3, 29)), ("Europe/Berlin", date(2026, 10, 25)),
    ("Australia/Lord_Howe", date(2026, 4, 5)), ("Australia/Lord_Howe", date(2026, 10, 4)),  # 30-minute shifts
    ("America/Santiago", date(2026, 4, 5)), ("America/Santiago", date(2026, 9, 6)),  # changes at midnight
])
def test_next_and_prev_match_a_brute_force_reference(zone, day):
    tz = ZoneInfo(zone)
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=2), datetime.min.time(), tz).astimezone(UTC)
    for expression in ("30 2 * * *", "0 * * * *", "*/15 2 * * *", "15,45 0-3 * * *", "30 23 * * *", "*/7 * * * *"):
        s = CronSchedule.parse(expression, zone, where="x")
        expected = brute_force(expression, tz, start, end)
        assert slots_between(s, start, end) == expected, expression
        t = start + timedelta(hours=4)
        while t < end:
            before = [x for x in expected if x <= t]
            if before:
                assert prev_fire_at_or_before(s, t) == before[-1], (expression, t)
            else:
                assert prev_fire_at_or_before(s, t) < start
            t += timedelta(minutes=7)


# -- plan() ---------------------------------------------------------------------------------

DAILY = sched("0 3 * * *")
SLOT = berlin(2026, 6, 1, 3).astimezone(UTC)
YESTERDAY = SLOT - timedelta(days=1)


def test_plan_fires_on_time_and_within_grace_only():
    assert plan(DAILY, YESTERDAY, SLOT).fire_slot == SLOT
    assert plan(DAILY, YESTERDAY, SLOT + GRACE).fire_slot == SLOT
    late = plan(DAILY, YESTERDAY, SLOT + GRACE + timedelta(seconds=1))
    assert (late.fire_slot, late.missed_slot, late.next_slot) == (None, SLOT, SLOT + timedelta(days=1))


def test_plan_names_the_slots_missed_before_an_on_time_one():
    # A job every 10 s, down from 10:00:00 to 10:00:29: 10:00:30 is on time, 10:00:10 and
    # 10:00:20 were missed (and were not logged: the on-time slot hid them).
    every10 = sched("*/10 * * * * *")
    last = berlin(2026, 6, 1, 10, 0, 0).astimezone(UTC)
    decision = plan(every10, last, last + timedelta(seconds=30, milliseconds=400))
    assert (decision.fire_slot, decision.missed_slot) == (last + timedelta(seconds=30), last + timedelta(seconds=20))
    on_time = plan(every10, last, last + timedelta(seconds=10, milliseconds=400))  # nothing missed
    assert (on_time.fire_slot, on_time.missed_slot) == (last + timedelta(seconds=10), None)


async def test_a_restart_after_a_downtime_logs_the_missed_slots_though_the_next_is_on_time(autojump_clock, caplog):
    persisted = {"s#0": berlin(2026, 6, 1, 10, 0, 0), "o#0": berlin(2026, 6, 1, 10, 0, 0)}
    h = Harness(berlin(2026, 6, 1, 10, 0, 29, 500000), persisted)  # down for 29 s
    await run_for(h, [job("s#0", "* * * * * *"), job("o#0", "* * * * * *", "once")], 0.9)
    assert shown(h.slots("s#0")) == ["10:00:29+0200", "10:00:30+0200"]
    assert caplog.text.count("missed slots up to") == 2  # once each, at the restart
    assert 'cron s#0: missed slots up to 2026-06-01T10:00:28+02:00 skipped (missed="skip")' in caplog.text
    assert ('cron o#0: missed slots up to 2026-06-01T10:00:28+02:00; the run of slot 2026-06-01T10:00:29+02:00 '
            'stands for them (missed="once")') in caplog.text


def test_plan_once_fires_one_run_for_all_missed_slots():
    now = SLOT + timedelta(days=3, hours=5)  # down for three days and a bit
    decision = plan(DAILY, YESTERDAY, now, "once")
    assert decision.fire_slot == SLOT + timedelta(days=3)
    assert decision.next_slot == SLOT + timedelta(days=4)
    assert plan(DAILY, decision.fire_slot, now + timedelta(seconds=1), "once").fire_slot is None


def test_plan_on_first_start_catches_up_nothing():
    assert plan(DAILY, None, SLOT + timedelta(hours=1), "once") == plan(DAILY, None, SLOT + timedelta(hours=1))
    assert plan(DAILY, None, SLOT + timedelta(hours=1)).fire_slot is None


def test_plan_never_refires_a_slot_at_or_before_last_fired():
    back = plan(DAILY, SLOT, SLOT - timedelta(minutes=5), "once")  # clock went back 5 minutes
    assert back.fire_slot is None and back.next_slot == SLOT + timedelta(days=1)
    years = plan(DAILY, SLOT, SLOT - timedelta(days=800), "once")
    assert years.fire_slot is None and years.next_slot == SLOT + timedelta(days=1)


# -- the loop -------------------------------------------------------------------------------

class WallClock:
    """Wall time that moves with trio's (mock) clock, plus jumps the test injects."""

    def __init__(self, start: datetime):
        self.start = start.astimezone(UTC)
        self.t0 = trio.current_time()
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=trio.current_time() - self.t0) + self.offset

    def jump(self, delta: timedelta) -> None:
        self.offset += delta


class Harness:
    """Runs serve_cron against an in-memory store and records every dispatch."""

    def __init__(self, start: datetime, persisted: dict | None = None, run_seconds: float = 0):
        self.wall = WallClock(start)
        self.persisted = {} if persisted is None else persisted
        self.fired: list[tuple[str, datetime, datetime]] = []  # key, slot, wall at dispatch
        self.fired_at: list[float] = []  # trio time at dispatch
        self.unsaved: list[datetime] = []  # slots dispatched before save_last had stored them
        self.run_seconds = run_seconds
        self.fail_slots: set[datetime] = set()

    async def dispatch(self, job: CronJob, slot: datetime) -> None:
        self.fired.append((job.key, slot, self.wall()))
        self.fired_at.append(trio.current_time())
        if self.persisted.get(job.key) != slot:
            self.unsaved.append(slot)
        if slot in self.fail_slots:
            raise RuntimeError("handler failed")
        await trio.sleep(self.run_seconds)

    def load_last(self, key: str) -> datetime | None:
        return self.persisted.get(key)

    async def save_last(self, key: str, slot: datetime) -> None:
        await trio.lowlevel.checkpoint()
        self.persisted[key] = slot

    async def start(self, nursery: trio.Nursery, jobs: list[CronJob], **kw) -> CronLoop:
        return await nursery.start(partial(
            serve_cron, jobs, dispatch=self.dispatch, load_last=self.load_last, save_last=self.save_last,
            wall_clock=self.wall, **kw))

    def slots(self, key: str) -> list[datetime]:
        return [slot for k, slot, _ in self.fired if k == key]


def job(key: str, expression: str, missed: str = "skip", tz: str = "Europe/Berlin", **kw) -> CronJob:
    return CronJob(key, CronSchedule.parse(expression, tz, where=key), missed, **kw)


async def run_for(harness: Harness, jobs: list[CronJob], seconds: float, **kw) -> CronLoop:
    async with trio.open_nursery() as nursery:
        loop = await harness.start(nursery, jobs, **kw)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return loop


async def test_a_day_of_several_schedules_counted_exactly(autojump_clock):
    start = berlin(2026, 6, 1)
    h = Harness(start)
    jobs = [job("half#0", "*/30 * * * * *"), job("quarter#0", "*/15 * * * *"),
            job("hourly#0", "0 * * * *"), job("daily#0", "0 3 * * *")]
    # One-second slices cost ~15 us of trio scheduling each on a MockClock; a long max_sleep
    # keeps this day fast. test_a_jump_is_noticed_within_a_second covers the 1 s slices.
    await run_for(h, jobs, 86400 - 0.5, max_sleep=3600)
    assert len(h.slots("half#0")) == 2880
    assert h.slots("quarter#0") == [start + timedelta(minutes=15 * i) for i in range(96)]
    assert len(h.slots("hourly#0")) == 24
    assert h.slots("daily#0") == [berlin(2026, 6, 1, 3)]
    # Every run starts exactly at its slot on the wall clock (no lateness on a mock clock).
    assert all(slot == wall for _, slot, wall in h.fired)
    assert h.persisted["daily#0"] == berlin(2026, 6, 1, 3)
    assert h.unsaved == []  # each slot was persisted before its run started


async def test_an_hour_of_an_every_second_schedule(autojump_clock):
    h = Harness(berlin(2026, 6, 1, 12))
    await run_for(h, [job("sec#0", "* * * * * *")], 3600 - 0.5)
    assert h.slots("sec#0") == [berlin(2026, 6, 1, 12) + timedelta(seconds=i) for i in range(3600)]
    assert all(slot == wall for _, slot, wall in h.fired)


async def test_spring_forward_day_through_the_loop(autojump_clock):
    start, end = local_day(date(2026, 3, 29))
    h = Harness(start)
    jobs = [job("daily#0", "30 2 * * *"), job("hourly#0", "0 * * * *")]
    await run_for(h, jobs, (end - start).total_seconds() - 0.5, max_sleep=60)
    assert shown(h.slots("daily#0")) == ["03:00:00+0200"]
    assert len(h.slots("hourly#0")) == 23


async def test_fall_back_day_through_the_loop(autojump_clock):
    start, end = local_day(date(2026, 10, 25))
    h = Harness(start)
    jobs = [job("daily#0", "30 2 * * *"), job("hourly#0", "0 * * * *")]
    await run_for(h, jobs, (end - start).total_seconds() - 0.5, max_sleep=60)
    assert shown(h.slots("daily#0")) == ["02:30:00+0200"]
    assert len(h.slots("hourly#0")) == 25


@pytest.mark.parametrize("missed, expected", [("skip", []), ("once", ["10:45:00+0200"])])
async def test_clock_jumps_forward_minutes(autojump_clock, missed, expected):
    h = Harness(berlin(2026, 6, 1, 10, 7), persisted={"q#0": berlin(2026, 6, 1, 10)})
    async with trio.open_nursery() as nursery:
        await h.start(nursery, [job("q#0", "*/15 * * * *", missed)])
        await trio.sleep(60.25)  # 10:08:00.25 (off the loop's whole-second ticks)
        h.wall.jump(timedelta(minutes=40))  # 10:48: 10:15, 10:30 and 10:45 passed unseen
        await trio.sleep(60 * 20)  # until 11:08
        nursery.cancel_scope.cancel()
    assert shown(h.slots("q#0")) == expected + ["11:00:00+0200"]


@pytest.mark.parametrize("missed, expected", [("skip", 0), ("once", 1)])
async def test_clock_jumps_forward_years_without_a_burst(autojump_clock, missed, expected, caplog):
    # A Pi booted with a stale clock: NTP moves it on by two years.
    h = Harness(datetime(2024, 1, 1, 12, tzinfo=UTC), persisted={"sec#0": datetime(2024, 1, 1, 11, tzinfo=UTC)})
    async with trio.open_nursery() as nursery:
        await h.start(nursery, [job("sec#0", "0 * * * * *", missed, tz="UTC")])
        await trio.sleep(0.5)
        h.wall.jump(timedelta(days=730, seconds=30))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert h.slots("sec#0") == [datetime(2024, 1, 1, 12, tzinfo=UTC)] + [
        datetime(2025, 12, 31, 12, 0, tzinfo=UTC)] * expected
    assert "cron: the wall clock jumped forward by 730 days, 0:00:30" in caplog.text


async def test_clock_set_back_minutes_refires_only_schedules_faster_than_the_step(autojump_clock, caplog):
    # Set back 5 minutes just after 11:00 fired: for the every-minute job that is a corrected
    # clock (5 minutes is more than half its one-minute interval), so it goes on firing once a
    # minute by real time; the daily 11:00 ran 5 minutes ago in real time and does not run again.
    h = Harness(berlin(2026, 6, 1, 10, 59, 30))
    async with trio.open_nursery() as nursery:
        await h.start(nursery, [job("m#0", "* * * * *", "once"), job("d#0", "0 11 * * *", "once")])
        await trio.sleep(60.25)  # 11:00:30.25: both fired at 11:00
        h.wall.jump(timedelta(minutes=-5))  # 10:55:30
        await trio.sleep(6 * 60)  # wall 11:01:30.25
        nursery.cancel_scope.cancel()
    assert shown(h.slots("m#0")) == ["11:00:00+0200", "10:56:00+0200", "10:57:00+0200", "10:58:00+0200",
                                     "10:59:00+0200", "11:00:00+0200", "11:01:00+0200"]
    assert shown(h.slots("d#0")) == ["11:00:00+0200"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "cron: the wall clock jumped back by 0:05:00 (now 2026-06-01T08:55:31+00:00)",
        "cron m#0: the clock (2026-06-01T10:55:31+02:00) is 0:04:29 behind the last fired "
        "slot 2026-06-01T11:00:00+02:00: taken as a corrected clock; the next slot is "
        "2026-06-01T10:56:00+02:00",
        "cron d#0: the clock (2026-06-01T10:55:31+02:00) is behind the last fired slot "
        "2026-06-01T11:00:00+02:00; slots up to it will not fire again",
    ]


async def test_clock_jumps_back_years_and_forward_again_never_bursts(autojump_clock, caplog):
    h = Harness(berlin(2026, 6, 1, 10, 59, 30))
    async with trio.open_nursery() as nursery:
        await h.start(nursery, [job("m#0", "* * * * *", "once")])
        await trio.sleep(60.25)
        h.wall.jump(timedelta(days=-365 * 3))  # a bad NTP answer: 2023-06-02 11:00:30
        await trio.sleep(3600)
        h.wall.jump(timedelta(days=365 * 3, minutes=-2))  # 11:58:30 in 2026: right again
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    # While the clock said 2023 the job ran once a minute by real time (60 runs, no catch-up
    # burst); back in 2026, one run for the minutes missed (missed="once"), then on time.
    days = [slot.astimezone(BERLIN).date() for slot in h.slots("m#0")]
    assert days == [date(2026, 6, 1)] + [date(2023, 6, 2)] * 60 + [date(2026, 6, 1)] * 2
    assert shown(h.slots("m#0")[1:3]) == ["11:01:00+0200", "11:02:00+0200"]
    assert shown(h.slots("m#0")[-2:]) == ["11:58:00+0200", "11:59:00+0200"]
    assert "cron m#0: the clock (2023-06-02T11:00:31+02:00) is 1094 days, 23:59:29 behind the last fired " \
           "slot 2026-06-01T11:00:00+02:00: taken as a corrected clock; the next slot is " \
           "2023-06-02T11:01:00+02:00" in caplog.text


async def test_a_clock_set_back_after_a_day_ahead_fires_the_next_real_slots(autojump_clock, caplog):
    # The jobs ran for an hour on a clock a day ahead (a bad NTP answer); then it is corrected.
    real = berlin(2026, 6, 1, 2, 30)
    h = Harness(real + timedelta(days=1))
    jobs = [job("m#0", "*/15 * * * *", "once"), job("d#0", "0 3 * * *", "once")]
    async with trio.open_nursery() as nursery:
        await h.start(nursery, jobs, max_sleep=3600)
        await trio.sleep(3600.25)  # wall 06-02 03:30: fired 02:30 .. 03:30 of the wrong day
        h.wall.jump(timedelta(days=-1))  # real time 06-01 03:30; seen at the next look, 03:45
        await trio.sleep(86400 - 1)  # until 06-02 03:30 real time
        nursery.cancel_scope.cancel()
    ahead = [real + timedelta(days=1, minutes=15 * i) for i in range(5)]
    after = [real + timedelta(hours=1, minutes=15 * i) for i in range(1, 96)]
    assert h.slots("m#0") == ahead + after  # every real quarter hour once, no burst
    assert h.slots("d#0") == [berlin(2026, 6, 2, 3), berlin(2026, 6, 2, 3)]  # its run, then a day later
    # In real time the runs are a day apart: never one slot twice in a short while.
    d_times = [t for (k, _, _), t in zip(h.fired, h.fired_at) if k == "d#0"]
    assert d_times[1] - d_times[0] == 86400
    assert "cron d#0: the clock (2026-06-01T03:45:00+02:00) is 23:15:00 behind the last fired slot " \
           "2026-06-02T03:00:00+02:00: taken as a corrected clock; the next slot is 2026-06-02T03:00:00+02:00" \
           in caplog.text


async def test_a_corrected_clock_across_a_restart(autojump_clock, caplog):
    # The previous process ran a day ahead and persisted tomorrow's slots; this one starts on
    # the right clock: it fires the next real slots instead of a day of silence.
    persisted = {"m#0": berlin(2026, 6, 2, 10), "d#0": berlin(2026, 6, 2, 3)}
    h = Harness(berlin(2026, 6, 1, 10, 0, 0, 500000), persisted)
    jobs = [job("m#0", "* * * * *", "once"), job("d#0", "0 3 * * *", "once")]
    await run_for(h, jobs, 3 * 60 - 1, max_sleep=3600)
    assert shown(h.slots("m#0")) == ["10:00:00+0200", "10:01:00+0200", "10:02:00+0200"]
    assert [s.date() for s in h.slots("m#0")] == [date(2026, 6, 1)] * 3
    assert h.slots("d#0") == []  # its next real slot is tomorrow at 03:00
    assert h.persisted["m#0"] == berlin(2026, 6, 1, 10, 2)  # the real slots replace tomorrow's
    assert "cron m#0: the clock (2026-06-01T10:00:00.500000+02:00) is 23:59:59.500000 behind the last " \
           "fired slot 2026-06-02T10:00:00+02:00: taken as a corrected clock; the next slot is " \
           "2026-06-01T10:00:00+02:00" in caplog.text  # the one just past: it fires, on time
    # Restarted again, it sees its own real slots: nothing fires twice.
    again = Harness(berlin(2026, 6, 1, 10, 2, 0, 600000), h.persisted)
    await run_for(again, jobs, 30)
    assert again.fired == []


async def test_a_small_step_back_is_not_a_correction(autojump_clock):
    # NTP corrects a clock that ran 20 s fast, right after a slot: the slot fired 20 s early
    # by real time and is not run again (20 s is less than half the one-minute interval).
    h = Harness(berlin(2026, 6, 1, 10, 59, 50))
    async with trio.open_nursery() as nursery:
        await h.start(nursery, [job("m#0", "* * * * *", "once")])
        await trio.sleep(10.5)  # 11:00:00.5: fired 11:00
        h.wall.jump(timedelta(seconds=-20))  # 10:59:40.5
        await trio.sleep(90)  # wall 11:01:10.5
        nursery.cancel_scope.cancel()
    assert shown(h.slots("m#0")) == ["11:00:00+0200", "11:01:00+0200"]


async def test_a_jump_is_noticed_within_a_second(autojump_clock):
    h = Harness(berlin(2026, 6, 1, 2))
    async with trio.open_nursery() as nursery:
        await h.start(nursery, [job("d#0", "0 3 * * *")])
        await trio.sleep(10.25)
        jumped_at = trio.current_time()
        h.wall.jump(timedelta(minutes=59, seconds=48.75))  # wall 02:59:59.00, mid-slice
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    (_, slot, wall), = h.fired
    # The loop looked again 0.75 s later (its 1 s slice), saw 02:59:59.75, slept the 0.25 s left.
    assert slot == wall == berlin(2026, 6, 1, 3)
    assert h.fired_at == [jumped_at + 1.0]


async def test_restart_in_the_middle_never_fires_a_slot_twice(autojump_clock):
    persisted: dict = {}
    first = Harness(berlin(2026, 6, 1, 10, 0, 58), persisted)
    jobs = [job("s#0", "* * * * * *"), job("m#0", "* * * * *")]
    await run_for(first, jobs, 2.5)  # fires 10:00:58, :59, 10:01:00 (both jobs), stops at 10:01:00.5
    assert shown(first.slots("m#0")) == ["10:01:00+0200"]
    # The new process comes up 1 s later, within the grace of the 10:01:00 slot.
    second = Harness(berlin(2026, 6, 1, 10, 1, 1, 500000), persisted)
    await run_for(second, jobs, 60)
    # 10:01:01 never ran (the first process stopped at 10:01:00.5) and is 0.5 s old: it runs.
    assert shown(second.slots("s#0"))[:2] == ["10:01:01+0200", "10:01:02+0200"]
    assert shown(second.slots("m#0")) == ["10:02:00+0200"]
    # Without the persisted slot the restart would have re-run 10:01:00 (and 10:01:01):
    fresh = Harness(berlin(2026, 6, 1, 10, 1, 1, 500000))
    await run_for(fresh, jobs, 0.1)
    assert shown(fresh.slots("m#0")) == ["10:01:00+0200"]


async def test_an_overlapping_slot_is_skipped_and_logged(autojump_clock, caplog):
    h = Harness(berlin(2026, 6, 1, 9, 59, 30), run_seconds=90)
    await run_for(h, [job("slow#0", "* * * * *")], 4 * 60)
    assert shown(h.slots("slow#0")) == ["10:00:00+0200", "10:02:00+0200"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "cron slow#0: slot 2026-06-01T10:01:00+02:00 skipped: the previous run is still going",
        "cron slow#0: slot 2026-06-01T10:03:00+02:00 skipped: the previous run is still going",
    ]


async def test_a_failing_run_is_logged_and_the_loop_goes_on(autojump_clock, caplog):
    h = Harness(berlin(2026, 6, 1, 10))
    h.fail_slots.add(berlin(2026, 6, 1, 10, 1))
    await run_for(h, [job("m#0", "* * * * *")], 3 * 60 + 1)
    assert shown(h.slots("m#0")) == ["10:00:00+0200", "10:01:00+0200", "10:02:00+0200", "10:03:00+0200"]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "cron m#0: run for slot 2026-06-01T10:01:00+02:00 failed"
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_a_hanging_run_is_cancelled_after_the_job_timeout(autojump_clock, caplog):
    h = Harness(berlin(2026, 6, 1, 10), run_seconds=10**9)
    await run_for(h, [job("hang#0", "* * * * *", timeout=30)], 2 * 60 + 1)
    assert shown(h.slots("hang#0")) == ["10:00:00+0200", "10:01:00+0200", "10:02:00+0200"]
    assert "cron hang#0: run for slot 2026-06-01T10:00:00+02:00 cancelled after 30s" in caplog.text


async def test_a_slot_that_cannot_be_persisted_does_not_run(autojump_clock, caplog):
    h = Harness(berlin(2026, 6, 1, 10))

    async def broken_save(key, slot):
        raise OSError("disk full")

    h.save_last = broken_save
    await run_for(h, [job("m#0", "* * * * *")], 61)
    assert h.fired == []
    assert "cron m#0: slot 2026-06-01T10:00:00+02:00 not run: could not record it as fired" in caplog.text


async def test_a_blocked_event_loop_makes_a_slot_late_not_missed(autojump_clock):
    h = Harness(berlin(2026, 6, 1, 2, 59, 58))
    async with trio.open_nursery() as nursery:
        await h.start(nursery, [job("d#0", "0 3 * * *", "skip")])
        await trio.sleep(1.5)
        autojump_clock.jump(10)  # trio and the wall clock both move 10 s while the loop is stuck
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    (_, slot, wall), = h.fired
    assert slot == berlin(2026, 6, 1, 3) and wall - slot > GRACE


async def test_tick_is_one_step(autojump_clock):
    h = Harness(berlin(2026, 6, 1, 10, 0, 0, 250000))
    loop = CronLoop([job("m#0", "* * * * *"), job("d#0", "0 3 * * *")], dispatch=h.dispatch,
                    load_last=h.load_last, save_last=h.save_last, wall_clock=h.wall)
    async with trio.open_nursery() as nursery:
        assert loop.tick(nursery) == 1.0  # capped at one second
        await trio.testing.wait_all_tasks_blocked()
        assert shown(h.slots("m#0")) == ["10:00:00+0200"]  # 0.25 s late: on time
        await trio.sleep(59.5)  # wall 10:00:59.75
        assert loop.tick(nursery) == 0.25  # the last slice ends exactly at the slot
    assert h.persisted == {"m#0": berlin(2026, 6, 1, 10)}
