"""Sync runs: one over every source and followed channel, and the background worker that schedules them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import hublink
from ..box import Box
from ..config import in_window, parse_rate
from ..errors import ChannelRejected
from ..usb import Drive, find_drives
from .download import Stopped, SyncError, Throttle
from .engine import ChannelResult, Progress
from .sources import Backoff, Transfer, open_source

log = logging.getLogger(__name__)

HISTORY = 20


@dataclass
class RunRecord:
    """One sync run as kept in the history."""

    started_at: float
    trigger: str
    sources: list[str]
    channels: list[str]
    finished_at: float | None = None
    ok: bool = False
    bytes: int = 0
    files: int = 0
    activated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_sync(
    box: Box,
    sources: list[str],
    channels: list[str],
    trigger: str,
    trust: Ed25519PublicKey | None = None,
    transfer: Transfer | None = None,
    progress: Progress | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_result: Callable[[str, ChannelResult], None] | None = None,
) -> RunRecord:
    """Bring every channel up to date from each source in turn; record the run in the history."""
    record = RunRecord(time.time(), trigger, list(sources), list(channels))
    progress = progress or Progress()
    try:
        _each_channel(box, sources, channels, record, trust, transfer, progress, on_progress, on_result)
    except Stopped as exc:  # the box is stopping: keep the run in the history, as far as it went
        record.errors.append(str(exc))
    record.finished_at = time.time()
    record.ok = not record.errors
    save_run(box, record)
    return record


def _each_channel(box: Box, sources: list[str], channels: list[str], record: RunRecord,
                  trust: Ed25519PublicKey | None, transfer: Transfer | None, progress: Progress,
                  on_progress: Callable[[Progress], None] | None,
                  on_result: Callable[[str, ChannelResult], None] | None) -> None:
    for spec in sources:
        try:
            source = open_source(spec)
        except SyncError as exc:
            record.errors.append(str(exc))
            continue
        for channel_id in channels:
            try:
                result = box.bring_in(source, channel_id, trust, transfer=transfer, progress=progress,
                                      on_progress=on_progress)
            except Stopped:
                raise
            except ChannelRejected as exc:
                record.errors.append(f"{channel_id} from {source.label}: rejected ({exc.reason}): {exc}")
                continue
            except SyncError as exc:
                record.errors.append(f"{channel_id} from {source.label}: {exc}")
                continue
            record.bytes += result.bytes_fetched
            record.files += result.blobs_fetched
            if result.activated:
                record.activated.append(f"{channel_id} v{result.manifest.version}")
            record.errors.extend(result.errors)
            if on_result:
                on_result(channel_id, result)


def save_run(box: Box, record: RunRecord) -> None:
    """Append a run to the history, keeping the last HISTORY."""
    with box.state.transaction() as db:
        table = db.table("sync_runs")
        table.insert(asdict(record))
        ids = sorted(doc.doc_id for doc in table.all())
        if len(ids) > HISTORY:
            table.remove(doc_ids=ids[: len(ids) - HISTORY])


def history(box: Box) -> list[dict[str, Any]]:
    """Return the last runs, newest first."""
    with box.state.transaction() as db:
        return [dict(doc) for doc in reversed(db.table("sync_runs").all())]


class SyncWorker:
    """Runs syncs in the background: on a schedule, inside the allowed windows, or now when asked."""

    def __init__(self, box: Box, clock: Callable[[], float] = time.time) -> None:
        self.box = box
        self.config = box.config
        self.clock = clock
        self._stop = threading.Event()
        self.throttle = Throttle(self.config.max_rate, stop=self._stop)  # a stop ends a download at its next chunk
        self.backoff = Backoff(base=60, cap=self.config.sync_interval)
        self.state = "idle"
        self.progress: Progress | None = None
        self.next_run: float | None = None
        self._wake = threading.Event()
        self._requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.scrubber = Scrubber(box, on_damage=self._refetch)

    def start(self) -> None:
        """Start the background thread; the first run is due at once."""
        self.next_run = self.clock()
        self._thread = threading.Thread(target=self._loop, name="classbox-sync", daemon=True)
        self._thread.start()
        self.scrubber.start()

    def stop(self) -> None:
        """Stop within a chunk of the download in progress; what it fetched is kept for the next start."""
        self._stop.set()
        self._wake.set()
        self.scrubber.stop()
        if self._thread is not None:
            self._thread.join(30)

    def _refetch(self, damaged: list[str]) -> None:
        if self.config.sources:
            self.request_now()

    @property
    def running(self) -> bool:
        """Tell whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def request_now(self, sources: list[str] | None = None, channels: list[str] | None = None,
                    trust: Ed25519PublicKey | None = None) -> None:
        """Ask for a run now, ignoring the windows ("sync now")."""
        with self._lock:
            self._requests.append({"sources": sources, "channels": channels, "trust": trust})
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """Return what GET /api/v1/sync shows."""
        runs = history(self.box)
        last_ok = next((r for r in runs if r["ok"]), None)
        last_bad = next((r for r in runs if not r["ok"]), None)
        p = self.progress
        eta = p.eta() if p else None
        return {
            "state": self.state if self.running else "stopped",
            "bytes_done": p.done if p else 0,
            "bytes_total": p.total if p else 0,
            "rate": round(p.rate()) if p else 0,
            "eta_s": None if eta is None else round(eta),
            "channel": p.channel if p else None,
            "lesson": p.lesson if p else None,
            "next_run": self.next_run,
            "sources": self.config.sources,
            "channels": self.box.subscribed(),
            "max_rate": self.config.max_rate,
            "windows": self.config.sync_windows or None,
            "last_error": (last_bad["errors"][0] if last_bad and last_bad["errors"] else None),
            "last_error_at": last_bad["finished_at"] if last_bad else None,
            "last_success": last_ok["finished_at"] if last_ok else None,
            "usb": [{"path": str(d.path), "channels": list(d.channels), "new_lessons": d.new_lessons,
                     "message": d.message()} for d in self.drives()],
            "scrub": {"last_pass": self.scrubber.last_pass, "damaged": self.scrubber.damaged},
            "runs": runs,
        }

    def drives(self) -> list[Drive]:
        """Return the drives with channels mounted under the USB roots."""
        roots = [Path(r) for r in self.config.usb_roots.split(",") if r.strip()]
        known = {e.lesson.id for e in self.box.catalog.browse({}).entries}
        return find_drives(roots, known, self.config.max_manifest_bytes)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = max(0.0, (self.next_run or self.clock()) - self.clock())
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                request = self._requests.pop(0) if self._requests else None
            if request is None and self.clock() < (self.next_run or 0):
                continue
            now = datetime.fromtimestamp(self.clock())
            if request is None and not in_window(self.config.windows, now.hour * 60 + now.minute):
                self.state = "waiting_for_window"
                self.next_run = self.clock() + 60
                continue
            try:
                self._run(request)
            except Exception:  # the top of a background loop: log it, keep the box serving
                log.exception("sync run failed")
                self._failures += 1
                self.state = "backing_off"
                self.next_run = self.clock() + self.backoff.delay(self._failures)

    def _run(self, request: dict[str, Any] | None) -> None:
        sources = (request or {}).get("sources") or self.config.sources
        channels = (request or {}).get("channels") or self.box.subscribed()
        # A run over everything also syncs from the hub: only the point channel, which no other source holds.
        everything = not (request or {}).get("sources") and not (request or {}).get("channels")
        hub = hublink.hub_sync(self.box) if everything else None
        if hub is not None:
            channels = [c for c in channels if c != hub.channel]
            if not sources or not channels:
                sources, channels = [hub.source], [hub.channel]
                hub = None
        if not sources or not channels:
            self.state = "idle"
            self.next_run = self.clock() + self.config.sync_interval
            if request is not None:
                save_run(self.box, RunRecord(self.clock(), "now", sources, channels, self.clock(), False, errors=[
                    "nothing to sync: set CLASSBOX_SYNC_SOURCES and follow a channel (classbox sync --trust)"]))
            return
        self.state = "running"
        self.progress = Progress()
        trigger, transfer = "now" if request else "schedule", Transfer(throttle=self.throttle)
        records = [run_sync(self.box, sources, channels, trigger, trust=(request or {}).get("trust"),
                            transfer=transfer, progress=self.progress)]
        if hub is not None and not self._stop.is_set():  # a run of its own: a hub that fails holds none up
            records.append(run_sync(self.box, [hub.source], [hub.channel], trigger, transfer=transfer,
                                    progress=self.progress))
        if self._stop.is_set():
            log.info("sync stopped with the box after %.1f MB; it goes on from there at the next start",
                     self.progress.done / 1e6)
            return
        ok = all(r.ok for r in records)
        if ok:
            self._failures = 0
            self.state = "idle"
            self.next_run = self.clock() + self.config.sync_interval
        else:
            self._failures += 1
            self.state = "backing_off"
            self.next_run = self.clock() + self.backoff.delay(self._failures)
        log.info("sync %s: %d files, %.1f MB, %d errors", "done" if ok else "incomplete",
                 sum(r.files for r in records), sum(r.bytes for r in records) / 1e6,
                 sum(len(r.errors) for r in records))


class Scrubber:
    """A slow background scrub: re-hash the store at a gentle rate, one pass every scrub interval."""

    def __init__(self, box: Box, on_damage: Callable[[list[str]], None] | None = None) -> None:
        self.box = box
        self.on_damage = on_damage
        self.last_pass: float | None = None
        self.damaged: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle = Throttle(parse_rate(box.config.scrub_rate), stop=self._stop)

    def start(self) -> None:
        """Start the background thread; the first pass begins after one interval."""
        self._thread = threading.Thread(target=self._loop, name="classbox-scrub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, even in the middle of a pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.box.config.scrub_interval):
            try:
                bad = self.box.scrub(pace=self._throttle.take)
            except Stopped:
                return
            except Exception:  # the top of a background loop: log it, try again next interval
                log.exception("background scrub failed")
                continue
            self.last_pass = time.time()
            if bad:
                self.damaged = sorted(set(self.damaged) | set(bad))
                if self.on_damage:
                    self.on_damage(bad)

