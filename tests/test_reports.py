"""Reports: a teaching point's box sends its playback log and a snapshot to its hub, signed; every event counts once."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient

from classbox import channel, create_app, keys, reporter, signing
from classbox.box import Box
from classbox.config import Config
from classbox.hub.points import Points, channel_for, make_enrolment
from classbox.hub.reports import CSV_HEADER, Reports
from classbox.reporter import REPORT_PATH, Reporter, ReportRefused, build_batch, encode, send
from classbox.sync.sources import Backoff
from classbox.sync.worker import RunRecord, save_run
from classbox.web.reports import MAX_REPORT_BYTES, reports_of

from .conftest import Publisher, start_server, write_source

WAIT = 10.0  # seconds any wait in these tests may take at most


@dataclass
class Hub:
    """A hub app served by a real waitress on a loopback port."""

    app: Flask
    url: str
    stop: Callable[[], None]

    @property
    def box(self) -> Box:
        return self.app.extensions["classbox"]  # type: ignore[no-any-return]

    @property
    def reports(self) -> Reports:
        return reports_of(self.app)

    @property
    def root(self) -> Path:
        return self.box.data.root / "hub" / "reports"

    def register(self, box: Box) -> None:
        Points(self.box.state).enrol(make_enrolment(box.box_id, "石门村教学点", "石门村小学", box.public_key_pem))

    def stored(self, box: Box) -> list[int]:
        return [e.seq for e in self.reports.events(box.box_id)]

    def close(self) -> None:
        self.stop()
        self.box.close()


def open_hub(data: Path) -> Hub:
    """Open a hub on a data directory and serve it on a free loopback port."""
    app = create_app(Config.from_env({}, data_dir=data, role="hub", demo=False, host="127.0.0.1", port=0))
    server, stop = start_server(app)
    return Hub(app, server.url, stop)


def open_point(data: Path) -> Box:
    """Open a teaching point's box (not served: it only reports)."""
    return Box(Config.from_env({}, data_dir=data, demo=False, host="127.0.0.1", port=0))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """A running hub."""
    hub = open_hub(tmp_path / "hub")
    yield hub
    hub.close()


@pytest.fixture
def point(tmp_path: Path) -> Iterator[Box]:
    """A teaching point's box on its own data directory."""
    box = open_point(tmp_path / "point")
    yield box
    box.close()


def log_events(box: Box, n: int, room: str = "一号教室", lesson: str = "g1-chinese-1") -> None:
    """Append n playback events to a box's log."""
    box.events.append("open", room, lesson, 0.0)
    for i in range(1, n):
        box.events.append("play" if i % 2 else "pause", room, lesson, float(i))


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST to the hub; return the status and the JSON answer."""
    req = urllib.request.Request(url + REPORT_PATH, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def signed(box: Box, body: bytes, key: Ed25519PrivateKey | None = None, now: float | None = None) -> dict[str, str]:
    """Return the headers signing a report body as box (with its own key unless another is given)."""
    return signing.sign_request(key or box.signing_key, box.box_id, "POST", REPORT_PATH, body, now=now)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {WAIT} s waiting for {what}")
        time.sleep(0.02)


def set_hub(box: Box, url: str) -> None:
    """Name the hub as setup saves it (setup itself would also change the process's time zone)."""
    box.state.set("setup", {"hub_url": url})


def test_a_box_sends_its_log_once_and_then_only_what_is_new(hub: Hub, point: Box) -> None:
    hub.register(point)
    log_events(point, 7)
    status = {"state": "idle", "last_success": 1.0, "runs": ["not sent"], "usb": []}
    assert send(point, hub.url, status, limit=3) == 7  # three batches: 1-3, 4-6, 7
    assert hub.stored(point) == [1, 2, 3, 4, 5, 6, 7]
    assert reporter.high_water(point) == 7 and hub.reports.high_water(point.box_id) == 7
    latest = hub.reports.latest(point.box_id)
    assert latest is not None and latest["high_water"] == 7
    snapshot = latest["snapshot"]
    assert snapshot["health"]["disk_free_bytes"] > 0 and snapshot["sync"]["state"] == "idle"
    assert "runs" not in snapshot["sync"] and snapshot["log_last_seq"] == 7
    seen = latest["last_seen"]

    assert build_batch(point)["events"] == []
    assert send(point, hub.url) == 7  # nothing new: the snapshot alone, as a sign of life
    assert hub.stored(point) == [1, 2, 3, 4, 5, 6, 7]
    assert hub.reports.latest(point.box_id)["last_seen"] >= seen  # type: ignore[index]

    point.events.append("finish", "一号教室", "g1-chinese-1", 40.0)
    assert send(point, hub.url) == 8
    assert hub.stored(point) == [1, 2, 3, 4, 5, 6, 7, 8]
    overview = hub.reports.overview(point.box_id)
    assert overview is not None and overview["sync_state"] is None and overview["disk_free_bytes"] > 0


def test_the_snapshot_says_which_of_the_coming_weeks_lessons_are_on_the_box(tmp_path: Path, hub: Hub, point: Box,
                                                                              publisher: Publisher) -> None:
    hub.register(point)
    channel_id = channel_for(point.box_id)
    today = date.today()
    schedule = [{"lesson": f"{channel_id}-lesson-{i}", "date": (today + timedelta(days=days)).isoformat(),
                 "period": i + 1} for i, days in enumerate((0, 3, 30))]  # the third is beyond the week
    src = write_source(tmp_path / "src", channel_id, lessons=3)
    info = json.loads((src / "channel.json").read_text(encoding="utf-8"))
    (src / "channel.json").write_text(json.dumps({**info, "schedule": schedule}), encoding="utf-8")
    channel.build(src, keys.load_private(publisher.private), tmp_path / "mirror")
    point.add_channel(tmp_path / "mirror", keys.load_public(publisher.public))
    manifest = next(m for m in point.catalog.manifests() if m.id == channel_id)
    gone = manifest.lessons[1]
    point.store.path(gone.blobs()[0].sha256).unlink()  # as if the disk could not hold it
    point.catalog.reload()
    save_run(point, RunRecord(time.time(), "schedule", ["http://hub"], [channel_id], time.time(),
                              errors=[f"will not fit (5 MB free, 200 MB kept free): {gone.title}"]))
    send(point, hub.url)

    overview = hub.reports.overview(point.box_id)
    assert overview is not None and overview["disk_free_bytes"] > 0
    assert [(u["lesson"], u["ready"], u["title"]) for u in overview["upcoming"]] == [
        (f"{channel_id}-lesson-0", True, manifest.lessons[0].title), (gone.id, False, gone.title)]
    assert [u["lesson"] for u in overview["missing"]] == [gone.id]
    held = overview["channel"]
    assert (held["id"], held["version"], held["lessons"], held["ready"]) == (channel_id, manifest.version, 3, 2)
    assert held["not_fitting"] == [gone.title]
    snapshot = hub.reports.latest(point.box_id)["snapshot"]  # type: ignore[index]
    assert snapshot["held_lessons"] == [f"{channel_id}-lesson-0", f"{channel_id}-lesson-2"]


def test_a_replayed_or_overlapping_batch_is_taken_once(hub: Hub, point: Box) -> None:
    hub.register(point)
    log_events(point, 8)
    first = encode(build_batch(point, limit=5))
    assert post(hub.url, first, signed(point, first)) == (200, {"high_water": 5})
    assert post(hub.url, first, signed(point, first, now=time.time() + 60)) == (200, {"high_water": 5})

    overlapping = build_batch(point, limit=6, after=2)
    assert (overlapping["first_seq"], overlapping["last_seq"]) == (3, 8)
    body = encode(overlapping)
    answers: list[tuple[int, dict[str, Any]]] = []
    threads = [threading.Thread(target=lambda: answers.append(post(hub.url, body, signed(point, body))))
               for _ in range(4)]  # the same batch four times at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert answers == [(200, {"high_water": 8})] * 4
    assert hub.stored(point) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert post(hub.url, first, signed(point, first)) == (200, {"high_water": 8})  # an old batch, late
    assert hub.stored(point) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_an_unknown_box_or_a_bad_signature_is_refused_and_nothing_is_stored(hub: Hub, point: Box) -> None:
    log_events(point, 3)
    with pytest.raises(ReportRefused, match="not registered") as refused:
        send(point, hub.url)
    assert refused.value.status == 403 and reporter.high_water(point) == 0
    assert not (hub.root / point.box_id).exists()

    hub.register(point)
    body = encode(build_batch(point))
    tampered = body.replace(b'"open"', b'"stop"')
    assert tampered != body
    stranger = Ed25519PrivateKey.generate()
    assert post(hub.url, body, signed(point, body, key=stranger))[0] == 403
    assert post(hub.url, tampered, signed(point, body))[0] == 403
    assert post(hub.url, body, {})[0] == 403  # unsigned
    status, answer = post(hub.url, body, {**signed(point, body), signing.SIGNATURE: "not base64!"})
    assert status == 403 and "malformed" in answer["error"]
    assert not (hub.root / point.box_id).exists()

    # Signed by the box, but not as the box's own report, or not a report at all: 400, nothing stored.
    other = {**build_batch(point), "box_id": "0123456789abcdef"}
    backwards = build_batch(point)
    backwards["events"].reverse()
    for bad in (encode(other), encode(backwards), b'{"box_id": NaN}', b"not json"):
        status, answer = post(hub.url, bad, signed(point, bad))
        assert status == 400 and answer["code"] == "invalid_input", answer
    assert not (hub.root / point.box_id / "events.jsonl").exists() and reporter.high_water(point) == 0


def test_a_torn_last_line_from_a_killed_hub_is_skipped_and_no_event_is_stored_twice(tmp_path: Path, point: Box) -> None:
    hub = open_hub(tmp_path / "hub")
    try:
        hub.register(point)
        log_events(point, 5)
        assert send(point, hub.url) == 5
    finally:
        hub.close()
    # Killed while appending the next batch: event 6 whole, event 7 half written, latest.json still at 5.
    log_events(point, 4)
    events = hub.root / point.box_id / "events.jsonl"
    six, seven = (e.to_json().encode() for e in point.events.read(5, 2))
    with events.open("ab") as f:
        f.write(six + b"\n" + seven[: len(seven) // 2])

    hub = open_hub(tmp_path / "hub")
    try:
        assert hub.stored(point) == [1, 2, 3, 4, 5, 6] and hub.reports.high_water(point.box_id) == 6
        assert reporter.high_water(point) == 5
        assert send(point, hub.url) == 9  # sends 6 to 9 again; the hub appends 7 to 9
        assert hub.stored(point) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
        lines = events.read_bytes().split(b"\n")
        assert lines[-1] == b"" and [json.loads(line)["seq"] for line in lines[:-1]] == list(range(1, 10))
    finally:
        hub.close()


def test_what_was_played_per_day_and_its_csv_for_the_teacher(hub: Hub, point: Box) -> None:
    hub.register(point)
    room, lesson = "一号教室", "g1-chinese-1"
    for kind, at in [("open", 0.0), ("play", 0.0), ("pause_point", 3.0), ("resume", 3.0), ("pause", 5.2),
                     ("resume", 5.2), ("seek", 300.0), ("seek", 40.0), ("page", 41.0), ("finish", 62.5)]:
        point.events.append(kind, room, lesson, at)
    point.events.append("open", "=二号教室", "g1-math-1", 0.0)
    point.events.append("stop", "=二号教室", "g1-math-1", 10.0)
    point.events.append("stop", room, None, None)
    send(point, hub.url)
    day = time.strftime("%Y-%m-%d", time.localtime(point.events.read()[0].time))
    opened = point.events.read()[0].time

    played = hub.reports.played(point.box_id, day)
    assert [(r["room"], r["lesson"], r["max_position"], r["finished"], r["pauses"]) for r in played] == [
        (room, lesson, 62.5, True, 2), ("=二号教室", "g1-math-1", 10.0, False, 0)]
    assert played[0]["first_opened"] == opened and played[0]["date"] == day
    assert hub.reports.played(point.box_id, "2001-01-01") == []

    client: FlaskClient = hub.app.test_client()
    url = f"/hub/points/{point.box_id}/played.csv?from={day}&to={day}"
    assert client.get(url).status_code == 302  # the teacher's login first
    hub.box.accounts.create("admin", "admin", password="a-long-password")
    teacher = hub.box.accounts.create("王老师", "teacher", password="another-password")
    client.set_cookie("classbox_session", hub.box.sessions.start(teacher).id)
    r = client.get(url)
    assert r.status_code == 200 and r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    assert r.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert rows[0] == list(CSV_HEADER) == ["日期", "教室", "课程", "开始时间", "播放到(秒)", "是否播完", "暂停次数"]
    assert rows[1] == [day, room, lesson, time.strftime("%H:%M:%S", time.localtime(opened)), "62.5", "是", "2"]
    assert rows[2][1:3] == ["'=二号教室", "g1-math-1"] and rows[2][4:] == ["10.0", "否", "0"]
    assert client.get(f"/hub/points/{point.box_id}/played.csv?from=2026-13-01").status_code == 400
    assert client.get("/hub/points/0123456789abcdef/played.csv").status_code == 404


def test_the_reporter_resumes_from_its_mark_after_a_restart(tmp_path: Path, hub: Hub) -> None:
    box = open_point(tmp_path / "point")
    try:
        hub.register(box)
        set_hub(box, hub.url)
        log_events(box, 3)
        worker = Reporter(box, lambda: {"state": "running"}, interval=60).start()
        try:
            wait_until(lambda: worker.status()["last_sent"] is not None, "the first report")
        finally:
            worker.stop()
        assert worker.status()["high_water"] == 3 and worker.status()["last_error"] is None
    finally:
        box.close()

    box = open_point(tmp_path / "point")  # the box restarts
    try:
        assert reporter.high_water(box) == 3
        log_events(box, 2)
        assert build_batch(box)["first_seq"] == 4
        worker = Reporter(box, None, interval=60).start()
        try:
            wait_until(lambda: worker.status()["high_water"] == 5, "the report after the restart")
        finally:
            worker.stop()
        assert hub.stored(box) == [1, 2, 3, 4, 5] and not worker.running
    finally:
        box.close()


def test_the_reporter_backs_off_while_the_hub_is_unreachable(point: Box) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # free again once closed: nobody listens there
    set_hub(point, f"http://127.0.0.1:{closed}")
    log_events(point, 2)
    worker = Reporter(point, None, interval=600, backoff=Backoff(base=0.05, cap=0.2), timeout=2).start()
    try:
        wait_until(lambda: worker.failures >= 3, "three tries")  # retried well before the 600 s interval
        status = worker.status()
        assert "cannot reach the hub" in (status["last_error"] or "") and status["high_water"] == 0
        assert status["last_sent"] is None and worker.running
    finally:
        worker.stop()
    assert not worker.running


def test_without_a_hub_the_reporter_sends_nothing(point: Box) -> None:
    worker = Reporter(point, None, interval=0.05).start()
    try:
        time.sleep(0.3)
        assert worker.status() == {"last_sent": None, "high_water": 0, "last_error": None, "failures": 0,
                                   "next_at": worker.next_at}
    finally:
        worker.stop()


def test_only_a_hub_takes_reports_and_never_a_huge_one(client: FlaskClient, hub: Hub) -> None:
    assert client.post(REPORT_PATH, data=b"{}").status_code == 404  # an ordinary box
    r = hub.app.test_client().post(REPORT_PATH, data=b" " * (MAX_REPORT_BYTES + 1))
    assert r.status_code == 413 and r.is_json
