"""Every durable write of a box, and the crash-safe state database.

A power cut can come at any instant. Each write here goes to a temp file in the
target's directory, is fsynced, renamed over the target with os.replace, and the
directory is fsynced, so a reader finds either the old bytes or the new ones.
Nobody else in classbox opens a durable file for writing: appends to a log and
partial downloads and uploads go through the functions here too.

`recording(root)` logs every one of these operations under root, in order, for
the power-loss tests (tests/powerloss.py), which rebuild from the log what a power
cut at each fsync and rename could leave. Off, it costs one `if` per operation.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from tinydb import TinyDB, where
from tinydb.storages import Storage

from .errors import StateError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp~"
OP_KINDS = ("mkdir", "create", "write", "truncate", "fsync", "rename", "unlink", "fsync_dir")


@dataclass(frozen=True)
class Op:
    """One durable operation, as recording() logs it; paths are relative to the recorded root."""

    kind: str           # one of OP_KINDS
    path: str
    offset: int = 0     # write: where the data went; truncate: the new size
    data: bytes = b""   # write: the bytes
    target: str = ""    # rename: the new name


class Recorder:
    """The log of durable operations under one directory, kept while recording() is on."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.abspath(root)
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def relative(self, path: str | os.PathLike[str]) -> str | None:
        """Return path relative to the root, or None when it lies outside."""
        full = os.path.abspath(path)
        if full == self.root:
            return "."
        if not full.startswith(self.root + os.sep):
            return None
        return full[len(self.root) + 1:]

    def note(self, kind: str, path: str | os.PathLike[str], offset: int = 0, data: bytes = b"",
             target: str | os.PathLike[str] | None = None) -> None:
        """Log one operation if it touches the root."""
        rel = self.relative(path)
        if rel is None:
            return
        new = ""
        if target is not None:
            moved = self.relative(target)
            if moved is None:
                return  # moved out of the recorded tree: not a workload of the power-loss tests
            new = moved
        with self._lock:
            self.ops.append(Op(kind, rel, offset, bytes(data), new))


_recorder: Recorder | None = None


@contextmanager
def recording(root: Path) -> Iterator[Recorder]:
    """Log every durable operation under root while the block runs (a test mode).

    An operation is logged once done (one that fails is not), in the order done. What a caller
    writes into new_file() is logged as one write of the whole file, just before its fsync.
    """
    global _recorder
    if _recorder is not None:
        raise RuntimeError("durable operations are being recorded already")
    _recorder = Recorder(root)
    try:
        yield _recorder
    finally:
        _recorder = None


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if _recorder is not None:
        _recorder.note("fsync_dir", path)


def make_dirs(path: Path) -> None:
    """Create a directory and its missing parents, each made durable in its parent."""
    path = Path(path)
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    if _recorder is not None:
        _recorder.note("mkdir", path)
    fsync_dir(path.parent)


def temp_path_for(target: Path) -> Path:
    """Return a fresh temp name beside target, recognised by remove_leftovers()."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextmanager
def new_file(target: Path, mode: int = 0o644, temp_dir: Path | None = None) -> Iterator[IO[bytes]]:
    """Write a file that appears at target, complete and synced, only if the block succeeds."""
    target = Path(target)
    make_dirs(target.parent)
    tmp = temp_path_for(target) if temp_dir is None else temp_path_for(Path(temp_dir) / target.name)
    make_dirs(tmp.parent)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    if _recorder is not None:
        _recorder.note("create", tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if _recorder is not None:  # the caller wrote through f itself: log the whole file as one write
                _recorder.note("write", tmp, 0, tmp.read_bytes())
            os.fsync(f.fileno())
            if _recorder is not None:
                _recorder.note("fsync", tmp)
        os.chmod(tmp, mode)
        _rename(tmp, target)
    except BaseException:
        drop_file(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write(target: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace target with data so that a crash leaves the old or the new file, never a mix."""
    with new_file(target, mode) as f:
        f.write(data)


def move_into_place(synced_tmp: Path, target: Path) -> None:
    """Rename an already fsynced file to target and make the rename durable."""
    make_dirs(target.parent)
    _rename(synced_tmp, target)
    fsync_dir(target.parent)


def _rename(src: Path, target: Path) -> None:
    os.replace(src, target)
    if _recorder is not None:
        _recorder.note("rename", src, target=target)


def remove_file(path: Path) -> None:
    """Delete a file if present and make the deletion durable."""
    if drop_file(path):
        fsync_dir(path.parent)


def drop_file(path: Path) -> bool:
    """Delete a file if present, without waiting for the deletion to be durable (one left behind is harmless).

    Return whether there was a file.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    if _recorder is not None:
        _recorder.note("unlink", path)
    return True


def open_part(path: Path, buffering: int = -1) -> BinaryIO:
    """Open a partial file (a download or upload in flight) to read and write, creating it empty if missing."""
    path = Path(path)
    created = _recorder is not None and not path.exists()
    f: BinaryIO = open(path, "r+b", buffering=buffering,  # the caller closes it
                       opener=lambda name, flags: os.open(name, flags | os.O_CREAT, 0o644))
    if created and _recorder is not None:
        _recorder.note("create", path)
    return f


def write_part(f: IO[bytes], data: bytes) -> None:
    """Write all of data at the position of a file from open_part(); durable only after sync_file()."""
    offset = f.tell() if _recorder is not None else 0
    view = memoryview(data)
    while view:
        written = f.write(view)
        view = view[len(view) if written is None else written:]
    if _recorder is not None:
        _recorder.note("write", f.name, offset, data)


def truncate_file(f: IO[bytes], size: int) -> None:
    """Cut (or extend with zeros) a file from open_part() to size bytes; durable only after sync_file()."""
    f.truncate(size)
    if _recorder is not None:
        _recorder.note("truncate", f.name, size)


def sync_file(f: IO[bytes]) -> None:
    """Make what was written to a file from open_part() durable."""
    f.flush()
    os.fsync(f.fileno())
    if _recorder is not None:
        _recorder.note("fsync", f.name)


def append_record(path: Path, line: bytes) -> None:
    """Append one newline-terminated record to a log file and make it durable.

    The cost is one write and one fsync whatever the file's size (plus a directory
    fsync when the file is new). A power cut leaves at most a torn last line,
    which readers skip.
    """
    if not line.endswith(b"\n"):
        raise ValueError("a record must end with a newline")
    path = Path(path)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if _recorder is not None:
            if created:
                _recorder.note("create", path)
            end = os.fstat(fd).st_size
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        if _recorder is not None:
            _recorder.note("write", path, end, line)
        os.fsync(fd)
        if _recorder is not None:
            _recorder.note("fsync", path)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def remove_leftovers(*dirs: Path) -> int:
    """Delete temp files a crash left behind in these directories; return how many."""
    removed = 0
    for d in dirs:
        if not Path(d).is_dir():
            continue
        for entry in os.scandir(d):
            if entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                if _recorder is not None:
                    _recorder.note("unlink", entry.path)
                removed += 1
                log.info("removed leftover temp file %s", entry.path)
        if removed:
            fsync_dir(Path(d))
    return removed


class AtomicJSONStorage(Storage):
    """A TinyDB storage that replaces the whole file atomically, once per transaction.

    TinyDB's JSONStorage truncates and rewrites in place, which a power cut turns
    into an empty or half-written file. This one keeps the state in memory (the
    process owns the data directory), and inside a transaction collects TinyDB's
    writes and flushes them with one atomic_write() at the end, so several
    changes made together land on disk together or not at all.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._data: dict[str, Any] | None = None
        self._depth = 0
        self._dirty = False

    def read(self) -> dict[str, Any] | None:
        """Return the whole database, loading it from disk once."""
        if self._data is None:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return None
            try:
                self._data = json.loads(raw) if raw.strip() else None
            except ValueError as exc:
                raise StateError(
                    f"state file {self.path} is not valid JSON ({exc}); restore it from a backup"
                ) from None
        # TinyDB mutates what read() returns before handing it to write(): give it a copy.
        return json.loads(json.dumps(self._data)) if self._data is not None else None

    def write(self, data: dict[str, Any]) -> None:
        """Take the whole database; persist it now, or at the end of the open transaction."""
        self._data = json.loads(json.dumps(data))
        self._dirty = True
        if self._depth == 0:
            self.flush()

    def begin(self) -> None:
        """Start collecting writes."""
        self._depth += 1

    def end(self) -> None:
        """Close a transaction; the outermost one flushes."""
        self._depth -= 1
        if self._depth == 0:
            self.flush()

    def flush(self) -> None:
        """Write the database to disk atomically if it changed."""
        if self._dirty:
            encoded = json.dumps(self._data, ensure_ascii=False, separators=(",", ":")).encode()
            atomic_write(self.path, encoded, mode=0o600)
            self._dirty = False

    def close(self) -> None:
        """Nothing to release: no file stays open."""


class State:
    """The state database (settings, trusted keys, ...): the one owner of state.json.

    TinyDB is not thread-safe; every access goes through `transaction()`, which
    holds one lock for the whole read-modify-write and writes its changes to
    disk once, atomically, when it ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        make_dirs(self.path.parent)
        remove_leftovers(self.path.parent)
        self._lock = threading.RLock()
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)
        with self.transaction() as db:
            db.tables()  # load now, so a broken file fails at start and not mid-request

    @contextmanager
    def transaction(self) -> Iterator[TinyDB]:
        """Hold the state lock for a whole read-modify-write."""
        with self._lock:
            storage: AtomicJSONStorage = self._db.storage  # type: ignore[assignment]
            storage.begin()
            try:
                yield self._db
            finally:
                storage.end()

    def get(self, key: str, default: Any = None) -> Any:
        """Return a setting."""
        with self.transaction() as db:
            doc = db.table("settings").get(where("key") == key)
            return default if doc is None else doc["value"]

    def set(self, key: str, value: Any) -> None:
        """Store a setting durably."""
        with self.transaction() as db:
            db.table("settings").upsert({"key": key, "value": value}, where("key") == key)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def truncate_torn_tail(path: Path) -> int:
    """Cut a log file back to just after its last newline, durably; return how many bytes were cut.

    A power cut during append_record() can leave half a record at the end. Cut it
    before the next append, or that record would be glued onto the torn one.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        keep, end = 0, size
        while end > 0:
            start = max(0, end - 65536)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        os.ftruncate(fd, keep)
        os.fsync(fd)
        if _recorder is not None:
            _recorder.note("truncate", path, keep)
            _recorder.note("fsync", path)
    finally:
        os.close(fd)
    log.warning("cut a torn record of %d bytes from the end of %s", size - keep, path)
    return size - keep
