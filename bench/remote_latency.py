#!/usr/bin/env python3
"""Benchmark the rooms API: command-to-screen latency with 10 rooms of 1 TV + 1 phone, and the box's idle CPU.

Everything runs on 127.0.0.1 against a `classbox serve` this script starts on a fresh data directory
(demo channel, 10 rooms added before the start). Per room, concurrently:
  - a "TV" thread long-polls GET /api/v1/rooms/<room>/state?after=<version>&wait=25 in a loop,
    honouring retry_after;
  - a "phone" thread pairs with the room's code, opens a demo lesson, then sends --commands
    play/pause commands with random 0.2–0.6 s gaps.
Measured:
  1. latency from sending a command to the TV receiving a state whose version is at least the
     version the command returned: p50 and p95 (target p95 ≤ 300 ms);
  2. server OS threads before the load and at its peak, CLASSBOX_THREADS, the peak number of
     requests in flight (an upper bound of server threads busy), and how many long polls were
     told retry_after > 0 (the box's limit of parked requests was hit);
  3. server CPU (user+system) while the TVs stay connected and nothing happens for --idle-seconds,
     as % of one core (target ≤ 2 %: a box may run on solar power).

Uses only the standard library and psutil (a classbox dependency); installs nothing.
Every loop is bounded in count and time; the server is stopped (SIGTERM) on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench  # noqa: E402  (same folder: process handling, logging, CPU steal)
from serve_bench import Children, CpuMeter, NoDelayConnection, Server, log, percentile, start_classbox, stop  # noqa: E402

HERE = Path(__file__).resolve().parent

WAIT = 25  # seconds a TV asks the box to hold its long poll (the API's own limit)
HTTP_TIMEOUT = 10.0  # seconds for a phone's request
POLL_TIMEOUT = WAIT + 10.0  # seconds for a TV's long poll
SEEN_TIMEOUT = 5.0  # a command the TV has not seen after this many seconds counts as lost
GAP_MIN, GAP_MAX = 0.2, 0.6  # seconds between a phone's commands
SETTLE = 2.0  # seconds between the last command and the idle measure, for the TVs to park again
SAMPLE_EVERY = 0.2  # seconds between samples of the server's thread count
MAX_POLLS = 20000  # per TV, whatever the clock says
STOP_GRACE = 20.0  # seconds classbox gets to stop after SIGTERM before SIGKILL
MAX_ERRORS = 200  # per client: stop a client that keeps failing rather than spin

TARGET_P95_MS = 300.0
TARGET_IDLE_CPU_PCT = 2.0


# --------------------------------------------------------------------------- HTTP clients


class Gauge:
    """How many requests the clients have in flight now, and the most there ever were."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> Gauge:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1

    def reset_peak(self) -> None:
        """Start a new peak from the present count."""
        with self.lock:
            self.peak = self.now



class Client:
    """One keep-alive HTTP client (a TV or a phone) on 127.0.0.1, with its cookie."""

    def __init__(self, port: int, timeout: float, gauge: Gauge) -> None:
        self.conn = NoDelayConnection("127.0.0.1", port, timeout=timeout)
        self.gauge = gauge
        self.cookie: str | None = None
        self.reconnects = 0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """Send one request and return (status, JSON body); retry once if the kept-alive connection was gone."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.cookie:
            headers["Cookie"] = self.cookie
        for attempt in (1, 2):
            try:
                with self.gauge:
                    self.conn.request(method, path, body=data, headers=headers)
                    resp = self.conn.getresponse()
                    raw = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed a kept-alive connection; commands carry n, so sending again is safe.
                self.conn.close()
                if attempt == 2:
                    raise
                self.reconnects += 1
            except (OSError, http.client.HTTPException):
                self.conn.close()
                raise
        cookie = resp.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"error": raw[:200].decode("utf-8", "replace")}
        return resp.status, answer if isinstance(answer, dict) else {"answer": answer}

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


# --------------------------------------------------------------------------- one room


@dataclass
class Screen:
    """What a room's TV has received: each new version and when it arrived."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    latest: int = -1
    playing: bool = False
    versions: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def saw(self, version: int, playing: bool, at: float) -> None:
        """Record a state the TV received at perf_counter time at."""
        with self.cond:
            if version > self.latest:
                self.latest, self.playing = version, playing
                self.versions.append(version)
                self.times.append(at)
                self.cond.notify_all()

    def first_seen(self, version: int, timeout: float) -> float | None:
        """Wait until the TV has a version ≥ version; return when it first did, None after timeout."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.latest >= version, timeout=timeout):
                return None
            return self.times[bisect.bisect_left(self.versions, version)]


@dataclass
class RoomRun:
    """One room's TV and phone, and what they measured."""

    name: str
    index: int
    port: int
    gauge: Gauge
    stop: threading.Event
    screen: Screen = field(default_factory=Screen)
    latencies_ms: list[float] = field(default_factory=list)
    open_ms: float | None = None
    noops: int = 0  # commands that changed nothing the TV had not already shown (e.g. pause after a pause point)
    lost: int = 0  # commands whose version the TV did not receive within SEEN_TIMEOUT
    sent: int = 0
    errors: list[str] = field(default_factory=list)
    polls: int = 0
    retry_after: int = 0  # long polls answered with retry_after > 0
    tv_parked: bool = False  # the TV has a long poll in flight
    tv_ready: threading.Event = field(default_factory=threading.Event)
    reconnects: int = 0

    @property
    def base(self) -> str:
        return f"/api/v1/rooms/{quote(self.name)}"

    def error(self, msg: str) -> None:
        """Remember an error (the first few are printed at the end)."""
        self.errors.append(f"{self.name}: {msg}")

    # ---- the TV

    def tv(self, deadline: float) -> None:
        """Long-poll the room's state until stopped or deadline; record every new version."""
        client = Client(self.port, POLL_TIMEOUT, self.gauge)
        version: int | None = None
        failures = 0
        try:
            while not self.stop.is_set() and time.monotonic() < deadline and self.polls < MAX_POLLS:
                path = f"{self.base}/state" if version is None else f"{self.base}/state?after={version}&wait={WAIT}"
                self.tv_parked = version is not None
                try:
                    status, body = client.call("GET", path)
                except (OSError, http.client.HTTPException) as exc:
                    if self.stop.is_set():
                        break
                    failures += 1
                    self.error(f"TV poll: {exc!r}")
                    if failures >= MAX_ERRORS:
                        break
                    self.stop.wait(0.5)
                    continue
                finally:
                    self.tv_parked = False
                at = time.perf_counter()
                self.polls += 1
                if status != 200 or not isinstance(body.get("version"), int):
                    failures += 1
                    self.error(f"TV poll answered {status}: {body}")
                    if failures >= MAX_ERRORS:
                        break
                    self.stop.wait(0.5)
                    continue
                self.screen.saw(body["version"], bool(body.get("playing")), at)
                version = body["version"]
                self.tv_ready.set()
                retry = body.get("retry_after") or 0
                if retry > 0:  # every parking place taken: ask again when told
                    self.retry_after += 1
                    self.stop.wait(min(float(retry), 5.0))
        finally:
            self.reconnects += client.reconnects
            client.close()

    # ---- the phone

    def phone(self, commands: int, rng: random.Random, deadline: float) -> None:
        """Pair, open a demo lesson, then send play/pause commands with random gaps; time each to the TV."""
        client = Client(self.port, HTTP_TIMEOUT, self.gauge)
        me = f"bench-phone-{self.index}"
        try:
            status, body = client.call("GET", f"{self.base}/pairing")
            if status != 200 or "code" not in body:
                self.error(f"pairing answered {status}: {body}")
                return
            status, body = client.call("POST", f"{self.base}/pair", {"code": body["code"]})
            if status != 200 or not client.cookie:
                self.error(f"pair answered {status}: {body} (cookie {client.cookie!r})")
                return
            status, body = client.call("GET", "/api/v1/catalog")
            lessons = [lesson["id"] for lesson in body.get("lessons", [])] if status == 200 else []
            if not lessons:
                self.error(f"catalog answered {status} with no lessons: {body}")
                return
            n = 0

            def send(cmd: str, args: dict[str, Any]) -> float | None:
                """Send one command; return ms until the TV had its version (None: no-op, lost or failed)."""
                nonlocal n
                n += 1
                before = self.screen.latest
                t0 = time.perf_counter()
                try:
                    status, body = client.call("POST", f"{self.base}/commands",
                                               {"client": me, "n": n, "cmd": cmd, "args": args})
                except (OSError, http.client.HTTPException) as exc:
                    self.error(f"{cmd}: {exc!r}")
                    return None
                self.sent += 1
                if status != 200 or not isinstance(body.get("version"), int):
                    self.error(f"{cmd} answered {status}: {body}")
                    return None
                if body["version"] <= before:
                    self.noops += 1
                    return None
                seen = self.screen.first_seen(body["version"], SEEN_TIMEOUT)
                if seen is None:
                    self.lost += 1
                    self.error(f"{cmd}: the TV did not get version {body['version']} within {SEEN_TIMEOUT:.0f} s")
                    return None
                return (seen - t0) * 1000

            self.open_ms = send("open", {"lesson": lessons[self.index % len(lessons)], "start": "beginning"})
            for _ in range(commands):
                if self.stop.is_set() or time.monotonic() >= deadline or len(self.errors) >= MAX_ERRORS:
                    break
                self.stop.wait(rng.uniform(GAP_MIN, GAP_MAX))
                # Like a teacher looking at the TV: pause what plays, play what is paused (or stopped
                # by the box at a pause point).
                ms = send("pause" if self.screen.playing else "play", {})
                if ms is not None:
                    self.latencies_ms.append(ms)
            if self.screen.playing:  # leave the room paused for the idle measure
                ms = send("pause", {})
                if ms is not None:
                    self.latencies_ms.append(ms)
        except (OSError, http.client.HTTPException) as exc:
            self.error(f"phone: {exc!r}")
        finally:
            self.reconnects += client.reconnects
            client.close()


# --------------------------------------------------------------------------- the box


def prepare_data(data: Path, rooms: int) -> tuple[list[str], str]:
    """Install the demo channel into a new data directory and add the rooms; return (rooms, a demo blob sha256)."""
    from classbox.box import Box
    from classbox.config import Config

    box = Box(Config.from_env({}, data_dir=data, demo=True))
    try:
        box.first_start()
        names = [f"教室{i}" for i in range(1, rooms + 1)]
        for name in names:
            box.classroom.add_room(name)
        shas = [a.blob.sha256 for m in box.catalog.manifests() for lesson in m.lessons for a in lesson.assets]
        if not shas:
            raise RuntimeError("the demo channel did not install: no lessons in the new data directory")
        return names, shas[0]
    finally:
        box.close()


def server_threads() -> int:
    """Return CLASSBOX_THREADS as the server started by this script will see it."""
    from classbox.config import Config

    return Config.from_env({k: v for k, v in os.environ.items() if k == "CLASSBOX_THREADS"}).threads


class ThreadSampler:
    """Samples the server's OS thread count in the background until stopped or deadline."""

    def __init__(self, proc: Any, deadline: float) -> None:
        self.proc = proc
        self.deadline = deadline
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self.done.is_set() and time.monotonic() < self.deadline:
            try:
                self.peak = max(self.peak, self.proc.num_threads())
            except psutil.Error:
                return
            self.done.wait(SAMPLE_EVERY)

    def start(self) -> ThreadSampler:
        self.thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; return the peak."""
        self.done.set()
        self.thread.join(timeout=5)
        return self.peak


def cpu_seconds(proc: Any) -> float:
    """Return the server's user+system CPU seconds."""
    t = proc.cpu_times()
    return float(t.user + t.system)


# --------------------------------------------------------------------------- report



def build_rows(res: dict[str, Any]) -> list[dict[str, str]]:
    """Turn the results into table rows: measure, value, target, result."""
    lat, thr, idle = res["latency"], res["threads"], res["idle"]

    def verdict(ok: bool) -> str:
        """PASS or FAIL."""
        return "PASS" if ok else "FAIL"

    rows = [
        {"measure": f"command → screen latency p50, ms ({lat['measured']} play/pause commands, {res['rooms']} rooms)",
         "value": f"{lat['p50_ms']:.1f}", "target": "(reported)", "result": "—"},
        {"measure": "command → screen latency p95, ms",
         "value": f"{lat['p95_ms']:.1f}", "target": f"≤ {TARGET_P95_MS:.0f}",
         "result": verdict(lat["p95_ms"] <= TARGET_P95_MS)},
        {"measure": "command → screen latency max, ms; open lesson p50, ms",
         "value": f"{lat['max_ms']:.1f}; {lat['open_p50_ms']:.1f}", "target": "(reported)", "result": "—"},
        {"measure": f"commands the TV did not get within {SEEN_TIMEOUT:.0f} s; HTTP errors",
         "value": f"{lat['lost']}; {res['errors']}", "target": "0; 0",
         "result": verdict(lat["lost"] == 0 and res["errors"] == 0)},
        {"measure": f"server OS threads before load / at peak (CLASSBOX_THREADS={thr['classbox_threads']})",
         "value": f"{thr['os_threads_before']} / {thr['os_threads_peak']}", "target": "(reported)", "result": "—"},
        {"measure": "requests in flight at peak (TVs parked + phones; ≥ server threads busy)",
         "value": f"{thr['in_flight_peak']}", "target": f"< {thr['classbox_threads']}",
         "result": verdict(thr["in_flight_peak"] < thr["classbox_threads"])},
        {"measure": "long polls answered retry_after > 0 (parking limit hit)",
         "value": f"{thr['retry_after']} of {thr['polls']}", "target": "0", "result": verdict(thr["retry_after"] == 0)},
        {"measure": f"server CPU, {idle['seconds']:.0f} s idle, {idle['tvs_parked_end']}/{res['rooms']} TVs parked, "
                    "% of one core",
         "value": f"{idle['cpu_pct']:.2f}", "target": f"≤ {TARGET_IDLE_CPU_PCT:.0f}",
         "result": verdict(idle["cpu_pct"] <= TARGET_IDLE_CPU_PCT)},
        {"measure": f"server CPU during the command load, % of one core ({res['load']['seconds']:.0f} s)",
         "value": f"{res['load']['cpu_pct']:.1f}", "target": "(reported)", "result": "—"},
    ]
    if "stop" in res:
        st = res["stop"]
        rows.append({"measure": f"server stop after SIGTERM, {st['tvs_parked']} TVs parked, s (exit code)",
                     "value": f"{st['seconds']:.1f} ({st['returncode']})", "target": "(reported)", "result": "—"})
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    """Render rows as a Markdown table: measure | value | target | result.

    serve_bench.markdown has the columns of a comparison (classbox, reference, ratio); here there is no
    reference to compare with.
    """
    cols = ["measure", "value", "target", "result"]
    lines = ["| " + " | ".join(cols) + " |", "|---|---:|---|---|"]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rooms", type=int, default=10, help="rooms, each with 1 TV and 1 phone, 1-50 [10]")
    p.add_argument("--commands", type=int, default=30, help="play/pause commands per phone, 1-200 [30]")
    p.add_argument("--idle-seconds", type=float, default=30.0,
                   help="seconds of the idle CPU measure, 5-300 [30]")
    p.add_argument("--seed", type=int, default=1, help="seed of the phones' gaps [1]")
    serve_bench.add_common_options(p, "work dir; a temp folder in it holds the data dir")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start a box, drive its rooms, measure, print the table."""
    args = parse_args(argv)
    command = serve_bench.command_line(__file__, argv)
    missing = [name for name in ("classbox", "psutil") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (pip install -e . in the repository)", file=sys.stderr)
        return 2
    if not (1 <= args.rooms <= 50 and 1 <= args.commands <= 200 and 5 <= args.idle_seconds <= 300):
        print("--rooms must be 1-50, --commands 1-200 and --idle-seconds 5-300", file=sys.stderr)
        return 2
    import psutil

    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    children = Children()
    stop_clients = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        """Treat SIGTERM like Ctrl-C, so that the finally below runs."""
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="remote-bench-", dir=work))
    t_start = time.monotonic()
    threads = server_threads()
    gauge = Gauge()
    runs: list[RoomRun] = []
    workers: list[threading.Thread] = []
    results: dict[str, Any] = {"rooms": args.rooms, "commands_per_room": args.commands}
    server: Server | None = None
    try:
        log(f"preparing a data dir with the demo channel and {args.rooms} rooms in {tmp}")
        names, sha = prepare_data(tmp / "data", args.rooms)
        # The data dir is initialised already (demo installed above), so start_classbox's --no-demo changes nothing.
        server = start_classbox(children, serve_bench.classbox_command(args.classbox_cmd), tmp / "data", sha, tmp)
        proc = psutil.Process(server.proc.pid)
        threads_before = proc.num_threads()

        # Whatever happens, no client outlives this: load ≤ commands × (gap + SEEN_TIMEOUT), then idle.
        load_budget = 30 + args.commands * (GAP_MAX + 1.0)
        client_deadline = time.monotonic() + load_budget + SETTLE + args.idle_seconds + 60
        runs = [RoomRun(name, i, server.port, gauge, stop_clients) for i, name in enumerate(names)]
        log(f"1/2 {args.rooms} TVs long-polling; {args.rooms} phones pair, open a lesson and send "
            f"{args.commands} play/pause commands each, {GAP_MIN}–{GAP_MAX} s apart")
        for run in runs:
            t = threading.Thread(target=run.tv, args=(client_deadline,), name=f"tv-{run.index}", daemon=True)
            t.start()
            workers.append(t)
        ready_by = time.monotonic() + 15
        for run in runs:
            if not run.tv_ready.wait(timeout=max(0.0, ready_by - time.monotonic())):
                raise RuntimeError(f"the TV of {run.name} got no state within 15 s: {run.errors[:3]}")
        sampler = ThreadSampler(proc, client_deadline).start()
        gauge.reset_peak()
        cpu0, wall0 = cpu_seconds(proc), time.monotonic()
        phones = []
        for run in runs:
            rng = random.Random(args.seed * 1000 + run.index)
            t = threading.Thread(target=run.phone, args=(args.commands, rng, time.monotonic() + load_budget),
                                 name=f"phone-{run.index}", daemon=True)
            t.start()
            phones.append(t)
        for t in phones:
            t.join(timeout=max(0.0, wall0 + load_budget + HTTP_TIMEOUT + SEEN_TIMEOUT - time.monotonic()))
        if any(t.is_alive() for t in phones):
            raise RuntimeError(f"a phone did not finish within {load_budget:.0f} s")
        load_wall = time.monotonic() - wall0
        load_cpu = cpu_seconds(proc) - cpu0
        threads_peak = sampler.stop()
        in_flight_peak = gauge.peak
        latencies = [ms for run in runs for ms in run.latencies_ms]
        opens = [run.open_ms for run in runs if run.open_ms is not None]
        log(f"    {len(latencies)} commands timed in {load_wall:.1f} s: p50 {percentile(latencies, 50):.1f} ms, "
            f"p95 {percentile(latencies, 95):.1f} ms, max {max(latencies, default=float('nan')):.1f} ms; "
            f"{sum(r.noops for r in runs)} no-ops, {sum(r.lost for r in runs)} lost; server threads "
            f"{threads_before} → {threads_peak}, {in_flight_peak} requests in flight at most; "
            f"server CPU {100 * load_cpu / load_wall:.1f} % of a core")

        log(f"2/2 idle: {args.rooms} TVs stay parked, no commands, {args.idle_seconds:.0f} s")
        stop_clients.wait(SETTLE)
        polls0 = sum(r.polls for r in runs)
        parked_start = sum(r.tv_parked for r in runs)
        meter = CpuMeter(proc.pid)  # for the machine's steal %
        cpu0, wall0 = cpu_seconds(proc), time.monotonic()
        idle_sampler = ThreadSampler(proc, wall0 + args.idle_seconds + 5).start()
        stop_clients.wait(args.idle_seconds)
        idle_cpu, idle_wall = cpu_seconds(proc) - cpu0, time.monotonic() - wall0
        idle_threads = idle_sampler.stop()
        steal = meter.result()["steal_pct"]
        parked_end = sum(r.tv_parked for r in runs)
        idle_polls = sum(r.polls for r in runs) - polls0
        if server.proc.poll() is not None:
            raise RuntimeError(f"classbox exited during the run (code {server.proc.returncode})")
        log(f"    server CPU {idle_cpu:.3f} s in {idle_wall:.1f} s = {100 * idle_cpu / idle_wall:.2f} % of a core; "
            f"TVs parked {parked_start} at the start, {parked_end} at the end; {idle_polls} polls answered; "
            f"steal {steal:.1f} %")

        errors = [e for run in runs for e in run.errors]
        results.update({
            "latency": {
                "measured": len(latencies), "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                "max_ms": max(latencies, default=float("nan")), "open_p50_ms": percentile(opens, 50),
                "sent": sum(r.sent for r in runs), "noops": sum(r.noops for r in runs),
                "lost": sum(r.lost for r in runs), "all_ms": [round(ms, 2) for ms in latencies],
            },
            "threads": {
                "classbox_threads": threads, "max_parked": max(1, threads - 6), "os_threads_before": threads_before,
                "os_threads_peak": threads_peak, "os_threads_idle_peak": idle_threads,
                "in_flight_peak": in_flight_peak, "retry_after": sum(r.retry_after for r in runs),
                "polls": sum(r.polls for r in runs),
            },
            "load": {"seconds": load_wall, "cpu_s": load_cpu, "cpu_pct": 100 * load_cpu / load_wall},
            "idle": {"seconds": idle_wall, "cpu_s": idle_cpu, "cpu_pct": 100 * idle_cpu / idle_wall,
                     "tvs_parked_start": parked_start, "tvs_parked_end": parked_end, "polls": idle_polls,
                     "steal_pct": steal},
            "errors": len(errors), "error_samples": errors[:20],
            "reconnects": sum(r.reconnects for r in runs),
        })
    except KeyboardInterrupt:
        log("interrupted; stopping the server")
        return 130
    finally:
        stop_clients.set()
        if server is not None:
            # SIGTERM; waitress then waits up to 5 s for requests still running, and parked long polls
            # are, so give it longer than stop()'s usual grace before SIGKILL.
            parked = sum(r.tv_parked for r in runs)
            t0 = time.monotonic()
            stop(server.proc, grace=STOP_GRACE)
            results["stop"] = {"seconds": time.monotonic() - t0, "returncode": server.proc.returncode,
                               "tvs_parked": parked}
            log(f"classbox stopped {results['stop']['seconds']:.1f} s after SIGTERM with {parked} TVs parked "
                f"(exit code {server.proc.returncode})")
        children.stop_all()
        for t in workers:
            t.join(timeout=5)
        if (tmp / "classbox.log").exists():
            shutil.copyfile(tmp / "classbox.log", work / "remote-classbox.log")
        shutil.rmtree(tmp, ignore_errors=True)

    for msg in results["error_samples"][:5]:
        log(f"    {msg}")
    rows = build_rows(results)
    meta = {
        "command": command,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "versions": {name: importlib.metadata.version(name) for name in ("classbox", "waitress", "flask")},
        "bench_seconds": round(time.monotonic() - t_start, 1),
    }
    print()
    print(f"Loopback, {args.rooms} rooms × (1 TV long-polling with wait={WAIT} + 1 phone), {args.commands} "
          f"play/pause commands per phone {GAP_MIN}–{GAP_MAX} s apart, all rooms at once; {os.cpu_count()} CPUs; "
          f"classbox waitress {threads} threads (at most {max(1, threads - 6)} long polls parked). Latency: from "
          "sending a command to the TV receiving a state with the command's version; commands that changed "
          f"nothing new ({results['latency']['noops']}, e.g. a pause right after the box stopped at a pause "
          "point) are not counted.")
    print()
    print(markdown(rows))
    print()
    print(f"Command: `{command}`")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results, "rows": rows}, indent=2,
                                        ensure_ascii=False) + "\n")
        print(f"JSON written to {args.json}")
    return 0 if all(r["result"] in ("PASS", "—") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
