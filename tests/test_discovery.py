"""Discovery: real mDNS between zeroconf instances on 127.0.0.1 only, never on the real LAN."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from classbox.accounts import hash_password
from classbox.discovery import (
    CLASSBOX_TYPE,
    HTTP_TYPE,
    Announcement,
    Discovery,
    Peer,
    can_advertise,
    instance_name,
)

from .test_cli import start_serve

LOOPBACK = ["127.0.0.1"]
WAIT = 5.0
# Names differ between runs, so two runs at once on one machine do not rename each other's boxes.
RUN = secrets.token_hex(2)


def wait_until(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll check until it holds or the deadline passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def foreign_address() -> str:
    """Return a documentation address that is not on this machine."""
    own = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    return next(a for a in ("192.0.2.1", "198.51.100.1", "203.0.113.1") if a not in own)


def announcement(name: str = f"三年级一班 {RUN}", role: str = "box", port: int = 8080) -> Announcement:
    """Return what a box with a fresh id announces."""
    return Announcement(secrets.token_hex(8), name, "石门村小学", "0.1.0", role, port)


@pytest.fixture(scope="module", autouse=True)
def loopback_multicast() -> None:
    """Make sure mDNS works on 127.0.0.1 here; as root, turn multicast on for lo if that is what it takes."""
    reason = can_advertise(LOOPBACK)
    if reason is not None and os.geteuid() == 0:
        logging.getLogger(__name__).warning("mDNS on loopback failed (%s): running `ip link set lo multicast on`",
                                            reason)
        subprocess.run(["ip", "link", "set", "lo", "multicast", "on"], check=False)
        reason = can_advertise(LOOPBACK)
    if reason is not None:
        pytest.fail(f"mDNS does not work on 127.0.0.1 here: {reason} (try `ip link set lo multicast on` as root)")


@pytest.fixture(autouse=True)
def no_thread_outlives_the_test() -> Iterator[None]:
    """Fail a test that leaves a thread behind (zeroconf's loop, a browser)."""
    before = set(threading.enumerate())
    yield
    wait_until(lambda: set(threading.enumerate()) <= before, timeout=2)
    assert set(threading.enumerate()) - before == set()


class Observer:
    """An independent zeroconf on loopback browsing both service types, as a phone or a laptop would."""

    def __init__(self) -> None:
        self.zc = Zeroconf(interfaces=LOOPBACK)
        self.lock = threading.Lock()
        self.present: set[str] = set()
        self.removed: set[str] = set()
        self.browser = ServiceBrowser(self.zc, [CLASSBOX_TYPE, HTTP_TYPE], handlers=[self.on_change])

    def on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        """Record a service appearing or leaving."""
        with self.lock:
            if state_change is ServiceStateChange.Removed:
                self.present.discard(name)
                self.removed.add(name)
            else:
                self.present.add(name)

    def sees(self, *names: str) -> bool:
        """Tell whether every name is present."""
        with self.lock:
            return set(names) <= self.present

    def saw_leave(self, *names: str) -> bool:
        """Tell whether every name left and is gone."""
        with self.lock:
            return set(names) <= self.removed and not set(names) & self.present

    def resolve(self, type_: str, name: str) -> ServiceInfo:
        """Return the full records of a service."""
        info = self.zc.get_service_info(type_, name, timeout=3000)
        assert info is not None, f"{name} did not resolve"
        return info

    def close(self) -> None:
        """Stop browsing and close."""
        try:
            self.browser.cancel()
        finally:
            self.zc.close()


@pytest.fixture
def observer() -> Iterator[Observer]:
    """Browse loopback from an independent zeroconf instance."""
    seen = Observer()
    try:
        yield seen
    finally:
        seen.close()


@pytest.fixture
def boxes() -> Iterator[Callable[[Announcement], Discovery]]:
    """Start boxes announcing on loopback; close them all afterwards."""
    started: list[Discovery] = []

    def start(what: Announcement) -> Discovery:
        box = Discovery(what, LOOPBACK)
        started.append(box)
        box.start()
        assert box.running, "the box did not announce itself"
        return box

    try:
        yield start
    finally:
        for box in started:
            box.close()


def test_a_box_is_found_with_its_records(observer: Observer, boxes: Callable[[Announcement], Discovery]) -> None:
    name = f"三年级一班 {RUN}"
    what = announcement(name, port=8123)
    box = boxes(what)
    short = what.box_id[:6]
    assert box.host_name == f"classbox-{short}.local."
    assert box.instance_name == name

    names = {CLASSBOX_TYPE: f"{name}.{CLASSBOX_TYPE}", HTTP_TYPE: f"{name}.{HTTP_TYPE}"}
    assert wait_until(lambda: observer.sees(*names.values())), "the browser did not find both services"
    for type_, path in ((CLASSBOX_TYPE, "/mirror"), (HTTP_TYPE, "/tv")):
        info = observer.resolve(type_, names[type_])
        assert info.decoded_properties == {"id": what.box_id, "name": name, "school": "石门村小学",
                                           "version": "0.1.0", "role": "box", "path": path}
        assert info.port == 8123
        assert info.server == f"classbox-{short}.local."
        assert info.parsed_addresses() == ["127.0.0.1"]


@pytest.mark.slow
def test_a_second_box_of_the_same_name_is_renamed(observer: Observer,
                                                 boxes: Callable[[Announcement], Discovery]) -> None:
    name = f"同名教学点 {RUN}"
    first = boxes(announcement(name))
    second = boxes(announcement(name, port=8081))

    assert first.instance_name == name
    assert second.instance_name == f"{name}-2"
    services = [f"{n}.{type_}" for n in (name, f"{name}-2") for type_ in (CLASSBOX_TYPE, HTTP_TYPE)]
    assert wait_until(lambda: observer.sees(*services)), "both boxes should be found under their own names"
    renamed = observer.resolve(CLASSBOX_TYPE, f"{name}-2.{CLASSBOX_TYPE}")
    assert renamed.decoded_properties["name"] == name  # the TXT keeps the box's real name
    assert renamed.port == 8081


@pytest.mark.slow
def test_a_taken_host_name_is_renamed(observer: Observer, boxes: Callable[[Announcement], Discovery]) -> None:
    name = f"四年级 {RUN}"
    what = announcement(name)
    short = what.box_id[:6]
    # Another machine (its address is not ours) already answers for classbox-<short>.local.
    other = Zeroconf(interfaces=LOOPBACK)
    try:
        other.register_service(ServiceInfo("_ssh._tcp.local.", f"printer {RUN}._ssh._tcp.local.", port=22,
                                           server=f"classbox-{short}.local.", parsed_addresses=[foreign_address()]),
                               cooperating_responders=True)
        box = boxes(what)
        assert box.host_name == f"classbox-{short}-2.local."
        assert wait_until(lambda: observer.sees(f"{name}.{CLASSBOX_TYPE}"))
        assert observer.resolve(CLASSBOX_TYPE, f"{name}.{CLASSBOX_TYPE}").server == f"classbox-{short}-2.local."
    finally:
        other.close()


@pytest.mark.slow
def test_peers_lists_the_other_box_until_it_closes(boxes: Callable[[Announcement], Discovery]) -> None:
    a_what = announcement(f"一班 {RUN}")
    b_what = announcement(f"中心校 {RUN}", role="hub", port=8081)
    a = boxes(a_what)
    b = boxes(b_what)

    expected_b = Peer(b_what.box_id, f"中心校 {RUN}", "石门村小学", "0.1.0", "hub", ("127.0.0.1",), 8081)

    def listed(box: Discovery, box_id: str) -> list[Peer]:
        # Only the boxes of this test: another run on this machine may announce its own.
        return [p for p in box.peers() if p.box_id == box_id]

    assert wait_until(lambda: listed(a, b_what.box_id) == [expected_b]), f"A lists {a.peers()}"
    assert listed(a, b_what.box_id)[0].mirror_url == "http://127.0.0.1:8081/mirror"
    assert listed(a, b_what.box_id)[0].as_dict() == {
        "box_id": b_what.box_id, "name": f"中心校 {RUN}", "school": "石门村小学", "version": "0.1.0", "role": "hub",
        "addresses": ["127.0.0.1"], "port": 8081, "mirror_url": "http://127.0.0.1:8081/mirror"}
    assert wait_until(lambda: len(listed(b, a_what.box_id)) == 1), f"B lists {b.peers()}"
    assert listed(a, a_what.box_id) == [] and listed(b, b_what.box_id) == []

    b.close()
    assert wait_until(lambda: listed(a, b_what.box_id) == []), "a closed box should leave the list"


def test_close_says_goodbye_and_leaves_no_thread(observer: Observer) -> None:
    before = set(threading.enumerate())
    name = f"五年级 {RUN}"
    box = Discovery(announcement(name), LOOPBACK)
    box.start()
    services = (f"{name}.{CLASSBOX_TYPE}", f"{name}.{HTTP_TYPE}")
    assert wait_until(lambda: observer.sees(*services))
    assert set(threading.enumerate()) > before  # zeroconf's loop and the browser run meanwhile

    box.close()
    assert wait_until(lambda: observer.saw_leave(*services)), "the browser should see both services leave"
    assert set(threading.enumerate()) == before
    assert not box.running and box.peers() == []
    box.close()


def test_off_opens_nothing() -> None:
    before = set(threading.enumerate())
    box = Discovery(announcement(), [])
    box.start()
    assert not box.running
    assert box.peers() == []
    assert set(threading.enumerate()) == before
    box.close()
    assert can_advertise([]) is not None


def test_an_address_not_on_this_box_warns_and_stays_off(caplog: pytest.LogCaptureFixture) -> None:
    address = foreign_address()
    box = Discovery(announcement(), [address])
    with caplog.at_level(logging.WARNING, logger="classbox.discovery"):
        box.start()
    assert not box.running and box.peers() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and address in warnings[0] and "not an address of this box" in warnings[0]
    box.close()

    reason = can_advertise([address])
    assert reason is not None and address in reason and "CLASSBOX_ZEROCONF_INTERFACES" in reason


def test_can_advertise_on_loopback() -> None:
    assert can_advertise(LOOPBACK) is None


def test_a_long_name_fits_a_dns_label() -> None:
    name = instance_name(announcement("石门村" * 30 + "小学"))
    assert name.startswith("石门村") and len(name.encode()) <= 59
    assert instance_name(announcement(" 三.一班\n")) == "三-一班"
    what = announcement("  ")
    assert instance_name(what) == f"classbox-{what.box_id[:6]}"


@pytest.mark.slow
def test_serve_announces_the_box_lists_its_peers_in_admin_and_says_goodbye(
        observer: Observer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSBOX_ZEROCONF_INTERFACES", "127.0.0.1")
    password = "a good password"
    hashed = hash_password(password)
    started = []
    try:
        for name in (f"甲盒子 {RUN}", f"乙盒子 {RUN}"):
            provision = tmp_path / f"{name}.toml"
            provision.write_text(f'school = "石门村小学"\nbox_name = "{name}"\nadmin_password_hash = "{hashed}"\n')
            monkeypatch.setenv("CLASSBOX_PROVISION", str(provision))
            started.append((name, start_serve(tmp_path / name, "--no-demo")))
        (a_name, a), (b_name, b) = started
        b_service = f"{b_name}.{CLASSBOX_TYPE}"
        assert wait_until(lambda: observer.sees(f"{a_name}.{CLASSBOX_TYPE}", b_service, f"{a_name}.{HTTP_TYPE}"))
        b_id = json.loads((tmp_path / b_name / "state.json").read_text())
        b_id = next(d["value"] for d in b_id["settings"].values() if d["key"] == "box_id")
        info = observer.resolve(CLASSBOX_TYPE, b_service)
        assert info.decoded_properties["id"] == b_id and info.decoded_properties["school"] == "石门村小学"
        assert info.port == int(b.url.rsplit(":", 1)[1])

        admin = requests.Session()
        page = admin.get(a.url + "/admin/login", timeout=5).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        admin.post(a.url + "/admin/login", data={"name": "admin", "password": password, "csrf_token": token},
                   timeout=10)

        def peers() -> list[dict[str, object]]:
            return admin.get(a.url + "/api/v1/admin/status", timeout=5).json()["peers"]  # type: ignore[no-any-return]

        assert wait_until(lambda: any(p["box_id"] == b_id for p in peers()), timeout=15)
        listed = next(p for p in peers() if p["box_id"] == b_id)
        assert listed["mirror_url"] == f"{b.url}/mirror"
        page = admin.get(a.url + "/admin", timeout=5).text
        assert f"{b.url}/mirror" in page and "从这台盒子同步" in page  # offered as a sync source
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        refused = admin.post(a.url + "/admin/sync", data={"peer": "http://203.0.113.9/mirror", "csrf_token": token},
                             timeout=5)
        assert "不是" in refused.text or "not a box found" in refused.text
        admin.post(a.url + "/admin/sync", data={"peer": f"{b.url}/mirror", "csrf_token": token}, timeout=5)

        def synced_from_b() -> bool:
            runs = requests.get(a.url + "/api/v1/sync", timeout=5).json()["runs"]
            return any(r["sources"] == [f"{b.url}/mirror"] for r in runs)

        assert wait_until(synced_from_b, timeout=15), "no sync run from the box found on the LAN"

        assert b.stop() == 0
        started.pop()
        assert wait_until(lambda: observer.saw_leave(b_service)), "no goodbye when the box stopped"
        assert wait_until(lambda: not any(p["box_id"] == b_id for p in peers()))
    finally:
        for _, served in started:
            served.stop()
