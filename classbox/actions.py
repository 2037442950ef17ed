"""What the `classbox` command may ask of a box, whether it opens the data directory itself or asks the server.

Each action takes the box and a JSON-ready body and returns a JSON-ready answer, so the
same code runs in the CLI (no server running) and behind /api/v1/control/<action> (the
server owns the data directory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import keys, schedule
from .box import Box
from .errors import InvalidInput, NotFound

Body = dict[str, Any]


def _text(body: Body, name: str, required: bool = True) -> str:
    value = body.get(name, "" if not required else None)
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput(f"{name}: a non-empty string is required")
    return value


def _key(body: Body) -> Any:
    return keys.parse_public(str(body["trust"]).encode(), "trust") if body.get("trust") else None


def add_channel(box: Box, body: Body) -> Body:
    """Install a channel from a folder on this machine, all or nothing."""
    channel = body.get("channel")
    result = box.add_channel(Path(_text(body, "root")), _key(body), channel if isinstance(channel, str) else None)
    return result.as_dict()


def subscribe(box: Box, body: Body) -> Body:
    """Follow a channel or part of it."""
    filters = body.get("filters") or {}
    if not isinstance(filters, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in filters.values()):
        raise InvalidInput("filters: an object of string lists")
    box.subscribe(_text(body, "channel"), filters, _key(body))
    return {"subscriptions": {c: box.filters(c) for c in box.subscribed()}}


def scrub(box: Box, body: Body) -> Body:
    """Re-hash the store now and report the damaged files."""
    return {"checked": len(box.store.blobs()), "damaged": box.scrub()}


def pin(box: Box, body: Body) -> Body:
    """Pin or unpin a lesson."""
    pinned = body.get("pinned", True)
    if not isinstance(pinned, bool):
        raise InvalidInput("pinned: true or false")
    box.pin(_text(body, "lesson"), pinned)
    return {"pinned": box.pinned()}


def rooms(box: Box, body: Body) -> Body:
    """Add, change or remove a room; with no name, only list them."""
    if body.get("name"):
        if body.get("remove"):
            box.classroom.remove_room(_text(body, "name"))
        else:
            box.classroom.add_room(_text(body, "name"), _text(body, "class", required=False))
    return {"rooms": box.classroom.rooms()}


def timetable(box: Box, body: Body) -> Body:
    """Replace a room's weekly periods."""
    room = _text(body, "room")
    box.classroom.current(room)  # an unknown room is named before its timetable is checked
    periods = box.classroom.timetables.set_periods(room, body.get("periods"))
    return {"room": room, "periods": [asdict(p) for p in periods]}


def book(box: Box, body: Body) -> Body:
    """Put a lesson into a room's date and period, or take it out (lesson empty)."""
    room = _text(body, "room")
    box.classroom.current(room)
    period = body.get("period")
    if not isinstance(period, int) or isinstance(period, bool):
        raise InvalidInput("period: the period's number")
    lesson = _text(body, "lesson", required=False)
    if lesson:
        if box.catalog.status(lesson)[0] is None:
            raise InvalidInput(f"lesson: no channel on this box has a lesson {lesson!r}")
        box.classroom.timetables.book(room, _text(body, "date"), period, lesson, _text(body, "note", False))
    else:
        box.classroom.timetables.unbook(room, schedule.check_date(_text(body, "date")), period)
    return {"room": room, "date": body["date"], "period": period, "lesson": lesson or None}


ACTIONS: dict[str, Callable[[Box, Body], Body]] = {
    "channels": add_channel, "subscriptions": subscribe, "scrub": scrub, "pins": pin,
    "rooms": rooms, "timetable": timetable, "bookings": book,
}


def run(box: Box, action: str, body: Any) -> Body:
    """Run one named action with a JSON body; NotFound for an unknown action, InvalidInput for a bad body."""
    if action not in ACTIONS:
        raise NotFound(f"no action {action!r}; use {', '.join(ACTIONS)}")
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return ACTIONS[action](box, body)
