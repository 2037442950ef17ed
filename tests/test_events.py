"""The playback log keeps every acknowledged event, numbers them without repeats, and survives a torn tail."""

from __future__ import annotations

import json
import logging
import os
import random
import select
import signal
import threading
import time
from pathlib import Path

import pytest

from classbox.errors import InvalidInput
from classbox.events import KINDS, Event, EventLog

from .conftest import read_acks

DAY = 24 * 3600


def local(year: int, month: int, day: int, hour: int = 8, minute: int = 0) -> float:
    """Return the epoch time of a local wall-clock time."""
    return time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))


class Clock:
    """A clock the test sets by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_events_are_appended_as_json_lines_in_the_file_of_their_local_date(tmp_path: Path) -> None:
    clock = Clock(local(2024, 9, 2, 23, 59))
    events = EventLog(tmp_path / "events", clock=clock)
    first = events.append("open", room="一年级教室", lesson="天地人")
    clock.now = local(2024, 9, 3, 0, 1)
    second = events.append("pause_point", room="一年级教室", lesson="天地人", position=2, prompt="请同学们读一读")

    assert (first.seq, second.seq) == (1, 2)
    assert second.position == 2.0 and second.detail == {"prompt": "请同学们读一读"}
    assert events.days() == ["2024-09-02", "2024-09-03"]
    lines = (tmp_path / "events" / "2024-09-03.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [
        {"seq": 2, "time": clock.now, "kind": "pause_point", "room": "一年级教室", "lesson": "天地人",
         "position": 2.0, "detail": {"prompt": "请同学们读一读"}},
    ]
    assert events.read() == [first, second]
    assert Event.from_json(second.to_json()) == second


def test_sequence_continues_across_days_and_restarts(tmp_path: Path) -> None:
    clock = Clock(local(2024, 9, 1))
    for _ in range(3):
        events = EventLog(tmp_path, clock=clock)
        for kind in ("open", "play", "finish"):
            events.append(kind, room="二年级", lesson="长度单位", position=None)
        clock.now += DAY
    events = EventLog(tmp_path, clock=clock)
    assert events.last_seq == 9
    assert [e.seq for e in events.read()] == list(range(1, 10))
    assert events.days() == ["2024-09-01", "2024-09-02", "2024-09-03"]
    assert [e.seq for e in events.read(since=4, limit=3)] == [5, 6, 7]
    assert events.read(since=9) == []


def test_sequence_continues_after_the_clock_went_back_a_day(tmp_path: Path) -> None:
    clock = Clock(local(2024, 9, 2))
    events = EventLog(tmp_path, clock=clock)
    events.append("play", room="r")
    clock.now -= DAY  # a box without a clock battery, back from a power cut
    events.append("pause", room="r")
    events.append("resume", room="r")

    again = EventLog(tmp_path, clock=clock)
    assert again.last_seq == 3
    assert again.append("stop", room="r").seq == 4
    assert [e.seq for e in again.read()] == [1, 2, 3, 4]
    assert [e.seq for e in again.read(since=2)] == [3, 4]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "rewind", "room": "r"}, "kind"),
        ({"kind": "play", "room": ""}, "room"),
        ({"kind": "play", "room": "  "}, "room"),
        ({"kind": "play", "room": "r", "position": -1.0}, "position"),
        ({"kind": "play", "room": "r", "position": float("nan")}, "position"),
        ({"kind": "play", "room": "r", "position": "12"}, "position"),
        ({"kind": "play", "room": "r", "position": True}, "position"),
        ({"kind": "play", "room": "r", "lesson": 7}, "lesson"),
        ({"kind": "page", "room": "r", "page": object()}, "detail"),
    ],
)
def test_a_bad_event_is_refused_naming_the_field_and_nothing_is_written(
        tmp_path: Path, kwargs: dict[str, object], field: str) -> None:
    events = EventLog(tmp_path)
    with pytest.raises(InvalidInput, match=f"^{field}:"):
        events.append(**kwargs)  # type: ignore[arg-type]
    assert events.last_seq == 0 and events.days() == []
    assert events.append("play", room="r").seq == 1


def test_every_kind_of_the_issue_can_be_logged(tmp_path: Path) -> None:
    events = EventLog(tmp_path)
    for kind in KINDS:
        events.append(kind, room="r", lesson="l", position=1.5)
    assert [e.kind for e in events.read()] == list(KINDS)


def test_torn_tail_is_skipped_and_the_next_append_gets_its_own_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(local(2024, 9, 2))
    events = EventLog(tmp_path, clock=clock)
    for _ in range(5):
        events.append("play", room="r", lesson="l", position=1.0)
    newest = tmp_path / "2024-09-02.jsonl"
    whole = newest.read_bytes()
    torn = Event(6, clock.now, "pause", "r", "l", 2.0, {}).to_json().encode()[:25]
    with newest.open("ab") as f:  # a power cut in the middle of appending event 6
        f.write(torn)

    with caplog.at_level(logging.WARNING, logger="classbox.events"):
        assert [e.seq for e in events.read()] == [1, 2, 3, 4, 5]
    assert "torn last line" in caplog.text

    reopened = EventLog(tmp_path, clock=clock)
    assert reopened.last_seq == 5
    sixth = reopened.append("resume", room="r", lesson="l", position=2.0)
    assert sixth.seq == 6
    assert newest.read_bytes() == whole + sixth.to_json().encode() + b"\n"
    assert [e.seq for e in reopened.read()] == [1, 2, 3, 4, 5, 6]


def test_a_day_file_holding_only_a_torn_line_does_not_reset_the_sequence(tmp_path: Path) -> None:
    clock = Clock(local(2024, 9, 2))
    events = EventLog(tmp_path, clock=clock)
    events.append("play", room="r")
    events.append("finish", room="r")
    (tmp_path / "2024-09-03.jsonl").write_bytes(b'{"seq":3,"ti')  # died on the first event of a new day

    clock.now += DAY
    reopened = EventLog(tmp_path, clock=clock)
    assert reopened.last_seq == 2
    assert reopened.append("open", room="r").seq == 3
    assert (tmp_path / "2024-09-03.jsonl").read_bytes().count(b"\n") == 1
    assert [e.seq for e in reopened.read()] == [1, 2, 3]


def test_an_undecodable_line_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(local(2024, 9, 2))
    events = EventLog(tmp_path, clock=clock)
    events.append("play", room="r")
    with (tmp_path / "2024-09-02.jsonl").open("ab") as f:
        f.write(b"\x00\x00garbage\n")
    events.append("pause", room="r")
    with caplog.at_level(logging.WARNING, logger="classbox.events"):
        assert [e.kind for e in events.read()] == ["play", "pause"]
    assert "skipped line 2" in caplog.text
    assert EventLog(tmp_path, clock=clock).last_seq == 2


def test_appends_from_many_threads_get_distinct_numbers(tmp_path: Path) -> None:
    events = EventLog(tmp_path)

    def tap(room: str) -> None:
        for i in range(25):
            events.append("page", room=room, page=i)

    threads = [threading.Thread(target=tap, args=(f"room{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in events.read()] == list(range(1, 101))


def _writer(directory: Path, start: float, ack_fd: int) -> None:
    """Run in a forked child: append forever, acknowledging each event after append() returns."""
    clock = Clock(start)
    events = EventLog(directory, clock=clock)
    kinds = ("play", "pause_point", "resume", "page")
    while True:
        n = events.last_seq + 1
        clock.now = start + 600 * n  # ten minutes an event: a new day file every 144 events
        event = events.append(kinds[n % 4], room="一年级", lesson="天地人", position=n / 2)
        os.write(ack_fd, f"{event.seq}\n".encode())


@pytest.mark.slow
def test_log_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    start = local(2024, 9, 1)
    rng = random.Random(4321)
    acked: set[int] = set()
    kills = 0
    while kills < 120:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer
            os.close(r)
            try:
                _writer(tmp_path, start, w)
            finally:
                os._exit(1)
        os.close(w)
        # Let it get going, then kill it somewhere inside an append.
        select.select([r], [], [], 5)
        time.sleep(rng.uniform(0, 0.01))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        acked.update(read_acks(r))
        os.close(r)
        kills += 1

        events = EventLog(tmp_path)
        seqs = [e.seq for e in events.read()]
        assert seqs == sorted(set(seqs)), f"kill {kills}: a sequence number repeats or is out of order"
        assert acked <= set(seqs), f"kill {kills}: acknowledged events {sorted(acked - set(seqs))[:5]} are lost"
        assert events.last_seq == seqs[-1]
        if kills % 10 == 0:  # now and then, a power cut tears the line that was being written
            newest = tmp_path / f"{events.days()[-1]}.jsonl"
            with newest.open("ab") as f:
                f.write(f'{{"seq":{seqs[-1] + 1},"time":{start},"kind":"pl'.encode())

    final = EventLog(tmp_path).read()
    assert [e.seq for e in final] == list(range(1, len(final) + 1)), "a number was skipped or repeated"
    for path in tmp_path.glob("*.jsonl"):
        for line in path.read_bytes().split(b"\n")[:-1]:  # all but a torn tail
            assert time.strftime("%Y-%m-%d", time.localtime(Event.from_json(line).time)) == path.stem
    assert len(acked) > 500
