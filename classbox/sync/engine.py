"""Bring one channel from a source into the box: verify the manifest, fetch what is missing, activate.

Content first, metadata last: every blob is verified and renamed into the store
before the manifest that points at it is activated by rename. `channel add`
(all or nothing: any bad file rejects the whole channel and the box is left
as it was) and `sync` (verified blobs are kept, so an interrupted sync goes on
where it stopped) run the same steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import channel
from ..channel import Blob, Lesson, Manifest
from ..errors import ChannelRejected
from ..space import Space
from ..store import Staged, Store
from .download import DiskFull, Stopped, SyncError
from .sources import Source, Transfer

log = logging.getLogger(__name__)

LINK_DOWN_AFTER = 3


@dataclass
class Progress:
    """What a running sync reports: bytes done of total, and the lesson being fetched."""

    channel: str = ""
    done: int = 0
    total: int = 0
    lesson: str = ""
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        """Return bytes per second so far."""
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Return seconds left at the current rate."""
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass(frozen=True)
class ChannelResult:
    """What bringing one channel in did."""

    manifest: Manifest
    previous_version: int | None
    blobs_fetched: int
    bytes_fetched: int
    activated: bool
    unchanged: bool = False
    errors: tuple[str, ...] = ()
    missing_lessons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data, as the CLI prints it and the control API returns it."""
        return {"channel": self.manifest.id, "version": self.manifest.version, "lessons": len(self.manifest.lessons),
                "previous_version": self.previous_version, "activated": self.activated, "unchanged": self.unchanged,
                "files": self.blobs_fetched, "bytes": self.bytes_fetched, "errors": list(self.errors),
                "missing_lessons": list(self.missing_lessons)}


def check_version(store: Store, manifest: Manifest, data: bytes) -> tuple[int | None, bool]:
    """Compare with the installed version; return (installed version, same bytes) or raise rollback."""
    current = channel.installed_manifest(store.data.root, manifest.id)
    if current is None:
        return None, False
    old, old_data = current
    if manifest.version < old.version:
        raise ChannelRejected(
            "rollback", f"version {manifest.version} is older than the installed version {old.version}"
        )
    if manifest.version == old.version and data != old_data:
        raise ChannelRejected("rollback", f"version {manifest.version} is installed already with different content")
    return old.version, data == old_data


FILTER_LEVELS = ("section", "stage", "grade", "subject", "edition")


def lesson_matches(lesson: Lesson, filters: dict[str, list[str]]) -> bool:
    """Tell whether a lesson is in a subscription: every filtered level has one of its values."""
    for level, values in filters.items():
        value = lesson.section if level == "section" else lesson.level(level)
        if values and value not in values:
            return False
    return True


def upcoming(manifest: Manifest, today: str) -> list[dict]:
    """Return the manifest's schedule entries from today on, soonest first."""
    return sorted((e for e in manifest.schedule if e["date"] >= today), key=lambda e: (e["date"], e.get("period", 0)))


def plan(manifest: Manifest, filters: dict[str, list[str]], today: str) -> list[Lesson]:
    """Return the lessons the box wants, soonest scheduled first, then subscribed ones in channel order."""
    by_id = {lesson.id: lesson for lesson in manifest.lessons}
    ordered: list[Lesson] = []
    for entry in upcoming(manifest, today):
        lesson = by_id[entry["lesson"]]
        if lesson not in ordered:
            ordered.append(lesson)
    ordered += [lesson for lesson in manifest.lessons if lesson not in ordered and lesson_matches(lesson, filters)]
    return ordered


def may_activate(store: Store, new: Manifest, old: Manifest | None) -> bool:
    """Tell whether activating new loses no lesson that plays now (other than those the publisher dropped)."""
    if old is None:
        return True
    ready = {lesson.id for lesson in new.lessons if store.has_all(lesson.blobs())}
    return all(lesson.id in ready for lesson in old.lessons
               if lesson.id in new.lesson_ids() and store.has_all(lesson.blobs()))


def bring_in(
    source: Source,
    store: Store,
    channel_id: str,
    trusted: Ed25519PublicKey,
    max_bytes: int,
    transfer: Transfer | None = None,
    all_or_nothing: bool = False,
    progress: Progress | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_verified: Callable[[Manifest], None] | None = None,
    space: Space | None = None,
    filters: dict[str, list[str]] | None = None,
    now: float | None = None,
    on_ready: Callable[[], None] | None = None,
) -> ChannelResult:
    """Verify a channel at a source and make the box hold all of it; see the module docstring."""
    transfer = transfer or Transfer()
    progress = progress or Progress()
    report = on_progress or (lambda p: None)
    data, sig = source.fetch_signed(channel_id, max_bytes)
    now = time.time() if now is None else now
    manifest = channel.check_signed(data, sig, trusted, now)
    if manifest.id != channel_id:
        raise ChannelRejected("invalid", f"manifest says channel {manifest.id!r} but was fetched as {channel_id!r}")
    previous, same = check_version(store, manifest, data)
    installed = channel.installed_manifest(store.data.root, manifest.id)
    old = installed[0] if installed else None
    if on_verified:
        on_verified(manifest)
    today = time.strftime("%Y-%m-%d", time.localtime(now))
    scheduled = {e["lesson"] for e in upcoming(manifest, today)}
    lessons = plan(manifest, filters or {}, today)
    # Making room for a scheduled lesson may evict anything but another scheduled lesson's files;
    # making room for a subscribed one may not evict any file of this plan.
    scheduled_blobs = frozenset(b.sha256 for lesson in lessons if lesson.id in scheduled for b in lesson.blobs())
    plan_blobs = frozenset(b.sha256 for lesson in lessons for b in lesson.blobs())
    wanted: list[tuple[Blob, Lesson]] = []
    seen: set[str] = set()
    for lesson in lessons:
        wanted += [(b, lesson) for b in lesson.blobs()
                   if b.sha256 not in seen and not store.has(b.sha256, b.size)]
        seen.update(b.sha256 for b in lesson.blobs())
    progress.channel = manifest.id
    progress.total += sum(w[0].size for w in wanted)
    report(progress)

    def on_bytes(n: int) -> None:
        progress.done += n
        report(progress)

    activated = False

    def lesson_done() -> None:
        # Lessons show up as they complete, not only at the end of a long run.
        nonlocal activated
        if all_or_nothing:
            return
        if not same and not activated and may_activate(store, manifest, old):
            channel.activate(store.data.root, manifest.id, data, sig)
            activated = True
        if (same or activated) and on_ready:
            on_ready()

    staged: list[Staged] = []
    errors: list[str] = []
    fetched = 0
    fetched_files = 0
    failures_in_a_row = 0
    will_not_fit: list[str] = []
    if any(store.has_all(lesson.blobs()) for lesson in lessons):
        lesson_done()  # one completed before a crash cut the last run short: list it now, not after the next
    try:
        for i, (blob, lesson) in enumerate(wanted):
            progress.lesson = lesson.title
            report(progress)
            urgent = lesson.id in scheduled
            if space is not None and not space.make_room(blob.size, urgent, scheduled_blobs if urgent else plan_blobs):
                if lesson.title not in will_not_fit:
                    will_not_fit.append(lesson.title)
                if all_or_nothing:
                    raise ChannelRejected("no_space", f"{lesson.title} needs {blob.size / 1e6:.1f} MB more than "
                                                      f"the box has room for ({space.describe()})")
                continue
            try:
                transfer.throttle.check()  # a copy from a folder passes no throttle: stop between files
                one = source.fetch_blob(blob, store, transfer, on_bytes)
            except Stopped:
                raise
            except DiskFull as exc:
                if all_or_nothing:
                    raise ChannelRejected("no_space", str(exc)) from None
                errors.append(f"disk full: {exc}; stopping this run")
                break
            except SyncError as exc:
                if all_or_nothing:
                    raise ChannelRejected("blob_mismatch", str(exc)) from None
                errors.append(str(exc))
                log.warning("%s: %s", manifest.id, exc)
                failures_in_a_row = 0 if exc.permanent else failures_in_a_row + 1
                if failures_in_a_row >= LINK_DOWN_AFTER:
                    # The link, not the file, is the trouble: stop here and leave the rest for the next run.
                    errors.append(f"{source.label}: {failures_in_a_row} files in a row failed; "
                                  "stopping this run, the rest follows at the next sync")
                    break
                continue
            failures_in_a_row = 0
            if space is not None:
                space.added(blob.size)
            if all_or_nothing:
                staged.append(one)
            else:
                store.commit(one)  # a verified blob is kept even if the run stops later
            fetched += blob.size
            fetched_files += 1
            if (i + 1 == len(wanted) or wanted[i + 1][1] is not lesson) and store.has_all(lesson.blobs()):
                lesson_done()
    except BaseException:
        for s in staged:
            store.discard(s)
        raise
    for s in staged:
        store.commit(s)
    if will_not_fit:
        room = f" ({space.describe()})" if space is not None else ""
        errors.append(f"will not fit{room}: {'、'.join(will_not_fit)}")
    missing = tuple(lesson.title for lesson in lessons if not store.has_all(lesson.blobs()))
    if all_or_nothing and not same and not missing:
        channel.activate(store.data.root, manifest.id, data, sig)
        activated = True
    else:
        lesson_done()
    return ChannelResult(manifest, previous, fetched_files, fetched, activated,
                         unchanged=same and not wanted, errors=tuple(errors), missing_lessons=missing)
