"""The append-only playback log: every open, play, pause, prompt and finish of every room.

Events go to `events/YYYY-MM-DD.jsonl` (the event's local date), one JSON object a
line, each with a sequence number that increases across days and restarts so the
hub can take them by number. Writing an event costs one append and one fsync,
whatever the size of the log. A power cut leaves at most a torn last line, which
readers skip and the next append cuts off first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import storage
from .errors import InvalidInput

log = logging.getLogger(__name__)

KINDS = ("open", "play", "pause", "pause_point", "resume", "seek", "page", "prompt", "finish", "stop")
DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.jsonl$")
TAIL_BLOCK = 4096


@dataclass(frozen=True)
class Event:
    """One thing that happened in a room, as logged."""

    seq: int
    time: float
    kind: str
    room: str
    lesson: str | None
    position: float | None
    detail: dict[str, Any]

    def to_json(self) -> str:
        """Encode the event as one line of JSON, without the newline."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> Event:
        """Decode one logged line; raise ValueError if it is not a whole event."""
        try:
            d = json.loads(line)
            return cls(seq=int(d["seq"]), time=float(d["time"]), kind=str(d["kind"]), room=str(d["room"]),
                       lesson=d["lesson"], position=d["position"], detail=dict(d["detail"]))
        except (KeyError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"not an event: {exc}") from None


class EventLog:
    """The one owner of the events directory: appends events and reads them back in order."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._lock = threading.Lock()
        self._checked: set[Path] = set()  # files known to end on a whole line in this process
        storage.make_dirs(self.directory)
        # The newest file by name need not hold the highest number: a box without a
        # clock battery can come back from a power cut an hour or a day in the past.
        # So look at the last whole record of every day file: one small read each.
        self._last_seq = max((last_seq_in(p) for p in self._paths()), default=0)

    @property
    def last_seq(self) -> int:
        """Return the sequence number of the last event appended (0 for an empty log)."""
        with self._lock:
            return self._last_seq

    def days(self) -> list[str]:
        """Return the dates (YYYY-MM-DD) that have a log file, oldest first."""
        return [p.stem for p in self._paths()]

    def append(self, kind: str, room: str, lesson: str | None = None, position: float | None = None,
               **detail: Any) -> Event:
        """Log one event durably and return it; raise InvalidInput naming a bad field."""
        if kind not in KINDS:
            raise InvalidInput(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(room, str) or not room.strip():
            raise InvalidInput("room: must be a non-empty string")
        if lesson is not None and not isinstance(lesson, str):
            raise InvalidInput("lesson: must be a string or null")
        position = _seconds(position)
        with self._lock:
            now = self._clock()
            event = Event(self._last_seq + 1, now, kind, room, lesson, position, detail)
            try:
                line = (event.to_json() + "\n").encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"detail: cannot be logged as JSON ({exc})") from None
            path = self.directory / time.strftime("%Y-%m-%d.jsonl", time.localtime(now))
            try:
                if path not in self._checked:
                    storage.truncate_torn_tail(path)
                    self._checked.add(path)
                storage.append_record(path, line)
            except OSError:
                # The line may be on disk in whole or in part: never hand its number out
                # again, and cut whatever part of it is there before the next append.
                self._last_seq = event.seq
                self._checked.discard(path)
                raise
            self._last_seq = event.seq
        return event

    def read(self, since: int = 0, limit: int | None = None) -> list[Event]:
        """Return the events numbered above since, in order, at most limit of them."""
        if limit is not None and limit < 0:
            raise InvalidInput(f"limit: {limit} is negative")
        events: list[Event] = []
        for path in self._paths():
            try:
                if since and last_seq_in(path) <= since:  # a file's last event is its highest
                    continue
                with self._lock:  # an append in flight would look like a torn line
                    data = path.read_bytes()
            except FileNotFoundError:  # removed since listed
                continue
            lines = data.split(b"\n")
            if lines[-1]:
                log.warning("skipped a torn last line (%d bytes) in %s", len(lines[-1]), path)
            for number, line in enumerate(lines[:-1], 1):
                if not line.strip():
                    continue
                try:
                    event = Event.from_json(line)
                except ValueError as exc:
                    log.warning("skipped line %d of %s: %s", number, path, exc)
                    continue
                if event.seq > since:
                    events.append(event)
        events.sort(key=lambda e: e.seq)  # already in order unless the clock went back
        return events if limit is None else events[:limit]

    def _paths(self) -> list[Path]:
        """Return the day files, oldest date first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return [self.directory / n for n in sorted(names) if DAY_FILE.match(n)]


def _seconds(position: float | None) -> float | None:
    """Return a playback position as float seconds; raise InvalidInput unless it is None or a number ≥ 0."""
    if position is None:
        return None
    number = isinstance(position, int | float) and not isinstance(position, bool)
    if not number or not math.isfinite(position) or position < 0:
        raise InvalidInput(f"position: {position!r} is not a number of seconds ≥ 0")
    return float(position)


def last_seq_in(path: Path) -> int:
    """Return the number of the last whole event in a log file by reading back from its end (0 if none)."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        block = TAIL_BLOCK
        while True:
            start = max(0, end - block)
            f.seek(start)
            lines = f.read(end - start).split(b"\n")
            # lines[-1] is torn or empty; lines[0] may be cut unless the block reaches the start.
            whole = lines[1:-1] if start > 0 else lines[:-1]
            for line in reversed(whole):
                try:
                    return Event.from_json(line).seq
                except ValueError:
                    continue
            if start == 0:
                return 0
            block *= 4
