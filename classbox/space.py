"""Room on the disk for what a sync brings: the quota, the free-space margin, and eviction.

A box's card is small and a school's lessons change every term, so a sync may
have to delete files to make room. The rules, in order:

- a blob needed by a lesson that is scheduled (today or later) or pinned is never evicted;
- for a scheduled lesson, any other blob may go, the least recently played first;
- for a lesson that is only subscribed, only blobs no subscription wants any more may go,
  so two subscribed lessons never push each other out night after night;
- nothing is deleted unless deleting enough makes the file fit: otherwise the lesson
  is reported as "will not fit" and the store is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import storage
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holdings:
    """What the box must keep, what its subscriptions want, and when each file's lesson was last played.

    `lesson_of` maps each file an active lesson uses to that lesson, so that a lesson's
    files go together; a file no lesson uses is evicted before any other.
    `last_played` is per file, the latest play of any lesson that uses it.
    """

    protected: frozenset[str] = frozenset()
    wanted: frozenset[str] = frozenset()
    last_played: dict[str, float] = field(default_factory=dict)
    lesson_of: dict[str, str] = field(default_factory=dict)

    def eviction_order(self, sha256: str, stored_at: float) -> tuple[float, str, float]:
        """Sort key: unused files first, then lessons least recently played, a lesson's files together."""
        if sha256 not in self.lesson_of:
            return (-1.0, "", stored_at)
        return (self.last_played.get(sha256, 0.0), self.lesson_of[sha256], stored_at)


class Space:
    """Decides whether the next file fits under the quota and margin, evicting by the rules above."""

    def __init__(self, store: Store, quota: int | None, margin: int, holdings: Holdings | None = None,
                 on_evict: Callable[[list[str]], None] | None = None) -> None:
        self.store = store
        self.quota = quota
        self.margin = margin
        self.holdings = holdings or Holdings()
        self.on_evict = on_evict or (lambda shas: None)
        self._used: int | None = None
        self.evicted: list[str] = []

    def used(self) -> int:
        """Return the bytes the store holds (counted once, then kept up to date)."""
        if self._used is None:
            self._used = sum(size for size, _ in self.store.usage().values())
        return self._used

    def available(self) -> int:
        """Return how many bytes may still be added: free space above the margin, and under the quota."""
        room = self.store.free_bytes() - self.margin
        if self.quota is not None:
            room = min(room, self.quota - self.used())
        return room

    def describe(self) -> str:
        """Say in a few words how much room the box has and why."""
        free = f"{self.store.free_bytes() / 1e6:.0f} MB free, {self.margin / 1e6:.0f} MB kept free"
        if self.quota is None:
            return free
        return f"{free}, {self.used() / 1e6:.0f} MB of the {self.quota / 1e6:.0f} MB quota used"

    def added(self, size: int) -> None:
        """Count a blob that just came into the store."""
        if self._used is not None:
            self._used += size

    def make_room(self, size: int, scheduled: bool, keep: Iterable[str] = ()) -> bool:
        """Make size bytes available, evicting if the rules allow; return False, deleting nothing, if not."""
        short = size - self.available()
        if short <= 0:
            return True
        keep = set(keep) | self.holdings.protected
        usage = self.store.usage()
        candidates = [sha for sha in usage if sha not in keep and (scheduled or sha not in self.holdings.wanted)]
        candidates.sort(key=lambda sha: self.holdings.eviction_order(sha, usage[sha][1]))
        chosen: list[str] = []
        freed = 0
        for sha in candidates:
            if freed >= short:
                break
            chosen.append(sha)
            freed += usage[sha][0]
        if freed < short:
            return False
        for sha in chosen:
            storage.remove_file(self.store.path(sha))
            log.info("evicted %s (%d bytes) to make room", sha, usage[sha][0])
        if self._used is not None:
            self._used -= freed
        self.evicted += chosen
        self.on_evict(chosen)
        return True
