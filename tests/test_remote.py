"""The phone remote in a real Chromium against a real waitress: a teacher pairs a phone and drives the room."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from classbox.box import Box
from classbox.classroom import DEFAULT_ROOM

from .conftest import LiveServer

pytestmark = pytest.mark.slow

ROOM = DEFAULT_ROOM
LESSON, TITLE = "demo-g1-chinese-1", "识字1 天地人"  # a demo lesson: pause points at 3.0 and 6.5, a 2-page sheet
OTHER_LESSON, OTHER_TITLE = "demo-g2-math-1", "长度单位：认识厘米和米"


def api(server: LiveServer, path: str = "") -> str:
    """Return the URL of the room's API (or one of its paths)."""
    return f"{server.url}/api/v1/rooms/{quote(ROOM)}{path}"


def room_state(server: LiveServer) -> dict:
    """Return the room's state as the box has it."""
    response = requests.get(api(server, "/state"), timeout=5)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def session() -> requests.Session:
    """Return a session (it keeps the pairing cookie) that leaves no connection open to hold up the server's stop."""
    s = requests.Session()
    s.headers["Connection"] = "close"
    return s


class OtherPhone:
    """A second remote, paired over plain HTTP, numbering its commands like the page does."""

    def __init__(self, server: LiveServer, code: str) -> None:
        self.server, self.session, self.n = server, session(), 0
        self.session.post(api(server, "/pair"), json={"code": code}, timeout=5).raise_for_status()

    def __call__(self, cmd: str, **args: object) -> dict:
        self.n += 1
        response = self.session.post(api(self.server, "/commands"),
                                     json={"client": "other-phone", "n": self.n, "cmd": cmd, "args": args}, timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


@dataclass
class Phone:
    """A browser tab on the remote page, with the state requests it made and what it complained about."""

    page: Page
    server: LiveServer
    code: str
    state_requests: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, query: str = "") -> None:
        """Load /remote (with a query string, e.g. from the TV's QR code)."""
        self.page.goto(self.server.url + "/remote" + query)

    def pair(self, code: str | None = None) -> None:
        """Type the room code and press 连接."""
        self.page.fill("#code", self.code if code is None else code)
        self.page.click("#pair")

    def press(self, cmd: str) -> None:
        """Press one of the big buttons."""
        self.page.click(f'button[data-cmd="{cmd}"]')

    def status(self, text: str, timeout: float = 5_000) -> None:
        """Wait until the status line says text."""
        expect(self.page.locator("#status")).to_have_text(text, timeout=timeout)


@pytest.fixture
def phone(browser: Browser, live_server: LiveServer, demo: Box) -> Iterator[Phone]:
    """Open a fresh phone-sized tab; fail the test if the page throws or breaks the CSP."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    page.set_default_timeout(5_000)
    phone = Phone(page, live_server, demo.classroom.code(ROOM))
    page.on("request", lambda r: phone.state_requests.append(time.monotonic()) if "/state" in r.url else None)
    page.on("pageerror", lambda exc: phone.errors.append(f"page error: {exc}"))
    # 4xx answers and a dropped network are logged as "Failed to load resource"; those the tests cause on purpose.
    page.on("console", lambda msg: phone.errors.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    try:
        yield phone
    finally:
        context.close()
    assert phone.errors == []


def test_a_wrong_code_shows_an_error_and_the_controls_stay_hidden(phone: Phone) -> None:
    phone.open()
    expect(phone.page.locator("#pair-form")).to_be_visible()
    expect(phone.page.locator("#room")).to_have_value(ROOM)
    expect(phone.page.locator("#code")).to_have_attribute("inputmode", "numeric")
    wrong = f"{(int(phone.code) + 1) % 1_000_000:06d}"
    phone.pair(wrong)
    error = phone.page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_text("教室码不对，请再看一下电视上显示的六位数字")
    expect(phone.page.locator("#controls")).to_be_hidden()
    expect(phone.page.locator("#pair-form")).to_be_visible()


def test_pair_open_a_lesson_play_and_pause(phone: Phone) -> None:
    phone.open()
    phone.pair()
    expect(phone.page.locator("#controls")).to_be_visible()
    expect(phone.page.locator("#pair-form")).to_be_hidden()
    expect(phone.page.locator("#error")).to_be_hidden()
    expect(phone.page.locator("#lesson-title")).to_have_text("未选择课程")
    phone.status("未开始")

    phone.page.fill("#lesson-search", "天地")  # the search box narrows the list
    expect(phone.page.locator(f'button[data-lesson="{OTHER_LESSON}"]')).to_be_hidden()
    phone.page.click(f'button[data-lesson="{LESSON}"]')
    expect(phone.page.locator("#lesson-title")).to_have_text(TITLE)
    phone.status("已暂停")
    expect(phone.page.locator('button[data-cmd="resume"]')).to_be_hidden()  # never played: nothing to resume
    expect(phone.page.locator("#points li")).to_have_count(2)
    expect(phone.page.locator("#prompt")).to_be_hidden()

    phone.press("play")
    phone.status("播放中")
    assert room_state(phone.server)["playing"] is True
    phone.press("pause")
    phone.status("已暂停")
    state = room_state(phone.server)
    assert state["playing"] is False and state["lesson"] == LESSON

    # The task sheet's second page goes to the TV; 返回视频 brings the video back.
    phone.page.click('#documents button[data-asset="1"][data-page="1"]')
    expect(phone.page.locator("#page-indicator")).to_have_text("电视正在显示：学习任务单　第 2 / 2 页")
    assert (room_state(phone.server)["document"], room_state(phone.server)["page"]) == (1, 1)
    phone.press("page-prev")
    expect(phone.page.locator('button[data-asset="1"][data-page="0"]')).to_have_attribute("aria-pressed", "true")
    phone.press("close-document")
    expect(phone.page.locator("#page-indicator")).to_have_text("电视上现在是视频")
    assert room_state(phone.server)["document"] is None

    # Jumping to the next pause point shows its prompt; 隐藏提示 hides it again.
    phone.press("next-point")
    expect(phone.page.locator("#prompt")).to_have_text(room_state(phone.server)["points"][0]["prompt"])
    phone.press("prompt-hide")
    expect(phone.page.locator("#prompt")).to_be_hidden()

    # A reload stays paired and goes on counting its commands (a count from 1 would be ignored as repeats).
    phone.page.reload()
    expect(phone.page.locator("#controls")).to_be_visible()
    phone.status("已暂停")
    phone.press("play")
    phone.status("播放中")
    assert room_state(phone.server)["playing"] is True


def test_errors_from_the_box_are_shown_in_chinese(phone: Phone) -> None:
    phone.open()
    phone.pair()
    phone.status("未开始")
    phone.press("play")
    expect(phone.page.locator("#error")).to_have_text("请先在“选择课程”里选一节课")
    phone.page.click(f'button[data-lesson="{LESSON}"]')
    expect(phone.page.locator("#error")).to_be_hidden()  # a command that works clears it
    phone.press("page-next")
    expect(phone.page.locator("#error")).to_have_text("电视上没有在显示文档")


def test_a_command_from_another_phone_shows_within_a_second(phone: Phone) -> None:
    phone.open()
    phone.pair()
    phone.status("未开始")
    phone.page.wait_for_timeout(300)  # the page is now waiting for a change
    other = OtherPhone(phone.server, phone.code)
    other("open", lesson=OTHER_LESSON)
    expect(phone.page.locator("#lesson-title")).to_have_text(OTHER_TITLE, timeout=1_000)
    other("play")
    phone.status("播放中", timeout=1_000)
    other("add_point", note="同桌说一说")
    expect(phone.page.locator("#points")).to_contain_text("同桌说一说", timeout=1_000)
    other("pause")
    phone.status("已暂停", timeout=1_000)

    # The phone removes the point the other one added.
    at = next(p["at"] for p in room_state(phone.server)["points"] if p["own"])
    phone.page.click(f'button[data-remove-point="{at}"]')
    expect(phone.page.locator("#points")).not_to_contain_text("同桌说一说")
    assert all(not p["own"] for p in room_state(phone.server)["points"])


def test_a_lesson_left_halfway_offers_to_resume(phone: Phone) -> None:
    other = OtherPhone(phone.server, phone.code)
    other("open", lesson=LESSON)
    other("seek", by=10)
    other("stop")  # remembers 0:10
    phone.open()
    phone.pair()
    phone.page.click(f'button[data-lesson="{LESSON}"]')
    expect(phone.page.locator("#offer")).to_be_visible()
    expect(phone.page.locator("#offer-at")).to_have_text("0:10")
    phone.press("resume")
    expect(phone.page.locator('button[data-cmd="resume"]')).to_be_hidden()
    state = room_state(phone.server)
    assert state["offer"] is None and state["position"] == pytest.approx(10.0)
    other("stop")
    other("open", lesson=LESSON)
    expect(phone.page.locator('button[data-cmd="beginning"]')).to_be_visible()
    phone.press("beginning")
    expect(phone.page.locator("#offer")).to_be_hidden()
    assert room_state(phone.server)["position"] == 0.0


def test_the_tv_qr_address_pairs_without_typing(phone: Phone) -> None:
    qr = requests.get(api(phone.server, "/pairing"), timeout=5).json()["url"]  # what the TV's QR code holds
    phone.open("?" + urlsplit(qr).query)
    expect(phone.page.locator("#controls")).to_be_visible()
    expect(phone.page.locator("#room-name")).to_have_text(ROOM)
    assert "code=" not in phone.page.url  # the day's code is not left in the address bar
    phone.page.click(f'button[data-lesson="{LESSON}"]')
    phone.status("已暂停")


def test_without_network_the_phone_retries_slowly_and_catches_up_when_back(phone: Phone) -> None:
    phone.open()
    phone.pair()
    phone.status("未开始")
    other = OtherPhone(phone.server, phone.code)
    phone.page.route("**/state*", lambda route: route.abort("internetdisconnected"))
    other("open", lesson=LESSON)  # ends the parked request; every one after it fails
    phone.page.wait_for_timeout(300)
    phone.state_requests.clear()
    phone.page.wait_for_timeout(2_500)
    assert 1 <= len(phone.state_requests) <= 3  # backing off, not a tight loop
    expect(phone.page.locator("#offline")).to_be_visible()

    phone.page.unroute("**/state*")
    other("play")
    phone.page.evaluate("window.dispatchEvent(new Event('online'))")  # the network is back: ask at once
    phone.status("播放中", timeout=1_500)
    expect(phone.page.locator("#offline")).to_be_hidden()
    expect(phone.page.locator("#lesson-title")).to_have_text(TITLE)


def test_commands_from_an_unpaired_phone_are_refused(live_server: LiveServer, demo: Box) -> None:
    command = {"client": "stranger", "n": 1, "cmd": "open", "args": {"lesson": LESSON}}
    response = requests.post(api(live_server, "/commands"), json=command, timeout=5)
    assert response.status_code == 403
    assert response.json()["code"] == "not_paired"
    wrong = session()
    assert wrong.post(api(live_server, "/pair"), json={"code": "x"}, timeout=5).status_code == 400
    assert wrong.post(api(live_server, "/commands"), json=command, timeout=5).status_code == 403
    assert room_state(live_server)["lesson"] is None

    paired = session()
    paired.post(api(live_server, "/pair"), json={"code": demo.classroom.code(ROOM)}, timeout=5).raise_for_status()
    assert paired.post(api(live_server, "/commands"), json=command, timeout=5).json()["lesson"] == LESSON
