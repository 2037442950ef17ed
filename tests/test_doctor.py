"""`classbox doctor`: each check passes on a healthy box and fails, saying what to do, on a real fault."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from classbox import doctor, storage
from classbox.box import Box
from classbox.config import Config
from classbox.datadir import DataDir
from classbox.doctor import Check
from classbox.storage import State

from .test_cli import start_serve

NOBODY = 65534


@pytest.fixture(autouse=True)
def no_thread_outlives_a_test() -> Iterator[None]:
    """Fail a test that leaves a thread running (a probe or an mDNS socket not closed)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"threads still running: {left}"


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    """Return a data directory laid out as a box leaves it after its first start."""
    d = DataDir(tmp_path / "data")
    d.prepare()
    return d


def put_blob(data: DataDir, content: bytes, name: str | None = None) -> str:
    """Store a file under the sha256 it is named by (a wrong name makes a damaged blob); return the name."""
    name = name or hashlib.sha256(content).hexdigest()
    storage.atomic_write(data.blobs / name[:2] / name, content)
    return name


def listing(root: Path) -> list[tuple[str, int]]:
    """Return every path under root with its mtime, to show that nothing changed."""
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def set_hub(data: DataDir, hub_url: str) -> None:
    """Save the setup settings as the setup page does, through the state's owner."""
    state = State(data.state_file)
    state.set("setup", {"school": "石门村教学点", "box_name": "一号箱", "timezone": "Asia/Shanghai",
                        "hub_url": hub_url, "hub_key": "k" * 32})
    state.close()


def closed_port() -> int:
    """Return a loopback port nobody listens on (bound once by us and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# 1. data directory


def test_writable_data_dir_passes_and_keeps_nothing(data: DataDir) -> None:
    before = listing(data.root)
    check = doctor.check_data_dir(data)
    assert check.ok and str(data.root) in check.detail
    assert listing(data.root) == before


def test_missing_data_dir_fails(tmp_path: Path) -> None:
    check = doctor.check_data_dir(DataDir(tmp_path / "nowhere"))
    assert not check.ok and "does not exist" in check.detail and "CLASSBOX_DATA" in check.fix


def test_a_file_where_the_data_dir_should_be_fails(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    check = doctor.check_data_dir(DataDir(tmp_path / "data"))
    assert not check.ok and "not a directory" in check.detail


@pytest.fixture
def open_base() -> Iterator[Path]:
    """Return a directory that every user may enter (pytest's tmp_path is closed to other users)."""
    base = Path(tempfile.mkdtemp(prefix="classbox-doctor-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


@contextmanager
def as_another_user() -> Iterator[None]:
    """Run the block with the effective ids of `nobody`, so that the kernel applies permissions to it."""
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def test_data_dir_of_another_user_fails(open_base: Path) -> None:
    data = DataDir(open_base / "data")
    data.prepare()
    if os.geteuid() == 0:
        # Root writes anywhere; the box's own user is who must be able to.
        with as_another_user():
            check = doctor.check_data_dir(data)
    else:
        data.root.chmod(0o555)
        check = doctor.check_data_dir(data)
        data.root.chmod(0o755)
    assert not check.ok and "is not writable by" in check.detail and "chown" in check.fix
    assert [p.name for p in data.root.iterdir() if p.is_file()] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can close a directory to root's own test run")
def test_data_dir_behind_a_closed_directory_fails(open_base: Path) -> None:
    (open_base / "closed").mkdir(mode=0o700)
    data = DataDir(open_base / "closed" / "data")
    data.prepare()
    with as_another_user():
        checks = [doctor.check_data_dir(data), doctor.check_state(data), doctor.check_blobs(data, 5)]
    assert [c.ok for c in checks] == [False, False, False]
    assert "cannot reach" in checks[0].detail
    assert all("permission denied" in c.detail and "sudo" in c.fix for c in checks[1:])


@pytest.fixture
def read_only_data(tmp_path: Path) -> Iterator[DataDir]:
    """Return a data directory on a filesystem then remounted read-only, as after errors on an SD card."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True, timeout=10)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a filesystem here (needs root): {mounted.stderr.strip()}")
    try:
        data = DataDir(mount_point / "data")
        data.prepare()
        State(data.state_file).close()
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True, timeout=10)
        yield data
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=10)


def test_read_only_filesystem_fails(read_only_data: DataDir) -> None:
    check = doctor.check_data_dir(read_only_data)
    assert not check.ok and "read-only filesystem" in check.detail and "fsck" in check.fix
    assert doctor.check_state(read_only_data).ok, "reading still works"


# 2. free space


def test_free_space_above_the_margin_passes(data: DataDir) -> None:
    check = doctor.check_free_space(data, 200 * 1024 * 1024)
    assert check.ok and "margin 200.0 MiB" in check.detail


def test_free_space_below_the_margin_fails(data: DataDir) -> None:
    check = doctor.check_free_space(data, 2**60)
    assert not check.ok and "margin 1048576.0 TiB" in check.detail and "free of" in check.detail
    assert "CLASSBOX_FREE_MARGIN" in check.fix


def test_human_bytes() -> None:
    assert [doctor.human_bytes(n) for n in (512, 1536, 200 * 2**20, 3.5 * 2**30)] == [
        "512 B", "1.5 KiB", "200.0 MiB", "3.5 GiB"]


# 3. state


def test_state_not_created_yet_passes(data: DataDir) -> None:
    check = doctor.check_state(data)
    assert check.ok and "not created yet" in check.detail


def test_state_of_an_open_box_loads_without_its_lock(config: Config) -> None:
    with Box(config) as box:  # holds the data directory lock, as `classbox serve` does
        box.state.set("greeting", "你好")
        check = doctor.check_state(DataDir(config.data_dir))
    assert check.ok and "loads" in check.detail


@pytest.mark.parametrize("content", [b'{"settings": {"1": {"key": "setup", "va', b"[1, 2, 3]", b"\xff\xfe"])
def test_damaged_state_fails(data: DataDir, content: bytes) -> None:
    data.state_file.write_bytes(content)
    check = doctor.check_state(data)
    assert not check.ok and str(data.state_file) in check.detail and "backup" in check.fix


# 4. stored files


def test_empty_store_passes(data: DataDir) -> None:
    check = doctor.check_blobs(data, 20)
    assert check.ok and "no files" in check.detail


def test_intact_files_pass_and_the_sample_is_bounded(data: DataDir) -> None:
    for i in range(5):
        put_blob(data, f"lesson file {i}".encode())
    assert doctor.check_blobs(data, 20) == Check(doctor.BLOBS, True, "5 of 5 files re-hashed (65 B), all intact")
    check = doctor.check_blobs(data, 2)
    assert check.ok and check.detail.startswith("2 of 5 files")


def test_damaged_file_is_named(data: DataDir) -> None:
    put_blob(data, b"a good file")
    wrong = hashlib.sha256(b"what the manifest promised").hexdigest()
    put_blob(data, b"bit rot", name=wrong)
    check = doctor.check_blobs(data, 20)
    assert not check.ok and check.detail == f"1 of 2 files checked are damaged: {wrong}"
    assert "classbox scrub" in check.fix


# 5. clock


def test_clock_now_passes() -> None:
    assert doctor.check_clock(datetime.now(UTC)).ok


@pytest.mark.parametrize("now", [datetime(1970, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC),
                                 datetime(2100, 1, 2, tzinfo=UTC)])
def test_implausible_clock_fails(now: datetime) -> None:
    check = doctor.check_clock(now)
    assert not check.ok and "clock is wrong" in check.detail and "timedatectl set-ntp true" in check.fix


def test_run_checks_takes_the_time_it_is_given(config: Config) -> None:
    DataDir(config.data_dir).prepare()
    quiet = replace(config, zeroconf_interfaces="off")
    checks = {c.name: c for c in doctor.run_checks(quiet, now=datetime(2001, 9, 1, tzinfo=UTC))}
    assert [name for name, c in checks.items() if not c.ok] == [doctor.CLOCK]


# 6. port


def test_free_port_passes(data: DataDir) -> None:
    port = closed_port()
    check = doctor.check_port(data, "127.0.0.1", port, 2)
    assert check.ok and check.detail == f"{port} is free"


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_port_held_by_another_program_fails_and_names_it(data: DataDir, host: str) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        check = doctor.check_port(data, host, port, 2)
    assert not check.ok and f"pid {os.getpid()}" in check.detail and "CLASSBOX_PORT" in check.fix


def test_stale_serve_json_does_not_make_a_port_ours(data: DataDir) -> None:
    # A box that lost power leaves serve.json behind; a live pid on the port that is not a box is not ours.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        storage.atomic_write(data.serve_file, json.dumps({"pid": os.getpid(), "port": port, "token": "t"}).encode())
        check = doctor.check_port(data, "127.0.0.1", port, 0.5)
    assert not check.ok and "is in use by" in check.detail


def clean_env(**extra: str) -> dict[str, str]:
    """Return this environment without CLASSBOX_* settings, plus extra ones."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CLASSBOX_")}, **extra}


def run_doctor(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `classbox doctor` as a technician would."""
    return subprocess.run([sys.executable, "-m", "classbox", "doctor", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=60,
                          env=clean_env(CLASSBOX_ZEROCONF_INTERFACES="off"))


def test_doctor_while_the_box_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSBOX_ZEROCONF_INTERFACES", "off")
    served = start_serve(tmp_path / "data")
    try:
        port = int(served.url.rsplit(":", 1)[1])
        before = {name for name, _mtime in listing(tmp_path / "data")}
        check = doctor.check_port(DataDir(tmp_path / "data"), "0.0.0.0", port, 3)
        assert check.ok and f"in use by this box (classbox serve, pid {served.proc.pid})" in check.detail
        r = run_doctor(tmp_path / "data", "--port", str(port))
        assert {name for name, _mtime in listing(tmp_path / "data")} == before, "doctor leaves nothing behind"
        assert requests.get(served.url + "/-/health", timeout=5).status_code == 200
    finally:
        assert served.stop() == 0
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(lines) == 8 and all(line.startswith("✓ ") for line in lines)
    assert "files re-hashed" in r.stdout and "in use by this box" in r.stdout


# 7. zeroconf


def test_zeroconf_off_by_configuration_passes() -> None:
    check = doctor.check_zeroconf([], 3)
    assert check.ok and "off by configuration" in check.detail


def test_zeroconf_on_loopback_passes() -> None:
    check = doctor.check_zeroconf(["127.0.0.1"], 3)
    assert check.ok, check.line()


def test_zeroconf_on_an_address_not_of_this_machine_fails() -> None:
    check = doctor.check_zeroconf(["192.0.2.1"], 3)
    assert not check.ok and "192.0.2.1" in check.detail and "CLASSBOX_ZEROCONF_INTERFACES" in check.fix


# 8. hub


class Hub(BaseHTTPRequestHandler):
    """A stand-in hub that answers every GET with the status its server is set to."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@contextmanager
def hub(status: int) -> Iterator[str]:
    """Serve a stand-in hub on a loopback port; yield its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    server.status = status  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_no_hub_configured_passes(data: DataDir) -> None:
    assert doctor.check_hub(data, 2) == Check(doctor.HUB, True, "no hub configured")
    set_hub(data, "")
    assert doctor.check_hub(data, 2) == Check(doctor.HUB, True, "no hub configured")


@pytest.mark.parametrize("status", [200, 404])
def test_hub_that_answers_passes(data: DataDir, status: int) -> None:
    with hub(status) as url:
        set_hub(data, url)
        check = doctor.check_hub(data, 2)
    assert check.ok and check.detail == f"{url} answers (HTTP {status})"


def test_hub_with_a_server_error_fails(data: DataDir) -> None:
    with hub(503) as url:
        set_hub(data, url)
        check = doctor.check_hub(data, 2)
    assert not check.ok and "HTTP 503" in check.detail


def test_hub_that_does_not_answer_fails(data: DataDir) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    set_hub(data, url)
    check = doctor.check_hub(data, 2)
    assert not check.ok and check.detail == f"{url} does not answer: Connection refused"
    assert "network" in check.fix


def test_hub_that_never_answers_fails_in_bounded_time(data: DataDir) -> None:
    with socket.socket() as silent:  # takes the connection (backlog) and never answers it
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        set_hub(data, url)
        started = time.monotonic()
        check = doctor.check_hub(data, 0.5)
    assert time.monotonic() - started < 2
    assert not check.ok and check.detail == f"{url} does not answer: timed out"


def test_hub_address_in_a_damaged_state_fails(data: DataDir) -> None:
    data.state_file.write_bytes(b"{")
    check = doctor.check_hub(data, 2)
    assert not check.ok and "damaged" in check.detail


# running the checks, and the command


def test_a_check_that_breaks_is_a_failure_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Check:
        raise RuntimeError("no such device")

    check = doctor.run_check("测试 test", broken)
    assert not check.ok and check.detail == "the check could not run: RuntimeError: no such device"
    assert check.line().startswith("✗ 测试 test: the check could not run") and "→ 处理 fix: " in check.line()
    assert "the 测试 test check failed" in caplog.text


def test_each_check_stays_on_one_line() -> None:
    check = Check("端口 port", False, "8080 is in use by pid 7 (python3 -c\nimport socket)", "stop it")
    assert check.line() == "✗ 端口 port: 8080 is in use by pid 7 (python3 -c import socket) → 处理 fix: stop it"


def test_command_passes_on_a_healthy_box(config: Config) -> None:
    Box(config).close()
    put_blob(DataDir(config.data_dir), b"a lesson")
    r = run_doctor(config.data_dir, "--port", str(closed_port()))
    assert r.returncode == 0, r.stdout + r.stderr
    assert [line[0] for line in r.stdout.splitlines()] == ["✓"] * 8


def test_command_fails_when_a_check_fails(config: Config) -> None:
    Box(config).close()
    bad = put_blob(DataDir(config.data_dir), b"bit rot", name="ab" * 32)
    r = run_doctor(config.data_dir, "--port", str(closed_port()))
    lines = r.stdout.splitlines()
    assert r.returncode == 1
    assert len(lines) == 8 and all(line[:2] in ("✓ ", "✗ ") for line in lines)
    assert [line for line in lines if line.startswith("✗")] == [
        f"✗ {doctor.BLOBS}: 1 of 1 files checked are damaged: {bad} → 处理 fix: "
        + doctor.check_blobs(DataDir(config.data_dir), 1).fix]
