"""The last log lines, kept in memory for the admin dashboard and the diagnostics bundle.

journald keeps the full log on a device, but a technician on a phone cannot read it:
the box keeps its own last lines (every level the root logger lets through) and,
apart, its last warnings and errors, which a flood of INFO lines must not push out.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CAPACITY = 1000
PROBLEMS = 50


@dataclass(frozen=True)
class LogEntry:
    """One warning or error as the dashboard lists it."""

    time: float
    level: str
    logger: str
    message: str

    def as_dict(self) -> dict[str, object]:
        """Return the entry as plain JSON-able values."""
        return asdict(self)


class LogRing(logging.Handler):
    """A handler that keeps the last `capacity` formatted records and the last `problems` warnings or worse."""

    def __init__(self, capacity: int = CAPACITY, problems: int = PROBLEMS) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        self._lines: deque[str] = deque(maxlen=capacity)
        self._problems: deque[LogEntry] = deque(maxlen=problems)
        self._ring_lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Return how many lines are kept."""
        return self._lines.maxlen or 0

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted record, and the record itself when it is a warning or worse."""
        try:
            line = self.format(record)
            entry = None
            if record.levelno >= logging.WARNING:
                message = record.getMessage()
                if record.exc_info and record.exc_text:
                    # The exception's last line says what went wrong; the full traceback is in lines().
                    message = f"{message} ({record.exc_text.strip().splitlines()[-1]})"
                entry = LogEntry(record.created, record.levelname, record.name, message)
        except Exception:  # what logging.Handler.emit does: report on stderr, never raise into the caller
            self.handleError(record)
            return
        with self._ring_lock:
            self._lines.append(line)
            if entry is not None:
                self._problems.append(entry)

    def lines(self) -> list[str]:
        """Return the kept lines, oldest first (a record with a traceback is one multi-line entry)."""
        with self._ring_lock:
            return list(self._lines)

    def problems(self, limit: int = PROBLEMS) -> list[LogEntry]:
        """Return up to `limit` of the latest warnings and errors, newest first."""
        with self._ring_lock:
            kept = list(self._problems)
        return kept[::-1][: max(0, limit)]


def install(capacity: int = CAPACITY) -> LogRing:
    """Attach a LogRing to the root logger, or return the one already attached.

    Call it after logging.basicConfig: basicConfig does nothing once the root logger has a handler.
    """
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, LogRing):
            return handler
    ring = LogRing(capacity)
    root.addHandler(ring)
    return ring
