"""The catalogue: an in-memory index over the box's active manifests.

Built at start and rebuilt whenever a manifest changes. A lesson is listed only
when every file it needs is in the store, so nothing shown ever fails to play.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .channel import MANIFEST, PATH_LEVELS, SECTIONS, Lesson, Manifest, channel_ids, parse_manifest
from .errors import ChannelRejected
from .store import Store

log = logging.getLogger(__name__)

FACETS = ("section", *PATH_LEVELS)

_NUMERALS = "一二三四五六七八九"
NATURAL_ORDER: dict[str, tuple[str, ...]] = {
    "section": SECTIONS,
    "stage": ("学前", "小学", "初中", "高中", "特殊教育"),
    "grade": tuple(f"{n}年级" for n in _NUMERALS) + ("高一", "高二", "高三"),
    "volume": ("上册", "下册", "全一册"),
    "period": tuple(f"第{n}课时" for n in _NUMERALS),
}


@dataclass(frozen=True)
class Entry:
    """A lesson as listed, with the channel it came from."""

    channel: str
    lesson: Lesson

    def value(self, facet: str) -> str:
        """Return the lesson's value for a facet."""
        return self.lesson.section if facet == "section" else self.lesson.level(facet)


@dataclass(frozen=True)
class ChannelInfo:
    """An active channel and how many of its lessons are ready."""

    id: str
    title: str
    version: int
    lessons: int
    ready: int
    expires_at: str


@dataclass(frozen=True)
class Browse:
    """One page of catalogue browsing: matching lessons and, per facet, the values to narrow by."""

    entries: tuple[Entry, ...]
    facets: dict[str, list[tuple[str, int]]]


@dataclass(frozen=True)
class _Index:
    entries: tuple[Entry, ...] = ()
    by_id: dict[str, Entry] = field(default_factory=dict)
    media_types: dict[str, str] = field(default_factory=dict)
    channels: tuple[ChannelInfo, ...] = ()
    titles: dict[str, str] = field(default_factory=dict)
    schedule: tuple[tuple[str, dict], ...] = ()


class Catalog:
    """Lessons of every active channel, searchable by section, curriculum path and title."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._index = _Index()
        self._reload_lock = threading.Lock()

    def reload(self) -> None:
        """Rebuild the index from the manifests on disk; swap it in whole."""
        with self._reload_lock:
            entries: list[Entry] = []
            by_id: dict[str, Entry] = {}
            media_types: dict[str, str] = {}
            infos: list[ChannelInfo] = []
            titles: dict[str, str] = {}
            schedule: list[tuple[str, dict]] = []
            for manifest in self.manifests():
                ready = 0
                schedule += [(manifest.id, dict(e)) for e in manifest.schedule]
                for lesson in manifest.lessons:
                    titles.setdefault(lesson.id, lesson.title)
                for lesson in manifest.lessons:
                    if not all(self.store.has(b.sha256, b.size) for b in lesson.blobs()):
                        continue
                    ready += 1
                    if lesson.id in by_id:
                        log.warning("lesson %s is in channels %s and %s; listing the first", lesson.id,
                                    by_id[lesson.id].channel, manifest.id)
                        continue
                    entry = Entry(manifest.id, lesson)
                    entries.append(entry)
                    by_id[lesson.id] = entry
                    for b in lesson.blobs():
                        media_types.setdefault(b.sha256, b.media_type)
                infos.append(ChannelInfo(manifest.id, manifest.title, manifest.version, len(manifest.lessons),
                                         ready, manifest.expires_at))
            self._index = _Index(tuple(entries), by_id, media_types, tuple(infos), titles, tuple(schedule))
            log.info("catalogue: %d lessons in %d channels", len(entries), len(infos))

    def manifests(self) -> list[Manifest]:
        """Return the active manifests on disk (a broken one is logged and skipped)."""
        root: Path = self.store.data.root
        out = []
        for channel_id in channel_ids(root):
            path = root / "channels" / channel_id / MANIFEST
            try:
                out.append(parse_manifest(path.read_bytes()))
            except (OSError, ChannelRejected) as exc:
                log.error("skipping channel %s: %s", channel_id, exc)
        return out

    def lesson(self, lesson_id: str) -> Entry | None:
        """Return one listed lesson."""
        return self._index.by_id.get(lesson_id)

    def status(self, lesson_id: str) -> tuple[str | None, bool]:
        """Return a lesson's title (None if no active channel has it) and whether it is ready to play."""
        return self._index.titles.get(lesson_id), lesson_id in self._index.by_id

    def schedule(self) -> tuple[tuple[str, dict], ...]:
        """Return (channel id, entry) for every schedule entry of every active channel."""
        return self._index.schedule

    def media_type(self, sha256: str) -> str | None:
        """Return the media type a listed lesson gives a blob."""
        return self._index.media_types.get(sha256)

    def channels(self) -> tuple[ChannelInfo, ...]:
        """Return the active channels."""
        return self._index.channels

    def __len__(self) -> int:
        return len(self._index.entries)

    def browse(self, filters: dict[str, str], query: str = "") -> Browse:
        """Return lessons matching every filter and the title query, with facet values to narrow by."""
        unknown = set(filters) - set(FACETS)
        if unknown:
            raise ValueError(f"unknown filter {', '.join(sorted(unknown))}; use {', '.join(FACETS)}")
        query = query.strip().casefold()
        entries = [e for e in self._index.entries if not query or query in e.lesson.title.casefold()]
        matching = tuple(e for e in entries if all(e.value(k) == v for k, v in filters.items()))
        facets: dict[str, list[tuple[str, int]]] = {}
        for facet in FACETS:
            others = {k: v for k, v in filters.items() if k != facet}
            counts: dict[str, int] = {}
            for e in entries:
                value = e.value(facet)
                if value and all(e.value(k) == v for k, v in others.items()):
                    counts[value] = counts.get(value, 0) + 1
            facets[facet] = sorted(counts.items(), key=_order_key(facet, list(counts)))
        return Browse(matching, facets)


def _order_key(facet: str, first_seen: list[str]):  # type: ignore[no-untyped-def]
    natural = NATURAL_ORDER.get(facet, ())

    def key(item: tuple[str, int]) -> tuple[int, int]:
        value = item[0]
        return (natural.index(value) if value in natural else len(natural), first_seen.index(value))

    return key
