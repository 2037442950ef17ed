"""专递课堂 end to end on loopback: a hub process and a teaching point's box process, as they run at schools.

A teacher logs in at the hub, uploads a video, adds a pause point, plans it for tomorrow's second
period at the teaching point and publishes; the box syncs and lists it as tomorrow's lesson; the
box plays it; the box reports; the hub shows it played.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from classbox import keys
from classbox.accounts import hash_password

from .conftest import make_video
from .test_cli import Served, start_serve

ADMIN_PASSWORD = "admin password 1"
TEACHER_PASSWORD = "teacher password 1"
ROOM = "一号教室"


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    """Poll check until it returns something true, or fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"within {timeout:.0f} s: {what}")


def token_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def log_in(base: str, path: str, name: str, password: str) -> tuple[requests.Session, str]:
    """Log in through a login form; return the session and a CSRF token of the logged-in pages."""
    s = requests.Session()
    page = s.get(f"{base}{path}", timeout=10).text
    r = s.post(f"{base}{path}", data={"name": name, "password": password, "csrf_token": token_of(page)},
               timeout=10, allow_redirects=True)
    assert r.status_code == 200, r.text[:300]
    return s, token_of(r.text)


def provision(path: Path, **settings: str) -> Path:
    lines = [f'{k} = "{v}"' for k, v in settings.items()]
    path.write_text("\n".join(lines) + f'\nadmin_password_hash = "{hash_password(ADMIN_PASSWORD)}"\n',
                    encoding="utf-8")
    return path


def upload(s: requests.Session, base: str, token: str, data: bytes, name: str) -> dict[str, object]:
    """Upload a file through the hub's resumable upload API, in chunks."""
    headers = {"X-CSRF-Token": token}
    r = s.post(f"{base}/hub/api/uploads", json={"name": name, "size": len(data)}, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    url = urllib.parse.urljoin(base, r.json()["url"])
    offset, chunk = 0, 256 * 1024
    while True:
        r = s.patch(url, data=data[offset:offset + chunk], headers={**headers, "Upload-Offset": str(offset)},
                    timeout=30)
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
        assert r.status_code == 204, r.text
        offset = int(r.headers["Upload-Offset"])


@pytest.mark.slow
def test_a_lesson_from_the_hub_teacher_plays_at_the_teaching_point_and_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Served] = []
    try:
        # The central school's hub.
        # Both boxes and this test count days in UTC, wherever the machine is.
        monkeypatch.setenv("TZ", "UTC")
        monkeypatch.setenv("CLASSBOX_PROVISION", str(provision(tmp_path / "hub.toml", school="中心校",
                                                               box_name="中心校盒子", timezone="UTC")))
        hub = start_serve(tmp_path / "hub", "--no-demo", "--hub")
        started.append(hub)
        pem = requests.get(f"{hub.url}/hub/key.pub", timeout=10).content
        hub_key: Ed25519PublicKey = keys.parse_public(pem)

        # The teaching point's box, set up with the hub's address and key fingerprint, reporting every 2 s.
        monkeypatch.setenv("CLASSBOX_PROVISION", str(provision(
            tmp_path / "point.toml", school="石门村小学", box_name="石门教学点", hub_url=hub.url,
            hub_key=keys.key_id(hub_key), timezone="UTC")))
        monkeypatch.setenv("CLASSBOX_REPORT_INTERVAL", "2")
        point = start_serve(tmp_path / "point", "--no-demo")
        started.append(point)
        served = json.loads((tmp_path / "point" / "serve.json").read_text())
        control = {"X-Classbox-Control": served["token"]}
        today = datetime.now(UTC).date()
        tomorrow = today + timedelta(days=1)
        for action, body in (("rooms", {"name": ROOM, "class": "一年级"}),
                             ("timetable", {"room": ROOM, "periods": [
                                 {"weekday": tomorrow.isoweekday(), "number": n, "start": start, "end": end,
                                  "subject": "数学"} for n, start, end in ((2, "08:50", "09:30"),)]})):
            r = requests.post(f"{point.url}/api/v1/control/{action}", json=body, headers=control, timeout=10)
            assert r.status_code == 200, r.text

        # The box's technician hands its enrolment to the hub.
        box_admin, _ = log_in(point.url, "/admin/login", "admin", ADMIN_PASSWORD)
        enrolment = box_admin.get(f"{point.url}/admin/hub/enrolment.json", timeout=10).text
        hub_admin, token = log_in(hub.url, "/hub/login", "admin", ADMIN_PASSWORD)
        hub_admin.post(f"{hub.url}/hub/teachers", data={"name": "wang", "password": TEACHER_PASSWORD,
                                                        "csrf_token": token}, timeout=10)
        r = hub_admin.post(f"{hub.url}/hub/points", data={"enrolment": enrolment, "address": point.url,
                                                          "csrf_token": token}, timeout=10)
        box_id = json.loads(enrolment)["box_id"]
        assert r.url.endswith(f"/hub/points/{box_id}"), r.url

        # A teacher prepares the lesson: video, pause point, plan, publish.
        teacher, token = log_in(hub.url, "/hub/login", "wang", TEACHER_PASSWORD)
        r = teacher.post(f"{hub.url}/hub/lessons", data={"title": "认识钟表", "stage": "小学", "grade": "一年级",
                                                         "subject": "数学", "csrf_token": token}, timeout=10)
        lesson_id = r.url.rsplit("/", 1)[1]
        video = make_video(tmp_path / "clock.mp4", seconds=6).read_bytes()
        stored = upload(teacher, hub.url, token, video, "认识钟表.mp4")
        assert stored["sha256"] and stored["kind"] == "video"
        headers = {"X-CSRF-Token": token}
        r = teacher.post(f"{hub.url}/hub/api/lessons/{lesson_id}/files", headers=headers, timeout=10,
                         json={**{k: stored[k] for k in ("sha256", "size", "media_type")}, "name": "认识钟表.mp4",
                               "role": "video"})
        assert r.status_code == 200, r.text
        r = teacher.post(f"{hub.url}/hub/api/lessons/{lesson_id}/pause_points", headers=headers, timeout=10,
                         json={"at": 2.0, "prompt": "请同学们说一说现在几点"})
        assert r.status_code == 200, r.text
        r = teacher.post(f"{hub.url}/hub/points/{box_id}/plan", timeout=10,
                         data={"date": tomorrow.isoformat(), "period": "2", "class": "一年级", "lesson": lesson_id,
                               "csrf_token": token})
        r = teacher.post(f"{hub.url}/hub/points/{box_id}/publish", data={"csrf_token": token}, timeout=30)
        assert "已发布第" in r.text and "已通知教学点的盒子" in r.text, r.text[:2000]

        # The box syncs at once (notified) and lists it as tomorrow's second period, ready.
        def listed() -> bool:
            lessons = requests.get(f"{point.url}/api/v1/catalog", timeout=10).json()["lessons"]
            return any(x["id"] == lesson_id for x in lessons)

        wait_for(listed, 60, "the box lists the published lesson")
        details = requests.get(f"{point.url}/api/v1/lessons/{lesson_id}", timeout=10).json()
        assert details["assets"][0]["pause_points"] == [{"at": 2.0, "prompt": "请同学们说一说现在几点"}]
        day = requests.get(f"{point.url}/api/v1/rooms/{ROOM}/today", timeout=10).json()
        assert day["now"] is None and day["today"] == []
        assert {k: day["next"][k] for k in ("date", "period", "lesson", "title", "ready")} == {
            "date": tomorrow.isoformat(), "period": 2, "lesson": lesson_id, "title": "认识钟表", "ready": True}

        # The local teacher plays it from a paired phone.
        phone = requests.Session()
        code = phone.get(f"{point.url}/api/v1/rooms/{ROOM}/pairing", timeout=10).json()["code"]
        assert phone.post(f"{point.url}/api/v1/rooms/{ROOM}/pair", json={"code": code}, timeout=10).ok
        for n, (cmd, args) in enumerate((("open", {"lesson": lesson_id, "start": "beginning"}), ("play", {})), 1):
            r = phone.post(f"{point.url}/api/v1/rooms/{ROOM}/commands", timeout=10,
                           json={"client": "phone-e2e", "n": n, "cmd": cmd, "args": args})
            assert r.status_code == 200, r.text
        wait_for(lambda: requests.get(f"{point.url}/api/v1/rooms/{ROOM}/state", timeout=10).json().get("prompt"),
                 15, "the box stopped at the pause point and shows its prompt")

        # The box reports; the hub shows what was played today.
        def shown() -> bool:
            page = teacher.get(f"{hub.url}/hub/points/{box_id}?day={today.isoformat()}", timeout=10).text
            played = page.split('id="played"', 1)[1]
            return "认识钟表" in played and "0:02" in played

        wait_for(shown, 30, "the hub shows the lesson played at the teaching point")
        csv = teacher.get(f"{hub.url}/hub/points/{box_id}/played.csv", timeout=10)
        assert csv.status_code == 200 and ("认识钟表" in csv.text or lesson_id in csv.text), csv.text
    finally:
        for s in reversed(started):
            s.stop()
