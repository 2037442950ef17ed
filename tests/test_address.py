"""The box's address as a QR code on the TV and the remote, for networks where classbox.local does not work.

What a QR code holds is proved by regenerating it: segno cannot read a QR code back, but it makes the same SVG
for the same text with the same settings, so an answer equal to segno's SVG of the expected address holds that
address and nothing else.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator

import pytest
import segno
from playwright.sync_api import Browser, Page, expect

from classbox import netinfo

from .conftest import LiveServer

SVG = "{http://www.w3.org/2000/svg}svg"


def qr_of(text: str) -> bytes:
    """Return segno's SVG QR code of text, made with the settings the box uses."""
    out = io.BytesIO()
    segno.make_qr(text, error="m").save(out, kind="svg", scale=8, border=4, dark="#000", light="#fff")
    return out.getvalue()


def lan_host() -> str:
    """Return the host a visit over loopback shows: the box's LAN address if it has one."""
    lan = [a for a in netinfo.lan_addresses() if not a.startswith("127.")]
    return lan[0] if lan else "127.0.0.1"


# ------------------------------------------------------------------ the route


@pytest.mark.parametrize(("page", "path"), [("tv", "/tv"), ("remote", "/remote")])
def test_qr_holds_the_address_the_page_was_reached_by(client, page: str, path: str) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/address.svg?for={page}", headers={"Host": "192.168.1.20:8080"})
    assert r.status_code == 200
    assert r.mimetype == "image/svg+xml"
    assert r.headers["Cache-Control"] == "max-age=60"
    assert ET.fromstring(r.data).tag == SVG
    assert r.data == qr_of(f"http://192.168.1.20:8080{path}")


def test_qr_is_the_same_address_the_page_shows_as_text(client) -> None:  # type: ignore[no-untyped-def]
    for page in ("tv", "remote"):
        html = client.get(f"/{page}", headers={"Host": "10.0.0.7"}).get_data(as_text=True)
        assert f'data-box-url="http://10.0.0.7/{page}"' in html
        assert f'src="/address.svg?for={page}"' in html
        assert client.get(f"/address.svg?for={page}", headers={"Host": "10.0.0.7"}).data == qr_of(
            f"http://10.0.0.7/{page}")


def test_a_visit_over_loopback_gets_the_lan_address(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/address.svg?for=tv", headers={"Host": "127.0.0.1:8080"})
    assert r.data == qr_of(f"http://{lan_host()}:8080/tv")


@pytest.mark.parametrize("page", ["", "TV", "admin", "https://example.com/", "tv/../api", "remote?x=1"])
def test_only_the_box_pages_can_be_asked_for(client, page: str) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/address.svg", query_string={"for": page})
    assert r.status_code == 400
    assert r.mimetype == "text/html"
    assert "for: the page the QR code opens, tv or remote" in r.get_data(as_text=True)


def test_without_for_the_answer_says_what_is_missing(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/address.svg")
    assert r.status_code == 400
    assert "for: the page the QR code opens, tv or remote" in r.get_data(as_text=True)


def test_other_parameters_do_not_change_what_the_qr_holds(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/address.svg?for=remote&text=hello&data=x", headers={"Host": "192.168.1.20:8080"})
    assert r.data == qr_of("http://192.168.1.20:8080/remote")


# ------------------------------------------------------------------ in a real browser


@pytest.fixture
def open_page(browser: Browser, live_server: LiveServer) -> Iterator[Callable[..., Page]]:
    """Return a function that opens a tab of a given size; fail the test if a page logs an error or a 4xx/5xx."""
    errors: list[str] = []
    contexts = []

    def open_page(width: int, height: int, mobile: bool = False) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN", is_mobile=mobile,
                                      has_touch=mobile)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(8_000)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        page.on("request", lambda r: None if r.url.startswith(live_server.url + "/") else errors.append(
            f"outside request: {r.url}"))
        return page

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()
    assert errors == []


def check_address_qr(page: Page, expected: str) -> None:
    """Check the page shows a loaded QR code of `expected` beside the same address as text."""
    qr, text = page.locator("#address-qr"), page.locator("#address")
    expect(qr).to_be_visible()
    expect(text).to_contain_text("本机地址：" + expected)
    assert qr.get_attribute("src") == "/address.svg?for=" + expected.rsplit("/", 1)[1]
    page.wait_for_function("() => document.getElementById('address-qr').naturalWidth > 0")
    svg = page.evaluate("async () => (await fetch(document.getElementById('address-qr').src)).text()")
    assert svg.encode() == qr_of(expected)  # what the browser was given holds the address it shows
    q, t = qr.bounding_box(), page.locator("#address b").bounding_box()
    assert q and t
    assert q["x"] + q["width"] <= t["x"]  # beside the text, on its left
    assert q["y"] < t["y"] + t["height"] and t["y"] < q["y"] + q["height"]  # at the same height
    assert abs(q["width"] - q["height"]) < 1


@pytest.mark.slow
def test_tv_home_screen_shows_a_small_qr_of_its_address(open_page, live_server: LiveServer, demo) -> None:  # type: ignore[no-untyped-def]
    page = open_page(1920, 1080)
    page.goto(live_server.url + "/tv")
    page.wait_for_function("() => document.body.dataset.screen === 'home'")
    check_address_qr(page, f"http://{lan_host()}:{live_server.port}/tv")
    size = page.locator("#address-qr").bounding_box()
    assert size and size["height"] <= 110  # small: 2.6rem, 104 px at 1080p, beside the room's 360 px pairing QR
    expect(page.locator("#room-qr")).to_be_visible()
    page.keyboard.press("Enter")  # into a section: the address stays as text, its QR code goes
    page.wait_for_function("() => document.body.dataset.screen === 'grades'")
    expect(page.locator("#address-qr")).to_be_hidden()
    expect(page.locator("#address")).to_contain_text("本机地址：http://")


@pytest.mark.slow
def test_remote_pairing_view_shows_a_qr_of_its_address(open_page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    page = open_page(360, 740, mobile=True)
    page.goto(live_server.url + "/remote")
    page.wait_for_function("() => document.body.dataset.view === 'pair'")
    check_address_qr(page, f"http://{lan_host()}:{live_server.port}/remote")
    expect(page.locator("#foot")).to_contain_text("别的手机扫这个二维码")
