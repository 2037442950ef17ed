"""Resumable, verified HTTP downloads of blobs over links that drop, stall and lie.

A blob is fetched into partial/<sha256>.part beside a side file partial/<sha256>.json
that records how many bytes are safely on disk and the server's strong validator
(ETag). After a cut the download goes on with `Range` guarded by `If-Range`: a 206
at exactly our offset appends, a 200 means the file changed and starts from zero,
a 206 anywhere else is refused. Nothing reaches the store until its length and
sha256 match the manifest.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from .. import storage
from ..errors import ClassboxError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
CHECKPOINT_BYTES = 4 * 1024 * 1024
CHECKPOINT_SECONDS = 5.0
CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class SyncError(ClassboxError):
    """A source could not give us what we asked for; retry_after says when to try again, if known."""

    code = "sync_failed"

    def __init__(self, message: str, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class BadContent(SyncError):
    """The bytes received are not the ones the manifest names; they were thrown away."""

    code = "bad_content"


class DiskFull(SyncError):
    """The box's disk could not take the bytes; the run stops, what was verified stays."""

    code = "disk_full"


class Stopped(SyncError):
    """The box is stopping: the transfer ends at its next chunk, its progress saved for the next start."""

    code = "stopped"

    def __init__(self) -> None:
        super().__init__("stopped with the box; the sync goes on from where it was at the next start",
                         permanent=True)


@dataclass(frozen=True)
class Limits:
    """Timeouts and the stall watchdog of one transfer."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    min_rate: float = 1024.0  # bytes/s averaged over stall_window, or the transfer is abandoned
    stall_window: float = 30.0
    deadline: float = 6 * 3600.0  # one blob, all attempts together


class Throttle:
    """A token bucket shared by all transfers: at most `rate` bytes/s; and their off switch.

    The bucket holds a quarter of a second of traffic, so any 10 s window carries
    at most 2.5 % more than the cap. Once `stop` is set, every transfer passing
    through it ends with Stopped at its next chunk, and so does any wait.
    """

    BURST_SECONDS = 0.25

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None, stop: threading.Event | None = None) -> None:
        self.rate = rate
        self.stop = stop or threading.Event()
        self.clock, self.sleep = clock, sleep or self.pause
        self.capacity = (rate or 0.0) * self.BURST_SECONDS
        self.tokens = self.capacity
        self.stamp = clock()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise Stopped once the box is stopping."""
        if self.stop.is_set():
            raise Stopped

    def pause(self, seconds: float) -> None:
        """Wait, cut short by Stopped when the box stops."""
        if self.stop.wait(seconds):
            raise Stopped

    def chunk(self, wanted: int) -> int:
        """Return how many bytes to read at once so that the bucket can pass them."""
        if not self.rate:
            return wanted
        return max(1024, min(wanted, int(self.capacity)))

    def take(self, n: int) -> None:
        """Block until n bytes may pass; raise Stopped once the box is stopping."""
        self.check()
        if not self.rate:
            return
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            self.sleep(wait)


@dataclass
class _Side:
    url: str
    sha256: str
    size: int
    offset: int
    validator: str | None


def parse_retry_after(value: str | None) -> float | None:
    """Return seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def connect(url: str, limits: Limits) -> tuple[http.client.HTTPConnection, str]:
    """Open a connection for url; return it and the request target."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SyncError(f"{url!r} is not an http:// or https:// URL", permanent=True)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=limits.connect_timeout)
    # A platform's file names hold spaces and Chinese: send them percent-encoded (escapes already there stay).
    target = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    if parts.query:
        target += "?" + urllib.parse.quote(parts.query, safe="=&%:@!$'()*+,;/?~")
    return conn, target


def _request(url: str, headers: dict[str, str], limits: Limits, rcvbuf: int = 0) -> tuple[http.client.HTTPConnection,
                                                                          http.client.HTTPResponse]:
    conn, target = connect(url, limits)
    # The read timeout bounds each recv; a server that trickles its headers a byte at a
    # time never trips it, so the whole head of the response gets a deadline too.
    watchdog: threading.Timer | None = None
    fired = threading.Event()
    try:
        conn.connect()
        sock = conn.sock
        assert sock is not None
        sock.settimeout(limits.read_timeout)
        if rcvbuf:  # under a bandwidth cap, keep the sender from running far ahead of us
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        watchdog = threading.Timer(limits.read_timeout, _cut, args=(sock, fired))
        watchdog.daemon = True
        watchdog.start()
        conn.request("GET", target, headers={"User-Agent": "classbox", **headers})
        response = conn.getresponse()
    except http.client.InvalidURL as exc:
        conn.close()
        raise SyncError(f"{url}: {exc}", permanent=True) from None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        late = fired.is_set()
        reason = f"no response headers within {limits.read_timeout:.0f} s" if late else exc or type(exc).__name__
        raise SyncError(f"{url}: {reason}") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return conn, response


def _cut(sock: socket.socket, fired: threading.Event) -> None:
    fired.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _status_error(url: str, response: http.client.HTTPResponse) -> SyncError:
    retry = parse_retry_after(response.getheader("Retry-After"))
    permanent = response.status in (401, 403, 404, 410)
    return SyncError(f"{url}: HTTP {response.status} {response.reason}", retry_after=retry, permanent=permanent)


def fetch_small(url: str, max_bytes: int, limits: Limits, headers: dict[str, str] | None = None) -> bytes:
    """GET a small file (a manifest, a signature) whole into memory, refusing more than max_bytes."""
    conn, response = _request(url, dict(headers or {}), limits)
    try:
        if response.status != 200:
            raise _status_error(url, response)
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise BadContent(f"{url}: {length} bytes, over the {max_bytes}-byte limit", permanent=True)
        data = b""
        started = time.monotonic()
        while len(data) <= max_bytes:
            chunk = response.read(min(CHUNK, max_bytes + 1 - len(data)))
            if not chunk:
                break
            data += chunk
            if time.monotonic() - started > limits.deadline:
                raise SyncError(f"{url}: took longer than {limits.deadline:.0f} s")
        if len(data) > max_bytes:
            raise BadContent(f"{url}: over the {max_bytes}-byte limit", permanent=True)
        if length is not None and length.isdigit() and len(data) != int(length):
            raise SyncError(f"{url}: connection closed after {len(data)} of {length} bytes")
        return data
    except (OSError, http.client.HTTPException) as exc:
        raise SyncError(f"{url}: {exc or type(exc).__name__}") from None
    finally:
        response.close()  # a Connection: close response owns the socket, not conn
        conn.close()


class BlobDownload:
    """One blob's download into partial/, resumable across cuts, restarts and power loss."""

    def __init__(self, url: str, sha256: str, size: int, partial: Path, limits: Limits,
                 throttle: Throttle | None = None, on_bytes: Callable[[int], None] | None = None,
                 algorithm: str = "sha256", headers: dict[str, str] | None = None) -> None:
        # `sha256` is the expected digest in `algorithm` (a platform's files may name only their md5).
        self.url, self.sha256, self.size = url, sha256, size
        self.algorithm = algorithm
        self.headers = dict(headers or {})
        self.part = partial / f"{sha256}.part"
        self.side_path = partial / f"{sha256}.json"
        self.limits = limits
        self.throttle = throttle or Throttle(None)
        self.on_bytes = on_bytes or (lambda n: None)
        self.wire_bytes = 0
        # (offset, sha256 state) of the bytes this object itself wrote: a resume in this process
        # goes on from it instead of re-reading the whole part file after every cut.
        self._resume: tuple[int, Any] | None = None

    def _load_side(self) -> _Side:
        try:
            side = _Side(**json.loads(self.side_path.read_bytes()))
        except (FileNotFoundError, ValueError, TypeError):
            return _Side(self.url, self.sha256, self.size, 0, None)
        if side.sha256 != self.sha256 or side.size != self.size:
            return _Side(self.url, self.sha256, self.size, 0, None)
        return side

    def _save_side(self, side: _Side) -> None:
        storage.atomic_write(self.side_path, json.dumps(asdict(side)).encode())

    def discard(self) -> None:
        """Forget this download."""
        storage.drop_file(self.part)
        storage.drop_file(self.side_path)

    def attempt(self) -> Path | None:
        """Make one request; return the verified file when complete, None when cut short (resumable)."""
        storage.make_dirs(self.part.parent)
        side = self._load_side()
        # Only bytes the side file vouches for are kept: anything after may be unsynced garbage.
        with storage.open_part(self.part) as f:
            on_disk = os.fstat(f.fileno()).st_size
            if side.offset > on_disk or (side.offset and not side.validator):
                side.offset = 0
            storage.truncate_file(f, side.offset)
            if self._resume is not None and self._resume[0] == side.offset:
                digest, remaining = self._resume[1].copy(), 0
            else:
                digest = hashlib.new(self.algorithm)
                f.seek(0)
                remaining = side.offset
            self._resume = None
            while remaining:
                chunk = f.read(min(1 << 20, remaining))
                if not chunk:
                    raise SyncError(f"partial file {self.part} shrank while resuming")
                digest.update(chunk)
                remaining -= len(chunk)
            if side.offset == self.size and self.size > 0:
                return self._finish(f, digest, side)
            headers = dict(self.headers)
            resuming = side.offset > 0
            if side.offset:
                headers.update({"Range": f"bytes={side.offset}-", "If-Range": side.validator or ""})
            rcvbuf = int(self.throttle.capacity) if self.throttle.rate else 0
            conn, response = _request(self.url, headers, self.limits, rcvbuf)
            try:
                if response.status == 200:
                    if side.offset:
                        log.info("%s: changed on the server, starting again from zero", self.url)
                    side.offset = 0
                    f.seek(0)
                    storage.truncate_file(f, 0)
                    digest = hashlib.new(self.algorithm)
                elif response.status == 206:
                    self._check_content_range(response.getheader("Content-Range"), side.offset)
                elif response.status == 416 and side.offset:
                    side.offset, side.validator = 0, None
                    self._save_side(side)
                    raise SyncError(f"{self.url}: server refused our resume offset; starting again")
                else:
                    raise _status_error(self.url, response)
                etag = response.getheader("ETag")
                side.validator = etag if etag and not etag.startswith("W/") else None
                if resuming:  # a fresh download has nothing on disk to vouch for until its first checkpoint
                    self._save_side(side)
                f.seek(side.offset)
                try:
                    self._receive(f, response, digest, side)
                finally:
                    self._resume = (side.offset, digest.copy())
            finally:
                response.close()  # a Connection: close response owns the socket, not conn
                conn.close()
            if side.offset < self.size:
                return None
            return self._finish(f, digest, side)

    def _check_content_range(self, header: str | None, offset: int) -> None:
        m = CONTENT_RANGE_RE.fullmatch((header or "").strip())
        if not m:
            raise SyncError(f"{self.url}: 206 without a usable Content-Range ({header!r}); refused")
        start, _end, total = m.groups()
        if int(start) != offset:
            raise SyncError(f"{self.url}: asked for bytes from {offset}, server sent from {start}; refused")
        if total != "*" and int(total) != self.size:
            self.discard()
            raise BadContent(f"{self.url}: server says the file is {total} bytes, the manifest says {self.size}")

    def _receive(self, f, response: http.client.HTTPResponse, digest, side: _Side) -> None:  # type: ignore[no-untyped-def]
        """Append the response body to the part file, checkpointing; a cut just ends the attempt."""
        window_start = time.monotonic()
        window_bytes = 0
        synced_at = side.offset
        last_sync = window_start
        try:
            while True:
                want = self.throttle.chunk(min(CHUNK, self.size + 1 - side.offset))
                chunk = response.read1(want)
                self.throttle.take(len(chunk))
                if not chunk:
                    break
                self.wire_bytes += len(chunk)
                if side.offset + len(chunk) > self.size:
                    self.discard()
                    raise BadContent(f"{self.url}: longer than the {self.size} bytes the manifest states")
                self._write(f, chunk)
                digest.update(chunk)
                side.offset += len(chunk)
                window_bytes += len(chunk)
                self.on_bytes(len(chunk))
                now = time.monotonic()
                if side.offset - synced_at >= CHECKPOINT_BYTES or now - last_sync >= CHECKPOINT_SECONDS:
                    try:
                        self._checkpoint(f, side)
                    except OSError as exc:
                        raise DiskFull(f"cannot save {self.part.name}: {exc.strerror or exc}", permanent=True) from None
                    synced_at, last_sync = side.offset, now
                if now - window_start >= self.limits.stall_window:
                    # The watchdog: a link that trickles holds the slot another source could use.
                    if window_bytes / (now - window_start) < self.limits.min_rate:
                        raise SyncError(f"{self.url}: slower than {self.limits.min_rate:.0f} B/s "
                                        f"for {self.limits.stall_window:.0f} s; abandoned")
                    window_start, window_bytes = now, 0
        except TimeoutError:
            raise SyncError(f"{self.url}: no data for {self.limits.read_timeout:.0f} s; timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            log.info("%s: cut after %d of %d bytes (%s)", self.url, side.offset, self.size, exc or type(exc).__name__)
        finally:
            # A complete file is synced by _finish, which drops the side file: no checkpoint for it first.
            if side.offset < self.size and self.part.exists():
                try:
                    self._checkpoint(f, side)
                except OSError as exc:  # disk full: the side file keeps its last good offset
                    log.warning("%s: could not record progress: %s", self.part, exc.strerror)

    def _write(self, f, chunk: bytes) -> None:  # type: ignore[no-untyped-def]
        """Append to the part file; a disk error ends the run rather than looking like a cut link."""
        try:
            storage.write_part(f, chunk)
        except OSError as exc:
            raise DiskFull(f"cannot write {self.part.name}: {exc.strerror or exc}", permanent=True) from None

    def _checkpoint(self, f, side: _Side) -> None:  # type: ignore[no-untyped-def]
        """Make the bytes so far durable, then record that they are."""
        storage.sync_file(f)
        self._save_side(side)

    def _finish(self, f, digest, side: _Side) -> Path:  # type: ignore[no-untyped-def]
        if side.offset != self.size or digest.hexdigest() != self.sha256:
            self.discard()
            raise BadContent(f"{self.url}: content hashes to {digest.hexdigest()}, not {self.sha256}; discarded")
        storage.sync_file(f)
        storage.drop_file(self.side_path)
        return self.part
