"""GET /media/<sha256> against a real waitress server: ranges, caching, and slow readers."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from pathlib import Path

import pytest
import requests

from classbox.box import Box
from classbox.store import is_sha256

from .conftest import LiveServer


def put_blob(box: Box, data: bytes) -> str:
    """Add bytes to the box's store; return their hash."""
    sha = hashlib.sha256(data).hexdigest()
    box.store.commit(box.store.stage(io.BytesIO(data), sha, len(data)))
    return sha


@pytest.fixture
def blob(box: Box) -> tuple[str, bytes]:
    data = os.urandom(100_000)
    return put_blob(box, data), data


def get(server: LiveServer, path: str, **headers: str) -> requests.Response:
    return requests.get(server.url + path, headers=headers, timeout=10)


def test_whole_file_with_strong_etag_and_caching(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["ETag"] == f'"{sha}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    assert "immutable" in r.headers["Cache-Control"]
    assert r.headers["Content-Length"] == str(len(data))


def test_closed_range(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range="bytes=10-19")
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"


def test_open_ended_range(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range="bytes=99000-")
    assert r.status_code == 206 and r.content == data[99000:]
    assert r.headers["Content-Range"] == f"bytes 99000-99999/{len(data)}"


def test_range_past_end_is_clipped(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range="bytes=99990-200000")
    assert r.status_code == 206 and r.content == data[99990:]


def test_suffix_range(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range="bytes=-500")
    assert r.status_code == 206 and r.content == data[-500:]
    assert r.headers["Content-Range"] == f"bytes 99500-99999/{len(data)}"


@pytest.mark.parametrize("header", ["bytes=100000-", "bytes=200000-200010", "bytes=-0"])
def test_unsatisfiable_range(live_server: LiveServer, blob: tuple[str, bytes], header: str) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range=header)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc"])
def test_range_we_do_not_serve_sends_whole_file(live_server: LiveServer, blob: tuple[str, bytes], header: str) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range=header)
    assert r.status_code == 200 and r.content == data


def test_if_range_matching_etag_gives_range(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range="bytes=0-9", **{"If-Range": f'"{sha}"'})
    assert r.status_code == 206 and r.content == data[:10]


@pytest.mark.parametrize("validator", ['"0000"', 'W/"{sha}"', "Sat, 21 Nov 2026 08:00:00 GMT"])
def test_if_range_not_matching_gives_whole_file(live_server: LiveServer, blob: tuple[str, bytes],
                                                validator: str) -> None:
    sha, data = blob
    r = get(live_server, f"/media/{sha}", Range="bytes=0-9", **{"If-Range": validator.format(sha=sha)})
    assert r.status_code == 200 and r.content == data


def test_if_none_match_gives_304(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, _ = blob
    r = get(live_server, f"/media/{sha}", **{"If-None-Match": f'"abc", "{sha}"'})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == f'"{sha}"'
    assert get(live_server, f"/media/{sha}", **{"If-None-Match": '"abc"'}).status_code == 200


def test_head(live_server: LiveServer, blob: tuple[str, bytes]) -> None:
    sha, data = blob
    r = requests.head(f"{live_server.url}/media/{sha}", timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == str(len(data))
    r = requests.head(f"{live_server.url}/media/{sha}", headers={"Range": "bytes=5-9"}, timeout=10)
    assert r.status_code == 206 and r.headers["Content-Length"] == "5"


def test_media_type_comes_from_the_manifest(live_server: LiveServer, box: Box, tmp_path: Path,
                                            publisher) -> None:  # type: ignore[no-untyped-def]
    from classbox import channel, keys

    from .conftest import write_source

    channel.build(write_source(tmp_path / "src", lessons=1), keys.load_private(publisher.private), tmp_path / "m")
    box.add_channel(tmp_path / "m", keys.load_public(publisher.public))
    video = box.catalog.lesson("test-lesson-0").lesson.assets[0]  # type: ignore[union-attr]
    r = get(live_server, f"/media/{video.blob.sha256}")
    assert r.headers["Content-Type"] == "video/mp4"


TRAVERSALS = [
    "/media/../state.json",
    "/media/%2e%2e/state.json",
    "/media/%2e%2e%2fstate.json",
    "/media/%252e%252e%252fstate.json",
    "/media/..%5cstate.json",
    "/media/%2fetc%2fpasswd",
    "/media//etc/passwd",
    "/media/state.json",
    "/media/lock",
    "/media/" + "A" * 64,
    "/media/" + "0" * 63,
    "/media/" + "0" * 64,
    "/media/" + "0" * 64 + "%00",
    "/media/..",
    "/media/.",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_outside_the_blob_store(live_server: LiveServer, box: Box, path: str) -> None:
    (box.data.root / "state.json").write_bytes(b'{"secret": "do not serve"}')
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    status = int(response.split(b" ", 2)[1])
    assert status in (400, 404), response[:200]
    assert b"do not serve" not in response and b"root:" not in response


def test_sha_check() -> None:
    assert is_sha256("a" * 64) and not is_sha256("A" * 64) and not is_sha256("a" * 64 + "\n")


def _slow_reader(port: int, sha: str) -> socket.socket:
    """Open a connection that asks for the whole blob and then reads almost nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /media/{sha} HTTP/1.1\r\nHost: tv\r\nRange: bytes=0-\r\n\r\n".encode())
    s.settimeout(5)
    assert s.recv(4096).startswith(b"HTTP/1.1 206")
    return s


@pytest.mark.slow
def test_slow_readers_do_not_hold_worker_threads(live_server: LiveServer, box: Box, blob: tuple[str, bytes]) -> None:
    big = put_blob(box, os.urandom(64 << 20))  # far more than waitress buffers per connection
    readers = [_slow_reader(live_server.port, big) for _ in range(16)]  # twice the 8 worker threads
    try:
        time.sleep(0.5)
        for attempt in range(3):
            started = time.monotonic()
            r = get(live_server, f"/media/{blob[0]}", Range="bytes=0-1023")
            elapsed = time.monotonic() - started
            assert r.status_code == 206 and len(r.content) == 1024
            assert elapsed < 1.0, f"the 17th request took {elapsed:.2f} s"
            health = requests.get(live_server.url + "/-/health", timeout=5)
            assert health.status_code == 200, attempt
        for s in readers:  # and every slow reader is still being served
            s.settimeout(5)
            assert s.recv(65536)
    finally:
        for s in readers:
            s.close()


def test_abandoned_downloads_release_their_files(live_server: LiveServer, box: Box) -> None:
    import psutil

    big = put_blob(box, os.urandom(8 << 20))
    process = psutil.Process()
    before = process.num_fds()
    for i in range(50):  # a TV that seeks closes the old connection mid-file
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as s:
            s.sendall(f"GET /media/{big} HTTP/1.1\r\nHost: tv\r\nRange: bytes={i * 1000}-\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 206")
    deadline = time.monotonic() + 5
    while process.num_fds() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.num_fds() <= before


def test_playing_a_lesson_marks_it_played_for_eviction(box: Box, client) -> None:  # type: ignore[no-untyped-def]
    from classbox import keys
    from classbox.box import DEMO_KEY, DEMO_ROOT

    box.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
    entry = box.catalog.browse({}).entries[0]
    video = entry.lesson.blobs()[0].sha256
    assert box.holdings().last_played.get(video, 0.0) == 0.0
    before = time.time()
    assert client.get(f"/media/{video}", headers={"Range": "bytes=0-99"}).status_code == 206
    for blob in entry.lesson.blobs():  # the whole lesson counts as played
        assert box.holdings().last_played[blob.sha256] >= before
