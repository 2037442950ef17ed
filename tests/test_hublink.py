"""The link between a teaching point's box and its hub: the hub's key and mirror, following it, notices, /admin/hub."""

from __future__ import annotations

import hashlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient

from classbox import channel, create_app, hublink, keys, signing
from classbox.box import Box
from classbox.config import Config
from classbox.hub.points import channel_for, parse_enrolment
from classbox.hub.publish import mirror_root
from classbox.setup import SchoolSettings
from classbox.sync.download import SyncError
from classbox.sync.worker import SyncWorker, history, run_sync

from .conftest import LiveServer, Publisher, start_server, write_source
from .test_setup import PASSWORD, csrf_of

WAIT = 20.0


@dataclass
class Hub:
    """A hub app served by waitress, with its box."""

    app: Flask
    box: Box
    server: LiveServer

    @property
    def key_id(self) -> str:
        return keys.key_id(self.box.signing_key.public_key())

    def publish_for(self, point: Box, src: Path, lessons: int = 2) -> channel.Manifest:
        """Build the point's channel into the hub's mirror, signed by the hub, as its publish page does."""
        write_source(src, channel_for(point.box_id), lessons=lessons)
        return channel.build(src, self.box.signing_key, mirror_root(self.box))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """Serve a hub (CLASSBOX_ROLE=hub) on a free loopback port."""
    config = Config.from_env({}, data_dir=tmp_path / "hub", demo=False, host="127.0.0.1", port=0, role="hub")
    app = create_app(config)
    server, stop = start_server(app)
    try:
        yield Hub(app, app.extensions["classbox"], server)
    finally:
        stop()
        app.extensions["classbox"].close()


def set_up(box: Box, hub_url: str = "", hub_key: str = "") -> None:
    """Set the box up as its technician would, naming the hub."""
    box.setup.complete(SchoolSettings(school="石门村小学", box_name="一号盒子", hub_url=hub_url, hub_key=hub_key),
                       password=PASSWORD)


def wait_for(what: Callable[[], Any], message: str, timeout: float = WAIT) -> Any:
    """Poll until what() is truthy; fail with message after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(message)


def free_port() -> int:
    """Return a loopback port nothing listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_get(server: LiveServer, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (no client normalising '..' away)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def lessons_of(box: Box, channel_id: str) -> set[str]:
    """Return the ids of a channel's lessons ready to play on the box."""
    return {e.lesson.id for e in box.catalog.browse({}).entries if e.channel == channel_id}


# ------------------------------------------------------------------ trust and follow


def test_a_box_follows_its_hub_and_gets_its_lessons(hub: Hub, box: Box, tmp_path: Path) -> None:
    manifest = hub.publish_for(box, tmp_path / "src")
    set_up(box, hub.server.url, hub.key_id)
    point = channel_for(box.box_id)
    assert hublink.hub_source(box.setup.settings()) == f"{hub.server.url}/hub/mirror"

    assert hublink.follow_hub(box) == point
    pinned = box.trusted_key(point)
    assert pinned is not None and keys.key_id(pinned) == hub.key_id
    assert box.subscribed() == [point] and box.filters(point) == {}  # the whole channel
    assert hublink.follow_hub(box) == point  # again: nothing changes, nothing is fetched

    record = run_sync(box, [hublink.hub_source(box.setup.settings()) or ""], [point], "now")
    assert record.ok, record.errors
    assert lessons_of(box, point) == {lesson.id for lesson in manifest.lessons}
    state = hublink.link_state(box)
    assert (state.pinned_key, state.version, state.ready, state.lessons) == (hub.key_id, manifest.version, 2, 2)


def test_a_hub_offering_another_key_is_refused_and_nothing_is_pinned(hub: Hub, box: Box) -> None:
    expected = keys.key_id(Ed25519PrivateKey.generate().public_key())
    set_up(box, hub.server.url, expected)
    with pytest.raises(hublink.HubKeyMismatch) as refused:
        hublink.follow_hub(box)
    assert f"offers key {hub.key_id} but setup expects {expected}" in str(refused.value)
    assert hub.server.url in str(refused.value)
    assert box.trusted_key(channel_for(box.box_id)) is None and box.subscribed() == []


def test_a_pinned_key_is_never_replaced_silently(hub: Hub, box: Box) -> None:
    set_up(box, hub.server.url, hub.key_id)
    other = Ed25519PrivateKey.generate().public_key()
    box.pin_key(channel_for(box.box_id), other)
    with pytest.raises(hublink.HubKeyMismatch, match=f"pinned to key {keys.key_id(other)}"):
        hublink.follow_hub(box)
    pinned = box.trusted_key(channel_for(box.box_id))
    assert pinned is not None and keys.key_id(pinned) == keys.key_id(other)


def test_no_hub_set_up_means_nothing_to_follow(box: Box) -> None:
    set_up(box)
    assert hublink.follow_hub(box) is None and hublink.hub_source(box.setup.settings()) is None


def test_scheduled_runs_sync_from_the_hub_too(hub: Hub, app: Flask, box: Box, tmp_path: Path) -> None:
    manifest = hub.publish_for(box, tmp_path / "src")
    set_up(box, hub.server.url, hub.key_id)  # never followed by hand: the worker's first run does it
    worker: SyncWorker = app.extensions["classbox_sync"]
    worker.start()
    try:
        run = wait_for(lambda: next((r for r in history(box) if r["trigger"] == "schedule"), None),
                       "the worker's first scheduled run did not happen")
    finally:
        worker.stop()
    assert run["ok"] and run["sources"] == [f"{hub.server.url}/hub/mirror"], run
    assert lessons_of(box, channel_for(box.box_id)) == {lesson.id for lesson in manifest.lessons}


def test_before_the_hub_publishes_anything_there_is_nothing_to_sync_and_no_failure(hub: Hub, box: Box) -> None:
    set_up(box, hub.server.url, hub.key_id)
    assert hublink.hub_sync(box) is None  # the mirror has no point channel yet: not a failed run
    assert box.trusted_key(channel_for(box.box_id)) is not None  # but the hub's key is pinned already


def test_a_failing_hub_does_not_stop_the_other_sources(tmp_path: Path, publisher: Publisher) -> None:
    folder = tmp_path / "usb"
    built = channel.build(write_source(tmp_path / "src", "test"), keys.load_private(publisher.private), folder)
    config = Config.from_env({}, data_dir=tmp_path / "box", demo=False, sync_sources=str(folder))
    app = create_app(config)
    box: Box = app.extensions["classbox"]
    worker: SyncWorker = app.extensions["classbox_sync"]
    try:
        box.subscribe("test", {}, keys.load_public(publisher.public))
        hub_key = Ed25519PrivateKey.generate().public_key()
        set_up(box, f"http://127.0.0.1:{free_port()}", keys.key_id(hub_key))  # nothing listens there
        worker.start()
        # No hub key yet and the hub unreachable: the hub is left out, the folder synced.
        first = wait_for(lambda: next((r for r in history(box) if r["trigger"] == "schedule"), None),
                         "the worker's first scheduled run did not happen")
        assert first["ok"] and first["sources"] == [str(folder)], first
        assert lessons_of(box, "test") == {lesson.id for lesson in built.lessons}
        assert box.trusted_key(channel_for(box.box_id)) is None

        # Key pinned but the hub down: its run fails on its own, the folder's still runs.
        box.pin_key(channel_for(box.box_id), hub_key)
        built_again = channel.build(write_source(tmp_path / "src", "test", lessons=3),
                                    keys.load_private(publisher.private), folder)
        worker.request_now()
        hub_run = wait_for(lambda: next((r for r in history(box) if r["trigger"] == "now"
                                         and r["sources"] != [str(folder)]), None), "the hub was not tried")
        folder_run = next(r for r in history(box) if r["trigger"] == "now" and r["sources"] == [str(folder)])
        assert folder_run["ok"] and folder_run["channels"] == ["test"], folder_run
        assert not hub_run["ok"] and hub_run["channels"] == [channel_for(box.box_id)], hub_run
        assert lessons_of(box, "test") == {lesson.id for lesson in built_again.lessons}
    finally:
        worker.stop()
        box.close()


# ------------------------------------------------------------------ the hub's side


def test_the_hub_serves_its_key_and_mirror_resumably(hub: Hub, box: Box, tmp_path: Path) -> None:
    manifest = hub.publish_for(box, tmp_path / "src")
    r = requests.get(f"{hub.server.url}/hub/key.pub", timeout=5)
    assert r.status_code == 200 and r.text == hub.box.public_key_pem
    point = channel_for(box.box_id)
    r = requests.get(f"{hub.server.url}/hub/mirror/channels/{point}/manifest.json", timeout=5)
    assert r.status_code == 200 and channel.parse_manifest(r.content).version == manifest.version
    again = requests.get(r.url, headers={"If-None-Match": r.headers["ETag"]}, timeout=5)
    assert again.status_code == 304

    blob = max(manifest.blobs().values(), key=lambda b: b.size)
    url = f"{hub.server.url}/hub/mirror/blobs/sha256/{blob.sha256[:2]}/{blob.sha256}"
    whole = requests.get(url, timeout=5)
    assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == blob.sha256
    etag = whole.headers["ETag"]
    assert etag == f'"{blob.sha256}"'
    rest = requests.get(url, headers={"Range": "bytes=100-", "If-Range": etag}, timeout=5)
    assert rest.status_code == 206 and rest.headers["Content-Range"] == f"bytes 100-{blob.size - 1}/{blob.size}"
    assert rest.content == whole.content[100:]
    changed = requests.get(url, headers={"Range": "bytes=100-", "If-Range": '"something-else"'}, timeout=5)
    assert changed.status_code == 200 and changed.content == whole.content


def test_the_hub_mirror_never_leads_outside_it(hub: Hub, box: Box, tmp_path: Path) -> None:
    hub.publish_for(box, tmp_path / "src")
    root = mirror_root(hub.box)
    secret = hub.box.data.root / "identity" / keys.PRIVATE_NAME
    fake = "ab" + "0" * 62
    (root / "blobs" / "sha256" / "ab").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / "ab" / fake).symlink_to(secret)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / channel.MANIFEST).write_text("-----BEGIN PRIVATE KEY----- (a file outside the mirror)")
    (root / "channels" / "escape").symlink_to(outside)
    for path in ("/hub/mirror/../identity/publisher.key", "/hub/mirror/../../identity/publisher.key",
                 "/hub/mirror/%2e%2e/identity/publisher.key", "/hub/mirror/channels/..%2f..%2fstate.json",
                 "/hub/mirror/blobs/sha256/../../../identity/publisher.key", f"/hub/mirror/blobs/sha256/ab/{fake}",
                 "/hub/mirror/channels/escape/manifest.json", "/hub/mirror/state.json", "/hub/mirror/"):
        status, body = raw_get(hub.server, path)
        assert status == 404, path
        assert b"PRIVATE KEY" not in body, path


def test_a_box_that_is_not_a_hub_serves_no_hub_files(live_server: LiveServer, box: Box, tmp_path: Path) -> None:
    write_source(tmp_path / "src", "point-0123456789abcdef")
    channel.build(tmp_path / "src", box.signing_key, mirror_root(box))
    for path in ("/hub/key.pub", "/hub/mirror/channels/point-0123456789abcdef/manifest.json"):
        assert raw_get(live_server, path)[0] == 404, path
    fingerprint = keys.key_id(box.signing_key.public_key())
    with pytest.raises(SyncError, match=r"cannot fetch the hub's key: .*404.*CLASSBOX_ROLE=hub"):
        hublink.fetch_hub_key(live_server.url, fingerprint, timeout=5)
    with pytest.raises(SyncError, match="cannot fetch the hub's key"):
        hublink.fetch_hub_key(f"http://127.0.0.1:{free_port()}", fingerprint, timeout=2)


# ------------------------------------------------------------------ notices


def test_a_notice_signed_by_the_hub_starts_a_sync_from_it(hub: Hub, app: Flask, box: Box,
                                                         live_server: LiveServer, tmp_path: Path) -> None:
    hub.publish_for(box, tmp_path / "src")
    set_up(box, hub.server.url, hub.key_id)
    hublink.follow_hub(box)
    worker: SyncWorker = app.extensions["classbox_sync"]
    before = time.time()
    worker.start()
    try:
        wait_for(lambda: any(r["trigger"] == "schedule" for r in history(box)), "no first scheduled run")
        assert hublink.notify(live_server.url, hub.box.signing_key, hub.box.box_id) is None
        run = wait_for(lambda: next((r for r in history(box) if r["trigger"] == "now"), None),
                       "the notice did not start a sync")
    finally:
        worker.stop()
    assert run["ok"] and run["sources"] == [f"{hub.server.url}/hub/mirror"]
    assert run["channels"] == [channel_for(box.box_id)]
    notified = hublink.link_state(box).notified_at
    assert notified is not None and notified >= before - 1


def test_notices_not_signed_by_the_hub_are_refused(hub: Hub, app: Flask, box: Box, live_server: LiveServer) -> None:
    set_up(box, hub.server.url, hub.key_id)
    url = f"{live_server.url}/api/v1/notify"
    hub_key, hub_id = hub.box.signing_key, hub.box.box_id
    assert requests.post(url, timeout=5).status_code == 403  # not pinned yet: not even the hub's notice
    hublink.follow_hub(box)
    worker: SyncWorker = app.extensions["classbox_sync"]

    r = requests.post(url, timeout=5)
    assert r.status_code == 403 and r.json()["code"] == "bad_signature" and "not signed" in r.json()["error"]
    refused = hublink.notify(live_server.url, Ed25519PrivateKey.generate(), hub_id)
    assert refused is not None and "403" in refused and refused.startswith("refused")
    replayed = signing.sign_request(hub_key, hub_id, "POST", "/api/v1/notify", b"", now=time.time() - 660)
    r = requests.post(url, headers=replayed, timeout=5)
    assert r.status_code == 403 and "too far from now" in r.json()["error"]
    recent = signing.sign_request(hub_key, hub_id, "POST", "/api/v1/notify", b"", now=time.time() - 300)
    for _ in range(2):  # a replay within the ten minutes only starts another sync
        r = requests.post(url, headers=recent, timeout=5)
        assert r.status_code == 202 and r.json() == {"accepted": True}
    assert not worker.running
    assert hublink.link_state(box).notified_at is not None


def test_a_box_without_a_hub_takes_no_notice_and_an_unreachable_box_is_reported(box: Box,
                                                                                live_server: LiveServer) -> None:
    set_up(box)
    key = Ed25519PrivateKey.generate()
    refused = hublink.notify(live_server.url, key, "0123456789abcdef")
    assert refused is not None and "HTTP 403" in refused and "no hub is set up" in refused
    unreachable = hublink.notify(f"http://127.0.0.1:{free_port()}", key, "0123456789abcdef", timeout=2)
    assert unreachable is not None and unreachable.startswith("unreachable")


# ------------------------------------------------------------------ /admin/hub


def log_in(client: FlaskClient) -> None:
    page = client.get("/admin/login")
    r = client.post("/admin/login", data={"name": "admin", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 302


def test_the_admin_hub_page_shows_the_link_and_the_enrolment(hub: Hub, app: Flask, box: Box, client: FlaskClient,
                                                             tmp_path: Path) -> None:
    assert client.get("/admin/hub").headers["Location"].endswith("/setup")
    manifest = hub.publish_for(box, tmp_path / "src")
    set_up(box, hub.server.url, hub.key_id)
    assert "/admin/login" in client.get("/admin/hub").headers["Location"]
    assert "/admin/login" in client.get("/admin/hub/enrolment.json").headers["Location"]
    log_in(client)

    page = client.get("/admin/hub")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    for shown in (hub.server.url, hub.key_id, "尚未信任", "立即从中心校同步", "<textarea readonly",
                  box.public_key_pem.splitlines()[1], box.box_id):
        assert shown in page.text, shown
    assert 'href="/admin/hub"' in client.get("/admin").text  # in the admin menu

    download = client.get("/admin/hub/enrolment.json")
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    fields = parse_enrolment(download.data)
    assert fields["box_id"] == box.box_id and fields["public_key"] == box.public_key_pem.strip()
    assert (fields["name"], fields["school"]) == ("一号盒子", "石门村小学")
    assert fields["address"].startswith("http://")

    token = csrf_of(page.text)
    assert client.post("/admin/hub/sync").status_code == 403  # no CSRF token
    assert box.trusted_key(channel_for(box.box_id)) is None
    worker: SyncWorker = app.extensions["classbox_sync"]
    worker.start()
    try:
        r = client.post("/admin/hub/sync", data={"csrf_token": token})
        assert r.status_code == 302 and r.headers["Location"].endswith("/admin/hub")
        assert "已开始从中心校同步" in client.get("/admin/hub").text
        wait_for(lambda: lessons_of(box, channel_for(box.box_id)), "the lessons did not arrive from the hub")
    finally:
        worker.stop()
    after = client.get("/admin/hub").text
    assert f"已信任 {hub.key_id}" in after and str(manifest.version) in after and "2 / 2 节可以播放" in after


def test_the_admin_hub_page_without_a_hub(app: Flask, box: Box, client: FlaskClient) -> None:
    set_up(box)
    log_in(client)
    page = client.get("/admin/hub").text
    assert "没有设置中心校" in page and "立即从中心校同步" not in page
    assert box.public_key_pem.splitlines()[1] in page
