"""The sync worker, its API, windows and bandwidth cap, and the CLI handing a sync to a running box."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from classbox import keys
from classbox.box import Box
from classbox.config import Config, in_window, parse_rate, parse_windows
from classbox.errors import ConfigError
from classbox.sync.download import Throttle
from classbox.sync.engine import Progress
from classbox.sync.sources import HttpSource, Transfer
from classbox.sync.worker import HISTORY, RunRecord, SyncWorker, history, save_run
from classbox.web import build_app

from .netfaults import nginx
from .test_sync import FAST, mirror, needed_bytes  # noqa: F401  (mirror is a fixture)


@pytest.fixture(scope="module")
def nginx_url(mirror: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    with nginx(mirror[0], tmp_path_factory.mktemp("nginx-w")) as url:
        yield url


def test_rates_and_windows_parse() -> None:
    assert parse_rate("256K") == 256 * 1024 and parse_rate("2M") == 2 * 1024**2 and parse_rate("") is None
    assert parse_windows("22:00-06:00, 12:00-13:30") == [(1320, 360), (720, 810)]
    wins = parse_windows("22:00-06:00")
    assert in_window(wins, 23 * 60) and in_window(wins, 5 * 60 + 59) and not in_window(wins, 6 * 60)
    assert in_window([], 0)


@pytest.mark.parametrize("env,name", [({"CLASSBOX_SYNC_WINDOWS": "late evening"}, "CLASSBOX_SYNC_WINDOWS"),
                                      ({"CLASSBOX_SYNC_MAX_RATE": "fast"}, "CLASSBOX_SYNC_MAX_RATE"),
                                      ({"CLASSBOX_SYNC_INTERVAL": "1"}, "CLASSBOX_SYNC_INTERVAL")])
def test_bad_sync_settings_are_named(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env(env)


@pytest.mark.slow
def test_bandwidth_cap_held_within_5_percent(tmp_path: Path, mirror: tuple[Path, Path],  # noqa: F811
                                             nginx_url: str) -> None:
    rate = 260 * 1024
    samples: list[tuple[float, int]] = []

    def record(p: Progress) -> None:
        samples.append((time.monotonic(), p.done))

    with Box(Config.from_env({}, data_dir=tmp_path / "box", demo=False)) as box:
        started = time.monotonic()
        result = box.bring_in(HttpSource(nginx_url), "test", keys.load_public(mirror[1]),
                              transfer=Transfer(limits=FAST.limits, throttle=Throttle(rate)), on_progress=record)
        elapsed = time.monotonic() - started
    assert result.activated
    total = samples[-1][1]
    assert elapsed > 10, "the channel must take longer than one 10 s window"
    worst = 0
    j = 0
    for i, (t0, _d0) in enumerate(samples):  # the most bytes in any 10 s window
        while j < len(samples) and samples[j][0] <= t0 + 10:
            j += 1
        worst = max(worst, samples[j - 1][1] - (samples[i - 1][1] if i else 0))
    assert worst <= 1.05 * rate * 10, f"{worst} bytes in a 10 s window, cap {rate * 10}"
    assert total / elapsed >= 0.9 * rate, f"only {total / elapsed:.0f} B/s of a {rate} B/s cap used"


def test_history_keeps_the_last_20(box: Box) -> None:
    for i in range(HISTORY + 5):
        save_run(box, RunRecord(float(i), "schedule", [], [], float(i), True))
    runs = history(box)
    assert len(runs) == HISTORY and runs[0]["started_at"] == HISTORY + 4


def test_worker_waits_for_window_and_sync_now_overrides(tmp_path: Path, mirror: tuple[Path, Path],  # noqa: F811
                                                         nginx_url: str) -> None:
    now = time.localtime()
    start = (now.tm_hour + 2) % 24
    config = Config.from_env({}, data_dir=tmp_path / "box", demo=False, sync_sources=nginx_url,
                             sync_windows=f"{start:02d}:00-{(start + 1) % 24:02d}:00")
    app = build_app(config)
    box: Box = app.extensions["classbox"]
    worker: SyncWorker = app.extensions["classbox_sync"]
    box.pin_key("test", keys.load_public(mirror[1]))
    client = app.test_client()
    assert client.post("/api/v1/sync").status_code == 503, "no worker yet: says so"
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while client.get("/api/v1/sync").get_json()["state"] != "waiting_for_window":
            assert time.monotonic() < deadline, "the worker should wait for its window"
            time.sleep(0.05)
        assert len(box.catalog) == 0
        r = client.post("/api/v1/sync", json={})
        assert r.status_code == 202
        while not client.get("/api/v1/sync").get_json()["runs"]:
            assert time.monotonic() < deadline + 20, "sync now should run at once"
            time.sleep(0.05)
        status = client.get("/api/v1/sync").get_json()
        run = status["runs"][0]
        assert run["ok"] and run["trigger"] == "now" and run["files"] > 0, run
        assert status["bytes_done"] == status["bytes_total"] == needed_bytes(mirror[0])
        assert status["last_success"] is not None and status["last_error"] is None
        assert len(box.catalog) == 3
    finally:
        worker.stop()
        box.close()


def test_sync_api_names_bad_input(client) -> None:  # type: ignore[no-untyped-def]
    worker = client.application.extensions["classbox_sync"]
    worker.start()
    try:
        r = client.post("/api/v1/sync", json={"source": "x"})
        assert r.status_code == 400 and "unknown field source" in r.get_json()["error"]
        r = client.post("/api/v1/sync", json={"channels": "test"})
        assert r.status_code == 400 and "channels must be a list of strings" in r.get_json()["error"]
        r = client.post("/api/v1/sync", json={"trust": "x"}, environ_base={"REMOTE_ADDR": "192.168.1.9"})
        assert r.status_code == 403
        r = client.post("/api/v1/sync", json={"trust": "not a key"})
        assert r.status_code == 400 and "not a PEM public key" in r.get_json()["error"]
    finally:
        worker.stop()


def test_cli_hands_sync_to_the_running_box(tmp_path: Path, mirror: tuple[Path, Path],  # noqa: F811
                                           nginx_url: str) -> None:
    data = tmp_path / "box"
    serve = subprocess.Popen([sys.executable, "-m", "classbox", "serve", "--host", "127.0.0.1", "--port", "0",
                              "--data", str(data), "--no-demo"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env={**os.environ, "CLASSBOX_SYNC_SOURCES": ""})
    try:
        assert serve.stdout is not None
        url = next(line.split()[-1].rsplit("/", 1)[0] for line in serve.stdout if "手机打开" in line)
        r = subprocess.run([sys.executable, "-m", "classbox", "sync", "--source", nginx_url, "--channel", "test",
                            "--trust", str(mirror[1]), "--data", str(data)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "the box is serving; it runs the sync" in r.stderr
        assert "sync done" in r.stdout and "test v" in r.stdout
        assert len(requests.get(url + "/api/v1/catalog", timeout=5).json()["lessons"]) == 3
    finally:
        serve.terminate()
        serve.wait(10)
        if serve.stdout:
            serve.stdout.close()


def test_sigterm_ends_a_download_at_once_and_the_next_start_goes_on_from_there(
        tmp_path: Path, mirror: tuple[Path, Path]) -> None:  # noqa: F811
    data = tmp_path / "box"
    access = tmp_path / "nginx" / "access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSBOX_")}
    env.update(CLASSBOX_ZEROCONF_INTERFACES="off", CLASSBOX_USB_ROOTS=str(tmp_path / "no-usb"),
               CLASSBOX_PROVISION=str(tmp_path / "none.toml"))
    cli = [sys.executable, "-m", "classbox"]
    r = subprocess.run([*cli, "subscribe", "test", "--trust", str(mirror[1]), "--data", str(data)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr

    def serve(**more: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", "0", "--data", str(data),
                                 "--no-demo"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={**env, **more})
        assert proc.stdout is not None
        return proc, next(line.split()[-1].rsplit("/", 1)[0] for line in proc.stdout if "手机打开" in line)

    def sync_state(url: str) -> dict[str, Any]:
        with requests.get(url + "/api/v1/sync", timeout=5) as answer:
            return answer.json()  # type: ignore[no-any-return]

    with nginx(mirror[0], tmp_path / "nginx", extra=f"access_log {access};") as mirror_url:
        # A slow link: 100 KB/s, about ten seconds a video.
        proc, url = serve(CLASSBOX_SYNC_SOURCES=mirror_url, CLASSBOX_SYNC_MAX_RATE="100000")
        try:
            deadline = time.monotonic() + 30
            while sync_state(url)["bytes_done"] < 200_000:
                assert time.monotonic() < deadline, sync_state(url)
                time.sleep(0.1)
            begun = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(40) == 0
            took = time.monotonic() - begun
        finally:
            proc.kill()
            proc.wait(10)
            if proc.stdout:
                proc.stdout.close()
        assert took < 3, f"the box took {took:.1f} s to stop: it waited for the download instead of ending it"
        sides = [json.loads(p.read_bytes()) for p in (data / "partial").glob("*.json")]
        assert len(sides) == 1 and sides[0]["offset"] > 0, sides
        cut = sides[0]["url"].rsplit("/", 1)[1]

        proc, url = serve(CLASSBOX_SYNC_SOURCES=mirror_url)
        try:
            deadline = time.monotonic() + 30
            while len(requests.get(url + "/api/v1/catalog", timeout=5).json()["lessons"]) < 3:
                assert time.monotonic() < deadline, sync_state(url)
                time.sleep(0.2)
            runs = sync_state(url)["runs"]
        finally:
            proc.terminate()
            proc.wait(20)
            if proc.stdout:
                proc.stdout.close()
    assert any("stopped with the box" in e for run in runs for e in run["errors"]), runs
    # The file cut short was asked for from where it stopped (206), not from the start again.
    asked = [line.split('"')[2].split()[0] for line in access.read_text().splitlines() if cut in line]
    assert asked[-1] == "206", asked
