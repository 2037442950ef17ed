"""What teaching points report to their hub: each box's playback log, every event stored once, and its last snapshot.

    <root>/<box id>/events.jsonl   the box's events in sequence order, one JSON object a line
    <root>/<box id>/latest.json    the last snapshot, when it came, and the high-water mark then

A box sends its log in batches by sequence number and may send a batch again (a lost answer, a
retry) or one that overlaps the last: only events above the high-water mark are appended, so none
counts twice. The high-water mark is the number of the last whole event in events.jsonl — the file
is the truth, latest.json only a copy — so a hub stopped between the two writes neither loses nor
repeats an event. A power cut mid-append leaves at most a torn last line, which readers skip and
the next append cuts off first.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from csv import writer as csv_writer
from datetime import date
from pathlib import Path
from typing import Any

from .. import storage
from ..errors import InvalidInput
from ..events import KINDS, Event, last_seq_in
from .points import BOX_ID_RE, TeachingPoint

log = logging.getLogger(__name__)

EVENTS = "events.jsonl"
LATEST = "latest.json"
BATCH_FIELDS = ("box_id", "first_seq", "last_seq", "events", "snapshot")
EVENT_FIELDS = ("seq", "time", "kind", "room", "lesson", "position", "detail")
MAX_EVENTS = 10_000  # per batch; a box sends 500
MAX_NAME = 200  # characters of a room name or lesson id
PAUSE_KINDS = ("pause", "pause_point")
CSV_HEADER = ("日期", "教室", "课程", "开始时间", "播放到(秒)", "是否播完", "暂停次数")
MAX_CSV_DAYS = 366
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Reports:
    """The one owner of the reports directory: takes batches in, and answers what each point played."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._high: dict[str, int] = {}  # box id -> last whole event number in its events.jsonl
        self._checked: set[str] = set()  # boxes whose events.jsonl is known to end on a whole line

    def ingest(self, point: TeachingPoint, batch: Any, now: float | None = None) -> int:
        """Store a batch from a point's box: append the events above the high-water mark, then the snapshot.

        Return the new high-water mark; raise InvalidInput naming what is wrong, storing nothing.
        """
        events, snapshot = check_batch(batch, point.box_id)
        box_id = point.box_id
        directory = self.root / box_id
        path = directory / EVENTS
        with self._lock(box_id):
            storage.make_dirs(directory)
            try:
                if box_id not in self._checked:
                    storage.truncate_torn_tail(path)
                    self._checked.add(box_id)
                high = self._high_water(box_id)
                new = [e for e in events if e.seq > high]
                if new:
                    storage.append_record(path, b"".join((e.to_json() + "\n").encode() for e in new))
            except OSError:
                # Some of the lines may be on disk, the last one torn: learn the mark from the file
                # again, and cut a torn line, before the next batch.
                self._high.pop(box_id, None)
                self._checked.discard(box_id)
                raise
            if new:
                self._high[box_id] = high = new[-1].seq
            latest = {"box_id": box_id, "last_seen": time.time() if now is None else now, "high_water": high,
                      "snapshot": snapshot}
            storage.atomic_write(directory / LATEST, json.dumps(latest, ensure_ascii=False).encode())
        if new:
            log.info("report from %s: %d new events, up to %d", box_id, len(new), high)
        return high

    def high_water(self, box_id: str) -> int:
        """Return the number of the last event stored for a box (0 if none)."""
        _check_box_id(box_id)
        with self._lock(box_id):
            return self._high_water(box_id)

    def latest(self, box_id: str) -> dict[str, Any] | None:
        """Return the last report's snapshot, last_seen and high_water, or None if the box never reported."""
        _check_box_id(box_id)
        try:
            data = (self.root / box_id / LATEST).read_bytes()
        except FileNotFoundError:
            return None
        try:
            latest = json.loads(data)
        except ValueError:
            log.error("%s is not JSON; it is replaced at the box's next report", self.root / box_id / LATEST)
            return None
        return latest if isinstance(latest, dict) else None

    def overview(self, box_id: str) -> dict[str, Any] | None:
        """Return what the hub shows of a point: last seen, disk free, sync state, the coming week's lessons."""
        latest = self.latest(box_id)
        if latest is None:
            return None
        snapshot = _mapping(latest.get("snapshot"))
        sync = _mapping(snapshot.get("sync"))
        upcoming = [e for e in snapshot.get("upcoming") or [] if isinstance(e, dict)]
        return {
            "last_seen": latest.get("last_seen"),
            "high_water": latest.get("high_water"),
            "disk_free_bytes": _mapping(snapshot.get("health")).get("disk_free_bytes"),
            "sync_state": sync.get("state"),
            "sync_last_error": sync.get("last_error"),
            "channel": snapshot.get("channel"),
            "upcoming": upcoming,
            "missing": [e for e in upcoming if not e.get("ready")],
        }

    def played(self, box_id: str, day: str) -> list[dict[str, Any]]:
        """Return per room and lesson played on a day: when first opened, how far, whether finished, pauses."""
        on = _day(day, "day")
        return summarise(self.events(box_id), on, on)

    def csv(self, box_id: str, first_day: str, last_day: str) -> str:
        """Return what was played from first_day to last_day as CSV with Chinese headers and a BOM, for Excel."""
        first, last = _day(first_day, "from"), _day(last_day, "to")
        if last < first:
            raise InvalidInput(f"to: {last_day} is before from: {first_day}", "to")
        if (last - first).days >= MAX_CSV_DAYS:
            raise InvalidInput(f"at most {MAX_CSV_DAYS} days at a time", "to")
        out = io.StringIO()
        out.write("\ufeff")  # without it Excel reads UTF-8 as the local code page and garbles the Chinese
        writer = csv_writer(out, lineterminator="\r\n")
        writer.writerow(CSV_HEADER)
        for row in summarise(self.events(box_id), first, last):
            writer.writerow([row["date"], _cell(row["room"]), _cell(row["lesson"]),
                             time.strftime("%H:%M:%S", time.localtime(row["first_opened"])),
                             f"{row['max_position']:.1f}", "是" if row["finished"] else "否", row["pauses"]])
        return out.getvalue()

    def events(self, box_id: str) -> list[Event]:
        """Return every whole event stored for a box, in order."""
        _check_box_id(box_id)
        path = self.root / box_id / EVENTS
        with self._lock(box_id):  # an append in flight would look like a torn line
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return []
        lines = data.split(b"\n")
        if lines[-1]:
            log.warning("skipped a torn last line (%d bytes) in %s", len(lines[-1]), path)
        events = []
        for number, line in enumerate(lines[:-1], 1):
            try:
                events.append(Event.from_json(line))
            except ValueError as exc:
                log.warning("skipped line %d of %s: %s", number, path, exc)
        return events

    def _lock(self, box_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(box_id, threading.Lock())

    def _high_water(self, box_id: str) -> int:
        # Called with the box's lock held.
        if box_id not in self._high:
            path = self.root / box_id / EVENTS
            self._high[box_id] = last_seq_in(path) if path.exists() else 0
        return self._high[box_id]


def check_batch(batch: Any, box_id: str) -> tuple[list[Event], dict[str, Any]]:
    """Return a batch's events and snapshot, or raise InvalidInput naming the first thing wrong."""
    if not isinstance(batch, dict):
        raise InvalidInput("the report must be a JSON object")
    unknown = sorted(set(batch) - set(BATCH_FIELDS))
    missing = [f for f in BATCH_FIELDS if f not in batch]
    if unknown or missing:
        raise InvalidInput(f"report fields: missing {missing or 'none'}, unknown {unknown or 'none'}")
    if batch["box_id"] != box_id:
        raise InvalidInput(f"box_id: the report is for box {batch['box_id']!r} but signed by box {box_id}", "box_id")
    if not isinstance(batch["events"], list) or len(batch["events"]) > MAX_EVENTS:
        raise InvalidInput(f"events: a list of at most {MAX_EVENTS} events", "events")
    if not isinstance(batch["snapshot"], dict):
        raise InvalidInput("snapshot: must be an object", "snapshot")
    events = [_event(raw, f"events[{i}]") for i, raw in enumerate(batch["events"])]
    for before, after in zip(events, events[1:], strict=False):
        if after.seq <= before.seq:
            raise InvalidInput(f"events: seq {after.seq} follows {before.seq}; they must increase", "events")
    ends = (events[0].seq, events[-1].seq) if events else (None, None)
    for name, expected in zip(("first_seq", "last_seq"), ends, strict=True):
        value = batch[name]
        if value != expected or (expected is not None and (type(value) is not int)):
            raise InvalidInput(f"{name}: {value!r} does not match the events (expected {expected!r})", name)
    return events, batch["snapshot"]


def _event(raw: Any, where: str) -> Event:
    """Return one reported event, checked field by field."""
    if not isinstance(raw, dict) or set(raw) != set(EVENT_FIELDS):
        raise InvalidInput(f"{where}: an object with exactly {', '.join(EVENT_FIELDS)}", where)
    seq, at, kind, room, lesson, position, detail = (raw[f] for f in EVENT_FIELDS)
    if not _is_number(seq) or not isinstance(seq, int) or seq < 1:
        raise InvalidInput(f"{where}.seq: {seq!r} is not a whole number ≥ 1", where)
    if not _is_number(at) or at <= 0:
        raise InvalidInput(f"{where}.time: {at!r} is not a time", where)
    if kind not in KINDS:
        raise InvalidInput(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}", where)
    if not isinstance(room, str) or not room.strip() or len(room) > MAX_NAME:
        raise InvalidInput(f"{where}.room: a name of 1 to {MAX_NAME} characters", where)
    if lesson is not None and (not isinstance(lesson, str) or len(lesson) > MAX_NAME):
        raise InvalidInput(f"{where}.lesson: an id of at most {MAX_NAME} characters, or null", where)
    if position is not None and (not _is_number(position) or position < 0):
        raise InvalidInput(f"{where}.position: {position!r} is not a number of seconds ≥ 0, or null", where)
    if not isinstance(detail, dict):
        raise InvalidInput(f"{where}.detail: must be an object", where)
    event = Event(seq, float(at), kind, room, lesson, None if position is None else float(position), detail)
    try:
        event.to_json()
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}.detail: cannot be stored as JSON (NaN or infinity?)", where) from None
    return event


def summarise(events: Iterable[Event], first: date, last: date) -> list[dict[str, Any]]:
    """Return one row per day, room and lesson from first to last (local dates), by day and time opened.

    How far is the furthest position the room reached, not counting where a seek landed; a lesson
    counts as opened when first opened that day, or at its first event if it was opened the day before.
    """
    first_day, last_day = first.isoformat(), last.isoformat()
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    opened: set[tuple[str, str, str]] = set()
    for e in events:
        if e.lesson is None:
            continue
        day = time.strftime("%Y-%m-%d", time.localtime(e.time))
        if not first_day <= day <= last_day:
            continue
        key = (day, e.room, e.lesson)
        row = rows.setdefault(key, {"date": day, "room": e.room, "lesson": e.lesson, "first_opened": e.time,
                                    "max_position": 0.0, "finished": False, "pauses": 0})
        if e.kind == "open" and key not in opened:
            opened.add(key)
            row["first_opened"] = e.time
        if e.position is not None and e.kind != "seek":
            row["max_position"] = max(row["max_position"], round(e.position, 3))
        if e.kind == "finish":
            row["finished"] = True
        if e.kind in PAUSE_KINDS:
            row["pauses"] += 1
    return sorted(rows.values(), key=lambda r: (r["date"], r["first_opened"], r["room"], r["lesson"]))


def _check_box_id(box_id: str) -> None:
    if not BOX_ID_RE.fullmatch(box_id):
        raise InvalidInput(f"box id {box_id!r}: 16 hex digits", "box_id")


def _day(value: str, name: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: {value!r} is not a date YYYY-MM-DD", name) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _cell(text: str) -> str:
    """Keep a spreadsheet from running a room name such as "=HYPERLINK(...)" as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text

