"""The TV page in a real Chromium against a real waitress: a teacher with only a TV remote's keys.

Every test drives the page with key presses alone (arrows, Enter, Escape, Backspace), as a D-pad does. What the
TV shows of a lesson is its room's, kept on the box: the tests read the room there to check that the keys went
through it, and one changes the room there, as a phone would, to check that the TV follows the box.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from classbox import channel, keys
from classbox.box import Box
from classbox.classroom import DEFAULT_ROOM, RoomState

from .conftest import LiveServer, Publisher, make_video, write_source

pytestmark = pytest.mark.slow

PROMPT = "请同学们读一读"  # the pause point write_source puts at 2.0 s of every video
ROOM = DEFAULT_ROOM  # a box's only room at first: the TV shows it without asking


@dataclass(frozen=True)
class Media:
    """Real files for a channel: a short H.264 video and two JPEG pages of a task sheet."""

    video: bytes
    pages: tuple[bytes, bytes]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Encode the video and page images once for the module."""
    d = tmp_path_factory.mktemp("media")
    video = make_video(d / "video.mp4", seconds=6).read_bytes()
    pages = []
    for name, colour in (("p1.jpg", "white"), ("p2.jpg", "lightyellow")):
        subprocess.run(
            [shutil.which("ffmpeg") or "ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             f"color=c={colour}:s=600x840", "-frames:v", "1", str(d / name)],
            check=True,
        )
        pages.append((d / name).read_bytes())
    return Media(video, (pages[0], pages[1]))


def install(box: Box, publisher: Publisher, media: Media, tmp_path: Path, topical: int = 0) -> None:
    """Install four lessons: 一年级 语文 (0, 2) and 二年级 数学 (1, 3); the last `topical` ones in 专题教育."""
    src = write_source(tmp_path / "src", "test", lessons=4, video=media.video)
    for i, lesson in enumerate(sorted(src.glob("lesson*"))):
        (lesson / "p1.jpg").write_bytes(media.pages[0])
        (lesson / "p2.jpg").write_bytes(media.pages[1])
        if i >= 4 - topical:  # a topic lesson: no grade, no subject
            doc = json.loads((lesson / "lesson.json").read_text(encoding="utf-8"))
            doc.update(section="专题教育", path={"stage": "小学"})
            (lesson / "lesson.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "mirror"
    channel.build(src, keys.load_private(publisher.private), out)
    box.add_channel(out, keys.load_public(publisher.public))
    assert len(box.catalog) == 4


@pytest.fixture
def lessons(box: Box, publisher: Publisher, media: Media, tmp_path: Path) -> None:
    """Install the four lessons, all in 课程教学."""
    install(box, publisher, media, tmp_path)


@dataclass
class TV:
    """A browser tab showing the box's TV page, with what it requested and complained about."""

    page: Page
    server: LiveServer
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self) -> None:
        """Load /tv and wait for the home screen."""
        self.page.goto(self.server.url + "/tv")
        self.wait_screen("home")

    def wait_screen(self, name: str) -> None:
        """Wait until a screen is shown and nothing is loading."""
        self.page.wait_for_function(
            "name => document.body.dataset.screen === name && !document.body.hasAttribute('data-loading')",
            arg=name,
        )

    def wait_overlay(self, name: str, timeout: float = 10_000) -> None:
        """Wait until an overlay (pause, ended, message) is in front."""
        self.page.wait_for_function("name => document.body.dataset.overlay === name", arg=name, timeout=timeout)

    def press(self, *keys: str) -> None:
        """Press remote keys one after the other."""
        for key in keys:
            self.page.keyboard.press(key)

    def go(self, key: str, screen: str) -> None:
        """Press a key that opens another screen and wait for it."""
        self.press(key)
        self.wait_screen(screen)

    @property
    def focused(self):  # type: ignore[no-untyped-def]
        """Return the one highlighted element."""
        return self.page.locator(".is-focused")

    def video(self, expression: str):  # type: ignore[no-untyped-def]
        """Evaluate an expression about the <video> element `v`."""
        return self.page.evaluate(f"() => {{ const v = document.getElementById('video'); return {expression}; }}")

    def wait_video(self, condition: str, timeout: float = 10_000) -> None:
        """Wait until a condition about the <video> element `v` holds."""
        self.page.wait_for_function(
            f"() => {{ const v = document.getElementById('video'); return {condition}; }}", timeout=timeout
        )


def room(box: Box) -> RoomState:
    """Return the state of the room the TV shows, as the box has it."""
    return box.classroom.current(ROOM)


@pytest.fixture
def tv(browser: Browser, live_server: LiveServer, box: Box) -> Iterator[TV]:
    """Open a fresh 1080p tab; fail the test if the page logs an error (a CSP violation does)."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(8_000)
    tv = TV(page, live_server)
    page.on("request", lambda request: tv.requests.append(request.url))
    page.on("pageerror", lambda exc: tv.errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: tv.errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("response", lambda r: tv.errors.append(f"HTTP {r.status}: {r.request.method} {r.url}")
            if r.status >= 400 else None)  # the console's "Failed to load resource" does not say which
    try:
        yield tv
    finally:
        context.close()
    assert tv.errors == []


def open_lesson_1_chinese(tv: TV) -> None:
    """From home, reach 一年级 › 语文 › 金木水火土 (the second lesson of the list) with keys only."""
    tv.open()
    expect(tv.focused).to_have_attribute("data-value", "课程教学")
    tv.go("Enter", "grades")
    expect(tv.focused).to_have_attribute("data-value", "一年级")
    tv.press("ArrowRight")
    expect(tv.focused).to_have_attribute("data-value", "二年级")
    tv.press("ArrowLeft")
    expect(tv.focused).to_have_attribute("data-value", "一年级")
    tv.go("Enter", "subjects")
    expect(tv.focused).to_have_attribute("data-value", "语文")
    tv.go("Enter", "lessons")
    expect(tv.page.locator("#crumbs")).to_have_text("首页›课程教学›一年级›语文")
    expect(tv.page.locator(".lesson-tile")).to_have_count(2)
    expect(tv.focused).to_have_attribute("data-lesson-id", "test-lesson-0")
    tv.press("ArrowRight")
    expect(tv.focused).to_have_attribute("data-lesson-id", "test-lesson-2")
    tv.go("Enter", "lesson")
    expect(tv.page.locator(".lesson-title")).to_have_text("金木水火土")
    expect(tv.focused).to_have_attribute("data-role", "video")
    expect(tv.focused).to_contain_text("1 个暂停点")


@pytest.mark.usefixtures("lessons")
def test_remote_plays_a_lesson_that_stops_at_its_pause_point(tv: TV, box: Box) -> None:
    open_lesson_1_chinese(tv)
    tv.go("Enter", "player")
    expect(tv.page.locator("#video")).to_be_visible()
    assert room(box).lesson == "test-lesson-2" and room(box).playing  # the keys opened it in the room

    tv.wait_video("!v.paused && v.currentTime > 0.5")  # it plays
    tv.wait_overlay("pause")  # and the box stops it at the pause point
    state = room(box)
    assert (state.playing, state.position, state.prompt) == (False, 2.0, PROMPT)
    tv.wait_video("v.paused && !v.seeking && Math.abs(v.currentTime - 2.0) < 0.05")  # on the point's own frame
    overlay = tv.page.locator("#pause-overlay")
    expect(overlay).to_be_visible()
    expect(overlay).to_contain_text(PROMPT)
    expect(overlay).to_contain_text("按 确定 键继续")
    tv.page.wait_for_timeout(400)  # a stopped video stays stopped while the class talks
    assert tv.video("v.paused")

    tv.press("Escape")  # Back hides the prompt for the room; the video stays paused
    expect(overlay).to_be_hidden()
    expect(tv.page.locator("#player-badge")).to_be_visible()
    assert room(box).prompt is None and not room(box).playing
    assert tv.video("v.paused")

    tv.press("Enter")  # the teacher resumes
    tv.wait_video("!v.paused && v.currentTime > 2.5")
    expect(overlay).to_be_hidden()

    tv.go("Escape", "lesson")  # stops the lesson in the room and leaves the player, back where we were
    expect(tv.focused).to_have_attribute("data-role", "video")
    assert tv.video("v.paused")
    assert room(box).lesson is None


@pytest.mark.usefixtures("lessons")
def test_the_tv_stops_where_the_room_says_not_by_itself(tv: TV, box: Box) -> None:
    open_lesson_1_chinese(tv)
    tv.go("Enter", "player")
    tv.wait_video("!v.paused && v.currentTime > 0.3")
    # The lesson's data still has its point at 2.0 s; this room skips it, and the TV plays on through it.
    box.classroom.command(ROOM, "test-phone", 1, "remove_point", {"at": 2.0})
    tv.wait_video("!v.paused && v.currentTime > 2.6")
    expect(tv.page.locator("#pause-overlay")).to_be_hidden()
    assert room(box).playing and room(box).prompt is None


@pytest.mark.usefixtures("lessons")
def test_seeking_back_before_a_pause_point_stops_there_again(tv: TV, box: Box) -> None:
    open_lesson_1_chinese(tv)
    tv.go("Enter", "player")
    tv.wait_overlay("pause")
    tv.press("Enter")
    tv.wait_video("!v.paused && v.currentTime > 2.3")
    tv.press("ArrowLeft")  # −10 s for the room: back to the start, before the pause point
    tv.wait_video("v.currentTime < 2")
    tv.wait_overlay("pause")
    assert room(box).position == 2.0
    assert tv.video("v.paused && Math.abs(v.currentTime - 2) < 0.3")
    expect(tv.page.locator("#pause-prompt")).to_have_text(PROMPT)


@pytest.mark.usefixtures("lessons")
def test_task_sheet_pages_flip_with_left_right_and_back_keys_return_to_each_place(tv: TV, box: Box) -> None:
    tv.open()
    tv.go("Enter", "grades")
    tv.press("ArrowRight")
    tv.go("Enter", "subjects")
    expect(tv.focused).to_have_attribute("data-value", "数学")
    tv.go("Enter", "lessons")
    tv.press("ArrowRight")
    expect(tv.focused).to_have_attribute("data-lesson-id", "test-lesson-3")
    tv.go("Enter", "lesson")
    expect(tv.page.locator(".lesson-title")).to_have_text("认识钟表")
    tv.press("ArrowRight")
    expect(tv.focused).to_have_attribute("data-role", "task_sheet")
    expect(tv.focused).to_contain_text("学习任务单")
    expect(tv.focused).to_contain_text("共 2 页")

    tv.go("Enter", "document")
    image = tv.page.locator("#doc-image")
    indicator = tv.page.locator("#doc-indicator")
    expect(indicator).to_have_text("第 1 / 2 页")
    expect(image).to_be_visible()
    tv.page.wait_for_function("() => { const i = document.getElementById('doc-image'); "
                              "return i.complete && i.naturalWidth === 600; }")
    first = image.get_attribute("src")
    tv.press("ArrowRight")
    expect(indicator).to_have_text("第 2 / 2 页")
    second = image.get_attribute("src")
    assert first and second and first != second and second.startswith("/media/")
    tv.press("ArrowRight")  # no page 3: stays
    expect(indicator).to_have_text("第 2 / 2 页")
    tv.press("ArrowLeft")
    expect(indicator).to_have_text("第 1 / 2 页")
    assert image.get_attribute("src") == first
    tv.press("Enter")  # OK fills the width with the page; down scrolls it
    expect(tv.page.locator("#document")).to_have_class("layer zoomed")
    tv.press("ArrowDown")
    tv.page.wait_for_function("() => document.getElementById('doc-stage').scrollTop > 0")
    tv.press("Enter")
    expect(tv.page.locator("#document")).to_have_class("layer")

    assert room(box).document == 1 and room(box).page == 0  # the room shows the page, not only this TV

    # Back, level by level, each time onto the tile chosen before.
    tv.go("Escape", "lesson")
    assert room(box).lesson is None  # opened for the sheet only: Back leaves the room as it was
    expect(tv.focused).to_have_attribute("data-role", "task_sheet")
    tv.go("Backspace", "lessons")
    expect(tv.focused).to_have_attribute("data-lesson-id", "test-lesson-3")
    tv.go("Escape", "subjects")
    tv.go("Escape", "grades")
    expect(tv.focused).to_have_attribute("data-value", "二年级")
    tv.go("Escape", "home")
    tv.press("Escape")  # nothing above home: stays, still one tile highlighted
    tv.wait_screen("home")
    expect(tv.focused).to_have_count(1)


@pytest.mark.usefixtures("lessons")
def test_page_loads_nothing_from_outside_the_box(tv: TV) -> None:
    open_lesson_1_chinese(tv)
    tv.go("Enter", "player")
    tv.wait_video("v.currentTime > 0.3")
    tv.go("Escape", "lesson")
    tv.press("ArrowRight")
    tv.go("Enter", "document")
    tv.page.wait_for_function("() => document.getElementById('doc-image').complete")
    own = tv.server.url + "/"
    assert any("/media/" in url for url in tv.requests)
    assert [url for url in tv.requests if not url.startswith(own)] == []


def test_a_level_without_values_is_skipped(tv: TV, box: Box, publisher: Publisher, media: Media,
                                          tmp_path: Path) -> None:
    install(box, publisher, media, tmp_path, topical=1)
    tv.open()
    expect(tv.page.locator(".choice")).to_have_count(2)
    tv.press("ArrowRight")
    expect(tv.focused).to_have_attribute("data-value", "专题教育")
    tv.go("Enter", "lessons")  # no grade, no subject to choose: straight to the list
    expect(tv.page.locator("#crumbs")).to_have_text("首页›专题教育")
    expect(tv.focused).to_have_attribute("data-lesson-id", "test-lesson-3")
    tv.go("Escape", "home")
    expect(tv.focused).to_have_attribute("data-value", "专题教育")


def test_empty_box_says_there_are_no_lessons_and_what_to_do(tv: TV) -> None:
    tv.open()
    main = tv.page.locator("#main")
    expect(main).to_contain_text("还没有课程")
    expect(main).to_contain_text("联系技术员导入课程")
    expect(tv.page.locator("#foot")).to_contain_text("本机地址：http://")
    expect(tv.focused).to_have_text("刷新")


@pytest.mark.usefixtures("lessons")
def test_unreachable_box_says_so_and_enter_retries(tv: TV) -> None:
    tv.page.route("**/api/v1/catalog*", lambda route: route.abort())
    tv.page.goto(tv.server.url + "/tv")
    message = tv.page.locator("#message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("无法连接到教学盒子，请检查网络")
    expect(tv.focused).to_have_text("重试")
    tv.errors.clear()  # the aborted requests were logged on purpose
    tv.page.unroute("**/api/v1/catalog*")
    tv.go("Enter", "home")
    expect(message).to_be_hidden()
    expect(tv.focused).to_have_attribute("data-value", "课程教学")
