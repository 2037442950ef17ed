"""The box under systemd: sd_notify on a real socket, the real `classbox serve`, the unit file and the scripts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from classbox import sdnotify

from .test_cli import Served

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "classbox.service"
SCRIPTS = [*sorted((ROOT / "deploy").glob("*.sh")), ROOT / ".ci" / "run"]


class NotifySocket:
    """The receiving end of sd_notify, as systemd holds it: a datagram socket that learns each sender's pid."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout: float) -> tuple[str, int] | None:
        """Return the next message and its sender's pid, or None if none comes within timeout."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except TimeoutError:
            return None
        pid = next((struct.unpack("3i", cmsg)[0] for level, kind, cmsg in ancillary
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS), -1)
        return data.decode("utf-8"), pid

    def wait_for(self, message: str, timeout: float, sender: subprocess.Popen[str] | None = None) -> int:
        """Wait for a message whose first line is message and return its sender's pid; give up if sender exits."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(min(left, 0.5))
            if got is None:
                if sender is not None and sender.poll() is not None:
                    raise AssertionError(f"exited with status {sender.returncode} before {message}; got {seen}")
                continue
            seen.append(got[0])
            if got[0].split("\n")[0] == message:
                return got[1]
        raise AssertionError(f"no {message} within {timeout} s; got {seen}")

    def count(self, message: str, within: float) -> int:
        """Count the messages equal to message that arrive within the next `within` seconds."""
        n = 0
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is None:
                break
            n += got[0] == message
        return n

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """Bind a notify socket in tmp_path and point NOTIFY_SOCKET at it; no watchdog unless a test sets one."""
    path = tmp_path / "notify"
    listener = NotifySocket(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


def test_ready_status_and_stopping_reach_systemd(notify_socket: NotifySocket) -> None:
    assert sdnotify.ready("4 lessons, http://192.168.1.20:8080/tv")
    assert notify_socket.receive(5) == ("READY=1\nSTATUS=4 lessons, http://192.168.1.20:8080/tv", os.getpid())
    assert sdnotify.status("同步中\n第二行")
    assert notify_socket.receive(5) == ("STATUS=同步中 第二行", os.getpid()), "a newline would start another field"
    assert sdnotify.stopping()
    assert notify_socket.receive(5) == ("STOPPING=1", os.getpid())


def test_abstract_socket_names(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"classbox-test-{uuid.uuid4().hex}"
    listener = NotifySocket("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1")
        assert listener.receive(5) == ("READY=1", os.getpid())
    finally:
        listener.close()


def test_without_a_notify_socket_nothing_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False and sdnotify.stopping() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.notify("READY=1") is False, "a socket that is gone is reported, not raised"


def test_watchdog_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() is None
    assert sdnotify.Watchdog.from_env() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert sdnotify.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None, "meant for another process: our parent, say"
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "", "sixty"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sdnotify.watchdog_interval() is None


def test_watchdog_pets_every_half_interval_until_stopped(notify_socket: NotifySocket,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    watchdog = sdnotify.Watchdog.from_env()
    assert watchdog is not None and watchdog.interval == 0.2
    watchdog.start()
    try:
        assert notify_socket.receive(5) == ("WATCHDOG=1", os.getpid()), "the first pet comes at once"
        begun = time.monotonic()
        for _ in range(4):
            assert notify_socket.receive(5) == ("WATCHDOG=1", os.getpid())
        assert time.monotonic() - begun >= 4 * 0.1 * 0.9, "no faster than every interval/2"
    finally:
        watchdog.stop()
    assert not any(t.name == "classbox-watchdog" for t in threading.enumerate()), "stop() joins the thread"
    while notify_socket.receive(0.05) is not None:  # one pet may have been on its way
        pass
    assert notify_socket.count("WATCHDOG=1", within=0.5) == 0


def test_watchdog_stops_petting_while_the_server_is_wedged(notify_socket: NotifySocket,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    healthy = threading.Event()
    healthy.set()
    watchdog = sdnotify.Watchdog(0.2, healthy=healthy.is_set).start()
    try:
        assert notify_socket.receive(5) == ("WATCHDOG=1", os.getpid())
        healthy.clear()
        for _ in range(10):  # pets already past the check may still arrive; then silence
            if notify_socket.receive(0.15) is None:
                break
        assert notify_socket.count("WATCHDOG=1", within=0.6) == 0, "systemd must see the box stop answering"
        healthy.set()
        assert notify_socket.receive(5) == ("WATCHDOG=1", os.getpid()), "and see it again once it recovers"
    finally:
        watchdog.stop()
    assert "not petting" in caplog.text


def test_a_crashing_health_check_counts_as_wedged(notify_socket: NotifySocket,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bool:
        raise RuntimeError("probe exploded")

    watchdog = sdnotify.Watchdog(0.2, healthy=broken).start()
    try:
        assert notify_socket.count("WATCHDOG=1", within=0.5) == 0
    finally:
        watchdog.stop()
    assert "probe exploded" in caplog.text


def test_serve_is_ready_only_once_it_answers_and_says_when_it_stops(tmp_path: Path,
                                                                     notify_socket: NotifySocket) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "CLASSBOX_DATA": str(data), "CLASSBOX_ZEROCONF_INTERFACES": "off",
           "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen([sys.executable, "-m", "classbox", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--no-demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    served = Served(proc)
    try:
        try:
            pid = notify_socket.wait_for("READY=1", timeout=30, sender=proc)
        except AssertionError as exc:
            served.stop()
            raise AssertionError(f"serve: {exc}\n{''.join(served.output)}") from None
        assert pid == proc.pid, "with NotifyAccess=main only the main process may say READY=1"
        port = json.loads((data / "serve.json").read_text())["port"]
        health = requests.get(f"http://127.0.0.1:{port}/-/health", timeout=2)
        assert health.status_code == 200, "READY=1 means a TV can connect now"

        assert notify_socket.count("WATCHDOG=1", within=1.6) >= 2, "serve pets the watchdog while it answers"

        proc.send_signal(signal.SIGTERM)
        assert notify_socket.wait_for("STOPPING=1", timeout=5) == proc.pid
        assert proc.wait(10) == 0
    finally:
        served.stop()  # SIGTERM unless it has exited; reads the rest of its output


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """Return systemd-analyze, which the README's test command installs (Debian's systemd package)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: run ./deploy/test.sh, it installs the systemd package")
    return found


def test_unit_file_verifies_without_warnings(tmp_path: Path, systemd_analyze: str) -> None:
    # verify checks that ExecStart= exists: point it at this environment's classbox, nothing else changes.
    # User=classbox is not looked up by verify, so this machine needs no such user.
    classbox = Path(sys.executable).with_name("classbox")
    assert classbox.is_file(), f"{classbox} is missing: the test venv installs the classbox command"
    text = UNIT.read_text()
    assert text.count("/opt/classbox/venv/bin/classbox") == 1
    unit = tmp_path / "classbox.service"
    unit.write_text(text.replace("/opt/classbox/venv/bin/classbox", str(classbox)))
    r = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values, and only prints them: any output is a finding.
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_unit_file_keeps_its_hardening(systemd_analyze: str) -> None:
    # Exposure 1.5 of 10 with systemd 252; 2.5 leaves room for newer checks, not for dropping a protection.
    r = subprocess.run([systemd_analyze, "security", "--offline=yes", "--threshold=25", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _setting(text: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)


def test_unit_runs_what_install_sh_installs() -> None:
    unit, install = UNIT.read_text(), (ROOT / "deploy" / "install.sh").read_text()
    prefix = re.search(r"^prefix=(\S+)", install, re.MULTILINE)
    data = re.search(r"^data=(\S+)", install, re.MULTILINE)
    assert prefix and data
    assert _setting(unit, "ExecStart") == [f"{prefix.group(1)}/venv/bin/classbox serve"]
    assert _setting(unit, "Type") == ["notify"] and _setting(unit, "NotifyAccess") == ["main"]
    assert _setting(unit, "User") == ["classbox"] and "useradd --system" in install
    assert f"/var/lib/{_setting(unit, 'StateDirectory')[0]}" == data.group(1)
    assert f"CLASSBOX_DATA={data.group(1)}" in _setting(unit, "Environment")
    assert _setting(unit, "EnvironmentFile") == ["-/etc/default/classbox"]


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: run ./deploy/test.sh, it installs it")
    # -x -P SCRIPTDIR: follow `. "$(dirname "$0")/lib.sh"`, so that what lib.sh defines is known.
    r = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", *map(str, SCRIPTS)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("script", ["install.sh", "uninstall.sh"])
def test_scripts_parse_and_explain_themselves(script: str) -> None:
    path = ROOT / "deploy" / script
    assert subprocess.run(["bash", "-n", str(path)], timeout=30).returncode == 0
    r = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("usage:"), r.stderr
    options = {"install.sh": ["--system", "--no-start", "--dev"], "uninstall.sh": ["--purge"]}[script]
    assert all(option in r.stdout for option in options), r.stdout


def test_install_refuses_options_that_do_not_fit_together() -> None:
    # Refused before anything is installed, as any user.
    r = subprocess.run([str(ROOT / "deploy" / "install.sh"), "--dev", "--no-start"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "--no-start goes with --system" in r.stderr
    r = subprocess.run([str(ROOT / "deploy" / "uninstall.sh"), "--bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("usage:")

