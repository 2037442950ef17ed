"""Tell systemd how the service is doing: readiness, status, stopping and the watchdog (sd_notify(3)).

A few lines of our own instead of libsystemd: one datagram per message to the socket named by
$NOTIFY_SOCKET. Without that variable (a developer's terminal, the tests) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def _socket_address() -> str | None:
    """Return the address of systemd's notify socket, abstract names with their leading NUL, or None."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    if address:  # e.g. vsock:CID:PORT (systemd 254, for VMs): not something a box is started with
        log.warning("NOTIFY_SOCKET=%s is not a unix socket; systemd is not told how the box is doing", address)
    return None


def notify(message: str) -> bool:
    """Send one message (newline-separated KEY=value lines) to systemd; return whether it was sent."""
    address = _socket_address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.warning("could not tell systemd %r: %s", message.split("\n", 1)[0], exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd the box is serving, optionally with a status line."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def status(text: str) -> bool:
    """Tell systemd a one-line status, shown by `systemctl status classbox`."""
    return notify(f"STATUS={_one_line(text)}")


def stopping() -> bool:
    """Tell systemd the box is shutting down."""
    return notify("STOPPING=1")


def _one_line(text: str) -> str:
    # A newline would start another KEY=value assignment.
    return " ".join(text.splitlines())


def watchdog_interval() -> float | None:
    """Return the watchdog timeout systemd set for this process in seconds, or None when there is none."""
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):  # set for another process (we are its child): not ours to pet
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Watchdog:
    """Pet systemd's watchdog from a daemon thread every interval/2, while a health check passes."""

    def __init__(self, interval: float, healthy: Callable[[], bool] = lambda: True) -> None:
        if interval <= 0:
            raise ValueError(f"watchdog interval must be positive, got {interval}")
        self.interval = interval
        self.healthy = healthy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="classbox-watchdog", daemon=True)

    @classmethod
    def from_env(cls, healthy: Callable[[], bool] = lambda: True) -> Watchdog | None:
        """Return a watchdog for the interval systemd asked for, or None when it asked for none."""
        interval = watchdog_interval()
        return None if interval is None else cls(interval, healthy)

    def start(self) -> Watchdog:
        """Start petting; return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop petting and wait for the thread to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        """Pet at once, then every interval/2; skip a pet while the health check fails, so systemd restarts us."""
        while not self._stop.is_set():
            try:
                well = self.healthy()
            except Exception:  # the top of a background loop: a crashing check counts as unhealthy
                log.exception("watchdog health check failed")
                well = False
            if self._stop.is_set():
                break
            if well:
                notify("WATCHDOG=1")
            else:
                log.warning("the box does not answer; not petting systemd's watchdog")
            self._stop.wait(self.interval / 2)
