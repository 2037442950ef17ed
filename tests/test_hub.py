"""The hub's pages: teachers, teaching points, lessons with pause points, plans, publishing."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import expect

from classbox import channel, create_app, keys
from classbox.box import Box
from classbox.config import Config
from classbox.hub.lessons import Lessons
from classbox.hub.points import make_enrolment

from .conftest import make_video, start_server
from .test_setup import PASSWORD, csrf_of, do_setup

TEACHER_PASSWORD = "teacher password 1"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Flask]:
    """Return a hub app, set up, with a teacher account "wang"."""
    app = create_app(Config.from_env({}, data_dir=tmp_path / "hub", demo=False, role="hub", host="127.0.0.1",
                                     port=0))
    do_setup(app.test_client())
    app.extensions["classbox"].accounts.create("wang", "teacher", password=TEACHER_PASSWORD)
    yield app
    app.extensions["classbox"].close()


@pytest.fixture
def point_box(tmp_path: Path) -> Iterator[Box]:
    """Return a teaching point's box."""
    with Box(Config.from_env({}, data_dir=tmp_path / "point", demo=False)) as box:
        yield box


def teacher(app: Flask) -> FlaskClient:
    """Return a client logged in as the teacher."""
    client = app.test_client()
    page = client.get("/hub/login")
    r = client.post("/hub/login", data={"name": "wang", "password": TEACHER_PASSWORD, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 302 and r.headers["Location"] == "/hub"
    return client


def put_file(app: Flask, data: bytes) -> str:
    """Put a finished upload into the hub's files, as the upload API does; return its sha256."""
    sha = hashlib.sha256(data).hexdigest()
    files = app.extensions["classbox"].data.root / "hub" / "files"
    files.mkdir(parents=True, exist_ok=True)
    (files / sha).write_bytes(data)
    return sha


def test_hub_pages_exist_only_on_a_hub(client: FlaskClient) -> None:
    assert client.get("/hub/login").status_code == 404
    assert client.get("/hub").status_code == 404


def test_teachers_log_in_and_only_the_admin_makes_accounts(hub: Flask) -> None:
    anonymous = hub.test_client()
    r = anonymous.get("/hub/lessons")
    assert r.status_code == 302 and "/hub/login" in r.headers["Location"]
    t = teacher(hub)
    assert t.get("/hub").status_code == 200
    assert t.get("/hub/teachers").status_code == 403
    assert t.get("/admin").status_code == 403  # a teacher is not the box's admin
    admin = hub.test_client()
    page = admin.get("/hub/login")
    admin.post("/hub/login", data={"name": "admin", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
    token = csrf_of(admin.get("/hub/teachers").text)
    r = admin.post("/hub/teachers", data={"name": "li", "password": "short", "csrf_token": token})
    assert "没有完成" in admin.get("/hub/teachers").text
    admin.post("/hub/teachers", data={"name": "li", "password": "long enough 1", "csrf_token": token})
    assert "li" in [a.name for a in hub.extensions["classbox"].accounts.list()]


def test_a_teacher_prepares_plans_and_publishes_a_lesson(hub: Flask, point_box: Box, tmp_path: Path) -> None:
    hub_box: Box = hub.extensions["classbox"]
    t = teacher(hub)
    token = csrf_of(t.get("/hub").text)
    enrolment = make_enrolment(point_box.box_id, "石门教学点", "石门村小学", point_box.public_key_pem)
    r = t.post("/hub/points", data={"enrolment": enrolment, "csrf_token": token})
    assert r.headers["Location"].endswith(f"/hub/points/{point_box.box_id}")
    assert "石门教学点" in t.get("/hub").text

    r = t.post("/hub/lessons", data={"title": "认识钟表", "grade": "一年级", "subject": "数学", "csrf_token": token})
    lesson_id = r.headers["Location"].rsplit("/", 1)[1]
    video = make_video(tmp_path / "v.mp4", seconds=4).read_bytes()
    sha = put_file(hub, video)
    r = t.post(f"/hub/api/lessons/{lesson_id}/files", json={"sha256": sha, "size": len(video),
                                                            "media_type": "video/mp4", "name": "钟表.mp4",
                                                            "role": "video"})
    assert r.status_code == 403  # no CSRF token
    headers = {"X-CSRF-Token": token}
    r = t.post(f"/hub/api/lessons/{lesson_id}/files", headers=headers,
               json={"sha256": sha, "size": len(video), "media_type": "video/mp4", "name": "钟表.mp4", "role": "video"})
    assert r.status_code == 200
    r = t.post(f"/hub/api/lessons/{lesson_id}/pause_points", headers=headers,
               json={"at": 1.5, "prompt": "请同学们读一读"})
    assert r.json["assets"][0]["pause_points"] == [{"at": 1.5, "prompt": "请同学们读一读"}]
    assert t.post(f"/hub/api/lessons/{lesson_id}/pause_points", headers=headers,
                  json={"at": "soon", "prompt": "x"}).status_code == 400

    for name, data, media_type in (("任务单.pdf", b"%PDF-1.4 task", "application/pdf"),
                                   ("p1.png", b"\x89PNG page one", "image/png"),
                                   ("p2.png", b"\x89PNG page two", "image/png")):
        r = t.post(f"/hub/api/lessons/{lesson_id}/files", headers=headers,
                   json={"sha256": put_file(hub, data), "size": len(data), "media_type": media_type, "name": name,
                         "role": "task_sheet"})
        assert r.status_code == 200, r.text
    assert "2 页图片" in t.get(f"/hub/lessons/{lesson_id}").text

    tomorrow = date.today() + timedelta(days=1)
    r = t.post(f"/hub/points/{point_box.box_id}/plan", data={"date": tomorrow.isoformat(), "period": "2",
                                                              "class": "一年级", "lesson": lesson_id,
                                                              "csrf_token": token})
    page = t.get(f"/hub/points/{point_box.box_id}?week={tomorrow.isoformat()}").text
    assert "教学进度已保存" in page and "认识钟表" in page

    r = t.post(f"/hub/points/{point_box.box_id}/publish", data={"csrf_token": token})
    assert "已发布第" in t.get(f"/hub/points/{point_box.box_id}").text
    mirror = hub_box.data.root / "hub" / "mirror"
    data, sig = channel.read_signed(mirror, f"point-{point_box.box_id}", 1 << 20)
    assert keys.signature_valid(hub_box.signing_key.public_key(), data, sig)
    manifest = channel.parse_manifest(data)
    assert [lesson.id for lesson in manifest.lessons] == [lesson_id]
    assert manifest.schedule == ({"lesson": lesson_id, "date": tomorrow.isoformat(), "period": 2, "class": "一年级"},)
    assert manifest.lessons[0].assets[0].pause_points[0].prompt == "请同学们读一读"
    sheet = manifest.lessons[0].assets[1]
    assert sheet.role == "task_sheet" and sheet.blob.media_type == "application/pdf"
    assert [p.media_type for p in sheet.pages] == ["image/png", "image/png"]

    # Copy the week forward: the lesson is planned a week later too.
    t.post(f"/hub/points/{point_box.box_id}/copy", data={"week": tomorrow.isoformat(), "csrf_token": token})
    later = (tomorrow + timedelta(days=7)).isoformat()
    from classbox.hub.plans import Plans
    assert [p.lesson for p in Plans(hub_box.state).between(point_box.box_id, date.fromisoformat(later),
                                                           date.fromisoformat(later))] == [lesson_id]


def test_publishing_warns_about_a_lesson_without_files_first(hub: Flask, point_box: Box) -> None:
    hub_box: Box = hub.extensions["classbox"]
    t = teacher(hub)
    token = csrf_of(t.get("/hub").text)
    t.post("/hub/points", data={"enrolment": make_enrolment(point_box.box_id, "石门", "", point_box.public_key_pem),
                                "csrf_token": token})
    empty = Lessons(hub_box.state).create("空课", {}, "wang")
    t.post(f"/hub/points/{point_box.box_id}/plan", data={"date": date.today().isoformat(), "period": "1",
                                                          "lesson": empty.id, "csrf_token": token})
    page = t.get(f"/hub/points/{point_box.box_id}").text
    assert "还没有文件" in page and "仍然发布" in page
    t.post(f"/hub/points/{point_box.box_id}/publish", data={"csrf_token": token})
    assert "没有完成" in t.get(f"/hub/points/{point_box.box_id}").text
    assert not (hub_box.data.root / "hub" / "mirror" / "channels").exists()


def test_a_teacher_adds_a_pause_point_on_the_video_in_a_real_browser(hub: Flask, tmp_path: Path,
                                                                     browser) -> None:  # type: ignore[no-untyped-def]
    hub_box: Box = hub.extensions["classbox"]
    lessons = Lessons(hub_box.state)
    lesson = lessons.create("天地人", {"grade": "一年级", "subject": "语文"}, "wang")
    video = make_video(tmp_path / "v.mp4", seconds=6).read_bytes()
    lessons.add_file(lesson.id, "video", "天地人.mp4", put_file(hub, video), len(video), "video/mp4")
    server, stop = start_server(hub)
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/hub/login")
        page.fill("#name", "wang")
        page.fill("#password", TEACHER_PASSWORD)
        page.click("button.primary")
        page.wait_for_url("**/hub", timeout=10_000)
        page.goto(f"{server.url}/hub/lessons/{lesson.id}")
        page.locator("#video").wait_for(timeout=10_000)
        page.eval_on_selector("#video", "v => { v.muted = true; v.currentTime = 3.2; }")
        expect(page.locator("#video")).to_have_js_property("currentTime", 3.2, timeout=10_000)
        page.fill("#prompt", "请同学们数一数")
        page.click("#add-point")
        expect(page.locator("#points")).to_contain_text("请同学们数一数", timeout=10_000)
        expect(page.locator("#points")).to_contain_text("0:03")
        points = lessons.get(lesson.id).assets[0].pause_points
        assert [(p.at, p.prompt) for p in points] == [(3.2, "请同学们数一数")]
    finally:
        page.close()
        stop()


def test_enrolment_mistakes_are_named(hub: Flask) -> None:
    t = teacher(hub)
    token = csrf_of(t.get("/hub").text)
    t.post("/hub/points", data={"enrolment": "hello", "csrf_token": token})
    page = t.get("/hub").text
    assert "没有完成" in page and "not JSON" in page
    assert re.search("还没有登记教学点", page)


def test_a_lesson_picked_from_a_national_channel_keeps_its_files_and_pages(hub: Flask, point_box: Box) -> None:
    hub_box: Box = hub.extensions["classbox"]
    from classbox.box import DEMO_KEY, DEMO_ROOT
    hub_box.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
    national = hub_box.catalog.browse({}).entries[0].lesson
    t = teacher(hub)
    token = csrf_of(t.get("/hub/lessons").text)
    assert national.title in t.get("/hub/lessons").text
    r = t.post("/hub/lessons", data={"pick": national.id, "csrf_token": token})
    assert r.headers["Location"].endswith(f"/hub/lessons/{national.id}")
    picked = Lessons(hub_box.state).get(national.id)
    assert [a.role for a in picked.assets] == [a.role for a in national.assets]
    assert sum(len(a.pages) for a in picked.assets) == sum(len(a.pages) for a in national.assets) > 0

    t.post("/hub/points", data={"enrolment": make_enrolment(point_box.box_id, "石门", "", point_box.public_key_pem),
                                "csrf_token": token})
    t.post(f"/hub/points/{point_box.box_id}/plan", data={"date": date.today().isoformat(), "period": "1",
                                                          "lesson": national.id, "csrf_token": token})
    t.post(f"/hub/points/{point_box.box_id}/publish", data={"csrf_token": token})
    data, _sig = channel.read_signed(hub_box.data.root / "hub" / "mirror", f"point-{point_box.box_id}", 1 << 20)
    published = channel.parse_manifest(data).lessons[0]
    assert published.id == national.id
    assert [(a.role, a.blob.sha256, [p.sha256 for p in a.pages]) for a in published.assets] == \
        [(a.role, a.blob.sha256, [p.sha256 for p in a.pages]) for a in national.assets]
