"""A room's screens in real Chromium against a real waitress: every TV of a room follows the box.

A teacher drives the room over HTTP (as a phone does) or from the phone remote page; the TV pages show the
room's lesson, play and pause together, stop at the box's pause points, and show the pages it sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from classbox.box import Box
from classbox.classroom import DEFAULT_ROOM

from .conftest import LiveServer

pytestmark = pytest.mark.slow

ROOM = DEFAULT_ROOM
LESSON = "demo-g1-chinese-1"  # an 8 s video with pause points at 3.0 and 6.5 s; asset 1 is a 2-page task sheet
SHEET = 1
FIRST_PROMPT = "请同学们跟着老师读一读：天、地、人、你、我、他。"
PLAYING = "!v.paused && !v.seeking && v.readyState >= 3 && v.currentTime > 0"


def api(server: LiveServer, path: str = "") -> str:
    """Return the URL of the room's API (or one of its paths)."""
    return f"{server.url}/api/v1/rooms/{quote(ROOM)}{path}"


def get(url: str) -> dict:
    """GET a JSON document."""
    response = requests.get(url, timeout=5, headers={"Connection": "close"})
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def sheet_pages(server: LiveServer) -> list[str]:
    """Return the media URLs of the task sheet's pages."""
    lesson = get(f"{server.url}/api/v1/lessons/{LESSON}")
    return [p["url"] for p in lesson["assets"][SHEET]["pages"]]


class Teacher:
    """A remote over plain HTTP: pairs with the code from /pairing, then numbers its commands."""

    def __init__(self, server: LiveServer) -> None:
        self.server, self.n = server, 0
        self.session = requests.Session()
        self.session.headers["Connection"] = "close"  # no idle connection to hold up the server's stop
        code = get(api(server, "/pairing"))["code"]
        self.session.post(api(server, "/pair"), json={"code": code}, timeout=5).raise_for_status()

    def __call__(self, cmd: str, **args: object) -> dict:
        self.n += 1
        response = self.session.post(api(self.server, "/commands"),
                                     json={"client": "test-teacher", "n": self.n, "cmd": cmd, "args": args}, timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def teacher(live_server: LiveServer, demo: Box) -> Iterator[Teacher]:
    """Return a paired HTTP remote."""
    t = Teacher(live_server)
    yield t
    t.session.close()


@dataclass
class Screen:
    """A browser tab (TV or phone) in its own context, as on its own device, with what it complained about."""

    page: Page
    context: BrowserContext
    errors: list[str] = field(default_factory=list)

    def wait_screen(self, name: str, timeout: float = 8_000) -> None:
        """Wait until the TV shows a screen and nothing is loading."""
        self.page.wait_for_function(
            "name => document.body.dataset.screen === name && !document.body.hasAttribute('data-loading')",
            arg=name, timeout=timeout,
        )

    def video(self, expression: str):  # type: ignore[no-untyped-def]
        """Evaluate an expression about the TV's <video> element `v`."""
        return self.page.evaluate(f"() => {{ const v = document.getElementById('video'); return {expression}; }}")

    def wait_video(self, condition: str, timeout: float = 8_000) -> None:
        """Wait until a condition about the <video> element `v` holds."""
        self.page.wait_for_function(
            f"() => {{ const v = document.getElementById('video'); return {condition}; }}", timeout=timeout
        )


Opener = Callable[..., Screen]


@pytest.fixture
def screens(browser: Browser, live_server: LiveServer, demo: Box) -> Iterator[tuple[Opener, Opener]]:
    """Return (open a TV, open a phone); each in a fresh context. Fail the test if a page logs an error."""
    opened: list[Screen] = []

    def new(viewport: dict, ignore_http_errors: bool, **options: object) -> Screen:
        context = browser.new_context(viewport=viewport, locale="zh-CN", **options)  # type: ignore[arg-type]
        page = context.new_page()
        page.set_default_timeout(8_000)
        screen = Screen(page, context)
        page.on("pageerror", lambda exc: screen.errors.append(f"page error: {exc}"))

        def console(msg) -> None:  # type: ignore[no-untyped-def]
            if msg.type == "error" and not (ignore_http_errors and msg.text.startswith("Failed to load resource")):
                screen.errors.append(f"console: {msg.text}")

        page.on("console", console)
        if not ignore_http_errors:
            page.on("response", lambda r: screen.errors.append(f"HTTP {r.status}: {r.request.method} {r.url}")
                    if r.status >= 400 else None)
        opened.append(screen)
        return screen

    def open_tv(path: str = "/tv", screen: str = "home") -> Screen:
        tv = new({"width": 1280, "height": 720}, False)
        tv.page.goto(live_server.url + path)
        tv.wait_screen(screen)
        return tv

    def open_phone() -> Screen:
        # The remote shows a wrong code's 4xx answer on purpose; a TV never gets one.
        phone = new({"width": 360, "height": 740}, True, is_mobile=True, has_touch=True)
        phone.page.goto(live_server.url + "/remote")
        return phone

    try:
        yield open_tv, open_phone
    finally:
        for screen in opened:
            screen.context.close()
    assert [e for screen in opened for e in screen.errors] == []


def wait_all(tvs: list[Screen], condition: str, within: float) -> float:
    """Wait until condition holds on every TV; return the seconds it took, failing past `within` seconds."""
    started = time.monotonic()
    for tv in tvs:
        left = within - (time.monotonic() - started)
        assert left > 0, f"{condition} took over {within} s"
        tv.wait_video(condition, timeout=left * 1000)
    return time.monotonic() - started


def test_two_tvs_open_play_and_pause_together(screens: tuple[Opener, Opener], teacher: Teacher) -> None:
    open_tv, _ = screens
    tvs = [open_tv(), open_tv()]

    teacher("open", lesson=LESSON)
    teacher("play")
    wait_all(tvs, PLAYING, within=1.0)
    for tv in tvs:
        tv.wait_screen("player")
    time.sleep(0.5)
    a, b = (tv.video("v.currentTime") for tv in tvs)
    assert abs(a - b) < 1.0

    teacher("pause")
    wait_all(tvs, "v.paused", within=1.0)
    position = get(api(teacher.server, "/state"))["position"]
    assert 0.5 < position < 3.0  # stopped by the teacher, not by the pause point
    for tv in tvs:  # both show the very frame the room stopped at
        tv.wait_video(f"!v.seeking && Math.abs(v.currentTime - {position}) < 0.05", timeout=1_000)
        expect(tv.page.locator("#pause-overlay")).to_be_hidden()
    a, b = (tv.video("v.currentTime") for tv in tvs)
    assert abs(a - b) < 0.1


def test_the_box_stops_every_tv_once_at_a_pause_point(screens: tuple[Opener, Opener], teacher: Teacher,
                                                      demo: Box) -> None:
    open_tv, _ = screens
    tvs = [open_tv(), open_tv()]
    teacher("open", lesson=LESSON)
    teacher("play")
    for tv in tvs:
        expect(tv.page.locator("#pause-prompt")).to_have_text(FIRST_PROMPT, timeout=6_000)
        expect(tv.page.locator("#pause-overlay")).to_be_visible()
    for tv in tvs:
        tv.wait_video("v.paused && !v.seeking && Math.abs(v.currentTime - 3.0) < 0.05", timeout=1_000)
    state = get(api(teacher.server, "/state"))
    assert (state["playing"], state["position"], state["prompt"]) == (False, 3.0, FIRST_PROMPT)
    stops = [e for e in demo.events.read() if e.kind == "pause_point"]
    assert len(stops) == 1  # two TVs, one stop: the box decides

    teacher("play")
    wait_all(tvs, PLAYING + " && v.currentTime > 3.05", within=1.5)
    for tv in tvs:
        expect(tv.page.locator("#pause-overlay")).to_be_hidden()


def test_a_page_sent_by_command_shows_on_the_tv_and_stop_goes_home(screens: tuple[Opener, Opener],
                                                                   teacher: Teacher) -> None:
    open_tv, _ = screens
    tv = open_tv()
    pages = sheet_pages(teacher.server)
    teacher("open", lesson=LESSON)
    teacher("document", asset=SHEET, page=1)
    tv.wait_screen("document")
    image = tv.page.locator("#doc-image")
    expect(image).to_have_attribute("src", pages[1])
    expect(tv.page.locator("#doc-indicator")).to_have_text("第 2 / 2 页")
    tv.page.wait_for_function("() => document.getElementById('doc-image').naturalWidth > 0")

    teacher("page", step=-1)
    expect(image).to_have_attribute("src", pages[0])
    teacher("close_document")
    tv.wait_screen("player")
    teacher("stop")
    tv.wait_screen("home")
    assert tv.video("v.paused && !v.getAttribute('src')")


def test_the_home_screen_shows_the_room_its_code_and_a_qr_code(screens: tuple[Opener, Opener],
                                                               live_server: LiveServer) -> None:
    open_tv, _ = screens
    tv = open_tv()
    pairing = get(api(live_server, "/pairing"))
    expect(tv.page.locator("#room-code")).to_have_text(pairing["code"])
    expect(tv.page.locator("#room-name")).to_have_text(ROOM)
    expect(tv.page.locator("#room-panel")).to_contain_text("用手机扫码或输入房间码 遥控")
    qr = tv.page.locator("#room-qr")
    expect(qr).to_be_visible()
    assert qr.get_attribute("src") == f"/api/v1/rooms/{quote(ROOM)}/qr.svg"
    tv.page.wait_for_function("() => document.getElementById('room-qr').naturalWidth > 0")


def test_a_tv_asks_once_which_room_it_is_in(screens: tuple[Opener, Opener], demo: Box) -> None:
    open_tv, _ = screens
    demo.classroom.add_room("二号教室")
    tv = open_tv(screen="rooms")
    focused = tv.page.locator(".is-focused")
    expect(tv.page.locator("[data-room]")).to_have_count(2)
    expect(focused).to_have_attribute("data-room", ROOM)
    tv.page.keyboard.press("ArrowRight")
    expect(focused).to_have_attribute("data-room", "二号教室")
    tv.page.keyboard.press("Enter")
    tv.wait_screen("home")
    expect(tv.page.locator("#room-name")).to_have_text("二号教室")
    expect(tv.page.locator("#room-code")).to_have_text(demo.classroom.code("二号教室"))

    tv.page.reload()  # remembered: straight to the room's home screen
    tv.wait_screen("home")
    expect(tv.page.locator("#room-name")).to_have_text("二号教室")
    tv.page.goto(tv.page.url.split("/tv")[0] + "/tv?room=" + quote(ROOM))  # the address decides
    tv.wait_screen("home")
    expect(tv.page.locator("#room-name")).to_have_text(ROOM)


def test_a_lesson_left_midway_offers_to_continue_or_start_again(screens: tuple[Opener, Opener],
                                                                teacher: Teacher) -> None:
    open_tv, _ = screens
    teacher("open", lesson=LESSON)
    teacher("seek", by=5.5)
    teacher("stop")  # the room remembers 5.5 s
    tv = open_tv()
    assert teacher("open", lesson=LESSON)["offer"] == 5.5
    tv.wait_screen("player")
    expect(tv.page.locator("#offer-overlay")).to_be_visible()
    expect(tv.page.locator("#offer-resume")).to_have_class("tile action is-focused")
    tv.page.keyboard.press("Enter")  # 继续播放
    tv.wait_video(PLAYING + " && v.currentTime >= 5.4")
    expect(tv.page.locator("#offer-overlay")).to_be_hidden()

    teacher("stop")
    tv.wait_screen("home")
    teacher("open", lesson=LESSON)
    expect(tv.page.locator("#offer-beginning")).to_be_visible()
    tv.page.keyboard.press("ArrowRight")
    tv.page.keyboard.press("Enter")  # 从头开始
    tv.wait_video(PLAYING + " && v.currentTime < 2")
    assert get(api(teacher.server, "/state"))["playing"]


def test_the_phone_remote_drives_the_tv(screens: tuple[Opener, Opener], live_server: LiveServer,
                                        record_property: Callable[[str, object], None]) -> None:
    open_tv, open_phone = screens
    tv = open_tv()
    phone = open_phone()
    p = phone.page
    if not p.locator("select#room").count() or not p.locator("#controls").count():
        pytest.xfail("the phone remote page (templates/remote.html) does not have its controls yet")
    code = tv.page.locator("#room-code").text_content()
    assert code and len(code) == 6
    p.select_option("select#room", ROOM)
    p.fill("input#code", code)
    p.click("button#pair")
    expect(p.locator("#controls")).to_be_visible()

    p.click(f'button[data-lesson="{LESSON}"]')
    tv.wait_screen("player")
    p.click('button[data-cmd="play"]')
    tv.wait_video(PLAYING + " && v.currentTime > 0.5", timeout=3_000)

    started = time.monotonic()
    p.click('button[data-cmd="pause"]')
    tv.wait_video("v.paused", timeout=1_000)
    latency = time.monotonic() - started
    record_property("pause_latency_s", round(latency, 3))
    print(f"phone 暂停 → TV video paused in {latency * 1000:.0f} ms")
    assert latency < 1.0

    p.click('button[data-cmd="play"]')  # on to the pause point at 3.0 s
    expect(tv.page.locator("#pause-prompt")).to_have_text(FIRST_PROMPT, timeout=5_000)
    expect(p.locator("#prompt")).to_be_visible()
    expect(p.locator("#prompt")).to_have_text(FIRST_PROMPT)
    tv.wait_video("v.paused")

    p.click('button[data-cmd="play"]')
    tv.wait_video(PLAYING + " && v.currentTime > 3.05", timeout=2_000)
    expect(tv.page.locator("#pause-overlay")).to_be_hidden()
    expect(p.locator("#prompt")).to_be_hidden()

    p.click(f'button[data-asset="{SHEET}"][data-page="0"]')
    tv.wait_screen("document")
    expect(tv.page.locator("#doc-image")).to_have_attribute("src", sheet_pages(live_server)[0])
