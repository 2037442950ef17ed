"""Sync from a real nginx mirror through a link that cuts, stalls, trickles and lies; and box to box."""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from classbox import channel, keys
from classbox.box import Box
from classbox.config import Config
from classbox.errors import ChannelRejected
from classbox.sync.download import Limits, Throttle
from classbox.sync.engine import Progress
from classbox.sync.sources import Backoff, HttpSource, Transfer, open_source

from .conftest import Publisher, write_source
from .netfaults import Fault, FaultProxy, nginx
from .test_channel import snapshot

FAST = Transfer(limits=Limits(connect_timeout=2, read_timeout=2, min_rate=2000, stall_window=1.0, deadline=60),
                backoff=Backoff(base=0.01, cap=0.05, max_failures=4))


STALL = Transfer(limits=Limits(connect_timeout=1, read_timeout=1, min_rate=2000, stall_window=1.0, deadline=30),
                 backoff=Backoff(base=0.01, cap=0.05, max_failures=2))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Build a multi-megabyte channel (3 lessons of random video) into a mirror folder; return (root, pubkey)."""
    base = tmp_path_factory.mktemp("mirror")
    keys.generate(base / "keys")
    src = write_source(base / "src", lessons=3)
    rng = random.Random(7)
    for i in range(3):
        (src / f"lesson{i}" / "video.mp4").write_bytes(rng.randbytes(900_000 + 100_000 * i))
    channel.build(src, keys.load_private(base / "keys" / "publisher.key"), base / "root")
    return base / "root", base / "keys" / "publisher.pub"


@pytest.fixture(scope="module")
def nginx_url(mirror: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nginx(mirror[0], tmp_path_factory.mktemp("nginx")) as url:
        yield url


def needed_bytes(root: Path) -> int:
    doc = json.loads((root / "channels" / "test" / "manifest.json").read_bytes())
    blobs = {}
    for lesson in doc["lessons"]:
        for a in lesson["assets"]:
            blobs[a["sha256"]] = a["size"]
            for p in a.get("pages", []):
                blobs[p["sha256"]] = p["size"]
    return sum(blobs.values())


def assert_identical(box: Box, root: Path) -> None:
    """Every blob of the channel is in the box, byte-identical to the mirror's."""
    manifest = channel.parse_manifest((root / "channels" / "test" / "manifest.json").read_bytes())
    for blob in manifest.blobs().values():
        data = box.store.path(blob.sha256).read_bytes()
        assert hashlib.sha256(data).hexdigest() == blob.sha256
    assert (box.data.channels / "test" / "manifest.json").read_bytes() == \
        (root / "channels" / "test" / "manifest.json").read_bytes()


def assert_only_playable(box: Box) -> int:
    """Every lesson the catalogue lists has all its files, each matching its hash; return how many are listed."""
    listed = box.catalog.browse({}).entries
    for entry in listed:
        for blob in entry.lesson.blobs():
            data = box.store.path(blob.sha256).read_bytes()
            assert len(data) == blob.size and hashlib.sha256(data).hexdigest() == blob.sha256
    return len(listed)


def new_box(path: Path) -> Box:
    return Box(Config.from_env({}, data_dir=path, demo=False))


def test_sync_from_nginx(tmp_path: Path, mirror: tuple[Path, Path], nginx_url: str) -> None:
    with new_box(tmp_path / "box") as box:
        result = box.bring_in(HttpSource(nginx_url), "test", keys.load_public(mirror[1]), transfer=FAST)
        assert result.activated and not result.errors
        assert len(box.catalog) == 3
        assert_identical(box, mirror[0])
        again = box.bring_in(HttpSource(nginx_url), "test", transfer=FAST)
        assert again.unchanged and again.bytes_fetched == 0


class Crash(Exception):
    """Stands in for a power cut in the middle of a sync."""


@pytest.mark.slow
def test_cut_and_resume_100_times(tmp_path: Path, mirror: tuple[Path, Path], nginx_url: str) -> None:
    root, pub = mirror
    needed = needed_bytes(root)
    upstream = int(nginx_url.rsplit(":", 1)[1])
    rng = random.Random(2026)
    for run in range(100):
        proxy = FaultProxy(upstream, lambda n: Fault(cut_after=rng.randint(20_000, 800_000)))
        try:
            box_dir = tmp_path / f"box{run}"
            crash_at = rng.randint(1, needed - 1) if run % 4 == 0 else None
            box = new_box(box_dir)
            try:
                def crash(p: Progress, crash_at: int | None = crash_at) -> None:
                    if crash_at is not None and p.done >= crash_at:
                        raise Crash

                box.bring_in(HttpSource(proxy.url), "test", keys.load_public(pub), transfer=FAST, on_progress=crash)
            except Crash:
                box.close()
                box = new_box(box_dir)  # restart: partial files and side state carry over
                box.bring_in(HttpSource(proxy.url), "test", transfer=FAST)
            try:
                assert_identical(box, root)
                assert len(box.catalog) == 3
                assert not list(box.data.partial.iterdir()), f"run {run}: partial files left"
            finally:
                box.close()
            assert proxy.connections > 1, "the proxy should have cut at least once"
            # After a crash, bytes received but not yet checkpointed are fetched again.
            allowance = 1.02 if crash_at is None else 1.02 + 4 * 1024 * 1024 / needed
            assert proxy.bytes_to_client <= allowance * needed, \
                f"run {run}: {proxy.bytes_to_client} bytes over the wire for {needed} needed"
        finally:
            proxy.close()


def new_box_catalog(path: Path) -> object:
    with new_box(path) as box:
        return list(box.catalog.browse({}).entries)


def test_resume_after_restart_does_not_refetch(tmp_path: Path, mirror: tuple[Path, Path], nginx_url: str) -> None:
    root, pub = mirror
    needed = needed_bytes(root)
    upstream = int(nginx_url.rsplit(":", 1)[1])
    proxy = FaultProxy(upstream, lambda n: Fault())
    try:
        box = new_box(tmp_path / "box")
        with pytest.raises(Crash):
            def crash(p: Progress) -> None:
                if p.done > needed // 2:
                    raise Crash

            box.bring_in(HttpSource(proxy.url), "test", keys.load_public(pub), transfer=FAST, on_progress=crash)
        kept = sum(p.stat().st_size for p in box.data.partial.glob("*.part"))
        kept += sum(p.stat().st_size for p in box.data.blobs.rglob("*") if p.is_file())
        box.close()
        assert kept > needed // 3, "what was received before the crash is on disk"
        assert len(new_box_catalog(tmp_path / "box")) < 3, "no lesson may show before all its files are in"
        before_restart = proxy.bytes_to_client
        with new_box(tmp_path / "box") as box:
            box.bring_in(HttpSource(proxy.url), "test", transfer=FAST)
            assert_identical(box, root)
        refetched = proxy.bytes_to_client - before_restart
        assert refetched <= needed - kept + 50_000, "bytes already on disk were fetched again"
    finally:
        proxy.close()


def test_tampered_manifest_changes_nothing(tmp_path: Path, mirror: tuple[Path, Path]) -> None:
    root = tmp_path / "bad"
    subprocess.run(["cp", "-a", str(mirror[0]), str(root)], check=True)
    path = root / "channels" / "test" / "manifest.json"
    path.write_bytes(path.read_bytes().replace("天地人".encode(), "人地天".encode()))
    with nginx(root, tmp_path / "ng") as url, new_box(tmp_path / "box") as box:
        before = snapshot(box.data.root)
        with pytest.raises(ChannelRejected) as info:
            box.bring_in(HttpSource(url), "test", keys.load_public(mirror[1]), transfer=FAST)
        assert info.value.reason == "bad_signature"
        assert snapshot(box.data.root) == before


def test_blob_with_wrong_hash_is_refused_and_others_kept(tmp_path: Path, mirror: tuple[Path, Path]) -> None:
    root = tmp_path / "bad"
    subprocess.run(["cp", "-a", str(mirror[0]), str(root)], check=True)
    manifest = channel.parse_manifest((root / "channels" / "test" / "manifest.json").read_bytes())
    bad = manifest.lessons[1].assets[0].blob
    path = root / "blobs" / "sha256" / bad.sha256[:2] / bad.sha256
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF
    path.write_bytes(bytes(data))
    with nginx(root, tmp_path / "ng") as url, new_box(tmp_path / "box") as box:
        result = box.bring_in(HttpSource(url), "test", keys.load_public(mirror[1]), transfer=FAST)
        assert any("hashes to" in e for e in result.errors)
        assert not box.store.has(bad.sha256)
        assert box.store.has(manifest.lessons[0].assets[0].blob.sha256), "good files are kept"
        assert result.missing_lessons == (manifest.lessons[1].title,)
        assert assert_only_playable(box) == 2, "the complete lessons are shown, the damaged one is not"
        assert box.catalog.lesson(manifest.lessons[1].id) is None
        assert not list(box.data.partial.iterdir())


def test_truncated_body_resumes(tmp_path: Path, mirror: tuple[Path, Path], nginx_url: str) -> None:
    upstream = int(nginx_url.rsplit(":", 1)[1])
    proxy = FaultProxy(upstream, lambda n: Fault(cut_after=300_000) if n % 2 else Fault())
    try:
        with new_box(tmp_path / "box") as box:
            result = box.bring_in(HttpSource(proxy.url), "test", keys.load_public(mirror[1]), transfer=FAST)
            assert result.activated
            assert_identical(box, mirror[0])
    finally:
        proxy.close()


@pytest.mark.parametrize("fault", [Fault(trickle=0.3), Fault(stall_after=400)], ids=["trickle", "hang"])
def test_stalled_link_is_abandoned_with_clear_error(tmp_path: Path, mirror: tuple[Path, Path], nginx_url: str,
                                                    fault: Fault) -> None:
    upstream = int(nginx_url.rsplit(":", 1)[1])
    proxy = FaultProxy(upstream, lambda n: fault if n >= 2 else Fault())  # manifest and signature get through
    try:
        with new_box(tmp_path / "box") as box:
            result = box.bring_in(HttpSource(proxy.url), "test", keys.load_public(mirror[1]), transfer=STALL)
            assert result.errors and result.missing_lessons
            reasons = ("slower than", "timed out", "no response headers", "files in a row failed")
            assert all(any(w in e for w in reasons) for e in result.errors), result.errors
            assert assert_only_playable(box) < 3
    finally:
        proxy.close()


class LyingHandler(http.server.BaseHTTPRequestHandler):
    """Serves a mirror but answers every range request from the wrong offset, or with errors."""

    root: Path
    mode: str
    hits: list[str]

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        path = self.root / self.path.lstrip("/")
        if self.mode == "404" and "/blobs/" in self.path:
            self.send_error(404)
            return
        if self.mode == "500" and "/blobs/" in self.path:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = path.read_bytes()
        if self.mode == "lie" and "/blobs/" in self.path:
            if "Range" not in self.headers:  # first request: a short body, so the box must resume
                self.send_response(200)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:1000])
                return
            self.send_response(206)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("mode,expected", [("lie", "server sent from 0; refused"), ("404", "HTTP 404"),
                                           ("500", "HTTP 503")])
def test_lying_or_failing_server(tmp_path: Path, mirror: tuple[Path, Path], mode: str, expected: str) -> None:
    handler = type("H", (LyingHandler,), {"root": mirror[0], "mode": mode, "hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    slept: list[float] = []
    transfer = Transfer(limits=FAST.limits, backoff=FAST.backoff, throttle=Throttle(None, sleep=slept.append))
    try:
        with new_box(tmp_path / "box") as box:
            result = box.bring_in(HttpSource(f"http://127.0.0.1:{server.server_address[1]}"), "test",
                                  keys.load_public(mirror[1]), transfer=transfer)
            assert result.missing_lessons
            stop = "files in a row failed; stopping this run"
            assert any(expected in e for e in result.errors), result.errors
            assert all(expected in e or stop in e for e in result.errors), result.errors
            for path in box.data.blobs.rglob("*"):  # only verified additions, if any
                if path.is_file():
                    assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
            assert assert_only_playable(box) < 3
            if mode == "500":
                assert slept and all(0 <= s <= FAST.backoff.cap for s in slept), "backs off between tries"
            if mode == "404":
                assert not slept, "a 404 is final: no retries"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_backoff_full_jitter_is_capped_and_honours_retry_after() -> None:
    backoff = Backoff(base=1, cap=30)
    rng = random.Random(1)
    delays = [backoff.delay(n, rng=rng) for n in range(1, 12)]
    assert all(0 <= d <= min(30, 2 ** (n - 1)) for n, d in zip(range(1, 12), delays, strict=True))
    assert backoff.delay(1, retry_after=20, rng=rng) >= 20
    assert backoff.delay(1, retry_after=900, rng=rng) == 30


def _serve(data: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "classbox", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--data", str(data), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "手机打开" in line:
            return proc, line.split()[-1].rsplit("/", 1)[0]
    raise AssertionError("serve did not start")


def test_box_to_box(tmp_path: Path, mirror: tuple[Path, Path], publisher: Publisher) -> None:
    first = tmp_path / "first"
    with new_box(first) as box:
        box.add_channel(mirror[0], keys.load_public(mirror[1]))
    a, a_url = _serve(first, "--no-demo")
    try:
        r = subprocess.run([sys.executable, "-m", "classbox", "sync", "--source", f"{a_url}/mirror",
                            "--channel", "test", "--trust", str(mirror[1]), "--data", str(tmp_path / "second")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "(new, active)" in r.stdout
        assert "MB/s ETA" in r.stderr, "a progress bar is shown"
        b, b_url = _serve(tmp_path / "second", "--no-demo")
        try:
            lessons = requests.get(f"{b_url}/api/v1/catalog", timeout=5).json()["lessons"]
            assert len(lessons) == 3
            lesson = requests.get(f"{b_url}/api/v1/lessons/{lessons[0]['id']}", timeout=5).json()
            video = lesson["assets"][0]
            body = requests.get(b_url + video["url"], timeout=5).content
            assert hashlib.sha256(body).hexdigest() == video["sha256"]
        finally:
            b.terminate()
            b.wait(10)
            b.stdout.close()  # type: ignore[union-attr]
    finally:
        a.terminate()
        a.wait(10)
        a.stdout.close()  # type: ignore[union-attr]


def test_mirror_route_refuses_what_is_not_a_channel_file(client, box: Box) -> None:  # type: ignore[no-untyped-def]
    for path in ["/mirror/channels/../state.json", "/mirror/channels/test/lesson.json",
                 "/mirror/channels/..%2f/manifest.json", "/mirror/blobs/sha256/aa/" + "b" * 64,
                 "/mirror/blobs/sha256/xx/../../state.json"]:
        r = client.get(path)
        assert r.status_code in (404, 308), path  # 308: werkzeug normalising the path, nothing served
        assert b"settings" not in r.data


def test_sync_command_names_a_bad_source(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "classbox", "sync", "--source", str(tmp_path / "nowhere"),
                        "--channel", "test", "--data", str(tmp_path / "box")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "is neither an http:// URL nor a folder" in r.stderr



def test_disk_full_mid_blob_stops_cleanly_and_resumes(tmp_path: Path, mirror: tuple[Path, Path], nginx_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from classbox.sync.download import BlobDownload

    real_write = BlobDownload._write
    written = [0]

    class FullDisk:
        def write(self, chunk: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk(self, f, chunk: bytes) -> None:  # type: ignore[no-untyped-def]
        written[0] += len(chunk)
        real_write(self, FullDisk() if written[0] > 1_200_000 else f, chunk)

    monkeypatch.setattr(BlobDownload, "_write", full_disk)
    with new_box(tmp_path / "box") as box:
        result = box.bring_in(HttpSource(nginx_url), "test", keys.load_public(mirror[1]), transfer=FAST)
        assert result.missing_lessons
        assert any("disk full" in e and "No space left on device" in e for e in result.errors), result.errors
        assert assert_only_playable(box) < 3
        for path in box.data.blobs.rglob("*"):
            if path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
        monkeypatch.setattr(BlobDownload, "_write", real_write)
        again = box.bring_in(HttpSource(nginx_url), "test", transfer=FAST)
        assert not again.missing_lessons and len(box.catalog) == 3
        assert_identical(box, mirror[0])


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_small_disk_says_what_will_not_fit(tmp_path: Path, mirror: tuple[Path, Path], nginx_url: str) -> None:
    disk = tmp_path / "sd"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("mounting a tmpfs needs root (the injected ENOSPC test covers a full disk everywhere)")
    try:
        config = Config.from_env({}, data_dir=disk / "box", demo=False, free_margin=0)
        with Box(config) as box:
            result = box.bring_in(HttpSource(nginx_url), "test", keys.load_public(mirror[1]), transfer=FAST)
            assert result.missing_lessons
            assert any("will not fit" in e or "disk full" in e for e in result.errors), result.errors
            assert assert_only_playable(box) < 3
        with Box(config) as box:  # and the box still starts on its full disk
            assert box.trusted_key("test") is not None
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_planner_fetches_scheduled_first_and_only_subscribed(tmp_path: Path, publisher: Publisher) -> None:
    import datetime

    src = write_source(tmp_path / "src", lessons=4)
    tomorrow = (datetime.date.today() + datetime.timedelta(days=1)).isoformat()
    yesterday = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    info = json.loads((src / "channel.json").read_text(encoding="utf-8"))
    info["schedule"] = [{"lesson": "test-lesson-1", "date": yesterday, "period": 1},
                        {"lesson": "test-lesson-3", "date": tomorrow, "period": 2}]
    (src / "channel.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    channel.build(src, keys.load_private(publisher.private), tmp_path / "m")
    with new_box(tmp_path / "box") as box:
        box.subscribe("test", {"grade": ["一年级"]}, keys.load_public(publisher.public))
        order: list[str] = []

        def track(p: Progress) -> None:
            if p.lesson and (not order or order[-1] != p.lesson):
                order.append(p.lesson)

        result = box.bring_in(open_source(tmp_path / "m"), "test", on_progress=track)
        # lesson 3 (二年级) is scheduled tomorrow: first; then the 一年级 lessons 0 and 2; lesson 1 was yesterday
        assert order == ["认识钟表", "天地人", "金木水火土"], order
        assert result.activated
        assert sorted(e.lesson.id for e in box.catalog.browse({}).entries) == \
            ["test-lesson-0", "test-lesson-2", "test-lesson-3"]


def test_subscribe_names_bad_filter(tmp_path: Path, publisher: Publisher) -> None:
    from classbox.errors import ConfigError

    with new_box(tmp_path / "box") as box:
        with pytest.raises(ConfigError, match="unknown filter colour"):
            box.subscribe("test", {"colour": ["red"]}, keys.load_public(publisher.public))
        with pytest.raises(ConfigError, match="give its publisher key with --trust"):
            box.subscribe("test", {"grade": ["一年级"]})


def test_schedule_naming_unknown_lesson_is_a_build_error(tmp_path: Path, publisher: Publisher) -> None:
    from classbox.errors import BuildError

    src = write_source(tmp_path / "src", lessons=1)
    info = json.loads((src / "channel.json").read_text(encoding="utf-8"))
    info["schedule"] = [{"lesson": "nope", "date": "2026-12-01"}]
    (src / "channel.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BuildError, match="'nope' is not a lesson of this channel"):
        channel.build(src, keys.load_private(publisher.private), tmp_path / "m")
