#!/usr/bin/env python3
"""Benchmark classbox's GET /media/<sha256> against nginx serving the same file, on loopback, in one run.

Measures (each against both servers, same client):
  1. whole-file GET throughput with curl (median of 3 runs);
  2. random 1 MiB-aligned ranges, 8 connections, requests/s (wrk + Lua);
  3. random 64 KiB ranges, 4 connections, p99 latency (wrk + Lua);
  4. latency of small probe requests (fresh connection each) while 24 slow clients read
     `Range: bytes=0-` at ~64 KiB/s each, and whether all 24 keep receiving.

Needs nginx, wrk and curl (`apt-get install nginx wrk curl`); installs nothing itself.
Everything listens on 127.0.0.1 only; every child process is killed on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MiB = 1024 * 1024
KiB = 1024

SLOW_CLIENTS = 24
SLOW_RATE = 64 * KiB  # bytes per second each slow client reads
SLOW_RCVBUF = 16 * KiB  # asked for; Linux doubles it
SLOW_TICK = 0.05  # seconds between the slow clients' reads
SLOW_WARMUP = 3.0  # seconds the slow clients read before the probes start
SLOW_RECENT = 2.0  # "still receiving" = got bytes in the last this many seconds
PROBES = 50
PROBE_TIMEOUT = 5.0

TARGET_WHOLE = 0.5
TARGET_RANGES_1M = 0.15
TARGET_PROBE_P99_MS = 50.0

LUA = r"""
-- Random single-range GETs over one file. args: size block aligned(1|0)
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  size = tonumber(args[1])
  block = tonumber(args[2])
  aligned = tonumber(args[3])
  nblocks = math.floor(size / block)
  math.randomseed(4242 + 7919 * (id or 0))
  for i = 1, 5 do math.random() end
end

function request()
  local first
  if aligned == 1 then
    first = (math.random(1, nblocks) - 1) * block
  else
    first = math.random(0, size - block)
  end
  return wrk.format("GET", nil, {["Range"] = "bytes=" .. first .. "-" .. (first + block - 1)})
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# --------------------------------------------------------------------------- processes


class Children:
    """Every child process this run started, so that all of them can be killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []
        self.lock = threading.Lock()

    def popen(self, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a child and remember it."""
        proc = subprocess.Popen(cmd, **kw)
        with self.lock:
            self.procs.append(proc)
        return proc

    def run(self, cmd: list[str], timeout: float) -> tuple[int, str, str]:
        """Run a child to its end, killing it after timeout seconds; return (returncode, stdout, stderr)."""
        proc = self.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc)
            out, err = proc.communicate()
            err += f"\n[bench] killed after {timeout:.0f} s"
        return proc.returncode, out, err

    def stop_all(self) -> None:
        """Terminate, then kill, every child still running."""
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            stop(proc)


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Stop one child by its pid: SIGTERM, then SIGKILL after grace seconds."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


def log(msg: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_snapshot(pid: int) -> tuple[float, float, float]:
    """Return (server CPU seconds, machine busy+idle jiffies, steal jiffies), zeros where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        cpu = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return server, float(sum(cpu[:8])), float(cpu[7]) if len(cpu) > 7 else 0.0
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0, 0.0


class CpuMeter:
    """Server CPU seconds and machine steal % over one phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = cpu_snapshot(pid)
        self.t0 = time.monotonic()

    def result(self) -> dict[str, float]:
        end = cpu_snapshot(self.pid)
        total = end[1] - self.start[1]
        wall = time.monotonic() - self.t0
        return {"server_cpu_s": round(end[0] - self.start[0], 2), "wall_s": round(wall, 2),
                "steal_pct": round(100 * (end[2] - self.start[2]) / total, 1) if total else 0.0}


def cpu_note(cpu: dict[str, float]) -> str:
    """Describe a CpuMeter result in a few words."""
    return f"server CPU {cpu['server_cpu_s']:.1f} s in {cpu['wall_s']:.0f} s, steal {cpu['steal_pct']:.1f}%"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, deadline: float, headers: dict[str, str] | None = None) -> None:
    """Wait until a HEAD of path answers 2xx, or raise at deadline."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            status, _, _ = http_get(port, path, headers, method="HEAD", timeout=2.0)
            if 200 <= status < 300:
                return
            last = RuntimeError(f"HEAD {path} answered {status}")
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready: {last}")


def http_get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
             timeout: float = PROBE_TIMEOUT) -> tuple[int, dict[str, str], bytes]:
    """Do one request on a fresh connection; return (status, headers, body)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the headers")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if ":" in h)}
        want = 0 if method == "HEAD" else int(hdrs.get("content-length", "0"))
        while len(body) < want:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed after {len(body)} of {want} body bytes")
            body += chunk
        return status, hdrs, body


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One server under test."""

    name: str
    port: int
    proc: subprocess.Popen[Any]
    path: str  # URL path of the blob

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def ensure_blob(work: Path, size: int) -> tuple[Path, str]:
    """Return (data dir, sha256) of a random blob of size bytes, generating it once under work."""
    data = work / "data"
    blobs = data / "blobs" / "sha256"
    marker = work / f"blob-{size}.sha256"
    if marker.exists():
        sha = marker.read_text().strip()
        path = blobs / sha[:2] / sha
        if path.is_file() and path.stat().st_size == size:
            log(f"reusing {size // MiB} MiB blob {sha[:12]}…")
            return data, sha
    log(f"generating a {size / MiB:.0f} MiB random blob in {work}")
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "blob.tmp"
    digest = hashlib.sha256()
    with open(tmp, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(MiB, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    sha = digest.hexdigest()
    (blobs / sha[:2]).mkdir(parents=True, exist_ok=True)
    os.replace(tmp, blobs / sha[:2] / sha)
    marker.write_text(sha + "\n")
    return data, sha


def start_classbox(children: Children, cmd: list[str], data: Path, sha: str, logdir: Path) -> Server:
    """Start `classbox serve` on a free loopback port and wait until it serves the blob."""
    full = [*cmd, "serve", "--host", "127.0.0.1", "--port", "0", "--data", str(data), "--no-demo"]
    log("starting classbox: " + shlex.join(full))
    with open(logdir / "classbox.log", "wb") as errlog:  # the child keeps its own copy of the descriptor
        # Benchmarks talk to loopback only: the box does not announce itself on the LAN.
        env = {**os.environ, "CLASSBOX_ZEROCONF_INTERFACES": "off"}
        proc = children.popen(full, stdout=subprocess.PIPE, stderr=errlog, stdin=subprocess.DEVNULL,
                              start_new_session=True, text=True, cwd=str(REPO), env=env)
    found: dict[str, int] = {}
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # keep draining so the child never blocks on a full pipe
            m = re.search(r"http://127\.0\.0\.1:(\d+)/tv", line)
            if m and "port" not in found:
                found["port"] = int(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(timeout=60)
    if "port" not in found:
        stop(proc)
        tail = (logdir / "classbox.log").read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError("classbox did not print its URL; the end of its log:\n  " + "\n  ".join(tail))
    server = Server("classbox", found["port"], proc, f"/media/{sha}")
    wait_http(server.port, server.path, time.monotonic() + 30)
    log(f"classbox listening on 127.0.0.1:{server.port} (pid {proc.pid})")
    return server


# The nginx every benchmark runs as its reference or mirror: one process in the foreground, every file
# under the run's temp folder; a benchmark adds its server blocks and the closing brace.
NGINX_HEAD = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush off;  # nginx's default; "on" (TCP_CORK) stalls 64 KiB ranges ~40 ms on delayed ACKs
    tcp_nodelay on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
"""

NGINX_CONF = NGINX_HEAD + """\
    server {{
        listen 127.0.0.1:{port};
        location /media/ {{
            alias {blobdir}/;
        }}
    }}
}}
"""


def launch_nginx(children: Children, nginx: str, tmp: Path, conf: Callable[..., str], probes: list[str],
                 headers: dict[str, str] | None = None) -> tuple[subprocess.Popen[Any], list[int]]:
    """Start nginx in the foreground with conf(*ports) as its config in tmp, on one free port per probe path.

    Ready once a HEAD of each probe path on its port answers 2xx (with headers); tried three times,
    with new ports, since a free port can be taken before nginx binds it. Return the process and ports.
    """
    last = ""
    for _ in range(3):
        ports = [free_port() for _ in probes]
        if len(set(ports)) < len(ports):
            continue
        (tmp / "nginx.conf").write_text(conf(*ports))
        cmd = [nginx, "-p", f"{tmp}/", "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")]
        log("starting nginx: " + shlex.join(cmd))
        proc = children.popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                for port, path in zip(ports, probes, strict=True):
                    wait_http(port, path, min(deadline, time.monotonic() + 0.5), headers)
                log(f"nginx on 127.0.0.1 port {', '.join(map(str, ports))} (pid {proc.pid})")
                return proc, ports
            except RuntimeError as exc:
                last = str(exc)
        stop(proc)
        err = tmp / "error.log"
        last = (err.read_text()[-2000:] if err.exists() else "") or last
    raise RuntimeError(f"nginx did not start: {last}")


def start_nginx(children: Children, nginx: str, blobdir: Path, sha: str, tmp: Path) -> Server:
    """Start nginx serving blobdir at /media/."""
    proc, (port,) = launch_nginx(children, nginx, tmp,
                                 lambda port: NGINX_CONF.format(tmp=tmp, port=port, blobdir=blobdir), [f"/media/{sha}"])
    return Server("nginx", port, proc, f"/media/{sha}")


# --------------------------------------------------------------------------- measures


def whole_file(children: Children, curl: str, server: Server, size: int) -> float:
    """GET the whole file once with curl; return MiB/s."""
    code, out, err = children.run(
        [curl, "-s", "--noproxy", "*", "-o", "/dev/null", "--max-time", "120",
         "-w", "%{http_code} %{size_download} %{speed_download}", server.url()], timeout=150)
    parts = out.split()
    if code != 0 or len(parts) != 3 or parts[0] != "200" or int(float(parts[1])) != size:
        raise RuntimeError(f"curl against {server.name} failed: rc={code} out={out!r} err={err.strip()!r}")
    return float(parts[2]) / MiB


def run_wrk(children: Children, wrk: str, lua: Path, server: Server, size: int, block: int, aligned: bool,
            conns: int, threads: int, duration: int) -> dict[str, Any]:
    """Run wrk with random single ranges for duration seconds; return its figures."""
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "-s", str(lua),
           server.url(), "--", str(size), str(block), "1" if aligned else "0"]
    code, out, err = children.run(cmd, timeout=duration + 30)
    m = re.search(r"^BENCHJSON (\{.*\})$", out, re.M)
    if code != 0 or not m:
        raise RuntimeError(f"wrk against {server.name} failed: rc={code}\n{out}\n{err}")
    res: dict[str, Any] = json.loads(m.group(1))
    secs = res["duration_us"] / 1e6
    if secs < 0.9 * duration:
        raise RuntimeError(f"wrk against {server.name} stopped after {secs:.1f} of {duration} s (interrupted?)")
    res["rps"] = res["requests"] / secs if secs else 0.0
    res["mib_s"] = res["bytes"] / MiB / secs if secs else 0.0
    res["errors"] = sum(res[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors",
                                         "timeouts"))
    res["p99_ms"] = res["p99_us"] / 1000
    res["p50_ms"] = res["p50_us"] / 1000
    return res


@dataclass
class SlowClient:
    """A raw socket reading `Range: bytes=0-` at SLOW_RATE."""

    sock: socket.socket
    received: int = 0
    head: bytes = b""
    status: int | None = None
    closed: bool = False
    stamps: list[tuple[float, int]] = field(default_factory=list)  # (time, bytes) of each non-empty read


def slow_phase(server: Server, probe_spacing: float, slow_max_secs: float) -> dict[str, Any]:
    """Measure probe latency while SLOW_CLIENTS slow readers stream the file; return the figures."""
    clients: list[SlowClient] = []
    stop_evt = threading.Event()
    request = (f"GET {server.path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               f"Range: bytes=0-\r\nConnection: close\r\n\r\n").encode()
    for _ in range(SLOW_CLIENTS):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)  # before connect: sets the window
        s.settimeout(5)
        s.connect(("127.0.0.1", server.port))
        s.sendall(request)
        s.setblocking(False)
        clients.append(SlowClient(s))

    def reader() -> None:
        """Read each socket at SLOW_RATE; bounded by time and by bytes."""
        per_tick = int(SLOW_RATE * SLOW_TICK)
        deadline = time.monotonic() + slow_max_secs
        max_bytes = int(SLOW_RATE * slow_max_secs * 2) + 64 * KiB
        next_tick = time.monotonic()
        while not stop_evt.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            for c in clients:
                if c.closed or c.received >= max_bytes:
                    continue
                try:
                    chunk = c.sock.recv(per_tick)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    c.closed = True
                    continue
                if not chunk:
                    c.closed = True
                    continue
                if c.status is None:
                    c.head += chunk
                    if b"\r\n" in c.head:
                        try:
                            c.status = int(c.head.split(b"\r\n", 1)[0].split()[1])
                        except (IndexError, ValueError):
                            c.status = -1
                        c.head = b""
                c.received += len(chunk)
                c.stamps.append((now, len(chunk)))
            next_tick += SLOW_TICK
            time.sleep(max(0.0, next_tick - time.monotonic()))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    latencies: list[float] = []
    failures: list[str] = []
    try:
        time.sleep(SLOW_WARMUP)
        probe_start = time.monotonic()
        for i in range(PROBES):
            t0 = time.perf_counter()
            try:
                status, _, body = http_get(server.port, server.path, {"Range": "bytes=0-1023"})
                if status != 206 or len(body) != 1024:
                    failures.append(f"probe {i}: status {status}, {len(body)} bytes")
                latencies.append((time.perf_counter() - t0) * 1000)
            except OSError as exc:
                failures.append(f"probe {i}: {exc!r}")
                latencies.append(PROBE_TIMEOUT * 1000)
            time.sleep(max(0.0, probe_spacing - (time.perf_counter() - t0)))
        probe_end = time.monotonic()
    finally:
        stop_evt.set()
        t.join(timeout=5)
        for c in clients:
            c.sock.close()
    recent = sum(1 for c in clients if any(ts >= probe_end - SLOW_RECENT for ts, _ in c.stamps))
    during = sum(1 for c in clients if any(probe_start <= ts <= probe_end for ts, _ in c.stamps))
    in_window = [sum(n for ts, n in c.stamps if probe_start <= ts <= probe_end) for c in clients]
    window = probe_end - probe_start
    qs = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "probe_p50_ms": statistics.median(latencies),
        "probe_p99_ms": qs[98],
        "probe_max_ms": max(latencies),
        "probe_failures": failures,
        "slow_clients": SLOW_CLIENTS,
        "slow_status_206": sum(1 for c in clients if c.status == 206),
        "slow_receiving_last_s": recent,
        "slow_receiving_during_probes": during,
        "slow_closed_early": sum(1 for c in clients if c.closed),
        "slow_rate_min_kib_s": min(in_window) / KiB / window if window else 0.0,
        "slow_rate_median_kib_s": statistics.median(in_window) / KiB / window if window else 0.0,
        "probe_window_s": window,
    }


# --------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> float:
    """Return a/b, or nan when b is 0."""
    return a / b if b else float("nan")


def percentile(values: list[float], pct: int) -> float:
    """Return the pct-th percentile (inclusive method), nan for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


class NoDelayConnection(http.client.HTTPConnection):
    """A keep-alive connection with Nagle off, like a browser's."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def build_rows(res: dict[str, Any]) -> list[dict[str, str]]:
    """Turn the results into table rows: measure, classbox, nginx, ratio, target, result."""
    cb, ng = res["classbox"], res["nginx"]
    rows = []
    r = ratio(cb["whole_mib_s"], ng["whole_mib_s"])
    rows.append({"measure": "whole-file GET, MiB/s (curl, median of 3)",
                 "classbox": f"{cb['whole_mib_s']:.0f}", "nginx": f"{ng['whole_mib_s']:.0f}",
                 "ratio": f"{r:.2f}", "target": f"≥ {TARGET_WHOLE}× nginx",
                 "result": "PASS" if r >= TARGET_WHOLE else "FAIL"})
    w1c, w1n = cb["ranges_1m"], ng["ranges_1m"]
    r = ratio(w1c["rps"], w1n["rps"])
    ok = r >= TARGET_RANGES_1M and w1c["errors"] == 0
    rows.append({"measure": "1 MiB ranges, 8 connections, requests/s",
                 "classbox": f"{w1c['rps']:.0f}", "nginx": f"{w1n['rps']:.0f}",
                 "ratio": f"{r:.2f}", "target": f"≥ {TARGET_RANGES_1M}× nginx",
                 "result": ("PASS" if ok else "FAIL") + ("" if w1c["errors"] == 0 else f" ({w1c['errors']} errors)")})
    w6c, w6n = cb["ranges_64k"], ng["ranges_64k"]
    rows.append({"measure": "64 KiB ranges, 4 connections, p99 ms",
                 "classbox": f"{w6c['p99_ms']:.1f}", "nginx": f"{w6n['p99_ms']:.1f}",
                 "ratio": f"{ratio(w6c['p99_ms'], w6n['p99_ms']):.1f}", "target": "(reported)",
                 "result": "—" if w6c["errors"] == 0 else f"{w6c['errors']} errors"})
    rows.append({"measure": "64 KiB ranges, 4 connections, requests/s",
                 "classbox": f"{w6c['rps']:.0f}", "nginx": f"{w6n['rps']:.0f}",
                 "ratio": f"{ratio(w6c['rps'], w6n['rps']):.2f}", "target": "(reported)", "result": "—"})
    sc, sn = cb["slow"], ng["slow"]
    ok = sc["probe_p99_ms"] < TARGET_PROBE_P99_MS and not sc["probe_failures"]
    rows.append({"measure": f"probe p50 / p99 / max ms, {SLOW_CLIENTS} slow readers",
                 "classbox": f"{sc['probe_p50_ms']:.1f} / {sc['probe_p99_ms']:.1f} / {sc['probe_max_ms']:.1f}",
                 "nginx": f"{sn['probe_p50_ms']:.1f} / {sn['probe_p99_ms']:.1f} / {sn['probe_max_ms']:.1f}",
                 "ratio": f"{ratio(sc['probe_p99_ms'], sn['probe_p99_ms']):.1f} (p99)",
                 "target": f"p99 < {TARGET_PROBE_P99_MS:.0f} ms",
                 "result": ("PASS" if ok else "FAIL")
                 + ("" if not sc["probe_failures"] else f" ({len(sc['probe_failures'])} probes failed)")})
    ok = sc["slow_receiving_last_s"] == SLOW_CLIENTS and sc["slow_status_206"] == SLOW_CLIENTS
    rows.append({"measure": f"slow readers receiving in the last {SLOW_RECENT:.0f} s",
                 "classbox": f"{sc['slow_receiving_last_s']}/{SLOW_CLIENTS}",
                 "nginx": f"{sn['slow_receiving_last_s']}/{SLOW_CLIENTS}",
                 "ratio": "", "target": f"all {SLOW_CLIENTS}",
                 "result": "PASS" if ok else "FAIL"})
    return rows


def markdown(rows: list[dict[str, str]], reference: str = "nginx") -> str:
    """Render rows as a Markdown table; `reference` names the column (and row key) of the reference."""
    cols = ["measure", "classbox", reference, "ratio", "target", "result"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * 3 + ["---", "---"]) + "|"]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def command_line(script_file: str, argv: list[str] | None) -> str:
    """Return the command that reproduces a benchmark run, for its report."""
    script = os.path.relpath(Path(script_file).resolve()) if argv is None else f"bench/{Path(script_file).name}"
    return shlex.join(["python", script, *(sys.argv[1:] if argv is None else argv)])


def find_tools(names: tuple[str, ...] = ("nginx", "wrk", "curl")) -> tuple[dict[str, str], list[str]]:
    """Locate programs (also in /usr/sbin and /sbin); return (found paths, missing names)."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}")
                                          if os.access(p, os.X_OK)), None)
        if path:
            found[name] = path
        else:
            missing.append(name)
    return found, missing


def versions(tools: dict[str, str]) -> dict[str, str]:
    """Return the versions of the servers and clients, as far as they tell."""
    out: dict[str, str] = {}
    for name in ("classbox", "waitress", "flask"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "?"
    for name, flag in (("nginx", "-v"), ("wrk", "-v"), ("curl", "--version")):
        try:
            proc = subprocess.run([tools[name], flag], capture_output=True, text=True, timeout=10)
            text = (proc.stdout + proc.stderr).strip()
            out[name] = text.splitlines()[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired):
            out[name] = "?"
    return out


def classbox_command(arg: str | None) -> list[str]:
    """Return the command that runs classbox: --classbox-cmd, else `python -m classbox` with this Python."""
    if arg:
        return shlex.split(arg)
    return [sys.executable, "-m", "classbox"]


def add_common_options(p: argparse.ArgumentParser, work_help: str) -> None:
    """Add the options every benchmark here takes: --json, --work and --classbox-cmd."""
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    p.add_argument("--work", type=Path, default=HERE / "out", help=f"{work_help} [bench/out]")
    p.add_argument("--classbox-cmd", help="command that runs classbox, e.g. 'classbox' "
                   "[default: this Python's -m classbox]")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=200, help="size of the test file in MiB [200]")
    p.add_argument("--duration", type=int, default=10, help="seconds per load phase [10]")
    add_common_options(p, "work dir for the test file and logs, reused between runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every measure against both servers and print the table."""
    args = parse_args(argv)
    command = command_line(__file__, argv)
    tools, missing = find_tools()
    if not args.classbox_cmd and importlib.util.find_spec("classbox") is None:
        missing.append("classbox (pip install -e . in the repository)")
    if missing:
        print(f"missing: {', '.join(missing)}\n  install the tools with: apt-get install nginx wrk curl",
              file=sys.stderr)
        return 2
    if args.size_mb < 2 or args.duration < 1:
        print("--size-mb must be ≥ 2 and --duration ≥ 1", file=sys.stderr)
        return 2
    size = args.size_mb * MiB
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    children = Children()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-", dir=work))
    results: dict[str, Any] = {"classbox": {}, "nginx": {}}
    try:
        data, sha = ensure_blob(work, size)
        blob = data / "blobs" / "sha256" / sha[:2] / sha
        with open(blob, "rb") as f:  # into the page cache, so neither server pays for the disk
            while f.read(8 * MiB):
                pass
        lua = tmp / "ranges.lua"
        lua.write_text(LUA)
        servers = [start_classbox(children, classbox_command(args.classbox_cmd), data, sha, work),
                   start_nginx(children, tools["nginx"], blob.parent, sha, tmp)]
        for s in servers:
            status, hdrs, body = http_get(s.port, s.path, {"Range": "bytes=1000-1999"})
            if status != 206 or len(body) != 1000 or hdrs.get("content-range") != f"bytes 1000-1999/{size}":
                raise RuntimeError(f"{s.name} answered a range wrongly: {status} {hdrs}")
            with open(blob, "rb") as f:
                f.seek(1000)
                if f.read(1000) != body:
                    raise RuntimeError(f"{s.name} sent the wrong bytes for a range")

        log("1/4 whole-file GET, 3 runs each (alternating)")
        speeds: dict[str, list[float]] = {s.name: [] for s in servers}
        for _ in range(3):
            for s in servers:
                speeds[s.name].append(whole_file(children, tools["curl"], s, size))
                log(f"    {s.name}: {speeds[s.name][-1]:.0f} MiB/s")
        for s in servers:
            results[s.name]["whole_runs_mib_s"] = speeds[s.name]
            results[s.name]["whole_mib_s"] = statistics.median(speeds[s.name])

        log(f"2/4 1 MiB aligned ranges, 8 connections, {args.duration} s each")
        for s in servers:
            meter = CpuMeter(s.proc.pid)
            r = run_wrk(children, tools["wrk"], lua, s, size, MiB, True, 8, 2, args.duration)
            r["cpu"] = meter.result()
            results[s.name]["ranges_1m"] = r
            log(f"    {s.name}: {r['rps']:.0f} req/s, {r['mib_s']:.0f} MiB/s, p99 {r['p99_ms']:.1f} ms, "
                f"{r['errors']} errors; {cpu_note(r['cpu'])}")

        log(f"3/4 64 KiB ranges at random offsets, 4 connections, {args.duration} s each")
        for s in servers:
            meter = CpuMeter(s.proc.pid)
            r = run_wrk(children, tools["wrk"], lua, s, size, 64 * KiB, False, 4, 2, args.duration)
            r["cpu"] = meter.result()
            results[s.name]["ranges_64k"] = r
            log(f"    {s.name}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                f"{r['errors']} errors; {cpu_note(r['cpu'])}")

        log(f"4/4 {PROBES} probes over {args.duration} s while {SLOW_CLIENTS} slow clients read at "
            f"{SLOW_RATE // KiB} KiB/s each")
        spacing = args.duration / PROBES
        for s in servers:
            meter = CpuMeter(s.proc.pid)
            r = slow_phase(s, spacing, SLOW_WARMUP + args.duration + PROBES * PROBE_TIMEOUT)
            r["cpu"] = meter.result()
            results[s.name]["slow"] = r
            log(f"    {s.name}: probe p50 {r['probe_p50_ms']:.1f} / p99 {r['probe_p99_ms']:.1f} / max "
                f"{r['probe_max_ms']:.1f} ms; {r['slow_receiving_last_s']}/{SLOW_CLIENTS} slow clients "
                f"received in the last {SLOW_RECENT:.0f} s ({r['slow_status_206']} got 206, median "
                f"{r['slow_rate_median_kib_s']:.0f} KiB/s, min {r['slow_rate_min_kib_s']:.0f} KiB/s); "
                f"{cpu_note(r['cpu'])}")
            for msg in r["probe_failures"][:5]:
                log(f"    {s.name}: {msg}")
        for s in servers:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited during the run (code {s.proc.returncode})")
    except KeyboardInterrupt:
        log("interrupted; stopping the servers")
        return 130
    finally:
        children.stop_all()
        if (tmp / "error.log").exists():
            shutil.copyfile(tmp / "error.log", work / "nginx-error.log")
        shutil.rmtree(tmp, ignore_errors=True)

    rows = build_rows(results)
    table = markdown(rows)
    meta = {
        "command": command,
        "size_bytes": size,
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "versions": versions(tools),
    }
    print()
    print(f"Loopback, {args.size_mb} MiB file of random bytes, {os.cpu_count()} CPUs, "
          f"{args.duration} s per load phase; wrk -t2; nginx 1 process with sendfile; "
          "classbox waitress 32 threads (the default).")
    print()
    print(table)
    print()
    print(f"Command: `{command}`")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results, "rows": rows}, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0 if all(r["result"] in ("PASS", "—") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
