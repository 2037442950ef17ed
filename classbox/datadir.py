"""The data directory: where each kind of state lives, and the lock that makes one process its owner."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from . import storage
from .errors import ConfigError, DataDirLocked


@dataclass(frozen=True)
class DataDir:
    """Paths of one box's data directory (see DESIGN.md, "Data on a box")."""

    root: Path

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def partial(self) -> Path:
        return self.root / "partial"

    @property
    def channels(self) -> Path:
        return self.root / "channels"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def serve_file(self) -> Path:
        return self.root / "serve.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    def prepare(self) -> None:
        """Create the layout and clear what an earlier crash left half-done."""
        try:
            for d in (self.root, self.blobs, self.partial, self.channels, self.events, self.quarantine):
                storage.make_dirs(d)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"the data directory {self.root} is not writable by this user")
        storage.remove_leftovers(self.root, *sorted(p for p in self.channels.iterdir() if p.is_dir()))
        # Downloads in flight (<sha>.part with its <sha>.json) resume; staged copies do not.
        for entry in self.partial.iterdir():
            if entry.is_file() and entry.suffix not in (".part", ".json"):
                storage.drop_file(entry)


class DataDirLock:
    """An exclusive lock on a data directory, held for the life of the process that owns it."""

    def __init__(self, data: DataDir) -> None:
        self.data = data
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirLocked naming the process that holds it."""
        storage.make_dirs(self.data.root)
        fd = os.open(self.data.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"the data directory {self.data.root} is in use by another classbox process (pid {holder}); "
                "stop that one first, or give this one another --data directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
