"""`classbox doctor`: check a box the way a technician would, without disturbing it while it serves.

Nothing here takes the data directory lock or opens a Box: the checks read the
data directory directly (blobs never change, state.json and serve.json are
replaced whole), so they give the same answers while `classbox serve` runs.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pwd
import random
import shutil
import socket
import stat
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psutil

from . import storage
from .config import Config
from .datadir import DataDir
from .errors import StateError
from .store import Store, hash_file

log = logging.getLogger(__name__)

T = TypeVar("T")

# The clock cannot be earlier than the day this release was made. A constant and not the mtime of
# the package's files: those are set by whatever the clock said when the box was installed, and a
# board without a real-time clock often starts in 1970 or at the date its image was built.
# Move it forward with each release.
EARLIEST_PLAUSIBLE = datetime(2026, 11, 1, tzinfo=UTC)
LATEST_PLAUSIBLE = datetime(2100, 1, 1, tzinfo=UTC)

DATA_DIR = "数据目录 data directory"
FREE_SPACE = "磁盘空间 free space"
STATE = "状态文件 state file"
BLOBS = "课程文件抽查 stored files"
CLOCK = "系统时间 clock"
PORT = "端口 port"
ZEROCONF = "局域网广播 zeroconf"
HUB = "中心服务器 hub"

AS_BOX_USER = "run `classbox doctor` as the box's user, or with sudo"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was found and, when it failed, what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """Return the check as one line for a technician, starting with ✓ or ✗."""
        # Reasons can come from exceptions and command lines: keep each check on its one line.
        detail, fix = " ".join(self.detail.split()), " ".join(self.fix.split())
        if self.ok:
            return f"✓ {self.name}: {detail}"
        return f"✗ {self.name}: {detail} → 处理 fix: {fix}"


def run_checks(config: Config, sample: int = 20, now: datetime | None = None, timeout: float = 3.0) -> list[Check]:
    """Run every check on the box of config, in order, and return their outcomes."""
    data = DataDir(config.data_dir)
    planned: list[tuple[str, Callable[[], Check]]] = [
        (DATA_DIR, lambda: check_data_dir(data)),
        (FREE_SPACE, lambda: check_free_space(data, config.free_margin)),
        (STATE, lambda: check_state(data)),
        (BLOBS, lambda: check_blobs(data, sample)),
        (CLOCK, lambda: check_clock(now or datetime.now(UTC))),
        (PORT, lambda: check_port(data, config.host, config.port, timeout)),
        (ZEROCONF, lambda: check_zeroconf(config.interfaces, timeout)),
        (HUB, lambda: check_hub(data, timeout)),
    ]
    return [run_check(name, check) for name, check in planned]


def run_check(name: str, check: Callable[[], Check]) -> Check:
    """Run one check; a check that breaks is reported as failed, with the reason, and logged."""
    try:
        return check()
    except Exception as exc:
        log.exception("the %s check failed", name)
        return Check(name, False, f"the check could not run: {type(exc).__name__}: {exc}",
                     "report this output to whoever maintains the box")


def human_bytes(n: float) -> str:
    """Return a byte count as people read it: 512 B, 3.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def check_data_dir(data: DataDir) -> Check:
    """Check that the data directory exists and takes a durable write, leaving nothing behind."""
    root = data.root
    elsewhere = ("point CLASSBOX_DATA (or --data) at the box's data directory, "
                 "or start `classbox serve` once to create it")
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return Check(DATA_DIR, False, f"{root} does not exist", elsewhere)
    except PermissionError:
        return Check(DATA_DIR, False, f"{_user()} cannot reach {root}: a directory above it is closed to it",
                     f"run classbox as the user that owns {root}, or open the directories above it to that user")
    except NotADirectoryError:
        return Check(DATA_DIR, False, f"{root} is not a directory (a file stands in its path)", elsewhere)
    if not stat.S_ISDIR(st.st_mode):
        return Check(DATA_DIR, False, f"{root} is not a directory", elsewhere)
    # A temp name that the box's start-up cleanup removes, should the doctor die before removing it.
    probe = storage.temp_path_for(root / "doctor-probe")
    try:
        storage.atomic_write(probe, b"classbox doctor\n", mode=0o600)
        storage.remove_file(probe)
    except OSError as exc:
        with suppress(OSError):
            probe.unlink(missing_ok=True)
        if exc.errno == errno.EROFS:
            return Check(DATA_DIR, False, f"{root} is on a read-only filesystem",
                         "the disk was mounted read-only, often after errors on an SD card: see `dmesg`, "
                         "run fsck on it, then remount it read-write or reboot")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return Check(DATA_DIR, False, f"{root} is not writable by {_user()}",
                         f"run classbox as the user that owns {root}, or give it to the box's user with "
                         f"`sudo chown -R USER {root}`")
        if exc.errno == errno.ENOSPC:
            return Check(DATA_DIR, False, f"{root}: no space left to write even a small file",
                         "free space on that disk (see the free space check)")
        return Check(DATA_DIR, False, f"cannot write in {root}: {exc.strerror or exc}",
                     "check the disk (`dmesg`) and the directory's permissions")
    return Check(DATA_DIR, True, f"{root} is writable")


def check_free_space(data: DataDir, margin: int) -> Check:
    """Check that the data directory's filesystem has more free space than the margin a sync keeps."""
    where = data.root
    while True:
        try:
            usage = shutil.disk_usage(where)
            break
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            if where == where.parent:
                raise
            where = where.parent  # not created yet, or closed to this user: measure the disk it is on
    detail = f"{human_bytes(usage.free)} free of {human_bytes(usage.total)}, margin {human_bytes(margin)}"
    if usage.free <= margin:
        return Check(FREE_SPACE, False, f"{detail} (on {where})",
                     "no sync can fetch anything until there is more room: delete other files on that disk, "
                     "use a bigger disk, or lower CLASSBOX_FREE_MARGIN")
    return Check(FREE_SPACE, True, detail)


def read_state(data: DataDir) -> dict[str, Any] | None:
    """Read state.json read-only, as TinyDB would load it; None when there is none yet."""
    try:
        raw = data.state_file.read_bytes()
    except FileNotFoundError:
        return None
    if not raw.strip():
        return {}
    try:
        tables = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{data.state_file} is not valid JSON ({exc})") from None
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise StateError(f"{data.state_file} is JSON but not a state database (tables of documents)")
    return tables


def read_setting(tables: dict[str, Any], key: str) -> Any:
    """Return a setting from the state's "settings" table, None when it is not set."""
    for doc in tables.get("settings", {}).values():
        if isinstance(doc, dict) and doc.get("key") == key:
            return doc.get("value")
    return None


def check_state(data: DataDir) -> Check:
    """Check that state.json loads, without the lock the running box holds."""
    try:
        tables = read_state(data)
    except PermissionError:
        return Check(STATE, False, f"cannot read {data.state_file}: permission denied", AS_BOX_USER)
    except StateError as exc:
        return Check(STATE, False, str(exc),
                     "classbox serve will not start with it: restore state.json from a backup, or move it aside "
                     "(`mv state.json state.json.broken`) to start afresh; settings, trusted keys and rooms must "
                     "then be entered again")
    if tables is None:
        return Check(STATE, True, f"{data.state_file} not created yet (the box has not started here)")
    tables_text = "1 table" if len(tables) == 1 else f"{len(tables)} tables"
    return Check(STATE, True, f"{data.state_file} loads ({tables_text}, "
                              f"{human_bytes(data.state_file.stat().st_size)})")


def check_blobs(data: DataDir, sample: int) -> Check:
    """Re-hash a random sample of stored files against the sha256 they are named by."""
    try:
        os.listdir(data.blobs)
    except FileNotFoundError:
        return Check(BLOBS, True, "no files stored yet")
    except PermissionError:
        return Check(BLOBS, False, f"cannot read {data.blobs}: permission denied", AS_BOX_USER)
    store = Store(data)
    names = store.blobs()
    if not names:
        return Check(BLOBS, True, "no files stored yet")
    if sample == 0:
        return Check(BLOBS, True, f"{len(names)} files stored, none checked (--sample 0)")
    chosen = random.sample(names, min(sample, len(names)))
    damaged: list[str] = []
    checked = read = 0
    for sha256 in chosen:
        try:
            actual, size = hash_file(store.path(sha256))
        except FileNotFoundError:
            continue  # removed to make room or quarantined by the running box meanwhile
        except OSError as exc:
            damaged.append(f"{sha256} (unreadable: {exc.strerror})")
            checked += 1
            continue
        checked += 1
        read += size
        if actual != sha256:
            damaged.append(sha256)
    if damaged:
        return Check(BLOBS, False, f"{len(damaged)} of {checked} files checked are damaged: {', '.join(damaged)}",
                     "run `classbox scrub`: it checks every file and moves the damaged ones aside, and the next "
                     "sync fetches them again; many damaged files point to a failing SD card or disk")
    return Check(BLOBS, True, f"{checked} of {len(names)} files re-hashed ({human_bytes(read)}), all intact")


def check_clock(now: datetime) -> Check:
    """Check that the clock is after this release was made and before 2100."""
    shown = now.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if EARLIEST_PLAUSIBLE <= now < LATEST_PLAUSIBLE:
        return Check(CLOCK, True, shown)
    when = "before this release was made" if now < EARLIEST_PLAUSIBLE else "after 2100"
    return Check(CLOCK, False, f"{shown} is {when}, so the clock is wrong",
                 "set the clock: `sudo timedatectl set-ntp true` when the box is online, or else "
                 "`sudo timedatectl set-ntp false; sudo timedatectl set-time 'YYYY-MM-DD HH:MM:SS'`; "
                 "room codes, timetables and channel expiry all go by it")


def check_port(data: DataDir, host: str, port: int, timeout: float) -> Check:
    """Check that the port is free to listen on, or is the one this box is serving on."""
    if port == 0:
        return Check(PORT, True, "0: serve takes any free port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As waitress does, so that connections still closing do not count as the port being taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            failure = exc
        else:
            return Check(PORT, True, f"{port} is free")
    if failure.errno == errno.EACCES:
        return Check(PORT, False, f"{port} needs more rights than {_user()} has",
                     "use a port from 1024 up (CLASSBOX_PORT or --port), or serve as root")
    if failure.errno == errno.EADDRNOTAVAIL:
        return Check(PORT, False, f"{host} is not an address of this machine",
                     "set CLASSBOX_HOST to one of its addresses (`ip -4 addr`), or to 0.0.0.0")
    if failure.errno != errno.EADDRINUSE:
        return Check(PORT, False, f"cannot listen on {host}:{port}: {failure.strerror}",
                     "set another port with CLASSBOX_PORT or --port")
    try:
        served = json.loads(data.serve_file.read_bytes())
    except FileNotFoundError:
        served = {}
    except PermissionError:
        return Check(PORT, False, f"{port} is in use; cannot read {data.serve_file} to tell whether by this box",
                     AS_BOX_USER)
    except ValueError:
        served = {}
    if _is_this_box(served, host, port, timeout):
        return Check(PORT, True, f"{port} is in use by this box (classbox serve, pid {served['pid']})")
    holder = _listener(port)
    return Check(PORT, False, f"{port} is in use by {holder}",
                 "stop that program, or give classbox another port with CLASSBOX_PORT or --port")


def _is_this_box(served: Any, host: str, port: int, timeout: float) -> bool:
    """Tell whether serve.json names a live process serving this port that answers /-/health."""
    if not isinstance(served, dict):
        return False
    pid = served.get("pid")
    if not isinstance(pid, int) or served.get("port") != port or not psutil.pid_exists(pid):
        return False
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(f"http://{target}:{port}/-/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except (OSError, ValueError):
        return False


def _listener(port: int) -> str:
    """Name the process listening on a port, as far as this user may see it."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return "another program (run with sudo to see which)"
    for c in connections:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
            if c.pid is None:
                return "another user's program (run with sudo to see which)"
            try:
                process = psutil.Process(c.pid)
                command = " ".join(" ".join(process.cmdline()).split())
                return f"pid {c.pid} ({process.name()}: {command[:80]})"
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return f"pid {c.pid}"
    return "another program"


def check_zeroconf(interfaces: list[str] | None, timeout: float) -> Check:
    """Check that the box can announce itself with mDNS on the configured interfaces."""
    if interfaces == []:
        return Check(ZEROCONF, True, "off by configuration (CLASSBOX_ZEROCONF_INTERFACES=off)")
    from .discovery import can_advertise

    where = "all interfaces" if interfaces is None else ", ".join(interfaces)
    reason = can_advertise(interfaces, timeout)
    if reason is None:
        return Check(ZEROCONF, True, f"can announce the box on {where}")
    return Check(ZEROCONF, False, reason,  # it names the interfaces
                 "make CLASSBOX_ZEROCONF_INTERFACES list addresses of this machine (`ip -4 addr`) and let mDNS "
                 "(UDP 5353) through the firewall; TVs can still open the box by its address")


def check_hub(data: DataDir, timeout: float) -> Check:
    """Check that the hub set up for this box answers, if one is."""
    try:
        tables = read_state(data)
    except PermissionError:
        return Check(HUB, False, f"cannot read the hub address from {data.state_file}: permission denied",
                     AS_BOX_USER)
    except StateError:
        return Check(HUB, False, "cannot read the hub address: the state file is damaged",
                     "see the state file check")
    setup = read_setting(tables or {}, "setup")
    url = setup.get("hub_url") if isinstance(setup, dict) else None
    if not url:
        return Check(HUB, True, "no hub configured")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return Check(HUB, False, f"{url!r} is not an http:// or https:// address",
                     "correct the hub address on the setup page")
    try:
        status = _within(timeout + 1, lambda: _status(url, timeout))
    except (OSError, ValueError) as exc:
        return Check(HUB, False, f"{url} does not answer: {_reason(exc)}",
                     "check the box's network link and DNS (`ping`, `getent hosts`), and the hub address on the "
                     "setup page; lessons on the box play without the hub")
    if status >= 500:
        return Check(HUB, False, f"{url} answers HTTP {status}",
                     "the hub has a problem on its side: tell whoever runs it")
    return Check(HUB, True, f"{url} answers (HTTP {status})")


def _status(url: str, timeout: float) -> int:
    """GET url and return the HTTP status; like the sync, connect directly and not through a proxy."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def _reason(exc: BaseException) -> str:
    """Say why a request failed in a few words."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return _reason(exc.reason)
    if isinstance(exc, socket.gaierror):
        return f"cannot look up the host name ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _within(seconds: float, call: Callable[[], T]) -> T:
    """Return call()'s result, or raise TimeoutError after seconds; a stalled DNS lookup ignores socket timeouts."""
    outcome: list[T] = []
    failure: list[Exception] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # handed over to the caller below
            failure.append(exc)

    worker = threading.Thread(target=run, name="doctor-request", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if failure:
        raise failure[0]
    return outcome[0]
