"""`classbox serve` as a person runs it: a real process, the demo on first start, one owner per data directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from classbox import keys
from classbox.config import settings

from .conftest import Publisher, write_source


class Served:
    """A running `classbox serve` subprocess whose output is read by a thread, so its pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.output: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            m = re.search(r"手机打开 \(phone\):\s+(http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
                self._ready.set()
        self._ready.set()

    def stop(self) -> int:
        """Send SIGTERM and return the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(10)
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return status


def start_serve(data: Path, *args: str) -> Served:
    """Start `classbox serve` on a free port and wait until it prints its URLs."""
    env = {**os.environ, "CLASSBOX_DATA": str(data)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "classbox", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    served = Served(proc)
    served._ready.wait(30)
    if not served.url:
        proc.kill()
        served.stop()
        raise AssertionError("serve did not start:\n" + "".join(served.output))
    return served


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start_serve(tmp_path / "data")
    yield s
    s.stop()


def test_first_start_installs_the_demo_and_prints_urls(served: Served) -> None:
    printed = "".join(served.output)
    assert "手机打开 (phone): http://127.0.0.1:" in printed and "/remote" in printed
    health = requests.get(served.url + "/-/health", timeout=5).json()
    assert health["channels"] == 1 and health["lessons"] >= 4
    grades = requests.get(served.url + "/api/v1/catalog", timeout=5).json()["facets"]["grade"]
    assert len(grades) >= 2
    subjects = requests.get(served.url + "/api/v1/catalog", timeout=5).json()["facets"]["subject"]
    assert len(subjects) >= 2
    assert requests.get(served.url + "/tv", timeout=5).status_code == 200


def test_second_serve_on_same_data_refuses(served: Served, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "classbox", "serve", "--port", "0", "--data", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "is in use by another classbox process" in r.stderr
    assert requests.get(served.url + "/-/health", timeout=5).status_code == 200, "the first one must keep running"


def test_sigterm_stops_cleanly_and_lock_is_released(tmp_path: Path) -> None:
    s = start_serve(tmp_path / "data", "--no-demo")
    assert requests.get(s.url + "/-/health", timeout=5).json()["lessons"] == 0
    assert s.stop() == 0
    again = start_serve(tmp_path / "data", "--no-demo")
    assert again.stop() == 0


def test_demo_is_not_reinstalled_after_first_start(tmp_path: Path) -> None:
    s = start_serve(tmp_path / "data", "--no-demo")
    s.stop()
    again = start_serve(tmp_path / "data")
    try:
        assert requests.get(again.url + "/-/health", timeout=5).json()["lessons"] == 0
    finally:
        again.stop()


def test_bad_setting_is_named(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "classbox", "serve", "--data", str(tmp_path)],
                       capture_output=True, text=True, timeout=30, env={**os.environ, "CLASSBOX_PORT": "eighty"})
    assert r.returncode == 1 and "CLASSBOX_PORT" in r.stderr


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for env, _field, _default in settings():
        assert f"`{env}`" in readme, f"README does not document {env}"


def classbox_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "classbox", *args, "--data", str(data)],
                          capture_output=True, text=True, timeout=60)


def test_commands_hand_off_to_the_running_box(tmp_path: Path, publisher: Publisher) -> None:
    src = write_source(tmp_path / "src", "extra", lessons=2)
    assert subprocess.run([sys.executable, "-m", "classbox", "channel", "build", str(src), "--key",
                           str(publisher.private), "--out", str(tmp_path / "m")], capture_output=True).returncode == 0
    data = tmp_path / "data"
    s = start_serve(data)
    try:
        assert (data / "serve.json").stat().st_mode & 0o077 == 0, "the control token is for the box's user only"
        r = classbox_cli(data, "channel", "add", str(tmp_path / "m"), "--trust", str(publisher.public))
        assert r.returncode == 0, r.stderr
        assert "the box is serving" in r.stderr and "channel extra version" in r.stdout
        lessons = requests.get(s.url + "/api/v1/catalog", timeout=5).json()["lessons"]
        assert {"extra-lesson-0", "extra-lesson-1"} <= {lesson["id"] for lesson in lessons}

        r = classbox_cli(data, "channel", "add", str(tmp_path / "m"))  # the same again: nothing to do
        assert r.returncode == 0 and "up to date" in r.stdout, r.stderr

        r = classbox_cli(data, "subscribe", "extra", "--grade", "一年级")
        assert r.returncode == 0 and "extra: grade: 一年级" in r.stdout, r.stderr
        r = classbox_cli(data, "pin", "extra-lesson-1")
        assert r.returncode == 0 and "pinned: extra-lesson-1" in r.stdout, r.stderr
        r = classbox_cli(data, "pin", "no-such-lesson")
        assert r.returncode == 1 and "no-such-lesson" in r.stderr
        r = classbox_cli(data, "scrub")
        assert r.returncode == 0 and "intact" in r.stdout, r.stderr

        keys.generate(tmp_path / "keys2")
        stranger = Publisher(tmp_path / "keys2")
        r = classbox_cli(data, "channel", "add", str(tmp_path / "m"), "--trust", str(stranger.public))
        assert r.returncode == 1 and "rejected (unknown_key)" in r.stderr

        forged = requests.post(s.url + "/api/v1/control/pins", json={"lesson": "extra-lesson-0"}, timeout=5)
        assert forged.status_code == 403, "without the token from serve.json nobody may ask"
    finally:
        assert s.stop() == 0


def test_rooms_and_timetable_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = classbox_cli(data, "room", "add", "二年级教室", "--class", "二年级")
    assert r.returncode == 0 and "二年级教室  (二年级)" in r.stdout, r.stderr
    periods = tmp_path / "periods.json"
    periods.write_text('[{"weekday": 1, "number": 1, "start": "08:00", "end": "08:40", "subject": "语文"}]',
                       encoding="utf-8")
    r = classbox_cli(data, "room", "timetable", "二年级教室", str(periods))
    assert r.returncode == 0 and "1 periods a week" in r.stdout, r.stderr
    periods.write_text('[{"weekday": 9, "number": 1, "start": "08:00", "end": "08:40", "subject": "语文"}]',
                       encoding="utf-8")
    r = classbox_cli(data, "room", "timetable", "二年级教室", str(periods))
    assert r.returncode == 1 and "weekday" in r.stderr
    s = start_serve(data)  # with the box serving, the same commands are handed to it
    try:
        monday = "2026-11-23"
        r = classbox_cli(data, "room", "book", "二年级教室", monday, "1", "demo-g2-math-1")
        assert r.returncode == 0 and "第1节: demo-g2-math-1" in r.stdout, r.stderr
        r = classbox_cli(data, "room", "book", "二年级教室", monday, "1", "no-such-lesson")
        assert r.returncode == 1 and "no-such-lesson" in r.stderr
        r = classbox_cli(data, "room", "list")
        assert r.returncode == 0 and "二年级教室" in r.stdout
    finally:
        assert s.stop() == 0


def test_sigterm_does_not_wait_for_parked_screens(tmp_path: Path) -> None:
    import time

    s = start_serve(tmp_path / "data", "--no-demo")
    state = requests.get(s.url + "/api/v1/rooms", timeout=5).json()["rooms"][0]["name"]
    url = f"{s.url}/api/v1/rooms/{state}/state"
    version = requests.get(url, timeout=5).json()["version"]
    answers: list[int] = []
    tvs = [threading.Thread(target=lambda: answers.append(
        requests.get(url, params={"after": version, "wait": 25}, timeout=30).status_code)) for _ in range(3)]
    for t in tvs:
        t.start()
    time.sleep(0.5)
    begun = time.monotonic()
    assert s.stop() == 0
    assert time.monotonic() - begun < 3, "a stopping box answers its waiting screens instead of waiting 5 s"
    for t in tvs:
        t.join(5)
    assert answers == [200, 200, 200]
