"""Fixtures: a fresh box on a temp directory, a real waitress server on port 0, channels to install."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import waitress
from flask import Flask
from playwright.sync_api import Browser, sync_playwright

from classbox import create_app, keys
from classbox.box import DEMO_KEY, DEMO_ROOT, Box
from classbox.config import Config


@pytest.fixture(autouse=True, scope="session")
def _quiet_network() -> Iterator[None]:
    """Keep every `classbox serve` a test starts from announcing itself beyond this machine."""
    before = os.environ.get("CLASSBOX_ZEROCONF_INTERFACES")
    os.environ["CLASSBOX_ZEROCONF_INTERFACES"] = "off"  # a test that wants mDNS sets 127.0.0.1 itself
    yield
    if before is None:
        del os.environ["CLASSBOX_ZEROCONF_INTERFACES"]
    else:
        os.environ["CLASSBOX_ZEROCONF_INTERFACES"] = before


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Return the config of a box whose data lives in a temp directory, demo off."""
    return Config.from_env({}, data_dir=tmp_path / "data", demo=False, host="127.0.0.1", port=0)


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    """Return an app on a fresh box; close the box afterwards."""
    app = create_app(config)
    yield app
    app.extensions["classbox"].close()


@pytest.fixture
def box(app: Flask) -> Box:
    """Return the app's box."""
    return app.extensions["classbox"]  # type: ignore[no-any-return]


@pytest.fixture
def demo(box: Box) -> Box:
    """Install the demo channel: four lessons with pause points at 3.0 and 6.5 s and task sheets."""
    box.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
    return box


CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by the test command; never a downloaded browser
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Launch one headless Chromium for a whole test module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run the README's test command, it installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def client(app: Flask):  # type: ignore[no-untyped-def]
    """Return a Flask test client."""
    return app.test_client()


@dataclass
class LiveServer:
    """A real waitress server on a free loopback port."""

    url: str
    port: int
    server: object


def start_server(app: Flask) -> tuple[LiveServer, Callable[[], None]]:
    """Start waitress on 127.0.0.1:0 in a thread, as `serve` does; return it and a function that stops it."""
    box = app.extensions["classbox"]
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=box.config.threads, ident="classbox")
    port = int(server.effective_port)  # type: ignore[union-attr]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def stop() -> None:
        # As `serve` does on SIGTERM, answer the screens parked waiting for a change, and let the
        # answers be written while waitress still runs: a thread answering while it closes fails on
        # its closed trigger ("Bad file descriptor").
        box.classroom.release_waiters()
        deadline = time.monotonic() + 5
        while box.classroom.waiting() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        server.close()
        server.task_dispatcher.shutdown()  # type: ignore[union-attr]
        thread.join(5)

    return LiveServer(f"http://127.0.0.1:{port}", port, server), stop


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """Serve the app with a real waitress on port 0."""
    server, stop = start_server(app)
    yield server
    stop()


@dataclass
class Publisher:
    """A publisher key pair and helpers to build channels signed with it."""

    dir: Path

    @property
    def private(self) -> Path:
        return self.dir / keys.PRIVATE_NAME

    @property
    def public(self) -> Path:
        return self.dir / keys.PUBLIC_NAME


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    """Return a fresh publisher key pair."""
    keys.generate(tmp_path / "keys")
    return Publisher(tmp_path / "keys")


def write_source(src: Path, channel_id: str = "test", lessons: int = 2, video: bytes | None = None) -> Path:
    """Write a channel source folder with small files; return it."""
    src.mkdir(parents=True, exist_ok=True)
    (src / "channel.json").write_text(json.dumps({"id": channel_id, "title": "测试频道"}), encoding="utf-8")
    grades = ["一年级", "二年级"]
    subjects = ["语文", "数学"]
    for i in range(lessons):
        d = src / f"lesson{i}"
        d.mkdir(exist_ok=True)
        (d / "video.mp4").write_bytes(video or f"video of lesson {i} ".encode() * 1000)
        (d / "task.pdf").write_bytes(f"%PDF-1.4 task {i}".encode())
        (d / "p1.jpg").write_bytes(f"page one {i}".encode())
        (d / "p2.jpg").write_bytes(f"page two {i}".encode())
        lesson = {
            "id": f"{channel_id}-lesson-{i}",
            "title": ["天地人", "长度单位", "金木水火土", "认识钟表"][i % 4] + (f" {i}" if i >= 4 else ""),
            "section": "课程教学",
            "path": {"stage": "小学", "grade": grades[i % 2], "subject": subjects[i % 2], "edition": "统编版",
                     "volume": "上册", "unit": "第一单元", "lesson": f"第{i + 1}课", "period": "第一课时"},
            "assets": [
                {"role": "video", "file": "video.mp4", "pause_points": [{"at": 2.0, "prompt": "请同学们读一读"}]},
                {"role": "task_sheet", "file": "task.pdf", "pages": ["p1.jpg", "p2.jpg"]},
            ],
        }
        (d / "lesson.json").write_text(json.dumps(lesson, ensure_ascii=False), encoding="utf-8")
    return src


def read_acks(fd: int) -> list[int]:
    """Read the numbers a forked writer acknowledged on a pipe so far, one per line."""
    data = b""
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return [int(x) for x in data.split()]


def make_video(path: Path, seconds: float = 6) -> Path:
    """Encode a real H.264/AAC MP4 with ffmpeg (installed by the test command)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is missing: run the README's test command, it installs it")
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x180:rate=24:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-profile:v", "baseline", "-c:a", "aac", "-b:a", "32k", "-shortest", "-movflags", "+faststart", str(path)],
        check=True,
    )
    return path
