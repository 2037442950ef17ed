"""Rooms as the teacher uses them: commands, pause points, where a lesson was left, pairing, waiting screens."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from classbox import keys
from classbox.box import DEMO_KEY, DEMO_ROOT, Box
from classbox.classroom import DEFAULT_ROOM, Classroom
from classbox.config import Config
from classbox.errors import Conflict, InvalidInput, NotFound

ROOM = DEFAULT_ROOM


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def demo_box(tmp_path: Path) -> Box:
    box = Box(Config.from_env({}, data_dir=tmp_path / "data", demo=False))
    box.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
    yield box
    box.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def room(demo_box: Box, clock: Clock) -> Classroom:
    return Classroom(demo_box.state, demo_box.catalog, demo_box.events, max_waiters=2, clock=clock)


def lesson_with_points(box: Box) -> tuple[str, list[float]]:
    for entry in box.catalog.browse({}).entries:
        points = [p.at for a in entry.lesson.assets for p in a.pause_points]
        if len(points) >= 2:
            return entry.lesson.id, points
    raise AssertionError("the demo has a lesson with two pause points")


class Remote:
    """A phone: numbers its commands like the real one does."""

    def __init__(self, classroom: Classroom, client: str) -> None:
        self.classroom, self.client, self.n = classroom, client, 0

    def __call__(self, cmd: str, **args: object):  # type: ignore[no-untyped-def]
        self.n += 1
        return self.classroom.command(ROOM, self.client, self.n, cmd, args)


def test_play_runs_to_the_pause_point_and_stops_there_with_its_prompt(room: Classroom, demo_box: Box,
                                                                       clock: Clock) -> None:
    lesson, points = lesson_with_points(demo_box)
    phone = Remote(room, "phone-a")
    phone("open", lesson=lesson)
    phone("play")
    clock.now += points[0] - 0.5
    s = room.current(ROOM)
    assert s.playing and s.prompt is None and abs(s.position_at(clock.now) - (points[0] - 0.5)) < 1e-6
    clock.now += 1.0
    s = room.current(ROOM)
    assert not s.playing and s.position == points[0] and s.prompt
    phone("play")  # resume: goes on past the point it stopped at
    clock.now += 0.2
    s = room.current(ROOM)
    assert s.playing and s.prompt is None
    kinds = [e.kind for e in demo_box.events.read()]
    assert kinds == ["open", "play", "pause_point", "resume"]
    assert [e.seq for e in demo_box.events.read()] == [1, 2, 3, 4]


def test_repeated_and_late_commands_apply_once_and_the_last_command_wins(room: Classroom, demo_box: Box,
                                                                         clock: Clock) -> None:
    lesson, _ = lesson_with_points(demo_box)
    room.command(ROOM, "a", 1, "open", {"lesson": lesson})
    room.command(ROOM, "a", 2, "play", {})
    clock.now += 0.5
    paused = room.command(ROOM, "a", 3, "pause", {})
    again = room.command(ROOM, "a", 3, "pause", {})
    late = room.command(ROOM, "a", 2, "play", {})  # arrives after 3: stale, not applied
    assert paused.version == again.version == late.version and not late.playing
    other = room.command(ROOM, "b", 1, "play", {})  # a second phone: its command wins, for everyone
    assert other.playing and room.current(ROOM).playing
    assert [e.kind for e in demo_box.events.read()].count("pause") == 1


def test_bad_commands_name_the_problem_and_change_nothing(room: Classroom, demo_box: Box) -> None:
    before = room.current(ROOM)
    with pytest.raises(NotFound, match="no-such-lesson"):
        room.command(ROOM, "a", 1, "open", {"lesson": "no-such-lesson"})
    with pytest.raises(InvalidInput, match="cmd"):
        room.command(ROOM, "a", 2, "dance", {})
    with pytest.raises(InvalidInput, match="seek"):
        room.command(ROOM, "a", 3, "seek", {"by": "far"})
    with pytest.raises(Conflict, match="no lesson is open"):
        room.command(ROOM, "a", 4, "play", {})
    with pytest.raises(NotFound, match="no room"):
        room.command("火星教室", "a", 5, "play", {})
    assert room.current(ROOM) == before
    assert demo_box.events.read() == []


def test_reopening_offers_where_it_was_left(room: Classroom, demo_box: Box, clock: Clock,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("classbox.classroom.OFFER_AFTER", 1.0)  # the demo's videos are seconds long
    lesson, points = lesson_with_points(demo_box)
    phone = Remote(room, "p")
    phone("open", lesson=lesson)
    phone("play")
    clock.now += points[0] - 1.0
    phone("pause")
    phone("stop")
    reopened = phone("open", lesson=lesson)
    assert reopened.offer == pytest.approx(points[0] - 1.0) and reopened.position == 0
    resumed = phone("open", lesson=lesson, start="resume")
    assert resumed.position == pytest.approx(points[0] - 1.0) and resumed.offer is None
    assert phone("open", lesson=lesson, start="beginning").position == 0


def test_own_pause_points_are_kept_for_next_time(room: Classroom, demo_box: Box, clock: Clock) -> None:
    lesson, points = lesson_with_points(demo_box)
    phone = Remote(room, "p")
    phone("open", lesson=lesson)
    phone("seek", by=1.0)
    s = phone("add_point", note="请同桌互相说一说")
    assert any(p.own and p.at == 1.0 and p.prompt == "请同桌互相说一说" for p in s.points)
    s = phone("remove_point", at=points[0])  # the lesson's own: skipped in this room from now on
    assert all(p.at != points[0] for p in s.points)
    fresh = Classroom(demo_box.state, demo_box.catalog, demo_box.events, clock=clock)  # after a restart
    s = fresh.command(ROOM, "q", 1, "open", {"lesson": lesson})
    assert [p.at for p in s.points] == sorted([1.0, *points[1:]])


def test_documents_are_shown_page_by_page(room: Classroom, demo_box: Box) -> None:
    entry = next(e for e in demo_box.catalog.browse({}).entries if any(a.pages for a in e.lesson.assets))
    asset = next(i for i, a in enumerate(entry.lesson.assets) if a.pages)
    phone = Remote(room, "p")
    phone("open", lesson=entry.lesson.id)
    phone("play")
    s = phone("document", asset=asset, page=0)
    assert s.document == asset and s.page == 0 and not s.playing
    s = phone("page", step=1)
    assert s.page == min(1, len(entry.lesson.assets[asset].pages) - 1)
    with pytest.raises(InvalidInput, match="page"):
        phone("document", asset=asset, page=99)
    assert phone("close_document").document is None


def test_pairing_by_room_code(room: Classroom) -> None:
    code = room.code(ROOM)
    assert len(code) == 6 and code.isdigit()
    with pytest.raises(InvalidInput, match="wrong room code"):
        room.pair(ROOM, "000000" if code != "000000" else "111111", "10.0.0.9")
    token, expires = room.pair(ROOM, code, "10.0.0.9")
    assert room.paired_room(token) == ROOM and room.paired_room("forged") is None
    assert expires - room.clock() <= 86400
    for _ in range(10):
        with pytest.raises((InvalidInput, Conflict)):
            room.pair(ROOM, "abc", "10.0.0.66")
    with pytest.raises(Conflict, match="too many"):
        room.pair(ROOM, code, "10.0.0.66")  # even the right code, until the wait is over


def test_a_waiting_screen_is_woken_by_a_command(demo_box: Box) -> None:
    classroom = demo_box.classroom
    lesson, _ = lesson_with_points(demo_box)
    version = classroom.current(ROOM).version
    got: list[float] = []

    def screen() -> None:
        state, waited = classroom.wait(ROOM, version, 10)
        assert waited and state.lesson == lesson
        got.append(time.monotonic())

    t = threading.Thread(target=screen)
    t.start()
    time.sleep(0.2)
    sent = time.monotonic()
    classroom.command(ROOM, "p", 1, "open", {"lesson": lesson})
    t.join(5)
    assert got and got[0] - sent < 0.1


def test_waiting_screens_never_take_every_thread(room: Classroom) -> None:
    version = room.current(ROOM).version
    threads = [threading.Thread(target=room.wait, args=(ROOM, version, 1.0), daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 2
    while room.waiting() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    state, waited = room.wait(ROOM, version, 5.0)
    assert not waited, "a third screen is told to poll instead of parking"
    for t in threads:
        t.join(3)
        assert not t.is_alive(), "a wait ends after its timeout in real time, whatever the room's clock says"


def test_at_the_start_of_a_period_its_lesson_opens_ready_to_play(room: Classroom, demo_box: Box,
                                                                  clock: Clock) -> None:
    import datetime

    start = datetime.datetime.fromtimestamp(clock.now).replace(hour=8, minute=0, second=0, microsecond=0)
    clock.now = start.timestamp() - 60  # 07:59
    day = start.date()
    weekday = day.isoweekday()
    room.timetables.set_periods(ROOM, [
        {"weekday": weekday, "number": 1, "start": "08:00", "end": "08:40", "subject": "语文"},
        {"weekday": weekday, "number": 2, "start": "08:50", "end": "09:30", "subject": "数学"},
    ])
    lesson, _ = lesson_with_points(demo_box)
    room.timetables.book(ROOM, day.isoformat(), 1, lesson)
    room.timetables.book(ROOM, day.isoformat(), 2, "not-downloaded-yet")
    today = room.today(ROOM)
    assert today.now is None and today.next is not None and today.next.lesson == lesson and today.next.ready
    assert room.current(ROOM).lesson is None

    clock.now = start.timestamp() + 1  # 08:00:01
    s = room.current(ROOM)
    assert s.lesson == lesson and not s.playing, "opened, not playing"
    assert room.today(ROOM).now.period == 1

    clock.now = start.timestamp() + 50 * 60 + 1  # 08:50:01: period 2's lesson is not on the box
    later = room.today(ROOM)
    assert later.now.period == 2 and later.now.ready is False and later.now.title is None
    assert room.current(ROOM).lesson == lesson, "nothing to open: the room stays as it was"
    assert [e.kind for e in demo_box.events.read()] == ["open"]


def test_a_day_without_periods_has_no_now(room: Classroom, clock: Clock) -> None:
    today = room.today(ROOM)
    assert today.now is None and today.next is None and today.today == ()
