#!/usr/bin/env python3
"""Load the box like a busy school for --minutes: 30 TVs streaming, 30 phones, a sync at its cap, the admin page.

Everything runs on 127.0.0.1 against a `classbox serve` this script starts on a fresh data directory
in a temp folder: set up from a provisioning file (admin password hash), a channel of 6 lessons of
random bytes (60–100 MiB each; the box checks hashes, not codecs) built with `classbox channel build`
and installed with `classbox channel add`, and 10 rooms added through the control API.
A second, larger channel waits on a mirror served by nginx; the box syncs it during the whole load.

Phases, in one run:
  A. reference: nginx serves the same video files to 30 TVs reading 1 MiB ranges paced to 3 Mbit/s
     each, while a probe asks for a small static file once a second (--ref-seconds);
  B. the same 30 TVs and probe against classbox (GET /media/<sha256>, probe GET /-/health);
  C. the load (--minutes): POST /api/v1/sync starts the sync (CLASSBOX_SYNC_MAX_RATE, 2M by default);
     the 30 TVs stream as in B, each also long-polls its room's state like the TV page and reports its
     position every 5 s while the room plays; 30 phones (3 per room) send play/pause/seek every 2–6 s
     and check each answer; an admin session fetches /admin/panels every 5 s; the probe asks for
     /-/health once a second (from a process of its own, so the clients' GIL is not in its figure).
     The server's RSS, CPU, threads, connections, requests in flight and the sync's progress are sampled
     every 5 s. With --phones-poll the phones also long-poll their room, as the remote page does.

Reported: errors by kind (target 0), probe p50/p99/max against nginx's, ranges delivered against those
due, command and admin latency, sync rate against the cap, RSS after warm-up against its max and the
end (target ≤ 10 % growth), server CPU, threads and connections (target: waitress never stops accepting
them), and how long the server takes to stop with the sync running. Uses the standard library, psutil and nginx.
Every loop is bounded in count and time; every child process is killed on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench  # noqa: E402  (same folder: process handling, logging, nginx and classbox start-up)
from serve_bench import (  # noqa: E402
    Children,
    CpuMeter,
    NoDelayConnection,
    Server,
    launch_nginx,
    log,
    percentile,
    ratio,
    start_classbox,
    stop,
)
from sync_bench import child_env, run_ok, warm  # noqa: E402

HERE = Path(__file__).resolve().parent
MiB = 1024 * 1024

TVS = 30
ROOMS = 10
PHONES_PER_ROOM = 3
LESSONS = 6
VIDEO_MIB = (60, 100)  # each lesson's video, a whole number of MiB so that every range is 1 MiB
TV_BITS_PER_S = 3_000_000
RANGE = MiB
RANGE_EVERY = RANGE * 8 / TV_BITS_PER_S  # 2.8 s: one 1 MiB range per this many seconds is 3 Mbit/s
BEHIND_SLOTS = 10  # a TV this many ranges behind (28 s, a browser's buffer) gives them up as stalled
REPORT_EVERY = 5.0  # the TV page reports its position this often while the room plays
POLL_WAIT = 25  # seconds a TV asks the box to hold its long poll
PHONE_GAP = (2.0, 6.0)  # seconds between a phone's commands
ADMIN_EVERY = 5.0
PROBE_EVERY = 1.0
SAMPLE_EVERY = 5.0
WARMUP_S = 60.0  # RSS is compared with its value this long after the load starts (a third of shorter runs)
SYNC_SPARE = 1.15  # the sync channel holds this many times what the cap lets through during the load
SYNC_FILE_MIB = 96  # the sync channel's files are at most this big, one lesson each

MEDIA_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0
POLL_TIMEOUT = POLL_WAIT + 10.0
PROBE_TIMEOUT = 5.0
STOP_GRACE = 60.0  # seconds classbox gets after SIGTERM before SIGKILL (systemd gives it 40: TimeoutStopSec)
MAX_ERRORS = 500  # per client: one that keeps failing stops rather than spin
ERROR_SAMPLES = 40

TARGET_DELIVERED = 0.98
TARGET_RSS_GROWTH = 0.10
TARGET_SYNC = 0.90

NGINX_CONF = serve_bench.NGINX_HEAD + """\
    server {{  # the sync channel's mirror; the box caps its own rate
        listen 127.0.0.1:{mirror_port};
        root {mirror};
    }}
    server {{  # the reference: the box's own video files, and a small file for the probe
        listen 127.0.0.1:{media_port};
        location ~ "^/media/([0-9a-f]{{2}})([0-9a-f]{{62}})$" {{
            alias {blobs}/$1/$1$2;
        }}
        location = /-/health {{
            default_type application/json;
            alias {tmp}/health.json;
        }}
    }}
}}
"""


# --------------------------------------------------------------------------- HTTP clients


class Tally:
    """Errors by kind and the first few messages, shared by every client thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.kinds: Counter[str] = Counter()
        self.samples: list[str] = []

    def error(self, kind: str, detail: str = "") -> None:
        """Count one error of a kind such as 'tv media: HTTP 500'."""
        with self.lock:
            self.kinds[kind] += 1
            if len(self.samples) < ERROR_SAMPLES:
                self.samples.append(f"{time.monotonic() - self.t0:7.1f} s  {kind}  {detail}"[:300])

    def total(self) -> int:
        """Return how many errors there were."""
        with self.lock:
            return sum(self.kinds.values())


def failure(exc: BaseException) -> str:
    """Name an exception for the error tally: its class, as connection errors differ only in that."""
    return type(exc).__name__



class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1 with its own cookies, like one browser tab."""

    def __init__(self, port: int, timeout: float) -> None:
        self.conn = NoDelayConnection("127.0.0.1", port, timeout=timeout)
        self.cookies: dict[str, str] = {}
        self.reconnects = 0

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send one request, return (status, headers, body); send again once if a kept-alive connection was gone."""
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            reused = self.conn.sock is not None
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A browser sends again when the server closed a connection it kept alive; commands carry n,
                # so sending one again is safe. On a fresh connection the same error is the server's fault.
                self.conn.close()
                if attempt == 2 or not reused:
                    raise
                self.reconnects += 1
            except (OSError, http.client.HTTPException):
                self.conn.close()
                raise
        for cookie in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in cookie.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)
        return resp.status, resp.headers, data

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """Send a JSON request, return (status, JSON object answered)."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, _, raw = self.request(method, path, data, headers)
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"error": raw[:200].decode("utf-8", "replace")}
        return status, answer if isinstance(answer, dict) else {"answer": answer}

    def abort(self) -> None:
        """Wake a thread blocked on this connection (a parked long poll) by shutting the socket down."""
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


# --------------------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Video:
    """One lesson's video as installed in the box's store."""

    lesson: str
    sha256: str
    size: int
    path: Path


@dataclass
class Follower:
    """A page following its room with a long poll (the TV page, or the remote with --phones-poll)."""

    port: int
    room: str
    screen: str
    kind: str
    tally: Tally
    stop: threading.Event
    lock: threading.Lock = field(default_factory=threading.Lock)
    state: dict[str, Any] | None = None
    state_at: float = 0.0
    polls: int = 0
    retry_after: int = 0  # answers that said every parking place was taken: ask again in a second
    conn: Conn | None = None

    def take(self, state: dict[str, Any]) -> None:
        """Keep a state the box sent if it is newer than the one held."""
        with self.lock:
            if self.state is None or state["version"] >= self.state["version"]:
                self.state, self.state_at = state, time.monotonic()

    def latest(self) -> tuple[dict[str, Any] | None, float]:
        """Return the newest state and when it came."""
        with self.lock:
            return self.state, self.state_at

    def run(self, deadline: float) -> None:
        """Long-poll the room's state like the pages do, honouring retry_after, until stopped or deadline."""
        conn = self.conn = Conn(self.port, POLL_TIMEOUT)
        base = f"/api/v1/rooms/{quote(self.room)}/state?kind={self.kind}&screen={self.screen}"
        version: int | None = None
        failures = 0
        try:
            for _ in range(int((deadline - time.monotonic()) * 2) + 10):  # ≤ 2 answers a second, with retries
                if self.stop.is_set() or time.monotonic() >= deadline or failures >= MAX_ERRORS:
                    break
                path = base if version is None else f"{base}&after={version}&wait={POLL_WAIT}"
                try:
                    status, body = conn.json("GET", path)
                except (OSError, http.client.HTTPException) as exc:
                    if self.stop.is_set():
                        break
                    failures += 1
                    self.tally.error(f"{self.kind} poll: {failure(exc)}", f"{self.screen}: {exc!r}")
                    self.stop.wait(1.0)
                    continue
                self.polls += 1
                if status != 200 or not isinstance(body.get("version"), int):
                    failures += 1
                    self.tally.error(f"{self.kind} poll: HTTP {status}", f"{self.screen}: {body}")
                    self.stop.wait(1.0)
                    continue
                version = body["version"]
                self.take(body)
                retry = body.get("retry_after") or 0
                if retry > 0:
                    self.retry_after += 1
                    self.stop.wait(min(float(retry), 5.0))
        finally:
            conn.close()

    def abort(self) -> None:
        """Wake the poll parked at the box, at the end."""
        if self.conn is not None:
            self.conn.abort()


@dataclass
class Tv:
    """A TV: reads its room's video in 1 MiB ranges paced to 3 Mbit/s; with a follower, long-polls and reports too."""

    index: int
    port: int
    video: Video
    room: str
    tally: Tally
    stop: threading.Event
    offset: int
    delay: float  # seconds before the first range, so that the 30 TVs do not ask in step
    follower: Follower | None  # the TV page's long poll; None: media only
    issued: int = 0
    received: int = 0
    skipped: int = 0  # ranges given up because the TV fell BEHIND_SLOTS behind
    pending: int = 0  # ranges due before the end but not asked for when it came
    range_ms: list[float] = field(default_factory=list)
    reports: int = 0
    reconnects: int = 0

    @property
    def base(self) -> str:
        return f"/api/v1/rooms/{quote(self.room)}"

    @property
    def screen(self) -> str:
        return f"tv-{self.index + 1}"

    def stream(self, start: float, deadline: float) -> None:
        """Ask for the next 1 MiB range every RANGE_EVERY s (at once when late) until deadline; check every byte."""
        conn = Conn(self.port, MEDIA_TIMEOUT)  # reports go on it too: a browser reuses the idle connection
        fd = os.open(self.video.path, os.O_RDONLY)
        due = start + self.delay
        last_report = time.monotonic()
        failures = 0
        try:
            for _ in range(int((deadline - start) / RANGE_EVERY) + 2):
                if due >= deadline or failures >= MAX_ERRORS or self.stop.wait(max(0.0, due - time.monotonic())):
                    break
                now = time.monotonic()
                if now - due > BEHIND_SLOTS * RANGE_EVERY:  # stalled for good: a browser would start again here
                    lost = int((now - due) / RANGE_EVERY)
                    self.skipped += lost
                    due += lost * RANGE_EVERY
                first, last = self.offset, self.offset + RANGE - 1
                self.issued += 1
                t0 = time.perf_counter()
                try:
                    status, headers, body = conn.request("GET", f"/media/{self.video.sha256}",
                                                         headers={"Range": f"bytes={first}-{last}"})
                except (OSError, http.client.HTTPException) as exc:
                    failures += 1
                    self.tally.error(f"tv media: {failure(exc)}", f"{self.screen} {first}-{last}: {exc!r}")
                    due += RANGE_EVERY
                    continue
                ms = (time.perf_counter() - t0) * 1000
                want = f"bytes {first}-{last}/{self.video.size}"
                if status != 206 or headers.get("Content-Range") != want:
                    failures += 1
                    self.tally.error(f"tv media: HTTP {status}", f"{self.screen}: {headers.get('Content-Range')}")
                elif body != os.pread(fd, RANGE, first):
                    failures += 1
                    self.tally.error("tv media: wrong bytes", f"{self.screen} {first}-{last}: {len(body)} bytes")
                else:
                    self.received += 1
                    self.range_ms.append(ms)
                self.offset = last + 1 if last + 1 < self.video.size else 0
                due += RANGE_EVERY
                if self.follower and time.monotonic() - last_report >= REPORT_EVERY:
                    last_report = time.monotonic()
                    self.report(conn, self.follower)
            if due < deadline and not self.stop.is_set():
                self.pending += int((deadline - due) / RANGE_EVERY) + 1
        finally:
            os.close(fd)
            self.reconnects += conn.reconnects
            conn.close()

    def report(self, conn: Conn, follower: Follower) -> None:
        """Tell the box where the video is, as the TV page does every 5 s while the room plays."""
        state, at = follower.latest()
        if not state or not state.get("playing") or not state.get("lesson"):
            return
        position = round(float(state["position"]) + time.monotonic() - at, 3)
        try:
            status, body = conn.json("POST", f"{self.base}/report", {"lesson": state["lesson"], "position": position})
        except (OSError, http.client.HTTPException) as exc:
            self.tally.error(f"tv report: {failure(exc)}", f"{self.screen}: {exc!r}")
            return
        if status != 200 or not isinstance(body.get("version"), int):
            self.tally.error(f"tv report: HTTP {status}", f"{self.screen}: {body}")
            return
        self.reports += 1
        follower.take(body)


@dataclass
class Phone:
    """A teacher's phone paired with a room: sends play/pause/seek every 2–6 s and checks each answer."""

    index: int
    port: int
    room: str
    tally: Tally
    stop: threading.Event
    rng: random.Random
    follower: Follower | None = None  # with --phones-poll: the remote page's long poll
    conn: Conn = field(init=False)
    n: int = 0
    sent: int = 0
    ok: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conn = Conn(self.port, HTTP_TIMEOUT)

    @property
    def base(self) -> str:
        return f"/api/v1/rooms/{quote(self.room)}"

    def pair(self) -> None:
        """Read the room code the TV shows and pair with it; raise if the box refuses."""
        status, body = self.conn.json("GET", f"{self.base}/pairing")
        if status != 200 or "code" not in body:
            raise RuntimeError(f"{self.room}: pairing answered {status}: {body}")
        status, body = self.conn.json("POST", f"{self.base}/pair", {"code": body["code"]})
        if status != 200 or "classbox_remote" not in self.conn.cookies:
            raise RuntimeError(f"{self.room}: pair answered {status}: {body}")

    def send(self, cmd: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Send one command; return the answer if it is what the command asked for, else count an error."""
        self.n += 1
        self.sent += 1
        t0 = time.perf_counter()
        try:
            status, body = self.conn.json("POST", f"{self.base}/commands",
                                          {"client": f"load-phone-{self.index}", "n": self.n, "cmd": cmd,
                                           "args": args})
        except (OSError, http.client.HTTPException) as exc:
            self.tally.error(f"phone {cmd}: {failure(exc)}", f"{self.room}: {exc!r}")
            return None
        ms = (time.perf_counter() - t0) * 1000
        if status != 200 or not isinstance(body.get("version"), int):
            self.tally.error(f"phone {cmd}: HTTP {status}", f"{self.room}: {body}")
            return None
        wrong = ((cmd == "play" and body.get("playing") is not True)
                 or (cmd == "pause" and body.get("playing") is not False)
                 or (cmd == "seek" and not (isinstance(body.get("position"), int | float) and body["position"] >= 0))
                 or (cmd == "open" and body.get("lesson") != args.get("lesson")))
        if wrong:
            self.tally.error(f"phone {cmd}: wrong answer", f"{self.room}: {body}")
            return None
        self.ok += 1
        self.latency_ms.append(ms)
        return body

    def run(self, deadline: float) -> None:
        """Send commands with random gaps until stopped or deadline."""
        try:
            for _ in range(int((deadline - time.monotonic()) / PHONE_GAP[0]) + 1):
                if self.stop.wait(self.rng.uniform(*PHONE_GAP)) or time.monotonic() >= deadline:
                    break
                cmd = self.rng.choices(("play", "pause", "seek"), weights=(2, 2, 1))[0]
                self.send(cmd, {"by": self.rng.choice((-10, 10))} if cmd == "seek" else {})
        finally:
            self.conn.close()


@dataclass
class Admin:
    """An admin's browser on the dashboard, which fetches /admin/panels every 5 s."""

    port: int
    password: str
    tally: Tally
    stop: threading.Event
    conn: Conn = field(init=False)
    latency_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conn = Conn(self.port, HTTP_TIMEOUT)

    def log_in(self) -> None:
        """Log in with the form's token and cookie, as a browser does; raise if the box refuses."""
        status, _, page = self.conn.request("GET", "/admin/login")
        m = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        if status != 200 or not m:
            raise RuntimeError(f"/admin/login answered {status} without a form token")
        form = urllib.parse.urlencode({"name": "admin", "password": self.password, "csrf_token": m.group(1).decode(),
                                       "next": ""}).encode()
        status, headers, _ = self.conn.request("POST", "/admin/login", form,
                                               {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302 or "classbox_session" not in self.conn.cookies:
            raise RuntimeError(f"admin login answered {status} (Location {headers.get('Location')})")
        status, _, _ = self.conn.request("GET", "/admin")
        if status != 200:
            raise RuntimeError(f"/admin answered {status} after login")

    def run(self, deadline: float) -> None:
        """Fetch the dashboard's panels every ADMIN_EVERY s until stopped or deadline."""
        due = time.monotonic()
        try:
            for _ in range(int((deadline - due) / ADMIN_EVERY) + 1):
                if self.stop.wait(max(0.0, due - time.monotonic())) or time.monotonic() >= deadline:
                    break
                due += ADMIN_EVERY
                t0 = time.perf_counter()
                try:
                    status, _, body = self.conn.request("GET", "/admin/panels")
                except (OSError, http.client.HTTPException) as exc:
                    self.tally.error(f"admin panels: {failure(exc)}", repr(exc))
                    continue
                if status != 200 or not body:
                    self.tally.error(f"admin panels: HTTP {status}", body[:120].decode("utf-8", "replace"))
                    continue
                self.latency_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            self.conn.close()


def probe_loop(port: int, path: str, seconds: float, out: Connection) -> None:
    """In a process of its own: GET path on a fresh connection every PROBE_EVERY s; send back (t, ms, error)."""
    results: list[tuple[float, float, str | None]] = []
    t0 = time.monotonic()
    for i in range(int(seconds / PROBE_EVERY) + 1):
        due = t0 + i * PROBE_EVERY
        if due >= t0 + seconds:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        start = time.perf_counter()
        error: str | None = None
        try:
            status, _, body = serve_bench.http_get(port, path, timeout=PROBE_TIMEOUT)
            if status != 200 or not body:
                error = f"HTTP {status}"
        except (OSError, ValueError, IndexError) as exc:
            error = failure(exc)
        results.append((round(due - t0, 3), (time.perf_counter() - start) * 1000, error))
    out.send(results)
    out.close()


class Probe:
    """The probe process: started at once, asked for its results at the end, killed if it outlives that."""

    def __init__(self, port: int, path: str, seconds: float) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process full of threads
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=probe_loop, args=(port, path, seconds, send), daemon=True)
        self.proc.start()
        send.close()
        self.seconds = seconds

    def results(self, tally: Tally) -> list[float]:
        """Wait for the probe's results; count its errors in tally; return the latencies in ms."""
        got: list[tuple[float, float, str | None]] = []
        if self.recv.poll(PROBE_TIMEOUT + 30):
            got = self.recv.recv()
        else:
            tally.error("probe: no results", "the probe process sent nothing")
        for t, ms, error in got:
            if error:
                tally.error(f"probe: {error}", f"at {t:.0f} s after {ms:.0f} ms")
        self.kill()
        return [ms for _, ms, _ in got]

    def kill(self) -> None:
        """Stop the probe process if it still runs."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)


# --------------------------------------------------------------------------- sampling


def parse_metrics(text: str) -> dict[str, float]:
    """Return the samples of a Prometheus text exposition by name with labels, e.g. 'x{code="5xx"}'."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


class Sampler:
    """Every SAMPLE_EVERY s: the server's RSS, CPU, threads; requests in flight, parked polls, the sync."""

    def __init__(self, pid: int, port: int, tally: Tally, stop_evt: threading.Event, deadline: float) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.me = psutil.Process()
        self.port = port
        self.conn = Conn(port, HTTP_TIMEOUT)
        self.tally = tally
        self.stop_evt = stop_evt
        self.deadline = deadline
        self.t0 = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        import psutil

        psutil.cpu_percent(None)  # starts the machine's CPU measure
        self.thread.start()
        return self

    def sample(self) -> None:
        """Take one sample."""
        import psutil

        t = self.proc.cpu_times()
        s: dict[str, Any] = {
            "t": round(time.monotonic() - self.t0, 2), "rss": self.proc.memory_info().rss,
            "cpu_s": t.user + t.system, "threads": self.proc.num_threads(),
            "client_cpu_s": sum(self.me.cpu_times()[:2]), "machine_cpu_pct": psutil.cpu_percent(None),
            "load1": os.getloadavg()[0],
        }
        s["connections"] = sum(1 for c in self.proc.net_connections(kind="tcp")
                               if c.status == "ESTABLISHED" and c.laddr and c.laddr[1] == self.port)
        try:
            status, _, raw = self.conn.request("GET", "/-/metrics")
            if status == 200:
                m = parse_metrics(raw.decode())
                s["in_flight"] = m.get("classbox_http_requests_in_flight")
                s["waiting"] = m.get("classbox_screens_waiting")
            else:
                self.tally.error(f"sampler metrics: HTTP {status}")
            status, body = self.conn.json("GET", "/api/v1/sync")
            if status == 200:
                s["sync_state"], s["sync_done"] = body.get("state"), body.get("bytes_done", 0)
            else:
                self.tally.error(f"sampler sync: HTTP {status}")
        except (OSError, http.client.HTTPException) as exc:
            self.tally.error(f"sampler: {failure(exc)}", repr(exc))
        self.samples.append(s)

    def _run(self) -> None:
        import psutil

        due = self.t0
        try:
            for _ in range(int((self.deadline - self.t0) / SAMPLE_EVERY) + 2):
                self.sample()
                due += SAMPLE_EVERY
                if due > self.deadline or self.stop_evt.wait(max(0.0, due - time.monotonic())):
                    break
        except psutil.Error as exc:
            self.tally.error("sampler: server gone", repr(exc))

    def finish(self) -> list[dict[str, Any]]:
        """Wait for the sampler, take a last sample, and return them all."""
        self.thread.join(timeout=HTTP_TIMEOUT * 2 + 5)
        try:
            self.sample()
        except Exception as exc:  # noqa: BLE001  (a last sample is a nicety: the server may be gone)
            log(f"last sample failed: {exc!r}")
        self.conn.close()
        return self.samples


# --------------------------------------------------------------------------- content and servers


@dataclass(frozen=True)
class Built:
    """A channel built into a mirror: its id, the mirror root, and its lessons' videos (sha256, size)."""

    channel: str
    mirror: Path
    videos: list[tuple[str, str, int]]  # (lesson id, sha256, size)


def build_channel(children: Children, cmd: list[str], tmp: Path, channel_id: str, sizes: list[int],
                  key: Path) -> Built:
    """Write one lesson per size (random bytes as a video) and build the signed channel into tmp/mirror-<id>."""
    src, mirror = tmp / f"src-{channel_id}", tmp / f"mirror-{channel_id}"
    src.mkdir(parents=True)
    (src / "channel.json").write_text(json.dumps({"id": channel_id, "title": channel_id}))
    for i, n in enumerate(sizes, 1):
        folder = src / f"lesson{i:02d}"
        folder.mkdir()
        lesson = {"id": f"{channel_id}-{i}", "title": f"{channel_id} 第{i}课", "section": "课程教学",
                  "path": {"grade": "三年级", "subject": "数学"}, "assets": [{"role": "video", "file": "v.mp4"}]}
        (folder / "lesson.json").write_text(json.dumps(lesson, ensure_ascii=False))
        with open(folder / "v.mp4", "wb") as f:
            for _ in range(n // MiB):
                f.write(os.urandom(MiB))
    total = sum(sizes)
    run_ok(children, [*cmd, "channel", "build", str(src), "--key", str(key), "--out", str(mirror)],
           120 + total / (5 * MiB), f"channel build {channel_id}", child_env())
    shutil.rmtree(src)
    manifest = json.loads((mirror / "channels" / channel_id / "manifest.json").read_text())
    videos = [(lesson["id"], a["sha256"], int(a["size"])) for lesson in manifest["lessons"] for a in lesson["assets"]]
    if sorted(n for _, _, n in videos) != sorted(sizes):
        raise RuntimeError(f"the built manifest of {channel_id} holds {videos}, expected sizes {sizes}")
    return Built(channel_id, mirror, videos)


def start_nginx(children: Children, nginx: str, tmp: Path, mirror: Path, mirror_probe: str, blobs: Path,
                health: bytes) -> tuple[Server, int]:
    """Start one nginx: the sync mirror on one port, the box's videos and a probe file on another."""
    (tmp / "health.json").write_bytes(health)
    proc, (mirror_port, media_port) = launch_nginx(
        children, nginx, tmp,
        lambda mirror_port, media_port: NGINX_CONF.format(tmp=tmp, mirror_port=mirror_port, media_port=media_port,
                                                          mirror=mirror, blobs=blobs),
        [mirror_probe, "/-/health"])
    log(f"nginx: :{mirror_port} the mirror, :{media_port} the videos")
    return Server("nginx", media_port, proc, "/-/health"), mirror_port


def once(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """Send one JSON request on a connection of its own."""
    conn = Conn(port, HTTP_TIMEOUT)
    try:
        return conn.json(method, path, body)
    finally:
        conn.close()


def control(data: Path, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """Ask the running server for an action through the control API, with the token from serve.json."""
    served = json.loads((data / "serve.json").read_text())
    conn = Conn(int(served["port"]), 60)
    try:
        status, _, raw = conn.request("POST", f"/api/v1/control/{action}", json.dumps(body).encode(),
                                      {"Content-Type": "application/json", "X-Classbox-Control": served["token"]})
    finally:
        conn.close()
    if status != 200:
        raise RuntimeError(f"control {action} answered {status}: {raw[:300]!r}")
    return json.loads(raw)  # type: ignore[no-any-return]


def box_environment(tmp: Path, password_hash: str, sync_rate: str) -> None:
    """Set the environment `classbox serve` starts with: the caller's CLASSBOX_THREADS, nothing else of theirs."""
    for name in [k for k in os.environ if k.startswith("CLASSBOX_") and k != "CLASSBOX_THREADS"]:
        del os.environ[name]
    provision = tmp / "classbox.toml"
    provision.write_text(f'school = "压力测试小学"\nbox_name = "load-bench"\ntimezone = "Asia/Shanghai"\n'
                         f'admin_password_hash = "{password_hash}"\n')
    (tmp / "usb").mkdir()
    os.environ.update({
        "CLASSBOX_PROVISION": str(provision),
        "CLASSBOX_SYNC_MAX_RATE": sync_rate,
        "CLASSBOX_USB_ROOTS": str(tmp / "usb"),  # an empty folder: the dashboard scans no real drives
        "CLASSBOX_ZEROCONF_INTERFACES": "off",
    })


# --------------------------------------------------------------------------- phases


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    seconds: float
    tvs: list[Tv]
    probe_ms: list[float]
    cpu: dict[str, float]
    errors: dict[str, int]

    def media(self) -> dict[str, Any]:
        """Ranges received against those due, the rate delivered and the ranges' latency."""
        due = sum(tv.issued + tv.skipped + tv.pending for tv in self.tvs)
        received = sum(tv.received for tv in self.tvs)
        ms = [x for tv in self.tvs for x in tv.range_ms]
        return {"ranges_due": due, "ranges_received": received, "delivered_ratio": received / due if due else 0.0,
                "mbit_s": received * RANGE * 8 / self.seconds / 1e6, "asked_mbit_s": TVS * TV_BITS_PER_S / 1e6,
                "skipped": sum(tv.skipped for tv in self.tvs), **spread("range", ms, (50, 99))}



def spread(name: str, values: list[float], pcts: tuple[int, ...]) -> dict[str, Any]:
    """Return {name_n, name_p50_ms, …, name_max_ms} of latencies in ms."""
    out: dict[str, Any] = {f"{name}_n": len(values), f"{name}_max_ms": max(values, default=float("nan"))}
    for p in pcts:
        out[f"{name}_p{p}_ms"] = percentile(values, p)
    return out


def make_tvs(port: int, videos: list[Video], rooms: list[str], tally: Tally, stop_evt: threading.Event,
             follow: bool, seed: int) -> list[Tv]:
    """Return the 30 TVs, 3 per room, each on its room's lesson, at a random place, starting in turn."""
    rng = random.Random(seed)
    tvs = []
    for i in range(TVS):
        room = i % ROOMS
        video = videos[room % len(videos)]
        tvs.append(Tv(i, port, video, rooms[room], tally, stop_evt, rng.randrange(video.size // RANGE) * RANGE,
                      RANGE_EVERY * i / TVS,
                      Follower(port, rooms[room], f"tv-{i + 1}", "tv", tally, stop_evt) if follow else None))
    return tvs


def media_phase(name: str, server: Server, videos: list[Video], rooms: list[str], seconds: float,
                seed: int) -> Phase:
    """Run the 30 paced TVs (media only) and the probe against one server for seconds."""
    tally, stop_evt = Tally(), threading.Event()
    tvs = make_tvs(server.port, videos, rooms, tally, stop_evt, False, seed)
    probe = Probe(server.port, "/-/health", seconds)
    meter = CpuMeter(server.proc.pid)
    start = time.monotonic()
    deadline = start + seconds
    threads = [threading.Thread(target=tv.stream, args=(start, deadline), name=f"tv-{tv.index}", daemon=True)
               for tv in tvs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, deadline + MEDIA_TIMEOUT + 5 - time.monotonic()))
        cpu = meter.result()
        probe_ms = probe.results(tally)
    finally:
        stop_evt.set()
        probe.kill()
    if any(t.is_alive() for t in threads):
        tally.error("tv: still running after the phase")
    phase = Phase(name, time.monotonic() - start, tvs, probe_ms, cpu, dict(tally.kinds))
    m = phase.media()
    log(f"    {name}: {m['ranges_received']}/{m['ranges_due']} ranges ({m['mbit_s']:.1f} Mbit/s), range p50 "
        f"{m['range_p50_ms']:.1f} / p99 {m['range_p99_ms']:.1f} ms; probe p50 {percentile(probe_ms, 50):.1f} / "
        f"p99 {percentile(probe_ms, 99):.1f} / max {max(probe_ms, default=float('nan')):.1f} ms; "
        f"{serve_bench.cpu_note(cpu)}; {tally.total()} errors")
    for msg in tally.samples[:5]:
        log(f"      {msg}")
    return phase


# --------------------------------------------------------------------------- report



def ms3(d: dict[str, Any], name: str, pcts: tuple[int, int] = (50, 99)) -> str:
    """Format 'p50 / p99 / max' of a spread."""
    return f"{d[f'{name}_p{pcts[0]}_ms']:.1f} / {d[f'{name}_p{pcts[1]}_ms']:.1f} / {d[f'{name}_max_ms']:.1f}"


def build_rows(res: dict[str, Any]) -> list[dict[str, str]]:
    """Turn the results into table rows: measure, classbox, nginx, ratio, target, result."""
    ref, cbm, load = res["nginx_media"], res["classbox_media"], res["load"]
    mins = load["seconds"] / 60

    def verdict(ok: bool) -> str:
        """PASS or FAIL."""
        return "PASS" if ok else "FAIL"

    def row(measure: str, classbox: str, nginx: str = "—", r: str = "", target: str = "(reported)",
            result: str = "—") -> dict[str, str]:
        """Make one row; a figure with no nginx counterpart has a dash there."""
        return {"measure": measure, "classbox": classbox, "nginx": nginx, "ratio": r, "target": target,
                "result": result}

    errors = load["errors_total"] + cbm["errors_total"]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted({**cbm["errors"], **load["errors"]}.items())) or "none"
    rows = [
        row(f"errors, all clients, media-only phase + {mins:.0f} min load (HTTP status, connection, wrong answer)",
            f"{errors}", f"{ref['errors_total']}", "", "0",
            verdict(errors == 0) + ("" if not errors else f" ({kinds})")),
        row(f"probe p50 / p99 / max ms, 30 TVs only, {ref['seconds']:.0f} s (classbox /-/health, nginx a file)",
            ms3(cbm, "probe"), ms3(ref, "probe"), f"{ratio(cbm['probe_p99_ms'], ref['probe_p99_ms']):.1f} (p99)"),
        row("server CPU per request (1 MiB ranges and probes), ms, 30 TVs only",
            f"{cbm['cpu_ms_per_request']:.2f}", f"{ref['cpu_ms_per_request']:.2f}",
            f"{ratio(cbm['cpu_ms_per_request'], ref['cpu_ms_per_request']):.1f}"),
        row("server CPU, % of one core, 30 TVs only", f"{cbm['cpu_pct']:.1f}", f"{ref['cpu_pct']:.1f}",
            f"{ratio(cbm['cpu_pct'], ref['cpu_pct']):.1f}"),
        row(f"probe p50 / p99 / max ms, full load, {mins:.0f} min ({load['probe_n']} probes; nginx: TVs only)",
            ms3(load, "probe"), ms3(ref, "probe"), f"{ratio(load['probe_p99_ms'], ref['probe_p99_ms']):.1f} (p99)"),
        row("video ranges received ÷ due, 30 TVs × 3 Mbit/s (Mbit/s delivered)",
            f"{load['delivered_ratio']:.3f} ({load['mbit_s']:.1f})",
            f"{ref['delivered_ratio']:.3f} ({ref['mbit_s']:.1f})", "", f"≥ {TARGET_DELIVERED}",
            verdict(load["delivered_ratio"] >= TARGET_DELIVERED)),
        row("1 MiB range p50 / p99 / max ms, full load (nginx: TVs only)", ms3(load, "range"), ms3(ref, "range"),
            f"{ratio(load['range_p99_ms'], ref['range_p99_ms']):.1f} (p99)"),
        row(f"command answer p50 / p95 / max ms ({load['commands_ok']} of {load['commands_sent']} checked OK)",
            ms3(load, "command", (50, 95))),
        row(f"admin /admin/panels p50 / p95 / max ms ({load['admin_n']}, every {ADMIN_EVERY:.0f} s)",
            ms3(load, "admin", (50, 95))),
        row(f"sync MiB/s ÷ cap {load['sync_cap'] / MiB:g} MiB/s ({load['sync_mib']:.0f} MiB in "
            f"{load['sync_seconds']:.0f} s{'' if load['sync_busy'] else ', FINISHED EARLY'})",
            f"{load['sync_ratio']:.3f}", "", "", f"≥ {TARGET_SYNC}, busy to the end",
            verdict(load["sync_ratio"] >= TARGET_SYNC and load["sync_busy"])),
        row(f"server RSS MiB at warm-up end ({load['warmup_s']:.0f} s) / max after / end",
            f"{load['rss_warm'] / MiB:.1f} / {load['rss_max'] / MiB:.1f} / {load['rss_end'] / MiB:.1f}"),
        row("server RSS growth after warm-up, max / end; trend MiB per 10 min",
            f"{100 * load['rss_growth_max']:+.1f} % / {100 * load['rss_growth_end']:+.1f} %; "
            f"{load['rss_trend_mib_10min']:+.1f}", "", "", f"max ≤ +{100 * TARGET_RSS_GROWTH:.0f} %",
            verdict(load["rss_growth_max"] <= TARGET_RSS_GROWTH)),
        row("server CPU during the load, % of one core: mean / busiest 5 s",
            f"{load['cpu_pct']:.1f} / {load['cpu_pct_max5']:.1f}"),
        row(f"server OS threads start / peak; long polls parked peak / limit; polls told to retry "
            f"(of {load['polls']})",
            f"{load['threads_start']} / {load['threads_peak']}; {load['waiting_peak']:.0f} / "
            f"{load['waiting_limit']:.0f}; {load['retry_after']}"),
        row("requests in flight at the server, peak of 5 s samples (media streaming included)",
            f"{load['in_flight_peak']:.0f}"),
        row(f"open connections at the server, peak of 5 s samples; times waitress stopped accepting "
            f"(connection_limit {load['connection_limit']})",
            f"{load['connections_peak']}; {load['limit_hits']}", "", "", "0 times",
            verdict(load["limit_hits"] == 0)),
    ]
    if "stop" in res:
        st = res["stop"]
        rows.append(row(f"server stop after SIGTERM with the sync running, s (exit code; -9: killed after "
                        f"{STOP_GRACE:.0f} s)", f"{st['seconds']:.1f} ({st['returncode']})"))
    return rows


def summarize_load(phase: Phase, phones: list[Phone], admin: Admin, samples: list[dict[str, Any]], warmup: float,
                   cap: float, waiting_limit: float, threads_start: int) -> dict[str, Any]:
    """Work out the load phase's figures from its clients and samples."""
    m = phase.media()
    out: dict[str, Any] = {"seconds": phase.seconds, **m, **spread("probe", phase.probe_ms, (50, 99)),
                           "errors": phase.errors, "errors_total": sum(phase.errors.values())}
    cmds = [x for p in phones for x in p.latency_ms]
    out.update(spread("command", cmds, (50, 95)))
    out.update(commands_sent=sum(p.sent for p in phones), commands_ok=sum(p.ok for p in phones))
    out.update(spread("admin", admin.latency_ms, (50, 95)))
    # Memory: the first sample at or after the warm-up against everything after it.
    after = [s for s in samples if s["t"] >= warmup]
    warm = after[0] if after else samples[-1]
    rss_after = [s["rss"] for s in after] or [warm["rss"]]
    trend = 0.0
    if len(after) >= 3:
        ts = [s["t"] for s in after]
        mean_t, mean_r = statistics.fmean(ts), statistics.fmean(rss_after)
        var = sum((t - mean_t) ** 2 for t in ts)
        trend = sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rss_after, strict=True)) / var if var else 0.0
    out.update(warmup_s=warm["t"], rss_start=samples[0]["rss"], rss_warm=warm["rss"], rss_max=max(rss_after),
               rss_end=samples[-1]["rss"], rss_growth_max=max(rss_after) / warm["rss"] - 1,
               rss_growth_end=samples[-1]["rss"] / warm["rss"] - 1, rss_trend_mib_10min=trend * 600 / MiB)
    first, last = samples[0], samples[-1]
    wall = last["t"] - first["t"]
    out["cpu_pct"] = 100 * (last["cpu_s"] - first["cpu_s"]) / wall if wall else float("nan")
    out["cpu_pct_max5"] = max((100 * (b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"])
                               for a, b in zip(samples, samples[1:], strict=False) if b["t"] > a["t"]), default=0.0)
    out["client_cpu_pct"] = 100 * (last["client_cpu_s"] - first["client_cpu_s"]) / wall if wall else float("nan")
    out["machine_cpu_pct_mean"] = statistics.fmean(s["machine_cpu_pct"] for s in samples[1:]) if samples[1:] else 0.0
    out["load1_mean"] = statistics.fmean(s["load1"] for s in samples)
    out["threads_start"] = threads_start
    out["threads_peak"] = max(s["threads"] for s in samples)
    out["in_flight_peak"] = max((s.get("in_flight") or 0 for s in samples), default=0)
    out["connections_peak"] = max((s.get("connections") or 0 for s in samples), default=0)
    out["waiting_peak"] = max((s.get("waiting") or 0 for s in samples), default=0)
    out["waiting_limit"] = waiting_limit
    followers = [f for f in [*(tv.follower for tv in phase.tvs), *(p.follower for p in phones)] if f]
    out["followers"] = len(followers)
    out["polls"] = sum(f.polls for f in followers)
    out["retry_after"] = sum(f.retry_after for f in followers)
    out["reports"] = sum(tv.reports for tv in phase.tvs)
    out["reconnects"] = sum(tv.reconnects for tv in phase.tvs) + sum(p.conn.reconnects for p in phones)
    # Sync: its progress while it ran, against the cap.
    running = [s for s in samples if s.get("sync_state") == "running" and s.get("sync_done") is not None]
    if len(running) >= 2:
        a, b = running[0], running[-1]
        out["sync_seconds"], out["sync_bytes"] = b["t"] - a["t"], b["sync_done"] - a["sync_done"]
    else:
        out["sync_seconds"], out["sync_bytes"] = 0.0, 0
    out["sync_mib"] = out["sync_bytes"] / MiB
    out["sync_cap"] = cap
    out["sync_ratio"] = out["sync_bytes"] / out["sync_seconds"] / cap if out["sync_seconds"] else 0.0
    out["sync_busy"] = bool(running) and samples[-1].get("sync_state") == "running"
    out["samples"] = samples
    return out


def media_summary(phase: Phase) -> dict[str, Any]:
    """Work out a media-only phase's figures."""
    m = phase.media()
    cpu = phase.cpu
    return {"seconds": phase.seconds, **m, **spread("probe", phase.probe_ms, (50, 99)), "cpu": cpu,
            "cpu_pct": 100 * cpu["server_cpu_s"] / cpu["wall_s"] if cpu["wall_s"] else float("nan"),
            "cpu_ms_per_request": 1000 * cpu["server_cpu_s"] / (m["ranges_received"] + len(phase.probe_ms))
            if m["ranges_received"] else 0.0,
            "errors": phase.errors, "errors_total": sum(phase.errors.values())}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the load, 0.5-120 [10]")
    p.add_argument("--ref-seconds", type=float, help="length of each media-only phase, 10-600 "
                   "[60, or half the load if shorter]")
    p.add_argument("--sync-rate", default="2M", help="CLASSBOX_SYNC_MAX_RATE of the box, e.g. 2M [2M]")
    p.add_argument("--phones-poll", action="store_true",
                   help="the phones also long-poll their room, as the remote page does (30 more connections)")
    p.add_argument("--seed", type=int, default=1, help="seed of sizes, start offsets and the phones [1]")
    serve_bench.add_common_options(p, "work dir; a temp folder in it holds the channels and the data dir")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Set up a box and nginx, run the media-only phases and the load, print the table."""
    args = parse_args(argv)
    command = serve_bench.command_line(__file__, argv)
    tools, missing = serve_bench.find_tools()
    missing = [t for t in missing if t == "nginx"]
    missing += [n for n in ("classbox", "psutil") if importlib.util.find_spec(n) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install nginx; pip install -e . in the repository)",
              file=sys.stderr)
        return 2

    from classbox.accounts import hash_password
    from classbox.config import Config, parse_rate

    try:
        cap = parse_rate(args.sync_rate)
    except ValueError as exc:
        print(f"--sync-rate: {exc}", file=sys.stderr)
        return 2
    ref_seconds = args.ref_seconds if args.ref_seconds is not None else min(60.0, args.minutes * 30)
    if not (0.5 <= args.minutes <= 120 and 10 <= ref_seconds <= 600 and cap):
        print("--minutes must be 0.5-120, --ref-seconds 10-600 and --sync-rate above 0", file=sys.stderr)
        return 2
    import psutil

    load_s = args.minutes * 60
    warmup = min(WARMUP_S, load_s / 3)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    children = Children()
    rng = random.Random(args.seed)

    def on_term(signum: int, frame: object) -> None:
        """Treat SIGTERM like Ctrl-C, so that the finally below runs."""
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="load-bench-", dir=work))
    t_start = time.monotonic()
    load0 = os.getloadavg()
    cmd = serve_bench.classbox_command(args.classbox_cmd)
    results: dict[str, Any] = {}
    box: Server | None = None
    stop_evt = threading.Event()
    workers: list[threading.Thread] = []
    followers: list[Follower] = []
    probe: Probe | None = None
    try:
        log(f"machine load average at the start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} "
            f"on {os.cpu_count()} CPUs")
        run_ok(children, [*cmd, "keygen", "--out", str(tmp / "keys")], 60, "keygen", child_env())
        key, pub = tmp / "keys" / "publisher.key", tmp / "keys" / "publisher.pub"
        sizes = [rng.randint(*VIDEO_MIB) * MiB for _ in range(LESSONS)]
        log(f"building the video channel: {LESSONS} lessons, {sum(sizes) // MiB} MiB of random bytes")
        lessons = build_channel(children, cmd, tmp, "loadvideo", sizes, key)
        sync_total = math.ceil(cap * load_s * SYNC_SPARE / MiB) + 64
        sync_sizes = [min(SYNC_FILE_MIB, sync_total - i) * MiB for i in range(0, sync_total, SYNC_FILE_MIB)]
        log(f"building the sync channel: {len(sync_sizes)} lessons, {sync_total} MiB "
            f"({SYNC_SPARE}× what {args.sync_rate}/s lets through in {args.minutes:g} min)")
        synced = build_channel(children, cmd, tmp, "loadsync", sync_sizes, key)

        data = tmp / "data"
        log("installing the video channel with `classbox channel add`")
        run_ok(children, [*cmd, "channel", "add", str(lessons.mirror), "--trust", str(pub), "--data", str(data)],
               120 + sum(sizes) / (5 * MiB), "channel add", child_env())
        shutil.rmtree(lessons.mirror)
        blobs = data / "blobs" / "sha256"
        videos = [Video(lesson, sha, size, blobs / sha[:2] / sha) for lesson, sha, size in lessons.videos]
        for v in videos:
            if not v.path.is_file() or v.path.stat().st_size != v.size:
                raise RuntimeError(f"{v.path} is not in the store after channel add")
        warm([v.path for v in videos])  # in the page cache for both servers, as serve_bench does

        password = secrets.token_urlsafe(16)
        box_environment(tmp, hash_password(password), args.sync_rate)
        threads_cfg = Config.from_env().threads
        box = start_classbox(children, cmd, data, videos[0].sha256, tmp)
        rooms = [f"教室{i}" for i in range(1, ROOMS + 1)]
        for room in rooms:
            control(data, "rooms", {"name": room})
        status, health_body = once(box.port, "GET", "/-/health")
        if status != 200 or health_body.get("lessons") != LESSONS:
            raise RuntimeError(f"/-/health answered {status}: {health_body}")
        nginx, mirror_port = start_nginx(children, tools["nginx"], tmp, synced.mirror,
                                         f"/channels/{synced.channel}/manifest.json", blobs,
                                         json.dumps(health_body).encode())
        log(f"box set up: {LESSONS} lessons, {ROOMS} rooms, admin from the provisioning file; "
            f"CLASSBOX_THREADS={threads_cfg}, CLASSBOX_SYNC_MAX_RATE={args.sync_rate}")

        log(f"A. nginx: {TVS} TVs read 1 MiB ranges at 3 Mbit/s each, probe once a second, {ref_seconds:.0f} s")
        ref = media_phase("nginx", nginx, videos, rooms, ref_seconds, args.seed)
        log(f"B. classbox: the same {TVS} TVs and probe (GET /-/health), {ref_seconds:.0f} s")
        cbm = media_phase("classbox", box, videos, rooms, ref_seconds, args.seed)
        results["nginx_media"], results["classbox_media"] = media_summary(ref), media_summary(cbm)

        log(f"C. load for {args.minutes:g} min: setting up phones, lessons and the admin session")
        tally = Tally()
        phones = [Phone(i, box.port, rooms[i % ROOMS], tally, stop_evt, random.Random(args.seed * 1000 + i))
                  for i in range(ROOMS * PHONES_PER_ROOM)]
        for phone in phones:
            phone.pair()
        for i, room in enumerate(rooms):
            opener = phones[i]
            if (opener.send("open", {"lesson": videos[i % len(videos)].lesson, "start": "beginning"}) is None
                    or opener.send("play", {}) is None):
                raise RuntimeError(f"could not open a lesson in {room}: {tally.samples[-1:]}")
        admin = Admin(box.port, password, tally, stop_evt)
        admin.log_in()
        for phone in phones:
            phone.latency_ms.clear()
            phone.sent = phone.ok = 0
        proc = psutil.Process(box.proc.pid)
        threads_start = proc.num_threads()
        status, answer = once(box.port, "POST", "/api/v1/sync", {
            "sources": [f"http://127.0.0.1:{mirror_port}/"], "channels": [synced.channel], "trust": pub.read_text()})
        if status != 202:
            raise RuntimeError(f"POST /api/v1/sync answered {status}: {answer}")
        start = time.monotonic()
        deadline = start + load_s
        tally.t0 = start
        log(f"    sync of {sync_total} MiB started; {TVS} TVs streaming + long-polling + reporting, "
            f"{len(phones)} phones, admin every {ADMIN_EVERY:.0f} s, probe every {PROBE_EVERY:.0f} s")
        sampler = Sampler(box.proc.pid, box.port, tally, stop_evt, deadline).start()
        probe = Probe(box.port, "/-/health", load_s)
        meter = CpuMeter(box.proc.pid)
        tvs = make_tvs(box.port, videos, rooms, tally, stop_evt, True, args.seed)
        if args.phones_poll:
            for phone in phones:
                phone.follower = Follower(box.port, phone.room, f"phone-{phone.index + 1}", "phone", tally, stop_evt)
        followers = [f for f in [*(tv.follower for tv in tvs), *(p.follower for p in phones)] if f]
        workers += [threading.Thread(target=f.run, args=(deadline,), name=f"poll-{f.screen}", daemon=True)
                    for f in followers]
        workers += [threading.Thread(target=tv.stream, args=(start, deadline), name=f"tv-{tv.index}", daemon=True)
                    for tv in tvs]
        workers += [threading.Thread(target=p.run, args=(deadline,), name=f"phone-{p.index}", daemon=True)
                    for p in phones]
        workers.append(threading.Thread(target=admin.run, args=(deadline,), name="admin", daemon=True))
        for t in workers:
            t.start()
        next_note = start + 60
        while time.monotonic() < deadline:
            stop_evt.wait(min(5.0, max(0.0, deadline - time.monotonic())))
            if box.proc.poll() is not None:
                raise RuntimeError(f"classbox exited during the load (code {box.proc.returncode})")
            if time.monotonic() >= next_note and sampler.samples:
                next_note += 60
                s = sampler.samples[-1]
                log(f"    {s['t']:.0f} s: RSS {s['rss'] / MiB:.1f} MiB, {s['threads']} threads, "
                    f"{s.get('in_flight')} in flight, {s.get('waiting')} parked, sync "
                    f"{(s.get('sync_done') or 0) / MiB:.0f} MiB ({s.get('sync_state')}), load {s['load1']:.1f}, "
                    f"{tally.total()} errors")
        steal = meter.result()
        stop_evt.set()
        for f in followers:
            f.abort()
        for t in workers:
            t.join(timeout=max(0.0, deadline + MEDIA_TIMEOUT + 5 - time.monotonic()))
        if any(t.is_alive() for t in workers):
            tally.error("client: still running after the load", ", ".join(t.name for t in workers if t.is_alive()))
        samples = sampler.finish()
        probe_ms = probe.results(tally)
        status, sync_end = once(box.port, "GET", "/api/v1/sync")
        for run in sync_end.get("runs", []):
            for err in run.get("errors", []):
                tally.error("sync: run error", err)
        metrics = Conn(box.port, HTTP_TIMEOUT)
        try:
            status, _, raw = metrics.request("GET", "/-/metrics")
        finally:
            metrics.close()
        server_counts = {k: v for k, v in parse_metrics(raw.decode()).items()
                         if k.startswith("classbox_http_requests_total")}
        phase = Phase("load", time.monotonic() - start, tvs, probe_ms, steal, dict(tally.kinds))
        load = summarize_load(phase, phones, admin, samples, warmup, cap, max(1, threads_cfg - 6), threads_start)
        load["steal_pct"] = steal["steal_pct"]
        load["connection_limit"] = Config.from_env({}).connections  # what serve passes to waitress
        load["limit_hits"] = (tmp / "classbox.log").read_text(errors="replace").count(
            "reached the connection limit, no longer accepting")
        load["server_request_counts"] = server_counts
        load["error_samples"] = tally.samples
        results["load"] = load
        log(f"    load done: {load['errors_total']} errors; probe p99 {load['probe_p99_ms']:.1f} ms; RSS "
            f"{load['rss_warm'] / MiB:.1f} → max {load['rss_max'] / MiB:.1f} → end {load['rss_end'] / MiB:.1f} MiB; "
            f"server CPU {load['cpu_pct']:.0f} % of a core; client CPU {load['client_cpu_pct']:.0f} %; machine "
            f"busy {load['machine_cpu_pct_mean']:.0f} % of all CPUs, load {load['load1_mean']:.1f}, steal "
            f"{load['steal_pct']:.1f} %")
        for msg in tally.samples[:10]:
            log(f"      {msg}")
        t0 = time.monotonic()
        stop(box.proc, grace=STOP_GRACE)
        results["stop"] = {"seconds": time.monotonic() - t0, "returncode": box.proc.returncode}
        log(f"classbox stopped {results['stop']['seconds']:.1f} s after SIGTERM (exit code {box.proc.returncode})")
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    finally:
        stop_evt.set()
        for f in followers:
            f.abort()
        if probe is not None:
            probe.kill()
        children.stop_all()
        for t in workers:
            t.join(timeout=5)
        for name, target in (("classbox.log", "load-classbox.log"), ("error.log", "load-nginx-error.log")):
            if (tmp / name).exists():
                shutil.copyfile(tmp / name, work / target)
        shutil.rmtree(tmp, ignore_errors=True)

    rows = build_rows(results)
    load = results["load"]
    meta = {
        "command": command, "cpus": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "versions": {n: importlib.metadata.version(n) for n in ("classbox", "waitress", "flask")},
        "load_average_at_start": load0, "bench_seconds": round(time.monotonic() - t_start, 1),
        "classbox_threads": threads_cfg, "sync_rate": args.sync_rate, "warmup_s": warmup,
        "phones_poll": args.phones_poll, "ref_seconds": ref_seconds,
    }
    print()
    print(f"Loopback, {os.cpu_count()} CPUs, {args.minutes:g} min load: {TVS} TVs each reading its room's video "
          f"in 1 MiB ranges at 3 Mbit/s, long-polling its room and reporting every {REPORT_EVERY:.0f} s; "
          f"{ROOMS * PHONES_PER_ROOM} phones ({PHONES_PER_ROOM} per room) sending play/pause/seek every "
          f"{PHONE_GAP[0]:g}–{PHONE_GAP[1]:g} s{' and long-polling their room' if args.phones_poll else ''}; "
          f"a sync at CLASSBOX_SYNC_MAX_RATE={args.sync_rate} from nginx; "
          f"/admin/panels every {ADMIN_EVERY:.0f} s; GET /-/health once a second. nginx (1 process, sendfile) "
          f"and classbox each served the {TVS} TVs alone for {ref_seconds:.0f} s first. classbox waitress "
          f"{threads_cfg} threads. Machine busy {load['machine_cpu_pct_mean']:.0f} % of all CPUs on average during "
          f"the load (load average {load['load1_mean']:.1f}; {load0[0]:.1f} at the start); the clients took "
          f"{load['client_cpu_pct']:.0f} % of a core.")
    print()
    print(serve_bench.markdown(rows))
    print()
    print(f"Command: `{command}`")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results, "rows": rows}, indent=2,
                                        ensure_ascii=False, default=str) + "\n")
        print(f"JSON written to {args.json}")
    return 0 if all(r["result"] in ("PASS", "—") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
