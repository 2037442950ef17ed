"""Reports up to the hub: the playback log in batches by sequence number, and a snapshot of the box.

Each batch holds the events after the high-water mark the hub last acknowledged, and a snapshot:
health, what the box holds of its hub channel `point-<box id>`, whether each lesson scheduled
there for the coming week is ready to play, and the sync worker's state. The box signs the batch
with its own key. The hub stores every event once, however often a batch arrives, and answers
with its high-water mark, which the box keeps and resumes from, across restarts.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

from . import health, signing
from .box import Box
from .errors import ClassboxError
from .hub.points import channel_for
from .sync.sources import Backoff
from .sync.worker import history

log = logging.getLogger(__name__)

REPORT_PATH = "/api/v1/reports"
HIGH_WATER_KEY = "report_high_water"
BATCH_LIMIT = 500
BATCH_BYTES = 1024 * 1024  # well under the hub's 5 MB limit, whatever the events' details hold
MAX_BATCHES = 20  # per send(): a box far behind catches up over several rounds, not in one long burst
TIMEOUT = 30.0
MAX_ANSWER = 64 * 1024
SCHEDULE_DAYS = 7
# What the hub shows of the sync worker; its full status also lists runs and USB drives.
SYNC_FIELDS = ("state", "next_run", "last_success", "last_error", "last_error_at", "bytes_done", "bytes_total",
               "channel", "lesson")
WILL_NOT_FIT = re.compile(r"will not fit(?: \([^)]*\))?: (.*)$")  # how a sync run names lessons it had no room for

Opener = Callable[..., Any]


class ReportError(ClassboxError):
    """A report could not be delivered to the hub."""

    code = "report_failed"


class ReportRefused(ReportError):
    """The hub answered the report with a 4xx: the message is the hub's; resending will not help."""

    code = "report_refused"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HubUnavailable(ReportError):
    """The hub could not be reached, timed out, failed (5xx) or answered nonsense; try again later."""

    code = "hub_unavailable"


def high_water(box: Box) -> int:
    """Return the last event number the hub has acknowledged (0 before the first report)."""
    return int(box.state.get(HIGH_WATER_KEY, 0))


def _raise_high_water(box: Box, value: int) -> int:
    """Store a new high-water mark if it is higher than the stored one; return the stored one."""
    with box.state.transaction():
        current = high_water(box)
        if value > current:
            box.state.set(HIGH_WATER_KEY, value)
            return value
        return current


def build_batch(box: Box, limit: int = BATCH_LIMIT, sync_status: Mapping[str, Any] | None = None,
                after: int | None = None, taken: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the next batch: the events after the high-water mark (or after), at most limit, and a snapshot.

    taken is a snapshot already made for this round of batches: making one walks the store.
    """
    after = high_water(box) if after is None else after
    events: list[dict[str, Any]] = []
    size = 0
    for event in box.events.read(after, limit):
        size += len(event.to_json().encode())
        if events and size > BATCH_BYTES:
            break
        events.append(asdict(event))
    return {
        "box_id": box.box_id,
        "first_seq": events[0]["seq"] if events else None,
        "last_seq": events[-1]["seq"] if events else None,
        "events": events,
        "snapshot": dict(taken) if taken is not None else snapshot(box, sync_status),
    }


def snapshot(box: Box, sync_status: Mapping[str, Any] | None = None, now: float | None = None) -> dict[str, Any]:
    """Return what the hub shows of this box: health, its hub channel, the coming week's lessons, sync."""
    now = time.time() if now is None else now
    channel_id = channel_for(box.box_id)
    held = next((c for c in box.storage() if c["channel"] == channel_id), None)
    manifest = next((m for m in box.catalog.manifests() if m.id == channel_id), None)
    lessons = manifest.lessons if manifest is not None else ()
    held_lessons = [lesson.id for lesson in lessons if box.catalog.status(lesson.id)[1]]
    waiting = [lesson.title for lesson in lessons if lesson.id not in held_lessons]
    today = date.fromtimestamp(now)
    last_day = (today + timedelta(days=SCHEDULE_DAYS)).isoformat()
    upcoming = []
    for channel, entry in box.catalog.schedule():
        if channel != channel_id or not today.isoformat() <= entry["date"] <= last_day:
            continue
        title, ready = box.catalog.status(entry["lesson"])
        upcoming.append({"date": entry["date"], "period": entry.get("period"), "class": entry.get("class"),
                         "room": entry.get("room"), "lesson": entry["lesson"], "title": title, "ready": ready})
    upcoming.sort(key=lambda e: (e["date"], e["period"] or 0))
    settings = box.setup.settings()
    return {
        "taken_at": now,
        "box_name": settings.box_name,
        "school": settings.school,
        "log_last_seq": box.events.last_seq,
        "health": health.snapshot(box).as_dict(),
        "channel": None if held is None else {
            "id": channel_id, "version": held["version"], "lessons": held["lessons"], "ready": held["ready"],
            "bytes": held["bytes"], "bytes_held": held["bytes_held"],
            "not_fitting": _not_fitting(box, channel_id, waiting)},
        "held_lessons": held_lessons,
        "upcoming": upcoming,
        "sync": None if sync_status is None else {k: sync_status.get(k) for k in SYNC_FIELDS},
    }


def _not_fitting(box: Box, channel_id: str, waiting: list[str]) -> list[str]:
    """Return the titles among waiting that the last sync run of the channel named as not fitting on the disk."""
    run = next((r for r in history(box) if channel_id in r.get("channels", [])), None) if waiting else None
    if run is None:
        return []
    named: set[str] = set()
    for error in run.get("errors", []):
        found = WILL_NOT_FIT.match(error)
        if found:
            named.update(found.group(1).split("、"))
    return [title for title in waiting if title in named]


def encode(batch: Mapping[str, Any]) -> bytes:
    """Return a batch as the bytes that are signed and sent."""
    return json.dumps(batch, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def send(box: Box, hub_url: str, sync_status: Mapping[str, Any] | None = None,
         opener: Opener = urllib.request.urlopen, limit: int = BATCH_LIMIT, max_batches: int = MAX_BATCHES,
         timeout: float = TIMEOUT, stopping: threading.Event | None = None) -> int:
    """Send the log from the high-water mark on, batch by batch until caught up; return the new mark.

    At least one batch goes even with nothing new: its snapshot tells the hub the box is alive.
    Raise ReportRefused on the hub's 4xx, HubUnavailable on anything worth retrying.
    """
    url = hub_url.rstrip("/") + REPORT_PATH
    mark = high_water(box)
    taken = snapshot(box, sync_status)
    for n in range(max_batches):
        if n and stopping is not None and stopping.is_set():
            break
        batch = build_batch(box, limit, taken=taken)
        body = encode(batch)
        headers = {"Content-Type": "application/json",
                   **signing.sign_request(box.signing_key, box.box_id, "POST", REPORT_PATH, body)}
        acknowledged = _post(opener, url, body, headers, timeout)
        mark = _raise_high_water(box, acknowledged)
        if not batch["events"] or mark < batch["last_seq"] or box.events.last_seq <= mark:
            break  # caught up, or the hub kept less than was sent: do not resend the same batch now
    return mark


def _post(opener: Opener, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST one batch and return the hub's high-water mark."""
    try:
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    except ValueError:
        raise ReportError(f"the hub address {url!r} is not an http:// address; correct it in the settings") from None
    try:
        with opener(req, timeout=timeout) as response:
            answer = response.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        with exc:
            message = _error_message(exc.read(MAX_ANSWER))
        if 400 <= exc.code < 500:
            raise ReportRefused(f"the hub at {url} refused the report ({exc.code}): {message}", exc.code) from None
        raise HubUnavailable(f"the hub at {url} failed ({exc.code}): {message}; trying again later") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HubUnavailable(f"cannot reach the hub at {url}: {reason}; trying again later") from None
    try:
        mark = json.loads(answer)["high_water"]
    except (ValueError, KeyError, TypeError):
        raise HubUnavailable(f"the hub at {url} answered without a high_water; is it a classbox hub?") from None
    if not isinstance(mark, int) or isinstance(mark, bool) or mark < 0:
        raise HubUnavailable(f"the hub at {url} answered high_water {mark!r}, not an event number")
    return mark


def _error_message(body: bytes) -> str:
    """Return the error a hub put in its JSON answer, or the start of whatever it sent."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str) and error:
        return error
    return body[:200].decode("utf-8", "replace").strip() or "no message"


class Reporter:
    """Reports to the hub in the background: every interval while a hub is set, backing off on failure."""

    def __init__(self, box: Box, sync_status: Callable[[], Mapping[str, Any]] | None = None,
                 interval: float = 300.0, backoff: Backoff | None = None,
                 opener: Opener = urllib.request.urlopen, timeout: float = TIMEOUT) -> None:
        self.box = box
        self.sync_status = sync_status
        self.interval = interval
        self.backoff = backoff or Backoff(base=15.0, cap=max(interval, 1800.0))
        self.opener = opener
        self.timeout = timeout
        self.last_sent: float | None = None
        self.last_error: str | None = None
        self.next_at: float | None = None
        self.failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Reporter:
        """Start the background thread; the first report goes at once if a hub is set."""
        self._thread = threading.Thread(target=self._loop, name="classbox-reporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the request in flight, if any."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def report_now(self) -> None:
        """Report at once rather than at the next interval (e.g. just after setup named a hub)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """Tell whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        """Return when the box last reported, how far the hub has the log, and the last error."""
        return {"last_sent": self.last_sent, "high_water": high_water(self.box), "last_error": self.last_error,
                "failures": self.failures, "next_at": self.next_at}

    def _loop(self) -> None:
        delay = 0.0
        while True:
            self.next_at = time.time() + delay
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            delay = self.interval
            try:
                hub_url = self.box.setup.settings().hub_url
                if hub_url:
                    self.report_once(hub_url)
            except ReportError as exc:
                self._failed(str(exc))
                delay = self.backoff.delay(self.failures)
                log.warning("report to the hub failed (%d in a row, next try in %.0f s): %s",
                            self.failures, delay, exc)
            except Exception as exc:  # the top of a background loop: log it, keep the box serving
                self._failed(f"{type(exc).__name__}: {exc}")
                delay = self.backoff.delay(self.failures)
                log.exception("report to the hub failed (next try in %.0f s)", delay)

    def report_once(self, hub_url: str) -> int:
        """Send what the hub lacks now; return the new high-water mark."""
        status = self.sync_status() if self.sync_status is not None else None
        mark = send(self.box, hub_url, status, opener=self.opener, timeout=self.timeout, stopping=self._stop)
        self.last_sent = time.time()
        self.last_error = None
        self.failures = 0
        log.info("reported to the hub %s: log acknowledged up to %d", hub_url, mark)
        return mark

    def _failed(self, message: str) -> None:
        self.failures += 1
        self.last_error = message
