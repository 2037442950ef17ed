"""Resumable uploads to a hub: chunks, crashes, content checks, owners, and whole uploads over a link that cuts."""

from __future__ import annotations

import gc
import hashlib
import http.client
import io
import json
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser

from classbox import create_app
from classbox.accounts import Account
from classbox.box import Box
from classbox.config import Config
from classbox.errors import InvalidInput, NotFound
from classbox.hub import uploads as uploads_module
from classbox.hub.uploads import OffsetMismatch, UnsupportedContent, Uploads, clean_name

from .conftest import LiveServer, make_video
from .netfaults import Fault, FaultProxy
from .test_setup import csrf_of, do_setup

MB = 1024 * 1024
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


# -- files to upload, made by ffmpeg


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly (installed by the test command)."""
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Return real files of every accepted kind: a small MP4 and WebM, a PNG, a JPEG, a PDF."""
    d = tmp_path_factory.mktemp("media")
    make_video(d / "small.mp4", seconds=2)
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1", "-c:v", "libvpx",
           "-deadline", "realtime", "-b:v", "200k", str(d / "small.webm"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(d / "a.png"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(d / "a.jpg"))
    pdf = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
           b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    return {"mp4": (d / "small.mp4").read_bytes(), "webm": (d / "small.webm").read_bytes(),
            "png": (d / "a.png").read_bytes(), "jpeg": (d / "a.jpg").read_bytes(), "pdf": pdf}


@pytest.fixture(scope="module")
def big_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Return a real H.264 MP4 of about 30 MB (lossless noise, so it does not compress away)."""
    path = tmp_path_factory.mktemp("big") / "lesson.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=7", "-vf", "noise=alls=100:allf=t",
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
           str(path))
    return path.read_bytes()


def zip_bytes(*names: str) -> bytes:
    """Return a real ZIP archive holding the named (small) files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            z.writestr(name, f"{name} " * 1000)
    return buf.getvalue()


# -- the domain


@pytest.fixture
def uploads(tmp_path: Path) -> Uploads:
    """Return the uploads of a hub whose data lives in a temp directory, limit 64 MB."""
    return reopen(tmp_path)


def reopen(tmp_path: Path, **kwargs: object) -> Uploads:
    """Open the uploads of tmp_path afresh, as a restarted hub does."""
    hub = tmp_path / "data" / "hub"
    return Uploads(hub / "uploads", hub / "files", 64 * MB, **kwargs)  # type: ignore[arg-type]


def send(uploads: Uploads, upload_id: str, data: bytes, chunk: int, owner: str = "lin", start: int = 0) -> int:
    """Append data from start in chunks of chunk bytes; return the final offset."""
    offset = start
    while offset < len(data):
        piece = data[offset:offset + chunk]
        offset = uploads.append(upload_id, offset, io.BytesIO(piece), len(piece), owner)
    return offset


def files_are_whole(uploads: Uploads) -> list[str]:
    """Return the names in files/, asserting each one holds exactly the bytes its name hashes."""
    names = sorted(p.name for p in uploads.files.iterdir())
    for name in names:
        assert hashlib.sha256((uploads.files / name).read_bytes()).hexdigest() == name
    return names


def test_chunks_in_order_become_a_file_named_by_its_hash(uploads: Uploads, media: dict[str, bytes]) -> None:
    video = media["mp4"]
    up = uploads.create("C:\\Users\\lin\\第一课.mp4", len(video), "lin")
    assert up.name == "第一课.mp4" and up.offset == 0 and up.size == len(video)
    assert send(uploads, up.id, video, 10_000) == len(video)
    assert uploads.status(up.id, "lin").offset == len(video)
    stored = uploads.finish(up.id, "lin")
    sha = hashlib.sha256(video).hexdigest()
    assert (stored.sha256, stored.size, stored.media_type, stored.kind, stored.name) == \
        (sha, len(video), "video/mp4", "video", "第一课.mp4")
    assert (uploads.files / sha).read_bytes() == video
    assert files_are_whole(uploads) == [sha]
    assert not list(uploads.root.glob("*.part"))
    # A client whose last answer was lost asks again and gets the same result.
    assert uploads.finish(up.id, "lin") == stored
    assert uploads.append(up.id, len(video), io.BytesIO(b""), 0, "lin") == len(video)
    assert uploads.result(up.id, "lin") == stored


def test_a_chunk_at_another_offset_is_refused_with_the_current_one(uploads: Uploads) -> None:
    data = b"%PDF-1.4\n" + bytes(range(256)) * 40
    up = uploads.create("task.pdf", len(data), "lin")
    assert uploads.append(up.id, 0, io.BytesIO(data[:5000]), 5000, "lin") == 5000
    for wrong in (0, 4999, 6000):  # the same chunk sent twice, a gap
        with pytest.raises(OffsetMismatch) as caught:
            uploads.append(up.id, wrong, io.BytesIO(data[wrong:wrong + 100]), 100, "lin")
        assert caught.value.offset == 5000 and "from byte 5000" in str(caught.value)
    with pytest.raises(InvalidInput, match="past the declared size"):
        uploads.append(up.id, 5000, io.BytesIO(data[5000:] + b"more"), len(data) - 5000 + 4, "lin")
    assert uploads.status(up.id, "lin").offset == 5000
    # A body that ends early (a client that went away) adds what arrived, and only that.
    assert uploads.append(up.id, 5000, io.BytesIO(data[5000:5300]), 1000, "lin") == 5300
    send(uploads, up.id, data, 3000, start=5300)
    assert uploads.finish(up.id, "lin").sha256 == hashlib.sha256(data).hexdigest()


def test_a_restart_after_a_crash_resumes_at_the_recorded_offset(tmp_path: Path, media: dict[str, bytes]) -> None:
    video = media["mp4"]
    half = len(video) // 2
    uploads = reopen(tmp_path)
    up = uploads.create("lesson.mp4", len(video), "lin")
    assert send(uploads, up.id, video[:half], 4_000) == half
    part = uploads.root / f"{up.id}.part"
    with open(part, "ab") as f:  # a chunk written but not yet recorded when the power went
        f.write(b"\0garbage not vouched for" * 100)
    del uploads

    uploads = reopen(tmp_path)
    assert part.stat().st_size == half
    assert uploads.status(up.id, "lin").offset == half
    with pytest.raises(OffsetMismatch):
        uploads.append(up.id, half + 2400, io.BytesIO(b"x"), 1, "lin")
    send(uploads, up.id, video, 4_000, start=half)
    stored = uploads.finish(up.id, "lin")  # the running hash died with the process: hashed again here
    assert stored.sha256 == hashlib.sha256(video).hexdigest()
    assert files_are_whole(uploads) == [stored.sha256]


def test_a_crash_while_finishing_leaves_no_half_file_and_is_completed_at_start(
        tmp_path: Path, media: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    video = media["mp4"]
    uploads = reopen(tmp_path)
    up = uploads.create("lesson.mp4", len(video), "lin")
    send(uploads, up.id, video, 64 * 1024)

    def power_cut(*args: object) -> None:
        raise SystemExit("power cut")

    monkeypatch.setattr(uploads_module.storage, "move_into_place", power_cut)
    with pytest.raises(SystemExit):
        uploads.finish(up.id, "lin")
    assert files_are_whole(uploads) == []
    monkeypatch.undo()

    uploads = reopen(tmp_path)
    sha = hashlib.sha256(video).hexdigest()
    assert files_are_whole(uploads) == [sha]
    assert uploads.finish(up.id, "lin").sha256 == sha


def test_finishing_shows_files_only_whole(tmp_path: Path, big_video: bytes) -> None:
    uploads = reopen(tmp_path)
    up = uploads.create("lesson.mp4", len(big_video), "lin")
    send(uploads, up.id, big_video, 4 * MB)
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for p in uploads.files.iterdir():
                seen.append((p.name, p.stat().st_size))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        stored = uploads.finish(up.id, "lin")
    finally:
        done.set()
        watcher.join(5)
    assert seen, "the watcher should have seen the file arrive"
    assert set(seen) == {(stored.sha256, len(big_video))}


@pytest.mark.parametrize("kind, media_type, expected_kind", [
    ("mp4", "video/mp4", "video"), ("webm", "video/webm", "video"), ("pdf", "application/pdf", "document"),
    ("png", "image/png", "image"), ("jpeg", "image/jpeg", "image"),
])
def test_the_type_comes_from_the_content(uploads: Uploads, media: dict[str, bytes], kind: str, media_type: str,
                                         expected_kind: str) -> None:
    data = media[kind]
    up = uploads.create("file.bin", len(data), "lin")  # the name says nothing
    send(uploads, up.id, data, 1 * MB)
    stored = uploads.finish(up.id, "lin")
    assert (stored.media_type, stored.kind) == (media_type, expected_kind)
    assert (uploads.files / stored.sha256).read_bytes() == data


@pytest.mark.parametrize("name, data, says", [
    ("lesson.mp4", "今天我们学习天地人。这是一个文本文件。\n".encode() * 300, "plain text"),
    ("lesson.mp4", zip_bytes("video.mp4", "notes.txt"), "a ZIP archive"),
    ("task.pdf", zip_bytes("[Content_Types].xml", "word/document.xml"), "a Word document (save it as PDF)"),
    ("lesson.mp4", b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10.0,\nseg0.ts\n" * 200, "an HLS playlist"),
    ("lesson.mp4", b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n" * 200, "an HTML page"),
])
def test_other_content_is_refused_naming_what_it_looks_like(uploads: Uploads, name: str, data: bytes,
                                                           says: str) -> None:
    up = uploads.create(name, len(data), "lin")
    with pytest.raises(UnsupportedContent) as caught:
        send(uploads, up.id, data, 1 * MB)
    reason = str(caught.value)
    assert reason.startswith("not a video, PDF or image: the file starts with ") and says in reason, reason
    assert not list(uploads.root.glob("*.part")) and files_are_whole(uploads) == []
    with pytest.raises(UnsupportedContent, match="not a video"):  # asked again after a lost answer: the same
        uploads.finish(up.id, "lin")


def test_a_zip_is_refused_at_its_first_chunk_not_after_all_of_it(uploads: Uploads) -> None:
    data = zip_bytes(*(f"clip{i}.bin" for i in range(200)))
    up = uploads.create("lesson.zip", len(data), "lin")
    with pytest.raises(UnsupportedContent, match="ZIP"):
        uploads.append(up.id, 0, io.BytesIO(data[:8192]), 8192, "lin")
    with pytest.raises(UnsupportedContent, match="ZIP"):
        uploads.append(up.id, 8192, io.BytesIO(data[8192:9000]), 808, "lin")


def test_a_video_header_on_anything_else_is_refused_by_ffprobe(uploads: Uploads, media: dict[str, bytes]) -> None:
    if not uploads.ffprobe:
        pytest.fail("ffprobe is missing: run the README's test command, it installs ffmpeg")
    data = media["mp4"][:32] + random.Random(1).randbytes(300_000)
    up = uploads.create("lesson.mp4", len(data), "lin")
    send(uploads, up.id, data, 1 * MB)
    with pytest.raises(UnsupportedContent, match="cannot be read"):
        uploads.finish(up.id, "lin")
    assert files_are_whole(uploads) == [] and not list(uploads.root.glob("*.part"))


def test_sizes_outside_the_limit_are_refused_naming_it(uploads: Uploads) -> None:
    for size in (0, -1):
        with pytest.raises(InvalidInput, match="size"):
            uploads.create("a.mp4", size, "lin")
    with pytest.raises(InvalidInput, match="up to 64 MB"):
        uploads.create("a.mp4", 64 * MB + 1, "lin")
    assert uploads.create("a.mp4", 64 * MB, "lin").size == 64 * MB


def test_an_upload_belongs_to_its_account(uploads: Uploads, media: dict[str, bytes]) -> None:
    data = media["png"]
    up = uploads.create("a.png", len(data), "lin")
    for call in (lambda: uploads.status(up.id, "wang"), lambda: uploads.finish(up.id, "wang"),
                 lambda: uploads.discard(up.id, "wang"),
                 lambda: uploads.append(up.id, 0, io.BytesIO(data), len(data), "wang")):
        with pytest.raises(NotFound):
            call()
    assert uploads.status(up.id, "lin").offset == 0
    for bad in ("../../state", "x" * 22 + "/..", up.id + ".json"):
        with pytest.raises(NotFound):
            uploads.status(bad, "lin")


def test_names_are_labels_only() -> None:
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("a\\b\\课件.pdf") == "课件.pdf"
    assert clean_name("bad\nname\x00.mp4") == "badname.mp4"
    assert clean_name("/") == "upload"


def test_discard_and_expiry_remove_the_bytes(tmp_path: Path, media: dict[str, bytes]) -> None:
    now = [1_000_000.0]
    uploads = reopen(tmp_path, clock=lambda: now[0])
    data = media["jpeg"]
    old = uploads.create("old.jpg", len(data), "lin")
    uploads.append(old.id, 0, io.BytesIO(data[:100]), 100, "lin")
    gone = uploads.create("gone.jpg", len(data), "lin")
    uploads.discard(gone.id, "lin")
    with pytest.raises(NotFound):
        uploads.status(gone.id, "lin")
    now[0] += 3600
    fresh = uploads.create("fresh.jpg", len(data), "lin")
    assert uploads.expire(1800) == 1
    with pytest.raises(NotFound):
        uploads.status(old.id, "lin")
    assert uploads.status(fresh.id, "lin").offset == 0
    assert sorted(p.name for p in uploads.root.iterdir()) == [f"{fresh.id}.json"]


# -- over HTTP


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Return the config of a hub on a temp directory, uploads up to 64 MB."""
    return Config.from_env({}, data_dir=tmp_path / "data", demo=False, host="127.0.0.1", port=0, role="hub",
                           max_upload="64M")


@dataclass
class Login:
    """A logged-in browser's session cookie and CSRF token."""

    cookie: str
    csrf: str


@pytest.fixture
def admin(client: FlaskClient) -> Login:
    """Set the hub up and return its admin's session (the client stays logged in)."""
    do_setup(client)
    cookie = client.get_cookie("classbox_session")
    assert cookie is not None
    return Login(cookie.value, csrf_of(client.get("/admin").text))


def teacher(box: Box, name: str = "wang") -> Login:
    """Open a session for a teacher account."""
    session = box.sessions.start(Account(name, "teacher"))
    return Login(session.id, session.csrf)


def test_a_box_that_is_not_a_hub_has_no_uploads(tmp_path: Path) -> None:
    app = create_app(Config.from_env({}, data_dir=tmp_path / "box", demo=False))
    try:
        client = app.test_client()
        do_setup(client)
        r = client.post("/hub/api/uploads", json={"name": "a.mp4", "size": 10})
        assert r.status_code == 404 and r.json["code"] == "not_found"
    finally:
        app.extensions["classbox"].close()


def test_uploads_need_a_login_and_the_csrf_token(app: Flask, client: FlaskClient, box: Box,
                                                 media: dict[str, bytes]) -> None:
    r = client.post("/hub/api/uploads", json={"name": "a.png", "size": 10})
    assert r.status_code == 403 and r.json["code"] == "setup_needed"
    do_setup(client)
    csrf = csrf_of(client.get("/admin").text)
    stranger = app.test_client()
    r = stranger.post("/hub/api/uploads", json={"name": "a.png", "size": 10})
    assert r.status_code == 401 and r.json["code"] == "login_needed"
    assert stranger.head("/hub/api/uploads/" + "A" * 22).status_code == 401
    r = client.post("/hub/api/uploads", json={"name": "a.png", "size": 10})
    assert r.status_code == 403 and "CSRF" in r.json["error"]
    r = client.post("/hub/api/uploads", json={"name": "a.png", "size": 10}, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403

    png = media["png"]
    token = {"X-CSRF-Token": csrf}
    r = client.post("/hub/api/uploads", json={"name": "a.png", "size": len(png)}, headers=token)
    assert r.status_code == 201, r.json
    url = r.json["url"]
    assert r.json["offset"] == 0 and r.json["size"] == len(png) and url == f"/hub/api/uploads/{r.json['id']}"
    r = client.patch(url, data=png[:100], headers={"Upload-Offset": "0"})
    assert r.status_code == 403
    r = client.delete(url)
    assert r.status_code == 403

    # Another account, a teacher, does not see the admin's upload.
    wang = teacher(box)
    other = app.test_client()
    other.set_cookie("classbox_session", wang.cookie)
    assert other.get(url).status_code == 404
    r = other.patch(url, data=png, headers={"Upload-Offset": "0", "X-CSRF-Token": wang.csrf})
    assert r.status_code == 404 and r.json["code"] == "not_found"


def test_the_protocol_over_a_test_client(client: FlaskClient, admin: Login, media: dict[str, bytes]) -> None:
    token = {"X-CSRF-Token": admin.csrf}
    png = media["png"]
    r = client.post("/hub/api/uploads", json={"name": "../a.png", "size": 100 * MB}, headers=token)
    assert r.status_code == 413 and "64 MB" in r.json["error"]
    r = client.post("/hub/api/uploads", json={"name": "a.png", "size": "12"}, headers=token)
    assert r.status_code == 400 and r.json["code"] == "invalid_input"
    r = client.post("/hub/api/uploads", json={"name": "../a.png", "size": len(png)}, headers=token)
    url = r.json["url"]
    r = client.patch(url, data=png[:200], headers={"Upload-Offset": "0", **token})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "200"
    r = client.patch(url, data=png[:200], headers={"Upload-Offset": "0", **token})  # sent twice
    assert r.status_code == 409 and r.headers["Upload-Offset"] == "200" and r.json["offset"] == 200
    r = client.head(url)
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "200" and r.headers["Upload-Length"] == str(len(png))
    assert client.get(url).json["offset"] == 200 and client.get(url).json["result"] is None
    r = client.patch(url, data=png[200:], headers={"Upload-Offset": "200", **token})
    assert r.status_code == 200
    assert r.json == {"sha256": hashlib.sha256(png).hexdigest(), "size": len(png), "media_type": "image/png",
                      "kind": "image", "name": "a.png"}
    again = client.patch(url, data=b"", headers={"Upload-Offset": str(len(png)), **token})
    assert again.status_code == 200 and again.json == r.json
    assert client.get(url).json["result"] == r.json
    assert client.delete(url, headers=token).status_code == 204
    assert client.get(url).status_code == 404

    text = b"just some notes\n" * 100
    url = client.post("/hub/api/uploads", json={"name": "a.mp4", "size": len(text)}, headers=token).json["url"]
    r = client.patch(url, data=text, headers={"Upload-Offset": "0", **token})
    assert r.status_code == 415 and r.json["code"] == "invalid_input"
    assert r.json["error"].startswith("not a video, PDF or image: the file starts with 6a 75 73 74")


# -- whole uploads over a link that cuts


class UploadCutProxy(FaultProxy):
    """The fault proxy, also cutting the client's side: the connection carrying byte N of all uploaded bytes."""

    def __init__(self, upstream_port: int, plan: object, cut_up_at: list[int]) -> None:
        self.cut_up_at = sorted(cut_up_at)
        self.bytes_from_client = 0
        self.up_cuts = 0
        super().__init__(upstream_port, plan)  # type: ignore[arg-type]

    def _pipe_up(self, client: socket.socket, upstream: socket.socket) -> None:  # type: ignore[override]
        cut = False
        try:
            while data := client.recv(65536):
                with self._lock:
                    start = self.bytes_from_client
                    at = next((n for n in self.cut_up_at if start < n <= start + len(data)), None)
                    if at is not None:
                        self.cut_up_at.remove(at)
                        data = data[:at - start]
                        self.up_cuts += 1
                        cut = True
                    self.bytes_from_client += len(data)
                upstream.sendall(data)
                if cut:
                    break
        except OSError:
            pass
        for s in (upstream, client) if cut else (upstream,):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Retry(Exception):
    """A transient failure: wait, ask the offset, go on."""


def offset_of(headers: http.client.HTTPMessage) -> int:
    """Return the hub's Upload-Offset; Retry when it is missing (http.client takes a header block cut short)."""
    raw = headers.get("Upload-Offset", "")
    if not raw.isdigit():
        raise Retry("no Upload-Offset in the answer")
    return int(raw)


@dataclass
class PythonUploader:
    """A client speaking the same protocol as static/upload.js (shorter waits, for the test)."""

    base: str
    login: Login
    chunk: int = 4 * MB
    first_delay: float = 0.05
    longest_delay: float = 0.5
    meter: Callable[[], int] = lambda: 0  # bytes the client has sent so far, as the proxy counts them
    lost_bytes: int = 0  # bytes of requests that got no answer, as far as they went (the meter's)
    failures: int = 0
    progress: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send one request on the kept-alive connection; Retry on any network trouble."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        all_headers = {"Cookie": f"classbox_session={self.login.cookie}", **(headers or {})}
        if method != "GET" and method != "HEAD":
            all_headers["X-CSRF-Token"] = self.login.csrf
        try:
            self.conn.request(method, path, body=body, headers=all_headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = None
            raise Retry(str(exc) or type(exc).__name__) from None
        if response.status >= 500:
            raise Retry(f"HTTP {response.status}")
        return response.status, response.headers, data

    def upload(self, data: bytes, name: str, deadline: float) -> dict[str, object]:
        """Upload data whatever the link does until deadline; return the hub's result."""
        try:
            return self._upload(data, name, deadline)
        finally:
            if self.conn is not None:
                self.conn.close()

    def _upload(self, data: bytes, name: str, deadline: float) -> dict[str, object]:
        url: str | None = None
        lost, delay, offset = True, self.first_delay, 0
        while time.monotonic() < deadline:
            sent_before = self.meter()
            try:
                if url is None:
                    status, _, raw = self.request("POST", "/hub/api/uploads", json.dumps(
                        {"name": name, "size": len(data)}).encode(), {"Content-Type": "application/json"})
                    assert status == 201, raw
                    url, offset, lost = json.loads(raw)["url"], 0, False
                elif lost:
                    status, headers, _ = self.request("HEAD", url)
                    assert status == 200, status
                    offset, lost = offset_of(headers), False
                self.progress.append(offset)
                body = data[offset:offset + self.chunk]
                sent_before = self.meter()
                status, headers, raw = self.request("PATCH", url, body, {
                    "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
                if status == 204:
                    offset, delay = offset_of(headers), self.first_delay
                elif status == 200:
                    return json.loads(raw)  # type: ignore[no-any-return]
                elif status == 409:
                    offset = offset_of(headers)
                else:
                    raise AssertionError(f"HTTP {status}: {raw[:300]!r}")
            except Retry:
                self.failures += 1
                self.lost_bytes += self.meter() - sent_before
                time.sleep(delay * random.uniform(0.5, 1))
                delay = min(delay * 2, self.longest_delay)
                lost = True
        raise AssertionError(f"the upload did not finish in time ({offset} of {len(data)} bytes)")


@pytest.fixture
def hub_uploads(app: Flask) -> Uploads:
    """Return the Uploads the web app uses."""
    from classbox.web.hub_uploads import current_uploads

    with app.app_context():
        return current_uploads()


# waitress leaves the temp file buffering a request body open when the client hangs up mid-body
# (channel.handle_close never closes the half-received request); CPython frees it with the channel.
WAITRESS_BODY_BUFFER = (r"ignore:Exception ignored in. <_io.FileIO name=\d+ mode='rb\+' closefd=True>"
                        ":pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _free_waitress_buffers() -> Iterator[None]:
    """Collect such a left-open buffer before this test ends (its server is stopped by then), under its filter.

    Set up first, torn down last: otherwise it is freed during whichever test runs next, and fails that one.
    """
    yield
    gc.collect()


@pytest.mark.slow
@pytest.mark.filterwarnings(WAITRESS_BODY_BUFFER)
def test_a_big_video_arrives_whole_through_a_link_that_keeps_cutting(
        live_server: LiveServer, admin: Login, big_video: bytes, hub_uploads: Uploads) -> None:
    size = len(big_video)
    rng = random.Random(7)
    cut_up_at = sorted(rng.sample(range(100_000, size), 6))  # six chunks cut mid-body
    lossy = {1, 3}  # and two connections whose answers are cut: chunks stored, the client never told
    proxy = UploadCutProxy(live_server.port, lambda n: Fault(cut_after=rng.randint(150, 1500)) if n in lossy
                           else Fault(), cut_up_at)
    try:
        client = PythonUploader(proxy.url, admin, meter=lambda: proxy.bytes_from_client)
        started = time.monotonic()
        result = client.upload(big_video, "第三课 长度单位.mp4", deadline=started + 60)
        took = time.monotonic() - started
    finally:
        proxy.close()
    sha = hashlib.sha256(big_video).hexdigest()
    assert result == {"sha256": sha, "size": size, "media_type": "video/mp4", "kind": "video",
                      "name": "第三课 长度单位.mp4"}
    assert hashlib.sha256((hub_uploads.files / sha).read_bytes()).hexdigest() == sha
    assert proxy.up_cuts == 6 and client.failures >= 6, (proxy.up_cuts, client.failures)
    assert client.progress == sorted(client.progress), "the upload never went backwards"
    wire = proxy.bytes_from_client
    print(f"\nupload of {size} bytes through {proxy.up_cuts} cut uploads and {len(lossy)} cut answers, "
          f"{client.failures} failed requests: {wire} bytes over the wire = {wire / size:.4f} × the file; "
          f"lost in flight {client.lost_bytes}; the rest {(wire - client.lost_bytes) / size:.5f} × the file; "
          f"{took:.1f} s")
    assert wire <= 1.05 * size + client.lost_bytes
    assert wire - client.lost_bytes <= 1.001 * size  # each byte crossed once, plus headers
    assert not list(hub_uploads.root.glob("*.part"))


@pytest.mark.filterwarnings(WAITRESS_BODY_BUFFER)
def test_upload_js_in_chromium_survives_cuts(live_server: LiveServer, admin: Login, browser: Browser,
                                             hub_uploads: Uploads) -> None:
    proxy = UploadCutProxy(live_server.port, lambda n: Fault(), cut_up_at=[1_000_000, 6_500_000])
    context = browser.new_context()
    try:
        context.add_cookies([{"name": "classbox_session", "value": admin.cookie, "url": proxy.url}])
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(proxy.url + "/-/version")
        page.add_script_tag(url="/static/upload.js")
        outcome = page.evaluate("""async (csrf) => {
            // 6 MB of a PDF: the header, then bytes from a small deterministic generator.
            const bytes = new Uint8Array(6 * 1024 * 1024);
            let x = 12345;
            for (let i = 0; i < bytes.length; i++) { x = (x * 1103515245 + 12345) >>> 0; bytes[i] = x >>> 24; }
            bytes.set(new TextEncoder().encode("%PDF-1.4\\n"), 0);
            const file = new File([bytes], "教案.pdf", { type: "application/pdf" });
            const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
            const sha = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
            const progress = [];
            const signal = AbortSignal.timeout(20000);
            const onProgress = (n, total) => progress.push([n, total]);
            const result = await window.classboxUpload(file, { csrf, onProgress, signal });
            let refused = null;
            try {
                await window.classboxUpload(new File(["#EXTM3U\\nseg0.ts\\n"], "lesson.mp4"), { csrf, signal });
            } catch (err) { refused = { status: err.status, code: err.code, message: err.message }; }
            return { result, sha, progress, refused, size: bytes.length };
        }""", admin.csrf)
    finally:
        context.close()
        proxy.close()
    assert proxy.up_cuts == 2
    result = outcome["result"]
    assert result["sha256"] == outcome["sha"] and result["kind"] == "document" and result["name"] == "教案.pdf"
    assert (hub_uploads.files / outcome["sha"]).read_bytes()[:9] == b"%PDF-1.4\n"
    assert outcome["progress"][-1] == [outcome["size"], outcome["size"]]
    assert [n for n, _ in outcome["progress"]] == sorted(n for n, _ in outcome["progress"])
    assert outcome["refused"]["status"] == 415 and "HLS playlist" in outcome["refused"]["message"]
    # One upload record for each file: after every cut it resumed the same upload.
    assert len(list(hub_uploads.root.glob("*.json"))) == 2


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    """Every proxy and server thread a test starts ends with it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.daemon]
        if not left:
            return
        time.sleep(0.05)
    pytest.fail(f"threads left running: {left}")
