"""Cron: schedule maths (pure, no trio) and the loop that fires cron triggers.

The maths works on *wall time in the schedule's zone* and maps each matching wall time to
an instant, which is where the DST rules live (croniter with a zone-aware start fires a
``30 2 * * *`` job twice on a fall-back day; here it fires once):

* a wall time that does not exist (spring forward) runs at the first instant after the gap
  (02:30 -> 03:00 in Europe/Berlin); several such slots collapse into that one run;
* a wall time that happens twice (fall back) runs at its first occurrence only, unless
  the schedule matches every hour (``* * * * *``, ``*/15 * * * *``, ``0 * * * *``...), which
  keeps running by real time through the repeated hour.

croniter decides which *days* match (it owns day-of-month/weekday/``L``/``#``/``W``/year);
the times of day are the product of the expanded hour, minute and second sets, searched
with bisect, so an every-second schedule costs microseconds per slot and croniter runs
about once per matching day.

The loop (:class:`CronLoop`, :func:`serve_cron`) sleeps on trio's monotonic clock in slices
of at most a second and re-reads the injected wall clock each slice (a Raspberry Pi boots
with a stale clock that NTP later steps). Which slot to fire is :func:`plan`'s decision; the
last fired slot is persisted through the injected ``save_last`` *before* the handler runs.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import re
import zoneinfo
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import trio
from croniter import CroniterBadDateError, CroniterError, croniter

from .errors import ConfigError

__all__ = [
    "GRACE",
    "MAX_SLEEP",
    "MISSED_POLICIES",
    "CronSchedule",
    "CronJob",
    "CronLoop",
    "Decision",
    "local_timezone",
    "correction_margin",
    "next_fire_after",
    "prev_fire_at_or_before",
    "plan",
    "serve_cron",
]

# A slot is "on time" (not missed) when it is at most this old at the moment the loop looks.
# Covers a restart or a small clock step right at a slot; longer gaps are downtime or a jump
# and follow the job's `missed` policy. While the loop is running and the wall clock moves
# with the monotonic clock, its own lateness (a blocked event loop) extends this (CronLoop).
GRACE = timedelta(seconds=2)
# Longest single sleep: the wall clock is re-read at least this often (STACK-NOTES 15).
MAX_SLEEP = 1.0
# Wall-clock movement that differs from monotonic movement by more than this between two
# ticks is a clock jump (NTP steps rather than slews offsets above 128 ms).
JUMP_TOLERANCE = 0.5
MISSED_POLICIES = ("skip", "once")

_UTC = timezone.utc
_FIELDS = {
    5: ("minute", "hour", "day", "month", "weekday"),
    6: ("second", "minute", "hour", "day", "month", "weekday"),
    7: ("second", "minute", "hour", "day", "month", "weekday", "year"),
}
_RANGES = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day": "1-31, L or 15W",
    "month": "1-12 or JAN-DEC",
    "weekday": "0-7 or SUN-SAT, 0 and 7 are Sunday; FRI#2, L5",
    "year": "1970-2099",
}
_FORMS = (
    'use 5 fields "minute hour day month weekday" (e.g. "30 2 * * *"), '
    '6 with seconds first "second minute hour day month weekday" (e.g. "*/10 * * * * *") '
    'or 7 with the year last "second minute hour day month weekday year" (e.g. "0 30 2 * * * 2027")'
)
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
# croniter's hashed (H) and random (R) values: H needs an id, R changes on every restart.
_HASH_OR_RANDOM = re.compile(r"[hr](\(\d+-\d+\))?(/\d+)?", re.IGNORECASE)
# croniter gives up after this many years without a match; years run up to 2099.
_MAX_YEARS = 130
_DAY_CACHE_SIZE = 64


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# -- time zones -----------------------------------------------------------------------------

def local_timezone(
    environ: Mapping[str, str] | None = None,
    localtime: str = "/etc/localtime",
    timezone_file: str = "/etc/timezone",
) -> str:
    """The machine's IANA zone name: ``TZ``, else the ``/etc/localtime`` link, else
    ``/etc/timezone``; ``"UTC"`` when none of them names a known zone.

    ``TZ`` values that are not IANA names (POSIX rules such as ``CET-1CEST``) are ignored.
    """
    environ = os.environ if environ is None else environ
    candidates = [environ.get("TZ", "").lstrip(":")]
    try:
        target = os.path.realpath(localtime)
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        with open(timezone_file, encoding="utf-8") as f:
            candidates.append(f.read().strip())
    except OSError:
        pass
    for name in candidates:
        if name and _zone(name) is not None:
            return name
    return "UTC"


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError on "../x", IsADirectoryError...
        return None


# -- the schedule ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class CronSchedule:
    """A parsed cron expression bound to a time zone. Build it with :meth:`parse`."""

    expression: str  # as written by the user (5, 6 or 7 fields, seconds first)
    timezone: str  # IANA name; the machine's zone when the trigger named none
    zone: zoneinfo.ZoneInfo = field(repr=False)
    every_hour: bool = field(repr=False)  # matches every hour: runs through a repeated hour
    _hours: tuple[int, ...] = field(repr=False)
    _minutes: tuple[int, ...] = field(repr=False)
    _seconds: tuple[int, ...] = field(repr=False)
    _days: croniter = field(repr=False)  # "0 0 <day fields>": which days match
    _next_days: dict = field(repr=False, default_factory=dict)  # date -> next matching date
    _prev_days: dict = field(repr=False, default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self.expression, self.timezone) == (other.expression, other.timezone)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    @classmethod
    def parse(
        cls,
        expression: str,
        timezone: str | None,
        *,
        where: str,
        expression_key: str = "expression",
    ) -> CronSchedule:
        """Parse a cron trigger's expression and time zone.

        Args:
            expression: 5 fields (minute first), 6 (second first, as Motia 1.0) or 7
                (second first, year last).
            timezone: an IANA name; ``None`` for the machine's zone (:func:`local_timezone`).
            where: the trigger's place for error messages, e.g.
                ``"steps/cleanup_step.py: triggers[0]"``.
            expression_key: the expression's key under ``where`` (``"cron"`` in Motia 0.x).

        Raises:
            ConfigError: naming ``where``, the bad value and the accepted forms.
        """
        at = f"{where}.{expression_key}"
        if not isinstance(expression, str):
            raise ConfigError(f'{at}: expected a cron expression such as "30 2 * * *", got {_show(expression)}')
        macro = _MACROS.get(expression.strip().lower())
        if macro:
            raise ConfigError(f"{at}: macros are not supported, got {_show(expression)}; write {_show(macro)}")
        fields = expression.split()
        if len(fields) not in _FIELDS:
            raise ConfigError(f"{at}: {_show(expression)} has {len(fields)} fields; {_FORMS}")
        names = _FIELDS[len(fields)]
        for name, value in zip(names, fields):
            if any(_HASH_OR_RANDOM.fullmatch(part) for part in value.split(",")):
                raise ConfigError(
                    f"{at}: {_show(expression)}: {name} {_show(value)}: hashed (H) and random (R) values "
                    f"are not supported; write the {name} as a number ({_RANGES[name]})"
                )
        full = _croniter(fields, at, expression, names)
        zone_name = local_timezone() if timezone is None else timezone
        zone = _zone(zone_name) if isinstance(zone_name, str) and zone_name else None
        if zone is None:
            raise _timezone_error(f"{where}.timezone", timezone)

        def values(index: int, low: int, high: int) -> tuple[int, ...]:
            expanded = full.expanded[index]
            return tuple(range(low, high + 1)) if "*" in expanded else tuple(sorted(set(expanded)))

        hours = values(1, 0, 23)
        seconds = values(5, 0, 59) if len(fields) > 5 else (0,)
        first_day = 3 if len(fields) > 5 else 2  # seconds first: day fields move right by one
        day_fields = fields[first_day: first_day + 3]
        year = fields[6:]
        days = croniter(
            " ".join(["0", "0", *day_fields, *(["0", *year] if year else [])]),
            datetime(1969, 12, 31),
            ret_type=datetime,
            max_years_between_matches=_MAX_YEARS,
        )
        try:
            days.get_next()
        except CroniterBadDateError:
            parts = [f"day {_show(day_fields[0])}", f"month {_show(day_fields[1])}"]
            parts += [f"weekday {_show(day_fields[2])}"] if day_fields[2] not in ("*", "?") else []
            parts += [f"year {_show(year[0])}"] if year else []
            raise ConfigError(
                f"{at}: {_show(expression)} never matches: no date from 1970 to 2099 fits "
                f"{', '.join(parts[:-1])} and {parts[-1]}; check the day, month and year fields"
            ) from None
        return cls(
            expression=expression,
            timezone=zone_name,
            zone=zone,
            every_hour=len(hours) == 24,
            _hours=hours,
            _minutes=values(0, 0, 59),
            _seconds=seconds,
            _days=days,
        )

    # -- days (croniter) --------------------------------------------------------------------

    def _next_day(self, day: date) -> date | None:
        """The first matching date after ``day``."""
        return self._neighbour_day(day, self._next_days, self._days.get_next)

    def _prev_day(self, day: date) -> date | None:
        """The last matching date before ``day``."""
        return self._neighbour_day(day, self._prev_days, self._days.get_prev)

    @staticmethod
    def _neighbour_day(day: date, cache: dict, step) -> date | None:
        if day not in cache:
            if len(cache) >= _DAY_CACHE_SIZE:
                cache.clear()
            try:
                found = step(datetime, start_time=datetime.combine(day, time())).date()
            except (CroniterBadDateError, OverflowError, ValueError):
                found = None
            cache[day] = found
        return cache[day]

    def _day_matches(self, day: date) -> bool:
        return day > date.min and self._next_day(day - timedelta(days=1)) == day

    # -- wall times (naive, in the schedule's zone) -----------------------------------------

    def _next_wall(self, wall: datetime, strict: bool) -> datetime | None:
        """The first matching wall time after ``wall`` (or at it, unless ``strict``)."""
        day = wall.date()
        if self._day_matches(day):
            hms = _tod_after(self, wall.hour, wall.minute, wall.second, strict or wall.microsecond > 0)
            if hms is not None:
                return datetime.combine(day, time(*hms))
        day = self._next_day(day)
        if day is None:
            return None
        return datetime(day.year, day.month, day.day, self._hours[0], self._minutes[0], self._seconds[0])

    def _prev_wall(self, wall: datetime, strict: bool) -> datetime | None:
        """The last matching wall time before ``wall`` (or at it, unless ``strict``)."""
        day = wall.date()
        if self._day_matches(day):
            hms = _tod_before(self, wall.hour, wall.minute, wall.second, strict and wall.microsecond == 0)
            if hms is not None:
                return datetime.combine(day, time(*hms))
        day = self._prev_day(day)
        if day is None:
            return None
        return datetime(day.year, day.month, day.day, self._hours[-1], self._minutes[-1], self._seconds[-1])

    # -- wall time -> instant ---------------------------------------------------------------

    def _instant(self, wall: datetime, fold: int) -> datetime:
        return wall.replace(tzinfo=self.zone, fold=fold).astimezone(_UTC)

    def _primary(self, wall: datetime) -> datetime:
        """When a matching wall time fires: itself, its first occurrence, or the gap's end."""
        first, second = self._instant(wall, 0), self._instant(wall, 1)
        if second < first:  # in a spring-forward gap: zoneinfo maps fold=1 before the gap
            return self._transition(second, first)
        return first

    def _transition(self, before: datetime, after: datetime) -> datetime:
        """The instant in (before, after] where the UTC offset changes (one change only)."""
        lo, hi = math.floor(before.timestamp()), math.ceil(after.timestamp())
        old = datetime.fromtimestamp(lo, self.zone).utcoffset()
        while hi - lo > 1:  # tz transitions fall on whole seconds
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.zone).utcoffset() == old:
                lo = mid
            else:
                hi = mid
        return datetime.fromtimestamp(hi, _UTC)

    def _fold_bounds(self, wall: datetime) -> tuple[datetime, datetime]:
        """For a wall time that happens twice: the repeated wall-time range [start, end)."""
        first, second = self._instant(wall, 0), self._instant(wall, 1)
        change = self._transition(first, second)
        start = change.astimezone(self.zone).replace(tzinfo=None, fold=0)
        return start, start + (second - first)


def _tod_after(s: CronSchedule, h: int, m: int, sec: int, strict: bool) -> tuple[int, int, int] | None:
    """The first (hour, minute, second) of the schedule at or after (strictly after) h:m:sec."""
    hours, minutes, seconds = s._hours, s._minutes, s._seconds
    i = bisect.bisect_left(hours, h)
    if i < len(hours) and hours[i] == h:
        j = bisect.bisect_left(minutes, m)
        if j < len(minutes) and minutes[j] == m:
            k = bisect.bisect_right(seconds, sec) if strict else bisect.bisect_left(seconds, sec)
            if k < len(seconds):
                return h, m, seconds[k]
            j += 1
        if j < len(minutes):
            return h, minutes[j], seconds[0]
        i += 1
    if i < len(hours):
        return hours[i], minutes[0], seconds[0]
    return None


def _tod_before(s: CronSchedule, h: int, m: int, sec: int, strict: bool) -> tuple[int, int, int] | None:
    """The last (hour, minute, second) of the schedule at or before (strictly before) h:m:sec."""
    hours, minutes, seconds = s._hours, s._minutes, s._seconds
    i = bisect.bisect_right(hours, h) - 1
    if i >= 0 and hours[i] == h:
        j = bisect.bisect_right(minutes, m) - 1
        if j >= 0 and minutes[j] == m:
            k = (bisect.bisect_left(seconds, sec) if strict else bisect.bisect_right(seconds, sec)) - 1
            if k >= 0:
                return h, m, seconds[k]
            j -= 1
        if j >= 0:
            return h, minutes[j], seconds[-1]
        i -= 1
    if i >= 0:
        return hours[i], minutes[-1], seconds[-1]
    return None


def _croniter(fields: list[str], at: str, expression: str, names: Sequence[str]) -> croniter:
    """croniter over the fields (seconds first), or a ConfigError naming the bad field."""
    seconds_first = len(fields) > 5
    try:
        return croniter(" ".join(fields), datetime(2000, 1, 1), second_at_beginning=seconds_first)
    except CroniterError as exc:
        problem = str(exc)
    for index, (name, value) in enumerate(zip(names, fields)):
        probe = ["*"] * len(fields)
        probe[index] = value
        try:
            croniter(" ".join(probe), datetime(2000, 1, 1), second_at_beginning=seconds_first)
        except CroniterError:
            raise ConfigError(
                f"{at}: {_show(expression)}: {name} {_show(value)} is not valid ({_RANGES[name]}); {_FORMS}"
            ) from None
    raise ConfigError(f"{at}: {_show(expression)} is not valid ({problem}); {_FORMS}")


def _timezone_error(at: str, name: Any) -> ConfigError:
    if not isinstance(name, str):
        return ConfigError(f'{at}: expected an IANA time zone name such as "Europe/Berlin", got {_show(name)}')
    import difflib  # only when a message needs a suggestion (rarely)

    zones = sorted(zoneinfo.available_timezones())
    by_case = {zone.lower(): zone for zone in zones}  # "utc", "europe/berlin": the case is all
    close = [by_case[name.lower()]] if name.lower() in by_case else difflib.get_close_matches(name, zones, n=1)
    fix = f"did you mean {_show(close[0])}?" if close else 'use an IANA name such as "Europe/Berlin" or "UTC"'
    return ConfigError(f"{at}: unknown time zone {_show(name)}; {fix}")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"cron needs aware datetimes, got naive {moment.isoformat()}")
    return moment.astimezone(_UTC)


# -- pure maths -----------------------------------------------------------------------------

def next_fire_after(schedule: CronSchedule, after: datetime) -> datetime | None:
    """The first instant strictly after ``after`` at which ``schedule`` fires.

    Args:
        after: an aware datetime (any zone).

    Returns:
        An aware UTC datetime, or ``None`` when the schedule never fires again (a year
        field in the past).
    """
    s = schedule
    after = _utc(after)
    local = after.astimezone(s.zone)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold:  # in the second pass of a repeated hour
        start, end = s._fold_bounds(wall)
        nxt = s._next_wall(wall, strict=True)
        if nxt is not None and nxt < end:
            if s.every_hour:
                return s._instant(nxt, 1)
            nxt = s._next_wall(end, strict=False)  # its first pass has already fired
        return None if nxt is None else s._primary(nxt)
    nxt = s._next_wall(wall, strict=True)
    if s.every_hour and s._instant(wall, 1) != after:  # first pass of a repeated hour
        start, end = s._fold_bounds(wall)
        if nxt is None or nxt >= end:  # no first-pass slot left: the second pass is next
            repeat = s._next_wall(start, strict=False)
            if repeat is not None and repeat < end:
                return s._instant(repeat, 1)
    return None if nxt is None else s._primary(nxt)


def prev_fire_at_or_before(schedule: CronSchedule, at: datetime) -> datetime | None:
    """The last instant at or before ``at`` at which ``schedule`` fires (aware UTC), or None."""
    s = schedule
    at = _utc(at)
    local = at.astimezone(s.zone)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold:  # in the second pass of a repeated hour
        start, end = s._fold_bounds(wall)
        if s.every_hour:
            prev = s._prev_wall(wall, strict=False)
            if prev is not None and prev >= start:
                return s._instant(prev, 1)
        prev = s._prev_wall(end, strict=True)  # the last first-pass slot, or earlier
        return None if prev is None else s._primary(prev)
    prev = s._prev_wall(wall, strict=False)
    if prev is None:
        return None
    if s.every_hour:
        second = s._instant(prev, 1)
        if s._instant(prev, 0) < second <= at:  # a repeated wall time, second pass already over
            return second
    return s._primary(prev)


def correction_margin(schedule: CronSchedule, last_fired: datetime) -> timedelta:
    """How far behind ``last_fired`` the clock may be and still count as the slot's own run.

    A clock set back by ``d`` right after ``last_fired`` fired means that run happened ``d``
    early in real time. While ``d`` is under half the schedule's interval at that slot, the
    run is still the one nearest the slot in real time, so the slots up to ``last_fired`` do
    not run again. Beyond it the clock was wrong when those slots fired (a day ahead, say):
    the clock counts as corrected and the schedule goes on from the new time. Never less
    than :data:`GRACE`.
    """
    last_fired = _utc(last_fired)
    before = prev_fire_at_or_before(schedule, last_fired - timedelta(microseconds=1))
    if before is not None:
        interval = last_fired - before
    else:
        after = next_fire_after(schedule, last_fired)
        interval = after - last_fired if after is not None else timedelta()
    return max(GRACE, interval / 2)


@dataclass(frozen=True)
class Decision:
    """What :func:`plan` decided for one job at one moment."""

    fire_slot: datetime | None  # run this slot now; None: nothing to run
    next_slot: datetime | None  # the next slot to wake up for; None: never fires again
    missed_slot: datetime | None = None  # latest slot missed (downtime, clock jump), if any;
    # before ``fire_slot`` when that one is on time and slots before it were missed


def plan(
    schedule: CronSchedule,
    last_fired: datetime | None,
    now: datetime,
    missed: str = "skip",
    *,
    grace: timedelta = GRACE,
) -> Decision:
    """Decide whether a job fires now, and when it should be looked at next.

    The candidate is the latest slot at or before ``now``. It fires when it is newer than
    ``last_fired`` (slots at or before it never fire again: restarts, clocks that jump
    back) and either on time (at most ``grace`` old) or missed under ``missed="once"``
    (one run stands for every missed slot; there is never a burst). With no
    ``last_fired`` (first start) nothing counts as missed.

    Args:
        last_fired: the last slot that fired (persisted by the caller), or None.
        now: the wall clock, aware.
        missed: ``"skip"`` or ``"once"``.
        grace: how late a slot may be and still count as on time.
    """
    if missed not in MISSED_POLICIES:
        raise ValueError(f"missed must be one of {MISSED_POLICIES}, got {missed!r}")
    now = _utc(now)
    last_fired = None if last_fired is None else _utc(last_fired)
    latest = prev_fire_at_or_before(schedule, now)
    if latest is not None and last_fired is not None and latest <= last_fired:
        latest = None
    fire = missed_slot = None
    if latest is not None:
        if now - latest <= grace:
            fire = latest
            if last_fired is not None:  # on time, after a downtime longer than the interval?
                before = prev_fire_at_or_before(schedule, latest - timedelta(microseconds=1))
                if before is not None and before > last_fired:
                    missed_slot = before
        elif last_fired is not None:
            missed_slot = latest
            if missed == "once":
                fire = latest
    base = now if last_fired is None else max(now, last_fired)
    return Decision(fire, next_fire_after(schedule, base), missed_slot)


# -- the loop -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CronJob:
    """One cron trigger to serve. ``key`` names it in storage and logs (``"step#0"``)."""

    key: str
    schedule: CronSchedule
    missed: str = "skip"
    timeout: float | None = None  # the loop cancels a run after this many seconds

    def __post_init__(self) -> None:
        if self.missed not in MISSED_POLICIES:
            raise ValueError(f"CronJob {self.key}: missed must be one of {MISSED_POLICIES}, got {self.missed!r}")


@dataclass
class _JobState:
    job: CronJob
    last_fired: datetime | None
    next_slot: datetime | None = None
    planned: bool = False
    running: bool = False


def _utc_now() -> datetime:
    return datetime.now(_UTC)


class CronLoop:
    """Fires cron jobs on a wall clock; :meth:`tick` is one step, :meth:`serve` loops.

    Args:
        jobs: the jobs to serve.
        dispatch: ``await dispatch(job, slot)`` runs the handler for one slot (aware UTC).
        load_last: ``load_last(key)`` returns the last fired slot persisted for a job, or None.
        save_last: ``await save_last(key, slot)`` persists it; awaited before ``dispatch``,
            so a slot runs at most once across restarts.
        wall_clock: returns the aware current time (tests drive it).
        logger: a ``logging.Logger``; default ``edge.cron``.
        max_sleep: longest sleep between two looks at the wall clock, in seconds.
    """

    def __init__(
        self,
        jobs: Iterable[CronJob],
        *,
        dispatch: Callable[[CronJob, datetime], Awaitable[Any]],
        load_last: Callable[[str], datetime | None],
        save_last: Callable[[str, datetime], Awaitable[Any]],
        wall_clock: Callable[[], datetime] = _utc_now,
        logger: logging.Logger | None = None,
        max_sleep: float = MAX_SLEEP,
    ):
        self._dispatch = dispatch
        self._save_last = save_last
        self._wall_clock = wall_clock
        self._log = logger or logging.getLogger("edge.cron")
        self._max_sleep = max_sleep
        self._states = [_JobState(job, load_last(job.key)) for job in jobs]
        self._seen: tuple[datetime, float] | None = None  # (wall, monotonic) at the last tick

    @property
    def jobs(self) -> list[CronJob]:
        return [st.job for st in self._states]

    def tick(self, nursery: trio.Nursery) -> float:
        """Fire every due slot (each run starts in ``nursery``); return seconds to sleep."""
        now = _utc(self._wall_clock())
        mono = trio.current_time()
        grace, jumped = GRACE, False
        if self._seen is not None:
            wall_step = (now - self._seen[0]).total_seconds()
            drift = wall_step - (mono - self._seen[1])
            if abs(drift) > JUMP_TOLERANCE:
                jumped = True
                self._log.warning(
                    "cron: the wall clock jumped %s by %s (now %s)",
                    "forward" if drift > 0 else "back", timedelta(seconds=round(abs(drift))), now.isoformat(),
                )
            else:
                # The clock ran on while we watched: anything since the last look is late, not missed.
                grace = max(GRACE, timedelta(seconds=wall_step))
        self._seen = (now, mono)
        for st in self._states:
            if st.planned and not jumped and (st.next_slot is None or now < st.next_slot):
                continue
            self._plan(st, now, grace, jumped, nursery)
        delay = self._max_sleep
        for st in self._states:
            if st.next_slot is not None:
                delay = min(delay, (st.next_slot - now).total_seconds())
        return max(delay, 0.0)

    def _plan(self, st: _JobState, now: datetime, grace: timedelta, jumped: bool, nursery: trio.Nursery) -> None:
        job = st.job
        zone = job.schedule.zone
        last = st.last_fired
        corrected = None
        if last is not None and last > now + GRACE and (jumped or not st.planned):
            if last - now > correction_margin(job.schedule, last):
                # A corrected clock (it ran ahead, now it is right): slots are real again from
                # now on. Forgetting the last slot fires nothing missed (no burst); the next
                # run persists the real slot in its place, so a restart sees the same.
                corrected, st.last_fired, last = last, None, None
            else:
                self._log.warning(
                    "cron %s: the clock (%s) is behind the last fired slot %s; slots up to it will not fire again",
                    job.key, now.astimezone(zone).isoformat(), last.astimezone(zone).isoformat(),
                )
        decision = plan(job.schedule, last, now, job.missed, grace=grace)
        if corrected is not None:
            upcoming = decision.fire_slot or decision.next_slot  # (one just past counts as on time)
            self._log.warning(
                "cron %s: the clock (%s) is %s behind the last fired slot %s: taken as a corrected clock; "
                "the next slot is %s", job.key, now.astimezone(zone).isoformat(), corrected - now,
                corrected.astimezone(zone).isoformat(), "none" if upcoming is None else upcoming.astimezone(zone).isoformat(),
            )
        if decision.missed_slot is not None:
            missed_up_to = decision.missed_slot.astimezone(zone).isoformat()
            if decision.fire_slot is None or (decision.fire_slot != decision.missed_slot and job.missed == "skip"):
                self._log.warning("cron %s: missed slots up to %s skipped (missed=\"skip\")", job.key, missed_up_to)
            elif decision.fire_slot != decision.missed_slot:  # missed ones, then an on-time slot
                self._log.warning("cron %s: missed slots up to %s; the run of slot %s stands for them "
                                  "(missed=\"once\")", job.key, missed_up_to,
                                  decision.fire_slot.astimezone(zone).isoformat())
            else:
                self._log.warning("cron %s: running once for missed slots up to %s (missed=\"once\")",
                                  job.key, decision.missed_slot.astimezone(zone).isoformat())
        slot = decision.fire_slot
        if slot is not None:
            st.last_fired = slot
            if st.running:
                self._log.warning("cron %s: slot %s skipped: the previous run is still going",
                                  job.key, slot.astimezone(zone).isoformat())
            else:
                st.running = True
                nursery.start_soon(self._run, st, slot)
        if decision.next_slot is None and (st.next_slot is not None or not st.planned):
            self._log.warning("cron %s: %s has no slot after %s; it will not fire again",
                              job.key, _show(job.schedule.expression), now.astimezone(zone).isoformat())
        st.next_slot = decision.next_slot
        st.planned = True

    async def _run(self, st: _JobState, slot: datetime) -> None:
        job = st.job
        shown = slot.astimezone(job.schedule.zone).isoformat()
        try:
            try:
                await self._save_last(job.key, slot)
            except Exception:
                self._log.error("cron %s: slot %s not run: could not record it as fired", job.key, shown,
                                exc_info=True)
                return
            with trio.move_on_after(math.inf if job.timeout is None else job.timeout) as scope:
                await self._dispatch(job, slot)
            if scope.cancelled_caught:
                self._log.error("cron %s: run for slot %s cancelled after %ss", job.key, shown, job.timeout)
        except Exception:
            self._log.error("cron %s: run for slot %s failed", job.key, shown, exc_info=True)
        finally:
            st.running = False

    async def serve(self, *, task_status: trio.TaskStatus[CronLoop] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick and sleep until cancelled; runs still going are cancelled with it."""
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            if not self._states:
                await trio.sleep_forever()
            while True:
                await trio.sleep(self.tick(nursery))


async def serve_cron(
    jobs: Iterable[CronJob],
    *,
    task_status: trio.TaskStatus[CronLoop] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve cron jobs until cancelled: ``await nursery.start(serve_cron, jobs, ...)``.

    ``options`` are :class:`CronLoop`'s keyword arguments (``dispatch``, ``load_last``,
    ``save_last``, ...); ``task_status.started`` gets the loop.
    """
    await CronLoop(jobs, **options).serve(task_status=task_status)
