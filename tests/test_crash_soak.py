"""Crash soak: `classbox serve` syncing, streaming to TVs and taking a phone's commands, SIGKILLed 100 times.

A real nginx holds a mirror with a channel of large lessons; the box syncs from it under a bandwidth cap,
so kills land in the middle of downloads. Three TV threads read byte ranges of the lessons the box lists
and compare them with the mirror's files; a paired phone sends open, play, pause and seek, and records
every command the box acknowledged. After each kill the data directory is checked as the dead process
left it, the box is started again on the same directory and a new port, and checked while it serves.

What the box guarantees, and so what is asserted:

- It comes back: the lock of the killed process is gone, state.json loads, /-/health answers in time,
  and the temp files a crash left behind are gone once it is up.
- Nothing half-written is visible: every file under blobs/sha256 hashes to its name; a lesson is listed
  only when all its files are in the store (and one that was complete before a kill is listed after it).
- The sync resumes: the bytes it has vouched for (files in the store, plus each partial file's offset
  recorded in its side file after an fsync) never go backwards. Bytes a .part file holds beyond that
  offset were not yet fsynced and are cut on resume by design, so the raw size of partial/ may shrink.
- The playback log: `Classroom.command` appends (and fsyncs) the event before the view answers, so the
  event of every acknowledged command is in the log after the kill. Sequence numbers run 1..N across all
  day files with no gap and no repeat: a command in flight at the kill may or may not have its event
  logged (a torn tail is cut before the next append), but no number is ever used twice, and every
  logged event is one the phone sent.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from classbox import channel, keys
from classbox.box import Box
from classbox.channel import Manifest
from classbox.config import Config
from classbox.events import DAY_FILE, Event
from classbox.store import blob_relpath, hash_file, is_sha256
from classbox.sync.download import CHECKPOINT_BYTES
from classbox.sync.engine import Progress
from classbox.sync.sources import FolderSource

from .conftest import write_source
from .netfaults import nginx

SEED = 20261124
KILLS = 100
DELAY = (0.2, 2.5)             # seconds the box serves, once healthy, before it is killed
LESSONS = 12                   # lessons of the synced channel ...
VIDEO_MB = (20, 30)            # ... each with a video of this many MiB (random bytes: the box checks hashes only)
RATE = 4 * 1024 * 1024         # CLASSBOX_SYNC_MAX_RATE, bytes/s: kills land in the middle of downloads
HEALTHY_WITHIN = 15.0          # seconds from start to an answer on /-/health
PARK_WITHIN = 15.0             # seconds for the load to notice a kill
ROOM = "一号教室"
TVS = 3
PAIR_COOKIE = "classbox_remote"
IN_FLIGHT_SLACK = 8 * 1024 * 1024  # at a kill: nginx's send buffer (tcp_wmem, 4 MiB) + the box's receive buffer
EPS = 0.5                      # seconds of slack between the phone's clock readings and an event's time


# ---------------------------------------------------------------- the mirror


@dataclass(frozen=True)
class Mirror:
    """The published channels: the mirror folder, its key and the manifests."""

    root: Path
    pubkey: Path
    manifests: tuple[Manifest, ...]

    def blob_file(self, sha256: str) -> Path:
        """Return where the mirror holds a file."""
        return self.root / blob_relpath(sha256)

    def needed(self, channel_id: str) -> int:
        """Return the bytes of every distinct file of a channel."""
        m = next(m for m in self.manifests if m.id == channel_id)
        return sum(b.size for b in m.blobs().values())

    def lessons(self) -> dict[str, Any]:
        """Return every lesson of every channel by id."""
        return {lesson.id: lesson for m in self.manifests for lesson in m.lessons}


def write_lessons(src: Path, channel_id: str, sizes: list[int], rng: random.Random) -> None:
    """Write a channel source folder: one lesson per size, a video of that many bytes and a two-page sheet."""
    src.mkdir(parents=True)
    (src / "channel.json").write_text(json.dumps({"id": channel_id, "title": f"压力测试 {channel_id}"}),
                                      encoding="utf-8")
    for i, size in enumerate(sizes):
        d = src / f"lesson{i:02d}"
        d.mkdir()
        (d / "video.mp4").write_bytes(rng.randbytes(size))
        (d / "task.pdf").write_bytes(f"%PDF-1.4 {channel_id} task {i}".encode() + rng.randbytes(20_000))
        (d / "p1.jpg").write_bytes(rng.randbytes(30_000))
        (d / "p2.jpg").write_bytes(rng.randbytes(30_000))
        lesson = {
            "id": f"{channel_id}-{i:02d}", "title": f"第{i + 1}课 {channel_id}", "section": "课程教学",
            "path": {"stage": "小学", "grade": ["一年级", "二年级"][i % 2], "subject": ["语文", "数学"][i % 2],
                     "edition": "统编版", "volume": "上册", "unit": "第一单元", "lesson": f"第{i + 1}课",
                     "period": "第一课时"},
            # No pause points: only the phone changes the room, so the phone knows which event each command logs.
            "assets": [{"role": "video", "file": "video.mp4"},
                       {"role": "task_sheet", "file": "task.pdf", "pages": ["p1.jpg", "p2.jpg"]}],
        }
        (d / "lesson.json").write_text(json.dumps(lesson, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Mirror:
    """Build two channels into one mirror: `local` (one lesson, installed before start) and `soak` (synced)."""
    base = tmp_path_factory.mktemp("soak-mirror")
    keys.generate(base / "keys")
    key = keys.load_private(base / "keys" / keys.PRIVATE_NAME)
    rng = random.Random(SEED)
    mib = 1024 * 1024
    write_lessons(base / "local", "local", [6 * mib], rng)
    write_lessons(base / "soak", "soak", [rng.randint(VIDEO_MB[0] * mib, VIDEO_MB[1] * mib) for _ in range(LESSONS)],
                  rng)
    manifests = tuple(channel.build(base / name, key, base / "root") for name in ("local", "soak"))
    return Mirror(base / "root", base / "keys" / keys.PUBLIC_NAME, manifests)


# ---------------------------------------------------------------- the box process


@dataclass
class Run:
    """One life of `classbox serve`."""

    proc: subprocess.Popen[bytes]
    url: str
    healthy_after: float
    log: Path


URL_LINE = re.compile(r"手机打开 \(phone\):\s+(http://127\.0\.0\.1:\d+)/")


def start_box(data: Path, env: dict[str, str], log: Path) -> Run:
    """Start `classbox serve --port 0`, wait for its URL and for /-/health to answer; fail after HEALTHY_WITHIN."""
    began = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "classbox", "serve", "--host", "127.0.0.1", "--port", "0",
                                 "--no-demo", "--data", str(data)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = ""
    try:
        while time.monotonic() - began < HEALTHY_WITHIN:
            if not url:
                m = URL_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
                url = m.group(1) if m else ""
            if url:
                try:
                    with requests.get(url + "/-/health", timeout=2) as r:
                        if r.status_code == 200 and r.json()["version"]:
                            return Run(proc, url, time.monotonic() - began, log)
                except requests.RequestException:
                    pass
            if proc.poll() is not None:
                break
            time.sleep(0.01)
    except BaseException:
        kill(proc)
        raise
    kill(proc)
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
    raise AssertionError(f"the box did not answer /-/health within {HEALTHY_WITHIN} s (exit {proc.returncode}):\n"
                         f"{tail}")


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process this test started and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


# ---------------------------------------------------------------- the load: TVs and a phone


@dataclass
class Command:
    """One command the phone sent, and what became of it."""

    n: int
    gen: int                   # the life of the box it was sent to
    cmd: str
    kinds: frozenset[str]      # the event kind the command logs
    lesson: str | None
    sent: float
    answered: float = 0.0
    acked: bool = False        # HTTP 200 with the new state
    position: float | None = None  # the position of a paused answer: the event logs the same


class Stage:
    """Where the load finds the box: its URL while it runs, None while it is down; and what went wrong."""

    def __init__(self, clients: int) -> None:
        self._cond = threading.Condition()
        self.url: str | None = None
        self.gen = -1
        self.killing = -1
        self.clients = clients
        self._parked = 0
        self.stop = threading.Event()
        self.failures: list[str] = []

    def up(self, gen: int, url: str) -> None:
        """Let the load use a new life of the box."""
        with self._cond:
            self.gen, self.url = gen, url
            self._cond.notify_all()

    def going_down(self) -> None:
        """Say the box is about to be killed: errors from now on are expected."""
        with self._cond:
            self.killing, self.url = self.gen, None
            self._cond.notify_all()

    def current(self, name: str, url: str | None) -> tuple[int, str] | None:
        """Return (gen, url) to use, parking while the box is down; None once the soak stops."""
        with self._cond:
            if url is not None and url == self.url:
                return self.gen, url
            self._parked += 1
            self._cond.notify_all()
            try:
                while self.url is None and not self.stop.is_set():
                    self._cond.wait(0.1)
                return None if self.stop.is_set() or self.url is None else (self.gen, self.url)
            finally:
                self._parked -= 1

    def all_parked(self, timeout: float) -> bool:
        """Wait until every client has noticed the box is down."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._parked < self.clients:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def error(self, gen: int, what: str) -> None:
        """Note a failed request: expected once the box is being killed, a failure otherwise."""
        if self.killing < gen:
            self.fail(f"{what} while the box was up")

    def fail(self, what: str) -> None:
        """Record a failure for the main thread to report."""
        with self._cond:
            self.failures.append(what)


def listed_lessons(session: requests.Session, url: str) -> list[str]:
    """Return the ids of the lessons the box lists."""
    with session.get(url + "/api/v1/catalog", timeout=5) as r:
        r.raise_for_status()
        return [lesson["id"] for lesson in r.json()["lessons"]]


@dataclass
class TvStats:
    """What one TV read and checked."""

    ranges: int = 0
    bytes: int = 0


def tv(stage: Stage, mirror: Mirror, name: str, rng: random.Random, stats: TvStats) -> None:
    """Play listed lessons: read their video in ranges and check every byte against the mirror's file."""
    url: str | None = None
    session = requests.Session()
    session.trust_env = False
    try:
        while True:
            got = stage.current(name, url)
            if got is None:
                return
            gen, url = got
            try:
                lessons = listed_lessons(session, url)
                if not lessons:
                    time.sleep(0.2)
                    continue
                with session.get(f"{url}/api/v1/lessons/{rng.choice(lessons)}", timeout=5) as r:
                    if r.status_code != 200:
                        stage.fail(f"{name}: a listed lesson answered {r.status_code}")
                        continue
                    assets = r.json()["assets"]
                media = [assets[0]] + [p for a in assets for p in a["pages"]]
                blob = media[0] if rng.random() < 0.8 else rng.choice(media)
                start = rng.randrange(blob["size"])
                with mirror.blob_file(blob["sha256"]).open("rb") as original:
                    for _ in range(8):  # a TV playing on: consecutive ranges
                        if start >= blob["size"] or stage.url != url:
                            break
                        end = min(blob["size"], start + 256 * 1024) - 1
                        with session.get(url + blob["url"], headers={"Range": f"bytes={start}-{end}"},
                                         timeout=(5, 20)) as r:
                            body = r.content
                            if r.status_code != 206 or r.headers.get("Content-Range") != \
                                    f"bytes {start}-{end}/{blob['size']}":
                                stage.fail(f"{name}: range {start}-{end} of {blob['sha256']}: HTTP {r.status_code} "
                                           f"{r.headers.get('Content-Range')}")
                                break
                        if body != os.pread(original.fileno(), end - start + 1, start):
                            stage.fail(f"{name}: bytes {start}-{end} of {blob['sha256']} differ from the mirror's")
                            break
                        stats.ranges += 1
                        stats.bytes += len(body)
                        start = end + 1
                        time.sleep(0.03)
            except (requests.RequestException, ValueError) as exc:
                stage.error(gen, f"{name}: {type(exc).__name__}: {exc}")
                session.close()
                url = None
    finally:
        session.close()


def phone(stage: Stage, token: str, rng: random.Random, commands: list[Command], lock: threading.Lock) -> None:
    """Drive the room: open a listed lesson, then play, pause and seek; record each command and its answer."""
    room = urllib.parse.quote(ROOM)
    session = requests.Session()
    session.trust_env = False
    url: str | None = None
    n = 0
    lesson: str | None = None
    playing = False
    lessons: list[str] = []
    try:
        while True:
            got = stage.current("phone", url)
            if got is None:
                return
            if got[1] != url:  # a new life: the room starts empty
                lesson, playing, lessons = None, False, []
            gen, url = got
            c: Command | None = None
            try:
                if not lessons or rng.random() < 0.05:
                    lessons = listed_lessons(session, url)
                args: dict[str, Any]
                if lesson is None or rng.random() < 0.05:
                    cmd, args, kinds = "open", {"lesson": rng.choice(lessons), "start": "beginning"}, {"open"}
                elif rng.random() < 0.3:
                    cmd, args, kinds = "seek", {"by": rng.choice([10, -10, 30])}, {"seek"}
                elif playing:
                    cmd, args, kinds = "pause", {}, {"pause"}
                else:
                    cmd, args, kinds = "play", {}, {"play", "resume"}
                n += 1
                will_play = cmd == "play" or (cmd == "seek" and playing)
                c = Command(n, gen, cmd, frozenset(kinds), args.get("lesson", lesson), time.time())
                with lock:
                    commands.append(c)
                with session.post(f"{url}/api/v1/rooms/{room}/commands", timeout=(5, 20),
                                  json={"client": "soak-phone", "n": n, "cmd": cmd, "args": args},
                                  headers={"Cookie": f"{PAIR_COOKIE}={token}"}) as r:
                    body = r.json()
                    status = r.status_code
                c.answered = time.time()
                if status != 200:
                    stage.fail(f"phone: {cmd} answered {status}: {body}")
                    time.sleep(0.2)
                    continue
                c.acked = True
                lesson, playing = body["lesson"], body["playing"]
                c.position = None if playing else body["position"]
                if lesson != c.lesson or playing != will_play:
                    stage.fail(f"phone: {cmd} answered a state it should not have: {body}")
            except (requests.RequestException, ValueError) as exc:
                if c is not None:
                    c.answered = time.time()
                stage.error(gen, f"phone: {type(exc).__name__}: {exc}")
                session.close()
                url = None
                continue
            time.sleep(rng.uniform(0.02, 0.12))
    finally:
        session.close()


# ---------------------------------------------------------------- checks of the data directory


class BlobAudit:
    """Every file under blobs/sha256 must be named by its hash; files already checked are not hashed again."""

    def __init__(self, data: Path) -> None:
        self.dir = data / "blobs" / "sha256"
        self._known: dict[Path, tuple[int, int, int]] = {}
        self.hashed = 0

    def check(self) -> list[str]:
        """Return what is wrong in the store."""
        problems = []
        for dirpath, dirs, files in os.walk(self.dir):
            here = Path(dirpath)
            for d in dirs:
                if here != self.dir or not re.fullmatch(r"[0-9a-f]{2}", d):
                    problems.append(f"unexpected folder {here / d}")
            for name in files:
                path = here / name
                if not is_sha256(name) or here.name != name[:2]:
                    problems.append(f"{path} is in the store but is not a blob's name")
                    continue
                st = path.stat()
                stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
                if self._known.get(path) == stamp:
                    continue
                sha256, _ = hash_file(path)
                self.hashed += st.st_size
                if sha256 != name:
                    problems.append(f"{path} hashes to {sha256}: a partial or damaged file is visible")
                    continue
                self._known[path] = stamp
        return problems

    def verified(self, sha256: str, size: int) -> bool:
        """Tell whether a blob is in the store, checked, of this size."""
        path = self.dir / sha256[:2] / sha256
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if self._known.get(path) != (st.st_size, st.st_mtime_ns, st.st_ino):
            if hash_file(path)[0] != sha256:
                return False
            self._known[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return st.st_size == size


def vouched_bytes(data: Path) -> tuple[int, int, list[str]]:
    """Return (bytes the sync has made durable, raw bytes under blobs/ and partial/, problems)."""
    problems = []
    store = sum(p.stat().st_size for p in (data / "blobs").rglob("*") if p.is_file())
    raw = store + sum(p.stat().st_size for p in (data / "partial").iterdir() if p.is_file())
    vouched = store
    for side in (data / "partial").glob("*.json"):
        try:
            offset = int(json.loads(side.read_bytes())["offset"])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"side file {side.name} is not whole: {exc}")
            continue
        part = side.with_suffix(".part")
        size = part.stat().st_size if part.exists() else 0
        if size < offset:
            problems.append(f"{part.name} holds {size} bytes, its side file vouches for {offset}")
        vouched += min(offset, size)
    return vouched, raw, problems


def complete_lessons(data: Path, mirror: Mirror) -> set[str]:
    """Return the lessons whose every file is in the store at its size."""
    def present(sha256: str, size: int) -> bool:
        path = data / blob_relpath(sha256)
        return path.is_file() and path.stat().st_size == size

    return {lesson.id for lesson in mirror.lessons().values() if all(present(b.sha256, b.size) for b in lesson.blobs())}


def leftovers(data: Path) -> list[Path]:
    """Return the temp files and staged copies a crash left, which the next start must clear."""
    found = [p for p in data.rglob("*.tmp~") if p.is_file()]
    return found + [p for p in (data / "partial").iterdir() if p.is_file() and p.suffix not in (".part", ".json")
                    and p not in found]


def read_events(events_dir: Path) -> tuple[list[Event], list[str], int]:
    """Return the logged events in file order, what is wrong with the files, and how many torn tails there are."""
    events: list[Event] = []
    problems: list[str] = []
    torn = 0
    for path in sorted(events_dir.iterdir()):
        if not DAY_FILE.match(path.name):
            problems.append(f"unexpected file {path.name} in events/")
            continue
        lines = path.read_bytes().split(b"\n")
        torn += bool(lines[-1])
        for number, line in enumerate(lines[:-1], 1):
            try:
                events.append(Event.from_json(line))
            except ValueError as exc:
                problems.append(f"{path.name} line {number} is not a whole event ({exc}): a torn record was "
                                "not cut before the next append")
    return events, problems, torn


def check_events(events: list[Event], commands: list[Command], killed_at: dict[int, float]) \
        -> tuple[list[str], int, int]:
    """Match the log against the phone's commands; return problems, in-flight commands logged, and lost.

    killed_at gives the time each life of the box was killed. A command left unanswered by a kill
    was logged before that kill or not at all: the first command of the next life may be the very
    same one (open the same lesson), and must not be taken for it.
    """
    problems = []
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        repeated = sorted({s for s in seqs if seqs.count(s) > 1})
        gaps = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
        problems.append(f"sequence numbers are not 1..{len(seqs)}: repeated {repeated[:5]}, missing {gaps[:5]}, "
                        f"out of order at {[i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]][:5]}")
    ours = [e for e in events if e.room == ROOM]
    i = logged = lost = 0
    for c in commands:
        e = ours[i] if i < len(ours) else None
        fits = (e is not None and e.kind in c.kinds and e.lesson == c.lesson
                and c.sent - EPS <= e.time <= c.answered + EPS
                and (c.acked or e.time <= killed_at.get(c.gen, math.inf))
                and (c.position is None or abs((e.position or 0.0) - c.position) < 1e-6))
        if fits:
            i += 1
            logged += not c.acked
        elif c.acked:
            problems.append(f"acknowledged command {c.n} ({c.cmd} {c.lesson}) has no event in the log; "
                            f"the next one logged is {e}")
            break
        else:
            lost += 1
    else:
        if i < len(ours):
            problems.append(f"{len(ours) - i} logged events match no command the phone sent, e.g. {ours[i]}")
    return problems, logged, lost


def test_the_event_check_tells_a_lost_command_from_the_same_command_sent_again() -> None:
    # A phone opened 长度单位 as the box was killed (not logged), then opened it again in the
    # box's next life (logged) and pressed play. The second open's event is not the first's.
    def event(seq: int, t: float, kind: str) -> Event:
        return Event(seq, t, kind, ROOM, "长度单位", 0.0, {})

    lost = Command(1, 0, "open", frozenset({"open"}), "长度单位", sent=100.0, answered=100.1)
    again = Command(2, 1, "open", frozenset({"open"}), "长度单位", sent=100.4, answered=100.5, acked=True,
                    position=0.0)
    play = Command(3, 1, "play", frozenset({"play", "resume"}), "长度单位", sent=100.6, answered=100.7, acked=True)
    events = [event(1, 100.45, "open"), event(2, 100.65, "play")]
    assert check_events(events, [lost, again, play], {0: 100.05}) == ([], 0, 1)
    # Logged before the kill, it is the lost command's event; the second open then has none.
    problems, _, _ = check_events([event(1, 100.02, "open"), event(2, 100.65, "play")], [lost, again, play],
                                  {0: 100.05})
    assert problems and "acknowledged command 2 (open 长度单位) has no event" in problems[0]
    # A gap in the numbers is named.
    problems, _, _ = check_events([event(1, 100.45, "open"), event(3, 100.65, "play")], [lost, again, play],
                                  {0: 100.05})
    assert problems and "missing [2]" in problems[0]


# ---------------------------------------------------------------- a crash between a lesson's last file and activation


class Crash(Exception):
    """Stands in for a SIGKILL at one exact point."""


def test_a_lesson_completed_just_before_a_crash_is_listed_when_the_sync_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_source(tmp_path / "src", lessons=2)
    keys.generate(tmp_path / "keys")
    channel.build(src, keys.load_private(tmp_path / "keys" / keys.PRIVATE_NAME), tmp_path / "root")
    source = FolderSource(tmp_path / "root")
    config = Config.from_env({}, data_dir=tmp_path / "box", demo=False)

    def killed(*args: object) -> None:
        raise Crash  # the first lesson's files are all in the store; its manifest is not active yet

    monkeypatch.setattr(channel, "activate", killed)
    with Box(config) as box, pytest.raises(Crash):
        box.bring_in(source, "test", keys.load_public(tmp_path / "keys" / keys.PUBLIC_NAME))
    monkeypatch.undo()

    def killed_again(progress: Progress) -> None:
        if progress.lesson == "长度单位":  # about to fetch the second lesson
            raise Crash

    with Box(config) as box:
        assert box.catalog.lesson("test-lesson-0") is None and box.store.has_all(
            channel.parse_manifest((tmp_path / "root/channels/test/manifest.json").read_bytes()).lessons[0].blobs())
        with pytest.raises(Crash):
            box.bring_in(source, "test", on_progress=killed_again)
        assert box.catalog.lesson("test-lesson-0") is not None, "a whole lesson waits for the next one to be listed"


# ---------------------------------------------------------------- the soak


@dataclass
class Figures:
    """What the soak measured, for the summary."""

    healthy: list[float] = field(default_factory=list)
    mid_download: int = 0
    unvouched: int = 0         # bytes in .part files past their side file's offset at the kills: fetched again
    leftovers_cleared: int = 0
    torn_tails: int = 0
    synced_at_kill: int | None = None


def nginx_bytes_sent(access_log: Path) -> int:
    """Return the body bytes nginx sent for blobs (combined log format), finished requests only."""
    total = 0
    for m in re.finditer(r'"GET (\S+) HTTP/1\.[01]" (\d{3}) (\d+)', access_log.read_text(encoding="utf-8")):
        if "/blobs/" in m.group(1):
            total += int(m.group(3))
    return total


@pytest.fixture
def load() -> Iterator[Stage]:
    """A stage for the load clients; stopped at the end whatever happens."""
    stage = Stage(TVS + 1)
    yield stage
    stage.stop.set()


@pytest.mark.slow
def test_serve_survives_sigkill_100_times(tmp_path: Path, mirror: Mirror, load: Stage) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    print(f"\ncrash soak: seed {SEED}, {KILLS} kills after {DELAY[0]}-{DELAY[1]} s, sync capped at {RATE} B/s")
    data = tmp_path / "data"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSBOX_")}
    env.update(CLASSBOX_ZEROCONF_INTERFACES="off", CLASSBOX_SYNC_INTERVAL="10", CLASSBOX_SYNC_MAX_RATE=str(RATE),
               CLASSBOX_USB_ROOTS=str(tmp_path / "no-usb"), CLASSBOX_PROVISION=str(tmp_path / "none.toml"))
    cli = [sys.executable, "-m", "classbox"]
    for args in (["channel", "add", str(mirror.root), "--channel", "local", "--trust", str(mirror.pubkey)],
                 ["subscribe", "soak", "--trust", str(mirror.pubkey)]):
        setup = subprocess.run([*cli, *args, "--data", str(data)], capture_output=True, text=True, env=env,
                               timeout=60)
        assert setup.returncode == 0, setup.stderr
    needed = mirror.needed("soak")
    everything = set(mirror.lessons())
    audit = BlobAudit(data)
    figures = Figures()
    commands: list[Command] = []
    killed_at: dict[int, float] = {}
    lock = threading.Lock()
    stats = [TvStats() for _ in range(TVS)]
    threads: list[threading.Thread] = []
    run: Run | None = None

    with nginx(mirror.root, tmp_path / "nginx", extra=f"access_log {tmp_path / 'nginx' / 'access.log'};") as mirror_url:
        env["CLASSBOX_SYNC_SOURCES"] = mirror_url
        try:
            run = start_box(data, env, logs / "run-000.log")
            figures.healthy.append(run.healthy_after)
            with requests.get(f"{run.url}/api/v1/rooms/{urllib.parse.quote(ROOM)}/pairing", timeout=5) as r:
                code = r.json()["code"]
            with requests.post(f"{run.url}/api/v1/rooms/{urllib.parse.quote(ROOM)}/pair", json={"code": code},
                               timeout=5) as r:
                assert r.status_code == 200, r.text
                token = r.cookies[PAIR_COOKIE]
            load.up(0, run.url)
            threads = [threading.Thread(target=tv, args=(load, mirror, f"tv{i}", random.Random(SEED + i), stats[i]),
                                        name=f"soak-tv{i}", daemon=True) for i in range(TVS)]
            threads.append(threading.Thread(target=phone, args=(load, token, random.Random(SEED - 1), commands, lock),
                                            name="soak-phone", daemon=True))
            for t in threads:
                t.start()

            last_vouched = 0
            complete_before: set[str] = set()
            for kill_no in range(1, KILLS + 1):
                # Serve for a while, then pull the plug.
                delay = rng.uniform(*DELAY)
                time.sleep(delay)
                assert not load.failures, load.failures[:5]
                load.going_down()
                kill(run.proc)
                killed_at[kill_no - 1] = time.time()  # the life load.up() numbered kill_no - 1 logs nothing more
                assert load.all_parked(PARK_WITHIN), "the load did not notice the kill"
                assert not load.failures, load.failures[:5]

                # The data directory as the killed process left it.
                json.loads((data / "state.json").read_bytes())  # loads, or the box would not start
                problems = audit.check()
                vouched, raw, side_problems = vouched_bytes(data)
                problems += side_problems
                if vouched < last_vouched:
                    problems.append(f"the sync went backwards: {last_vouched} bytes vouched for before, {vouched} now")
                if any((data / "partial").glob("*.part")):
                    figures.mid_download += 1
                figures.unvouched += raw - vouched
                if figures.synced_at_kill is None and everything <= complete_lessons(data, mirror):
                    figures.synced_at_kill = kill_no
                last_vouched = vouched
                events, event_problems, torn = read_events(data / "events")
                figures.torn_tails += torn
                with lock:
                    done = list(commands)
                matched, _, _ = check_events(events, done, killed_at)
                problems += event_problems + matched
                left = leftovers(data)
                complete_before = complete_lessons(data, mirror)
                parts = [p.stem for p in (data / "partial").glob("*.part")]
                assert not problems, f"after kill {kill_no}: " + "; ".join(problems[:5])

                # Start again on the same data directory.
                run = start_box(data, env, logs / f"run-{kill_no:03d}.log")
                figures.healthy.append(run.healthy_after)
                load.up(kill_no, run.url)
                still = [p for p in left if p.exists()]
                assert not still, f"after kill {kill_no}: leftovers not cleared at start: {still[:5]}"
                figures.leftovers_cleared += len(left)
                with requests.Session() as s:
                    s.trust_env = False
                    # A channel whose first lesson completed just before the kill is activated by the sync
                    # as it starts again, a moment after the box answers.
                    listed = set(listed_lessons(s, run.url))
                    soon = time.monotonic() + 5
                    while not complete_before <= listed and time.monotonic() < soon:
                        time.sleep(0.05)
                        listed = set(listed_lessons(s, run.url))
                    complete_now = complete_lessons(data, mirror)
                    assert complete_before <= listed <= complete_now, (
                        f"after kill {kill_no}: listed {sorted(listed)}, complete before the kill "
                        f"{sorted(complete_before)}, complete now {sorted(complete_now)}")
                    for lesson_id in listed:
                        for b in mirror.lessons()[lesson_id].blobs():
                            assert audit.verified(b.sha256, b.size), f"{lesson_id} is listed but {b.sha256} is not in"
                    for sha256 in parts:  # a file being downloaded is not served until it is whole and verified
                        with s.head(f"{run.url}/media/{sha256}", timeout=5) as r:
                            if r.status_code != 404:
                                size = next(b.size for m in mirror.manifests for b in m.blobs().values()
                                            if b.sha256 == sha256)
                                assert r.status_code == 200 and audit.verified(sha256, size), \
                                    f"after kill {kill_no}: {sha256} served while partial ({r.status_code})"
                print(f"kill {kill_no:3d} after {delay:.2f} s: healthy in {run.healthy_after:.2f} s, "
                      f"{vouched / 1e6:6.1f} MB vouched ({raw / 1e6:6.1f} MB raw), {len(listed):2d} lessons listed, "
                      f"{len(events)} events, {len(left)} leftovers")

            # After the last kill: let the sync finish, with the load still on.
            finish_within = 60 + 2 * max(0, needed - last_vouched) / RATE
            deadline = time.monotonic() + finish_within
            with requests.Session() as s:
                s.trust_env = False
                while set(listed_lessons(s, run.url)) != everything:
                    assert time.monotonic() < deadline, f"the sync did not finish within {finish_within:.0f} s"
                    assert not load.failures, load.failures[:5]
                    time.sleep(0.5)
            time.sleep(1.0)  # a little more playing on the whole channel
            assert not load.failures, load.failures[:5]
            load.going_down()
            load.stop.set()
            for t in threads:
                t.join(15)
                assert not t.is_alive(), f"{t.name} did not stop"
            run.proc.send_signal(signal.SIGTERM)
            assert run.proc.wait(20) == 0, "the box did not stop cleanly on SIGTERM"
        except BaseException:
            if run is not None:
                print(f"--- the end of {run.log}:\n" + run.log.read_text(encoding="utf-8", errors="replace")[-4000:])
            raise
        finally:
            load.stop.set()
            if run is not None:
                kill(run.proc)
            for t in threads:
                t.join(15)
        wire = nginx_bytes_sent(tmp_path / "nginx" / "access.log")

    # The end state: the whole channel, byte for byte; the lock free; the log whole.
    fd = os.open(data / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a process still held it
    finally:
        os.close(fd)
    assert not audit.check()
    for m in mirror.manifests:
        for b in m.blobs().values():
            assert (data / blob_relpath(b.sha256)).read_bytes() == mirror.blob_file(b.sha256).read_bytes()
        assert (data / "channels" / m.id / "manifest.json").read_bytes() == \
            (mirror.root / "channels" / m.id / "manifest.json").read_bytes()
    assert not any((data / "partial").iterdir()), list((data / "partial").iterdir())
    events, event_problems, torn = read_events(data / "events")
    problems, logged, lost = check_events(events, commands, killed_at)
    assert not event_problems + problems, (event_problems + problems)[:5]
    acked = sum(c.acked for c in commands)
    in_flight = sum(not c.acked for c in commands)
    # A kill loses what was received since the last checkpoint, and what sat in socket buffers.
    wasted_allowance = needed + figures.mid_download * (CHECKPOINT_BYTES + IN_FLIGHT_SLACK)
    assert needed <= wire <= wasted_allowance, f"{wire} bytes over the wire for {needed} needed"
    assert figures.mid_download >= KILLS // 4, "too few kills landed in the middle of a download"
    tracebacks = [p.name for p in sorted(logs.iterdir()) if "Traceback" in p.read_text(encoding="utf-8")]
    assert not tracebacks, f"the box logged a traceback in {tracebacks[:5]}"
    assert acked > 20 * KILLS // 10 and sum(s.ranges for s in stats) > KILLS, "the load was too light to count"

    healthy = figures.healthy
    print(f"crash soak, seed {SEED}: {KILLS} SIGKILLs, {len(healthy)} starts, {time.monotonic() - began:.0f} s")
    print(f"  start to healthy: mean {statistics.mean(healthy):.2f} s, median {statistics.median(healthy):.2f} s, "
          f"max {max(healthy):.2f} s")
    print(f"  sync: {needed / 1e6:.1f} MB needed, {wire / 1e6:.1f} MB sent by nginx ({wire / needed:.2f}x); "
          f"{figures.mid_download} kills with a download in flight; whole channel in "
          + (f"by kill {figures.synced_at_kill}" if figures.synced_at_kill else "after the last kill"))
    print(f"    of the {(wire - needed) / 1e6:.1f} MB extra: {figures.unvouched / 1e6:.1f} MB written but not yet "
          f"vouched for at a kill, {(wire - needed - figures.unvouched) / 1e6:.1f} MB in socket buffers at a kill")
    print(f"  events: {len(events)} logged, seq 1..{len(events)} without gaps; {acked} commands acknowledged, all "
          f"logged; {in_flight} in flight at a kill ({logged} logged, {lost} not); {figures.torn_tails} torn tails "
          "seen after kills")
    print(f"  TVs: {sum(s.ranges for s in stats)} ranges, {sum(s.bytes for s in stats) / 1e6:.0f} MB checked "
          f"against the mirror; {figures.leftovers_cleared} leftover temp files cleared at start; "
          f"{audit.hashed / 1e6:.0f} MB of store hashed")
