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

from classbox.config import settings


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
    assert "手机打开 (phone): http://127.0.0.1:" in printed
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
