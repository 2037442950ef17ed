"""A box: one data directory, opened and owned by this process, with its state, store and catalogue."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from tinydb import where

from . import channel, keys, storage
from .accounts import Accounts, Sessions
from .catalog import Catalog
from .channel import Blob, Manifest
from .classroom import Classroom
from .config import PACKAGE_DIR, Config
from .datadir import DataDir, DataDirLock
from .errors import ChannelRejected, ConfigError, NotFound
from .events import EventLog
from .jobs import Jobs
from .setup import Setup
from .space import Holdings, Space
from .storage import State
from .store import Store
from .sync import engine
from .sync.engine import ChannelResult, Progress
from .sync.sources import FolderSource, Source, Transfer

log = logging.getLogger(__name__)

DEMO_ROOT = PACKAGE_DIR / "demo"
DEMO_KEY = DEMO_ROOT / "demo.pub"
PLAYED_EVERY = 600.0
RELIST_EVERY = 2.0


def _today() -> str:
    return time.strftime("%Y-%m-%d")


class Box:
    """Everything a running box holds; the only way web and CLI reach the data directory."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data = DataDir(config.data_dir)
        self._lock = DataDirLock(self.data)
        self._lock.acquire()
        try:
            self.data.prepare()
            channel.finish_activations(self.data.root)
            channel.finish_activations(self.data.root / "hub" / "mirror")  # a hub's published channels
            self.state = State(self.data.state_file)
        except BaseException:
            self._lock.release()
            raise
        self.store = Store(self.data)
        self.catalog = Catalog(self.store)
        self.catalog.reload()
        self.events = EventLog(self.data.events)
        # Screens and phones wait for changes in server threads: leave some for media and the API.
        self.classroom = Classroom(self.state, self.catalog, self.events, max_waiters=max(1, config.threads - 6))
        self.started_at = time.time()
        self.box_id = self._identity()
        self.signing_key = self._signing_key()
        self.accounts = Accounts(self.state)
        self.sessions = Sessions(config.session_idle)
        self.setup = Setup(self.state, self.accounts, config.provision_file)
        self.jobs = Jobs()
        self._install_lock = threading.Lock()
        self._played_noted: dict[str, float] = {}
        self._scrub_lock = threading.Lock()
        self._listed_at = 0.0

    def _identity(self) -> str:
        # Made once, on the first start of a data directory: zeroconf names, reports and the hub know the box by it.
        box_id = self.state.get("box_id")
        if not box_id:
            box_id = secrets.token_hex(8)
            self.state.set("box_id", box_id)
        return str(box_id)

    def _signing_key(self) -> Ed25519PrivateKey:
        # The box's own ed25519 key: it signs reports to a hub and, on a hub, the teaching points' channels.
        folder = self.data.root / "identity"
        private = folder / keys.PRIVATE_NAME
        if not private.exists():
            keys.generate(folder, overwrite=True)  # a crash between the two files leaves no public key: redo both
        elif not (folder / keys.PUBLIC_NAME).exists():
            storage.atomic_write(folder / keys.PUBLIC_NAME, keys.public_pem(keys.load_private(private).public_key()))
        return keys.load_private(private)

    @property
    def public_key_pem(self) -> str:
        """Return the box's public key, as a hub registers it."""
        return keys.public_pem(self.signing_key.public_key()).decode()

    @property
    def short_id(self) -> str:
        """Return the first six characters of the box id, for host names such as classbox-3fa9c2."""
        return self.box_id[:6]

    def close(self) -> None:
        """Close the state and give up the data directory."""
        self.state.close()
        self._lock.release()

    def __enter__(self) -> Box:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trusted_key(self, channel_id: str) -> Ed25519PublicKey | None:
        """Return the publisher key pinned for a channel."""
        with self.state.transaction() as db:
            doc = db.table("trust").get(where("channel") == channel_id)
        return None if doc is None else keys.parse_public(doc["public_key"].encode(), f"pinned key of {channel_id}")

    def pin_key(self, channel_id: str, key: Ed25519PublicKey) -> None:
        """Pin the publisher key a channel must be signed with from now on."""
        with self.state.transaction() as db:
            db.table("trust").upsert(
                {"channel": channel_id, "public_key": keys.public_pem(key).decode(), "key_id": keys.key_id(key)},
                where("channel") == channel_id,
            )

    def add_channel(
        self,
        source: Path,
        trust: Ed25519PublicKey | None,
        channel_id: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ChannelResult:
        """Install a channel from a folder, all or nothing; pin the given key on first install."""
        channel_id = channel.pick_channel(source, channel_id)
        return self.bring_in(FolderSource(source), channel_id, trust, all_or_nothing=True, on_progress=on_progress)

    def bring_in(
        self,
        source: Source,
        channel_id: str,
        trust: Ed25519PublicKey | None = None,
        all_or_nothing: bool = False,
        transfer: Transfer | None = None,
        progress: Progress | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ChannelResult:
        """Bring one channel in from a source with the key pinned for it (or, the first time, the one given)."""
        with self._install_lock:
            pinned = self.trusted_key(channel_id)
            if pinned is not None and trust is not None and keys.key_id(trust) != keys.key_id(pinned):
                raise ChannelRejected(
                    "unknown_key",
                    f"channel {channel_id} is pinned to key {keys.key_id(pinned)}; "
                    f"the key given ({keys.key_id(trust)}) is not trusted for it",
                )
            key = pinned or trust
            if key is None:
                raise ChannelRejected("unknown_key", f"no key is trusted for channel {channel_id}; pass --trust PUBKEY")
            def pin(manifest: Manifest) -> None:
                # A sync keeps what it verified even if it stops, so the key is kept from the
                # moment it verified a manifest; an all-or-nothing install pins only at the end.
                if pinned is None:
                    self.pin_key(channel_id, key)

            installed = channel.installed_manifest(self.data.root, channel_id)
            space = Space(self.store, self.config.quota_bytes, self.config.free_margin, self.holdings(),
                          on_evict=lambda shas: self.catalog.reload())
            result = engine.bring_in(source, self.store, channel_id, key, self.config.max_manifest_bytes,
                                     transfer=transfer, all_or_nothing=all_or_nothing, progress=progress,
                                     on_progress=on_progress, on_verified=None if all_or_nothing else pin,
                                     space=space, filters=self.filters(channel_id), on_ready=self._lessons_ready)
            if pinned is None and all_or_nothing:
                self.pin_key(channel_id, key)
            if result.activated and installed is not None:
                self._retain_dropped(installed[0], result.manifest)
            if result.blobs_fetched or result.activated or space.evicted:
                self.catalog.reload()
            return result

    def _lessons_ready(self) -> None:
        # A lesson just completed: list it, but re-read the manifests at most every few seconds,
        # since a channel of a thousand small lessons would otherwise re-read them a thousand times.
        if time.monotonic() - self._listed_at >= RELIST_EVERY:
            self.catalog.reload()
            self._listed_at = time.monotonic()

    def _retain_dropped(self, old: Manifest, new: Manifest) -> None:
        """Remember the files of lessons a new version dropped while they are still scheduled."""
        today = _today()
        gone = old.lesson_ids() - new.lesson_ids()
        until: dict[str, str] = {}
        for entry in engine.upcoming(old, today):
            if entry["lesson"] in gone:
                until[entry["lesson"]] = max(until.get(entry["lesson"], ""), entry["date"])
        if not until:
            return
        with self.state.transaction() as db:
            table = db.table("retained")
            for lesson in old.lessons:
                if lesson.id in until:
                    table.upsert({"channel": old.id, "lesson": lesson.id, "until": until[lesson.id],
                                  "blobs": sorted(b.sha256 for b in lesson.blobs())},
                                 (where("channel") == old.id) & (where("lesson") == lesson.id))
                    log.info("%s v%d dropped %s, scheduled until %s: its files are kept until then",
                             old.id, new.version, lesson.id, until[lesson.id])

    def holdings(self) -> Holdings:
        """Return what the box must keep, what its subscriptions want, and when each file was last played."""
        today = _today()
        pins = set(self.pinned())
        protected: set[str] = set()
        wanted: set[str] = set()
        with self.state.transaction() as db:
            for doc in db.table("retained").all():
                if doc["until"] >= today:
                    protected.update(doc["blobs"])
            played = {doc["blob"]: doc["at"] for doc in db.table("played").all()}
        last_played: dict[str, float] = {}
        lesson_of: dict[str, str] = {}
        for manifest in self.catalog.manifests():
            scheduled = {e["lesson"] for e in engine.upcoming(manifest, today)}
            for lesson in manifest.lessons:
                shas = [b.sha256 for b in lesson.blobs()]
                if lesson.id in scheduled or lesson.id in pins:
                    protected.update(shas)
                # A TV fetches the video, and a page only when shown: a lesson counts as played
                # when any of its files was, and each file as recently as its latest lesson.
                at = max((played.get(sha, 0.0) for sha in shas), default=0.0)
                for sha in shas:
                    if at >= last_played.get(sha, 0.0):
                        last_played[sha] = at
                        lesson_of[sha] = f"{manifest.id}/{lesson.id}"
            for lesson in engine.plan(manifest, self.filters(manifest.id), today):
                wanted.update(b.sha256 for b in lesson.blobs())
        return Holdings(frozenset(protected), frozenset(wanted), last_played, lesson_of)

    def note_played(self, sha256: str, now: float | None = None) -> None:
        """Record that a file was played, at most once per PLAYED_EVERY seconds per file (it orders eviction)."""
        now = time.time() if now is None else now
        if now - self._played_noted.get(sha256, 0.0) < PLAYED_EVERY:
            return
        self._played_noted[sha256] = now
        with self.state.transaction() as db:
            db.table("played").upsert({"blob": sha256, "at": now}, where("blob") == sha256)

    def pin(self, lesson_id: str, pinned: bool = True) -> None:
        """Pin a lesson, so a sync never evicts its files to make room, or unpin it."""
        if pinned and not any(lesson_id in m.lesson_ids() for m in self.catalog.manifests()):
            raise NotFound(f"no channel on this box has a lesson {lesson_id!r}")
        with self.state.transaction() as db:
            table = db.table("pins")
            if pinned:
                table.upsert({"lesson": lesson_id}, where("lesson") == lesson_id)
            else:
                table.remove(where("lesson") == lesson_id)

    def pinned(self) -> list[str]:
        """Return the pinned lessons."""
        with self.state.transaction() as db:
            return sorted(doc["lesson"] for doc in db.table("pins").all())

    def scrub(self, on_progress: Callable[[int, int], None] | None = None,
              pace: Callable[[int], None] | None = None) -> list[str]:
        """Re-hash the store, quarantine damaged blobs and drop the lessons that need them until refetched."""
        sizes = {sha: b.size for info in self.catalog.channels()
                 for sha, b in (self._manifest_blobs(info.id)).items()}
        # Blobs never change in place, so a sync renaming one in races nothing here; only two
        # scrubs at once (the background one and one asked for) would trip over each other.
        with self._scrub_lock:
            bad = self.store.scrub(sizes, on_progress, pace)
        if bad:
            log.warning("scrub: %d damaged files moved to quarantine: %s", len(bad), ", ".join(bad))
            self.catalog.reload()
        return bad

    def storage(self) -> list[dict[str, Any]]:
        """Return per active channel: lessons ready, and bytes held of the bytes its files take."""
        ready = {info.id: info for info in self.catalog.channels()}
        usage = self.store.usage()
        out = []
        for manifest in self.catalog.manifests():
            blobs = manifest.blobs()
            info = ready.get(manifest.id)
            out.append({
                "channel": manifest.id, "title": manifest.title, "version": manifest.version,
                "lessons": len(manifest.lessons), "ready": info.ready if info else 0,
                "files": len(blobs), "files_held": sum(1 for sha in blobs if sha in usage),
                "bytes": sum(b.size for b in blobs.values()),
                "bytes_held": sum(usage[sha][0] for sha in blobs if sha in usage),
            })
        return out

    def _manifest_blobs(self, channel_id: str) -> dict[str, Blob]:
        found = channel.installed_manifest(self.data.root, channel_id)
        return found[0].blobs() if found else {}

    def filters(self, channel_id: str) -> dict[str, list[str]]:
        """Return the subscription filters of a channel ({} for the whole channel)."""
        with self.state.transaction() as db:
            doc = db.table("trust").get(where("channel") == channel_id)
        return dict(doc.get("filters", {})) if doc else {}

    def subscribe(self, channel_id: str, filters: dict[str, list[str]], key: Ed25519PublicKey | None = None) -> None:
        """Follow a channel, or only its lessons matching the filters; pin its key if given and none is."""
        unknown = set(filters) - set(engine.FILTER_LEVELS)
        if unknown:
            raise ConfigError(f"unknown filter {', '.join(sorted(unknown))}; use {', '.join(engine.FILTER_LEVELS)}")
        if not channel.ID_RE.fullmatch(channel_id):
            raise ConfigError(f"{channel_id!r} is not a channel id")
        pinned = self.trusted_key(channel_id)
        if pinned is None and key is None:
            raise ConfigError(f"channel {channel_id} is new to this box: give its publisher key with --trust")
        if pinned is not None and key is not None and keys.key_id(key) != keys.key_id(pinned):
            raise ConfigError(f"channel {channel_id} is pinned to key {keys.key_id(pinned)}, not {keys.key_id(key)}")
        if pinned is None and key is not None:
            self.pin_key(channel_id, key)
        with self.state.transaction() as db:
            db.table("trust").update({"filters": {k: v for k, v in filters.items() if v}},
                                     where("channel") == channel_id)

    def channel_file(self, channel_id: str, name: str) -> bytes | None:
        """Return the bytes of an active channel's manifest or signature, as peers fetch them."""
        if not channel.ID_RE.fullmatch(channel_id) or name not in (channel.MANIFEST, channel.SIGNATURE):
            return None
        try:
            return (channel.channel_dir(self.data.root, channel_id) / name).read_bytes()
        except FileNotFoundError:
            return None

    def subscribed(self) -> list[str]:
        """Return the channels this box follows: those with a pinned key."""
        with self.state.transaction() as db:
            return sorted(doc["channel"] for doc in db.table("trust").all())

    def first_start(self) -> None:
        """On the first start of an empty data directory, install the demo channel (unless turned off)."""
        if self.state.get("initialized_at") is not None:
            return
        if self.config.demo and not channel.channel_ids(self.data.root):
            result = self.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
            log.info("installed the demo channel: %d lessons", len(result.manifest.lessons))
        self.state.set("initialized_at", time.time())
