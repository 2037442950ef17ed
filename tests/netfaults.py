"""Test helpers for sync: a real nginx serving a folder, and a TCP proxy that cuts, stalls and trickles."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    """Return a loopback port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def nginx(root: Path, work: Path, extra: str = "") -> Iterator[str]:
    """Run a real nginx serving root on a loopback port; yield its base URL."""
    if not Path(NGINX).exists():
        raise RuntimeError("nginx is missing: run the README's test command, it installs it")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        {extra}
    }}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(work), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"nginx failed: {proc.stderr.read().decode() if proc.stderr else ''}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


@dataclass
class Fault:
    """What the proxy does to one connection's response: cut after N bytes, stall, trickle."""

    cut_after: int | None = None
    stall_after: int | None = None  # stop forwarding (keep the connection open) after N bytes
    trickle: float | None = None  # seconds between single bytes


class FaultProxy:
    """A TCP proxy in front of a server; `plan(n)` decides the fault of the n-th connection."""

    def __init__(self, upstream_port: int, plan: Callable[[int], Fault]) -> None:
        self.upstream_port = upstream_port
        self.plan = plan
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.bytes_to_client = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                n = self.connections
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(client, self.plan(n)), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, client: socket.socket, fault: Fault) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        up = threading.Thread(target=self._pipe_up, args=(client, upstream), daemon=True)
        up.start()
        sent = 0
        try:
            upstream.settimeout(10)
            while not self._stop.is_set():
                data = upstream.recv(65536)
                if not data:
                    break
                if fault.cut_after is not None and sent + len(data) >= fault.cut_after:
                    data = data[: max(0, fault.cut_after - sent)]
                    self._send(client, data)
                    sent += len(data)
                    break
                if fault.stall_after is not None and sent + len(data) >= fault.stall_after:
                    data = data[: max(0, fault.stall_after - sent)]
                    self._send(client, data)
                    self._stop.wait(60)
                    break
                if fault.trickle is not None:
                    for i in range(len(data)):
                        if self._stop.wait(fault.trickle):
                            break
                        self._send(client, data[i:i + 1])
                    break
                self._send(client, data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _send(self, client: socket.socket, data: bytes) -> None:
        client.sendall(data)
        with self._lock:
            self.bytes_to_client += len(data)

    @staticmethod
    def _pipe_up(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        try:  # the client hung up: end the upstream side too, so the response loop ends
            upstream.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Stop accepting and end every connection."""
        self._stop.set()
        self.sock.close()
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)
