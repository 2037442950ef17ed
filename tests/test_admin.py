"""The admin: login hardening (cookies, rotation, idle expiry, CSRF, throttling across restarts), dashboard, actions."""

from __future__ import annotations

import io
import json
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import expect

from classbox import create_app
from classbox.accounts import FREE_FAILURES, Account, Accounts, Sessions
from classbox.box import Box
from classbox.config import Config
from classbox.errors import LoginRefused

from .test_setup import PASSWORD, csrf_of, do_setup


@pytest.fixture
def admin(app: Flask, client: FlaskClient) -> FlaskClient:
    """Return a client logged in as the admin of a freshly set-up box."""
    do_setup(client)
    return client


def log_in(client: FlaskClient, password: str = PASSWORD, name: str = "admin"):  # type: ignore[no-untyped-def]
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"name": name, "password": password, "csrf_token": csrf_of(page.text)})


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("classbox_session")
    return cookie.value if cookie else None


def test_login_cookie_is_httponly_lax_and_rotated_at_every_login(admin: FlaskClient, app: Flask) -> None:
    browser = app.test_client()
    browser.set_cookie("classbox_session", "planted-by-someone-else")  # session fixation attempt
    r = log_in(browser)
    assert r.status_code == 302
    header = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("classbox_session="))
    assert "HttpOnly" in header and "SameSite=Lax" in header
    first = session_cookie(browser)
    assert first and first != "planted-by-someone-else"
    other = app.test_client()
    log_in(other)
    second = session_cookie(other)
    assert second and second != first
    browser.post("/admin/logout", data={"csrf_token": csrf_of(browser.get("/admin").text)})
    old = app.test_client()
    old.set_cookie("classbox_session", first)
    assert old.get("/admin").status_code == 302  # logged out: the id is worthless now
    assert other.get("/admin").status_code == 200


def test_a_session_ends_after_idle_time_and_at_logout(admin: FlaskClient, app: Flask) -> None:
    box: Box = app.extensions["classbox"]
    assert admin.get("/admin").status_code == 200
    later = time.time() + box.config.session_idle + 1
    box.sessions.clock = lambda: later
    r = admin.get("/admin")
    assert r.status_code == 302 and "/admin/login" in r.headers["Location"]
    box.sessions.clock = time.time
    log_in(admin)
    page = admin.get("/admin")
    r = admin.post("/admin/logout", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 302
    assert admin.get("/admin").status_code == 302


def test_sessions_expire_when_idle_not_while_used() -> None:
    now = [1000.0]
    sessions = Sessions(idle=60, clock=lambda: now[0])
    s = sessions.start(Account("admin", "admin"))
    for _ in range(5):
        now[0] += 50
        assert sessions.get(s.id) is not None  # used every 50 s: stays
    now[0] += 61
    assert sessions.get(s.id) is None


def test_state_changes_need_the_sessions_csrf_token(admin: FlaskClient, app: Flask) -> None:
    box: Box = app.extensions["classbox"]
    token = csrf_of(admin.get("/admin").text)
    for form in ({"name": "二年级教室"}, {"name": "二年级教室", "csrf_token": "wrong"}):
        r = admin.post("/admin/rooms", data=form)
        assert r.status_code == 403
    r = admin.post("/admin/rooms", data={"name": "二年级教室", "csrf_token": token},
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = admin.post("/api/v1/admin/rooms", json={"name": "二年级教室"})
    assert r.status_code == 403
    assert "二年级教室" not in [room["name"] for room in box.classroom.rooms()]
    r = admin.post("/api/v1/admin/rooms", json={"name": "二年级教室"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and "二年级教室" in [room["name"] for room in r.json["rooms"]]
    r = admin.post("/admin/rooms", data={"name": "三年级教室", "class": "三年级", "csrf_token": token})
    assert r.status_code == 302
    assert {"name": "三年级教室", "class": "三年级"} in box.classroom.rooms()


def test_failed_logins_are_throttled_per_account_and_the_count_survives_a_restart(tmp_path: Path) -> None:
    config = Config.from_env({}, data_dir=tmp_path / "data", demo=False)
    app = create_app(config)
    do_setup(app.test_client())
    browser = app.test_client()
    for _ in range(FREE_FAILURES):
        r = log_in(browser, "wrong password")
        assert r.status_code == 401 and "账号或密码不对" in r.text
    r = log_in(browser, PASSWORD)  # even the right password waits now
    assert r.status_code == 429 and "秒后再试" in r.text
    app.extensions["classbox"].close()

    app = create_app(config)  # a restart: the count was kept in the state database
    try:
        browser = app.test_client()
        r = log_in(browser, PASSWORD)
        assert r.status_code == 429
        assert log_in(browser, "wrong", name="teacher1").status_code == 401  # another account is not held up
    finally:
        app.extensions["classbox"].close()


def test_throttle_waits_grow_and_a_success_resets_them(box: Box) -> None:
    now = [5000.0]
    accounts = Accounts(box.state, clock=lambda: now[0])
    accounts.create("admin", "admin", password=PASSWORD)
    waits = []
    for _ in range(FREE_FAILURES + 2):
        with pytest.raises(LoginRefused):
            accounts.login("admin", "nope")
        waits.append(accounts.wait_for("admin"))
        now[0] += waits[-1]
    assert waits[:FREE_FAILURES - 1] == [0] * (FREE_FAILURES - 1)
    assert 0 < waits[FREE_FAILURES - 1] < waits[FREE_FAILURES] < waits[FREE_FAILURES + 1]
    assert accounts.login("admin", PASSWORD) == Account("admin", "admin")
    assert accounts.wait_for("admin") == 0


def test_no_open_redirect_after_login(admin: FlaskClient, app: Flask) -> None:
    browser = app.test_client()
    page = browser.get("/admin/login?next=//evil.example/")
    r = browser.post("/admin/login", data={"name": "admin", "password": PASSWORD, "csrf_token": csrf_of(page.text),
                                           "next": "//evil.example/"})
    assert r.headers["Location"] == "/admin"
    r = browser.get("/admin/login?next=/admin/rooms")
    assert r.headers["Location"] == "/admin/rooms"


def test_dashboard_shows_health_storage_sync_and_screens(demo: Box, admin: FlaskClient) -> None:
    admin.get("/api/v1/rooms/一号教室/state?kind=tv&screen=tv-front")
    page = admin.get("/admin")
    assert page.status_code == 200
    text = page.text
    for shown in ("运行状况", "磁盘", "示范课程", "4 / 4", "同步", "一号教室", "电视", "tv-front", "最近的警告和错误"):
        assert shown in text, shown
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    status = admin.get("/api/v1/admin/status").json
    assert status["storage"][0]["channel"] == "demo" and status["storage"][0]["ready"] == 4
    assert status["rooms"][0]["screens"][0]["id"] == "tv-front"


def test_scrub_from_the_dashboard_runs_in_the_background(demo: Box, admin: FlaskClient) -> None:
    token = csrf_of(admin.get("/admin").text)
    victim = demo.store.blobs()[0]
    path = demo.store.path(victim)
    path.chmod(0o644)
    path.write_bytes(b"damaged")
    r = admin.post("/admin/scrub", data={"csrf_token": token})
    assert r.status_code == 302
    assert "已开始检查所有文件" in admin.get("/admin").text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        jobs = admin.get("/api/v1/admin/status").json["jobs"]
        if jobs and jobs[0]["finished"]:
            break
        time.sleep(0.1)
    assert jobs[0]["result"] == "1 damaged file(s) moved to quarantine"
    assert "1 damaged file(s) moved to quarantine" in admin.get("/admin/panels").text


def test_usb_export_only_to_a_drive_under_the_usb_roots(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "USB0").mkdir(parents=True)
    config = Config.from_env({}, data_dir=tmp_path / "data", demo=False, usb_roots=str(media))
    app = create_app(config)
    box: Box = app.extensions["classbox"]
    try:
        from classbox import keys
        from classbox.box import DEMO_KEY, DEMO_ROOT
        box.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
        client = app.test_client()
        do_setup(client)
        page = client.get("/admin").text
        assert str(media / "USB0") in page
        token = csrf_of(page)
        r = client.post("/admin/usb/export", data={"drive": str(tmp_path), "csrf_token": token})
        assert r.status_code == 302 and "没有完成" in client.get("/admin").text
        assert not (tmp_path / "classbox").exists()
        client.post("/admin/usb/export", data={"drive": str(media / "USB0"), "csrf_token": token})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not box.jobs.latest()[0].finished:
            time.sleep(0.05)
        assert box.jobs.latest()[0].error == ""
        assert (media / "USB0" / "classbox" / "channels" / "demo").is_dir()
    finally:
        box.close()


def test_diagnostics_bundle_has_what_a_technician_needs_and_no_secret(demo: Box, admin: FlaskClient) -> None:
    r = admin.get("/admin/diagnostics.tar.gz")
    assert r.status_code == 200 and r.mimetype == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(r.data)) as tar:
        files = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert {"settings.json", "versions.json", "health.json", "log.txt", "sync-history.json"} <= set(files)
    settings = json.loads(files["settings.json"])
    assert settings["school"]["school"] == "石门村小学"
    assert json.loads(files["versions.json"])["classbox"]
    everything = "".join(files.values())
    state = demo.state.path.read_text()
    secrets_held = [json.loads(state)["accounts"][k]["hash"] for k in json.loads(state)["accounts"]]
    secrets_held.append(admin.application.config["CONTROL_TOKEN"])
    for secret in secrets_held:
        assert secret not in everything
    assert "scrypt$" not in everything


def test_timetable_and_bookings_from_the_rooms_page(demo: Box, admin: FlaskClient) -> None:
    token = csrf_of(admin.get("/admin/rooms").text)
    rows = {"room": "一号教室", "csrf_token": token,
            "weekday": ["1", "1", "3"], "number": ["1", "2", "1"], "start": ["08:00", "08:50", ""],
            "end": ["08:40", "09:30", ""], "subject": ["语文", "数学", ""]}
    r = admin.post("/admin/rooms/timetable", data=rows)
    assert r.status_code == 302
    periods = demo.classroom.timetables.periods("一号教室")
    assert [(p.weekday, p.number, p.subject) for p in periods] == [(1, 1, "语文"), (1, 2, "数学")]
    bad = {**rows, "end": ["07:00", "09:30", ""]}  # ends before it starts
    admin.post("/admin/rooms/timetable", data=bad)
    assert "没有完成" in admin.get("/admin/rooms").text
    assert len(demo.classroom.timetables.periods("一号教室")) == 2  # unchanged

    lesson = demo.catalog.browse({}).entries[0].lesson
    monday = "2026-11-23"
    r = admin.post("/admin/rooms/booking", data={"room": "一号教室", "date": monday, "period": "1",
                                                 "lesson": lesson.id, "csrf_token": token, "week": monday})
    assert r.status_code == 302
    page = admin.get(f"/admin/rooms?week={monday}").text
    assert "课程安排已保存" in page and lesson.title in page
    admin.post("/admin/rooms/booking", data={"room": "一号教室", "date": monday, "period": "1",
                                             "lesson": "no-such-lesson", "csrf_token": token})
    assert "no-such-lesson" in admin.get("/admin/rooms").text  # the refusal names it


def test_a_week_of_periods_in_one_row(demo: Box, admin: FlaskClient) -> None:
    token = csrf_of(admin.get("/admin/rooms").text)
    admin.post("/admin/rooms/timetable", data={"room": "一号教室", "csrf_token": token, "weekday": ["0", "3"],
                                               "number": ["1", "5"], "start": ["08:00", "14:00"],
                                               "end": ["08:40", "14:40"], "subject": ["语文", "美术"]})
    periods = demo.classroom.timetables.periods("一号教室")
    assert [(p.weekday, p.number) for p in periods] == [(1, 1), (2, 1), (3, 1), (3, 5), (4, 1), (5, 1)]


def test_setup_login_and_dashboard_in_a_real_browser(demo: Box, browser, live_server) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    try:
        page.goto(f"{live_server.url}/admin")
        assert page.url.endswith("/setup")
        page.fill("#school", "石门村小学")
        page.fill("#box_name", "一号盒子")
        page.fill("#password", PASSWORD)
        page.fill("#password_again", PASSWORD)
        page.click("button.primary")
        page.wait_for_url("**/admin", timeout=10_000)
        assert "示范课程" in page.inner_text("#storage")
        page.click("text=退出登录")
        page.wait_for_url("**/admin/login", timeout=10_000)
        page.fill("#password", "wrong password")
        page.click("button.primary")
        assert "账号或密码不对" in page.inner_text("main")
        page.fill("#password", PASSWORD)
        page.click("button.primary")
        page.wait_for_url("**/admin", timeout=10_000)
        # The panels refresh by themselves: a TV that starts showing the room appears without a reload.
        assert "tv-late" not in page.inner_text("#screens")
        urllib.request.urlopen(f"{live_server.url}/api/v1/rooms/%E4%B8%80%E5%8F%B7%E6%95%99%E5%AE%A4/state"
                               "?kind=tv&screen=tv-late", timeout=5).read()
        expect(page.locator("#screens")).to_contain_text("tv-late", timeout=15_000)
    finally:
        page.close()


def test_clearing_a_booking_checks_its_date_too(demo: Box, admin: FlaskClient) -> None:
    token = csrf_of(admin.get("/admin").text)
    r = admin.post("/api/v1/admin/bookings", json={"room": "一号教室", "date": "4714-44-40*", "period": 1},
                   headers={"X-CSRF-Token": token})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.json["error"]
