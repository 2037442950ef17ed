"""Operational endpoints under /-/ for technicians and monitoring."""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable
from importlib.metadata import version

from flask import Blueprint, Response, current_app, jsonify

from .. import __version__, health
from ..box import Box
from . import current_box, current_sync
from .counters import CODES, Counters, ServingSnapshot

bp = Blueprint("ops", __name__, url_prefix="/-")

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/health")
def health_view():  # type: ignore[no-untyped-def]
    """Report version, uptime, free disk, channels and lessons, and how the machine is doing."""
    return jsonify(health.snapshot(current_box()).as_dict())


@bp.get("/version")
def version_view():  # type: ignore[no-untyped-def]
    """Report the versions of classbox and what it runs on."""
    return jsonify(
        classbox=__version__,
        python=platform.python_version(),
        flask=version("flask"),
        waitress=version("waitress"),
    )


@bp.get("/metrics")
def metrics_view() -> Response:
    """Report health, catalogue, sync, rooms and serving counters in Prometheus text format 0.0.4."""
    box = current_box()
    tally = current_app.extensions.setdefault("classbox_sync_tally", health.SyncTally())
    counters: Counters = current_app.extensions["classbox_counters"]
    text = render_metrics(box, health.snapshot(box), tally.report(current_sync()), counters.snapshot())
    return Response(text, content_type=METRICS_TYPE, headers={"Cache-Control": "no-store"})


Labels = dict[str, str]
Samples = Iterable[tuple[Labels, float | int | bool]]


class Exposition:
    """Prometheus text exposition format 0.0.4: each metric's HELP and TYPE, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: set[str] = set()

    def gauge(self, name: str, help_text: str, value: float | int | bool | None | Samples) -> None:
        """Add a gauge: one value (None leaves the metric out) or (labels, value) samples."""
        self._metric(name, "gauge", help_text, value)

    def counter(self, name: str, help_text: str, value: int | Samples) -> None:
        """Add a counter (its name ends in _total): one value or (labels, value) samples."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        self._metric(name, "counter", help_text, value)

    def _metric(self, name: str, kind: str, help_text: str, value: float | int | bool | None | Samples) -> None:
        if name in self._names:
            raise ValueError(f"metric {name} written twice")
        samples = [] if value is None else [({}, value)] if isinstance(value, int | float) else list(value)
        if not samples:
            return
        self._names.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, v in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(v)}")

    def text(self) -> str:
        """Return the exposition, ending in a newline."""
        return "\n".join(self._lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    return _escape_help(value).replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_metrics(box: Box, h: health.HealthReport, sync: health.SyncReport, serving: ServingSnapshot) -> str:
    """Write what a technician's Prometheus scrapes: the machine, the catalogue, sync, rooms and serving."""
    out = Exposition()
    out.gauge("classbox_info", "The classbox version and box id, always 1.",
              [({"version": h.version, "box": box.box_id}, 1)])
    out.gauge("classbox_uptime_seconds", "Seconds since this classbox process opened the box.", h.uptime_s)
    out.gauge("classbox_system_uptime_seconds", "Seconds since the machine booted.", h.system_uptime_s)
    out.gauge("classbox_cpu_usage_ratio", "Share of all CPUs busy since the previous measurement (0-1).",
              round(h.cpu_percent / 100, 4))
    out.gauge("classbox_load1", "System load average over 1 minute.", h.load[0])
    out.gauge("classbox_load5", "System load average over 5 minutes.", h.load[1])
    out.gauge("classbox_load15", "System load average over 15 minutes.", h.load[2])
    out.gauge("classbox_memory_total_bytes", "Physical memory of the machine.", h.memory_total_bytes)
    out.gauge("classbox_memory_available_bytes", "Memory available to programs without swapping.",
              h.memory_available_bytes)
    out.gauge("classbox_disk_total_bytes", "Size of the filesystem holding the data directory.", h.disk_total_bytes)
    out.gauge("classbox_disk_free_bytes", "Free bytes on the filesystem holding the data directory.",
              h.disk_free_bytes)
    out.gauge("classbox_temperature_celsius", "Temperature of the CPU-ish sensor, where the machine has one.",
              None if h.temperature_c is None else [({"sensor": h.temperature_sensor or ""}, h.temperature_c)])
    out.gauge("classbox_process_resident_memory_bytes", "Resident memory of the classbox process.",
              h.process_rss_bytes)
    out.gauge("classbox_process_threads", "Threads of the classbox process.", h.process_threads)
    out.gauge("classbox_channels", "Channels installed.", h.channels)
    out.gauge("classbox_lessons", "Lessons listed: complete and ready to play.", h.lessons)
    out.gauge("classbox_store_bytes", "Bytes in the blob store (measured at most every 30 s).", h.store_bytes)
    out.gauge("classbox_quarantine_files", "Damaged files moved to quarantine by a scrub.", h.quarantine_files)
    out.gauge("classbox_quarantine_bytes", "Bytes of the files in quarantine.", h.quarantine_bytes)

    out.gauge("classbox_sync_state", "The sync worker's state: 1 for the current one.",
              [({"state": s}, s == sync.state) for s in health.SYNC_STATES])
    out.gauge("classbox_sync_failing", "1 when the latest sync run ended with errors.", sync.failing)
    out.gauge("classbox_sync_last_success_timestamp_seconds", "When the latest sync run without errors finished.",
              sync.last_success)
    out.gauge("classbox_sync_last_error_timestamp_seconds", "When the latest sync run with errors finished.",
              sync.last_error_at)
    out.counter("classbox_sync_runs_total", "Sync runs finished since the box started, by outcome.",
                [({"outcome": "ok"}, sync.runs_ok), ({"outcome": "failed"}, sync.runs_failed)])
    out.counter("classbox_sync_fetched_bytes_total", "Bytes fetched by sync runs finished since the box started.",
                sync.bytes_fetched)
    out.counter("classbox_sync_fetched_files_total", "Files fetched by sync runs finished since the box started.",
                sync.files_fetched)

    rooms = box.classroom.rooms()
    out.gauge("classbox_rooms", "Classrooms set up on the box.", len(rooms))
    out.gauge("classbox_room_info", "A classroom and the class it holds, always 1.",
              [({"room": r["name"], "class": r["class"]}, 1) for r in rooms])
    out.gauge("classbox_screens_waiting", "Screens parked waiting for a room to change (a long poll each).",
              box.classroom.waiting())
    out.gauge("classbox_screens_waiting_limit", "At most this many screens wait at once; more are told to retry.",
              box.classroom.max_waiters)

    # Every status class of GET is there from the start, so a rate over it works before the first error.
    requests = {("GET", code): 0 for code in CODES[1:]} | serving.requests
    out.counter("classbox_http_requests_total", "HTTP requests answered, by method and status class.",
                [({"method": m, "code": c}, n) for (m, c), n in sorted(requests.items(), key=_by_code)])
    out.counter("classbox_http_response_bytes_total", "Response body bytes sent, media included.",
                serving.response_bytes)
    out.gauge("classbox_http_requests_in_flight", "Requests being answered now, media still streaming included.",
              serving.in_flight)
    out.counter("classbox_http_media_requests_total", "Requests for /media/ files (videos, pages) answered.",
                serving.media_requests)
    out.counter("classbox_http_media_response_bytes_total", "Bytes of /media/ files sent.",
                serving.media_response_bytes)
    return out.text()


def _by_code(item: tuple[tuple[str, str], int]) -> tuple[int, str]:
    (method, code), _n = item
    return CODES.index(code), method
