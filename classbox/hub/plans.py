"""Each teaching point's teaching plan (教学进度): which lesson, for which class, on which date and period."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from tinydb import where

from ..errors import InvalidInput
from ..storage import State

MAX_PERIOD = 12


@dataclass(frozen=True)
class Planned:
    """One lesson put into a date and period of a class at a teaching point."""

    box_id: str
    date: str
    period: int
    class_label: str
    lesson: str
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """Return the entry as plain values."""
        return asdict(self)

    def manifest_entry(self) -> dict[str, object]:
        """Return the entry as a channel's schedule carries it."""
        entry: dict[str, object] = {"lesson": self.lesson, "date": self.date, "period": self.period}
        if self.class_label:
            entry["class"] = self.class_label
        if self.note:
            entry["note"] = self.note
        return entry


def _day(text: str) -> date:
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise InvalidInput(f"date {text!r}: YYYY-MM-DD", "date")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"date {text!r} is not a date", "date") from None


def monday_of(day: date) -> date:
    """Return the Monday of a date's week."""
    return day - timedelta(days=day.weekday())


class Plans:
    """Every teaching point's plan, in the state database (table "hub_plans")."""

    def __init__(self, state: State) -> None:
        self.state = state

    def put(self, box_id: str, day: str, period: int, class_label: str, lesson: str | None, note: str = "") -> None:
        """Put a lesson into a class's date and period (None or '' clears it)."""
        _day(day)
        if not isinstance(period, int) or isinstance(period, bool) or not 1 <= period <= MAX_PERIOD:
            raise InvalidInput(f"period: 1-{MAX_PERIOD}", "period")
        class_label = (class_label or "").strip()
        if len(class_label) > 20 or len(note) > 100:
            raise InvalidInput("class: at most 20 characters; note: at most 100", "class")
        match = ((where("box_id") == box_id) & (where("date") == day) & (where("period") == period)
                 & (where("class_label") == class_label))
        with self.state.transaction() as db:
            table = db.table("hub_plans")
            if lesson:
                table.upsert(Planned(box_id, day, period, class_label, lesson, note.strip()).as_dict(), match)
            else:
                table.remove(match)

    def between(self, box_id: str, first: date, last: date) -> list[Planned]:
        """Return a point's entries from first to last, both included, by date, period and class."""
        a, b = first.isoformat(), last.isoformat()
        with self.state.transaction() as db:
            docs = db.table("hub_plans").search((where("box_id") == box_id) & (where("date") >= a)
                                                & (where("date") <= b))
        return sorted((Planned(**d) for d in docs), key=lambda p: (p.date, p.period, p.class_label))

    def from_day(self, box_id: str, first: date) -> list[Planned]:
        """Return a point's entries from a date on."""
        return self.between(box_id, first, date(9999, 12, 31))

    def copy_week(self, box_id: str, monday: date, to_monday: date) -> int:
        """Copy one week's entries to another week (replacing what that week had); return how many."""
        if monday.weekday() != 0 or to_monday.weekday() != 0:
            raise InvalidInput("weeks start on a Monday", "date")
        entries = self.between(box_id, monday, monday + timedelta(days=6))
        shift = to_monday - monday
        with self.state.transaction() as db:
            table = db.table("hub_plans")
            a, b = to_monday.isoformat(), (to_monday + timedelta(days=6)).isoformat()
            table.remove((where("box_id") == box_id) & (where("date") >= a) & (where("date") <= b))
            for e in entries:
                moved = date.fromisoformat(e.date) + shift
                table.insert(Planned(box_id, moved.isoformat(), e.period, e.class_label, e.lesson, e.note).as_dict())
        return len(entries)

    def classes(self, box_id: str) -> list[str]:
        """Return the class labels used in a point's plan."""
        with self.state.transaction() as db:
            docs = db.table("hub_plans").search(where("box_id") == box_id)
        return sorted({d["class_label"] for d in docs})
