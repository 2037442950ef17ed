"""Finding the platform's files for a catalogue: in a local folder, or downloaded with the operator's header.

A file of resource RID listed as `…/NAME` is found, in this order:

1. already in the output's blob store from an earlier build (remembered by its md5, so it is
   neither read nor copied again);
2. as `FILES_DIR/RID/NAME` (a folder of page images as `FILES_DIR/RID/image/1.jpg, 2.jpg, …`);
3. anywhere under FILES_DIR with the same size and md5 (`ti_size`, `ti_md5`);
4. downloaded from its `ti_storages` URLs, each mirror in turn, when downloading is on: resumably,
   with the operator's header, checked against `ti_size` and `ti_md5`.

A video is used only as an MP4 (a platform item in `mp4`, or `FILES_DIR/RID/*.mp4`); classbox never
fetches or decrypts the platform's encrypted HLS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import channel, storage
from ..store import blob_relpath, hash_file
from ..sync.download import BadContent, BlobDownload, SyncError, fetch_small
from ..sync.sources import Backoff, Transfer, complete
from .catalogue import Item

log = logging.getLogger(__name__)

WORK = ".classbox-build"  # under the output root: downloads in flight and what the files hash to
MAX_SMALL = 64 * 1024 * 1024  # a file the platform lists without a size (a cover, a page image)
MAX_PAGES = 2000
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF")


class Missing(Exception):
    """The file is in neither the folder nor (when downloading) on the platform; the message says where we looked."""


class Mismatch(Exception):
    """A file was found but its size or md5 is not the catalogue's; the message names the file."""

    def __init__(self, where: str, message: str, resource: str = "") -> None:
        super().__init__(message)
        self.where = where
        self.resource = resource


def is_mp4(path: Path) -> bool:
    """Tell whether a file starts like an MP4 (an ISO base media file: a 'ftyp' box first)."""
    with open(path, "rb") as f:
        head = f.read(12)
    return len(head) == 12 and head[4:8] == b"ftyp"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Files:
    """Where a build finds its files, and how many it copied, downloaded or found in place."""

    def __init__(self, out: Path, folder: Path | None, download: bool = False, headers: dict[str, str] | None = None,
                 transfer: Transfer | None = None, on_bytes: Callable[[int], None] | None = None) -> None:
        self.out = Path(out)
        self.folder = Path(folder) if folder is not None else None
        self.download = download
        self.headers = dict(headers or {})
        # A mirror that keeps failing is left for the next one soon: the platform lists two or three.
        self.transfer = transfer or Transfer(backoff=Backoff(base=1.0, cap=30.0, max_failures=5))
        self.on_bytes = on_bytes or (lambda n: None)
        self.work = self.out / WORK
        self.cache_path = self.work / "hashes.json"
        self.cache: dict[str, str] = self._load_cache()
        self._unsaved, self._saved_at = 0, time.monotonic()
        incoming = self.work / "incoming"
        for stale in incoming.iterdir() if incoming.is_dir() else ():  # a copy a crash left half-way
            storage.drop_file(stale)
        self._by_size: dict[int, list[Path]] | None = None
        self.copied = self.downloaded = self.in_place = 0
        self.bytes_copied = self.bytes_downloaded = 0

    # ------------------------------------------------------------ what files hash to

    def _load_cache(self) -> dict[str, str]:
        try:
            data = json.loads(self.cache_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    def _remember(self, key: str, value: str) -> None:
        if self.cache.get(key) == value:
            return
        self.cache[key] = value
        self._unsaved += 1
        # Written now and then, not per file: rewriting it per file would cost the square of the file count.
        # What a crash loses is only a shortcut: those files are hashed again next time.
        if self._unsaved >= 500 or time.monotonic() - self._saved_at > 30:
            self.save()

    def save(self) -> None:
        """Write down what the files found so far hash to, for the next build."""
        if self._unsaved:
            storage.atomic_write(self.cache_path, json.dumps(self.cache, sort_keys=True).encode())
        self._unsaved, self._saved_at = 0, time.monotonic()

    def _blob(self, sha256: str, size: int | None = None) -> Path | None:
        path = self.out / blob_relpath(sha256)
        try:
            on_disk = path.stat().st_size
        except FileNotFoundError:
            return None
        return path if size is None or on_disk == size else None

    def _describe(self, sha256: str, name: str) -> dict[str, Any]:
        path = self.out / blob_relpath(sha256)
        return {"sha256": sha256, "size": path.stat().st_size, "media_type": channel.media_type(name)}

    def _file_key(self, path: Path) -> str:
        st = path.stat()
        return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"

    def _publish_local(self, path: Path, name: str, item: Item | None = None) -> dict[str, Any]:
        """Bring a local file into the blob store, checked against the catalogue's size and md5, in one read.

        A file an earlier build brought in already (same path, size and time) is neither read nor copied.
        """
        size = path.stat().st_size
        if item is not None and item.size and size != item.size:
            raise Mismatch(str(path), f"is {size} bytes, the catalogue says {item.size}")
        key = self._file_key(path)
        known = self.cache.get(key)
        if known and self._blob(known, size):
            md5 = self.cache.get("md5-of-" + key)
            if item is not None and item.md5 and md5 != item.md5:
                raise Mismatch(str(path), f"has md5 {md5}, the catalogue says {item.md5}")
            self.in_place += 1
            return self._describe(known, name)
        md5_digest, sha_digest = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        incoming = self.work / "incoming" / secrets.token_hex(8)
        with open(path, "rb") as src, storage.new_file(incoming) as dst:
            while chunk := src.read(1 << 20):
                md5_digest.update(chunk)
                sha_digest.update(chunk)
                dst.write(chunk)
        md5, sha256 = md5_digest.hexdigest(), sha_digest.hexdigest()
        if item is not None and item.md5 and md5 != item.md5:
            storage.remove_file(incoming)
            raise Mismatch(str(path), f"has md5 {md5}, the catalogue says {item.md5}")
        if incoming.stat().st_size != size:
            storage.remove_file(incoming)
            raise Mismatch(str(path), "changed while being read")
        if self._blob(sha256, size):
            storage.remove_file(incoming)
            self.in_place += 1
        else:
            storage.move_into_place(incoming, self.out / blob_relpath(sha256))
            self.copied += 1
            self.bytes_copied += size
        self._remember(key, sha256)
        self._remember("md5-of-" + key, md5)
        self._remember(f"md5:{md5}", sha256)
        return {"sha256": sha256, "size": size, "media_type": channel.media_type(name)}

    # ------------------------------------------------------------ one listed file

    def item(self, rid: str, item: Item) -> dict[str, Any]:
        """Return the blob of one listed file; raise Missing or Mismatch."""
        name = item.name or f"{item.flag or 'file'}.{item.format}"
        if item.md5:
            known = self.cache.get(f"md5:{item.md5}")
            if known and self._blob(known, item.size):
                self.in_place += 1
                return self._describe(known, name)
        local = self._find_local(rid, item, name)
        if local is not None:
            return self._publish_local(local, name, item)
        if not self.download:
            where = f"{self.folder}/{rid}/{name}" if self.folder else "no --files folder"
            raise Missing(f"not found ({where}; nothing with its md5 either)")
        return self._fetch(rid, item, name)

    def _safe(self, name: str) -> bool:
        return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name

    def _find_local(self, rid: str, item: Item, name: str) -> Path | None:
        if self.folder is None:
            return None
        if self._safe(rid) and self._safe(name):
            path = self.folder / rid / name
            if path.is_file():
                return path
        if not item.md5:
            return None
        if item.size:
            candidates = self._sizes().get(item.size, [])
        else:
            d = self.folder / rid
            candidates = sorted(p for p in d.iterdir() if p.is_file()) if self._safe(rid) and d.is_dir() else []
        for path in candidates:
            key = self._file_key(path)
            md5 = self.cache.get("md5-of-" + key)
            if md5 is None:
                md5 = _md5(path)
                self._remember("md5-of-" + key, md5)
            if md5 == item.md5:
                return path
        return None

    def _sizes(self) -> dict[int, list[Path]]:
        if self._by_size is None:
            self._by_size = {}
            assert self.folder is not None
            for dirpath, dirnames, filenames in os.walk(self.folder):
                dirnames.sort()
                for f in sorted(filenames):
                    path = Path(dirpath) / f
                    try:
                        self._by_size.setdefault(path.stat().st_size, []).append(path)
                    except OSError:
                        continue
        return self._by_size

    # ------------------------------------------------------------ downloading

    def _fetch(self, rid: str, item: Item, name: str) -> dict[str, Any]:
        if not item.urls:
            raise Missing("the catalogue gives no URL for it")
        errors = []
        for url in item.urls:
            try:
                if item.md5 and item.size:
                    sha256 = self._fetch_resumable(url, item)
                else:
                    sha256 = self._fetch_whole(url, item)
            except BadContent as exc:
                raise Mismatch(url, str(exc).removeprefix(f"{url}: ")) from None
            except SyncError as exc:
                errors.append(str(exc))
                continue
            if item.md5:
                self._remember(f"md5:{item.md5}", sha256)
            self.downloaded += 1
            return self._describe(sha256, name)
        raise Missing("download failed: " + "; ".join(errors))

    def _fetch_resumable(self, url: str, item: Item) -> str:
        assert item.md5 and item.size
        download = BlobDownload(url, item.md5, item.size, self.work / "partial", self.transfer.limits,
                                self.transfer.throttle, self._count, algorithm="md5", headers=self.headers)
        part = complete(download, self.transfer)
        sha256, size = hash_file(part)
        if self._blob(sha256, size):
            storage.remove_file(part)
        else:
            storage.move_into_place(part, self.out / blob_relpath(sha256))
        return sha256

    def _count(self, n: int) -> None:
        self.bytes_downloaded += n
        self.on_bytes(n)

    def _fetch_whole(self, url: str, item: Item, image: bool = False) -> str:
        data = fetch_small(url, MAX_SMALL, self.transfer.limits, self.headers)
        self._count(len(data))
        if item.size and len(data) != item.size:
            raise BadContent(f"{url}: {len(data)} bytes, the catalogue says {item.size}")
        if item.md5 and hashlib.md5(data, usedforsecurity=False).hexdigest() != item.md5:
            raise BadContent(f"{url}: md5 {hashlib.md5(data, usedforsecurity=False).hexdigest()}, "
                             f"the catalogue says {item.md5}")
        if image and not data.startswith(IMAGE_MAGIC):
            raise BadContent(f"{url}: not an image")
        return self._put(data)

    def _put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self._blob(sha256, len(data)):
            storage.atomic_write(self.out / blob_relpath(sha256), data)
        return sha256

    # ------------------------------------------------------------ a folder of page images

    def pages(self, rid: str, folder: Item) -> list[dict[str, Any]]:
        """Return the page images of a document, in order; raise Missing when they are not all there."""
        name = folder.name or "image"
        found: list[Path] = []
        if self.folder is not None and self._safe(rid) and self._safe(name):
            d = self.folder / rid / name
            while len(found) < MAX_PAGES:
                n = len(found) + 1
                page = next((d / f"{n}{ext}" for ext in (".jpg", ".png", ".jpeg") if (d / f"{n}{ext}").is_file()),
                            None)
                if page is None:
                    break
                found.append(page)
        wanted = folder.page_count
        if found and (wanted is None or len(found) >= wanted):
            pages = found[:wanted] if wanted else found
            for p in pages:
                with open(p, "rb") as f:
                    if not f.read(8).startswith(IMAGE_MAGIC):
                        raise Mismatch(str(p), "is not a JPEG or PNG image")
            return [self._publish_local(p, p.name) for p in pages]
        if not self.download or not folder.urls:
            have = f"{len(found)} of {wanted}" if wanted else "none"
            raise Missing(f"page images incomplete ({have} in {self.folder}/{rid}/{name}/)")
        return self._fetch_pages(folder, wanted)

    def _fetch_pages(self, folder: Item, wanted: int | None) -> list[dict[str, Any]]:
        pages: list[dict[str, Any]] = []
        base = folder.urls[0].rstrip("/")
        for n in range(1, (wanted or MAX_PAGES) + 1):
            url = f"{base}/{n}.jpg"
            try:
                sha256 = self._fetch_whole(url, Item("jpg", "", (url,), None, None, False, None), image=True)
            except BadContent as exc:
                raise Mismatch(url, str(exc).removeprefix(f"{url}: ")) from None
            except SyncError as exc:
                if wanted is None and pages and "HTTP 404" in str(exc):
                    break  # the platform did not say how many pages: the first missing one ends them
                raise Missing(f"page image download failed: {exc}") from None
            pages.append(self._describe(sha256, f"{n}.jpg"))
        return pages

    # ------------------------------------------------------------ a video as MP4

    def local_mp4(self, rid: str) -> dict[str, Any] | None:
        """Return the MP4 rendition the operator put in FILES_DIR/RID/, if any; raise Mismatch if it is not one."""
        if self.folder is None or not self._safe(rid):
            return None
        d = self.folder / rid
        found = sorted(p for p in d.glob("*.mp4") if p.is_file()) if d.is_dir() else []
        if not found:
            return None
        if not is_mp4(found[0]):
            raise Mismatch(str(found[0]), "is not an MP4 file")
        return self._publish_local(found[0], found[0].name)
