"""Rooms: what each classroom's screens show, driven from the teacher's phone or the TV remote.

The state of a room (lesson, playing or paused, position, document page, prompt)
lives here, on the box; every screen of the room follows it. A position is kept as
(position, server time it was true, playing), so a screen works out where the video
is now without being told every second. The box, not a TV, stops playback at pause
points: a room with three TVs stops once.

Screens wait for a change with a long poll (`wait`): a parked request costs no CPU
and is answered the moment a command lands. At most `max_waiters` requests are
parked at once, so waiting screens can never take every server thread; a request
over the limit is answered at once and told to ask again a second later.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from tinydb import where

from .catalog import Catalog
from .errors import Conflict, InvalidInput, NotFound
from .events import EventLog
from .schedule import Booking, NowNext, Timetables, channel_bookings, now_and_next
from .storage import State

log = logging.getLogger(__name__)

DEFAULT_ROOM = "一号教室"
OFFER_AFTER = 5.0          # a lesson left before this many seconds is simply started again
SEEK_STEP = 10.0
SAVE_EVERY = 30.0          # while playing, remember the position at most this often
DRIFT = 1.0                # a screen's report further off than this re-anchors the room
AUTO_OPEN_WINDOW = 600.0   # a period's lesson is opened within this many seconds of its start
PAIR_FAILS = 10            # wrong codes allowed per address ...
PAIR_FAIL_WINDOW = 600.0   # ... in this many seconds
MAX_NAME = 20
MAX_SCREENS = 200          # screens remembered for the dashboard; the longest unseen is forgotten first
SCREEN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
SCREEN_KINDS = ("tv", "phone")


@dataclass(frozen=True)
class Screen:
    """A TV or phone that showed a room, as the dashboard lists it."""

    room: str
    id: str
    kind: str
    address: str
    seen: float


@dataclass(frozen=True)
class PausePoint:
    """A place the video stops: the lesson's own, or one the local teacher added."""

    at: float
    prompt: str
    own: bool = False


@dataclass(frozen=True)
class RoomState:
    """What every screen of a room shows; `version` grows with every change."""

    room: str
    version: int = 0
    lesson: str | None = None
    title: str | None = None
    playing: bool = False
    position: float = 0.0
    at: float = 0.0
    document: int | None = None
    page: int = 0
    prompt: str | None = None
    points: tuple[PausePoint, ...] = ()
    offer: float | None = None
    finished: bool = False

    def position_at(self, now: float) -> float:
        """Return where the video is at time now."""
        return self.position + (now - self.at if self.playing else 0.0)

    def as_dict(self, now: float) -> dict[str, Any]:
        """Return the state as JSON-ready data, with the position worked out for now."""
        return {"room": self.room, "version": self.version, "lesson": self.lesson, "title": self.title,
                "playing": self.playing, "position": round(self.position_at(now), 3), "server_time": now,
                "document": self.document, "page": self.page, "prompt": self.prompt,
                "points": [{"at": p.at, "prompt": p.prompt, "own": p.own} for p in self.points],
                "offer": self.offer, "finished": self.finished}


@dataclass
class _Room:
    state: RoomState
    class_label: str = ""
    clients: dict[str, int] = field(default_factory=dict)
    saved_at: float = 0.0
    opened_slot: tuple[str, int] | None = None
    timetable_checked: float = 0.0


class Classroom:
    """Every room of the box: their state, the commands that change it, pairing of phones, the playback log."""

    def __init__(self, state: State, catalog: Catalog, events: EventLog, max_waiters: int = 4,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.catalog = catalog
        self.events = events
        self.timetables = Timetables(state)
        self.max_waiters = max_waiters
        self.clock = clock
        self._cond = threading.Condition()
        self._rooms: dict[str, _Room] = {}
        self._waiting = 0
        self._closing = False
        self._pair_fails: dict[str, list[float]] = {}
        self._screens: dict[tuple[str, str], Screen] = {}
        # Made once here: made on first use, two requests at once could each make their own.
        self._pairing_secret = self._secret()
        with state.transaction() as db:
            table = db.table("rooms")
            if not table.all():
                table.insert({"name": DEFAULT_ROOM, "class": ""})
            for doc in table.all():
                self._rooms[doc["name"]] = _Room(RoomState(doc["name"]), doc.get("class", ""))

    # ------------------------------------------------------------ screens

    def saw(self, room: str, screen_id: str, kind: str, address: str) -> None:
        """Note that a screen asked for a room's state (kept in memory, for the dashboard)."""
        if kind not in SCREEN_KINDS or not 1 <= len(screen_id) <= 40 or not set(screen_id) <= SCREEN_ID_CHARS:
            raise InvalidInput("screen: 1-40 letters, digits, '-' or '_'; kind: tv or phone")
        with self._cond:
            self._room(room)
            self._screens[(room, screen_id)] = Screen(room, screen_id, kind, address, self.clock())
            if len(self._screens) > MAX_SCREENS:
                del self._screens[min(self._screens, key=lambda k: self._screens[k].seen)]

    def screens(self) -> list[Screen]:
        """Return the screens seen, by room and then most recently seen first."""
        with self._cond:
            return sorted(self._screens.values(), key=lambda s: (s.room, -s.seen))

    # ------------------------------------------------------------ rooms

    def rooms(self) -> list[dict[str, str]]:
        """List the rooms, in the order they were added."""
        with self._cond:
            return [{"name": name, "class": r.class_label} for name, r in self._rooms.items()]

    def add_room(self, name: str, class_label: str = "") -> None:
        """Add a room (or change its class label)."""
        name, class_label = name.strip(), class_label.strip()
        if not name or len(name) > MAX_NAME or any(c in name for c in "/\\?#%<>\"'") \
                or any(ord(c) < 32 or ord(c) == 127 for c in name + class_label):
            raise InvalidInput(f"room name: {name!r} must be 1-{MAX_NAME} characters without / \\ ? # % < > quotes "
                               "or control characters")
        with self._cond, self.state.transaction() as db:
            db.table("rooms").upsert({"name": name, "class": class_label}, where("name") == name)
            room = self._rooms.setdefault(name, _Room(RoomState(name)))
            room.class_label = class_label

    def remove_room(self, name: str) -> None:
        """Remove a room; its remembered positions and own pause points stay for if it comes back."""
        with self._cond, self.state.transaction() as db:
            self._room(name)
            if len(self._rooms) == 1:
                raise Conflict("the last room cannot be removed")
            db.table("rooms").remove(where("name") == name)
            del self._rooms[name]
            self._cond.notify_all()

    def _room(self, name: str) -> _Room:
        room = self._rooms.get(name)
        if room is None:
            raise NotFound(f"no room {name!r} on this box")
        return room

    # ------------------------------------------------------------ reading and waiting

    def current(self, name: str) -> RoomState:
        """Return a room's state now (pause points reached and periods begun are applied first)."""
        with self._cond:
            return self._advance(self._room(name))

    def wait(self, name: str, after: int, timeout: float) -> tuple[RoomState, bool]:
        """Return the room's state once its version differs from after, or at timeout; and whether it waited.

        Returns at once, with False, when as many requests as allowed are already waiting.
        """
        # The wait is bounded in real time; self.clock only says what time it is for the room.
        deadline = time.monotonic() + max(0.0, min(timeout, 60.0))
        with self._cond:
            room = self._room(name)
            state = self._advance(room)
            if state.version != after or timeout <= 0:
                return state, True
            if self._waiting >= self.max_waiters or self._closing:
                return state, False
            self._waiting += 1
            try:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0 or name not in self._rooms or self._closing:
                        return room.state, True
                    self._cond.wait(min(left, self._next_change(room, self.clock())))
                    state = self._advance(room)
                    if state.version != after:
                        return state, True
            finally:
                self._waiting -= 1

    def release_waiters(self) -> None:
        """Answer every waiting request now and park no more: the server is stopping."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def waiting(self) -> int:
        """Return how many requests are parked waiting for a change."""
        with self._cond:
            return self._waiting

    def _next_change(self, room: _Room, now: float) -> float:
        """Return seconds until the room may change by itself (a pause point); at most 5 s, for the timetable."""
        s = room.state
        if s.playing:
            point = self._point_after(s, s.position)
            if point is not None:
                return max(0.01, point.at - s.position_at(now))
        return 5.0

    def _advance(self, room: _Room) -> RoomState:
        """Apply what time alone changes: a pause point reached, a period's lesson to open."""
        now = self.clock()
        s = room.state
        if s.playing:
            point = self._point_after(s, s.position)
            if point is not None and s.position_at(now) >= point.at:
                reached = s.at + (point.at - s.position)
                self._set(room, replace(s, playing=False, position=point.at, at=reached, prompt=point.prompt))
                self._log("pause_point", room, point.at, prompt=point.prompt, own=point.own)
                self._save_position(room, force=True)
        elif now - room.timetable_checked >= 5.0:
            room.timetable_checked = now
            self._open_period_lesson(room, now)
        return room.state

    @staticmethod
    def _point_after(s: RoomState, position: float) -> PausePoint | None:
        return next((p for p in s.points if p.at > position + 0.05), None)

    # ------------------------------------------------------------ commands

    def command(self, name: str, client: str, n: int, cmd: str, args: dict[str, Any]) -> RoomState:
        """Apply one command from a remote; a command numbered at or below the client's last is not applied again."""
        if not isinstance(client, str) or not 1 <= len(client) <= 64:
            raise InvalidInput("client: a string of 1-64 characters naming the remote")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidInput("n: the remote's command number, an integer from 1")
        if not isinstance(cmd, str) or cmd not in _ARGS:
            raise InvalidInput(f"cmd: {cmd!r} is not a command; use {', '.join(COMMANDS)}")
        with self._cond:
            room = self._room(name)
            self._advance(room)
            if n <= room.clients.get(client, 0):
                return room.state  # late or repeated: applied already
            getattr(self, f"_cmd_{cmd}")(room, **_args(cmd, args))
            room.clients[client] = n
            return room.state

    def _cmd_open(self, room: _Room, lesson: str, start: str = "") -> None:
        entry = self.catalog.lesson(lesson)
        if entry is None:
            raise NotFound(f"lesson {lesson!r} is not on this box (or not completely downloaded)")
        if start not in ("", "beginning", "resume"):
            raise InvalidInput("start: use beginning or resume")
        self._save_position(room, force=True)
        saved = self._saved_position(room.state.room, lesson)
        offer = saved if start == "" and saved is not None and saved >= OFFER_AFTER else None
        position = saved if start == "resume" and saved is not None else 0.0
        self._set(room, RoomState(room.state.room, lesson=lesson, title=entry.lesson.title, position=position,
                                  at=self.clock(), points=self._points(room.state.room, lesson), offer=offer))
        self._log("open", room, position)

    def _cmd_play(self, room: _Room) -> None:
        s = self._need_lesson(room)
        if s.playing:
            return
        position = 0.0 if s.finished else s.position
        self._set(room, replace(s, playing=True, position=position, at=self.clock(), prompt=None, document=None,
                                offer=None, finished=False))
        self._log("resume" if position > 0 else "play", room, position)

    def _cmd_pause(self, room: _Room) -> None:
        s = self._need_lesson(room)
        if not s.playing:
            return
        now = self.clock()
        self._set(room, replace(s, playing=False, position=s.position_at(now), at=now))
        self._log("pause", room, room.state.position)
        self._save_position(room, force=True)

    def _cmd_seek(self, room: _Room, by: float | None = None, to: str | None = None) -> None:
        s = self._need_lesson(room)
        now = self.clock()
        here = s.position_at(now)
        if to in ("next", "previous"):
            points = [p for p in s.points if (p.at > here + 0.5 if to == "next" else p.at < here - 1.0)]
            if not points:
                raise Conflict(f"no {'later' if to == 'next' else 'earlier'} pause point in this lesson")
            point = points[0] if to == "next" else points[-1]
            # Jumping to a pause point is going to that activity: stop there with its prompt.
            self._set(room, replace(s, playing=False, position=point.at, at=now, prompt=point.prompt,
                                    finished=False, offer=None))
        elif isinstance(by, int | float) and not isinstance(by, bool) and to is None:
            self._set(room, replace(s, position=max(0.0, here + by), at=now, prompt=None, finished=False,
                                    offer=None))
        else:
            raise InvalidInput("seek: give by (seconds, e.g. 10 or -10) or to (next or previous)")
        self._log("seek", room, room.state.position)

    def _cmd_document(self, room: _Room, asset: int, page: int = 0) -> None:
        s = self._need_lesson(room)
        pages = self._pages(s, asset)
        if not 0 <= page < pages:
            raise InvalidInput(f"page: this document has pages 0-{pages - 1}")
        self._show_page(room, asset, page)

    def _cmd_page(self, room: _Room, step: int) -> None:
        s = self._need_lesson(room)
        if s.document is None:
            raise Conflict("no document is shown")
        page = s.page + step
        if not 0 <= page < self._pages(s, s.document):
            return  # already at the first or last page
        self._show_page(room, s.document, page)

    def _cmd_close_document(self, room: _Room) -> None:
        s = self._need_lesson(room)
        self._set(room, replace(s, document=None, page=0))

    def _cmd_prompt(self, room: _Room, show: bool) -> None:
        s = self._need_lesson(room)
        if show:
            here = s.position_at(self.clock())
            passed = [p for p in s.points if p.at <= here + 0.5]
            point = passed[-1] if passed else (s.points[0] if s.points else None)
            if point is None:
                raise Conflict("this lesson has no pause point with a prompt")
            self._set(room, replace(s, prompt=point.prompt))
        else:
            self._set(room, replace(s, prompt=None))
        self._log("prompt", room, s.position_at(self.clock()), shown=show)

    def _cmd_stop(self, room: _Room) -> None:
        s = self._need_lesson(room)
        self._save_position(room, force=True)
        self._log("stop", room, s.position_at(self.clock()))
        self._set(room, RoomState(s.room))

    def _cmd_add_point(self, room: _Room, note: str = "") -> None:
        s = self._need_lesson(room)
        note = note.strip() or "讨论"
        if len(note) > 60:
            raise InvalidInput("note: at most 60 characters")
        at = round(s.position_at(self.clock()), 1)
        with self.state.transaction() as db:
            db.table("own_points").upsert({"room": s.room, "lesson": s.lesson, "at": at, "prompt": note},
                                          (where("room") == s.room) & (where("lesson") == s.lesson)
                                          & (where("at") == at))
        self._set(room, replace(room.state, points=self._points(s.room, s.lesson or "")))

    def _cmd_remove_point(self, room: _Room, at: float) -> None:
        s = self._need_lesson(room)
        point = next((p for p in s.points if abs(p.at - at) < 0.05), None)
        if point is None:
            raise NotFound(f"no pause point at {at} s in this lesson")
        with self.state.transaction() as db:
            table = db.table("own_points")
            key = (where("room") == s.room) & (where("lesson") == s.lesson) & (where("at") == point.at)
            if point.own:
                table.remove(key)
            else:  # the lesson's own: remember that this room skips it
                table.upsert({"room": s.room, "lesson": s.lesson, "at": point.at, "hidden": True}, key)
        self._set(room, replace(room.state, points=self._points(s.room, s.lesson or "")))

    # ------------------------------------------------------------ what screens report

    def report(self, name: str, lesson: str, position: float, ended: bool = False) -> RoomState:
        """Take a screen's word for where its video is (it may have stalled) or that it reached the end."""
        if not isinstance(position, int | float) or isinstance(position, bool) or position < 0:
            raise InvalidInput("position: seconds, 0 or more")
        with self._cond:
            room = self._room(name)
            s = self._advance(room)
            if s.lesson != lesson or s.lesson is None:
                return s  # a screen still on a lesson the room has left
            now = self.clock()
            if ended and not s.finished:
                self._set(room, replace(s, playing=False, position=position, at=now, finished=True))
                self._log("finish", room, position)
                self._forget_position(room)
            elif s.playing and abs(s.position_at(now) - position) > DRIFT and position < s.position_at(now):
                # The video stalled on a screen: follow the screen, so the room stops at pause points
                # where the class actually is.
                self._set(room, replace(s, position=position, at=now))
            if s.playing:
                self._save_position(room)
            return room.state

    # ------------------------------------------------------------ pairing phones

    def code(self, name: str, day: str | None = None) -> str:
        """Return the room's pairing code for a day (today by default): six digits, new every day."""
        day = day or time.strftime("%Y-%m-%d", time.localtime(self.clock()))
        digest = hmac.new(self._pairing_secret, f"{name}|{day}".encode(), hashlib.sha256).digest()
        return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"

    def pair(self, name: str, code: str, address: str) -> tuple[str, float]:
        """Pair a remote with a room for the rest of the day; return (token, expiry time)."""
        now = self.clock()
        with self._cond:
            self._room(name)
            fails = [t for t in self._pair_fails.get(address, []) if now - t < PAIR_FAIL_WINDOW]
            self._pair_fails[address] = fails
            if len(fails) >= PAIR_FAILS:
                raise Conflict("too many wrong codes from this phone; wait ten minutes")
            if not isinstance(code, str) or not hmac.compare_digest(code.strip().encode(), self.code(name).encode()):
                fails.append(now)
                raise InvalidInput("code: wrong room code; read it again from the TV")
        token = secrets.token_urlsafe(24)
        tomorrow = datetime.fromtimestamp(now).date() + timedelta(days=1)
        expires = datetime.combine(tomorrow, datetime.min.time()).timestamp()  # the end of the school day
        with self.state.transaction() as db:
            table = db.table("pairings")
            table.remove(where("expires") < now)
            table.insert({"token": _token_hash(token), "room": name, "expires": expires})
        return token, expires

    def paired_room(self, token: str | None) -> str | None:
        """Return the room a remote's token pairs it with, None if none or expired."""
        if not token:
            return None
        with self.state.transaction() as db:
            doc = db.table("pairings").get(where("token") == _token_hash(token))
        return doc["room"] if doc and doc["expires"] > self.clock() else None

    def _secret(self) -> bytes:
        with self.state.transaction():
            secret = self.state.get("pairing_secret")
            if secret is None:
                secret = secrets.token_hex(32)
                self.state.set("pairing_secret", secret)
        return bytes.fromhex(secret)

    # ------------------------------------------------------------ the timetable

    def bookings(self, name: str, first: str, last: str) -> list[Booking]:
        """Return the room's bookings between two dates: the local ones and those of channel schedules."""
        room = self._rooms.get(name)
        class_label = room.class_label if room else ""
        local = self.timetables.bookings(name, date.fromisoformat(first), date.fromisoformat(last))
        by_channel: dict[str, list[dict]] = {}
        for channel_id, entry in self.catalog.schedule():
            if first <= entry["date"] <= last:
                by_channel.setdefault(channel_id, []).append(entry)
        pushed = [b for cid, entries in by_channel.items()
                  for b in channel_bookings(entries, name, class_label, source=cid)]
        return local + pushed

    def today(self, name: str, now: float | None = None) -> NowNext:
        """Return the room's now, next and today (schedule.NowNext)."""
        now = self.clock() if now is None else now
        at = datetime.fromtimestamp(now)
        first, last = at.date().isoformat(), (at.date() + timedelta(days=7)).isoformat()
        return now_and_next(self.timetables.periods(name), self.bookings(name, first, last), at,
                            self.catalog.status)

    def _open_period_lesson(self, room: _Room, now: float) -> None:
        """At the start of a period, open its lesson, paused, unless the room is in the middle of something."""
        s = room.state
        if s.playing or (s.lesson is not None and s.position > 0 and not s.finished):
            return
        current = self.today(s.room, now).now
        if current is None or not current.lesson or not current.ready:
            return
        slot = (current.date.isoformat(), current.period)
        if slot == room.opened_slot or now - current.start.timestamp() > AUTO_OPEN_WINDOW:
            return
        room.opened_slot = slot
        if s.lesson != current.lesson:
            self._cmd_open(room, current.lesson)
            log.info("%s: opened %s for period %d", s.room, current.lesson, current.period)

    # ------------------------------------------------------------ helpers

    def _set(self, room: _Room, state: RoomState) -> None:
        room.state = replace(state, version=room.state.version + 1)
        self._cond.notify_all()

    def _need_lesson(self, room: _Room) -> RoomState:
        if room.state.lesson is None:
            raise Conflict("no lesson is open in this room")
        return room.state

    def _pages(self, s: RoomState, asset: int) -> int:
        entry = self.catalog.lesson(s.lesson or "")
        if entry is None or not isinstance(asset, int) or not 0 <= asset < len(entry.lesson.assets):
            raise InvalidInput("asset: not a document of this lesson")
        pages = len(entry.lesson.assets[asset].pages)
        if pages == 0:
            raise InvalidInput("asset: this file has no pages to show on a TV")
        return pages

    def _show_page(self, room: _Room, asset: int, page: int) -> None:
        s = room.state
        now = self.clock()
        if s.playing:  # the class looks at the sheet, not the video
            self._log("pause", room, s.position_at(now))
        self._set(room, replace(s, playing=False, position=s.position_at(now), at=now, document=asset, page=page))
        self._log("page", room, room.state.position, asset=asset, page=page)

    def _points(self, name: str, lesson: str) -> tuple[PausePoint, ...]:
        entry = self.catalog.lesson(lesson)
        points = {p.at: PausePoint(p.at, p.prompt) for a in (entry.lesson.assets if entry else ())
                  if a.role == "video" for p in a.pause_points}
        with self.state.transaction() as db:
            mine = db.table("own_points").search((where("room") == name) & (where("lesson") == lesson))
        for doc in mine:
            if doc.get("hidden"):
                points.pop(doc["at"], None)
            else:
                points[doc["at"]] = PausePoint(doc["at"], doc["prompt"], own=True)
        return tuple(sorted(points.values(), key=lambda p: p.at))

    def _saved_position(self, name: str, lesson: str) -> float | None:
        with self.state.transaction() as db:
            doc = db.table("positions").get((where("room") == name) & (where("lesson") == lesson))
        return None if doc is None else float(doc["position"])

    def _save_position(self, room: _Room, force: bool = False) -> None:
        s = room.state
        now = self.clock()
        if s.lesson is None or s.finished or (not force and now - room.saved_at < SAVE_EVERY):
            return
        if s.offer is not None:
            return  # opened, 继续播放 not yet chosen: keep the place it was left
        room.saved_at = now
        with self.state.transaction() as db:
            db.table("positions").upsert({"room": s.room, "lesson": s.lesson, "position": s.position_at(now)},
                                         (where("room") == s.room) & (where("lesson") == s.lesson))

    def _forget_position(self, room: _Room) -> None:
        s = room.state
        with self.state.transaction() as db:
            db.table("positions").remove((where("room") == s.room) & (where("lesson") == s.lesson))

    def _log(self, kind: str, room: _Room, position: float, **detail: Any) -> None:
        self.events.append(kind, room.state.room, room.state.lesson, round(position, 3), **detail)


_ARGS: dict[str, dict[str, tuple[type, ...]]] = {
    "open": {"lesson": (str,), "start": (str,)},
    "play": {}, "pause": {}, "stop": {}, "close_document": {},
    "seek": {"by": (int, float), "to": (str,)},
    "document": {"asset": (int,), "page": (int,)},
    "page": {"step": (int,)},
    "prompt": {"show": (bool,)},
    "add_point": {"note": (str,)},
    "remove_point": {"at": (int, float)},
}
COMMANDS = tuple(_ARGS)
_REQUIRED = {"open": ("lesson",), "document": ("asset",), "page": ("step",), "prompt": ("show",),
             "remove_point": ("at",)}


def _args(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """Check a command's arguments: known names, right types, required ones present."""
    if not isinstance(args, dict):
        raise InvalidInput("args: must be an object")
    allowed = _ARGS[cmd]
    for name, value in args.items():
        if name not in allowed:
            raise InvalidInput(f"{cmd}: unknown argument {name!r}; use {', '.join(allowed) or 'none'}")
        kinds = allowed[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise InvalidInput(f"{cmd}: {name} has the wrong type")
    missing = [name for name in _REQUIRED.get(cmd, ()) if name not in args]
    if missing:
        raise InvalidInput(f"{cmd}: {', '.join(missing)} is required")
    return args


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

