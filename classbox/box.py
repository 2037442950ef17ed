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
from .config import PACKAGE_DIR, Config
from .datadir import DataDir, DataDirLock
from .errors import ChannelRejected
from .storage import State
from .store import Store

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
        progress: Callable[[int, int], None] | None = None,
    ) -> channel.InstallResult:
        """Verify a channel folder and install it; pin the given key on first install."""
        with self._install_lock:
            return self._add_channel(source, trust, channel_id, progress)

    def _add_channel(
        self,
        source: Path,
        trust: Ed25519PublicKey | None,
        channel_id: str | None,
        progress: Callable[[int, int], None] | None,
    ) -> channel.InstallResult:
        channel_id = channel.pick_channel(source, channel_id)
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
        result = channel.install(source, self.store, key, self.config.max_manifest_bytes, channel_id,
                                 progress=progress)
        if pinned is None:
            self.pin_key(channel_id, key)
        if not result.unchanged:
            self.catalog.reload()
        return result

    def first_start(self) -> None:
        """On the first start of an empty data directory, install the demo channel (unless turned off)."""
        if self.state.get("initialized_at") is not None:
            return
        if self.config.demo and not channel.channel_ids(self.data.root):
            result = self.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
            log.info("installed the demo channel: %d lessons", len(result.manifest.lessons))
        self.state.set("initialized_at", time.time())
