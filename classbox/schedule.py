"""Timetables: each room's weekly periods, the lessons booked into them, and what is on now and next.

Times are the school's wall-clock times. A booking comes from the room itself ("local") or from a
hub channel's schedule; a local booking wins over a channel's for the same date and period. A
channel entry without a period belongs to its date as a whole (period 0): it is listed for the day
but is never "now" or "next".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from tinydb import where

from .errors import InvalidInput
from .storage import State

LOCAL = "local"
WHOLE_DAY = 0
LOOKAHEAD_DAYS = 7
MAX_PERIOD = 12
MAX_SUBJECT = 20
PERIOD_FIELDS = ("weekday", "number", "start", "end", "subject")

_HHMM = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Lookup = Callable[[str], tuple[str | None, bool]]
"""Tell what the catalogue knows of a lesson id: its title (None if unknown) and whether every asset is here."""


@dataclass(frozen=True)
class Period:
    """One period of a room's week: 第N节 on a weekday (1=Mon..7=Sun), from start to end ("HH:MM")."""

    weekday: int
    number: int
    start: str
    end: str
    subject: str


@dataclass(frozen=True)
class Booking:
    """A lesson attached to a date and period (0 = the date as a whole), from "local" or a channel id."""

    date: str
    period: int
    lesson: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class Slot:
    """One period on one concrete date, with the lesson booked into it, if any.

    A slot that is not `timed` (a whole-day booking, or one for a period the timetable lacks) spans
    the whole day and is never now or next.
    """

    date: date
    period: int
    start: datetime
    end: datetime
    subject: str
    lesson: str | None
    title: str | None
    ready: bool
    source: str | None
    note: str
    timed: bool = True


@dataclass(frozen=True)
class NowNext:
    """What the TV leads with: the period on now, the next one (up to a week ahead), and today's slots."""

    now: Slot | None
    next: Slot | None
    today: tuple[Slot, ...]


# ---------------------------------------------------------------- validating a timetable


def parse_timetable(raw: Any) -> list[Period]:
    """Check a timetable as the admin sent it; return its periods in week order or raise InvalidInput."""
    if not isinstance(raw, list):
        raise InvalidInput("timetable must be a list of periods")
    periods = [_period(row, f"timetable row {i}") for i, row in enumerate(raw, start=1)]
    seen: dict[tuple[int, int], int] = {}
    for i, p in enumerate(periods, start=1):
        if (p.weekday, p.number) in seen:
            raise InvalidInput(f"timetable row {i}: number {p.number} is already used on weekday {p.weekday} "
                               f"by row {seen[p.weekday, p.number]}")
        seen[p.weekday, p.number] = i
    rows = sorted(enumerate(periods, start=1), key=lambda r: (r[1].weekday, r[1].start))
    for (i, a), (j, b) in zip(rows, rows[1:], strict=False):
        if a.weekday == b.weekday and b.start < a.end:
            first, second = sorted((i, j))
            raise InvalidInput(f"timetable row {second}: overlaps row {first} on weekday {a.weekday} "
                               f"({a.start}-{a.end} and {b.start}-{b.end})")
    return sorted(periods, key=lambda p: (p.weekday, p.start))


def _period(row: Any, label: str) -> Period:
    if not isinstance(row, Mapping):
        raise InvalidInput(f"{label}: must be an object with {', '.join(PERIOD_FIELDS)}")
    unknown = sorted(set(row) - set(PERIOD_FIELDS))
    if unknown:
        raise InvalidInput(f"{label}: unknown field {unknown[0]!r}")
    missing = [f for f in PERIOD_FIELDS if f not in row]
    if missing:
        raise InvalidInput(f"{label}: {missing[0]} is missing")
    weekday = _whole(row["weekday"], 1, 7, f"{label}: weekday must be a whole number from 1 (Mon) to 7 (Sun)")
    number = _whole(row["number"], 1, MAX_PERIOD, f"{label}: number must be a whole number from 1 to {MAX_PERIOD}")
    start, end = row["start"], row["end"]
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, str) or not _HHMM.fullmatch(value):
            raise InvalidInput(f"{label}: {name} must be a time written HH:MM, like 08:00")
    if not start < end:
        raise InvalidInput(f"{label}: end {end} must be after start {start}")
    subject = row["subject"]
    if not isinstance(subject, str) or not subject.strip() or len(subject.strip()) > MAX_SUBJECT:
        raise InvalidInput(f"{label}: subject must be text of 1 to {MAX_SUBJECT} characters")
    return Period(weekday, number, start, end, subject.strip())


def _whole(value: Any, low: int, high: int, message: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(message)
    return value


def check_date(text: str) -> str:
    """Return a YYYY-MM-DD date as given, or raise InvalidInput naming it."""
    _parse_date(text)
    return text


def _parse_date(value: Any, name: str = "date") -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise InvalidInput(f"{name} must be written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not a date") from None


# ---------------------------------------------------------------- now and next


def merge_bookings(bookings: Iterable[Booking]) -> list[Booking]:
    """Keep one booking per date and period, local first, else the first channel's; keep every whole-day one."""
    chosen: dict[tuple[str, int], Booking] = {}
    whole_day: list[Booking] = []
    for b in bookings:
        if b.period == WHOLE_DAY:
            whole_day.append(b)
        elif (b.date, b.period) not in chosen or (b.source == LOCAL and chosen[b.date, b.period].source != LOCAL):
            chosen[b.date, b.period] = b
    return whole_day + list(chosen.values())


def slots_on(periods: Iterable[Period], bookings: Iterable[Booking], day: date, lookup: Lookup,
             tz: tzinfo | None = None) -> list[Slot]:
    """List a day's slots: whole-day bookings and unknown periods first, then the periods in time order."""
    merged = merge_bookings(b for b in bookings if b.date == day.isoformat())
    booked = {b.period: b for b in merged if b.period != WHOLE_DAY}
    timed: list[Slot] = []
    for p in sorted((p for p in periods if p.weekday == day.isoweekday()), key=lambda p: p.start):
        start = datetime.combine(day, time.fromisoformat(p.start), tz)
        end = datetime.combine(day, time.fromisoformat(p.end), tz)
        timed.append(_slot(day, p.number, start, end, p.subject, booked.pop(p.number, None), lookup))
    # A channel may book a period this room does not have that day: list it rather than lose it.
    untimed = [b for b in merged if b.period == WHOLE_DAY] + sorted(booked.values(), key=lambda b: b.period)
    midnight = datetime.combine(day, time(0), tz)
    whole = [_slot(day, b.period, midnight, midnight + timedelta(days=1), "", b, lookup, timed=False)
             for b in untimed]
    return whole + timed


def _slot(day: date, number: int, start: datetime, end: datetime, subject: str, booking: Booking | None,
          lookup: Lookup, timed: bool = True) -> Slot:
    if booking is None:
        return Slot(day, number, start, end, subject, None, None, False, None, "", timed)
    title, ready = lookup(booking.lesson)
    return Slot(day, number, start, end, subject, booking.lesson, title, ready, booking.source, booking.note, timed)


def now_and_next(periods: Iterable[Period], bookings: Iterable[Booking], at: datetime, lookup: Lookup) -> NowNext:
    """Return the period on at `at` (start <= at < end), the next period to start, and today's slots."""
    periods, bookings = list(periods), list(bookings)
    today = slots_on(periods, bookings, at.date(), lookup, at.tzinfo)
    now = next((s for s in today if s.timed and s.start <= at < s.end), None)
    coming = next((s for s in today if s.timed and s.start > at), None)
    for ahead in range(1, LOOKAHEAD_DAYS + 1):
        if coming is not None:
            break
        day = at.date() + timedelta(days=ahead)
        coming = next((s for s in slots_on(periods, bookings, day, lookup, at.tzinfo) if s.timed), None)
    return NowNext(now, coming, tuple(today))


# ---------------------------------------------------------------- a hub channel's schedule


def channel_bookings(entries: Iterable[Mapping[str, Any]], room_name: str, room_class: str | None, *,
                     source: str) -> list[Booking]:
    """Turn a channel's schedule entries into one room's bookings; a room or class given must match."""
    out = []
    for e in entries:
        if "room" in e and e["room"] != room_name:
            continue
        if "class" in e and (not room_class or e["class"] != room_class):
            continue
        note = e.get("note", "") if isinstance(e.get("note"), str) else ""  # the manifest check leaves it untyped
        out.append(Booking(e["date"], e.get("period", WHOLE_DAY), e["lesson"], source, note))
    return out


# ---------------------------------------------------------------- the store


class Timetables:
    """Each room's timetable and local bookings, in the state database."""

    def __init__(self, state: State) -> None:
        self.state = state

    def periods(self, room: str) -> list[Period]:
        """Return a room's periods in week order; none if it has no timetable yet."""
        with self.state.transaction() as db:
            doc = db.table("timetable").get(where("room") == room)
        return [Period(**p) for p in doc["periods"]] if doc else []

    def set_periods(self, room: str, raw: Any) -> list[Period]:
        """Replace a room's whole timetable with a valid one; on InvalidInput nothing changes."""
        periods = parse_timetable(raw)
        with self.state.transaction() as db:
            db.table("timetable").upsert({"room": room, "periods": [asdict(p) for p in periods]},
                                         where("room") == room)
        return periods

    def bookings(self, room: str, start: date, end: date) -> list[Booking]:
        """Return a room's local bookings from start to end, both included, in date and period order."""
        first, last = start.isoformat(), end.isoformat()
        with self.state.transaction() as db:
            docs = db.table("bookings").search((where("room") == room) & (where("date") >= first)
                                               & (where("date") <= last))
        found = [Booking(d["date"], d["period"], d["lesson"], LOCAL, d.get("note", "")) for d in docs]
        return sorted(found, key=lambda b: (b.date, b.period))

    def book(self, room: str, date: str, period: int, lesson: str, note: str = "") -> Booking:
        """Attach a lesson to a date and period of a room, replacing what was booked there."""
        weekday = _parse_date(date).isoweekday()
        if not isinstance(lesson, str) or not lesson.strip():
            raise InvalidInput("lesson must be a lesson id")
        if not isinstance(note, str):
            raise InvalidInput("note must be text")
        with self.state.transaction() as db:
            if not any(p.weekday == weekday and p.number == period and not isinstance(period, bool)
                       for p in self.periods(room)):
                raise InvalidInput(f"period {period!r} is not in room {room!r}'s timetable on {date}")
            match = (where("room") == room) & (where("date") == date) & (where("period") == period)
            db.table("bookings").upsert({"room": room, "date": date, "period": period, "lesson": lesson,
                                         "note": note}, match)
        return Booking(date, period, lesson, LOCAL, note)

    def unbook(self, room: str, date: str, period: int) -> bool:
        """Remove a local booking; return whether there was one (so a retried request is harmless)."""
        match = (where("room") == room) & (where("date") == date) & (where("period") == period)
        with self.state.transaction() as db:
            return bool(db.table("bookings").remove(match))
