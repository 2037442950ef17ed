"""/api/v1/rooms over HTTP: pairing, commands only from a paired phone, waiting screens, the QR code."""

from __future__ import annotations

import threading
import time

import requests

from classbox.box import Box
from classbox.classroom import DEFAULT_ROOM

from .conftest import LiveServer

ROOM = DEFAULT_ROOM


def paired(server: LiveServer, room: str = ROOM) -> requests.Session:
    phone = requests.Session()
    code = phone.get(f"{server.url}/api/v1/rooms/{room}/pairing", timeout=5).json()["code"]
    r = phone.post(f"{server.url}/api/v1/rooms/{room}/pair", json={"code": code}, timeout=5)
    assert r.status_code == 200, r.text
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    return phone


def test_only_a_paired_phone_controls_the_room(live_server: LiveServer, demo: Box) -> None:
    lesson = demo.catalog.browse({}).entries[0].lesson.id
    url = f"{live_server.url}/api/v1/rooms/{ROOM}"
    stranger = requests.post(f"{url}/commands", json={"client": "x", "n": 1, "cmd": "open",
                                                      "args": {"lesson": lesson}}, timeout=5)
    assert stranger.status_code == 403 and stranger.json()["code"] == "not_paired"
    wrong = requests.post(f"{url}/pair", json={"code": "12345"}, timeout=5)
    assert wrong.status_code == 400 and "code" in wrong.json()["error"]
    assert requests.get(f"{url}/state", timeout=5).json()["lesson"] is None, "nothing changed"

    phone = paired(live_server)
    state = phone.post(f"{url}/commands", json={"client": "p", "n": 1, "cmd": "open", "args": {"lesson": lesson}},
                       timeout=5).json()
    assert state["lesson"] == lesson and not state["playing"]
    missing = phone.post(f"{url}/commands", json={"client": "p", "n": 2, "cmd": "open",
                                                  "args": {"lesson": "no-such"}}, timeout=5)
    assert missing.status_code == 404 and "no-such" in missing.json()["error"]
    assert requests.get(f"{url}/state", timeout=5).json()["lesson"] == lesson, "the TV is unchanged"


def test_a_waiting_screen_sees_a_command_at_once(live_server: LiveServer, demo: Box) -> None:
    lesson = demo.catalog.browse({}).entries[0].lesson.id
    url = f"{live_server.url}/api/v1/rooms/{ROOM}"
    phone = paired(live_server)
    version = requests.get(f"{url}/state", timeout=5).json()["version"]
    seen: list[tuple[float, dict]] = []

    def tv() -> None:
        r = requests.get(f"{url}/state", params={"after": version, "wait": 10}, timeout=15)
        seen.append((time.monotonic(), r.json()))

    t = threading.Thread(target=tv)
    t.start()
    time.sleep(0.3)
    sent = time.monotonic()
    phone.post(f"{url}/commands", json={"client": "p", "n": 1, "cmd": "open", "args": {"lesson": lesson}}, timeout=5)
    t.join(10)
    assert seen and seen[0][1]["lesson"] == lesson
    assert seen[0][0] - sent < 0.3


def test_unknown_room_and_bad_wait(live_server: LiveServer) -> None:
    assert requests.get(f"{live_server.url}/api/v1/rooms/火星/state", timeout=5).status_code == 404
    r = requests.get(f"{live_server.url}/api/v1/rooms/{ROOM}/state", params={"after": "x"}, timeout=5)
    assert r.status_code == 400 and "after" in r.json()["error"]


def test_qr_code_is_an_svg_for_the_remote(live_server: LiveServer) -> None:
    r = requests.get(f"{live_server.url}/api/v1/rooms/{ROOM}/qr.svg", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
    assert r.content.lstrip().startswith(b"<?xml") or b"<svg" in r.content[:200]
    pairing = requests.get(f"{live_server.url}/api/v1/rooms/{ROOM}/pairing", timeout=5).json()
    assert "/remote?room=" in pairing["url"] and pairing["code"] in pairing["url"]
    assert requests.get(pairing["url"].replace(pairing["url"].split("/remote")[0], live_server.url),
                        timeout=5).status_code == 200


def test_a_report_must_name_its_lesson(live_server: LiveServer) -> None:
    r = requests.post(f"{live_server.url}/api/v1/rooms/{ROOM}/report", json={"position": 3}, timeout=5)
    assert r.status_code == 400 and "lesson" in r.json()["error"]


def test_the_room_code_stays_the_same_across_restarts(box: Box) -> None:
    from classbox.classroom import Classroom

    again = Classroom(box.state, box.catalog, box.events)
    assert again.code(ROOM) == box.classroom.code(ROOM), "one pairing secret per box, made once"
