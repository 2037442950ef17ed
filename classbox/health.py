"""Health of the box: a psutil snapshot plus what the box holds, and a tally of its sync runs."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from . import __version__
from .box import Box
from .sync.worker import SyncWorker, history

# Preferred temperature sensors, CPU-ish first: the Raspberry Pi's SoC, Intel, AMD, then the ACPI zone.
SENSORS = ("cpu_thermal", "coretemp", "k10temp", "acpitz")
# Walking the store stats every blob; health is probed often, so its size is measured at most this often.
STORE_BYTES_EVERY = 30.0
# CPU use is measured between two snapshots; closer together than this, the last figure stands.
CPU_MIN_INTERVAL = 1.0
SYNC_STATES = ("idle", "running", "waiting_for_window", "backing_off", "stopped")


@dataclass(frozen=True)
class HealthReport:
    """What /-/health and `classbox doctor` report; the first six fields are the original /-/health."""

    version: str
    uptime_s: float
    disk_free_bytes: int
    disk_total_bytes: int
    channels: int
    lessons: int
    disk_used_percent: float
    cpu_percent: float
    load: tuple[float, float, float]  # run-queue averages over 1, 5 and 15 minutes
    memory_total_bytes: int
    memory_available_bytes: int
    memory_percent: float
    temperature_c: float | None
    temperature_sensor: str | None
    system_uptime_s: float
    process_rss_bytes: int
    process_threads: int
    store_bytes: int
    quarantine_files: int
    quarantine_bytes: int

    def as_dict(self) -> dict[str, object]:
        """Return the report as plain JSON-able values."""
        return asdict(self)


def snapshot(box: Box) -> HealthReport:
    """Measure the box now; cheap enough to answer every probe (the store's size is cached)."""
    now = time.time()
    disk = psutil.disk_usage(str(box.data.root))
    memory = psutil.virtual_memory()
    load = psutil.getloadavg()
    temperature = pick_temperature(_sensors())
    process = psutil.Process()
    quarantine_files, quarantine_bytes = _folder_bytes(box.data.quarantine)
    return HealthReport(
        version=__version__,
        uptime_s=round(now - box.started_at, 1),
        disk_free_bytes=disk.free,
        disk_total_bytes=disk.total,
        channels=len(box.catalog.channels()),
        lessons=len(box.catalog),
        disk_used_percent=disk.percent,
        cpu_percent=_cpu.percent(),
        load=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
        memory_total_bytes=memory.total,
        memory_available_bytes=memory.available,
        memory_percent=memory.percent,
        temperature_c=None if temperature is None else temperature[1],
        temperature_sensor=None if temperature is None else temperature[0],
        system_uptime_s=round(now - psutil.boot_time(), 1),
        process_rss_bytes=process.memory_info().rss,
        process_threads=process.num_threads(),
        store_bytes=_store_bytes.measure(box),
        quarantine_files=quarantine_files,
        quarantine_bytes=quarantine_bytes,
    )


def pick_temperature(sensors: Mapping[str, Sequence[Any]]) -> tuple[str, float] | None:
    """Return (sensor, °C) of the CPU-ish sensor among psutil.sensors_temperatures(), None when there is none."""
    names = [n for n in SENSORS if n in sensors] + [n for n in sensors if n not in SENSORS]
    for name in names:
        for reading in sensors[name]:
            current = getattr(reading, "current", None)
            # A sensor that is not wired up reads 0 or nonsense; skip it rather than alarm anyone.
            if isinstance(current, int | float) and math.isfinite(current) and -40 < current < 150:
                return name, round(float(current), 1)
    return None


def _sensors() -> Mapping[str, Sequence[Any]]:
    read = getattr(psutil, "sensors_temperatures", None)  # not on every platform
    if read is None:
        return {}
    try:
        return read()  # type: ignore[no-any-return]
    except OSError:
        return {}


def _folder_bytes(folder: Path) -> tuple[int, int]:
    """Return how many files a folder holds and their bytes (not looking into subfolders)."""
    files = size = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        files += 1
                        size += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed meanwhile
    except FileNotFoundError:
        pass
    return files, size


class _CpuMeter:
    """Share of all CPUs busy since the previous measurement, by any thread.

    psutil.cpu_percent(interval=None) keeps its baseline per thread, so each of waitress's
    worker threads would report 0.0 the first time and then measure its own interval;
    this keeps one baseline for the process. The first figure is the average since boot.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, float] = (0.0, 0.0)  # (busy, total) CPU seconds
        self._at = -math.inf
        self._percent = 0.0

    def percent(self) -> float:
        """Return the CPU use in percent (0-100) since the last measurement."""
        with self._lock:
            if time.monotonic() - self._at < CPU_MIN_INTERVAL:
                return self._percent
            times = psutil.cpu_times()
            total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
            busy = total - times.idle - getattr(times, "iowait", 0.0)
            d_busy, d_total = busy - self._last[0], total - self._last[1]
            if d_total > 0:
                self._percent = round(min(100.0, max(0.0, 100.0 * d_busy / d_total)), 1)
            self._last, self._at = (busy, total), time.monotonic()
            return self._percent


class _StoreBytes:
    """The bytes in a box's blob store, re-measured at most every STORE_BYTES_EVERY seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[float, int]] = {}

    def measure(self, box: Box) -> int:
        """Return the store's bytes, walking it again only when the last figure is stale."""
        root = box.data.root
        with self._lock:
            cached = self._cache.get(root)
            if cached is not None and time.monotonic() - cached[0] < STORE_BYTES_EVERY:
                return cached[1]
            size = sum(size for size, _ in box.store.usage().values())
            self._cache[root] = (time.monotonic(), size)
            return size


_cpu = _CpuMeter()
_store_bytes = _StoreBytes()


@dataclass(frozen=True)
class SyncReport:
    """What monitoring sees of sync: the worker's state, last outcomes, and totals since the box started."""

    state: str
    last_success: float | None
    last_error_at: float | None
    failing: bool
    runs_ok: int
    runs_failed: int
    bytes_fetched: int
    files_fetched: int


class SyncTally:
    """Totals of the sync runs finished since the box started, which only ever go up.

    The history keeps the last runs only, so a total summed from it would drop as old runs
    leave; this adds each finished run once, when it is first seen. A run is missed only if
    more runs than the history keeps finish between two reports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[float, str]] = set()
        self._ok = self._failed = self._bytes = self._files = 0

    def report(self, worker: SyncWorker) -> SyncReport:
        """Read the worker's state and history (never the USB drives) and add the runs not yet counted."""
        box = worker.box
        runs = history(box)
        with self._lock:
            current: set[tuple[float, str]] = set()
            for run in runs:
                key = (run["started_at"], run["trigger"])
                current.add(key)
                if run.get("finished_at") is None or run["started_at"] < box.started_at or key in self._seen:
                    continue
                if run["ok"]:
                    self._ok += 1
                else:
                    self._failed += 1
                self._bytes += int(run.get("bytes", 0))
                self._files += int(run.get("files", 0))
            self._seen = current  # a run that left the history never comes back
            totals = (self._ok, self._failed, self._bytes, self._files)
        last_ok = next((r for r in runs if r["ok"]), None)
        last_bad = next((r for r in runs if not r["ok"]), None)
        return SyncReport(
            state=worker.state if worker.running else "stopped",
            last_success=last_ok["finished_at"] if last_ok else None,
            last_error_at=last_bad["finished_at"] if last_bad else None,
            failing=bool(runs) and not runs[0]["ok"],
            runs_ok=totals[0],
            runs_failed=totals[1],
            bytes_fetched=totals[2],
            files_fetched=totals[3],
        )
