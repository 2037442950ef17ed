"""/-/health, /-/metrics, the serving counters and the log ring, as a technician would check them."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from flask import Flask

from classbox import channel, create_app, health, keys, logring
from classbox.box import Box
from classbox.config import Config
from classbox.sync.worker import run_sync
from classbox.web.counters import ServingSnapshot

from .conftest import LiveServer, Publisher, start_server, write_source
from .test_media import _slow_reader

# ------------------------------------------------------------------ a strict reader of text format 0.0.4

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
VALUE_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|NaN|[+-]Inf")


@dataclass
class Family:
    help: str | None = None
    type: str | None = None
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def parse_exposition(text: str) -> dict[str, Family]:
    """Parse Prometheus text format 0.0.4 strictly; fail on anything a scraper could trip on."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    finished: set[str] = set()
    current: str | None = None
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: blank line"
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (\S+) (.*)", line)
            assert m, f"{where}: a comment other than HELP or TYPE"
            kind, name, rest = m.groups()
            assert NAME_RE.fullmatch(name), f"{where}: bad metric name"
            if name != current:
                assert name not in finished, f"{where}: {name} is split in two places"
                if current is not None:
                    finished.add(current)
                current = name
            family = families.setdefault(name, Family())
            assert not family.samples, f"{where}: {kind} after the samples"
            if kind == "HELP":
                assert family.help is None, f"{where}: second HELP"
                family.help = _unescape(rest, quotes=False)
            else:
                assert family.type is None, f"{where}: second TYPE"
                assert rest in ("counter", "gauge", "untyped", "summary", "histogram"), f"{where}: bad type"
                family.type = rest
            continue
        m = NAME_RE.match(line)
        assert m, f"{where}: no metric name"
        name = m.group()
        assert name == current, f"{where}: sample outside its metric's HELP and TYPE"
        labels, end = _parse_labels(line, m.end(), where)
        value_text = line[end:]
        assert value_text.startswith(" ") and VALUE_RE.fullmatch(value_text[1:]), f"{where}: bad value"
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"{where}: duplicate sample"
        seen.add(key)
        families[name].samples.append((labels, float(value_text[1:].replace("Inf", "inf"))))
    for name, family in families.items():
        assert family.help and family.type, f"{name} lacks HELP or TYPE"
    return families


def _parse_labels(line: str, i: int, where: str) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    if i >= len(line) or line[i] != "{":
        return labels, i
    i += 1
    while True:
        m = LABEL_RE.match(line, i)
        assert m and line[m.end():m.end() + 2] == '="', f"{where}: bad label at {i}"
        name, i = m.group(), m.end() + 2
        value = []
        while line[i] != '"':
            if line[i] == "\\":
                assert line[i + 1] in '\\"n', f"{where}: bad escape \\{line[i + 1]}"
                value.append("\n" if line[i + 1] == "n" else line[i + 1])
                i += 2
            else:
                value.append(line[i])
                i += 1
        assert name not in labels, f"{where}: label {name} twice"
        labels[name] = "".join(value)
        i += 1
        if line[i] == "}":
            return labels, i + 1
        assert line[i] == ",", f"{where}: expected , or }} at {i}"
        i += 1


def _unescape(text: str, quotes: bool) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            assert text[i + 1] in ('\\"n' if quotes else "\\n"), f"bad escape in {text!r}"
            out.append("\n" if text[i + 1] == "n" else text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    """Return the one sample of a metric whose labels include these."""
    found = [v for ls, v in families[name].samples if labels.items() <= ls.items()]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def scrape(server: LiveServer) -> dict[str, Family]:
    r = requests.get(server.url + "/-/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(r.text)


def settled(app: Flask) -> ServingSnapshot:
    """Return the counters once every response has been closed (waitress closes just after the last byte)."""
    counters = app.extensions["classbox_counters"]
    deadline = time.monotonic() + 5
    while (snap := counters.snapshot()).in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    return snap  # type: ignore[no-any-return]


def put_blob(box: Box, data: bytes) -> str:
    """Add bytes to the box's store; return their hash."""
    sha = hashlib.sha256(data).hexdigest()
    box.store.commit(box.store.stage(io.BytesIO(data), sha, len(data)))
    return sha


def demo_video(box: Box) -> tuple[str, bytes]:
    """Return the hash and bytes of a demo lesson's video."""
    entry = box.catalog.browse({}).entries[0]
    sha = next(a.blob.sha256 for a in entry.lesson.assets if a.role == "video")
    return sha, box.store.path(sha).read_bytes()


# ------------------------------------------------------------------ health


def test_health_keeps_its_old_keys_and_tells_how_the_machine_is(client, demo: Box) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/-/health").get_json()
    assert list(doc)[:6] == ["version", "uptime_s", "disk_free_bytes", "disk_total_bytes", "channels", "lessons"]
    assert doc["channels"] == 1 and doc["lessons"] == 4
    disk = shutil.disk_usage(demo.data.root)
    assert doc["disk_total_bytes"] == disk.total, "the disk reported is the data directory's"
    assert 0 <= doc["disk_used_percent"] <= 100
    assert doc["memory_total_bytes"] > doc["memory_available_bytes"] > 0 and 0 < doc["memory_percent"] < 100
    assert 0 <= doc["cpu_percent"] <= 100
    assert len(doc["load"]) == 3 and all(x >= 0 for x in doc["load"])
    if doc["temperature_c"] is None:
        assert doc["temperature_sensor"] is None
    else:
        assert 0 < doc["temperature_c"] < 120 and doc["temperature_sensor"]
    assert doc["system_uptime_s"] >= doc["uptime_s"] >= 0
    assert 10 << 20 < doc["process_rss_bytes"] < 2 << 30
    assert doc["process_threads"] >= 1
    held = sum(f.stat().st_size for f in demo.data.blobs.rglob("*") if f.is_file())
    assert doc["store_bytes"] == held > 0
    assert doc["quarantine_files"] == doc["quarantine_bytes"] == 0


def test_health_stays_cheap_for_frequent_probes(client, demo: Box) -> None:  # type: ignore[no-untyped-def]
    client.get("/-/health")
    started = time.perf_counter()
    for _ in range(20):
        assert client.get("/-/health").status_code == 200
    assert (time.perf_counter() - started) / 20 < 0.05, "a watchdog probes /-/health every few seconds"


def test_cpu_is_measured_across_threads(box: Box) -> None:
    # waitress answers from many threads: each must see the CPU use, not a 0.0 of its own first call
    hog_until = time.monotonic() + 1.3

    def spin() -> None:
        while time.monotonic() < hog_until:
            pass

    hog = threading.Thread(target=spin)
    health.snapshot(box)
    hog.start()
    hog.join()
    seen: list[float] = []
    reader = threading.Thread(target=lambda: seen.append(health.snapshot(box).cpu_percent))
    reader.start()
    reader.join()
    assert seen[0] > 100 / (os.cpu_count() or 1) / 2, seen


Reading = namedtuple("Reading", "label current high critical")


@pytest.mark.parametrize(("sensors", "expected"), [
    ({"nvme": [Reading("Composite", 41.0, 80, 90)], "cpu_thermal": [Reading("", 52.08, None, None)]},
     ("cpu_thermal", 52.1)),
    ({"acpitz": [Reading("", 27.8, None, None)], "coretemp": [Reading("Package id 0", 61.0, 80, 100),
                                                             Reading("Core 0", 58.0, 80, 100)]}, ("coretemp", 61.0)),
    ({"k10temp": [Reading("Tctl", 0.0, None, None), Reading("Tdie", 49.5, None, None)]}, ("k10temp", 0.0)),
    ({"iwlwifi_1": [Reading("", -273.0, None, None)], "nvme": [Reading("Composite", 38.0, 80, 90)]}, ("nvme", 38.0)),
    ({}, None),
])
def test_temperature_comes_from_the_cpu_sensor(sensors: dict, expected: tuple[str, float] | None) -> None:
    assert health.pick_temperature(sensors) == expected


def test_quarantine_shows_what_a_scrub_moved_there(client, demo: Box) -> None:  # type: ignore[no-untyped-def]
    sha, data = demo_video(demo)
    path = demo.store.path(sha)
    path.chmod(0o644)
    path.write_bytes(b"x" + data[1:])  # a bit flipped on the SD card
    assert demo.scrub() == [sha]
    doc = client.get("/-/health").get_json()
    assert doc["quarantine_files"] == 1 and doc["quarantine_bytes"] == len(data)
    families = parse_exposition(client.get("/-/metrics").get_data(as_text=True))
    assert value(families, "classbox_quarantine_files") == 1
    assert value(families, "classbox_quarantine_bytes") == len(data)
    assert value(families, "classbox_lessons") == 3, "the damaged lesson is no longer listed"


# ------------------------------------------------------------------ metrics


def test_metrics_parse_and_every_sample_is_described(client, demo: Box) -> None:  # type: ignore[no-untyped-def]
    demo.classroom.add_room("二号教室(北)", 'class "3" \\ 二年级')
    r = client.get("/-/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_exposition(r.get_data(as_text=True))
    assert all(name.startswith("classbox_") for name in families)
    for name, family in families.items():
        assert family.type in ("gauge", "counter"), name
        assert (family.type == "counter") == name.endswith("_total"), name
        assert family.samples, name
        assert all(v >= 0 for _, v in family.samples), name
    rooms = {ls["room"]: ls["class"] for ls, _ in families["classbox_room_info"].samples}
    assert rooms == {"一号教室": "", "二号教室(北)": 'class "3" \\ 二年级'}, "labels survive escaping"
    assert value(families, "classbox_rooms") == 2
    assert value(families, "classbox_lessons") == 4 and value(families, "classbox_channels") == 1
    assert value(families, "classbox_memory_total_bytes") > 0
    assert value(families, "classbox_disk_total_bytes") == shutil.disk_usage(demo.data.root).total
    assert 0 <= value(families, "classbox_cpu_usage_ratio") <= 1
    assert value(families, "classbox_store_bytes") > 0
    assert value(families, "classbox_sync_state", state="stopped") == 1, "no worker runs in tests"
    assert sum(v for _, v in families["classbox_sync_state"].samples) == 1
    assert value(families, "classbox_screens_waiting") == 0
    assert value(families, "classbox_info", version=client.get("/-/version").get_json()["classbox"]) == 1
    assert ("classbox_temperature_celsius" in families) == (health.snapshot(demo).temperature_c is not None)


def test_sync_runs_show_as_counters_that_never_drop(tmp_path: Path, client, box: Box,  # type: ignore[no-untyped-def]
                                                    publisher: Publisher) -> None:
    channel.build(write_source(tmp_path / "src"), keys.load_private(publisher.private), tmp_path / "mirror")
    good = run_sync(box, [str(tmp_path / "mirror")], ["test"], "now", trust=keys.load_public(publisher.public))
    assert good.ok and good.bytes > 0
    run_sync(box, [str(tmp_path / "unplugged")], ["test"], "now")

    def metrics() -> dict[str, Family]:
        return parse_exposition(client.get("/-/metrics").get_data(as_text=True))

    families = metrics()
    assert value(families, "classbox_sync_runs_total", outcome="ok") == 1
    assert value(families, "classbox_sync_runs_total", outcome="failed") == 1
    assert value(families, "classbox_sync_fetched_bytes_total") == good.bytes
    assert value(families, "classbox_sync_fetched_files_total") == good.files
    assert value(families, "classbox_sync_failing") == 1
    assert value(families, "classbox_sync_last_success_timestamp_seconds") == good.finished_at
    assert value(families, "classbox_sync_last_error_timestamp_seconds") >= good.finished_at
    for _ in range(6):  # the history keeps 20 runs; 30 more failures push the first ones out
        for _ in range(5):
            run_sync(box, [str(tmp_path / "unplugged")], ["test"], "now")
        families = metrics()
    assert value(families, "classbox_sync_runs_total", outcome="failed") == 31
    assert value(families, "classbox_sync_runs_total", outcome="ok") == 1, "a run that left the history still counts"
    assert value(families, "classbox_sync_fetched_bytes_total") == good.bytes


# ------------------------------------------------------------------ serving counters


def test_a_404_shows_in_4xx(live_server: LiveServer, app: Flask) -> None:
    before = scrape(live_server)
    assert requests.get(live_server.url + "/no/such/page", timeout=5).status_code == 404
    settled(app)
    after = scrape(live_server)
    code = "classbox_http_requests_total"
    assert value(after, code, method="GET", code="4xx") - value(before, code, method="GET", code="4xx") == 1
    assert value(after, code, method="GET", code="2xx") - value(before, code, method="GET", code="2xx") == 1, \
        "the first scrape itself"
    assert value(after, "classbox_http_requests_in_flight") == 1, "only the scrape being answered"
    assert value(after, "classbox_http_response_bytes_total") > value(before, "classbox_http_response_bytes_total")


def test_media_bytes_are_counted_exactly_and_still_stream(live_server: LiveServer, app: Flask, demo: Box) -> None:
    sha, data = demo_video(demo)
    before = settled(app)
    r = requests.get(f"{live_server.url}/media/{sha}", headers={"Range": "bytes=100-4099"}, timeout=5)
    assert r.status_code == 206 and r.content == data[100:4100]
    with requests.get(f"{live_server.url}/media/{sha}", stream=True, timeout=5) as r:
        assert r.status_code == 200
        assert b"".join(r.iter_content(8192)) == data
    assert requests.head(f"{live_server.url}/media/{sha}", timeout=5).status_code == 200
    after = settled(app)
    assert after.media_requests - before.media_requests == 3
    assert after.media_response_bytes - before.media_response_bytes == 4000 + len(data)
    assert after.response_bytes - before.response_bytes == 4000 + len(data)
    assert after.by_code()["2xx"] - before.by_code()["2xx"] == 3
    families = scrape(live_server)
    assert value(families, "classbox_http_media_response_bytes_total") == after.media_response_bytes
    assert value(families, "classbox_http_media_requests_total") == after.media_requests


@pytest.fixture
def two_thread_app(tmp_path: Path) -> Iterator[Flask]:
    """An app whose waitress has two worker threads, so a pinned thread shows at once."""
    app = create_app(Config.from_env({}, data_dir=tmp_path / "two", demo=False, host="127.0.0.1", port=0,
                                     threads=2))
    yield app
    app.extensions["classbox"].close()


def test_streaming_videos_are_in_flight_without_holding_threads(two_thread_app: Flask) -> None:
    box: Box = two_thread_app.extensions["classbox"]
    size = 24 << 20  # more than waitress buffers per connection: a thread copying it would block
    big = put_blob(box, os.urandom(size))
    server, stop = start_server(two_thread_app)
    readers: list[socket.socket] = []
    try:
        readers = [_slow_reader(server.port, big) for _ in range(3)]
        started = time.monotonic()
        assert requests.get(server.url + "/-/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.5, "three slow TVs must not hold both worker threads"
        counters = two_thread_app.extensions["classbox_counters"]
        deadline = time.monotonic() + 5
        while counters.snapshot().in_flight > 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # the health request is closed just after its last byte
        assert value(scrape(server), "classbox_http_requests_in_flight") == 4, "three videos and the scrape"
        for s in readers:
            s.close()
        readers = []
        snap = settled(two_thread_app)
        assert snap.in_flight == 0, "a TV that went away is no longer in flight"
        assert snap.media_requests == 3 and 0 < snap.media_response_bytes < 3 * size
    finally:
        for s in readers:
            s.close()
        stop()


# ------------------------------------------------------------------ log ring


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own, so the test sees every level and nothing else."""
    log = logging.getLogger("classbox.test_ops")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
    log.propagate = True
    log.setLevel(logging.NOTSET)


def test_log_ring_keeps_the_last_lines_and_the_problems(logger: logging.Logger) -> None:
    ring = logring.LogRing(capacity=5)
    logger.addHandler(ring)
    logger.warning("disk nearly full: %d MB left", 180)
    try:
        raise OSError(5, "Input/output error")
    except OSError:
        logger.exception("could not read blob %s", "ab12")
    for i in range(20):
        logger.info("served lesson %d", i)
    lines = ring.lines()
    assert len(lines) == 5 and lines[-1].endswith("INFO classbox.test_ops: served lesson 19")
    assert "served lesson 15" in lines[0]
    problems = ring.problems(50)
    assert [(p.level, p.message) for p in problems] == [
        ("ERROR", "could not read blob ab12 (OSError: [Errno 5] Input/output error)"),
        ("WARNING", "disk nearly full: 180 MB left"),
    ], "newest first, and the flood of INFO lines did not push them out"
    assert problems[0].logger == "classbox.test_ops" and abs(problems[0].time - time.time()) < 5
    assert problems[0].as_dict()["level"] == "ERROR"
    for i in range(60):
        logger.warning("warning %d", i)
    assert len(ring.problems(100)) == logring.PROBLEMS
    assert [p.message for p in ring.problems(2)] == ["warning 59", "warning 58"]


def test_log_ring_holds_a_traceback_with_its_record(logger: logging.Logger) -> None:
    ring = logring.LogRing(capacity=3)
    logger.addHandler(ring)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.exception("sync run failed")
    (line,) = ring.lines()
    assert line.splitlines()[0].endswith("ERROR classbox.test_ops: sync run failed")
    assert "ZeroDivisionError: division by zero" in line


def test_log_ring_from_many_threads(logger: logging.Logger) -> None:
    ring = logring.LogRing(capacity=1000)
    logger.addHandler(ring)

    def chatter(n: int) -> None:
        for i in range(500):
            logger.info("thread %d line %d", n, i)

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = ring.lines()
    assert len(lines) == 1000 and len(set(lines)) == 1000


def test_install_attaches_one_ring_to_the_root_logger() -> None:
    root = logging.getLogger()
    ring = logring.install()
    try:
        assert logring.install() is ring and sum(isinstance(h, logring.LogRing) for h in root.handlers) == 1
        assert ring.capacity == 1000
        logging.getLogger("classbox.sync.worker").error("sync run failed")
        assert ring.problems(1)[0].message == "sync run failed"
        assert ring.lines()[-1].endswith("ERROR classbox.sync.worker: sync run failed")
    finally:
        root.removeHandler(ring)

