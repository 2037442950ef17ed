"""A power cut at every fsync and rename of a sync, of playback and of state edits: the box comes back whole.

A box holding version 1 of a channel is snapshotted. Then, with `storage.recording()` on, it syncs
version 2 (two lessons more, one lesson's files changed) from a peer box's /mirror, served by a real
waitress on port 0 behind a proxy that cuts every connection after 4-40 KB, so downloads resume from
their part files; subscribes to a second channel and copies it from a folder; and meanwhile a phone
opens, plays, pauses and seeks in a room (events) and the admin renames the school, sets a timetable,
pins and unpins a lesson (state.json). The trace is replayed onto copies of the snapshot as
tests/powerloss.py describes: for a crash point (just before an fsync, a directory fsync or a rename,
or at the end) and a seed that decides the fate of every write and change of name not yet durable,
the files a power cut could leave are written out and opened as `classbox serve` opens them at start
(open_as_serve_does). Then:

- it starts; state.json, each manifest and signature, each blob, side file and every other name only
  ever replaced by rename holds the old or the new bytes of the cut's moment, never a mix (so each
  state edit is seen before or after it, whole); a lesson listed before the workload is still listed;
- every file under blobs/sha256 hashes to its name and has its size; every lesson listed has all its
  files, each verified; a partial download's side file vouches only for bytes on disk and right;
- the playback log holds whole events with strictly increasing numbers, each one the workload wrote,
  every acknowledged event (append returned: written and fsynced) among them, and the next event
  gets a number above all of them and reads back;
- for a sample of the cuts, a sync afterwards completes and leaves both channels fully synced.

Sampling: a crash point p (numbered in trace order) is built under seed s when p % STRIDE ==
s % STRIDE, so each of the SEEDS seeds covers 1/STRIDE of the points and every point is built under
SEEDS / STRIDE seeds; every SYNC_EVERY-th state of a seed also syncs after recovery. The figures are
printed (`pytest -s tests/test_power_loss.py`).

test_a_channel_is_activated_whole checks, around each channel activation and under every seed, that a
manifest and its signature are a pair once the box is up (a cut between the two writes used to leave
the new signature on the old manifest, which peers and USB drives refused).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from classbox import channel, create_app, keys, storage
from classbox.box import Box
from classbox.classroom import DEFAULT_ROOM
from classbox.config import PACKAGE_DIR, Config
from classbox.errors import ChannelRejected
from classbox.events import DAY_FILE, Event
from classbox.sync.download import Limits
from classbox.sync.sources import Backoff, FolderSource, HttpSource, Transfer
from classbox.sync.worker import SyncWorker

from .conftest import start_server, write_source
from .netfaults import Fault, FaultProxy
from .powerloss import Disk, Trace

SEEDS = 20
STRIDE = 2          # each crash point is built under SEEDS // STRIDE seeds
SYNC_EVERY = 20     # every SYNC_EVERY-th state built also syncs after recovery
ROOM = DEFAULT_ROOM
PHONE = "phone-1"
FAST = Transfer(limits=Limits(connect_timeout=2, read_timeout=2, min_rate=2000, stall_window=1.0, deadline=60),
                backoff=Backoff(base=0.01, cap=0.05, max_failures=6))


@dataclass
class World:
    """The recorded workload and everything needed to judge a crash state."""

    trace: Trace
    final: Path                              # the data directory as the workload left it
    key: Path                                # the publisher's public key (both channels)
    peer_url: str                            # the peer box's /mirror, without faults
    extra_src: Path                          # the second channel's folder
    acks: list[tuple[int, int]]              # (ops done when acknowledged, last event number then)
    events: dict[int, str]                   # every event logged, by number
    snapshot_seq: int                        # the last event number in the snapshot
    listed_before: frozenset[str]            # lessons the snapshot lists
    expected: dict[str, bytes]               # channel id -> manifest a full sync ends with
    blobs: dict[str, bytes]                  # every file of every channel, by sha256
    figures: dict[str, Any] = field(default_factory=dict)


def _channel_source(src: Path, channel_id: str, lessons: int, rng: random.Random, keep: int = 0) -> None:
    """Write a channel folder of small random files; the first `keep` lessons keep the files they had."""
    old = {p.relative_to(src): p.read_bytes() for p in src.rglob("*") if p.is_file()} if src.exists() else {}
    write_source(src, channel_id, lessons=lessons)
    for i in range(lessons):
        d = src / f"lesson{i}"
        for name, size in (("video.mp4", rng.randint(30_000, 60_000)), ("p1.jpg", 9_000), ("p2.jpg", 11_000)):
            previous = old.get(Path(f"lesson{i}") / name)
            (d / name).write_bytes(previous if i < keep and previous else rng.randbytes(size))


def _actions(box: Box, world_acks: list[tuple[int, int]], rec: storage.Recorder) -> Iterator[None]:
    """Yield once per step of the phone's and the admin's work, each step done and acknowledged."""
    room = box.classroom
    n = 0

    def cmd(name: str, **args: Any) -> None:
        nonlocal n
        n += 1
        room.command(ROOM, PHONE, n, name, args)

    today = time.localtime().tm_wday + 1
    other_day = today % 7 + 1  # a timetable that never opens a lesson while the test runs
    steps = [
        lambda: box.state.set("school", "石门教学点"),
        lambda: cmd("open", lesson="test-lesson-0"),
        lambda: cmd("play"),
        lambda: room.timetables.set_periods(ROOM, [
            {"weekday": other_day, "number": 1, "start": "08:00", "end": "08:40", "subject": "语文"}]),
        lambda: cmd("pause"),
        lambda: box.pin("test-lesson-1"),
        lambda: cmd("seek", by=10),
        lambda: cmd("play"),
        lambda: box.state.set("school", "石门村教学点"),
        lambda: cmd("pause"),
        lambda: cmd("open", lesson="test-lesson-1"),
        lambda: room.timetables.set_periods(ROOM, [
            {"weekday": other_day, "number": 1, "start": "08:00", "end": "08:40", "subject": "语文"},
            {"weekday": other_day, "number": 2, "start": "08:50", "end": "09:30", "subject": "数学"}]),
        lambda: cmd("play"),
        lambda: box.pin("test-lesson-1", pinned=False),
        lambda: cmd("stop"),
    ]
    for step in steps:
        step()
        world_acks.append((len(rec.ops), box.events.last_seq))
        yield
    while True:
        cmd("open", lesson="test-lesson-0")
        world_acks.append((len(rec.ops), box.events.last_seq))
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Record the workload once; the peer box keeps serving for the syncs after recovery."""
    base = tmp_path_factory.mktemp("powerloss")
    rng = random.Random(20261201)
    keys.generate(base / "keys")
    private = keys.load_private(base / "keys" / keys.PRIVATE_NAME)
    pub = base / "keys" / keys.PUBLIC_NAME
    now = time.time()
    src = base / "src"
    _channel_source(src, "test", 2, rng)
    channel.build(src, private, base / "v1", now=now - 60)
    _channel_source(src, "test", 4, rng, keep=1)  # lesson 0 unchanged, lesson 1's files new, 2 and 3 new
    channel.build(src, private, base / "v2", now=now)
    extra_src = base / "extra-src"
    _channel_source(extra_src, "extra", 2, rng)
    channel.build(extra_src, private, base / "extra")

    peer_app = create_app(Config.from_env({}, data_dir=base / "peer", demo=False))
    peer_app.extensions["classbox"].add_channel(base / "v2", keys.load_public(pub), "test")
    server, stop = start_server(peer_app)
    proxy = FaultProxy(server.port, lambda n: Fault() if n < 2 else Fault(cut_after=rng.randint(4_000, 40_000)))
    try:
        config = Config.from_env({}, data_dir=base / "box", demo=False)
        with Box(config) as box:
            box.first_start()
            box.add_channel(base / "v1", keys.load_public(pub), "test")
            box.classroom.command(ROOM, "admin", 1, "open", {"lesson": "test-lesson-1"})
            listed_before = frozenset(e.lesson.id for e in box.catalog.browse({}).entries)
            snapshot_seq = box.events.last_seq
        snapshot = Disk.load(config.data_dir)

        acks: list[tuple[int, int]] = []
        started = time.monotonic()
        with storage.recording(config.data_dir) as rec, Box(config) as box:
            steps = _actions(box, acks, rec)
            calls = 0

            def interleave(_progress: object) -> None:
                nonlocal calls
                calls += 1
                if calls % 3 == 0:
                    next(steps)

            for _ in range(3):
                next(steps)
            result = box.bring_in(HttpSource(f"{proxy.url}/mirror"), "test", transfer=FAST, on_progress=interleave)
            assert result.activated and not result.missing_lessons, result.errors
            next(steps)
            box.subscribe("extra", {}, keys.load_public(pub))
            acks.append((len(rec.ops), box.events.last_seq))
            result = box.bring_in(FolderSource(base / "extra"), "extra", on_progress=interleave)
            assert result.activated and not result.missing_lessons, result.errors
            for _ in range(3):
                next(steps)
            events = {e.seq: e.to_json() for e in box.events.read()}
        recorded = time.monotonic() - started
        expected = {cid: (root / "channels" / cid / channel.MANIFEST).read_bytes()
                    for cid, root in (("test", base / "v2"), ("extra", base / "extra"))}
        trace = Trace(snapshot, rec.ops)
        blobs = {p.name: p.read_bytes() for mirror in ("v1", "v2", "extra")
                 for p in (base / mirror / "blobs").rglob("*") if p.is_file()}
        yield World(trace, config.data_dir, pub, f"{server.url}/mirror", base / "extra", acks, events,
                    snapshot_seq, listed_before, expected, blobs,
                    {"ops": len(rec.ops), "crash_points": len(trace.crash_points), "record_s": recorded,
                     "cuts": proxy.connections - 2})
    finally:
        proxy.close()
        stop()
        peer_app.extensions["classbox"].close()


# ---------------------------------------------------------------- what a crash state must satisfy


def _replaced_names(trace: Trace) -> dict[str, list[tuple[int, int, bytes | None]]]:
    """Return, per name only ever replaced by rename or removed, its changes: (op index, durable at, bytes)."""
    changes: dict[str, list[tuple[int, int, bytes | None]]] = {}
    created = {s.op.path for s in trace.steps if s.op.kind == "create"}
    content: dict[int, bytes] = dict(trace.snapshot.data)
    for i, step in enumerate(trace.steps):
        op = step.op
        if op.kind == "create":
            content[step.inode] = b""
        elif op.kind == "write":
            old = content[step.inode]
            old += bytes(max(0, op.offset - len(old)))
            content[step.inode] = old[:op.offset] + op.data + old[op.offset + len(op.data):]
        elif op.kind == "truncate":
            old = content[step.inode]
            content[step.inode] = old[:op.offset] + bytes(max(0, op.offset - len(old)))
        elif op.kind == "rename":
            changes.setdefault(op.target, []).append((i, step.durable_at, content[step.inode]))
            changes.setdefault(op.path, []).append((i, step.durable_at, None))
        elif op.kind == "unlink":
            changes.setdefault(op.path, []).append((i, step.durable_at, None))
    return {name: c for name, c in changes.items() if name not in created}


def _allowed(trace: Trace, changes: list[tuple[int, int, bytes | None]], name: str, k: int) -> list[bytes | None]:
    """Return what a name may hold after a cut before op k: the last durable change's bytes, or a later one's."""
    allowed = [trace.snapshot.file(name)]
    for i, durable_at, data in changes:
        if i >= k:
            break
        if durable_at < k:
            allowed = [data]
        else:
            allowed.append(data)
    return allowed


def _events_on_disk(data: Path) -> list[Event]:
    """Return the whole events of the log files in file order, skipping torn or garbled lines as readers do."""
    out = []
    for path in sorted(p for p in (data / "events").iterdir() if DAY_FILE.match(p.name)):
        for line in path.read_bytes().split(b"\n")[:-1]:
            try:
                out.append(Event.from_json(line))
            except ValueError:
                continue
    return out


def _check_store(box: Box, where: str) -> None:
    sizes = {sha: b.size for m in box.catalog.manifests() for sha, b in m.blobs().items()}
    for sha in box.store.blobs():
        data = box.store.path(sha).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha, f"{where}: blob {sha[:12]} does not match its hash"
        assert sha not in sizes or sizes[sha] == len(data), f"{where}: blob {sha[:12]} has the wrong size"
    for entry in box.catalog.browse({}).entries:
        for blob in entry.lesson.blobs():
            path = box.store.path(blob.sha256)
            assert path.is_file(), f"{where}: {entry.lesson.id} is listed but {blob.sha256[:12]} is missing"
            data = path.read_bytes()
            assert len(data) == blob.size and hashlib.sha256(data).hexdigest() == blob.sha256, \
                f"{where}: {entry.lesson.id} is listed but cannot play"


def open_as_serve_does(data: Path) -> Box:
    """Open a data directory as `classbox serve` does before it listens.

    That is create_app(), less the Flask routes and the sync worker it builds without starting,
    which touch no file (and would cost most of the time here), then first_start() and setup.
    """
    box = Box(Config.from_env({}, data_dir=data, demo=False))
    try:
        SyncWorker(box)
        box.first_start()
        box.setup.start()
    except BaseException:
        box.close()
        raise
    return box


def check_crash_state(world: World, k: int, data: Path, where: str, names: dict[str, list[Any]],
                      sync: bool, seen: Counter[str]) -> None:
    """Open a crash state as `serve` does at start and assert everything the module docstring promises."""
    trace = world.trace
    for name, changes in names.items():
        path = data / name
        held = path.read_bytes() if path.is_file() else None
        allowed = _allowed(trace, changes, name, k)
        assert held in allowed, f"{where}: {name} holds neither the old nor the new bytes"
        if len(allowed) > 1:
            seen["a rename not yet durable"] += 1
            seen["... of which undone"] += held != allowed[-1]
    state = json.loads((data / "state.json").read_bytes())
    assert isinstance(state, dict)
    seen["a temp file left over"] += any(p.name.endswith(storage.TEMP_SUFFIX) for p in data.rglob("*"))
    for side in (data / "partial").glob("*.json"):
        # A resume keeps the bytes the side file vouches for: they must be on disk, and right.
        offset = json.loads(side.read_bytes())["offset"]
        part = side.with_suffix(".part")
        held = part.read_bytes() if part.is_file() else b""
        if len(held) >= offset:
            assert held[:offset] == world.blobs[side.stem][:offset], \
                f"{where}: {side.name} vouches for {offset} bytes of {part.name} that are not the file's"
        seen["a partial download to resume"] += offset > 0
    seen["a torn or garbled events tail"] += any(
        not p.read_bytes().endswith(b"\n") for p in (data / "events").iterdir() if p.stat().st_size)

    on_disk = _events_on_disk(data)
    seqs = [e.seq for e in on_disk]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), f"{where}: event numbers {seqs} out of order"
    for e in on_disk:
        assert world.events.get(e.seq) == e.to_json(), f"{where}: event {e.seq} is not one the workload logged"
    acked = max([world.snapshot_seq] + [seq for done, seq in world.acks if done <= k])
    assert set(range(1, acked + 1)) <= set(seqs), f"{where}: an acknowledged event (up to {acked}) is missing: {seqs}"

    box = open_as_serve_does(data)
    try:
        listed = {e.lesson.id for e in box.catalog.browse({}).entries}
        assert world.listed_before <= listed, f"{where}: {sorted(world.listed_before - listed)} no longer listed"
        _check_store(box, where)
        assert box.state.get("initialized_at") is not None
        next_event = box.events.append("stop", ROOM)
        assert next_event.seq > max(seqs, default=0), f"{where}: event number {next_event.seq} used again"
        assert box.events.read()[-1] == next_event, f"{where}: the first event after the cut does not read back"
        if sync:
            key = keys.load_public(world.key)
            first = box.bring_in(HttpSource(world.peer_url), "test", key, transfer=FAST)
            second = box.bring_in(FolderSource(world.extra_src), "extra", key)
            assert not first.errors and not second.errors, (first.errors, second.errors)
            for cid, manifest in world.expected.items():
                assert box.channel_file(cid, channel.MANIFEST) == manifest, f"{where}: {cid} not at the new version"
            wanted = {lesson.id for m in box.catalog.manifests() for lesson in m.lessons}
            assert {e.lesson.id for e in box.catalog.browse({}).entries} == wanted == {
                lesson.id for data_ in world.expected.values() for lesson in channel.parse_manifest(data_).lessons}
            _check_store(box, where)
    finally:
        box.close()


# ---------------------------------------------------------------- the tests


def test_every_durable_write_goes_through_storage() -> None:
    pattern = re.compile(r"os\.fsync|\.truncate\(|os\.replace|os\.rename")
    found = [f"{p.relative_to(PACKAGE_DIR)}:{n}" for p in sorted(PACKAGE_DIR.rglob("*.py")) if p.name != "storage.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, f"durable writes outside classbox/storage.py: {found}"


def test_the_trace_holds_every_durable_write(world: World) -> None:
    """Replayed in full onto the snapshot, the trace gives exactly the directory the workload left."""
    replayed = world.trace.crash(len(world.trace.ops))
    left = Disk.load(world.final)
    files = {name: replayed.data[inode] for name, inode in replayed.visible() if name != "lock"}
    assert files == {name: left.data[inode] for name, inode in left.visible() if name != "lock"}
    assert world.figures["crash_points"] > 200
    assert world.figures["cuts"] > 5, "the link cut connections, so downloads resumed"
    kinds = {op.kind for op in world.trace.ops}
    assert kinds == set(storage.OP_KINDS), f"the workload never did {set(storage.OP_KINDS) - kinds}"


@pytest.mark.slow
def test_power_cut_at_every_crash_point(world: World, tmp_path: Path) -> None:
    trace = world.trace
    names = _replaced_names(trace)
    points = trace.crash_points
    started = time.monotonic()
    built = synced = 0
    covered: set[int] = set()
    seen: Counter[str] = Counter()
    for seed in range(SEEDS):
        mine = [k for n, k in enumerate(points) if n % STRIDE == seed % STRIDE]
        for n, k in enumerate(mine):
            where = f"seed {seed}, cut before op {k} of {len(trace.ops)}"
            disk = trace.crash(k, random.Random(f"{seed}:{k}"))
            data = tmp_path / f"s{seed}-k{k}"
            disk.write_out(data)
            sync = n % SYNC_EVERY == seed % SYNC_EVERY
            check_crash_state(world, k, data, where, names, sync, seen)
            shutil.rmtree(data)
            built += 1
            synced += sync
            covered.add(k)
    elapsed = time.monotonic() - started
    assert covered == set(points)
    print(f"\npower loss: {world.figures['ops']} durable ops recorded in {world.figures['record_s']:.1f} s "
          f"({world.figures['cuts']} connections cut), {len(points)} crash points, {SEEDS} seeds, "
          f"{built} crash states built and recovered ({SEEDS // STRIDE} seeds per point), "
          f"{synced} synced afterwards, {elapsed:.1f} s; states with: "
          + ", ".join(f"{what} {n}" for what, n in seen.items()))


def test_a_channel_is_activated_whole(world: World, tmp_path: Path) -> None:
    """A cut while a channel is activated leaves, once the box is up, its manifest with its own signature."""
    key = keys.load_public(world.key)
    trace = world.trace
    touching = [i for i, op in enumerate(trace.ops) if op.path.startswith("channels/")]
    window = [k for k in trace.crash_points if any(abs(k - i) <= 6 for i in touching)]
    bad = []
    for seed in range(SEEDS):
        for k in window:
            data = tmp_path / f"s{seed}-k{k}"
            trace.crash(k, random.Random(f"{seed}:{k}")).write_out(data)
            open_as_serve_does(data).close()
            for cid in world.expected:
                manifest = data / "channels" / cid / channel.MANIFEST
                sig = manifest.with_name(channel.SIGNATURE)
                if manifest.is_file() and sig.is_file():
                    try:
                        channel.check_signed(manifest.read_bytes(), sig.read_bytes(), key, time.time())
                    except ChannelRejected:
                        bad.append(f"seed {seed}, cut before op {k}: {cid}")
            shutil.rmtree(data)
    assert len(window) > 10
    assert not bad, (f"{len(bad)} of {SEEDS * len(window)} crash states around activations hold a manifest and a "
                     f"signature that disagree: {bad[:5]}")
