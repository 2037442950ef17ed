"""Health of the box: a psutil snapshot plus what the box holds."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import psutil

from . import __version__
from .box import Box


@dataclass(frozen=True)
class HealthReport:
    """What /-/health and `classbox doctor` report."""

    version: str
    uptime_s: float
    disk_free_bytes: int
    disk_total_bytes: int
    channels: int
    lessons: int

    def as_dict(self) -> dict[str, object]:
        """Return the report as plain JSON-able values."""
        return asdict(self)


def snapshot(box: Box) -> HealthReport:
    """Measure the box now."""
    disk = psutil.disk_usage(str(box.data.root))
    return HealthReport(
        version=__version__,
        uptime_s=round(time.time() - box.started_at, 1),
        disk_free_bytes=disk.free,
        disk_total_bytes=disk.total,
        channels=len(box.catalog.channels()),
        lessons=len(box.catalog),
    )
