"""The timetable: what is on now and next by a frozen clock, strict validation, and the store."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from classbox.errors import InvalidInput
from classbox.schedule import (
    Booking,
    Timetables,
    channel_bookings,
    now_and_next,
    parse_timetable,
    slots_on,
)
from classbox.storage import State

# 2026-03-02 is a Monday; 03-06 a Friday, 03-07/08 the weekend.
MON, TUE, FRI, SAT, SUN, NEXT_MON = "2026-03-02", "2026-03-03", "2026-03-06", "2026-03-07", "2026-03-08", "2026-03-09"


def _week() -> list[dict[str, Any]]:
    """Return a school week: three periods Monday to Friday, nothing at the weekend."""
    rows = []
    for weekday in range(1, 6):
        rows += [
            {"weekday": weekday, "number": 1, "start": "08:00", "end": "08:40", "subject": "语文"},
            {"weekday": weekday, "number": 2, "start": "08:50", "end": "09:30", "subject": "数学"},
            {"weekday": weekday, "number": 3, "start": "10:00", "end": "10:40", "subject": "英语"},
        ]
    return rows


PERIODS = parse_timetable(_week())
CATALOGUE = {"math-1": ("认识数字", True), "poem-2": ("静夜思", False)}


def lookup(lesson_id: str) -> tuple[str | None, bool]:
    """Answer like the catalogue: a title if known, and whether every asset is here."""
    return CATALOGUE.get(lesson_id, (None, False))


def at(day: str, hhmm: str) -> datetime:
    """Return a frozen clock reading."""
    return datetime.fromisoformat(f"{day}T{hhmm}")


# ---------------------------------------------------------------- now and next


def test_before_the_first_period_nothing_is_on_and_the_first_is_next() -> None:
    result = now_and_next(PERIODS, [], at(MON, "07:30"), lookup)
    assert result.now is None
    assert result.next is not None and (result.next.period, result.next.start) == (1, at(MON, "08:00"))
    assert [s.subject for s in result.today] == ["语文", "数学", "英语"]


def test_exactly_at_a_start_that_period_is_now() -> None:
    result = now_and_next(PERIODS, [], at(MON, "08:50"), lookup)
    assert result.now is not None and result.now.period == 2
    assert result.next is not None and result.next.period == 3


def test_exactly_at_an_end_the_period_is_over() -> None:
    result = now_and_next(PERIODS, [], at(MON, "08:40"), lookup)
    assert result.now is None
    assert result.next is not None and result.next.period == 2
    one_minute_before = now_and_next(PERIODS, [], at(MON, "08:39"), lookup)
    assert one_minute_before.now is not None and one_minute_before.now.period == 1


def test_between_periods_next_is_the_coming_one() -> None:
    result = now_and_next(PERIODS, [], at(MON, "09:45"), lookup)
    assert result.now is None
    assert result.next is not None and (result.next.date, result.next.period) == (date(2026, 3, 2), 3)


def test_after_the_last_period_next_is_tomorrows_first() -> None:
    result = now_and_next(PERIODS, [], at(MON, "10:40"), lookup)
    assert result.now is None
    assert result.next is not None and result.next.start == at(TUE, "08:00")
    assert len(result.today) == 3


def test_after_fridays_last_period_next_is_mondays_first() -> None:
    result = now_and_next(PERIODS, [], at(FRI, "16:00"), lookup)
    assert result.next is not None and result.next.start == at(NEXT_MON, "08:00")


def test_a_weekend_has_no_lessons_and_next_is_monday() -> None:
    for day in (SAT, SUN):
        result = now_and_next(PERIODS, [], at(day, "09:00"), lookup)
        assert result.now is None
        assert result.today == ()
        assert result.next is not None and (result.next.start, result.next.subject) == (at(NEXT_MON, "08:00"), "语文")


def test_a_room_with_no_timetable_has_no_now_or_next() -> None:
    result = now_and_next([], [Booking(MON, 0, "math-1", "hub")], at(MON, "09:00"), lookup)
    assert (result.now, result.next) == (None, None)
    assert [s.lesson for s in result.today] == ["math-1"]


def test_a_period_only_on_a_later_weekday_is_found_within_a_week() -> None:
    wednesday_only = parse_timetable([{"weekday": 3, "number": 1, "start": "08:00", "end": "08:40", "subject": "美术"}])
    result = now_and_next(wednesday_only, [], at("2026-03-04", "09:00"), lookup)
    assert result.next is not None and result.next.start == at("2026-03-11", "08:00")


def test_a_booked_lesson_not_yet_downloaded_is_shown_but_not_ready() -> None:
    bookings = [Booking(MON, 1, "poem-2", "local"), Booking(MON, 2, "math-1", "local", note="带上计数棒")]
    result = now_and_next(PERIODS, bookings, at(MON, "08:10"), lookup)
    assert result.now is not None
    assert (result.now.lesson, result.now.title, result.now.ready) == ("poem-2", "静夜思", False)
    assert result.next is not None
    assert (result.next.lesson, result.next.title, result.next.ready, result.next.note) == (
        "math-1", "认识数字", True, "带上计数棒")
    assert result.today[2].lesson is None and result.today[2].ready is False


def test_a_lesson_the_catalogue_does_not_know_has_no_title() -> None:
    [slot] = [s for s in slots_on(PERIODS, [Booking(MON, 3, "coming-soon", "hub")], date(2026, 3, 2), lookup)
              if s.lesson]
    assert (slot.title, slot.ready, slot.source) == (None, False, "hub")


def test_a_local_booking_overrides_the_channels_for_the_same_period() -> None:
    bookings = [Booking(MON, 1, "math-1", "local"), Booking(MON, 1, "poem-2", "hub"), Booking(MON, 2, "poem-2", "hub")]
    slots = slots_on(PERIODS, bookings, date(2026, 3, 2), lookup)
    assert [(s.lesson, s.source) for s in slots] == [("math-1", "local"), ("poem-2", "hub"), (None, None)]
    reordered = slots_on(PERIODS, list(reversed(bookings)), date(2026, 3, 2), lookup)
    assert reordered == slots


def test_a_date_only_channel_entry_is_listed_for_the_day_but_never_now() -> None:
    bookings = channel_bookings([{"lesson": "poem-2", "date": MON, "note": "本周内看完"}], "一年级教室", "一年级",
                                source="hub")
    assert bookings == [Booking(MON, 0, "poem-2", "hub", "本周内看完")]
    result = now_and_next(PERIODS, bookings, at(MON, "00:00"), lookup)
    assert result.now is None
    assert result.next is not None and result.next.period == 1
    whole_day = result.today[0]
    assert (whole_day.period, whole_day.timed, whole_day.lesson, whole_day.note) == (0, False, "poem-2", "本周内看完")
    assert [s.period for s in result.today] == [0, 1, 2, 3]


def test_a_booking_for_a_period_the_day_lacks_is_listed_not_lost() -> None:
    slots = slots_on(PERIODS, [Booking(MON, 7, "math-1", "hub")], date(2026, 3, 2), lookup)
    assert [(s.period, s.timed, s.lesson) for s in slots][0] == (7, False, "math-1")
    result = now_and_next(PERIODS, [Booking(MON, 7, "math-1", "hub")], at(MON, "23:00"), lookup)
    assert result.now is None and result.next is not None and result.next.date == date(2026, 3, 3)


def test_channel_entries_go_to_the_room_or_class_they_name() -> None:
    entries = [
        {"lesson": "a", "date": MON, "period": 1},
        {"lesson": "b", "date": MON, "period": 2, "room": "一年级教室"},
        {"lesson": "c", "date": MON, "period": 2, "room": "二年级教室"},
        {"lesson": "d", "date": MON, "period": 3, "class": "一年级"},
        {"lesson": "e", "date": MON, "period": 3, "class": "二年级"},
        {"lesson": "f", "date": MON, "period": 3, "class": "一年级", "room": "二年级教室"},
    ]
    mine = channel_bookings(entries, "一年级教室", "一年级", source="hub")
    assert [b.lesson for b in mine] == ["a", "b", "d"]
    assert all(b.source == "hub" for b in mine)
    unlabelled = channel_bookings(entries, "一年级教室", None, source="hub")
    assert [b.lesson for b in unlabelled] == ["a", "b"]


def test_aware_clock_readings_are_compared_in_their_own_zone() -> None:
    reading = datetime.fromisoformat(f"{MON}T08:10+08:00")
    result = now_and_next(PERIODS, [], reading, lookup)
    assert result.now is not None and result.now.start == datetime.fromisoformat(f"{MON}T08:00+08:00")


# ---------------------------------------------------------------- validation


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"weekday": 1, "number": 1, "start": "08:00", "end": "08:40", "subject": "语文"}
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([_row(weekday=0)], ["row 1", "weekday"]),
        ([_row(weekday=8)], ["row 1", "weekday"]),
        ([_row(weekday=True)], ["row 1", "weekday"]),
        ([_row(number=13)], ["row 1", "number"]),
        ([_row(number="1")], ["row 1", "number"]),
        ([_row(start="8:00")], ["row 1", "start"]),
        ([_row(end="24:00")], ["row 1", "end"]),
        ([_row(start="09:00", end="08:00")], ["row 1", "end", "after start"]),
        ([_row(start="08:00", end="08:00")], ["row 1", "end"]),
        ([_row(subject="")], ["row 1", "subject"]),
        ([_row(subject="   ")], ["row 1", "subject"]),
        ([_row(subject="长" * 21)], ["row 1", "subject"]),
        ([_row(subject=None)], ["row 1", "subject", "missing"]),
        ([_row(room="x")], ["row 1", "room", "unknown"]),
        ([_row(), "08:00"], ["row 2"]),
        ([_row(), _row(number=2, start="08:30", end="09:10")], ["row 2", "overlaps row 1"]),
        ([_row(number=2, start="08:30", end="09:10"), _row()], ["row 2", "overlaps row 1"]),
        ([_row(), _row(start="09:00", end="09:40")], ["row 2", "number", "already used"]),
    ],
)
def test_a_bad_timetable_is_refused_naming_the_row_and_field(rows: list[Any], words: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_timetable(rows)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_timetable_must_be_a_list() -> None:
    with pytest.raises(InvalidInput, match="list"):
        parse_timetable({"weekday": 1})


def test_a_valid_timetable_allows_touching_periods_and_the_same_number_on_other_days() -> None:
    periods = parse_timetable([
        _row(weekday=2, number=2, start="08:40", end="09:20"),
        _row(weekday=2),
        _row(weekday=1, number=2, start="08:40", end="09:20", subject=" 数学 "),
        _row(weekday=7, number=12, start="23:00", end="23:59"),
    ])
    assert [(p.weekday, p.number) for p in periods] == [(1, 2), (2, 1), (2, 2), (7, 12)]
    assert periods[0].subject == "数学"


# ---------------------------------------------------------------- the store


@pytest.fixture
def state(tmp_path: Path) -> State:
    """Return a real state database in a temp directory."""
    return State(tmp_path / "state.json")


def test_a_timetable_and_bookings_survive_a_restart(state: State, tmp_path: Path) -> None:
    tables = Timetables(state)
    assert tables.periods("一年级教室") == []
    assert tables.set_periods("一年级教室", _week()) == PERIODS
    tables.set_periods("二年级教室", [_row(subject="美术")])
    tables.book("一年级教室", MON, 2, "math-1", note="带上计数棒")
    tables.book("一年级教室", TUE, 1, "poem-2")
    tables.book("二年级教室", MON, 1, "poem-2")
    state.close()

    again = Timetables(State(tmp_path / "state.json"))
    assert again.periods("一年级教室") == PERIODS
    assert [p.subject for p in again.periods("二年级教室")] == ["美术"]
    assert again.bookings("一年级教室", date(2026, 3, 2), date(2026, 3, 2)) == [
        Booking(MON, 2, "math-1", "local", "带上计数棒")]
    assert [b.date for b in again.bookings("一年级教室", date(2026, 3, 1), date(2026, 3, 31))] == [MON, TUE]
    assert again.bookings("一年级教室", date(2026, 3, 4), date(2026, 3, 31)) == []


def test_a_rejected_timetable_leaves_the_old_one(state: State, tmp_path: Path) -> None:
    tables = Timetables(state)
    tables.set_periods("一年级教室", _week())
    before = (tmp_path / "state.json").read_bytes()
    with pytest.raises(InvalidInput, match="row 4"):
        tables.set_periods("一年级教室", [_row(subject="新课"), _row(number=2, start="09:00", end="09:40"),
                                          _row(number=3, start="10:00", end="10:40"), _row(weekday=9)])
    assert tables.periods("一年级教室") == PERIODS
    assert (tmp_path / "state.json").read_bytes() == before


def test_booking_again_replaces_and_unbooking_is_harmless_to_repeat(state: State) -> None:
    tables = Timetables(state)
    tables.set_periods("一年级教室", _week())
    tables.book("一年级教室", MON, 1, "math-1")
    tables.book("一年级教室", MON, 1, "poem-2")
    assert [b.lesson for b in tables.bookings("一年级教室", date(2026, 3, 2), date(2026, 3, 2))] == ["poem-2"]
    assert tables.unbook("一年级教室", MON, 1) is True
    assert tables.unbook("一年级教室", MON, 1) is False
    assert tables.bookings("一年级教室", date(2026, 3, 2), date(2026, 3, 2)) == []


@pytest.mark.parametrize(
    ("day", "period", "lesson", "words"),
    [
        ("2026-3-2", 1, "math-1", "YYYY-MM-DD"),
        ("2026-02-30", 1, "math-1", "not a date"),
        (SAT, 1, "math-1", "period 1"),
        (MON, 4, "math-1", "period 4"),
        (MON, True, "math-1", "period"),
        (MON, 1, "", "lesson"),
    ],
)
def test_a_bad_booking_is_refused(state: State, day: str, period: Any, lesson: str, words: str) -> None:
    tables = Timetables(state)
    tables.set_periods("一年级教室", _week())
    with pytest.raises(InvalidInput, match=words):
        tables.book("一年级教室", day, period, lesson)
    assert tables.bookings("一年级教室", date(2026, 1, 1), date(2026, 12, 31)) == []


def test_a_room_without_a_timetable_cannot_be_booked(state: State) -> None:
    with pytest.raises(InvalidInput, match="timetable"):
        Timetables(state).book("三年级教室", MON, 1, "math-1")


def test_local_bookings_and_a_channel_schedule_meet_on_the_tv(state: State) -> None:
    tables = Timetables(state)
    tables.set_periods("一年级教室", _week())
    tables.book("一年级教室", MON, 1, "math-1")
    hub = channel_bookings([{"lesson": "poem-2", "date": MON, "period": 1},
                            {"lesson": "poem-2", "date": MON, "period": 2, "class": "一年级"}], "一年级教室", "一年级",
                           source="hub")
    local = tables.bookings("一年级教室", date(2026, 3, 2), date(2026, 3, 9))
    result = now_and_next(tables.periods("一年级教室"), hub + local, at(MON, "08:00"), lookup)
    assert result.now is not None and (result.now.lesson, result.now.source) == ("math-1", "local")
    assert result.next is not None and (result.next.lesson, result.next.source) == ("poem-2", "hub")
    assert json.loads((state.path).read_text())["bookings"]  # written through the state file
