"""Long admin tasks (scrub, USB export) run in the background, one of each kind at a time, with progress."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .errors import ClassboxError, Conflict

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class Job:
    """One run of a task: how far it got and how it ended."""

    kind: str
    title: str
    started: float
    done: int = 0
    total: int = 0
    finished: float | None = None
    result: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        """Return the job as plain values."""
        return asdict(self)


class Jobs:
    """The background tasks of one box, the latest run of each kind kept for the dashboard."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Job] = {}

    def start(self, kind: str, title: str, work: Callable[[Progress], str]) -> Job:
        """Run work(progress) in a thread; refuse while a job of the same kind runs."""
        with self._lock:
            running = self._latest.get(kind)
            if running is not None and running.finished is None:
                raise Conflict(f"{running.title} is still running ({running.done}/{running.total})")
            job = self._latest[kind] = Job(kind, title, time.time())

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        def run() -> None:
            try:
                job.result = work(progress)
            except ClassboxError as exc:
                job.error = str(exc)
            except Exception as exc:  # the top of a background task: report it, never die silently
                log.exception("%s failed", title)
                job.error = f"{type(exc).__name__}: {exc}"
            finally:
                job.finished = time.time()

        threading.Thread(target=run, name=f"job-{kind}", daemon=True).start()
        return job

    def latest(self) -> list[Job]:
        """Return the latest job of each kind, newest first."""
        with self._lock:
            return sorted(self._latest.values(), key=lambda j: j.started, reverse=True)
