"""A box: one data directory, opened and owned by this process, with its state, store and catalogue."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tinydb import where

from . import channel, keys
from .catalog import Catalog
from .channel import Blob, Manifest
from .config import PACKAGE_DIR, Config
from .datadir import DataDir, DataDirLock
from .errors import ChannelRejected, ConfigError
from .storage import State
from .store import Store
from .sync import engine
from .sync.engine import ChannelResult, Progress
from .sync.sources import FolderSource, Source, Transfer

log = logging.getLogger(__name__)

DEMO_ROOT = PACKAGE_DIR / "demo"
DEMO_KEY = DEMO_ROOT / "demo.pub"


class Box:
    """Everything a running box holds; the only way web and CLI reach the data directory."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data = DataDir(config.data_dir)
        self._lock = DataDirLock(self.data)
        self._lock.acquire()
        try:
            self.data.prepare()
            self.state = State(self.data.state_file)
        except BaseException:
            self._lock.release()
            raise
        self.store = Store(self.data)
        self.catalog = Catalog(self.store)
        self.catalog.reload()
        self.started_at = time.time()
        self._install_lock = threading.Lock()

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

            result = engine.bring_in(source, self.store, channel_id, key, self.config.max_manifest_bytes,
                                     transfer=transfer, all_or_nothing=all_or_nothing, progress=progress,
                                     on_progress=on_progress, on_verified=None if all_or_nothing else pin,
                                     free_margin=self.config.free_margin, filters=self.filters(channel_id))
            if pinned is None and all_or_nothing:
                self.pin_key(channel_id, key)
            if result.blobs_fetched or result.activated:
                self.catalog.reload()
            return result

    def scrub(self, on_progress: Callable[[int, int], None] | None = None,
              pace: Callable[[int], None] | None = None) -> list[str]:
        """Re-hash the store, quarantine damaged blobs and drop the lessons that need them until refetched."""
        sizes = {sha: b.size for info in self.catalog.channels()
                 for sha, b in (self._manifest_blobs(info.id)).items()}
        # No lock: blobs never change in place, and a sync renaming one in races nothing here.
        bad = self.store.scrub(sizes, on_progress, pace)
        if bad:
            log.warning("scrub: %d damaged files moved to quarantine: %s", len(bad), ", ".join(bad))
            self.catalog.reload()
        return bad

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
