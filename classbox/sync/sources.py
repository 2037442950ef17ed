"""Where channels come from: a folder or USB drive, an HTTP mirror, a LAN peer box. One layout for all."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .. import channel
from ..channel import Blob
from ..errors import ChannelRejected
from ..store import BlobMismatch, Staged, Store, blob_relpath
from .download import BadContent, BlobDownload, Limits, SyncError, Throttle, fetch_small

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter and a cap."""

    base: float = 2.0
    cap: float = 300.0
    max_failures: int = 8  # in a row without progress, then give up on this blob for this run

    def delay(self, failures: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Return how long to wait after the given number of failures in a row."""
        jitter = (rng or random).uniform(0, min(self.cap, self.base * 2 ** (failures - 1)))
        return min(self.cap, max(jitter, retry_after or 0.0))


@dataclass
class Transfer:
    """How blobs travel: timeouts, watchdog, backoff and the shared bandwidth cap."""

    limits: Limits = field(default_factory=Limits)
    backoff: Backoff = field(default_factory=Backoff)
    throttle: Throttle = field(default_factory=lambda: Throttle(None))


def complete(download: BlobDownload, transfer: Transfer) -> Path:
    """Run a download's attempts, resuming after every cut and backing off after failures, to a verified file."""
    url = download.url
    started = time.monotonic()
    failures = 0
    while True:
        if time.monotonic() - started > transfer.limits.deadline:
            raise SyncError(f"{url}: not done within {transfer.limits.deadline:.0f} s")
        before = download.wire_bytes
        try:
            done = download.attempt()
            if done is not None:
                return done
            error: SyncError | None = None
        except BadContent:
            raise
        except SyncError as exc:
            if exc.permanent:
                raise
            error = exc
        if error is None and download.wire_bytes > before:
            failures = 0  # cut after some progress: go straight on from where it stopped
            continue
        failures += 1
        if failures >= transfer.backoff.max_failures:
            raise error or SyncError(f"{url}: no progress after {failures} tries")
        wait = transfer.backoff.delay(failures, error.retry_after if error else None)
        log.info("%s: %s; retrying in %.1f s", url, error or "no progress", wait)
        transfer.throttle.sleep(wait)  # cut short by a stop


class Source(Protocol):
    """A place holding channels in the mirror layout."""

    label: str

    def fetch_signed(self, channel_id: str, max_bytes: int) -> tuple[bytes, bytes]:
        """Return a channel's manifest bytes and signature bytes."""

    def fetch_blob(self, blob: Blob, store: Store, transfer: Transfer, on_bytes: Callable[[int], None]) -> Staged:
        """Bring a blob into partial/, verified; raise SyncError or BadContent."""

    def channel_ids(self) -> list[str]:
        """List the channels the source holds, when it can tell."""


class FolderSource:
    """A folder in the mirror layout: a USB drive, a copied directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.label = str(root)

    def fetch_signed(self, channel_id: str, max_bytes: int) -> tuple[bytes, bytes]:
        """Read a channel's manifest and signature from the folder."""
        return channel.read_signed(self.root, channel_id, max_bytes)

    def fetch_blob(self, blob: Blob, store: Store, transfer: Transfer, on_bytes: Callable[[int], None]) -> Staged:
        """Copy a blob out of the folder, verified."""
        try:
            with channel.open_source_blob(self.root, blob) as src:
                staged = store.stage(src, blob.sha256, blob.size)
        except BlobMismatch as exc:
            raise BadContent(f"file {blob.sha256} in {self.root}: {exc}", permanent=True) from None
        except ChannelRejected as exc:
            if exc.reason != "blob_mismatch":
                raise  # a link leading out of the folder rejects the whole channel
            raise BadContent(str(exc), permanent=True) from None
        except OSError as exc:
            raise SyncError(f"reading {blob.sha256} from {self.root}: {exc.strerror or exc}") from None
        on_bytes(blob.size)
        return staged

    def channel_ids(self) -> list[str]:
        """List the channels in the folder."""
        return channel.channel_ids(self.root)


class HttpSource:
    """A static HTTP mirror, or a peer box's /mirror/."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.label = self.base

    def url(self, relpath: str) -> str:
        """Return the URL of a path in the mirror layout."""
        return f"{self.base}/{relpath}"

    def fetch_signed(self, channel_id: str, max_bytes: int) -> tuple[bytes, bytes]:
        """Download a channel's manifest and signature."""
        limits = Limits()
        data = fetch_small(self.url(f"channels/{channel_id}/{channel.MANIFEST}"), max_bytes, limits)
        try:
            sig = fetch_small(self.url(f"channels/{channel_id}/{channel.SIGNATURE}"), 1024, limits)
        except SyncError as exc:
            if exc.permanent:
                raise ChannelRejected("bad_signature", f"{self.label}: the manifest is unsigned ({exc})") from None
            raise
        return data, sig

    def fetch_blob(self, blob: Blob, store: Store, transfer: Transfer, on_bytes: Callable[[int], None]) -> Staged:
        """Download a blob, resuming after every cut, until it is complete and verified."""
        url = self.url(blob_relpath(blob.sha256))
        download = BlobDownload(url, blob.sha256, blob.size, store.data.partial, transfer.limits,
                                transfer.throttle, on_bytes)
        return Staged(blob.sha256, complete(download, transfer))

    def channel_ids(self) -> list[str]:
        """A static mirror cannot list its channels: ask for them by id."""
        return []


def open_source(spec: str | Path) -> Source:
    """Return the source for a URL or a folder path."""
    text = str(spec)
    if text.startswith(("http://", "https://")):
        return HttpSource(text)
    path = Path(text)
    try:
        is_dir = path.is_dir()
    except OSError:  # a name the file system cannot even look up (too long): no folder either
        is_dir = False
    if not is_dir:
        raise SyncError(f"{text} is neither an http:// URL nor a folder", permanent=True)
    # A USB drive carries the layout under classbox/ (DESIGN.md); a plain folder holds it at its top.
    if not (path / "channels").is_dir() and (path / "classbox" / "channels").is_dir():
        path = path / "classbox"
    return FolderSource(path)
