"""Attacks and bad input, as an attacker on the school LAN (or a hostile USB drive, or a lying mirror) would try them.

Six parts, each asserting what a user would notice: a canary file outside the data directory is never
served or copied, nothing is written outside the data directory, and a refused request leaves the
box's state byte for byte as it was.

1. Path traversal: 500 payloads (tests/attack_payloads.py) against every route that serves or imports
   files, through the test client and, raw and un-normalised, through a real waitress; the USB import,
   sync sources, `channel add` and `usb import`; links inside a channel folder or a drive.
2. CSRF and sessions: every state-changing route under /admin, /api/v1/admin, /hub, /api/v1/control,
   without a session, without the token, with another session's token, from another site.
3. Signed content: one table of every way to forge or replay a channel; each is refused, the store unchanged.
4. Uploads: too big (413) and mistyped (415); nothing reaches hub/files/.
5. No stack trace or secret in any response of this file (checked for every response, see `watch`),
   even from a view that fails.
6. Security headers on every kind of page.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from tinydb import where

from classbox import channel, create_app, keys
from classbox.actions import ACTIONS
from classbox.box import Box
from classbox.cli import main
from classbox.config import Config
from classbox.errors import ChannelRejected, ClassboxError, InvalidInput
from classbox.hub import publish
from classbox.hub.lessons import Lessons
from classbox.hub.plans import Plans
from classbox.hub.points import Points, make_enrolment
from classbox.hub.uploads import MAX_CHUNK
from classbox.sync.download import Limits, SyncError
from classbox.sync.sources import Backoff, HttpSource, Transfer
from classbox.sync.worker import run_sync

from .attack_payloads import as_filesystem_paths, for_request_line, traversal_payloads
from .conftest import Publisher, start_server, write_source
from .test_channel import manifest_path, resign, snapshot
from .test_setup import PASSWORD, csrf_of, do_setup
from .test_uploads import zip_bytes

SECRET = "CANARY-5b9d2f0e-if-you-can-read-this-the-box-leaked-it"
LEAK_MARKERS = (b"Traceback", b'File "/', b"scrypt$", b"PRIVATE KEY", b"root:x:0:0", SECRET.encode())
TEACHER_PASSWORD = "teacher password 1"
POINT_ID = "0123456789abcdef"
EVIL_ORIGINS = ("http://evil.example", "http://localhost.evil.example")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
MAX_MANIFEST = 256 * 1024
MB = 1024 * 1024


# ---------------------------------------------------------------- every response, checked for leaks


@dataclass
class Seen:
    """One response an attacker received."""

    label: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Watch:
    """Every response of a test, and the secrets none of them may carry."""

    responses: list[Seen] = field(default_factory=list)
    apps: list[Flask] = field(default_factory=list)
    session_ids: set[str] = field(default_factory=set)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (command, what it printed)

    def add(self, label: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.responses.append(Seen(label, status, headers, body))

    def secrets(self) -> list[bytes]:
        """Return what no response may contain: control tokens, session ids, and the fixed markers."""
        found = [str(app.config["CONTROL_TOKEN"]).encode() for app in self.apps]
        return found + [s.encode() for s in self.session_ids] + list(LEAK_MARKERS)

    def assert_clean(self) -> None:
        """Assert no response body or header, and no command output, carries a secret or a traceback."""
        for seen in self.responses:
            for name, value in seen.headers:
                if name.lower() == "set-cookie":
                    cookie = value.split(";", 1)[0]
                    if cookie.startswith("classbox_session="):
                        self.session_ids.add(cookie.split("=", 1)[1])
        secrets = [s for s in self.secrets() if s]
        for seen in self.responses:
            for secret in secrets:
                assert secret not in seen.body, f"{seen.label} ({seen.status}) leaked {secret[:24]!r}"
            for name, value in seen.headers:
                if name.lower() == "set-cookie":
                    continue  # a session id goes to the browser it belongs to, and only there
                for secret in secrets:
                    assert secret.decode() not in value, f"{seen.label}: header {name} leaked {secret[:24]!r}"
        for command, output in self.outputs:
            for secret in secrets:
                assert secret.decode() not in output, f"{command} printed {secret[:24]!r}"


@pytest.fixture(autouse=True)
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    """Record every response a test client gets; at the end, assert none leaked a secret or a traceback."""
    seen = Watch()
    original = FlaskClient.open

    def open_and_record(self: FlaskClient, *args: Any, **kwargs: Any) -> Any:
        response = original(self, *args, **kwargs)
        label = f"{response.request.method} {response.request.full_path}"
        seen.add(label, response.status_code, list(response.headers.items()), response.get_data())
        response.close()  # the body is kept (get_data buffered it); a file behind it is released
        return response

    monkeypatch.setattr(FlaskClient, "open", open_and_record)
    yield seen
    seen.assert_clean()


def run_cli(watch: Watch, *args: str) -> tuple[int, str]:
    """Run a classbox command in-process; record what it printed; return its exit code and output."""
    result = CliRunner().invoke(main, list(args))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += f"\nTraceback: {result.exception!r}"  # an uncaught exception is a crash a user sees
    watch.outputs.append((" ".join(args), output))
    return result.exit_code, output


# ---------------------------------------------------------------- the canary, outside the data directory


@dataclass
class Canary:
    """A folder outside the data directory holding a file with a secret no response may ever carry."""

    dir: Path
    file: Path

    def state(self) -> dict[str, tuple[int, int, int, str]]:
        """Return every entry under the folder (itself included): mode, size, mtime and content hash."""
        out = {}
        for path in [self.dir, *sorted(self.dir.rglob("*"))]:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[str(path.relative_to(self.dir))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
        return out


@pytest.fixture
def canary(tmp_path: Path) -> Canary:
    """Plant the canary in tmp_path/outside, beside (never inside) the data directory tmp_path/data."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "canary.txt").write_text(f"{SECRET}\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "more.txt").write_text(f"{SECRET} again\n")
    return Canary(folder, folder / "canary.txt")


def payloads_for(canary: Canary, data_dir: Path) -> list[str]:
    """Return the 500 payloads, reaching for the canary, /etc/passwd and the box's own secrets."""
    return traversal_payloads(
        targets=("etc/passwd", "outside/canary.txt", "state.json", "serve.json", "identity/publisher.key"),
        absolute_targets=(str(canary.file), str(data_dir / "state.json"),
                          str(data_dir / "identity" / "publisher.key")),
    )


# ---------------------------------------------------------------- a box (or hub) with something in every place


@dataclass
class World:
    """An app with a channel installed and, on a hub, a teacher, a point, a lesson, a publication and an upload."""

    app: Flask
    box: Box
    admin: FlaskClient
    admin_csrf: str
    teacher: FlaskClient
    teacher_csrf: str
    teacher_session: str
    blob: str
    mirror: Path
    drive: Path
    lesson: str = "hub-0000000000"
    upload: str = "A" * 22
    hub_file: str = ""

    @property
    def data(self) -> Path:
        return self.box.data.root


def open_app(watch: Watch, config: Config) -> Flask:
    """Build an app and register its control token with the watch."""
    app = create_app(config)
    watch.apps.append(app)
    return app


def build_world(tmp_path: Path, watch: Watch, publisher: Publisher, role: str) -> World:
    """Make a box (or hub) on tmp_path/data with content in every place a route reads from."""
    media = tmp_path / "media"
    (media / "USB0").mkdir(parents=True)
    config = Config.from_env({}, data_dir=tmp_path / "data", demo=False, host="127.0.0.1", port=0, role=role,
                             usb_roots=str(media), max_upload="1M", max_manifest_bytes=MAX_MANIFEST)
    app = open_app(watch, config)
    box: Box = app.extensions["classbox"]
    mirror = tmp_path / "mirror"
    channel.build(write_source(tmp_path / "src"), keys.load_private(publisher.private), mirror)
    box.add_channel(mirror, keys.load_public(publisher.public))
    admin = app.test_client()
    do_setup(admin)
    admin_csrf = csrf_of(admin.get("/admin").text)
    box.accounts.create("wang", "teacher", password=TEACHER_PASSWORD)
    teacher = app.test_client()
    teacher_session = box.sessions.start(box.accounts.login("wang", TEACHER_PASSWORD))
    teacher.set_cookie("classbox_session", teacher_session.id)
    watch.session_ids.add(teacher_session.id)
    world = World(app, box, admin, admin_csrf, teacher, teacher_session.csrf, teacher_session.id,
                  box.store.blobs()[0], mirror, media / "USB0")
    if role == "hub":
        pdf = b"%PDF-1.4 lesson sheet\n%%EOF\n"
        world.hub_file = hashlib.sha256(pdf).hexdigest()
        files = world.data / "hub" / "files"
        files.mkdir(parents=True)
        (files / world.hub_file).write_bytes(pdf)
        lessons, plans = Lessons(box.state), Plans(box.state)
        lesson = lessons.create("认识钟表", {"grade": "一年级", "subject": "数学"}, "wang")
        lessons.add_file(lesson.id, "task_sheet", "任务单.pdf", world.hub_file, len(pdf), "application/pdf")
        world.lesson = lesson.id
        point = Points(box.state).enrol(make_enrolment(POINT_ID, "石门教学点", "石门村小学", box.public_key_pem))
        plans.put(POINT_ID, date.today().isoformat(), 1, "一年级", lesson.id)
        publish.publish(box, point, publish.prepare(box, point, lessons, plans, date.today()))
        r = teacher.post("/hub/api/uploads", json={"name": "课件.pdf", "size": 100},
                         headers={"X-CSRF-Token": world.teacher_csrf})
        assert r.status_code == 201, r.text
        world.upload = r.json["id"]
    return world


@pytest.fixture
def hub(tmp_path: Path, watch: Watch, publisher: Publisher) -> Iterator[World]:
    """Return a hub (a hub is a box too: every route exists on it) with content everywhere."""
    world = build_world(tmp_path, watch, publisher, "hub")
    yield world
    world.box.close()


def refused(status: int, headers: Any, label: str) -> None:
    """Assert a request was refused (4xx), or sent to another page of this same box."""
    if 300 <= status < 400:
        location = headers.get("Location", "")
        target = urllib.parse.urlsplit(location)
        assert target.netloc in ("", "localhost") or target.hostname == "127.0.0.1", f"{label} → {location}"
        assert not location.startswith("//"), f"{label} redirects off the box: {location}"
        return
    assert 400 <= status < 500, f"{label} answered {status}"


# ---------------------------------------------------------------- 1. path traversal


TRAVERSAL_GETS = (
    # (route, who asks); {p} is the payload in the path, {p2} its first two characters, {q} it in a query
    ("/media/{p}", "anyone"),
    ("/mirror/channels/{p}/manifest.json", "anyone"),
    ("/mirror/channels/test/{p}", "anyone"),
    ("/mirror/blobs/sha256/{p2}/{p}", "anyone"),
    ("/hub/mirror/channels/{p}/manifest.json.sig", "anyone"),
    (f"/hub/mirror/channels/point-{POINT_ID}/{{p}}", "anyone"),
    ("/hub/mirror/blobs/sha256/{p2}/{p}", "anyone"),
    ("/hub/files/{p}", "teacher"),
    ("/static/{p}", "anyone"),
    ("/address.svg?for={q}", "anyone"),
    ("/api/v1/lessons/{p}", "anyone"),
    ("/api/v1/rooms/{p}/state", "anyone"),
    ("/api/v1/rooms/{p}/today", "anyone"),
    ("/api/v1/rooms/{p}/pairing", "anyone"),
    ("/api/v1/rooms/{p}/qr.svg", "anyone"),
    ("/hub/api/uploads/{p}", "teacher"),
    ("/hub/points/{p}/played.csv", "teacher"),
    ("/hub/lessons/{p}", "teacher"),
)


def fill(route: str, payload: str) -> str:
    """Put a payload into a route template."""
    return route.replace("{p2}", payload[:2] or "..").replace("{p}", payload).replace(
        "{q}", urllib.parse.quote(payload, safe="%"))


def test_the_payloads_are_500_distinct_and_the_same_every_time(canary: Canary, tmp_path: Path) -> None:
    payloads = payloads_for(canary, tmp_path / "data")
    assert len(payloads) == len(set(payloads)) == 500
    assert payloads == payloads_for(canary, tmp_path / "data")
    joined = "\n".join(payloads)
    for spelling in ("../", "..%2f", "%2e%2e/", "%252e%252e%252f", "..\\", "%5c", "/etc/passwd", "C:\\",
                     "%00", "%c0%ae", "\u2025", "\uff0e"):
        assert spelling in joined, spelling


@pytest.mark.slow
def test_traversal_through_every_route_that_serves_or_imports_files(hub: World, canary: Canary) -> None:
    payloads = payloads_for(canary, hub.data)
    before, store_before = canary.state(), snapshot(hub.data)
    clients = {"anyone": hub.app.test_client(), "teacher": hub.teacher}
    for route, who in TRAVERSAL_GETS:
        for payload in payloads:
            path = fill(route, payload)
            r = clients[who].get(path, follow_redirects=True)
            refused(r.status_code, r.headers, path)
    assert snapshot(hub.data) == store_before, "a GET changed the data directory"

    # Attaching a file to a hub lesson by a path instead of an uploaded file's hash.
    lessons = Lessons(hub.box.state)
    assets = lessons.get(hub.lesson).assets
    for payload in [*payloads, *as_filesystem_paths(payloads)[:200]]:
        r = hub.teacher.post(f"/hub/api/lessons/{hub.lesson}/files", headers={"X-CSRF-Token": hub.teacher_csrf},
                             json={"sha256": payload, "size": 10, "media_type": "application/pdf",
                                   "name": "a.pdf", "role": "exercise"})
        assert r.status_code == 404, (payload, r.status_code, r.text)
    assert lessons.get(hub.lesson).assets == assets

    # The dashboard's USB import and export take only a drive the box found under its USB roots.
    session = hub.box.sessions.get(hub.admin.get_cookie("classbox_session").value)  # type: ignore[union-attr]
    assert session is not None
    for action in ("import", "export"):
        for drive in [*payloads, *as_filesystem_paths(payloads), str(canary.dir), str(hub.data), "/"]:
            r = hub.admin.post(f"/admin/usb/{action}", data={"drive": drive, "csrf_token": hub.admin_csrf})
            assert r.status_code == 302, (action, drive)
            assert session.notice is not None and "no drive" in session.notice[1], (action, drive, session.notice)
    assert hub.box.jobs.latest() == [], "an export started to a drive the box did not offer"
    assert canary.state() == before, "something was written outside the data directory"


def test_a_teacher_cannot_publish_the_boxs_own_files_to_the_mirror(hub: World, canary: Canary) -> None:
    """The chain a teacher would use: attach a path as a lesson file, publish, fetch it from /hub/mirror unsigned-in."""
    secrets = [hub.data / "state.json", hub.data / "identity" / keys.PRIVATE_NAME, canary.file]
    token = {"X-CSRF-Token": hub.teacher_csrf}
    for path in secrets:
        for name in (str(path), os.path.relpath(path, hub.data / "hub" / "files")):
            r = hub.teacher.post(f"/hub/api/lessons/{hub.lesson}/files", headers=token,
                                 json={"sha256": name, "size": 1, "media_type": "application/pdf", "name": "a.pdf",
                                       "role": "exercise"})
            assert r.status_code == 404, (name, r.text)
    # Even one already in the hub's records (put there before this check existed) is not published.
    with pytest.raises(InvalidInput, match="sha256"):
        Lessons(hub.box.state).add_file(hub.lesson, "exercise", "a.pdf", str(secrets[0]), 1, "application/pdf")
    with hub.box.state.transaction() as db:
        table = db.table("hub_lessons")
        doc = dict(table.get(where("id") == hub.lesson))  # type: ignore[arg-type]
        doc["assets"] = [*doc["assets"], {"role": "exercise", "name": "a.pdf", "sha256": str(secrets[0]), "size": 1,
                                          "media_type": "application/pdf", "pause_points": [], "pages": []}]
        table.update(doc, where("id") == hub.lesson)
    r = hub.teacher.post(f"/hub/points/{POINT_ID}/publish", data={"csrf_token": hub.teacher_csrf, "confirm": "1"})
    assert r.status_code == 302
    anyone = hub.app.test_client()
    data = anyone.get(f"/hub/mirror/channels/point-{POINT_ID}/manifest.json").data
    for lesson in channel.parse_manifest(data).lessons:
        for blob in lesson.blobs():
            r = anyone.get(f"/hub/mirror/blobs/sha256/{blob.sha256[:2]}/{blob.sha256}")
            assert r.status_code == 200 and hashlib.sha256(r.data).hexdigest() == blob.sha256
    # The watch asserts that none of these answers carried state.json, the signing key or the canary.


def raw_get(port: int, target: str, cookie: str = "") -> tuple[int, list[tuple[str, str]], bytes]:
    """Send one GET exactly as written (no client normalises or re-encodes it) and read the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{port}")
        if cookie:
            conn.putheader("Cookie", cookie)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


RAW_GETS = ("/media/{p}", "/static/{p}", "/mirror/blobs/sha256/{p2}/{p}", "/mirror/channels/{p}/manifest.json",
            "/hub/mirror/blobs/sha256/{p2}/{p}", "/hub/files/{p}", "/api/v1/lessons/{p}")


@pytest.mark.slow
def test_traversal_through_a_real_waitress_un_normalised(hub: World, canary: Canary, watch: Watch) -> None:
    payloads = payloads_for(canary, hub.data)
    before = canary.state()
    server, stop = start_server(hub.app)
    cookie = f"classbox_session={hub.teacher_session}"
    try:
        for route in RAW_GETS:
            for payload in payloads:
                target = fill(route, for_request_line(payload))
                for _hop in range(2):  # "//" is merged by a redirect on the box; follow it once, as a browser would
                    status, headers, body = raw_get(server.port, target, cookie if "/hub/files/" in route else "")
                    watch.add(f"raw GET {target}", status, headers, body)
                    refused(status, dict(headers), target)
                    if status < 300 or status >= 400:
                        break
                    target = for_request_line(urllib.parse.urlsplit(dict(headers)["Location"]).path)
                else:
                    raise AssertionError(f"{target}: redirected again")
    finally:
        stop()
    assert len(watch.responses) >= 500 * len(RAW_GETS)
    assert canary.state() == before


@pytest.fixture
def installed_elsewhere(tmp_path: Path, publisher: Publisher) -> Path:
    """Return the data directory of a box (not open) holding the channel "test"."""
    mirror = tmp_path / "elsewhere-mirror"
    channel.build(write_source(tmp_path / "elsewhere-src"), keys.load_private(publisher.private), mirror)
    with Box(Config.from_env({}, data_dir=tmp_path / "box", demo=False)) as box:
        box.add_channel(mirror, keys.load_public(publisher.public))
    return tmp_path / "box"


def bump(d: dict[str, Any]) -> None:
    """Make a manifest document the next version."""
    d["version"] += 1


def bumped(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    """Return an edit that makes the next version and changes it: only the change can be why it is refused."""
    def edit(d: dict[str, Any]) -> None:
        bump(d)
        change(d)
    return edit


def hostile_drive(tmp_path: Path, mirror: Path, publisher: Publisher, canary: Canary) -> Path:
    """Return a drive carrying a newer, validly signed version of "test" whose new file is a link to the canary.

    The manifest even names the canary's true hash and size, as a publisher who knew the file could:
    only the check that a path stays inside the drive stops the box copying it into its store.
    """
    drive = tmp_path / "hostile-drive"
    root = drive / "classbox"
    shutil.copytree(mirror, root, symlinks=True)
    data = canary.file.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    page = {"sha256": sha, "size": len(data), "media_type": "image/jpeg"}
    resign(root, publisher.private, bumped(lambda d: d["lessons"][0]["assets"][1]["pages"].append(page)))
    link = root / "blobs" / "sha256" / sha[:2] / sha
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(canary.file)
    return drive


def test_usb_import_and_channel_add_from_anywhere_bring_nothing_in(tmp_path: Path, canary: Canary, watch: Watch,
                                                                  installed_elsewhere: Path,
                                                                  publisher: Publisher) -> None:
    data_dir = installed_elsewhere
    payloads = payloads_for(canary, data_dir)
    paths = [*as_filesystem_paths(payloads), str(canary.dir), str(canary.file), str(tmp_path), "/"]
    drive = hostile_drive(tmp_path, tmp_path / "elsewhere-mirror", publisher, canary)
    before, store_before = canary.state(), snapshot(data_dir / "blobs")
    channels_before = snapshot(data_dir / "channels")

    # What `classbox usb import PATH` and `classbox channel add PATH` run, for every payload.
    with Box(Config.from_env({}, data_dir=data_dir, demo=False)) as box:
        record = run_sync(box, [*paths, str(drive)], ["test"], "now")
        assert not record.ok and record.files == 0 and not record.activated
        assert any("rejected (path_escape)" in e for e in record.errors), record.errors[-3:]
        for path in [*paths, str(drive / "classbox")]:
            try:
                box.add_channel(Path(path), keys.load_public(publisher.public))
            except ChannelRejected:
                continue
            except ClassboxError as exc:
                raise AssertionError(f"channel add {path!r}: {exc!r} is not a rejection") from None
            raise AssertionError(f"channel add {path!r} was accepted")
        watch.outputs.append(("run_sync", json.dumps(record.errors, ensure_ascii=False)))

    # The commands themselves, on a sample (a command line cannot carry a NUL byte), and on the hostile drive.
    sample = [p for p in paths if "\0" not in p][::40]
    for path in sample:
        code, output = run_cli(watch, "usb", "import", path, "--data", str(data_dir))
        assert code != 0, (path, output)
    code, output = run_cli(watch, "usb", "import", str(drive), "--data", str(data_dir))
    assert code == 1 and "path_escape" in output, output
    for path in [*sample, str(drive / "classbox")]:
        code, output = run_cli(watch, "channel", "add", path, "--trust", str(publisher.public),
                               "--data", str(data_dir))
        assert code != 0, (path, output)
    assert snapshot(data_dir / "blobs") == store_before and snapshot(data_dir / "channels") == channels_before
    assert canary.state() == before


def test_sync_sources_from_the_lan_bring_nothing_in(hub: World, canary: Canary, tmp_path: Path,
                                                    publisher: Publisher) -> None:
    payloads = payloads_for(canary, hub.data)
    drive = hostile_drive(tmp_path, hub.mirror, publisher, canary)
    sources = [*as_filesystem_paths(payloads), str(canary.dir), str(canary.file), str(drive)]
    before = canary.state()
    store_before, channels_before = snapshot(hub.data / "blobs"), snapshot(hub.data / "channels")
    lan = hub.app.test_client()
    lan.environ_base["REMOTE_ADDR"] = "192.168.1.77"  # another machine on the school LAN
    worker = hub.app.extensions["classbox_sync"]
    worker.start()
    try:
        pem = keys.public_pem(keys.load_public(publisher.public)).decode()
        r = lan.post("/api/v1/sync", json={"sources": [str(drive)], "channels": ["evil"], "trust": pem})
        assert r.status_code == 403, "only the box itself may pin a key"
        asked = time.time()
        r = lan.post("/api/v1/sync", json={"sources": sources, "channels": ["test", "../outside", "/etc"]})
        assert r.status_code == 202
        deadline = time.monotonic() + 30
        while True:
            runs = [run for run in lan.get("/api/v1/sync").json["runs"] if run["started_at"] >= asked - 1]
            if runs and runs[0]["finished_at"]:
                break
            assert time.monotonic() < deadline, "the sync did not finish"
            time.sleep(0.1)
    finally:
        worker.stop()
    run = runs[0]
    assert run["files"] == 0 and run["activated"] == [] and not run["ok"]
    assert any("rejected (path_escape)" in e for e in run["errors"])
    assert snapshot(hub.data / "blobs") == store_before and snapshot(hub.data / "channels") == channels_before
    assert hub.box.trusted_key("evil") is None
    assert canary.state() == before


def test_export_to_a_drive_whose_folder_leads_elsewhere_writes_nothing_there(hub: World, canary: Canary) -> None:
    (hub.drive / "classbox").symlink_to(canary.dir, target_is_directory=True)
    before = canary.state()
    r = hub.admin.post("/admin/usb/export", data={"drive": str(hub.drive), "csrf_token": hub.admin_csrf})
    assert r.status_code == 302
    deadline = time.monotonic() + 20
    while not (hub.box.jobs.latest() and hub.box.jobs.latest()[0].finished):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job = hub.box.jobs.latest()[0]
    assert "outside" in job.error, job.error
    assert canary.state() == before, "the export wrote through a link on the drive"


# ---------------------------------------------------------------- 2. CSRF and sessions on every state-changing route


PREFIXES = ("/admin", "/api/v1/admin", "/hub", "/api/v1/control")
LOGIN_FORMS = {"admin.login_post": "/admin/login", "hub.login_post": "/hub/login"}


def unsafe_routes(app: Flask, world: World) -> list[tuple[str, str, str]]:
    """Return (method, path, endpoint) for every state-changing rule under PREFIXES, each action separately."""
    values = {"box_id": [POINT_ID], "lesson_id": [world.lesson], "upload_id": [world.upload],
              "action": sorted(ACTIONS)}
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(PREFIXES):
            continue
        for method in sorted((rule.methods or set()) & UNSAFE):
            paths = [rule.rule]
            for argument in sorted(rule.arguments):
                assert argument in values, f"{rule.rule}: give this test a value for <{argument}>"
                pattern = re.compile(rf"<(?:[^:<>]+:)?{argument}>")
                paths = [pattern.sub(v, p) for p in paths for v in values[argument]]
            out += [(method, p, rule.endpoint) for p in paths]
    return out


def forged_body(world: World, endpoint: str, path: str) -> dict[str, Any]:
    """Return what a forged request would carry, so that a missing check would show as a change of state."""
    today = date.today().isoformat()
    forms: dict[str, dict[str, Any]] = {
        "admin.rooms_post": {"name": "攻击者教室"},
        "admin.timetable_post": {"room": "一号教室", "weekday": "1", "number": "1", "start": "08:00",
                                 "end": "08:40", "subject": "语文"},
        "admin.booking_post": {"room": "一号教室", "date": today, "period": "1", "lesson": "test-lesson-0"},
        "admin.password": {"old": PASSWORD, "new": "attacker password 1", "again": "attacker password 1"},
        "admin.login_post": {"name": "admin", "password": "a wrong password"},
        "hub.login_post": {"name": "wang", "password": "a wrong password"},
        "hub.teachers_post": {"name": "mallory", "password": "attacker password 1"},
        "hub.points_post": {"enrolment": make_enrolment("fedcba9876543210", "假教学点", "", world.box.public_key_pem)},
        "hub.plan_post": {"date": today, "period": "2", "class": "一年级", "lesson": world.lesson},
        "hub.copy_week": {"week": today},
        "hub.publish_post": {"confirm": "1"},
        "hub.lessons_post": {"title": "攻击者的课"},
        "hub.lesson_post": {"title": "改掉的标题"},
    }
    actions = {"rooms": {"name": "攻击者教室"}, "pins": {"lesson": "test-lesson-0"},
               "subscriptions": {"channel": "test", "filters": {"grade": ["二年级"]}}, "scrub": {},
               "timetable": {"room": "一号教室", "periods": []},
               "bookings": {"room": "一号教室", "date": today, "period": 1, "lesson": "test-lesson-0"},
               "channels": {"root": str(world.mirror)}}
    if endpoint in forms:
        return {"data": forms[endpoint]}
    if endpoint in ("admin_api.run_action", "control.run"):
        return {"json": actions[path.rsplit("/", 1)[1]]}
    if endpoint == "hub.add_file":
        return {"json": {"sha256": world.hub_file, "size": 28, "media_type": "application/pdf", "name": "x.pdf",
                         "role": "exercise"}}
    if endpoint == "hub.add_pause_point":
        return {"json": {"at": 1.0, "prompt": "攻击者的暂停点"}}
    if endpoint == "hub.remove_pause_point":
        return {"query_string": {"at": "1.0"}}
    if endpoint == "hub_uploads.create":
        return {"json": {"name": "a.pdf", "size": 10}}
    if endpoint == "hub_uploads.append":
        return {"data": b"%PDF-1.4 attacker", "headers": {"Upload-Offset": "0"}}
    return {"data": {}}


def with_headers(request: dict[str, Any], **headers: str) -> dict[str, Any]:
    """Return request arguments with more headers."""
    return {**request, "headers": {**request.get("headers", {}), **headers}}


def with_token(request: dict[str, Any], token: str) -> dict[str, Any]:
    """Return request arguments carrying a CSRF token in the header and, for forms, in the form."""
    out = with_headers(request, **{"X-CSRF-Token": token})
    if isinstance(out.get("data"), dict):
        out["data"] = {**out["data"], "csrf_token": token}
    return out


@pytest.mark.parametrize("role", ["hub", "box"])
def test_every_state_changing_route_refuses_without_session_token_or_same_origin(
        tmp_path: Path, watch: Watch, publisher: Publisher, role: str) -> None:
    world = build_world(tmp_path, watch, publisher, role)
    try:
        routes = unsafe_routes(world.app, world)
        endpoints = {endpoint for _m, _p, endpoint in routes}
        assert len(routes) >= 40 and {"admin.rooms_post", "admin_api.run_action", "control.run", "hub.publish_post",
                                      "hub_uploads.append", "link.sync_from_hub"} <= endpoints, sorted(endpoints)
        state_file = world.data / "state.json"
        everything = snapshot(world.data)
        state = state_file.read_bytes()
        attempts = 0

        def attempt(client: FlaskClient, method: str, path: str, request: dict[str, Any], expected: set[int],
                    why: str) -> Any:
            nonlocal attempts
            r = client.open(path, method=method, **request)
            attempts += 1
            label = f"{why}: {method} {path}"
            if role == "box" and path.startswith("/hub"):
                assert r.status_code == 404, f"{label} answered {r.status_code} on a box"
            else:
                assert r.status_code in expected, f"{label} answered {r.status_code}: {r.get_data()[:200]!r}"
            if r.status_code == 302:
                assert "/login" in r.headers["Location"], f"{label} → {r.headers['Location']}"
            assert state_file.read_bytes() == state, f"{label} changed state.json"
            return r

        for method, path, endpoint in routes:
            forged = forged_body(world, endpoint, path)
            control = path.startswith("/api/v1/control")
            api = path.startswith(("/api/", "/hub/api/"))
            login = endpoint in LOGIN_FORMS
            anonymous = world.app.test_client()
            # (a) no session at all
            expected = {403} if login or control else {401} if api else {302}
            attempt(anonymous, method, path, forged, expected, "no session")
            # (b) the admin's session, but no token; then the token of another (the teacher's) session
            attempt(world.admin, method, path, forged, {403}, "session without token")
            attempt(world.admin, method, path, with_token(forged, world.teacher_csrf), {403},
                    "another session's token")
            # (c) the session and its own token, sent from another site
            for origin in EVIL_ORIGINS:
                if login:  # a login form's token is the double-submit cookie of a logged-out browser
                    browser = world.app.test_client()
                    page = browser.get(LOGIN_FORMS[endpoint])
                    token = csrf_of(page.text) if page.status_code == 200 else "none"
                    attempt(browser, method, path, with_headers(with_token(forged, token), Origin=origin), {403},
                            f"origin {origin}")
                else:
                    attempt(world.admin, method, path, with_headers(with_token(forged, world.admin_csrf),
                                                                    Origin=origin), {403}, f"origin {origin}")
        assert snapshot(world.data) == everything, "a refused request changed the data directory"
        assert attempts >= 5 * len(routes)

        # The session and token were good all along: the same request from the box's own page works.
        r = world.admin.post("/api/v1/admin/rooms", json={"name": "二年级教室"},
                             headers={"X-CSRF-Token": world.admin_csrf, "Origin": "http://localhost"})
        assert r.status_code == 200 and state_file.read_bytes() != state
    finally:
        world.box.close()


# ---------------------------------------------------------------- 3. signed content


@dataclass
class Signed:
    """A box holding version N of channel "test", and what an attacker may have kept or made."""

    box: Box
    tmp: Path
    publisher: Publisher
    other: Path  # another key pair's folder
    src: Path
    current: Path  # the mirror of the installed version
    old: Path  # the mirror of the version before, as a replay would send it
    canary: Canary
    servers: list[Any] = field(default_factory=list)

    def copy(self, name: str) -> Path:
        """Return a fresh copy of the installed version's mirror to spoil."""
        target = self.tmp / "attack" / name
        shutil.copytree(self.current, target, symlinks=True)
        return target

    def newer_with_new_file(self, name: str) -> tuple[Path, str]:
        """Return a mirror of a genuinely newer version with one new file the box lacks, and that file's hash."""
        src = self.tmp / "attack-src" / name
        shutil.copytree(self.src, src)
        (src / "lesson0" / "video.mp4").write_bytes(b"a corrected video " * 2000)
        root = self.copy(name)
        manifest = channel.build(src, keys.load_private(self.publisher.private), root, now=time.time() + 10)
        return root, manifest.lessons[0].assets[0].blob.sha256

    def serve(self, root: Path, mode: str) -> str:
        """Serve a mirror over HTTP on 127.0.0.1 that misbehaves as mode says; return its URL."""
        server = MisbehavingMirror(root, mode)
        self.servers.append(server)
        return server.url


@pytest.fixture
def signed(tmp_path: Path, publisher: Publisher, canary: Canary) -> Iterator[Signed]:
    """Install a channel built an hour ago, then its next version; keep the first as a replay would."""
    src = write_source(tmp_path / "src")
    key = keys.load_private(publisher.private)
    channel.build(src, key, tmp_path / "old", now=time.time() - 3600)
    (src / "lesson1" / "p2.jpg").write_bytes(b"a corrected page")
    channel.build(src, key, tmp_path / "current")
    keys.generate(tmp_path / "other")
    box = Box(Config.from_env({}, data_dir=tmp_path / "data", demo=False, max_manifest_bytes=MAX_MANIFEST))
    box.add_channel(tmp_path / "old", keys.load_public(publisher.public))
    box.add_channel(tmp_path / "current", None)
    ctx = Signed(box, tmp_path, publisher, tmp_path / "other", src, tmp_path / "current", tmp_path / "old", canary)
    try:
        yield ctx
    finally:
        for server in ctx.servers:
            server.close()
        box.close()


class MisbehavingMirror:
    """A tiny mirror on 127.0.0.1: serves a folder, except that blobs or the manifest never end, or trickle."""

    def __init__(self, root: Path, mode: str) -> None:
        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # no length and no chunking: the body ends when the server closes

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = root / self.path.lstrip("/")
                endless = (mode == "endless-blob" and "/blobs/" in self.path) or \
                          (mode == "endless-manifest" and self.path.endswith("/manifest.json"))
                trickle = mode == "trickling-blob" and "/blobs/" in self.path
                if not (endless or trickle):
                    if not path.is_file():
                        self.send_error(404)
                        return
                    data = path.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.end_headers()
                try:
                    while not stop.is_set():
                        self.wfile.write(b"\0" * 65536 if endless else b"x")
                        if trickle:
                            stop.wait(0.05)
                except OSError:  # the box hung up: what we want
                    return

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop streaming and shut the server down."""
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


QUICK = Transfer(limits=Limits(connect_timeout=2, read_timeout=2, min_rate=2000, stall_window=0.5, deadline=20),
                 backoff=Backoff(base=0.01, cap=0.02, max_failures=2))


def by_folder(root: Path, channel_id: str | None = None) -> Callable[[Signed], str]:
    """Return an attempt to install from a folder, all or nothing, as `classbox channel add` does."""
    def attempt(ctx: Signed) -> str:
        try:
            ctx.box.add_channel(root, None, channel_id)
        except ChannelRejected as exc:
            return exc.reason
        return "accepted"
    return attempt


def by_http(url: str) -> Callable[[Signed], str]:
    """Return an attempt to sync from an HTTP mirror, as the sync worker does; the errors it ended with."""
    def attempt(ctx: Signed) -> str:
        try:
            result = ctx.box.bring_in(HttpSource(url), "test", transfer=QUICK)
        except (ChannelRejected, SyncError) as exc:
            return str(exc)
        return " / ".join(result.errors) if result.errors or not result.activated else "accepted"
    return attempt


def tampered_after_signing(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("tampered")
    resign(root, ctx.publisher.private, bump)
    path = manifest_path(root)
    path.write_bytes(path.read_bytes().replace("天地人".encode(), "地天人".encode()))
    return by_folder(root)


def unsigned(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("unsigned")
    resign(root, ctx.publisher.private, bump)
    manifest_path(root).with_name(channel.SIGNATURE).unlink()
    return by_folder(root)


def another_key(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("another-key")
    other = keys.key_id(keys.load_public(ctx.other / keys.PUBLIC_NAME))
    resign(root, ctx.other / keys.PRIVATE_NAME, bumped(lambda d: d.update(publisher=other)))
    return by_folder(root)


def another_key_posing(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("posing")
    resign(root, ctx.other / keys.PRIVATE_NAME, bump)  # claims the real publisher's id, signed by another key
    return by_folder(root)


def lower_version(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.tmp / "attack" / "lower"
    channel.build(ctx.src, keys.load_private(ctx.publisher.private), root, now=time.time() - 7200)
    return by_folder(root)


def replayed(ctx: Signed) -> Callable[[Signed], str]:
    return by_folder(ctx.old)


def same_version_other_content(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("same-version")
    resign(root, ctx.publisher.private, lambda d: d.update(title="另一个频道"))
    return by_folder(root)


def expired(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("expired")
    resign(root, ctx.publisher.private, bumped(lambda d: d.update(expires_at="2020-01-01T00:00:00Z")))
    return by_folder(root)


def wrong_hash(ctx: Signed) -> Callable[[Signed], str]:
    root, sha = ctx.newer_with_new_file("wrong-hash")
    path = root / "blobs" / "sha256" / sha[:2] / sha
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    return by_folder(root)


def one_byte_longer(ctx: Signed) -> Callable[[Signed], str]:
    root, sha = ctx.newer_with_new_file("longer")
    path = root / "blobs" / "sha256" / sha[:2] / sha
    path.write_bytes(path.read_bytes() + b"!")
    return by_folder(root)


def unknown_field(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("unknown-field")
    resign(root, ctx.publisher.private, bumped(lambda d: d["lessons"][0]["assets"][0].update(script="rm -rf /")))
    return by_folder(root)


def unknown_top_field(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("unknown-top-field")
    resign(root, ctx.publisher.private, bumped(lambda d: d.update(install_hook="/bin/sh")))
    return by_folder(root)


def path_as_blob_name(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("path-as-name")
    rel = "../../../../outside/canary.txt"
    resign(root, ctx.publisher.private, bumped(lambda d: d["lessons"][0]["assets"][0].update(sha256=rel)))
    return by_folder(root)


def channel_id_leading_outside(ctx: Signed) -> Callable[[Signed], str]:
    return by_folder(ctx.copy("id-outside"), "../../outside")


def oversized(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("oversized")
    resign(root, ctx.publisher.private, bumped(lambda d: d.update(description="长" * MAX_MANIFEST)))
    return by_folder(root)


def blob_linked_to_canary(ctx: Signed) -> Callable[[Signed], str]:
    drive = hostile_drive(ctx.tmp / "attack" / "linked-blob", ctx.current, ctx.publisher, ctx.canary)
    return by_folder(drive / "classbox")


def manifest_linked_outside(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("linked-manifest")
    elsewhere = ctx.canary.dir / "notes"
    (elsewhere / "manifest.json").write_bytes(manifest_path(root).read_bytes())
    manifest_path(root).unlink()
    manifest_path(root).symlink_to(elsewhere / "manifest.json")
    return by_folder(root)


def channel_folder_linked_outside(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("linked-folder")
    real = ctx.tmp / "attack" / "real-channel-folder"
    os.rename(root / "channels" / "test", real)
    (root / "channels" / "test").symlink_to(real, target_is_directory=True)
    return by_folder(root)


def blobs_folder_linked_outside(ctx: Signed) -> Callable[[Signed], str]:
    root, _sha = ctx.newer_with_new_file("linked-blobs")
    real = ctx.tmp / "attack" / "real-blobs"
    os.rename(root / "blobs", real)
    (root / "blobs").symlink_to(real, target_is_directory=True)
    return by_folder(root)


def endless_blob(ctx: Signed) -> Callable[[Signed], str]:
    root, _sha = ctx.newer_with_new_file("endless-blob")
    return by_http(ctx.serve(root, "endless-blob"))


def trickling_blob(ctx: Signed) -> Callable[[Signed], str]:
    root, _sha = ctx.newer_with_new_file("trickling-blob")
    return by_http(ctx.serve(root, "trickling-blob"))


def endless_manifest(ctx: Signed) -> Callable[[Signed], str]:
    return by_http(ctx.serve(ctx.copy("endless-manifest"), "endless-manifest"))


def tampered_over_http(ctx: Signed) -> Callable[[Signed], str]:
    root = ctx.copy("tampered-http")
    resign(root, ctx.publisher.private, bump)
    path = manifest_path(root)
    path.write_bytes(path.read_bytes().replace("长度单位".encode(), "长度单元".encode()))
    return by_http(ctx.serve(root, "plain"))


SIGNED_ATTACKS: list[tuple[str, Callable[[Signed], Callable[[Signed], str]], str]] = [
    # (the attack, how to make it, what the box says: a rejection reason, or words of the sync's error)
    ("bad signature: manifest changed after signing", tampered_after_signing, "bad_signature"),
    ("bad signature over HTTP", tampered_over_http, "signature does not match"),
    ("no signature", unsigned, "bad_signature"),
    ("signed by another key", another_key, "unknown_key"),
    ("another key posing as the pinned publisher", another_key_posing, "bad_signature"),
    ("rollback: a lower version, validly signed", lower_version, "rollback"),
    ("replay of the previous manifest, byte for byte", replayed, "rollback"),
    ("the installed version number with other content", same_version_other_content, "rollback"),
    ("expired", expired, "expired"),
    ("a file whose hash does not match", wrong_hash, "blob_mismatch"),
    ("a file one byte longer than stated", one_byte_longer, "blob_mismatch"),
    ("an unknown field in an asset", unknown_field, "invalid"),
    ("an unknown field at the top", unknown_top_field, "invalid"),
    ("a path instead of a hash as a file's name", path_as_blob_name, "invalid"),
    ("a channel id leading outside", channel_id_leading_outside, "invalid"),
    ("an oversized manifest", oversized, "too_large"),
    ("a file that is a link to the canary (its true hash)", blob_linked_to_canary, "path_escape"),
    ("the manifest a link to a file outside", manifest_linked_outside, "path_escape"),
    ("the channel folder a link to a folder outside", channel_folder_linked_outside, "path_escape"),
    ("the blobs folder a link to a folder outside", blobs_folder_linked_outside, "path_escape"),
    ("a file that never ends, over HTTP", endless_blob, "longer than"),
    ("a file that trickles forever, over HTTP", trickling_blob, "abandoned"),
    ("a manifest that never ends, over HTTP", endless_manifest, f"over the {MAX_MANIFEST}-byte limit"),
]


@pytest.mark.parametrize(("attack", "make", "says"), SIGNED_ATTACKS, ids=[a[0] for a in SIGNED_ATTACKS])
def test_signed_content_attacks_are_refused_and_change_nothing(signed: Signed, attack: str,
                                                               make: Callable[[Signed], Callable[[Signed], str]],
                                                               says: str) -> None:
    box = signed.box
    installed = channel.installed_manifest(box.data.root, "test")
    assert installed is not None
    blobs, channels = snapshot(box.data.blobs), snapshot(box.data.channels)
    state = box.data.state_file.read_bytes()
    attempt = make(signed)
    canary_before = signed.canary.state()  # some attacks plant files beside the canary
    started = time.monotonic()
    outcome = attempt(signed)
    assert says in outcome, f"{attack}: the box said {outcome!r}"
    assert time.monotonic() - started < 15, f"{attack}: took {time.monotonic() - started:.1f} s to give up"
    assert snapshot(box.data.blobs) == blobs, f"{attack}: the store changed"
    assert snapshot(box.data.channels) == channels, f"{attack}: the installed channel changed"
    assert box.data.state_file.read_bytes() == state, f"{attack}: state.json changed"
    assert channel.installed_manifest(box.data.root, "test") == installed
    assert len(box.catalog) == 2
    assert signed.canary.state() == canary_before
    for sha in box.store.blobs():
        assert SECRET.encode() not in box.store.path(sha).read_bytes()


# ---------------------------------------------------------------- 4. uploads


HOSTILE_UPLOADS = [
    # (name the teacher's browser gives, content, why it is refused)
    ("lesson.mp4", zip_bytes("video.mp4", "notes.txt"), "ZIP"),
    ("lesson.mp4", b"<!DOCTYPE html>\n<html><script>alert(document.cookie)</script></html>\n" * 50, "HTML"),
    ("task.pdf", b"<html><body onload=\"fetch('/admin')\">\n" * 50, "HTML"),
    ("page.png", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>\n' * 50, "not a video, PDF or image"),
    ("lesson.mp4", b"\x7fELF\x02\x01\x01\x00" + bytes(4000), "not a video, PDF or image"),
    ("lesson.mp4", b"#!/bin/sh\nrm -rf /\n" * 100, "plain text"),
]


def test_oversized_and_mistyped_uploads_are_refused_and_nothing_is_kept(hub: World) -> None:
    files = hub.data / "hub" / "files"
    kept = sorted(p.name for p in files.iterdir())
    token = {"X-CSRF-Token": hub.teacher_csrf}
    limit = hub.box.config.max_upload_bytes
    for size in (limit + 1, 10 * limit, 1 << 50):
        r = hub.teacher.post("/hub/api/uploads", json={"name": "big.mp4", "size": size}, headers=token)
        assert r.status_code == 413, (size, r.status_code, r.text)
    for name, data, named in HOSTILE_UPLOADS:
        r = hub.teacher.post("/hub/api/uploads", json={"name": name, "size": len(data)}, headers=token)
        assert r.status_code == 201, r.text
        r = hub.teacher.patch(r.json["url"], data=data, headers={"Upload-Offset": "0", **token})
        assert r.status_code == 415, (name, r.status_code, r.text)
        assert named in r.json["error"], r.json["error"]
    # A chunk past the declared size, and one over the chunk limit.
    url = hub.teacher.post("/hub/api/uploads", json={"name": "a.pdf", "size": 100}, headers=token).json["url"]
    r = hub.teacher.patch(url, data=b"%PDF-1.4" + bytes(200), headers={"Upload-Offset": "0", **token})
    assert r.status_code == 400
    r = hub.teacher.patch(url, data=b"%PDF-1.4" + bytes(MAX_CHUNK), headers={"Upload-Offset": "0", **token})
    assert r.status_code == 413
    assert sorted(p.name for p in files.iterdir()) == kept
    assert not [p for p in (hub.data / "hub" / "uploads").iterdir() if p.suffix == ".part" and p.stat().st_size]


# ---------------------------------------------------------------- 5. stack traces and secrets


def test_a_failing_view_answers_without_a_traceback(tmp_path: Path, watch: Watch, publisher: Publisher) -> None:
    config = Config.from_env({}, data_dir=tmp_path / "data", demo=False, host="127.0.0.1", port=0)
    app = open_app(watch, config)
    box: Box = app.extensions["classbox"]
    try:
        @app.get("/explode")
        def explode() -> str:
            raise RuntimeError(f"{SECRET} {app.config['CONTROL_TOKEN']} at /etc/shadow")

        @app.get("/api/v1/explode")
        def explode_json() -> str:
            raise RuntimeError(f"{SECRET} {app.config['CONTROL_TOKEN']}")

        client = app.test_client()
        r = client.get("/explode")
        assert r.status_code == 500 and "盒子内部出错了" in r.text
        r = client.get("/api/v1/explode")
        assert r.status_code == 500 and r.json["code"] == "internal_server_error"

        # Something on disk a view trusts is broken: the active manifest became a folder.
        mirror = tmp_path / "mirror"
        channel.build(write_source(tmp_path / "src"), keys.load_private(publisher.private), mirror)
        box.add_channel(mirror, keys.load_public(publisher.public))
        broken = box.data.channels / "test" / channel.SIGNATURE
        broken.unlink()
        broken.mkdir()
        server, stop = start_server(app)
        try:
            for target in (f"/mirror/channels/test/{channel.SIGNATURE}", "/explode", "/api/v1/explode"):
                status, headers, body = raw_get(server.port, target)
                watch.add(f"raw GET {target}", status, headers, body)
                assert status == 500, (target, status, body[:200])
        finally:
            stop()
    finally:
        box.close()


def test_secrets_are_where_the_watch_looks(hub: World, watch: Watch) -> None:
    """The watch is not looking for nothing: each secret it checks for exists on this box."""
    state = (hub.data / "state.json").read_text()
    assert "scrypt$" in state
    assert b"PRIVATE KEY" in (hub.data / "identity" / keys.PRIVATE_NAME).read_bytes()
    assert hub.app.config["CONTROL_TOKEN"] and hub.teacher_session in watch.session_ids
    assert hub.admin.get_cookie("classbox_session") is not None
    hub.admin.get("/admin")  # the admin's own pages, with everything they show
    hub.admin.get("/admin/panels")
    hub.admin.get("/admin/hub")
    hub.admin.get("/api/v1/admin/status")
    hub.teacher.get("/hub")
    hub.teacher.get(f"/hub/points/{POINT_ID}")
    hub.teacher.get(f"/hub/lessons/{hub.lesson}")
    hub.app.test_client().get("/-/health")
    hub.app.test_client().get("/-/metrics")


# ---------------------------------------------------------------- 6. security headers


ALLOWED_SOURCES = {"'self'", "'none'", "data:"}


def csp_of(header: str) -> dict[str, list[str]]:
    """Parse a Content-Security-Policy into its directives and their sources."""
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def test_every_kind_of_page_carries_the_security_headers(hub: World, tmp_path: Path, watch: Watch) -> None:
    fresh = open_app(watch, Config.from_env({}, data_dir=tmp_path / "fresh", demo=False))
    try:
        anyone = hub.app.test_client()
        sha = hub.blob
        pages = [
            # (kind, client, path, must it refuse to be framed)
            ("tv", anyone, "/tv", False),
            ("remote", anyone, "/remote", False),
            ("admin", hub.admin, "/admin", True),
            ("admin", hub.admin, "/admin/rooms", True),
            ("admin", hub.admin, "/admin/hub", True),
            ("admin", hub.admin, "/admin/password", True),
            ("admin", anyone, "/admin/login", True),
            ("setup", fresh.test_client(), "/setup", True),
            ("hub", hub.teacher, "/hub", True),
            ("hub", hub.teacher, "/hub/lessons", True),
            ("hub", hub.teacher, f"/hub/lessons/{hub.lesson}", True),
            ("hub", hub.teacher, f"/hub/points/{POINT_ID}", True),
            ("hub", anyone, "/hub/login", True),
            ("api", anyone, "/api/v1/catalog", False),
            ("api", anyone, "/api/v1/lessons/test-lesson-0", False),
            ("api", anyone, "/api/v1/rooms/一号教室/state", False),
            ("api", hub.admin, "/api/v1/admin/status", False),
            ("api", hub.teacher, f"/hub/api/uploads/{hub.upload}", False),
            ("ops", anyone, "/-/health", False),
            ("media", anyone, f"/media/{sha}", False),
            ("mirror", anyone, f"/mirror/blobs/sha256/{sha[:2]}/{sha}", False),
            ("mirror", anyone, f"/hub/mirror/channels/point-{POINT_ID}/manifest.json", False),
            ("hub file", hub.teacher, f"/hub/files/{hub.hub_file}?type=application/pdf", False),
            ("static", anyone, "/static/tv.js", False),
            ("qr", anyone, "/address.svg?for=tv", False),
            ("error", anyone, "/no/such/page", False),
            ("error", anyone, "/api/v1/lessons/no-such-lesson", False),
        ]
        for kind, client, path, framing in pages:
            r = client.get(path)
            label = f"{kind} {path} ({r.status_code})"
            assert r.status_code in (200, 404) and (r.status_code == 404) == (kind == "error"), label
            assert r.headers.get("X-Content-Type-Options") == "nosniff", label
            csp = csp_of(r.headers.get("Content-Security-Policy", ""))
            assert csp.get("default-src") and csp.get("object-src") == ["'none'"], (label, csp)
            for directive, sources in csp.items():
                assert set(sources) <= ALLOWED_SOURCES, f"{label}: {directive} allows {sources}"
            if framing:
                assert r.headers.get("X-Frame-Options") == "DENY" or csp.get("frame-ancestors") == ["'none'"], \
                    f"{label} may be framed by another site"
    finally:
        fresh.extensions["classbox"].close()
