"""Resumable uploads of teachers' files to a hub: a 500 MB lesson video over a link that drops.

An upload is declared first (label, size, owner) and then sent in chunks, each appended at the
offset the hub has recorded. `<root>/<id>.part` holds the bytes and `<root>/<id>.json` the record:
the part file is fsynced before the new offset is written (atomically) to the record, so after a
power cut the record never vouches for bytes that are not on disk, and anything past the recorded
offset is cut off before the next append. A client that lost track asks for the offset and goes on
from there.

When the last byte is in, the type is checked from the content (magic bytes, and ffprobe for
videos when it is installed), never from the name, and the file moves into `<files>/<sha256>` by a
rename: nothing half-written ever appears there. The sha256 is carried across chunks in memory;
only an upload resumed after a restart is hashed again when it finishes.

The record stays a while after the end (until `expire`), holding the result or the reason the file
was refused, so a client whose last response was lost can ask again and get the same answer.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

from .. import storage
from ..errors import ClassboxError, Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

MAX_CHUNK = 8 * 1024 * 1024       # one PATCH; the client sends 4 MiB
PIECE = 256 * 1024                # read from the request and written at once
SNIFF_BYTES = 4096                # enough for every magic number and a ZIP's first file name
KEEP_FOR = 7 * 86400.0            # an upload untouched this long is abandoned (a weekend and more)
FFPROBE_TIMEOUT = 60.0
ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
MB = 1024 * 1024


class Readable(Protocol):
    """Where a chunk's bytes come from: a request body, a file."""

    def read(self, n: int, /) -> bytes:
        """Return up to n bytes; b"" at the end."""
        ...


class OffsetMismatch(Conflict):
    """A chunk was sent for another offset than the one the hub holds; resume at `offset`."""

    def __init__(self, offset: int, given: int) -> None:
        super().__init__(f"the hub has {offset} bytes of this upload, not {given}: send from byte {offset}")
        self.offset = offset


class UnsupportedContent(InvalidInput):
    """The bytes are not a video, a PDF or an image; the upload's bytes were deleted."""


class TooLarge(InvalidInput):
    """A file or a chunk is larger than the hub accepts."""


class HubFull(ClassboxError):
    """The hub's disk cannot take the file; nothing past the last whole chunk was kept."""

    code = "disk_full"


@dataclass(frozen=True)
class Upload:
    """An upload in progress (or just ended): how far it has come."""

    id: str
    name: str
    size: int
    offset: int
    owner: str
    created: float


@dataclass(frozen=True)
class StoredFile:
    """A finished upload, kept in the hub's files as `files/<sha256>`."""

    sha256: str
    size: int
    media_type: str
    kind: str  # "video" | "document" | "image"
    name: str


@dataclass
class _Record:
    id: str
    name: str
    size: int
    offset: int
    owner: str
    created: float
    updated: float
    stored: dict[str, Any] | None = None  # the StoredFile once finished
    refused: str | None = None  # why the content was refused

    def upload(self) -> Upload:
        return Upload(self.id, self.name, self.size, self.offset, self.owner, self.created)


def clean_name(name: str) -> str:
    """Return a label for display: the last path component, no control characters, at most 200 characters."""
    label = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    label = "".join(ch for ch in label if ch.isprintable()).strip()
    return label[:200] or "upload"


class Uploads:
    """The one owner of `hub/uploads/` (bytes in progress) and the writer of `hub/files/` (finished files)."""

    def __init__(self, root: Path, files: Path, max_bytes: int, clock: Callable[[], float] = time.time,
                 ffprobe: str | None = None) -> None:
        self.root, self.files = Path(root), Path(files)
        self.max_bytes = max_bytes
        self.clock = clock
        self.ffprobe = ffprobe if ffprobe is not None else (shutil.which("ffprobe") or "")
        storage.make_dirs(self.root)
        storage.make_dirs(self.files)
        storage.remove_leftovers(self.root, self.files)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        # upload id -> (offset, sha256 of the bytes up to it), for the uploads this process wrote
        self._digests: dict[str, tuple[int, Any]] = {}
        self._recover()

    # -- paths and records

    def _part(self, upload_id: str) -> Path:
        return self.root / f"{upload_id}.part"

    def _side(self, upload_id: str) -> Path:
        return self.root / f"{upload_id}.json"

    def _read(self, upload_id: str) -> _Record | None:
        if not ID_RE.fullmatch(upload_id):
            return None
        try:
            return _Record(**json.loads(self._side(upload_id).read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("upload record %s is unreadable (%s); treating the upload as gone", upload_id, exc)
            return None

    def _write(self, record: _Record) -> None:
        record.updated = self.clock()
        storage.atomic_write(self._side(record.id), json.dumps(asdict(record), ensure_ascii=False).encode())

    def _load(self, upload_id: str, owner: str) -> _Record:
        record = self._read(upload_id)
        if record is None or record.owner != owner:  # someone else's upload does not exist for this account
            raise NotFound(f"no upload {upload_id!r}; start the upload again")
        return record

    @contextmanager
    def _locked(self, upload_id: str, wait: bool = True) -> Iterator[bool]:
        with self._guard:
            lock = self._locks.setdefault(upload_id, threading.Lock())
        got = lock.acquire(blocking=wait)
        try:
            yield got
        finally:
            if got:
                lock.release()

    def _forget(self, upload_id: str) -> None:
        with self._guard:
            self._locks.pop(upload_id, None)
            self._digests.pop(upload_id, None)

    def _recover(self) -> None:
        """Bring every record and part file back to agreement after a crash."""
        for side in sorted(self.root.glob("*.json")):
            record = self._read(side.stem)
            if record is None:
                continue
            part = self._part(record.id)
            if record.stored is not None:
                if part.exists():  # the crash came between recording the result and the rename
                    self._place(part, record.stored["sha256"])
                continue
            if record.refused is not None:
                storage.remove_file(part)
                continue
            on_disk = part.stat().st_size if part.exists() else 0
            if on_disk > record.offset:
                # Bytes after the recorded offset were never vouched for: they may be unsynced garbage.
                with storage.open_part(part) as f:
                    storage.truncate_file(f, record.offset)
                    storage.sync_file(f)
                log.info("upload %s: cut the part file back to the recorded %d bytes", record.id, record.offset)
            elif on_disk < record.offset:
                log.warning("upload %s: the part file has %d bytes, the record says %d; resuming at %d",
                            record.id, on_disk, record.offset, on_disk)
                record.offset = on_disk
                self._write(record)
        for part in self.root.glob("*.part"):
            if not self._side(part.stem).exists():
                storage.remove_file(part)

    # -- the operations

    def create(self, name: str, size: int, owner: str) -> Upload:
        """Declare an upload of size bytes; return it, at offset 0."""
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise InvalidInput("size: the file's size in bytes, more than 0", field="size")
        if size > self.max_bytes:
            raise TooLarge(f"the file is {size / MB:.0f} MB; the hub takes files up to "
                           f"{self.max_bytes / MB:.0f} MB (CLASSBOX_MAX_UPLOAD)", field="size")
        self.expire(KEEP_FOR)
        free = shutil.disk_usage(self.root).free
        if free < size:
            raise HubFull(f"the hub has {free / MB:.0f} MB free and the file needs {size / MB:.0f} MB; "
                          "ask the administrator to make room")
        now = self.clock()
        record = _Record(secrets.token_urlsafe(16), clean_name(name), size, 0, owner, now, now)
        self._write(record)
        log.info("upload %s started: %r, %d bytes, by %s", record.id, record.name, size, owner)
        return record.upload()

    def status(self, upload_id: str, owner: str) -> Upload:
        """Return an upload and its offset."""
        return self._load(upload_id, owner).upload()

    def result(self, upload_id: str, owner: str) -> StoredFile | None:
        """Return what a finished upload became, None while it is under way."""
        record = self._load(upload_id, owner)
        return StoredFile(**record.stored) if record.stored is not None else None

    def append(self, upload_id: str, offset: int, stream: Readable, length: int, owner: str) -> int:
        """Append length bytes read from stream at offset, durably; return the new offset.

        A stream that ends early appends what it gave. Only an offset equal to the hub's is
        accepted (OffsetMismatch says which one is), so a chunk sent twice is never appended twice.
        """
        if length < 0:
            raise InvalidInput("the chunk's length must be 0 or more")
        if length > MAX_CHUNK:
            raise TooLarge(f"a chunk may be at most {MAX_CHUNK // MB} MB; send {length} bytes in smaller pieces")
        self._load(upload_id, owner)  # before taking a lock, so unknown ids leave nothing behind
        with self._locked(upload_id):
            record = self._load(upload_id, owner)
            if record.refused is not None:
                raise UnsupportedContent(record.refused)
            if offset != record.offset:
                raise OffsetMismatch(record.offset, offset)
            if record.stored is not None or length == 0:
                return record.offset
            if offset + length > record.size:
                raise InvalidInput(f"the chunk would end at byte {offset + length}, past the declared size "
                                   f"of {record.size} bytes")
            with self._guard:
                cached = self._digests.pop(upload_id, None)
            digest = cached[1] if cached is not None and cached[0] == offset else None
            if digest is None and offset == 0:
                digest = hashlib.sha256()
            received = self._receive(record, stream, length, digest)
            if received == 0:
                return offset
            record.offset = offset + received
            self._write(record)
            if digest is not None:
                with self._guard:
                    self._digests[upload_id] = (record.offset, digest)
            if offset < SNIFF_BYTES:
                self._sniff_early(record)
            return record.offset

    def _receive(self, record: _Record, stream: Readable, length: int, digest: Any) -> int:
        """Write up to length bytes from stream after the recorded offset and fsync them; return how many."""
        part = self._part(record.id)
        f = storage.open_part(part, buffering=0)  # unbuffered: a failed write leaves nothing queued
        received = 0
        try:
            if os.fstat(f.fileno()).st_size != record.offset:
                storage.truncate_file(f, record.offset)  # only what the record vouches for is kept
            f.seek(record.offset)
            while received < length:
                piece = stream.read(min(PIECE, length - received))
                if not piece:
                    log.info("upload %s: the chunk ended after %d of %d bytes", record.id, received, length)
                    break
                storage.write_part(f, piece)
                if digest is not None:
                    digest.update(piece)
                received += len(piece)
            storage.sync_file(f)
        except OSError as exc:
            storage.truncate_file(f, record.offset)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise HubFull(f"the hub's disk is full after {record.offset / MB:.0f} of {record.size / MB:.0f} MB; "
                              "ask the administrator to make room, then resume") from None
            raise
        finally:
            f.close()
        return received

    def _sniff_early(self, record: _Record) -> None:
        """Refuse at the first chunk what can never become a video, PDF or image."""
        with open(self._part(record.id), "rb") as f:
            head = f.read(SNIFF_BYTES)
        if len(head) < min(SNIFF_BYTES, record.size):
            return  # too little to tell yet
        try:
            sniff(head)
        except UnsupportedContent as exc:
            self._refuse(record, str(exc))
            raise

    def _refuse(self, record: _Record, reason: str) -> None:
        storage.remove_file(self._part(record.id))
        record.refused = reason
        self._write(record)
        with self._guard:
            self._digests.pop(record.id, None)
        log.info("upload %s (%r) refused: %s", record.id, record.name, reason)

    def finish(self, upload_id: str, owner: str) -> StoredFile:
        """Check the complete upload's content and move it into files/<sha256>; return what it became."""
        self._load(upload_id, owner)
        with self._locked(upload_id):
            record = self._load(upload_id, owner)
            if record.refused is not None:
                raise UnsupportedContent(record.refused)
            if record.stored is not None:
                return StoredFile(**record.stored)
            if record.offset != record.size:
                raise Conflict(f"the upload has {record.offset} of {record.size} bytes; send the rest first")
            part = self._part(record.id)
            try:
                with open(part, "rb") as f:
                    media_type, kind = sniff(f.read(SNIFF_BYTES))
                if kind == "video":
                    self._probe(part)
            except UnsupportedContent as exc:
                self._refuse(record, str(exc))
                raise
            with self._guard:
                cached = self._digests.pop(upload_id, None)
            if cached is not None and cached[0] == record.size:
                sha256 = cached[1].hexdigest()
            else:
                sha256 = hash_file(part)  # resumed after a restart: the running hash was lost with the process
            stored = StoredFile(sha256, record.size, media_type, kind, record.name)
            record.stored = asdict(stored)
            self._write(record)  # first the result, then the rename: a crash between is completed at start
            self._place(part, sha256)
            log.info("upload %s finished: %r is %s (%s, %d bytes)", record.id, record.name, sha256, media_type,
                     record.size)
            return stored

    def _place(self, part: Path, sha256: str) -> None:
        target = self.files / sha256
        if target.exists():
            storage.remove_file(part)  # the same content is there already
        else:
            storage.move_into_place(part, target)

    def _probe(self, path: Path) -> None:
        """Ask ffprobe whether a video's container reads and holds a video track; refuse it if not.

        ffprobe reads the header and index (tens of milliseconds for 500 MB), not every frame.
        """
        if not self.ffprobe:
            return
        cmd = [self.ffprobe, "-v", "error", "-show_entries", "stream=codec_type:stream_disposition=attached_pic",
               "-of", "json", str(path)]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=FFPROBE_TIMEOUT, check=False)
            streams = json.loads(done.stdout or b"{}").get("streams", [])
        except (OSError, subprocess.TimeoutExpired, ValueError, AttributeError) as exc:
            log.warning("ffprobe could not check %s (%s); accepting it on its magic bytes", path.name, exc)
            return
        said = done.stderr.decode(errors="replace").strip().splitlines()
        if done.returncode != 0 or not streams:
            raise UnsupportedContent("the video cannot be read: it is damaged, cut short or not really a video"
                                     + (f" (ffprobe: {said[-1][:200]})" if said else ""))
        if not any(st.get("codec_type") == "video" and not st.get("disposition", {}).get("attached_pic")
                   for st in streams):
            raise UnsupportedContent("the file has no video track, only sound; upload the video itself")

    def discard(self, upload_id: str, owner: str) -> None:
        """Delete an upload and its bytes."""
        self._load(upload_id, owner)
        with self._locked(upload_id):
            record = self._load(upload_id, owner)
            self._remove(record.id)
        log.info("upload %s (%r) discarded by %s", upload_id, record.name, owner)

    def _remove(self, upload_id: str) -> None:
        storage.remove_file(self._part(upload_id))
        storage.remove_file(self._side(upload_id))
        self._forget(upload_id)

    def expire(self, older_than_s: float) -> int:
        """Remove uploads nobody touched for older_than_s seconds; return how many."""
        removed = 0
        now = self.clock()
        for side in self.root.glob("*.json"):
            record = self._read(side.stem)
            if record is None or now - record.updated <= older_than_s:
                continue
            with self._locked(record.id, wait=False) as got:
                if not got:  # a chunk is being written right now: not abandoned
                    continue
                self._remove(record.id)
            removed += 1
            log.info("upload %s (%r, %d of %d bytes) expired", record.id, record.name, record.offset, record.size)
        return removed


def hash_file(path: Path) -> str:
    """Return the sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- what a file is, from its first bytes

VIDEO_BRANDS = {
    "isom": "video/mp4", "iso2": "video/mp4", "iso4": "video/mp4", "iso5": "video/mp4", "iso6": "video/mp4",
    "mp41": "video/mp4", "mp42": "video/mp4", "avc1": "video/mp4", "dash": "video/mp4", "mmp4": "video/mp4",
    "msnv": "video/mp4", "f4v ": "video/mp4", "XAVC": "video/mp4", "M4V ": "video/x-m4v", "M4VH": "video/x-m4v",
    "M4VP": "video/x-m4v", "qt  ": "video/quicktime", "3gp4": "video/3gpp", "3gp5": "video/3gpp",
    "3gp6": "video/3gpp", "3g2a": "video/3gpp2",
}
OTHER_BRANDS = {
    "M4A ": "an M4A sound file", "M4B ": "an audiobook (M4B)", "M4P ": "an M4P sound file",
    "heic": "a HEIC photo (save it as JPEG)", "heix": "a HEIC photo (save it as JPEG)",
    "mif1": "a HEIF photo (save it as JPEG)", "msf1": "a HEIF image sequence", "avif": "an AVIF image",
    "crx ": "a Canon raw photo", "jp2 ": "a JPEG 2000 image",
}
QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip")  # old QuickTime files start without ftyp


def sniff(head: bytes) -> tuple[str, str]:
    """Return (media type, kind) of a file from its first bytes, or raise UnsupportedContent naming what it is."""
    if head[4:8] == b"ftyp" and len(head) >= 12:
        brands = [head[8:12]] + [head[i:i + 4] for i in range(16, min(len(head), int.from_bytes(head[:4])), 4)]
        for raw in brands:
            media_type = VIDEO_BRANDS.get(raw.decode("latin-1"))
            if media_type:
                return media_type, "video"
        major = head[8:12].decode("latin-1")
        what = OTHER_BRANDS.get(major, f"an ISO media file of brand {major!r}, not a known video brand")
        _refuse(head, what)
    if head[4:8] in QUICKTIME_ATOMS and int.from_bytes(head[:4]) >= 8:
        return "video/quicktime", "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ("video/webm", "video") if b"webm" in head[:64] else ("video/x-matroska", "video")
    if head.startswith(b"%PDF-"):
        return "application/pdf", "document"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "image"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "image"
    _refuse(head, _describe(head))


def _refuse(head: bytes, what: str | None) -> NoReturn:
    start = " ".join(f"{b:02x}" for b in head[:8]) if head else "nothing (it is empty)"
    text = head[:16].decode("utf-8", errors="replace")
    shown = f"{start} ({text!r})" if head and text.isprintable() else start
    raise UnsupportedContent(f"not a video, PDF or image: the file starts with {shown}"
                             + (f", which looks like {what}" if what else ""))


def _describe(head: bytes) -> str | None:
    """Name what a refused file looks like, with what to do, when we can tell."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"PK\x03\x04"):
        first_name = head[30:30 + int.from_bytes(head[26:28], "little")]
        office = (b"word/", "a Word document"), (b"ppt/", "a PowerPoint file"), (b"xl/", "an Excel file")
        inside = head[:SNIFF_BYTES]
        for marker, label in office:
            if marker in inside:
                return f"{label} (save it as PDF)"
        if first_name == b"mimetype" and b"opendocument" in inside:
            return "an OpenDocument file (save it as PDF)"
        if first_name == b"[Content_Types].xml":
            return "an Office file (save it as PDF)"
        return "a ZIP archive (unpack it and upload the video, PDF or image inside)"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "an old Office file (.doc, .ppt or .xls; save it as PDF)"
    if stripped.startswith(b"#extm3u"):
        return "an HLS playlist (.m3u8), which only points at the video; upload the video file itself"
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")):
        return "an HTML page (a saved web page, not the file it shows)"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "an AVI video (convert it to MP4)"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "a WAV sound file"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image (save it as JPEG or PNG)"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image (save it as PNG)"
    if head.startswith(b"FLV"):
        return "a Flash video (FLV; convert it to MP4)"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "a Windows Media file (WMV; convert it to MP4)"
    if head[:1] == b"\x47" and head[188:189] == b"\x47":
        return "an MPEG transport stream (.ts; convert it to MP4)"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "an MPEG-PS video (.mpg or .vob; convert it to MP4)"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "an MP3 sound file"
    if head.startswith((b"Rar!", b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b")):
        return "a compressed archive (unpack it first)"
    if head.startswith(b"{\\rtf"):
        return "an RTF document (save it as PDF)"
    if head.startswith(b"BM"):
        return "a BMP image (save it as PNG)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "plain text"
