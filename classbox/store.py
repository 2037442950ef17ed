"""The blob store: every file of every channel, named by its sha256, verified and immutable."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from . import storage
from .datadir import DataDir

if TYPE_CHECKING:
    from .channel import Blob

SHA256_RE = re.compile(r"[0-9a-f]{64}")
CHUNK = 1024 * 1024


def is_sha256(value: object) -> bool:
    """Tell whether value is a lower-case hex sha256."""
    return isinstance(value, str) and SHA256_RE.fullmatch(value) is not None


def blob_relpath(sha256: str) -> str:
    """Return a blob's path relative to a mirror or data root, as in DESIGN.md."""
    if not is_sha256(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


@dataclass(frozen=True)
class Staged:
    """A verified copy waiting in partial/ to be moved into the store."""

    sha256: str
    path: Path


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class BlobMismatch(Exception):
    """The bytes read do not have the expected length or hash."""


def copy_verified(src: BinaryIO, dst: Writable, sha256: str, size: int) -> None:
    """Copy src to dst, raising BlobMismatch unless the bytes are exactly size long and hash to sha256."""
    digest = hashlib.sha256()
    copied = 0
    while True:
        # Read at most one byte past the expected size: an endless source is cut short.
        chunk = src.read(min(CHUNK, size + 1 - copied))
        if not chunk:
            break
        copied += len(chunk)
        if copied > size:
            raise BlobMismatch(f"longer than the {size} bytes the manifest states")
        digest.update(chunk)
        dst.write(chunk)
    if copied != size:
        raise BlobMismatch(f"{copied} bytes, the manifest states {size}")
    if digest.hexdigest() != sha256:
        raise BlobMismatch(f"content hashes to {digest.hexdigest()}, not {sha256}")


def hash_file(path: Path) -> tuple[str, int]:
    """Return (sha256, size) of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Store:
    """The box's blob store under <data>/blobs/sha256; blobs only ever appear by rename."""

    def __init__(self, data: DataDir) -> None:
        self.data = data

    def path(self, sha256: str) -> Path:
        """Return where a blob lives (whether or not it is present)."""
        return self.data.root / blob_relpath(sha256)

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Tell whether a blob is present (and of the given size)."""
        try:
            st = os.stat(self.path(sha256))
        except (FileNotFoundError, ValueError):
            return False
        return size is None or st.st_size == size

    def has_all(self, blobs: Iterable[Blob]) -> bool:
        """Tell whether every one of these blobs is present at its stated size."""
        return all(self.has(b.sha256, b.size) for b in blobs)

    def open(self, sha256: str) -> BinaryIO | None:
        """Open a blob for reading, or return None when it is not in the store."""
        if not is_sha256(sha256):
            return None
        try:
            return open(self.path(sha256), "rb")
        except (FileNotFoundError, IsADirectoryError):
            return None

    def stage(self, src: BinaryIO, sha256: str, size: int) -> Staged:
        """Copy src into partial/, verified and fsynced; raise BlobMismatch and leave nothing on a bad copy."""
        target = self.data.partial / sha256
        with storage.new_file(target) as dst:
            copy_verified(src, dst, sha256, size)
        return Staged(sha256, target)

    def commit(self, staged: Staged) -> None:
        """Move a staged blob into the store by rename."""
        storage.move_into_place(staged.path, self.path(staged.sha256))

    def discard(self, staged: Staged) -> None:
        """Drop a staged blob."""
        storage.drop_file(staged.path)

    def blobs(self) -> list[str]:
        """List the hashes of every blob in the store."""
        out: list[str] = []
        for dirpath, _dirs, files in os.walk(self.data.blobs):
            out.extend(name for name in files if is_sha256(name) and name[:2] == os.path.basename(dirpath))
        return sorted(out)

    def usage(self) -> dict[str, tuple[int, float]]:
        """Return every blob's (size, time it came into the store)."""
        out: dict[str, tuple[int, float]] = {}
        for sha256 in self.blobs():
            try:
                st = os.stat(self.path(sha256))
            except FileNotFoundError:
                continue  # evicted or quarantined meanwhile
            out[sha256] = (st.st_size, st.st_mtime)
        return out

    def scrub(self, sizes: dict[str, int], on_progress: Callable[[int, int], None] | None = None,
              pace: Callable[[int], None] | None = None) -> list[str]:
        """Re-hash every blob; move those whose bytes or length do not match to quarantine/; return them."""
        names = self.blobs()
        bad = []
        for i, sha256 in enumerate(names):
            if pace:
                pace(os.stat(self.path(sha256)).st_size)
            path = self.path(sha256)
            try:
                actual, size = hash_file(path)
            except OSError as exc:
                actual, size = f"unreadable ({exc.strerror})", -1
            if actual != sha256 or (sha256 in sizes and sizes[sha256] != size):
                storage.make_dirs(self.data.quarantine)
                storage.move_into_place(path, self.data.quarantine / f"{sha256}.{int(time.time())}")
                bad.append(sha256)
            if on_progress:
                on_progress(i + 1, len(names))
        return bad

    def free_bytes(self) -> int:
        """Return the free space of the filesystem holding the store."""
        return shutil.disk_usage(self.data.root).free
